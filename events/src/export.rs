//! Compliance exports (`docs/evidence-format.md`): a contiguous range of an org's chain as
//! JSON Lines (one entry per line, byte for byte the ledger's envelope with its hash), and a
//! signed manifest: counts by event type, first and last `ledger_seq`, a signed tree head
//! covering the range with the last event's inclusion proof, and a consistency proof from the
//! tree head of the org's previous export. [`ExportVerifier`] checks one line at a time, in
//! constant memory, with the published keys alone.
//!
//! Why the last event's proof covers every line: each event's hash covers its predecessor's
//! hash, so once the lines link to each other, the last one's hash commits to all of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bundle::{BundleSignature, Check, EvidenceFailure};
use crate::envelope::entry_parts;
use crate::merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use crate::{genesis_hash, CanonicalJson, Error, EventHash, Jwks, LedgerKey, OrgId, TreeHead};

/// `manifest.format`.
pub const EXPORT_FORMAT: &str = "dashclaw-export/v1";
/// The files of an export directory.
pub const EVENTS_FILE: &str = "events.jsonl";
pub const MANIFEST_FILE: &str = "manifest.json";

/// The check names, as reports print them.
pub const MANIFEST_SIGNATURE: &str = "manifest signature";
pub const TREE_HEAD: &str = "tree head";
pub const EVENT_HASHES: &str = "event hashes";
pub const CHAIN_LINKS: &str = "chain links";
pub const COUNTS: &str = "counts";
pub const INCLUSION: &str = "inclusion proof";
pub const PREVIOUS_EXPORT: &str = "previous export";

/// The signed manifest of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub org_id: String,
    /// The requested time range (RFC 3339, inclusive from, exclusive to), if any.
    pub from: Option<String>,
    pub to: Option<String>,
    /// The range exported: `ledger_seq` first..=last (both 0 when it is empty).
    pub first_ledger_seq: u64,
    pub last_ledger_seq: u64,
    pub events: u64,
    /// Events by `event_type`.
    pub counts: BTreeMap<String, u64>,
    /// A signed tree head (C2SP signed note) of at least `last_ledger_seq` events.
    pub tree_head: String,
    /// The last event's RFC 9162 audit path to that head, lowercase hex.
    pub last_event_proof: Vec<String>,
    /// The org's previous export, and how its tree extends to this one's.
    pub previous: Option<PreviousExport>,
    pub exported_at: String,
    /// Ed25519 over the RFC 8785 JSON of every other member.
    pub signature: BundleSignature,
}

/// The tree head of the org's previous export and the consistency proof from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousExport {
    pub tree_head: String,
    /// RFC 9162 consistency proof from its size to this export's head's, lowercase hex.
    pub consistency: Vec<String>,
}

/// The bytes a manifest's signature covers: the RFC 8785 JSON of the manifest object without
/// its `signature` member.
fn signed_bytes(mut manifest: serde_json::Value) -> Result<CanonicalJson, Error> {
    if let Some(object) = manifest.as_object_mut() {
        object.remove("signature");
    }
    CanonicalJson::encode(&manifest)
}

impl Manifest {
    /// The bytes the signature covers: the manifest without `signature`.
    pub fn signed_bytes(&self) -> Result<CanonicalJson, Error> {
        let value =
            serde_json::to_value(self).map_err(|e| Error::Canonicalization(e.to_string()))?;
        signed_bytes(value)
    }

    /// Signs the manifest (whatever `signature` held is replaced).
    pub fn sign(mut self, key: &LedgerKey) -> Result<Self, Error> {
        self.signature = BundleSignature {
            alg: "EdDSA".to_owned(),
            kid: key.kid().to_owned(),
            sig: String::new(),
        };
        self.signature.sig = key.sign(self.signed_bytes()?.as_str().as_bytes());
        Ok(self)
    }
}

/// The members of a line the verifier reads (the rest is covered by the hash).
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    org_id: std::borrow::Cow<'a, str>,
    ledger_seq: u64,
    #[serde(borrow)]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    prev_hash: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    hash: std::borrow::Cow<'a, str>,
}

/// Checks an export: [`ExportVerifier::open`] the manifest, [`push`](Self::push) every line
/// in order, then [`finish`](Self::finish).
pub struct ExportVerifier {
    manifest: Manifest,
    org: OrgId,
    head: TreeHead,
    passed: Vec<Check>,
    seen: u64,
    last: Option<(u64, EventHash)>,
    counts: BTreeMap<String, u64>,
}

impl ExportVerifier {
    /// Reads the manifest and checks its signature and its tree head's.
    pub fn open(manifest_text: &str, keys: &Jwks) -> Result<Self, (Vec<Check>, EvidenceFailure)> {
        let mut passed = Vec::new();
        let unusable = |why: String| (Vec::new(), EvidenceFailure::Unusable(why));
        let as_given: serde_json::Value = serde_json::from_str(manifest_text)
            .map_err(|e| unusable(format!("not an export manifest: {e}")))?;
        let manifest: Manifest = serde_json::from_value(as_given.clone())
            .map_err(|e| unusable(format!("not an export manifest: {e}")))?;
        if manifest.format != EXPORT_FORMAT {
            return Err(unusable(format!(
                "format {:?}, expected {EXPORT_FORMAT:?}",
                manifest.format
            )));
        }
        let org =
            OrgId::new(manifest.org_id.clone()).map_err(|e| unusable(format!("org_id: {e}")))?;
        // Signed as given (every member but `signature`, unknown ones included), not as this
        // verifier's types would write it: an added or a missing member fails the signature.
        let signed = signed_bytes(as_given).map_err(|e| unusable(format!("manifest: {e}")))?;
        if let Err(e) = keys.verify(
            &manifest.signature.kid,
            signed.as_str().as_bytes(),
            &manifest.signature.sig,
        ) {
            return Err((
                passed,
                EvidenceFailure::failed(MANIFEST_SIGNATURE, e.to_string()),
            ));
        }
        passed.push(Check {
            name: MANIFEST_SIGNATURE,
            detail: format!("Ed25519 by {} (in the key set)", manifest.signature.kid),
        });
        let head = match open_head(&manifest.tree_head, keys, &org) {
            Ok(head) => head,
            Err(detail) => return Err((passed, EvidenceFailure::failed(TREE_HEAD, detail))),
        };
        if head.size < manifest.last_ledger_seq {
            let detail = format!(
                "the head covers {} events, the export ends at {}",
                head.size, manifest.last_ledger_seq
            );
            return Err((passed, EvidenceFailure::failed(TREE_HEAD, detail)));
        }
        passed.push(Check {
            name: TREE_HEAD,
            detail: format!(
                "{} size {} signed at {}",
                head.origin, head.size, head.signed_at
            ),
        });
        Ok(Self {
            manifest,
            org,
            head,
            passed,
            seen: 0,
            last: None,
            counts: BTreeMap::new(),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The checks that held so far.
    pub fn passed(&self) -> &[Check] {
        &self.passed
    }

    /// Checks the next line (without its newline).
    pub fn push(&mut self, line: &str) -> Result<(), EvidenceFailure> {
        let n = self.seen + 1;
        let (stated, before, after) = entry_parts(line).ok_or_else(|| {
            EvidenceFailure::failed(EVENT_HASHES, format!("line {n} has no \"hash\" member"))
        })?;
        let mut sha = Sha256::new();
        sha.update(before.as_bytes());
        sha.update(after.as_bytes());
        let computed = EventHash(sha.finalize().into());
        if computed != stated {
            return Err(EvidenceFailure::failed(
                EVENT_HASHES,
                format!("line {n}: its bytes hash to {computed}, it states {stated}"),
            ));
        }
        let fields: Line<'_> = serde_json::from_str(line).map_err(|e| {
            EvidenceFailure::failed(
                EVENT_HASHES,
                format!("line {n} is not an envelope with its hash: {e}"),
            )
        })?;
        // The member hashed around must be the envelope's own `hash`, not one nested inside.
        if fields.hash != stated.to_hex() {
            return Err(EvidenceFailure::failed(
                EVENT_HASHES,
                format!(
                    "line {n}: the hash it states ({stated}) is not its envelope's own hash \
                     member ({})",
                    fields.hash
                ),
            ));
        }
        let expected_seq = self.manifest.first_ledger_seq + self.seen;
        if fields.org_id != self.org.as_str() || fields.ledger_seq != expected_seq {
            return Err(EvidenceFailure::failed(
                CHAIN_LINKS,
                format!(
                    "line {n} is event {} of {:?}, expected event {expected_seq} of {}",
                    fields.ledger_seq, fields.org_id, self.org
                ),
            ));
        }
        let before = match self.last {
            Some(last) => Some(last),
            // The first event's predecessor is outside the export, unless it is the genesis.
            None if fields.ledger_seq == 1 => Some((0, genesis_hash(&self.org))),
            None => None,
        };
        if let Some((seq, hash)) = before {
            if fields.prev_hash != hash.to_hex() {
                return Err(EvidenceFailure::failed(
                    CHAIN_LINKS,
                    format!(
                        "event {} links to {}, event {seq} is {hash}",
                        fields.ledger_seq, fields.prev_hash
                    ),
                ));
            }
        }
        match self.counts.get_mut(fields.event_type.as_ref()) {
            Some(count) => *count += 1,
            None => {
                self.counts.insert(fields.event_type.into_owned(), 1);
            }
        }
        self.last = Some((fields.ledger_seq, computed));
        self.seen = n;
        Ok(())
    }

    /// Checks what only the whole export shows: the counts and range, the last event's
    /// inclusion in the signed tree, and the consistency proof from the previous export.
    pub fn finish(mut self, keys: &Jwks) -> (Vec<Check>, Result<TreeHead, EvidenceFailure>) {
        let outcome = self.finish_checks(keys);
        (self.passed, outcome.map(|()| self.head))
    }

    fn finish_checks(&mut self, keys: &Jwks) -> Result<(), EvidenceFailure> {
        let m = &self.manifest;
        self.passed.push(Check {
            name: EVENT_HASHES,
            detail: format!("{} events, each the SHA-256 of its exact bytes", self.seen),
        });
        self.passed.push(Check {
            name: CHAIN_LINKS,
            detail: format!(
                "events {}..={} of {}, each linked to the one before",
                m.first_ledger_seq, m.last_ledger_seq, self.org
            ),
        });
        let last_seq = self.last.map_or(0, |(seq, _)| seq);
        if self.seen != m.events || self.counts != m.counts || last_seq != m.last_ledger_seq {
            return Err(EvidenceFailure::failed(
                COUNTS,
                format!(
                    "the lines hold {} events ending at {last_seq} ({:?}); the manifest states \
                     {} ending at {} ({:?})",
                    self.seen, self.counts, m.events, m.last_ledger_seq, m.counts
                ),
            ));
        }
        self.passed.push(Check {
            name: COUNTS,
            detail: format!(
                "{} events in {} types, as the manifest states",
                self.seen,
                self.counts.len()
            ),
        });
        if let Some((seq, hash)) = self.last {
            let path = parse_hashes(&m.last_event_proof).ok_or_else(|| {
                EvidenceFailure::failed(INCLUSION, "a path hash is not hex".to_owned())
            })?;
            if !verify_inclusion(
                seq - 1,
                self.head.size,
                &leaf_hash(&hash.0),
                &path,
                &self.head.root,
            ) {
                return Err(EvidenceFailure::failed(
                    INCLUSION,
                    format!(
                        "event {seq} is not leaf {} of the signed tree of {}",
                        seq - 1,
                        self.head.size
                    ),
                ));
            }
            self.passed.push(Check {
                name: INCLUSION,
                detail: format!(
                    "event {seq} is in the signed tree of {}, and through the links every \
                     event before it",
                    self.head.size
                ),
            });
        }
        match &m.previous {
            None => self.passed.push(Check {
                name: PREVIOUS_EXPORT,
                detail: "none: this is the org's first export".to_owned(),
            }),
            Some(previous) => {
                let fail = |detail: String| EvidenceFailure::failed(PREVIOUS_EXPORT, detail);
                let before = open_head(&previous.tree_head, keys, &self.org).map_err(fail)?;
                let path = parse_hashes(&previous.consistency)
                    .ok_or_else(|| fail("a proof hash is not hex".to_owned()))?;
                if before.size > self.head.size
                    || !verify_consistency(
                        before.size,
                        self.head.size,
                        &before.root,
                        &self.head.root,
                        &path,
                    )
                {
                    return Err(fail(format!(
                        "the tree of {} (previous export) is not a prefix of the tree of {}",
                        before.size, self.head.size
                    )));
                }
                self.passed.push(Check {
                    name: PREVIOUS_EXPORT,
                    detail: format!(
                        "the previous export's tree of {} (signed at {}) is a prefix of this \
                         one's: nothing before it was rewritten",
                        before.size, before.signed_at
                    ),
                });
            }
        }
        Ok(())
    }
}

fn open_head(note: &str, keys: &Jwks, org: &OrgId) -> Result<TreeHead, String> {
    let (head, _) = TreeHead::open(note, keys).map_err(|e| e.to_string())?;
    if head.org().as_ref() != Some(org) {
        return Err(format!(
            "the head is of {}, the export of {org}",
            head.origin
        ));
    }
    Ok(head)
}

fn parse_hashes(hashes: &[String]) -> Option<Vec<Hash>> {
    hashes
        .iter()
        .map(|h| h.parse::<EventHash>().ok().map(|h| h.0))
        .collect()
}

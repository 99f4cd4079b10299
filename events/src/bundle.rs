//! Signed evidence bundles (`docs/evidence-format.md`): DashClaw's
//! `dashclaw-compliance-bundle/v1` envelope and signature, with a payload that also carries the
//! ledger's own evidence: the events exactly as chained, an inclusion proof of each to one
//! signed tree head, and the policy sets the decisions name. [`verify_ledger_evidence`] checks
//! everything a bundle states about the ledger with the published keys alone (no server, no
//! database); what the events *mean* (policy sets, replayed verdicts) is checked by the caller.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::envelope::entry_hash_input;
use crate::merkle::{leaf_hash, verify_inclusion, Hash};
use crate::{genesis_hash, CanonicalJson, Error, EventHash, Jwks, LedgerKey, OrgId, TreeHead};

/// The envelope's `version` (DashClaw's bundle format, kept so its tools verify ours).
pub const BUNDLE_VERSION: &str = "dashclaw-compliance-bundle/v1";
/// `payload.ledger.format`: the ledger evidence inside the payload.
pub const EVIDENCE_FORMAT: &str = "dashclaw-ledger-evidence/v1";

/// DashClaw's `digestJson`: `"sha256:" + base64url(SHA-256(RFC 8785 JSON of value))`.
pub fn digest_json<T: Serialize>(value: &T) -> Result<String, Error> {
    let canonical = CanonicalJson::encode(value)?;
    Ok(format!(
        "sha256:{}",
        B64.encode(Sha256::digest(canonical.as_str()))
    ))
}

/// A signed bundle, as served and as saved to a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    pub version: String,
    #[serde(rename = "issuedAt")]
    pub issued_at: String,
    #[serde(rename = "engineVersion")]
    pub engine_version: String,
    /// `digest_json(payload)`.
    #[serde(rename = "payloadHash")]
    pub payload_hash: String,
    #[serde(rename = "prevBundleHash")]
    pub prev_bundle_hash: Option<String>,
    pub payload: Value,
    pub signature: BundleSignature,
}

/// Ed25519 over the RFC 8785 JSON of the signed base (every member but `payload` and
/// `signature`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSignature {
    pub alg: String,
    /// RFC 7638 thumbprint of the signing key, as in the JWKS.
    pub kid: String,
    /// base64url, no padding.
    pub sig: String,
}

#[derive(Serialize)]
struct SignedBase<'a> {
    version: &'a str,
    #[serde(rename = "issuedAt")]
    issued_at: &'a str,
    #[serde(rename = "engineVersion")]
    engine_version: &'a str,
    #[serde(rename = "payloadHash")]
    payload_hash: &'a str,
    #[serde(rename = "prevBundleHash")]
    prev_bundle_hash: Option<&'a str>,
}

impl Bundle {
    /// Signs `payload` as a bundle issued at `issued_at` (RFC 3339).
    pub fn sign(
        key: &LedgerKey,
        issued_at: String,
        engine_version: &str,
        payload: Value,
    ) -> Result<Self, Error> {
        let mut bundle = Self {
            version: BUNDLE_VERSION.to_owned(),
            issued_at,
            engine_version: engine_version.to_owned(),
            payload_hash: digest_json(&payload)?,
            prev_bundle_hash: None,
            payload,
            signature: BundleSignature {
                alg: "EdDSA".to_owned(),
                kid: key.kid().to_owned(),
                sig: String::new(),
            },
        };
        bundle.signature.sig = key.sign(bundle.signed_base()?.as_str().as_bytes());
        Ok(bundle)
    }

    /// The bytes the signature covers.
    pub fn signed_base(&self) -> Result<CanonicalJson, Error> {
        CanonicalJson::encode(&SignedBase {
            version: &self.version,
            issued_at: &self.issued_at,
            engine_version: &self.engine_version,
            payload_hash: &self.payload_hash,
            prev_bundle_hash: self.prev_bundle_hash.as_deref(),
        })
    }

    /// Checks the signature under the key of `keys` that the signature names.
    pub fn verify_signature(&self, keys: &Jwks) -> Result<(), Error> {
        keys.verify(
            &self.signature.kid,
            self.signed_base()?.as_str().as_bytes(),
            &self.signature.sig,
        )
    }
}

/// `payload.ledger`: what the ledger says about the bundle's subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEvidence {
    pub format: String,
    pub org_id: String,
    /// The signed tree head (C2SP signed note) every proof leads to.
    pub tree_head: String,
    /// In `ledger_seq` order.
    pub events: Vec<EvidenceEvent>,
    /// The policy sets the decisions among the events name, by version.
    pub policy_sets: Vec<PolicySetText>,
}

/// One event: its entry (the envelope with its hash, RFC 8785 JSON, byte for byte what the
/// export writes) and its RFC 9162 audit path to the tree head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceEvent {
    pub entry: String,
    /// Lowercase hex hashes, leaf to root.
    pub audit_path: Vec<String>,
}

/// A policy set as its decisions name it: `version` is the lowercase hex SHA-256 of the
/// `policies` text, exactly these bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySetText {
    pub version: String,
    pub policies: String,
}

impl PolicySetText {
    /// The version these policies hash to.
    pub fn version_of(policies: &str) -> String {
        hex::encode(Sha256::digest(policies.as_bytes()))
    }
}

/// An event read back from its entry, once its hash verified.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProvenEvent {
    pub org_id: String,
    pub ledger_seq: u64,
    pub stream_type: String,
    pub stream_id: String,
    pub stream_seq: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// A check that held, as one line of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub detail: String,
}

/// Why a bundle or an export is not verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceFailure {
    /// Not evidence this verifier can read (exit 2 of `verify-bundle` and `verify-export`).
    #[error("unusable: {0}")]
    Unusable(String),
    /// A check failed: the evidence is not what it claims (exit 1).
    #[error("{check}: {detail}")]
    Failed { check: &'static str, detail: String },
}

impl EvidenceFailure {
    pub(crate) fn failed(check: &'static str, detail: impl Into<String>) -> Self {
        Self::Failed {
            check,
            detail: detail.into(),
        }
    }

    /// DashClaw's `reason` (contract 13.5), with ours for the ledger checks.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unusable(_) => "malformed",
            Self::Failed { check, .. } => match *check {
                PAYLOAD_HASH => "payload_tampered",
                SIGNATURE => "bad_signature",
                TREE_HEAD => "tree_head_invalid",
                EVENT_HASHES | ORG => "event_tampered",
                ORDER | CHAIN_LINKS | STREAMS => "chain_broken",
                INCLUSION => "proof_invalid",
                SUBJECT => "subject_mismatch",
                POLICY_SETS => "policy_mismatch",
                REPLAY => "replay_mismatch",
                _ => "error",
            },
        }
    }
}

/// The check names, as reports print them.
pub const PAYLOAD_HASH: &str = "payload hash";
pub const SIGNATURE: &str = "bundle signature";
pub const TREE_HEAD: &str = "tree head";
pub const EVENT_HASHES: &str = "event hashes";
pub const ORG: &str = "org";
pub const ORDER: &str = "event order";
pub const CHAIN_LINKS: &str = "chain links";
pub const STREAMS: &str = "streams";
pub const INCLUSION: &str = "inclusion proofs";
pub const SUBJECT: &str = "subject";
pub const POLICY_SETS: &str = "policy sets";
pub const REPLAY: &str = "replayed verdicts";

/// What the ledger checks established.
#[derive(Debug, Clone)]
pub struct VerifiedEvidence {
    /// The `kid` of the key that signed the bundle.
    pub kid: String,
    /// The `kid` of the key that signed the tree head.
    pub tree_head_kid: String,
    pub tree_head: TreeHead,
    pub events: Vec<ProvenEvent>,
    pub policy_sets: Vec<PolicySetText>,
}

/// The checks that held, in order, and the outcome: what was established, or the first check
/// that failed (later checks are not run: they would rest on it).
#[derive(Debug, Clone)]
pub struct Report {
    pub passed: Vec<Check>,
    pub outcome: Result<VerifiedEvidence, EvidenceFailure>,
}

/// Reads a bundle from its JSON text.
pub fn parse_bundle(text: &str) -> Result<Bundle, EvidenceFailure> {
    let bundle: Bundle = serde_json::from_str(text)
        .map_err(|e| EvidenceFailure::Unusable(format!("not a signed bundle: {e}")))?;
    if bundle.version != BUNDLE_VERSION {
        return Err(EvidenceFailure::Unusable(format!(
            "version {:?}, expected {BUNDLE_VERSION:?}",
            bundle.version
        )));
    }
    Ok(bundle)
}

/// Verifies everything `bundle` states about the ledger, in this order: the payload hash, the
/// bundle's signature (a key of `keys`), the tree head's signature (a key of `keys`) and org,
/// each event's hash over its exact bytes, that every event is of that org, in increasing
/// `ledger_seq` order within the tree, linked to its predecessor where both are present, every
/// stream complete from its first event, and each event's inclusion proof to the head's root.
pub fn verify_ledger_evidence(bundle: &Bundle, keys: &Jwks) -> Report {
    let mut passed = Vec::new();
    let outcome = run_checks(bundle, keys, &mut passed);
    Report { passed, outcome }
}

fn run_checks(
    bundle: &Bundle,
    keys: &Jwks,
    passed: &mut Vec<Check>,
) -> Result<VerifiedEvidence, EvidenceFailure> {
    let mut pass = |name: &'static str, detail: String| passed.push(Check { name, detail });
    let evidence: LedgerEvidence = bundle
        .payload
        .get("ledger")
        .cloned()
        .map(serde_json::from_value)
        .ok_or_else(|| EvidenceFailure::Unusable("the payload has no ledger evidence".into()))?
        .map_err(|e| EvidenceFailure::Unusable(format!("payload.ledger: {e}")))?;
    if evidence.format != EVIDENCE_FORMAT {
        return Err(EvidenceFailure::Unusable(format!(
            "payload.ledger.format {:?}, expected {EVIDENCE_FORMAT:?}",
            evidence.format
        )));
    }
    let org = OrgId::new(evidence.org_id.clone())
        .map_err(|e| EvidenceFailure::Unusable(format!("payload.ledger.org_id: {e}")))?;

    let digest = digest_json(&bundle.payload)
        .map_err(|e| EvidenceFailure::Unusable(format!("payload: {e}")))?;
    if digest != bundle.payload_hash {
        return Err(EvidenceFailure::failed(
            PAYLOAD_HASH,
            format!(
                "the payload digests to {digest}, the bundle states {}",
                bundle.payload_hash
            ),
        ));
    }
    pass(
        PAYLOAD_HASH,
        format!("{digest} is the digest of the payload"),
    );

    bundle
        .verify_signature(keys)
        .map_err(|e| EvidenceFailure::failed(SIGNATURE, e.to_string()))?;
    pass(
        SIGNATURE,
        format!("Ed25519 by {} (in the key set)", bundle.signature.kid),
    );

    let (head, head_kid) = TreeHead::open(&evidence.tree_head, keys)
        .map_err(|e| EvidenceFailure::failed(TREE_HEAD, e.to_string()))?;
    if head.org().as_ref() != Some(&org) {
        return Err(EvidenceFailure::failed(
            TREE_HEAD,
            format!("the head is of {}, the bundle of {org}", head.origin),
        ));
    }
    pass(
        TREE_HEAD,
        format!(
            "{} size {} root {}, signed by {head_kid} at {}",
            head.origin,
            head.size,
            hex::encode(head.root),
            head.signed_at
        ),
    );

    let mut events = Vec::with_capacity(evidence.events.len());
    for (i, e) in evidence.events.iter().enumerate() {
        let (stated, hashed) = entry_hash_input(&e.entry).ok_or_else(|| {
            EvidenceFailure::failed(EVENT_HASHES, format!("event #{i} has no \"hash\" member"))
        })?;
        let computed = EventHash(Sha256::digest(hashed.as_bytes()).into());
        if computed != stated {
            return Err(EvidenceFailure::failed(
                EVENT_HASHES,
                format!("event #{i}: its bytes hash to {computed}, it states {stated}"),
            ));
        }
        let event: ProvenEvent = serde_json::from_str(&e.entry).map_err(|err| {
            EvidenceFailure::failed(
                EVENT_HASHES,
                format!("event #{i} is not an envelope: {err}"),
            )
        })?;
        // The member hashed around must be the envelope's own `hash` (not one nested in its
        // payload): the links and the proof below use this one.
        if event.hash != stated.to_hex() {
            return Err(EvidenceFailure::failed(
                EVENT_HASHES,
                format!(
                    "event #{i}: the hash it states ({stated}) is not its envelope's own hash \
                     member ({})",
                    event.hash
                ),
            ));
        }
        events.push(event);
    }
    pass(
        EVENT_HASHES,
        format!(
            "{} events, each the SHA-256 of its exact bytes",
            events.len()
        ),
    );

    if let Some(e) = events.iter().find(|e| e.org_id != org.as_str()) {
        return Err(EvidenceFailure::failed(
            ORG,
            format!("event {} is of org {:?}, not {org}", e.ledger_seq, e.org_id),
        ));
    }
    pass(ORG, format!("every event is on {org}'s chain"));

    for pair in events.windows(2) {
        if pair[1].ledger_seq <= pair[0].ledger_seq {
            return Err(EvidenceFailure::failed(
                ORDER,
                format!(
                    "event {} comes after event {}",
                    pair[1].ledger_seq, pair[0].ledger_seq
                ),
            ));
        }
    }
    if let Some(e) = events
        .iter()
        .find(|e| e.ledger_seq == 0 || e.ledger_seq > head.size)
    {
        return Err(EvidenceFailure::failed(
            ORDER,
            format!(
                "event {} is outside the tree of {} events",
                e.ledger_seq, head.size
            ),
        ));
    }
    pass(
        ORDER,
        format!(
            "increasing ledger_seq, all within the tree of {}",
            head.size
        ),
    );

    let mut links = 0;
    let genesis = genesis_hash(&org).to_hex();
    for (i, e) in events.iter().enumerate() {
        let expected = match i.checked_sub(1).map(|p| &events[p]) {
            Some(prev) if prev.ledger_seq + 1 == e.ledger_seq => Some(prev.hash.as_str()),
            _ if e.ledger_seq == 1 => Some(genesis.as_str()),
            _ => None,
        };
        if let Some(expected) = expected {
            if e.prev_hash != expected {
                return Err(EvidenceFailure::failed(
                    CHAIN_LINKS,
                    format!(
                        "event {} links to {}, the event before it is {expected}",
                        e.ledger_seq, e.prev_hash
                    ),
                ));
            }
            links += 1;
        }
        if e.ledger_seq == head.size && e.hash != head.chain_head.to_hex() {
            return Err(EvidenceFailure::failed(
                CHAIN_LINKS,
                format!(
                    "event {} is {}, the tree head's chain head is {}",
                    e.ledger_seq, e.hash, head.chain_head
                ),
            ));
        }
    }
    pass(
        CHAIN_LINKS,
        format!("{links} links between adjacent events hold"),
    );

    let mut streams: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &events {
        let last = streams.entry(e.stream_id.as_str()).or_insert(0);
        if e.stream_seq != *last + 1 {
            return Err(EvidenceFailure::failed(
                STREAMS,
                format!(
                    "{} jumps from event {} to {} (ledger_seq {})",
                    e.stream_id, last, e.stream_seq, e.ledger_seq
                ),
            ));
        }
        *last = e.stream_seq;
    }
    pass(
        STREAMS,
        format!(
            "{} streams, each complete from its first event",
            streams.len()
        ),
    );

    for (e, proven) in evidence.events.iter().zip(&events) {
        let path = e
            .audit_path
            .iter()
            .map(|h| parse_hash(h))
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| {
                EvidenceFailure::failed(
                    INCLUSION,
                    format!("event {}: a path hash is not hex", proven.ledger_seq),
                )
            })?;
        let leaf = leaf_hash(&parse_hash(&proven.hash).unwrap_or_default());
        if !verify_inclusion(proven.ledger_seq - 1, head.size, &leaf, &path, &head.root) {
            return Err(EvidenceFailure::failed(
                INCLUSION,
                format!(
                    "event {} is not leaf {} of the tree of {} with root {}",
                    proven.ledger_seq,
                    proven.ledger_seq - 1,
                    head.size,
                    hex::encode(head.root)
                ),
            ));
        }
    }
    pass(
        INCLUSION,
        format!(
            "every event is in the signed tree of {} (RFC 9162 audit paths)",
            head.size
        ),
    );

    Ok(VerifiedEvidence {
        kid: bundle.signature.kid.clone(),
        tree_head_kid: head_kid,
        tree_head: head,
        events,
        policy_sets: evidence.policy_sets,
    })
}

fn parse_hash(text: &str) -> Option<Hash> {
    text.parse::<EventHash>().ok().map(|h| h.0)
}

//! Signed tree heads: an org's Merkle tree size and root, bound to its chain head and the
//! signing time, as a C2SP `tlog-checkpoint` body in a C2SP `signed-note` (the format of Go's
//! sumdb, Tessera and Rekor v2), so standard transparency-log tools read them:
//!
//! ```text
//! <log origin>/<org_id>
//! <tree size>
//! <base64 root>
//! chain-head <hex hash of event `tree size`>
//! signed-at <RFC 3339 UTC time>
//!
//! — <log origin> <base64(key id || Ed25519 signature)>
//! ```
//!
//! The note's key name is the log origin (the part before `/<org_id>`); the key is the
//! server's ledger key, also published in the JWKS. `docs/proofs.md` specifies the bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::merkle::Hash;
use crate::note::{self, NoteError, NoteVerifier};
use crate::{EventHash, Jwks, LedgerKey, OrgId};

/// What a tree head states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// `<log origin>/<org_id>`.
    pub origin: String,
    /// Events covered: `ledger_seq` 1..=size.
    pub size: u64,
    /// The RFC 9162 root of the tree of `size` leaves.
    pub root: Hash,
    /// The chain hash of event `size` (the org's genesis value when `size` is 0).
    pub chain_head: EventHash,
    /// RFC 3339 UTC time of signing, e.g. `2026-12-03T09:30:00.000Z`.
    pub signed_at: String,
}

/// Why a tree head cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeHeadError {
    #[error("not a tree head: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("signed by {0}, which no key in the key set verifies")]
    UnknownSigner(String),
}

impl TreeHead {
    /// The org the origin names (its last `/`-separated part).
    pub fn org(&self) -> Option<OrgId> {
        let (_, org) = self.origin.rsplit_once('/')?;
        OrgId::new(org).ok()
    }

    /// The note body (the signed bytes).
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\nchain-head {}\nsigned-at {}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root),
            self.chain_head.to_hex(),
            self.signed_at
        )
    }

    /// Reads a note body written by [`TreeHead::body`].
    pub fn parse(body: &str) -> Result<Self, TreeHeadError> {
        let bad = TreeHeadError::Malformed;
        let lines: Vec<&str> = body
            .strip_suffix('\n')
            .ok_or(bad("the body must end with a newline"))?
            .split('\n')
            .collect();
        let [origin, size, root, chain_head, signed_at] = lines[..] else {
            return Err(bad(
                "expected five lines: origin, size, root, chain-head, signed-at",
            ));
        };
        if origin.is_empty() || origin.chars().any(char::is_whitespace) {
            return Err(bad("the origin must be non-empty text without spaces"));
        }
        let size_ok = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size = size.parse::<u64>().ok().filter(|_| size_ok).ok_or(bad(
            "the size must be a decimal number without leading zeros",
        ))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(bad("the root must be 32 bytes of standard base64"))?;
        let chain_head = chain_head
            .strip_prefix("chain-head ")
            .and_then(|h| h.parse::<EventHash>().ok())
            .ok_or(bad("line 4 must be \"chain-head <64 lowercase hex>\""))?;
        let signed_at = signed_at
            .strip_prefix("signed-at ")
            .filter(|t| !t.is_empty())
            .ok_or(bad("line 5 must be \"signed-at <time>\""))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            chain_head,
            signed_at: signed_at.to_owned(),
        })
    }

    /// Opens a signed tree head with the published keys: the signature of some line must
    /// verify under a key of `keys` (its key id computed with the line's name). Returns the
    /// head and the `kid` (RFC 7638 thumbprint) of the key that signed it.
    pub fn open(note: &str, keys: &Jwks) -> Result<(Self, String), TreeHeadError> {
        let names = note::signer_names(note)?;
        for name in &names {
            for jwk in &keys.keys {
                let Ok(key) = jwk.verifying_key() else {
                    continue;
                };
                let Ok(verifier) = NoteVerifier::new(name, key) else {
                    continue;
                };
                match verifier.open(note) {
                    Ok(body) => return Ok((Self::parse(body)?, jwk.thumbprint())),
                    Err(NoteError::NotSigned(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Err(TreeHeadError::UnknownSigner(names.join(", ")))
    }
}

/// The server's tree-head signer: its ledger key under the log origin's name.
#[derive(Debug, Clone)]
pub struct LogSigner {
    key: LedgerKey,
    origin: String,
}

impl LogSigner {
    /// `origin` is the log origin (`DASHCLAW_LOG_ORIGIN`, e.g. `dashclaw.example.com`): a
    /// note key name, so non-empty, without spaces or `+`.
    pub fn new(key: LedgerKey, origin: &str) -> Result<Self, NoteError> {
        NoteVerifier::new(origin, key.verifying_key())?;
        Ok(Self {
            key,
            origin: origin.to_owned(),
        })
    }

    pub fn key(&self) -> &LedgerKey {
        &self.key
    }

    /// The log origin, also the note key name.
    pub fn name(&self) -> &str {
        &self.origin
    }

    /// The origin line of `org`'s tree heads.
    pub fn origin_of(&self, org: &OrgId) -> String {
        format!("{}/{org}", self.origin)
    }

    /// The note verifier key, `<name>+<hex key id>+<base64(0x01 || public key)>`.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.origin.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// The signed note of `head`.
    pub fn sign(&self, head: &TreeHead) -> String {
        // The body always ends with one newline and holds no blank line, and the name was
        // checked at construction: signing cannot fail.
        note::sign(&head.body(), &self.origin, self.key.signing_key()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> TreeHead {
        TreeHead {
            origin: "dashclaw.example/org_a".into(),
            size: 42,
            root: [7; 32],
            chain_head: EventHash([0xab; 32]),
            signed_at: "2026-12-03T09:30:00.000Z".into(),
        }
    }

    fn signer(seed: u8) -> LogSigner {
        LogSigner::new(LedgerKey::from_seed([seed; 32]), "dashclaw.example").unwrap()
    }

    #[test]
    fn the_body_is_a_tlog_checkpoint_with_two_extension_lines() {
        assert_eq!(
            head().body(),
            format!(
                "dashclaw.example/org_a\n42\n{}\nchain-head {}\nsigned-at 2026-12-03T09:30:00.000Z\n",
                STANDARD.encode([7u8; 32]),
                "ab".repeat(32)
            )
        );
        assert_eq!(TreeHead::parse(&head().body()), Ok(head()));
        assert_eq!(head().org().unwrap().as_str(), "org_a");
    }

    #[test]
    fn a_signed_head_opens_with_the_jwks_and_with_the_verifier_key() {
        let signer = signer(1);
        let note = signer.sign(&head());
        let keys = Jwks {
            keys: vec![
                LedgerKey::from_seed([9; 32]).public_jwk(),
                signer.key().public_jwk(),
            ],
        };
        let (opened, kid) = TreeHead::open(&note, &keys).unwrap();
        assert_eq!(opened, head());
        assert_eq!(kid, signer.key().kid());
        let verifier = NoteVerifier::parse(&signer.verifier().encode()).unwrap();
        assert_eq!(verifier.open(&note).unwrap(), head().body());
        assert!(note.starts_with(&head().body()));
        assert!(note.contains("\n\n\u{2014} dashclaw.example "));
    }

    #[test]
    fn a_head_signed_by_another_key_or_edited_does_not_open() {
        let note = signer(1).sign(&head());
        let others = Jwks {
            keys: vec![signer(2).key().public_jwk()],
        };
        assert_eq!(
            TreeHead::open(&note, &others),
            Err(TreeHeadError::UnknownSigner("dashclaw.example".into()))
        );
        let keys = Jwks {
            keys: vec![signer(1).key().public_jwk()],
        };
        let edited = note.replacen("\n42\n", "\n43\n", 1);
        assert!(matches!(
            TreeHead::open(&edited, &keys),
            Err(TreeHeadError::Note(NoteError::BadSignature(_)))
        ));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let body = head().body();
        for bad in [
            body.trim_end().to_owned(),
            body.replacen("\n42\n", "\n042\n", 1),
            body.replacen("\n42\n", "\n-1\n", 1),
            body.replacen("chain-head ", "chain ", 1),
            body.replacen("signed-at 2026-12-03T09:30:00.000Z\n", "", 1),
            body.replacen(&STANDARD.encode([7u8; 32]), "AAAA", 1),
            format!("{body}extra\n"),
        ] {
            assert!(TreeHead::parse(&bad).is_err(), "{bad:?}");
        }
        assert!(LogSigner::new(LedgerKey::from_seed([1; 32]), "has space").is_err());
        assert!(LogSigner::new(LedgerKey::from_seed([1; 32]), "a+b").is_err());
    }
}

//! Signed checkpoints: the server's Ed25519 signature over (org, size, head hash, time).
//!
//! A checkpoint pins an org's history up to `size`: whoever holds it can detect any later
//! rewrite of those events, even one with every hash recomputed.

use serde::{Deserialize, Serialize};

use crate::{CanonicalJson, Error, EventHash, Jwks, LedgerKey, OrgId};

/// The `type` member of the signed statement; part of the format.
pub const CHECKPOINT_TYPE: &str = "dashclaw.checkpoint/v1";

/// The statement a checkpoint signs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub org_id: OrgId,
    /// Number of events covered: `ledger_seq` 1..=size.
    pub size: u64,
    /// Hash of event `size` (the org's genesis value when `size` is 0).
    pub head_hash: EventHash,
    /// RFC 3339 UTC time of signing, e.g. `2026-11-21T09:30:00.000Z`.
    pub signed_at: String,
}

impl Checkpoint {
    /// The signed bytes: RFC 8785 JSON of
    /// `{"head_hash","org_id","signed_at","size","type":"dashclaw.checkpoint/v1"}`.
    pub fn signing_input(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Statement<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(flatten)]
            checkpoint: &'a Checkpoint,
        }
        let statement = Statement {
            kind: CHECKPOINT_TYPE,
            checkpoint: self,
        };
        // Strings and small integers always canonicalize.
        CanonicalJson::encode(&statement)
            .map(|c| c.into_string().into_bytes())
            .unwrap_or_default()
    }

    pub fn sign(self, key: &LedgerKey) -> SignedCheckpoint {
        let signature = key.sign(&self.signing_input());
        SignedCheckpoint {
            checkpoint: self,
            kid: key.kid().to_owned(),
            signature,
        }
    }
}

/// A checkpoint with the `kid` of the key that signed it and the base64url signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    pub kid: String,
    pub signature: String,
}

impl SignedCheckpoint {
    pub fn verify(&self, keys: &Jwks) -> Result<(), Error> {
        keys.verify(&self.kid, &self.checkpoint.signing_input(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            org_id: OrgId::new("org_test").unwrap(),
            size: 42,
            head_hash: EventHash([0xab; 32]),
            signed_at: "2026-11-21T09:30:00.000Z".into(),
        }
    }

    #[test]
    fn signing_input_is_canonical() {
        assert_eq!(
            String::from_utf8(checkpoint().signing_input()).unwrap(),
            format!(
                r#"{{"head_hash":"{}","org_id":"org_test","signed_at":"2026-11-21T09:30:00.000Z","size":42,"type":"dashclaw.checkpoint/v1"}}"#,
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn signed_checkpoints_verify_and_tampering_fails() {
        let key = LedgerKey::from_seed([3; 32]);
        let keys = Jwks {
            keys: vec![key.public_jwk()],
        };
        let signed = checkpoint().sign(&key);
        assert_eq!(signed.verify(&keys), Ok(()));
        let mut forged = signed.clone();
        forged.checkpoint.size = 41;
        assert!(forged.verify(&keys).is_err());
        assert!(signed.verify(&Jwks::default()).is_err());
    }
}

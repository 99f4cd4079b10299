//! The event envelope: one row of an org's chain, and how its hash is computed.

use sha2::{Digest, Sha256};

use crate::canonical::push_string;
use crate::{CanonicalJson, EventHash, OrgId};

/// Domain separator of the genesis value; part of the format, never change it.
const GENESIS_PREFIX: &str = "dashclaw-ledger-genesis/v1:";

/// `prev_hash` of an org's first event: `SHA-256("dashclaw-ledger-genesis/v1:" || org_id)`.
pub fn genesis_hash(org: &OrgId) -> EventHash {
    let mut h = Sha256::new();
    h.update(GENESIS_PREFIX.as_bytes());
    h.update(org.as_str().as_bytes());
    EventHash(h.finalize().into())
}

/// One event as it sits on the ledger.
///
/// `hash = SHA-256(JCS(envelope without "hash"))`, where the envelope object has exactly the
/// keys below (see `docs/ledger-format.md`). `payload` and `metadata` are stored as canonical
/// JSON text, so the canonical form of the whole object is a plain concatenation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub org_id: OrgId,
    /// Position in the org's chain: 1, 2, 3, ... with no gaps.
    pub ledger_seq: u64,
    /// Aggregate type, e.g. `Action`.
    pub stream_type: String,
    /// Org-scoped aggregate id, `<org_id>/<id>`.
    pub stream_id: String,
    /// Position within the stream: 1, 2, 3, ...
    pub stream_seq: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: CanonicalJson,
    /// A JSON object: `recorded_at` always; `actor`, `agent_id`, `request_id` when known.
    pub metadata: CanonicalJson,
    pub prev_hash: EventHash,
    pub hash: EventHash,
}

impl Envelope {
    /// The exact bytes that are hashed: RFC 8785 JSON of every field but `hash`.
    pub fn hash_input(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(200 + self.payload.as_str().len() + self.metadata.as_str().len());
        // Keys in RFC 8785 order (all ASCII, so byte order is UTF-16 order).
        out.extend_from_slice(b"{\"event_type\":");
        push_string(&mut out, &self.event_type);
        out.extend_from_slice(b",\"event_version\":");
        push_string(&mut out, &self.event_version);
        out.extend_from_slice(b",\"ledger_seq\":");
        out.extend_from_slice(self.ledger_seq.to_string().as_bytes());
        out.extend_from_slice(b",\"metadata\":");
        out.extend_from_slice(self.metadata.as_str().as_bytes());
        out.extend_from_slice(b",\"org_id\":");
        push_string(&mut out, self.org_id.as_str());
        out.extend_from_slice(b",\"payload\":");
        out.extend_from_slice(self.payload.as_str().as_bytes());
        out.extend_from_slice(b",\"prev_hash\":\"");
        out.extend_from_slice(&self.prev_hash.hex_bytes());
        out.extend_from_slice(b"\",\"stream_id\":");
        push_string(&mut out, &self.stream_id);
        out.extend_from_slice(b",\"stream_seq\":");
        out.extend_from_slice(self.stream_seq.to_string().as_bytes());
        out.extend_from_slice(b",\"stream_type\":");
        push_string(&mut out, &self.stream_type);
        out.push(b'}');
        out
    }

    /// Recomputes the hash from the envelope's contents.
    pub fn compute_hash(&self) -> EventHash {
        EventHash(Sha256::digest(self.hash_input()).into())
    }

    /// Sets `hash` from the contents; used by the one writer of the ledger.
    pub fn seal(mut self) -> Self {
        self.hash = self.compute_hash();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn sample(seq: u64, prev: EventHash) -> Envelope {
        let org = OrgId::new("org_test").unwrap();
        Envelope {
            stream_id: org.stream_id(&format!("act_{seq}")),
            org_id: org,
            ledger_seq: seq,
            stream_type: "Action".into(),
            stream_seq: 1,
            event_type: "ActionCreated".into(),
            event_version: "1.0".into(),
            payload: CanonicalJson::encode(&json!({"n": seq, "goal": "deploy \"v2\""})).unwrap(),
            metadata: CanonicalJson::encode(&json!({"recorded_at": "2026-11-21T00:00:00.000Z"}))
                .unwrap(),
            prev_hash: prev,
            hash: EventHash([0; 32]),
        }
        .seal()
    }

    #[test]
    fn hash_input_is_the_jcs_of_the_envelope_object() {
        let e = sample(7, EventHash([9; 32]));
        let as_object = json!({
            "org_id": e.org_id.as_str(),
            "ledger_seq": e.ledger_seq,
            "stream_type": e.stream_type,
            "stream_id": e.stream_id,
            "stream_seq": e.stream_seq,
            "event_type": e.event_type,
            "event_version": e.event_version,
            "payload": e.payload.to_value().unwrap(),
            "metadata": e.metadata.to_value().unwrap(),
            "prev_hash": e.prev_hash.to_hex(),
        });
        assert_eq!(
            String::from_utf8(e.hash_input()).unwrap(),
            CanonicalJson::encode(&as_object).unwrap().as_str()
        );
    }

    #[test]
    fn genesis_differs_per_org() {
        let a = genesis_hash(&OrgId::new("a").unwrap());
        let b = genesis_hash(&OrgId::new("b").unwrap());
        assert_ne!(a, b);
    }
}

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

/// An envelope borrowed from wherever it is stored: verification reads every event of the
/// ledger, and borrowing spares an allocation per field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeRef<'a> {
    pub org_id: &'a OrgId,
    pub ledger_seq: u64,
    pub stream_type: &'a str,
    pub stream_id: &'a str,
    pub stream_seq: u64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    /// Canonical JSON text, as stored.
    pub payload: &'a str,
    /// Canonical JSON text, as stored.
    pub metadata: &'a str,
    pub prev_hash: EventHash,
    pub hash: EventHash,
}

impl EnvelopeRef<'_> {
    /// Appends the exact bytes that are hashed (RFC 8785 JSON of every field but `hash`) to
    /// `out`.
    pub fn write_hash_input(&self, out: &mut Vec<u8>) {
        self.write_object(out, false);
    }

    /// Appends the envelope *with* its `hash` as RFC 8785 JSON: an export line, a bundle's
    /// event entry. The hashed bytes are these with the `,"hash":"<hex>"` member taken out
    /// (it sorts between `event_version` and `ledger_seq`); see [`entry_hash_input`].
    pub fn write_entry(&self, out: &mut Vec<u8>) {
        self.write_object(out, true);
    }

    /// The envelope with its hash as RFC 8785 JSON text (see [`EnvelopeRef::write_entry`]).
    pub fn entry(&self) -> String {
        let mut out = Vec::new();
        self.write_entry(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn write_object(&self, out: &mut Vec<u8>, with_hash: bool) {
        let mut number = itoa_buffer();
        out.reserve(200 + self.payload.len() + self.metadata.len());
        // Keys in RFC 8785 order (all ASCII, so byte order is UTF-16 order).
        out.extend_from_slice(b"{\"event_type\":");
        push_string(out, self.event_type);
        out.extend_from_slice(b",\"event_version\":");
        push_string(out, self.event_version);
        if with_hash {
            out.extend_from_slice(b",\"hash\":\"");
            out.extend_from_slice(&self.hash.hex_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b",\"ledger_seq\":");
        out.extend_from_slice(format_u64(&mut number, self.ledger_seq));
        out.extend_from_slice(b",\"metadata\":");
        out.extend_from_slice(self.metadata.as_bytes());
        out.extend_from_slice(b",\"org_id\":");
        push_string(out, self.org_id.as_str());
        out.extend_from_slice(b",\"payload\":");
        out.extend_from_slice(self.payload.as_bytes());
        out.extend_from_slice(b",\"prev_hash\":\"");
        out.extend_from_slice(&self.prev_hash.hex_bytes());
        out.extend_from_slice(b"\",\"stream_id\":");
        push_string(out, self.stream_id);
        out.extend_from_slice(b",\"stream_seq\":");
        out.extend_from_slice(format_u64(&mut number, self.stream_seq));
        out.extend_from_slice(b",\"stream_type\":");
        push_string(out, self.stream_type);
        out.push(b'}');
    }

    /// Recomputes the hash, using `scratch` for the hashed bytes (cleared first).
    pub fn compute_hash_with(&self, scratch: &mut Vec<u8>) -> EventHash {
        scratch.clear();
        self.write_hash_input(scratch);
        EventHash(Sha256::digest(scratch.as_slice()).into())
    }
}

/// An entry (an envelope with its hash, as [`EnvelopeRef::write_entry`] writes it) split into
/// its stated hash and the two slices the hash covers (the text before and after the
/// `,"hash":"<hex>"` member), without copying. Exact, without parsing: inside JSON strings
/// every `"` is escaped, so the first `,"hash":"` of the text is the top-level member. `None`
/// when the text has no such member.
pub fn entry_parts(entry: &str) -> Option<(EventHash, &str, &str)> {
    const MEMBER: &str = ",\"hash\":\"";
    let at = entry.find(MEMBER)?;
    let hex_start = at + MEMBER.len();
    let hash: EventHash = entry.get(hex_start..hex_start + 64)?.parse().ok()?;
    let rest = entry.get(hex_start + 64..)?.strip_prefix('"')?;
    Some((hash, &entry[..at], rest))
}

/// [`entry_parts`] with the hashed bytes joined.
pub fn entry_hash_input(entry: &str) -> Option<(EventHash, String)> {
    let (hash, before, after) = entry_parts(entry)?;
    Some((hash, format!("{before}{after}")))
}

fn itoa_buffer() -> [u8; 20] {
    [0; 20]
}

/// Decimal digits of `n` (JS formatting of an integer below 2^53 is the same), in `buf`.
fn format_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

impl Envelope {
    /// The envelope's fields, borrowed.
    pub fn as_ref(&self) -> EnvelopeRef<'_> {
        EnvelopeRef {
            org_id: &self.org_id,
            ledger_seq: self.ledger_seq,
            stream_type: &self.stream_type,
            stream_id: &self.stream_id,
            stream_seq: self.stream_seq,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: self.payload.as_str(),
            metadata: self.metadata.as_str(),
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }

    /// The exact bytes that are hashed: RFC 8785 JSON of every field but `hash`.
    pub fn hash_input(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.as_ref().write_hash_input(&mut out);
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

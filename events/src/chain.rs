//! Chain verification: walk an org's events in `ledger_seq` order, recompute every hash and link,
//! and name the first position where the chain does not hold, and why.

use std::fmt;

use crate::{genesis_hash, Envelope, EnvelopeRef, EventHash, OrgId};

/// Why a chain failed verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TamperKind {
    /// The event's contents no longer match its hash.
    Edited,
    /// An event the chain requires is absent.
    Missing,
    /// An event the ledger never wrote sits in the chain.
    Inserted,
    /// Events are not in the order in which they were chained.
    Reordered,
    /// The chain is internally consistent but differs from a signed checkpoint: history up to
    /// that checkpoint was rewritten (hashes recomputed).
    Rewritten,
    /// A checkpoint's signature is invalid or made with a key the server does not publish.
    BadCheckpoint,
}

impl fmt::Display for TamperKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Edited => "edited",
            Self::Missing => "missing",
            Self::Inserted => "inserted",
            Self::Reordered => "reordered",
            Self::Rewritten => "rewritten",
            Self::BadCheckpoint => "bad checkpoint",
        })
    }
}

/// The verdict: the first bad `(org, ledger_seq)` and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    pub org_id: OrgId,
    pub ledger_seq: u64,
    pub kind: TamperKind,
    pub detail: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "org {} ledger_seq {}: {} ({})",
            self.org_id, self.ledger_seq, self.kind, self.detail
        )
    }
}

/// The raw facts at the first row that does not continue the chain. Call
/// [`Anomaly::diagnose`] with a way to find where a hash is stored to get the verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub org_id: OrgId,
    pub expected_seq: u64,
    pub found_seq: u64,
    pub expected_prev: EventHash,
    pub stored_prev: EventHash,
    pub stored_hash: EventHash,
    pub computed_hash: EventHash,
}

impl Anomaly {
    /// Classifies the anomaly. `locate` answers "at which `ledger_seq` of this org is an event
    /// with this stored hash?"; it is consulted only here, after the first failure, so the
    /// streaming walk needs no index of past hashes.
    pub fn diagnose(&self, locate: impl FnOnce(&EventHash) -> Option<u64>) -> ChainBreak {
        let n = self.expected_seq;
        let verdict = |ledger_seq, kind, detail: String| ChainBreak {
            org_id: self.org_id.clone(),
            ledger_seq,
            kind,
            detail,
        };
        if self.found_seq > n {
            let last = self.found_seq - 1;
            let range = if last == n {
                format!("{n}")
            } else {
                format!("{n}..={last}")
            };
            return verdict(n, TamperKind::Missing, format!("events {range} are absent"));
        }
        if self.found_seq < n {
            return verdict(
                self.found_seq,
                TamperKind::Inserted,
                format!("a second event claims position {}", self.found_seq),
            );
        }
        let self_consistent = self.computed_hash == self.stored_hash;
        if self.stored_prev == self.expected_prev {
            return verdict(
                n,
                TamperKind::Edited,
                format!(
                    "contents hash to {} but the stored hash is {}",
                    self.computed_hash, self.stored_hash
                ),
            );
        }
        match locate(&self.stored_prev) {
            Some(m) if m + 2 <= n => verdict(
                m + 1,
                TamperKind::Inserted,
                format!("event {n} links to event {m}; what sits between was not chained"),
            ),
            Some(m) if m > n => verdict(
                n,
                TamperKind::Reordered,
                format!("event at {n} links to the event now at {m}"),
            ),
            Some(_) => verdict(
                n,
                TamperKind::Edited,
                "the link to the previous event was altered".to_owned(),
            ),
            None if self_consistent => verdict(
                n,
                TamperKind::Inserted,
                format!(
                    "links to {}, which is no event of this chain",
                    self.stored_prev
                ),
            ),
            None => verdict(
                n,
                TamperKind::Missing,
                format!("the event it was chained to ({}) is gone", self.stored_prev),
            ),
        }
    }
}

/// Walks one org's chain in `ledger_seq` order.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    org_id: OrgId,
    len: u64,
    head: EventHash,
    /// Reused for every event's hashed bytes.
    scratch: Vec<u8>,
}

impl ChainVerifier {
    pub fn new(org_id: OrgId) -> Self {
        let head = genesis_hash(&org_id);
        Self {
            org_id,
            len: 0,
            head,
            scratch: Vec::new(),
        }
    }

    /// A verifier that continues a chain whose first `len` events are vouched for elsewhere
    /// and end in `head`: lets one chain be checked in ranges, in parallel, when the caller
    /// then checks that consecutive ranges meet (each range's `head` is the next one's start).
    pub fn resume(org_id: OrgId, len: u64, head: EventHash) -> Self {
        Self {
            org_id,
            len,
            head,
            scratch: Vec::new(),
        }
    }

    /// Number of events verified so far (= the last good `ledger_seq`).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hash of the last verified event (the genesis value before the first).
    pub fn head(&self) -> EventHash {
        self.head
    }

    /// Checks the next event. On failure the verifier is unchanged; stop and diagnose.
    pub fn push(&mut self, event: &Envelope) -> Result<(), Box<Anomaly>> {
        self.push_ref(&event.as_ref())
    }

    /// [`Self::push`] for a borrowed envelope.
    pub fn push_ref(&mut self, event: &EnvelopeRef<'_>) -> Result<(), Box<Anomaly>> {
        let expected_seq = self.len + 1;
        let computed_hash = event.compute_hash_with(&mut self.scratch);
        let ok = event.ledger_seq == expected_seq
            && *event.org_id == self.org_id
            && event.prev_hash == self.head
            && computed_hash == event.hash;
        if ok {
            self.len = expected_seq;
            self.head = event.hash;
            return Ok(());
        }
        Err(Box::new(Anomaly {
            org_id: self.org_id.clone(),
            expected_seq,
            found_seq: event.ledger_seq,
            expected_prev: self.head,
            stored_prev: event.prev_hash,
            stored_hash: event.hash,
            // An event carrying another org's id cannot hash to its stored value here.
            computed_hash: if *event.org_id == self.org_id {
                computed_hash
            } else {
                EventHash([0; 32])
            },
        }))
    }

    /// After the last event: the chain must end exactly where the org's head record says.
    pub fn finish(&self, head_size: u64, head_hash: EventHash) -> Result<(), ChainBreak> {
        let verdict = |ledger_seq, kind, detail: String| ChainBreak {
            org_id: self.org_id.clone(),
            ledger_seq,
            kind,
            detail,
        };
        if self.len < head_size {
            return Err(verdict(
                self.len + 1,
                TamperKind::Missing,
                format!(
                    "the head says {head_size} events but only {} remain",
                    self.len
                ),
            ));
        }
        if self.len > head_size {
            return Err(verdict(
                head_size + 1,
                TamperKind::Inserted,
                format!("events beyond the head ({head_size}) were never chained"),
            ));
        }
        if head_hash != self.head {
            return Err(verdict(
                self.len,
                TamperKind::Edited,
                format!(
                    "the head record says {head_hash} but the chain ends at {}",
                    self.head
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CanonicalJson;
    use proptest::prelude::*;
    use serde_json::json;

    fn org() -> OrgId {
        OrgId::new("org_test").unwrap()
    }

    fn chain(n: u64) -> Vec<Envelope> {
        let mut prev = genesis_hash(&org());
        (1..=n)
            .map(|seq| {
                let e = Envelope {
                    org_id: org(),
                    ledger_seq: seq,
                    stream_type: "Action".into(),
                    stream_id: org().stream_id(&format!("act_{}", seq % 3)),
                    stream_seq: seq.div_ceil(3),
                    event_type: "ActionCreated".into(),
                    event_version: "1.0".into(),
                    payload: CanonicalJson::encode(&json!({"seq": seq, "text": "héllo\n"}))
                        .unwrap(),
                    metadata: CanonicalJson::encode(
                        &json!({"recorded_at": "2026-11-21T00:00:00.000Z", "actor": "op"}),
                    )
                    .unwrap(),
                    prev_hash: prev,
                    hash: EventHash([0; 32]),
                }
                .seal();
                prev = e.hash;
                e
            })
            .collect()
    }

    /// Walks `rows`, returning the first break (diagnosed against `rows` itself).
    fn verify(rows: &[Envelope], head: (u64, EventHash)) -> Result<(), ChainBreak> {
        let mut v = ChainVerifier::new(org());
        for row in rows {
            if let Err(anomaly) = v.push(row) {
                return Err(
                    anomaly.diagnose(|h| rows.iter().find(|r| &r.hash == h).map(|r| r.ledger_seq))
                );
            }
        }
        v.finish(head.0, head.1)
    }

    fn head_of(rows: &[Envelope]) -> (u64, EventHash) {
        (rows.len() as u64, rows.last().unwrap().hash)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let rows = chain(10);
        assert_eq!(verify(&rows, head_of(&rows)), Ok(()));
    }

    #[test]
    fn an_edited_payload_is_named() {
        let mut rows = chain(10);
        let head = head_of(&rows);
        rows[4].payload = CanonicalJson::encode(&json!({"seq": 5, "text": "evil"})).unwrap();
        let b = verify(&rows, head).unwrap_err();
        assert_eq!((b.ledger_seq, b.kind), (5, TamperKind::Edited));
    }

    #[test]
    fn a_deleted_event_is_missing() {
        let mut rows = chain(10);
        let head = head_of(&rows);
        rows.remove(3);
        let b = verify(&rows, head).unwrap_err();
        assert_eq!((b.ledger_seq, b.kind), (4, TamperKind::Missing));
    }

    #[test]
    fn a_deleted_event_with_renumbering_is_missing() {
        let mut rows = chain(10);
        let head = head_of(&rows);
        rows.remove(3);
        for r in rows.iter_mut().skip(3) {
            r.ledger_seq -= 1;
        }
        let b = verify(&rows, head).unwrap_err();
        assert_eq!((b.ledger_seq, b.kind), (4, TamperKind::Missing));
    }

    #[test]
    fn a_deleted_tail_is_missing() {
        let mut rows = chain(10);
        let head = head_of(&rows);
        rows.truncate(8);
        let b = verify(&rows, head).unwrap_err();
        assert_eq!((b.ledger_seq, b.kind), (9, TamperKind::Missing));
    }

    #[test]
    fn an_inserted_event_is_named() {
        let rows = chain(10);
        let head = head_of(&rows);
        // A forged event correctly linked to event 4, with later events renumbered.
        let mut forged = rows[4].clone();
        forged.payload = CanonicalJson::encode(&json!({"forged": true})).unwrap();
        forged.prev_hash = rows[3].hash;
        let forged = forged.seal();
        let mut tampered: Vec<Envelope> = rows[..4].to_vec();
        tampered.push(forged);
        tampered.extend(rows[4..].iter().cloned().map(|mut r| {
            r.ledger_seq += 1;
            r
        }));
        let b = verify(&tampered, head).unwrap_err();
        assert_eq!((b.ledger_seq, b.kind), (5, TamperKind::Inserted));
    }

    #[test]
    fn an_appended_unchained_event_is_inserted() {
        let mut rows = chain(10);
        let head = head_of(&rows);
        let mut extra = rows[9].clone();
        extra.ledger_seq = 11;
        extra.prev_hash = rows[9].hash;
        rows.push(extra.seal());
        let b = verify(&rows, head).unwrap_err();
        assert_eq!((b.ledger_seq, b.kind), (11, TamperKind::Inserted));
    }

    #[test]
    fn swapped_events_are_reordered() {
        let mut rows = chain(10);
        let head = head_of(&rows);
        rows.swap(5, 6);
        rows[5].ledger_seq = 6;
        rows[6].ledger_seq = 7;
        let b = verify(&rows, head).unwrap_err();
        assert_eq!((b.ledger_seq, b.kind), (6, TamperKind::Reordered));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Flipping any bit of any hashed field of any event makes verification fail.
        #[test]
        fn any_changed_byte_fails_verification(
            victim in 0usize..6,
            field in 0usize..8,
            byte in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let rows = chain(6);
            let head = head_of(&rows);
            let mut tampered = rows.clone();
            let e = &mut tampered[victim];
            let flip = |s: &str| -> String {
                let mut bytes = s.as_bytes().to_vec();
                let i = byte.index(bytes.len());
                bytes[i] ^= 1 << bit;
                String::from_utf8_lossy(&bytes).into_owned()
            };
            match field {
                0 => e.payload = CanonicalJson::from_stored(flip(e.payload.as_str())),
                1 => e.metadata = CanonicalJson::from_stored(flip(e.metadata.as_str())),
                2 => e.stream_id = flip(&e.stream_id),
                3 => e.stream_type = flip(&e.stream_type),
                4 => e.event_type = flip(&e.event_type),
                5 => e.event_version = flip(&e.event_version),
                6 => e.stream_seq ^= 1 << bit,
                _ => e.prev_hash.0[byte.index(32)] ^= 1 << bit,
            }
            prop_assume!(tampered[victim] != rows[victim]);
            prop_assert!(verify(&tampered, head).is_err());
        }

        /// Changing any bit of a stored hash fails verification.
        #[test]
        fn any_changed_hash_fails_verification(victim in 0usize..6, i in 0usize..32, bit in 0u8..8) {
            let rows = chain(6);
            let head = head_of(&rows);
            let mut tampered = rows.clone();
            tampered[victim].hash.0[i] ^= 1 << bit;
            prop_assert!(verify(&tampered, head).is_err());
        }
    }
}

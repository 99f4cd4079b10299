//! Decision replay: a recorded guard decision evaluated again from its recorded inputs under
//! the policy set the ledger says was in force when it was made (not today's), showing that
//! the verdict, reasons, matched policies and risk breakdown come out the same, or exactly
//! what differs.

use cqrs_es::Aggregate;
use dashclaw_domain::guard::Policy;
use dashclaw_domain::guard_decision::{
    replay, Difference, GuardDecision, GuardDecisionEvent, GuardDecisionRecord, Replay,
};
use dashclaw_domain::policy_set::{PolicySet, PolicySetEvent, POLICY_SET_ID};
use dashclaw_domain::OrgId;
use dashclaw_store::chain::{self, StoredEvent};
use serde_json::Value;
use sqlx::PgPool;

use super::{Caller, Error, ErrorCode, Permission, Service};

/// A recorded decision and its replay.
#[derive(Debug, Clone)]
pub struct DecisionReplay {
    pub ledger_seq: u64,
    pub record: GuardDecisionRecord,
    /// The policy set the replay ran under.
    pub policy_set: PolicySetState,
    /// Whether a state of the ledger's policy set hashes to the version the decision
    /// recorded (when not, the replay ran under the set in force by ledger order, and a
    /// `policy_set_version` difference says so).
    pub policy_set_found: bool,
    pub replay: Replay,
}

impl DecisionReplay {
    pub fn identical(&self) -> bool {
        self.policy_set_found && self.replay.identical()
    }
}

/// One state of an org's policy set.
#[derive(Debug, Clone)]
pub struct PolicySetState {
    /// The `ledger_seq` of the policy event that made this state (0: before the first).
    pub as_of: u64,
    /// `PolicySet::version_hash`: the lowercase hex SHA-256 of `text`.
    pub version: String,
    /// The exact bytes the version hashes.
    pub text: String,
    pub policies: Vec<Policy>,
}

/// Every state an org's policy set has been in, from its events on the ledger.
pub struct PolicyHistory {
    events: Vec<(u64, PolicySetEvent)>,
    /// `(as_of, version)` of each state, oldest first; the first is the empty set.
    versions: Vec<(u64, String)>,
}

impl PolicyHistory {
    /// Reads the org's policy events (one stream per org).
    pub async fn load(pool: &PgPool, org: &OrgId) -> Result<Self, Error> {
        let stored = chain::stream_events(pool, org, PolicySet::TYPE, POLICY_SET_ID).await?;
        let mut events = Vec::with_capacity(stored.len());
        for e in stored {
            events.push((e.ledger_seq as u64, decode::<PolicySetEvent>(org, &e)?));
        }
        let mut set = PolicySet::default();
        let mut versions = vec![(0, set.version_hash())];
        for (seq, event) in &events {
            set.apply(event.clone());
            versions.push((*seq, set.version_hash()));
        }
        Ok(Self { events, versions })
    }

    /// The state a decision at `ledger_seq` that recorded `version` ran under: the latest
    /// state before it with that version (a node may evaluate under a set a moment older
    /// than the ledger's newest, never a newer one). `None` when no earlier state has it.
    pub fn as_recorded(&self, ledger_seq: u64, version: &str) -> Option<PolicySetState> {
        let (as_of, _) = self
            .versions
            .iter()
            .rev()
            .find(|(as_of, v)| *as_of < ledger_seq && v == version)?;
        Some(self.state_at(*as_of))
    }

    /// The state in force by ledger order just before `ledger_seq`.
    pub fn in_force_before(&self, ledger_seq: u64) -> PolicySetState {
        let as_of = self
            .versions
            .iter()
            .rev()
            .find(|(as_of, _)| *as_of < ledger_seq)
            .map_or(0, |(as_of, _)| *as_of);
        self.state_at(as_of)
    }

    fn state_at(&self, as_of: u64) -> PolicySetState {
        let mut set = PolicySet::default();
        for (_, event) in self.events.iter().take_while(|(seq, _)| *seq <= as_of) {
            set.apply(event.clone());
        }
        let policies = set.policies();
        let text = serde_json::to_string(&policies).unwrap_or_default();
        PolicySetState {
            as_of,
            version: set.version_hash(),
            text,
            policies,
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(org: &OrgId, e: &StoredEvent) -> Result<T, Error> {
    serde_json::from_str(&e.payload).map_err(|err| {
        Error::internal(format!(
            "event {} of {org} ({}) does not decode: {err}",
            e.ledger_seq, e.event_type
        ))
    })
}

/// Replays the decision recorded by `event` (a `GuardDecisionRecorded` event).
pub fn replay_event(
    history: &PolicyHistory,
    org: &OrgId,
    event: &StoredEvent,
) -> Result<DecisionReplay, Error> {
    let GuardDecisionEvent::Recorded(record) = decode::<GuardDecisionEvent>(org, event)?;
    let ledger_seq = event.ledger_seq as u64;
    let found = history.as_recorded(ledger_seq, &record.policy_set_version);
    let policy_set_found = found.is_some();
    let policy_set = found.unwrap_or_else(|| history.in_force_before(ledger_seq));
    let mut replayed = replay(&record, &policy_set.policies);
    if !policy_set_found {
        replayed.differences.insert(
            0,
            Difference {
                field: "policy_set_version",
                recorded: Value::String(record.policy_set_version.clone()),
                replayed: Value::String(policy_set.version.clone()),
            },
        );
    }
    Ok(DecisionReplay {
        ledger_seq,
        record: *record,
        policy_set,
        policy_set_found,
        replay: replayed,
    })
}

/// Replays every guard decision of `org`, in ledger order, calling `each` with every replay
/// (so that a million decisions need not be held at once).
pub async fn replay_all(
    pool: &PgPool,
    org: &OrgId,
    mut each: impl FnMut(DecisionReplay),
) -> Result<(), Error> {
    const PAGE: i64 = 1_000;
    let history = PolicyHistory::load(pool, org).await?;
    let mut after = 0;
    loop {
        let page =
            chain::stored_events_of_type_after(pool, org, GuardDecision::TYPE, after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.ledger_seq as u64;
        for event in &page {
            each(replay_event(&history, org, event)?);
        }
    }
}

impl Service {
    /// Replays the caller's org's decision `id` (`act_gd_…`).
    pub async fn replay_decision(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<DecisionReplay, Error> {
        caller.require(Permission::Read)?;
        let org = &caller.org;
        let events = chain::stream_events(self.pool(), org, GuardDecision::TYPE, id).await?;
        let event = events
            .first()
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("No guard decision {id}")))?;
        let history = PolicyHistory::load(self.pool(), org).await?;
        replay_event(&history, org, event)
    }
}

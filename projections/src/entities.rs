//! Entity records: the read model of the smaller aggregates (sessions, plans, pairings, agent identities), one generic
//! row per entity in `entity_records`, folded by the `governance` projection.
//!
//! A row's `doc` is the aggregate itself, serialized: a window decodes it, applies the
//! window's events with the domain's own `apply`, and writes it back, so the read model is
//! the aggregate by construction. A new small aggregate needs only a line in [`TYPES`] and
//! in [`apply`].

use cqrs_es::Aggregate;
use dashclaw_domain::identity::{AgentIdentity, Pairing};
use dashclaw_domain::plan::Plan;
use dashclaw_domain::session::Session;
use dashclaw_domain::OrgId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::tracker::{Event, ProjectionError};

/// The aggregate types kept in `entity_records`.
pub const TYPES: &[&str] = &[
    Session::TYPE,
    Plan::TYPE,
    Pairing::TYPE,
    AgentIdentity::TYPE,
];

/// Applies `event` to the document `doc` (absent: a new entity) of its aggregate type.
pub(crate) fn apply(
    org: &OrgId,
    doc: Option<Value>,
    event: &Event<'_>,
) -> Result<Value, ProjectionError> {
    match event.aggregate_type {
        Session::TYPE => apply_as::<Session>(org, doc, event),
        Plan::TYPE => apply_as::<Plan>(org, doc, event),
        Pairing::TYPE => apply_as::<Pairing>(org, doc, event),
        AgentIdentity::TYPE => apply_as::<AgentIdentity>(org, doc, event),
        other => Err(ProjectionError::Undecodable {
            org: org.to_string(),
            ledger_seq: event.ledger_seq as u64,
            aggregate_type: other.to_owned(),
            detail: "not an entity-record aggregate".into(),
        }),
    }
}

fn apply_as<A>(org: &OrgId, doc: Option<Value>, event: &Event<'_>) -> Result<Value, ProjectionError>
where
    A: Aggregate + Serialize + DeserializeOwned,
{
    let undecodable = |detail: String| ProjectionError::Undecodable {
        org: org.to_string(),
        ledger_seq: event.ledger_seq as u64,
        aggregate_type: event.aggregate_type.to_owned(),
        detail,
    };
    let mut state: A = match doc {
        Some(doc) => serde_json::from_value(doc)
            .map_err(|e| undecodable(format!("its stored state does not decode: {e}")))?,
        None => A::default(),
    };
    state.apply(event.decode(org)?);
    serde_json::to_value(&state).map_err(|e| undecodable(e.to_string()))
}

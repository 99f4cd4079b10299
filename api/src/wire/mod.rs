//! How records look on the wire: DashClaw's row shapes as typed serde structs (which also
//! describe themselves to OpenAPI), ISO-8601 UTC timestamps with milliseconds.

pub mod action;
pub mod guard;
pub mod insight;

pub use action::{ActionRow, AssumptionRow, OutcomeBody, SecuritySummary};
pub use guard::{DecisionRow, GuardReplay, GuardResult, RiskBreakdownBody};
pub use insight::{AnalyticsBody, PostureBody, SimulationBody};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::service::tail::{Change, LiveEvent};
use crate::service::Subject;

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A row as JSON: the typed rows serialize infallibly (no map has non-string keys).
fn to_json<T: Serialize>(row: &T) -> Value {
    serde_json::to_value(row).unwrap_or_default()
}

/// An API key as its org's admins see it listed (`GET /api/keys`, `dashclaw keys list`).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    /// admin, member or readonly.
    pub role: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<&dashclaw_projections::governance::KeyListing> for KeyRow {
    fn from(k: &dashclaw_projections::governance::KeyListing) -> Self {
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            role: k.role.clone(),
            created_at: ts(k.created_at),
            revoked_at: k.revoked_at.map(ts),
        }
    }
}

/// The `signal.detected` event of an invalidated assumption.
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftSignal {
    /// Always "assumption_drift".
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: String,
    pub assumption_id: Option<String>,
    pub message: String,
    pub detected_at: String,
}

/// A live event as SSE and GraphQL subscriptions show it: its name and data.
pub fn live_event(event: &LiveEvent) -> (&'static str, Value) {
    let org = &event.org;
    match &event.change {
        Change::ActionCreated(record) => ("action.created", to_json(&ActionRow::new(org, record))),
        Change::ActionUpdated(record) => ("action.updated", to_json(&ActionRow::new(org, record))),
        Change::DecisionCreated(d) => {
            ("guard.decision.created", to_json(&DecisionRow::new(org, d)))
        }
        Change::PolicyUpdated => ("policy.updated", json!({ "org_id": org.as_str() })),
        Change::AssumptionInvalidated {
            assumption_id,
            reason,
            at,
        } => (
            "signal.detected",
            to_json(&DriftSignal {
                kind: "assumption_drift".into(),
                severity: "warning".into(),
                assumption_id: assumption_id.clone(),
                message: format!("Assumption invalidated: {reason}"),
                detected_at: ts(*at),
            }),
        ),
        Change::PlanChanged {
            plan_id,
            name,
            status,
        } => (
            name,
            to_json(&PlanChangedData {
                org_id: org.to_string(),
                plan_id: plan_id.clone(),
                status: *status,
            }),
        ),
    }
}

/// The data of a `plan.*` live event.
#[derive(Serialize)]
struct PlanChangedData {
    org_id: String,
    plan_id: String,
    status: Option<&'static str>,
}

/// The fields an error's subject adds to the error envelope.
pub fn error_subject(subject: &Subject) -> Vec<(&'static str, Value)> {
    match subject {
        Subject::Action { org, action } => vec![("action", to_json(&ActionRow::new(org, action)))],
        Subject::Decided {
            org,
            action,
            decision,
        } => vec![
            ("action", to_json(&ActionRow::new(org, action))),
            ("decision", to_json(&GuardResult::from(decision.as_ref()))),
        ],
    }
}

/// A signal (contract 10.5).
#[derive(Debug, Serialize, ToSchema)]
pub struct SignalRow {
    /// repeated_failures, lost_confirmation, stale_running_action, approval_backlog,
    /// assumption_drift or high_impact_low_oversight.
    #[serde(rename = "type")]
    pub kind: String,
    /// red (act now) or amber (look soon).
    pub severity: String,
    pub label: String,
    pub detail: String,
    /// What to do about it.
    pub help: String,
    pub agent_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
}

impl From<&crate::service::signals::Signal> for SignalRow {
    fn from(s: &crate::service::signals::Signal) -> Self {
        Self {
            kind: s.kind.into(),
            severity: if s.red { "red" } else { "amber" }.into(),
            label: s.label.into(),
            detail: s.detail.clone(),
            help: s.help.into(),
            agent_id: s.agent_id.clone(),
            action_id: s.action_id.clone(),
        }
    }
}

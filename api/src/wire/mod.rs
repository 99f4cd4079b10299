//! How records look on the wire: DashClaw's row shapes, ISO-8601 UTC timestamps with
//! milliseconds.

pub mod insight;

pub use insight::{AnalyticsBody, PostureBody, SimulationBody};

use chrono::{DateTime, SecondsFormat, Utc};
use dashclaw_domain::action::ActionRecord;
use dashclaw_domain::guard_decision::GuardDecisionRecord;
use dashclaw_domain::OrgId;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::service::tail::{Change, LiveEvent};
use crate::service::Subject;

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The action row (contract section 4.1).
pub fn action_row(org: &OrgId, record: &ActionRecord) -> Value {
    let mut row = serde_json::to_value(record).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut row {
        map.insert("org_id".into(), json!(org.as_str()));
        // Every action is claim-eligible (contract 5.3, surprise 1).
        map.insert("execution_protocol".into(), json!(1));
        map.insert("identity_verified".into(), json!(false));
    }
    row
}

/// A guard decision as the history endpoint and the SSE stream show it.
pub fn decision_row(org: &OrgId, d: &GuardDecisionRecord) -> Value {
    let e = &d.evaluation;
    json!({
        "id": d.decision_id,
        "decision_id": d.decision_id,
        "org_id": org.as_str(),
        "agent_id": d.request.agent_id,
        "agent_name": d.request.agent_name,
        "verification_status": "unverified",
        "action_type": d.request.action_type,
        "risk_score": e.risk_score,
        "agent_risk_score": d.request.risk_score,
        "decision": e.decision,
        "reason": reason(&e.reasons),
        "reasons": e.reasons,
        "warnings": e.warnings,
        "matched_policies": e.matched_policies,
        "risk_breakdown": e.risk_breakdown,
        "policy_set_version": d.policy_set_version,
        "purpose": d.purpose,
        "action_id": d.action_id,
        "act_hash": d.request.act_hash,
        "created_at": ts(d.evaluated_at),
        "degraded": false,
    })
}

/// The guard result body (contract 1.2).
pub fn decision_body(d: &GuardDecisionRecord) -> Map<String, Value> {
    let e = &d.evaluation;
    let signals: Vec<&String> = e.warnings.iter().chain(&e.reasons).collect();
    let body = json!({
        "decision": e.decision,
        "decision_id": d.decision_id,
        "action_id": d.decision_id,
        "execution_claim_required": true,
        "claim_protocol": 1,
        "reason": reason(&e.reasons),
        "reasons": e.reasons,
        "warnings": e.warnings,
        "signals": signals,
        "matched_policies": e.matched_policies,
        "risk_score": e.risk_score,
        "agent_risk_score": d.request.risk_score,
        "risk_breakdown": e.risk_breakdown,
        "intent_source": "declared",
        "verification_status": "unverified",
        "agent_id": d.request.agent_id,
        "agent_name": d.request.agent_name,
        "policy_set_version": d.policy_set_version,
        "evaluated_at": ts(d.evaluated_at),
    });
    match body {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `reasons.join("; ")`, or null when there are none.
pub fn reason(reasons: &[String]) -> Value {
    if reasons.is_empty() {
        Value::Null
    } else {
        json!(reasons.join("; "))
    }
}

/// The prompt-injection scan summary DashClaw attaches to accepted writes (always clean:
/// a goal the scanner would block is refused before anything is written).
pub fn security() -> Value {
    json!({"clean": true, "findings_count": 0, "critical_count": 0, "categories": []})
}

/// An action's outcome (contract 6); `elapsed_ms` runs from its creation to the outcome.
pub fn outcome_body(record: &ActionRecord, elapsed_ms: i64) -> Value {
    json!({
        "action_id": record.action_id,
        "status": record.outcome_status.as_str(),
        "outcome_at": record.outcome_at.map(ts),
        "summary": record.outcome_summary,
        "error_message": record.outcome_error,
        "progress": record.outcome_progress,
        "elapsed_ms": elapsed_ms,
    })
}

/// An API key as its org's admins see it listed (`GET /api/keys`, `dashclaw keys list`).
#[derive(Debug, Serialize)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
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

/// A live event as SSE and GraphQL subscriptions show it: its name and data.
pub fn live_event(event: &LiveEvent) -> (&'static str, Value) {
    let org = &event.org;
    match &event.change {
        Change::ActionCreated(record) => ("action.created", action_row(org, record)),
        Change::ActionUpdated(record) => ("action.updated", action_row(org, record)),
        Change::DecisionCreated(d) => ("guard.decision.created", decision_row(org, d)),
        Change::PolicyUpdated => ("policy.updated", json!({ "org_id": org.as_str() })),
        Change::AssumptionInvalidated {
            assumption_id,
            reason,
            at,
        } => (
            "signal.detected",
            json!({
                "type": "assumption_drift",
                "severity": "warning",
                "assumption_id": assumption_id,
                "message": format!("Assumption invalidated: {reason}"),
                "detected_at": ts(*at),
            }),
        ),
    }
}

/// The fields an error's subject adds to the error envelope.
pub fn error_subject(subject: &Subject) -> Vec<(&'static str, Value)> {
    match subject {
        Subject::Action { org, action } => vec![("action", action_row(org, action))],
        Subject::Decided {
            org,
            action,
            decision,
        } => vec![
            ("action", action_row(org, action)),
            ("decision", Value::Object(decision_body(decision))),
        ],
    }
}

/// A signal (contract 10.5).
pub fn signal_row(s: &crate::service::signals::Signal) -> Value {
    let mut row = json!({
        "type": s.kind, "severity": if s.red { "red" } else { "amber" }, "label": s.label,
        "detail": s.detail, "help": s.help, "agent_id": s.agent_id,
    });
    if let Some(action) = &s.action_id {
        row["action_id"] = json!(action);
    }
    row
}

/// An assumption row (contract 10): its record, with `validated` and `invalidated` as 0/1.
pub fn assumption_row(a: &dashclaw_domain::assumption::AssumptionRecord) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert("validated".into(), json!(u8::from(a.validated)));
        m.insert("invalidated".into(), json!(u8::from(a.invalidated)));
    }
    v
}

//! How records look on the wire: DashClaw's row shapes, ISO-8601 UTC timestamps with
//! milliseconds.

use chrono::{DateTime, SecondsFormat, Utc};
use dashclaw_domain::action::ActionRecord;
use dashclaw_domain::guard_decision::GuardDecisionRecord;
use dashclaw_domain::OrgId;
use serde_json::{json, Value};

/// The server clock, at the millisecond precision the wire shows.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

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

/// `reasons.join("; ")`, or null when there are none.
pub fn reason(reasons: &[String]) -> Value {
    if reasons.is_empty() {
        Value::Null
    } else {
        json!(reasons.join("; "))
    }
}

/// The decision of a stored `GuardDecisionRecorded` payload (JSON text), with any NUL an old
/// server stored replaced as the read models do.
pub fn stored_decision(
    payload: &str,
) -> Option<dashclaw_domain::guard_decision::GuardDecisionRecord> {
    use dashclaw_domain::guard_decision::GuardDecisionEvent;
    match dashclaw_projections::storable::decode::<GuardDecisionEvent>(payload) {
        Ok(GuardDecisionEvent::Recorded(d)) => Some(*d),
        Err(_) => None,
    }
}

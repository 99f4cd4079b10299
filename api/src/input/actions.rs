//! Action bodies into the application's requests: recording (`POST /api/actions`), the
//! execution claim and the legacy update (`PATCH /api/actions/:id`), outcomes and approvals.

use dashclaw_domain::action::{ActionDetails, ActionStatus, LegacyUpdate, ReportedOutcome};
use dashclaw_domain::ids::ActionId;
use serde_json::{Map, Value};

use super::fields::Fields;
use super::guard::guard_fields;
use crate::service::actions::{Claim, Outcome, RecordAction};
use crate::service::guard::act_hash;
use crate::service::{Error, ErrorCode};

/// The outcome fields a legacy update may carry, as the refusal of an empty one names them.
const OUTCOME_FIELDS: &str = "status, output_summary, side_effects, artifacts_created, \
    error_message, timestamp_end, duration_ms, cost_estimate, tokens_in, tokens_out, model";

/// A new action: `agent_id`, `declared_goal` and `action_type` required, with the guard
/// fields and the action's own details (contract 4.1).
pub fn record_action(body: &Map<String, Value>) -> Result<RecordAction, Error> {
    let mut f = Fields::new(body);
    let agent_id = f.required_string("agent_id", 128);
    let declared_goal = f.required_string("declared_goal", 2000);
    let guard = guard_fields(&mut f, false);
    let action_id = f.string("action_id", 128);
    let details = ActionDetails {
        agent_id: agent_id.clone().unwrap_or_default(),
        parent_action_id: f.string("parent_action_id", 128),
        declared_goal: declared_goal.unwrap_or_default(),
        reasoning: f.string("reasoning", 4000),
        authorization_scope: f.string("authorization_scope", 1000),
        input_summary: f.string("input_summary", 4000),
        status: f
            .one_of("status", ActionStatus::CLIENT_SUPPLIABLE)
            .and_then(|s| ActionStatus::parse(&s)),
        confidence: f.integer("confidence", 0, 100).map(|n| n as u8),
        recommendation_id: f.string("recommendation_id", 128),
        output_summary: f.string("output_summary", 4000),
        side_effects: f.strings("side_effects", 50, 500),
        artifacts_created: f.strings("artifacts_created", 100, 500),
        error_message: f.string("error_message", 4000),
        timestamp_start: f.timestamp("timestamp_start"),
        timestamp_end: f.timestamp("timestamp_end"),
        duration_ms: None,
        cost_estimate: None,
        tokens_in: None,
        tokens_out: None,
        model: None,
        session_id: None,
        ..Default::default()
    };
    let usage = usage(&mut f);
    let details = ActionDetails {
        duration_ms: usage.duration_ms,
        cost_estimate: usage.cost_estimate,
        tokens_in: usage.tokens_in,
        tokens_out: usage.tokens_out,
        model: f.string("model", 128),
        session_id: f.string("session_id", 128),
        ..details
    };
    let claimed_decision = f.string("guard_decision_id", 64);
    f.finish()?;
    let (Some(guard), Some(_)) = (guard, agent_id) else {
        return Err(Error::validation(vec!["action_type is required".into()]));
    };
    let action_id = action_id
        .map(|id| ActionId::parse(&id).map_err(|e| Error::validation(vec![e.to_string()])))
        .transpose()?;
    Ok(RecordAction {
        guard,
        action_id,
        details,
        claimed_decision,
    })
}

/// What an action used, as the body reports it (tokens counted up to 10 million).
struct Usage {
    duration_ms: Option<u64>,
    cost_estimate: Option<f64>,
    tokens_in: Option<u64>,
    tokens_out: Option<u64>,
}

fn usage(f: &mut Fields<'_>) -> Usage {
    let duration_ms = f.integer("duration_ms", 0, i64::MAX).map(|n| n as u64);
    let cost_estimate = f.number("cost_estimate", 0.0, 10_000.0);
    let mut tokens = |key: &str| {
        f.integer(key, 0, i64::MAX)
            .map(|n| n.min(10_000_000) as u64)
    };
    Usage {
        duration_ms,
        cost_estimate,
        tokens_in: tokens("tokens_in"),
        tokens_out: tokens("tokens_out"),
    }
}

fn invalid_claim() -> Error {
    Error::new(ErrorCode::InvalidExecutionClaim, "Invalid execution claim")
}

/// An execution claim: exactly `claim_execution: true`, an `attempt_id` of 16-128 safe
/// characters, an optional `act` object and the `agent_id`.
pub fn claim(body: &Map<String, Value>) -> Result<Claim, Error> {
    const KEYS: &[&str] = &["claim_execution", "attempt_id", "agent_id", "act"];
    if body.keys().any(|k| !KEYS.contains(&k.as_str()))
        || body.get("claim_execution") != Some(&Value::Bool(true))
    {
        return Err(invalid_claim());
    }
    let attempt_id = body
        .get("attempt_id")
        .and_then(Value::as_str)
        .filter(|a| {
            (16..=128).contains(&a.len())
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .ok_or_else(invalid_claim)?
        .to_owned();
    let act_hash = match body.get("act") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(act_hash(v)?),
        Some(_) => return Err(invalid_claim()),
    };
    Ok(Claim {
        attempt_id,
        agent_id: body
            .get("agent_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        act_hash,
    })
}

/// The legacy update: at least one outcome field; `close_if_running: true` answers an
/// action that no longer runs as it is instead of refusing.
pub fn legacy_update(body: &Map<String, Value>) -> Result<(LegacyUpdate, bool), Error> {
    let mut f = Fields::new(body);
    let has_side_effects = f.present("side_effects");
    let has_artifacts = f.present("artifacts_created");
    let update = LegacyUpdate {
        status: f
            .one_of("status", ActionStatus::CLIENT_SUPPLIABLE)
            .and_then(|s| ActionStatus::parse(&s)),
        output_summary: f.string("output_summary", 4000),
        side_effects: has_side_effects.then(|| f.strings("side_effects", 50, 500)),
        artifacts_created: has_artifacts.then(|| f.strings("artifacts_created", 100, 500)),
        error_message: f.string("error_message", 4000),
        timestamp_end: f.timestamp("timestamp_end"),
        duration_ms: None,
        cost_estimate: None,
        tokens_in: None,
        tokens_out: None,
        model: None,
        // The service stamps the time.
        now: Default::default(),
    };
    let usage = usage(&mut f);
    let update = LegacyUpdate {
        duration_ms: usage.duration_ms,
        cost_estimate: usage.cost_estimate,
        tokens_in: usage.tokens_in,
        tokens_out: usage.tokens_out,
        model: f.string("model", 128),
        ..update
    };
    let close_if_running = f.raw("close_if_running") == Some(&Value::Bool(true));
    f.finish()?;
    if update == LegacyUpdate::default() {
        return Err(Error::validation(vec![format!(
            "At least one outcome field is required: {OUTCOME_FIELDS}"
        )]));
    }
    Ok((update, close_if_running))
}

/// An outcome report: `status` one of completed, partial, failed; `summary` and
/// `error_message` strings; `progress` an object.
pub fn outcome(body: &Map<String, Value>) -> Result<Outcome, Error> {
    let status = match body.get("status").and_then(Value::as_str) {
        Some("completed") => ReportedOutcome::Completed,
        Some("partial") => ReportedOutcome::Partial,
        Some("failed") => ReportedOutcome::Failed,
        _ => {
            return Err(Error::bad_request("Invalid status")
                .with_details("status must be one of: completed, partial, failed"))
        }
    };
    let text = |key: &str| -> Result<Option<String>, Error> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::validation(vec![format!("{key} must be a string")])),
        }
    };
    let summary = text("summary")?;
    let error_message = text("error_message")?;
    let progress = match body.get("progress") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => Some(p.clone()),
        Some(_) => {
            return Err(Error::bad_request(
                "progress (object) is required when status is \"partial\"",
            ))
        }
    };
    Ok(Outcome {
        status,
        summary,
        error_message,
        progress,
    })
}

/// An approval: `decision` allow or deny, optional `reasoning`.
pub fn approval(body: &Map<String, Value>) -> Result<(bool, Option<String>), Error> {
    let allow = match body.get("decision").and_then(Value::as_str) {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return Err(Error::bad_request(
                "Invalid decision. Must be allow or deny.",
            ))
        }
    };
    let reasoning = match body.get("reasoning") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Error::validation(vec!["reasoning must be a string".into()])),
    };
    Ok((allow, reasoning))
}

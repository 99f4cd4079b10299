//! `POST /api/guard` ("may I do X?", optionally recording the action) and `GET /api/guard`
//! (the decision history). Contract sections 1-3.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use dashclaw_domain::guard::Verdict;
use dashclaw_domain::guard_decision::GuardDecisionRecord;
use dashclaw_projections::read::decisions::DecisionFilter;
use dashclaw_projections::read::Page;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::extract::{Body, Params};
use crate::service::guard::{GuardAnswer, Recording};
use crate::service::{Caller, Error, Permission};
use crate::state::AppState;
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/guard", get(history).post(guard))
}

#[derive(Deserialize)]
struct GuardQuery {
    record: Option<String>,
}

async fn guard(
    State(state): State<AppState>,
    caller: Caller,
    Params(query): Params<GuardQuery>,
    Body(body): Body,
) -> Result<Json<Map<String, Value>>, Error> {
    caller.require(Permission::Write)?;
    let record = query.record.as_deref() == Some("true");
    let ask = crate::input::guard::guard_body(&body)?;
    let answer = state.service.guard(&caller, ask, record).await?;
    Ok(Json(match answer {
        GuardAnswer::Replayed(prior) => replayed_body(&prior, record),
        GuardAnswer::Decided {
            decision,
            recording,
        } => {
            let mut body = wire::decision_body(&decision);
            match recording {
                None => {}
                Some(Recording::MissingIdentity) => {
                    body.insert("recorded".into(), json!(false));
                    body.insert(
                        "recorded_error".into(),
                        json!("agent_id and declared_goal are required to record an action"),
                    );
                }
                Some(Recording::Recorded(id)) => {
                    body.insert("recorded".into(), json!(true));
                    body.insert("action_id".into(), json!(id));
                    body.insert("security".into(), wire::security());
                }
            }
            body
        }
    }))
}

/// The answer to a retried guard call within the replay window (contract 1.4).
fn replayed_body(prior: &GuardDecisionRecord, record: bool) -> Map<String, Value> {
    let e = &prior.evaluation;
    let action_id = prior
        .action_id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| prior.decision_id.to_string());
    let mut body = json!({
        "decision": e.decision,
        "decision_id": prior.decision_id,
        "action_id": action_id,
        "reason": wire::reason(&e.reasons),
        "risk_score": e.risk_score,
        "matched_policies": e.matched_policies,
        "verification_status": "unverified",
        "agent_id": prior.request.agent_id,
        "agent_name": prior.request.agent_name,
        "evaluated_at": wire::ts(prior.evaluated_at),
        "idempotent_replay": true,
    });
    if record && prior.action_id.is_some() {
        body["recorded"] = json!(true);
    }
    match body {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    agent_id: Option<String>,
    decision: Option<String>,
    days: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

/// `GET /api/guard`: the decision log, newest first (contract 3).
async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<HistoryQuery>,
) -> Result<Json<Value>, Error> {
    let limit = crate::rest::clamp_param(q.limit.as_deref(), 20, 1, 1000, "limit")?;
    let offset = crate::rest::clamp_param(q.offset.as_deref(), 0, 0, i64::MAX, "offset")?;
    let days = match q.days.as_deref() {
        None => None,
        Some(d) => Some(crate::rest::clamp_param(Some(d), 1, 1, 90, "days")?),
    };
    if let Some(d) = &q.decision {
        if !["allow", "warn", "require_approval", "block"].contains(&d.as_str()) {
            return Err(Error::validation(vec![
                "decision must be one of: allow, warn, require_approval, block".into(),
            ]));
        }
    }
    let filter = DecisionFilter {
        agent_id: q.agent_id,
        decision: q.decision.as_deref().and_then(Verdict::parse),
        days: days.map(|d| d as i32),
    };
    let log = state
        .service
        .decisions(&caller, &filter, Page { limit, offset })
        .await?;
    let decisions: Vec<Value> = log
        .decisions
        .iter()
        .map(|d| wire::decision_row(&caller.org, d))
        .collect();
    let stats = log.last_24h;
    Ok(Json(json!({
        "decisions": decisions,
        "total": log.total,
        "stats": {"total_24h": stats.total, "blocks_24h": stats.blocks, "warns_24h": stats.warns, "approvals_24h": stats.approvals},
        "limit": limit,
        "offset": offset,
    })))
}

//! `POST /api/guard` ("may I do X?", optionally recording the action) and `GET /api/guard`
//! (the decision history). Contract sections 1-3.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use dashclaw_domain::action::{ActionCommand, ActionDetails, ActionError, NewAction};
use dashclaw_domain::guard::{scan_prompt_injection, GuardRequest};
use dashclaw_domain::guard_decision::{DecisionPurpose, GuardDecisionRecord};
use dashclaw_domain::ids::ActionId;
use dashclaw_events::CanonicalJson;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::commands::{Actor, CommandError};
use crate::error::{ApiError, ErrorCode};
use crate::extract::{Body, Params};
use crate::governance::{decide, random, Ask};
use crate::server::AppState;
use crate::validate::{object, Fields};
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/guard", get(history).post(guard))
}

/// The guard inputs of a request body, validated (contract 1.1).
pub struct GuardInput {
    pub request: GuardRequest,
    pub idempotency_key: Option<String>,
    pub approval_wait_seconds: u32,
    pub confidence: Option<u8>,
    pub trigger: Option<String>,
    pub swarm_id: Option<String>,
}

/// Hex SHA-256 of the act's canonical JSON: binds approvals and claims to the exact act.
pub fn act_hash(act: &Value) -> Result<String, ApiError> {
    let canonical = CanonicalJson::encode(act).map_err(ApiError::internal)?;
    Ok(hex::encode(Sha256::digest(canonical.as_str().as_bytes())))
}

/// Reads the guard fields; pushes problems into `f`. `action_type` may come as `action` and
/// `declared_goal` as `intent` on the guard endpoint.
pub fn guard_fields(f: &mut Fields<'_>, aliases: bool) -> Option<GuardInput> {
    let action_type = if aliases && !f.present("action_type") && f.present("action") {
        f.required_string("action", 128)
    } else {
        f.required_string("action_type", 128)
    };
    // On the actions endpoint the caller reads (and requires) the agent and the goal itself.
    let declared_goal = match (aliases, f.present("declared_goal")) {
        (false, _) => None,
        (true, false) => f.string("intent", 2000),
        (true, true) => f.string("declared_goal", 2000),
    };
    let risk_score = f.integer("risk_score", 0, 100).map(|n| n as u8);
    let agent_id = if aliases {
        f.string("agent_id", 128)
    } else {
        None
    };
    let agent_name = f.string("agent_name", 256);
    let systems_touched = f.strings("systems_touched", 50, 500);
    let reversible = f.boolean("reversible");
    let target = f.string("target", 1024);
    let write_paths = f.strings("write_paths", 100, 500);
    f.string("content", 50_000);
    f.object("source_of_truth");
    f.object("intel");
    f.object("tool");
    let trigger = f.string("trigger", 1000);
    let swarm_id = f.string("swarm_id", 128);
    let idempotency_key = f.string("idempotency_key", 256);
    let approval_wait_seconds = f.integer("approval_wait_seconds", 5, 86_400).unwrap_or(300) as u32;
    let client_capabilities = f.strings("client_capabilities", 8, 64);
    // An unusable confidence is dropped, never refused (contract 1.1).
    let confidence = f
        .raw("confidence")
        .and_then(Value::as_i64)
        .filter(|n| (0..=100).contains(n))
        .map(|n| n as u8);
    let act = f.object("act");
    let mut act_hash_value = None;
    if let Some(act) = act {
        let value = Value::Object(act.clone());
        if serde_json::to_vec(&value).map(|v| v.len()).unwrap_or(0) > 16 * 1024 {
            f.errors
                .push("act exceeds max serialized size of 16KB (ACT_TOO_LARGE)".to_owned());
        } else {
            act_hash_value = act_hash(&value).ok();
        }
    }
    Some(GuardInput {
        request: GuardRequest {
            action_type: action_type?,
            declared_goal,
            risk_score,
            agent_id,
            agent_name,
            systems_touched,
            reversible,
            target,
            write_paths,
            client_capabilities,
            act_hash: act_hash_value,
        },
        idempotency_key,
        approval_wait_seconds,
        confidence,
        trigger,
        swarm_id,
    })
}

/// Refuses a declared goal the prompt-injection scanner would block (contract 1.5).
pub fn refuse_injection(goal: Option<&str>) -> Result<(), ApiError> {
    let Some(goal) = goal else { return Ok(()) };
    let scan = scan_prompt_injection(goal);
    if scan.recommendation == "block" {
        return Err(ApiError::new(
            ErrorCode::PromptInjection,
            "Input rejected: prompt injection pattern detected",
        )
        .with("risk_level", scan.risk_level)
        .with("categories", json!(scan.categories)));
    }
    Ok(())
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
        "reason": wire::reason(&e.reasons),
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
        "evaluated_at": wire::ts(d.evaluated_at),
    });
    match body {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[derive(Deserialize)]
struct GuardQuery {
    record: Option<String>,
}

/// The 10-minute idempotent replay window (contract 1.4).
async fn replay(
    state: &AppState,
    caller: &Caller,
    key: &str,
) -> Result<Option<GuardDecisionRecord>, ApiError> {
    state.projector.catch_up(&caller.org).await?;
    let doc: Option<String> = sqlx::query_scalar(
        "SELECT e.payload::text FROM guard_decisions g
           JOIN events e ON e.org_id = g.org_id AND e.ledger_seq = g.ledger_seq
          WHERE g.org_id = $1 AND g.idempotency_key = $2 AND g.created_at > $3
          ORDER BY g.created_at DESC LIMIT 1",
    )
    .bind(caller.org.as_str())
    .bind(key)
    .bind(state.clock.now() - chrono::Duration::minutes(10))
    .fetch_optional(&state.pool)
    .await?;
    Ok(doc.as_deref().and_then(wire::stored_decision))
}

async fn guard(
    State(state): State<AppState>,
    caller: Caller,
    Params(query): Params<GuardQuery>,
    Body(body): Body,
) -> Result<Json<Map<String, Value>>, ApiError> {
    state.limiter.org_hit(&caller.org)?;
    let record = query.record.as_deref() == Some("true");
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let input = guard_fields(&mut f, true);
    f.finish()?;
    let Some(input) = input else {
        return Err(ApiError::validation(vec!["action_type is required".into()]));
    };
    refuse_injection(input.request.declared_goal.as_deref())?;
    let view = state.live.views().get(&state.ledger, &caller.org).await?;

    if let (Some(key), None) = (&input.idempotency_key, &view.halt) {
        if let Some(prior) = replay(&state, &caller, key).await? {
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
            return Ok(Json(match body {
                Value::Object(m) => m,
                _ => Map::new(),
            }));
        }
    }

    let now = state.clock.now();
    let action_id = match (&input.idempotency_key, record) {
        (Some(key), true) => Some(ActionId::for_idempotency_key(&caller.org, key)),
        (None, true) => Some(ActionId::random(random()?)),
        _ => None,
    };
    let can_record = input.request.agent_id.is_some() && input.request.declared_goal.is_some();
    let decision = decide(
        &state.pool,
        &state.ledger,
        state.live.views(),
        state.live.counters(),
        &caller,
        Ask {
            request: input.request.clone(),
            purpose: DecisionPurpose::Guard,
            action_id: action_id.clone().filter(|_| can_record),
            idempotency_key: input.idempotency_key.clone(),
            grant: None,
            now,
        },
    )
    .await?;
    let mut body = decision_body(&decision);
    if let Some(action_id) = action_id {
        if !can_record {
            body.insert("recorded".into(), json!(false));
            body.insert(
                "recorded_error".into(),
                json!("agent_id and declared_goal are required to record an action"),
            );
        } else {
            let id = record_action(&state, &caller, &input, &decision, action_id).await?;
            body.insert("recorded".into(), json!(true));
            body.insert("action_id".into(), json!(id));
            body.insert(
                "security".into(),
                json!({"clean": true, "findings_count": 0, "critical_count": 0, "categories": []}),
            );
        }
    }
    Ok(Json(body))
}

/// Records the action a `?record=true` guard call stands for; an existing action with the
/// same idempotency key is the answer (`recorded: true` with its id).
async fn record_action(
    state: &AppState,
    caller: &Caller,
    input: &GuardInput,
    decision: &GuardDecisionRecord,
    action_id: ActionId,
) -> Result<ActionId, ApiError> {
    let r = &input.request;
    let new = NewAction {
        action_id: action_id.clone(),
        details: ActionDetails {
            agent_id: r.agent_id.clone().unwrap_or_default(),
            agent_name: r.agent_name.clone(),
            action_type: r.action_type.clone(),
            declared_goal: r.declared_goal.clone().unwrap_or_default(),
            systems_touched: r.systems_touched.clone(),
            reversible: r.reversible,
            confidence: input.confidence,
            trigger: input.trigger.clone(),
            swarm_id: input.swarm_id.clone(),
            idempotency_key: input.idempotency_key.clone(),
            ..Default::default()
        },
        verdict: decision.evaluation.decision,
        risk_score: decision.evaluation.risk_score,
        guard_decision_id: decision.decision_id.clone(),
        guard_reason: decision
            .evaluation
            .reasons
            .first()
            .map(|_| decision.evaluation.reasons.join("; ")),
        matched_policies: decision.evaluation.matched_policies.clone(),
        approval_wait_seconds: input.approval_wait_seconds,
        approval_grace: state.approval_grace(&caller.org).await?,
        act_content_hash: r.act_hash.clone(),
        created_by: caller.principal.clone(),
        now: decision.evaluated_at,
    };
    let actor = Actor::of(&caller.principal, r.agent_id.as_deref());
    match state
        .ledger
        .execute::<dashclaw_domain::action::Action>(
            &caller.org,
            action_id.as_str(),
            ActionCommand::Record(Box::new(new)),
            &actor,
        )
        .await
    {
        Ok(_) | Err(CommandError::Rejected(ActionError::AlreadyExists)) => Ok(action_id),
        Err(CommandError::Rejected(e)) => Err(ApiError::internal(e)),
        Err(CommandError::Failed(e)) => Err(e),
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
) -> Result<Json<Value>, ApiError> {
    let limit = crate::routes::clamp_param(q.limit.as_deref(), 20, 1, 1000, "limit")?;
    let offset = crate::routes::clamp_param(q.offset.as_deref(), 0, 0, i64::MAX, "offset")?;
    let days = match q.days.as_deref() {
        None => None,
        Some(d) => Some(crate::routes::clamp_param(Some(d), 1, 1, 90, "days")?),
    };
    if let Some(d) = &q.decision {
        if !["allow", "warn", "require_approval", "block"].contains(&d.as_str()) {
            return Err(ApiError::validation(vec![
                "decision must be one of: allow, warn, require_approval, block".into(),
            ]));
        }
    }
    state.projector.catch_up(&caller.org).await?;
    let filter = "org_id = $1 AND ($2::text IS NULL OR agent_id = $2)
        AND ($3::text IS NULL OR decision = $3)
        AND ($4::int IS NULL OR created_at > now() - make_interval(days => $4))";
    let docs: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT e.payload::text
           FROM (SELECT org_id, ledger_seq, created_at FROM guard_decisions WHERE {filter}
                  ORDER BY created_at DESC, ledger_seq DESC LIMIT $5 OFFSET $6) g
           JOIN events e ON e.org_id = g.org_id AND e.ledger_seq = g.ledger_seq
          ORDER BY g.created_at DESC, g.ledger_seq DESC"
    ))
    .bind(caller.org.as_str())
    .bind(&q.agent_id)
    .bind(&q.decision)
    .bind(days.map(|d| d as i32))
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?;
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM guard_decisions WHERE {filter}"
    ))
    .bind(caller.org.as_str())
    .bind(&q.agent_id)
    .bind(&q.decision)
    .bind(days.map(|d| d as i32))
    .fetch_one(&state.pool)
    .await?;
    let stats: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE decision = 'block'),
                count(*) FILTER (WHERE decision = 'warn'),
                count(*) FILTER (WHERE decision = 'require_approval')
           FROM guard_decisions WHERE org_id = $1 AND created_at > now() - interval '24 hours'",
    )
    .bind(caller.org.as_str())
    .fetch_one(&state.pool)
    .await?;
    let decisions: Vec<Value> = docs
        .iter()
        .filter_map(|d| wire::stored_decision(d))
        .map(|d| wire::decision_row(&caller.org, &d))
        .collect();
    Ok(Json(json!({
        "decisions": decisions,
        "total": total,
        "stats": {"total_24h": stats.0, "blocks_24h": stats.1, "warns_24h": stats.2, "approvals_24h": stats.3},
        "limit": limit,
        "offset": offset,
    })))
}

/// The org's recorded requests since `since`, newest first, at most `limit` (claims left out:
/// a claim re-evaluates a request already counted). Caught up first, so a caller sees its
/// own decisions. Used to replay real traffic (simulation, posture).
pub async fn recorded_requests(
    state: &AppState,
    org: &dashclaw_domain::OrgId,
    since: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> Result<Vec<GuardDecisionRecord>, ApiError> {
    state.projector.catch_up(org).await?;
    let records: Vec<String> = sqlx::query_scalar(
        "SELECT e.payload::text
           FROM (SELECT org_id, ledger_seq FROM guard_decisions
                  WHERE org_id = $1 AND created_at > $2
                  ORDER BY ledger_seq DESC LIMIT $3) g
           JOIN events e ON e.org_id = g.org_id AND e.ledger_seq = g.ledger_seq
          ORDER BY g.ledger_seq DESC",
    )
    .bind(org.as_str())
    .bind(since)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    Ok(records
        .iter()
        .filter_map(|r| wire::stored_decision(r))
        .filter(|r| r.purpose != DecisionPurpose::Claim)
        .collect())
}

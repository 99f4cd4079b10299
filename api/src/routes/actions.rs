//! Actions: record (`POST /api/actions`), list, read, the legacy update and the execution
//! claim (`PATCH`), one-shot outcomes, approvals, trace and graph. Contract sections 4-7, 16.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dashclaw_domain::action::{
    Action, ActionCommand, ActionDetails, ActionError, ActionRecord, ActionStatus, ClaimExecution,
    LegacyUpdate, NewAction, ReportOutcome, ReportedOutcome,
};
use dashclaw_domain::assumption::AssumptionRecord;
use dashclaw_domain::guard::OperatorGrant;
use dashclaw_domain::guard_decision::{DecisionPurpose, GuardDecision};
use dashclaw_domain::ids::{ActionId, GuardDecisionId};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::commands::{Actor, CommandError};
use crate::error::{ApiError, ErrorCode};
use crate::extract::{Body, Id, Params};
use crate::governance::{decide, random, Ask};
use crate::routes::clamp_param;
use crate::routes::guard::{act_hash, decision_body, guard_fields, refuse_injection};
use crate::server::AppState;
use crate::validate::{object, Fields};
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/actions", get(list).post(create))
        .route("/api/actions/{id}", get(read).patch(patch))
        .route(
            "/api/actions/{id}/outcome",
            get(outcome).post(report_outcome),
        )
        .route("/api/actions/{id}/approve", post(approve))
        .route("/api/approvals/{id}", post(approve))
        .route("/api/actions/{id}/trace", get(trace))
        .route("/api/actions/{id}/graph", get(graph))
}

fn security() -> Value {
    json!({"clean": true, "findings_count": 0, "critical_count": 0, "categories": []})
}

fn action_not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "Action not found")
}

fn actor(caller: &Caller, agent: Option<&str>) -> Actor {
    Actor::of(&caller.principal, agent)
}

/// Loads an action of the caller's org; ids that cannot exist are simply not found (so a
/// malformed or foreign id answers 404, never 400 or 500).
async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<ActionRecord, ApiError> {
    let Ok(id) = ActionId::parse(id) else {
        return Err(action_not_found());
    };
    let action: Action = state.ledger.load(&caller.org, id.as_str()).await?;
    action.record.ok_or_else(action_not_found)
}

/// Runs a command on an action; domain refusals come back as `Rejected`.
async fn run(
    state: &AppState,
    caller: &Caller,
    id: &ActionId,
    command: ActionCommand,
) -> Result<Result<ActionRecord, ActionError>, ApiError> {
    match state
        .ledger
        .execute::<Action>(&caller.org, id.as_str(), command, &actor(caller, None))
        .await
    {
        Ok(action) => action.record.map(Ok).ok_or_else(action_not_found),
        Err(CommandError::Rejected(e)) => Ok(Err(e)),
        Err(CommandError::Failed(e)) => Err(e),
    }
}

/// Records the expiry of an overdue approval (lazy expiry, contract 4.4); returns the
/// current record either way.
async fn expire_if_overdue(
    state: &AppState,
    caller: &Caller,
    record: ActionRecord,
) -> Result<ActionRecord, ApiError> {
    let now = state.clock.now();
    if record.status != ActionStatus::PendingApproval || !record.is_overdue(now) {
        return Ok(record);
    }
    match run(
        state,
        caller,
        &record.action_id,
        ActionCommand::Expire { now },
    )
    .await?
    {
        Ok(expired) => Ok(expired),
        // Someone decided or expired it meanwhile: read what is there now.
        Err(_) => load(state, caller, record.action_id.as_str()).await,
    }
}

// ---- POST /api/actions -------------------------------------------------------------------

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Response, ApiError> {
    state.limiter.org_hit(&caller.org)?;
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let agent_id = f.required_string("agent_id", 128);
    let declared_goal = f.required_string("declared_goal", 2000);
    let input = guard_fields(&mut f, false);
    let action_id = f.string("action_id", 128);
    let details = ActionDetails {
        agent_id: agent_id.clone().unwrap_or_default(),
        agent_name: None,
        swarm_id: None,
        parent_action_id: f.string("parent_action_id", 128),
        action_type: String::new(),
        declared_goal: declared_goal.clone().unwrap_or_default(),
        reasoning: f.string("reasoning", 4000),
        authorization_scope: f.string("authorization_scope", 1000),
        trigger: None,
        systems_touched: Vec::new(),
        input_summary: f.string("input_summary", 4000),
        status: f
            .one_of("status", ActionStatus::CLIENT_SUPPLIABLE)
            .and_then(|s| ActionStatus::parse(&s)),
        reversible: None,
        confidence: f.integer("confidence", 0, 100).map(|n| n as u8),
        recommendation_id: f.string("recommendation_id", 128),
        output_summary: f.string("output_summary", 4000),
        side_effects: f.strings("side_effects", 50, 500),
        artifacts_created: f.strings("artifacts_created", 100, 500),
        error_message: f.string("error_message", 4000),
        timestamp_start: f.timestamp("timestamp_start"),
        timestamp_end: f.timestamp("timestamp_end"),
        duration_ms: f.integer("duration_ms", 0, i64::MAX).map(|n| n as u64),
        cost_estimate: f.number("cost_estimate", 0.0, 10_000.0),
        tokens_in: f
            .integer("tokens_in", 0, i64::MAX)
            .map(|n| n.min(10_000_000) as u64),
        tokens_out: f
            .integer("tokens_out", 0, i64::MAX)
            .map(|n| n.min(10_000_000) as u64),
        model: f.string("model", 128),
        idempotency_key: None,
        session_id: f.string("session_id", 128),
    };
    let claimed_decision = f.string("guard_decision_id", 64);
    f.finish()?;
    let (Some(input), Some(agent_id)) = (input, agent_id) else {
        return Err(ApiError::validation(vec!["action_type is required".into()]));
    };
    if input.request.action_type == "containment_promote" {
        return Err(ApiError::new(
            ErrorCode::ReservedActionType,
            "action_type \"containment_promote\" is reserved for the server",
        ));
    }
    let action_id = match action_id {
        Some(id) => ActionId::parse(&id).map_err(|e| ApiError::validation(vec![e.to_string()]))?,
        None => match &input.idempotency_key {
            Some(key) => ActionId::for_idempotency_key(&caller.org, key),
            None => ActionId::random(random()?),
        },
    };
    // Idempotency first: a retried create returns the original action; an id that is taken
    // otherwise is refused before anything is evaluated or written.
    match &input.idempotency_key {
        Some(key) => {
            if let Some(response) = replay_existing(&state, &caller, &action_id, key).await? {
                return Ok(response);
            }
        }
        None => {
            let existing: Action = state.ledger.load(&caller.org, action_id.as_str()).await?;
            if existing.record.is_some() {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "Action with this action_id already exists",
                ));
            }
        }
    }
    if let Some(id) = &claimed_decision {
        let known = GuardDecisionId::is_well_formed(id)
            && state
                .ledger
                .load::<GuardDecision>(&caller.org, id)
                .await?
                .record
                .is_some();
        if !known {
            return Err(ApiError::bad_request(
                "guard_decision_id does not match a guard decision in this org",
            ));
        }
    }
    refuse_injection(declared_goal.as_deref())?;

    let mut request = input.request.clone();
    request.agent_id = Some(agent_id.clone());
    request.declared_goal = declared_goal.clone();
    let now = state.clock.now();
    let decision = decide(
        &state.pool,
        &state.ledger,
        state.live.views(),
        state.live.counters(),
        &caller,
        Ask {
            request: request.clone(),
            purpose: DecisionPurpose::Action,
            action_id: Some(action_id.clone()),
            idempotency_key: input.idempotency_key.clone(),
            grant: None,
            now,
        },
    )
    .await?;
    let e = &decision.evaluation;
    let new = NewAction {
        action_id: action_id.clone(),
        details: ActionDetails {
            agent_name: request.agent_name.clone(),
            swarm_id: input.swarm_id.clone(),
            trigger: input.trigger.clone(),
            action_type: request.action_type.clone(),
            systems_touched: request.systems_touched.clone(),
            reversible: request.reversible,
            confidence: details.confidence.or(input.confidence),
            idempotency_key: input.idempotency_key.clone(),
            ..details
        },
        verdict: e.decision,
        risk_score: e.risk_score,
        guard_decision_id: decision.decision_id.clone(),
        guard_reason: (!e.reasons.is_empty()).then(|| e.reasons.join("; ")),
        matched_policies: e.matched_policies.clone(),
        approval_wait_seconds: input.approval_wait_seconds,
        approval_grace: state.approval_grace(&caller.org).await?,
        act_content_hash: request.act_hash.clone(),
        created_by: caller.principal.clone(),
        now,
    };
    let record = match state
        .ledger
        .execute::<Action>(
            &caller.org,
            action_id.as_str(),
            ActionCommand::Record(Box::new(new)),
            &actor(&caller, Some(&agent_id)),
        )
        .await
    {
        Ok(action) => action.record.ok_or_else(action_not_found)?,
        Err(CommandError::Rejected(ActionError::AlreadyExists)) => {
            // Lost a race with an identical create: answer with the winner.
            if let Some(key) = &input.idempotency_key {
                if let Some(response) = replay_existing(&state, &caller, &action_id, key).await? {
                    return Ok(response);
                }
            }
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "Action with this action_id already exists",
            ));
        }
        Err(CommandError::Rejected(e)) => return Err(ApiError::internal(e)),
        Err(CommandError::Failed(e)) => return Err(e),
    };
    let row = wire::action_row(&caller.org, &record);
    let decision_json = Value::Object(decision_body(&decision));
    match record.status {
        ActionStatus::Blocked => Err(ApiError::new(
            ErrorCode::ActionBlocked,
            "Action blocked by policy",
        )
        .with("action", row)
        .with("decision", decision_json)),
        status => {
            let code = if status == ActionStatus::PendingApproval {
                StatusCode::ACCEPTED
            } else {
                StatusCode::CREATED
            };
            Ok((
                code,
                Json(json!({
                    "action": row,
                    "action_id": record.action_id,
                    "decision": decision_json,
                    "security": security(),
                })),
            )
                .into_response())
        }
    }
}

/// The idempotent replay answer if `id` already exists with the same key.
async fn replay_existing(
    state: &AppState,
    caller: &Caller,
    id: &ActionId,
    key: &str,
) -> Result<Option<Response>, ApiError> {
    let action: Action = state.ledger.load(&caller.org, id.as_str()).await?;
    let Some(record) = action.record else {
        return Ok(None);
    };
    if record.idempotency_key.as_deref() != Some(key) {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "Action with this action_id already exists",
        ));
    }
    Ok(Some(
        (
            StatusCode::OK,
            Json(json!({
                "action": wire::action_row(&caller.org, &record),
                "action_id": record.action_id,
                "idempotent_replay": true,
            })),
        )
            .into_response(),
    ))
}

// ---- GET /api/actions --------------------------------------------------------------------

#[derive(Deserialize)]
struct ListQuery {
    agent_id: Option<String>,
    swarm_id: Option<String>,
    status: Option<String>,
    exclude_status: Option<String>,
    action_type: Option<String>,
    risk_min: Option<String>,
    outcome_status: Option<String>,
    days: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

const OUTCOME_STATUSES: &[&str] = &[
    "pending",
    "completed",
    "partial",
    "failed",
    "lost_confirmation",
];

fn check_enum(value: &Option<String>, name: &str, allowed: &[&str]) -> Result<(), ApiError> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::validation(vec![format!(
            "{name} must be one of: {}",
            allowed.join(", ")
        )])),
        _ => Ok(()),
    }
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = clamp_param(q.limit.as_deref(), 50, 1, 200, "limit")?;
    let offset = clamp_param(q.offset.as_deref(), 0, 0, i64::MAX, "offset")?;
    let risk_min = q
        .risk_min
        .as_deref()
        .map(|r| clamp_param(Some(r), 0, 0, 100, "risk_min"))
        .transpose()?;
    let days = q
        .days
        .as_deref()
        .map(|d| clamp_param(Some(d), 1, 1, 365, "days"))
        .transpose()?;
    check_enum(&q.status, "status", ActionStatus::ALL)?;
    check_enum(&q.exclude_status, "exclude_status", ActionStatus::ALL)?;
    check_enum(&q.outcome_status, "outcome_status", OUTCOME_STATUSES)?;
    state.projector.catch_up(&caller.org).await?;
    if q.status.as_deref() == Some("pending_approval") {
        // Dead approvals are expired before the queue is shown (contract 4.3).
        let overdue: Vec<String> = sqlx::query_scalar(
            "SELECT action_id FROM action_records
              WHERE org_id = $1 AND status = 'pending_approval'
                AND COALESCE(approval_expires_at, timestamp_start + interval '24 hours') < $2",
        )
        .bind(caller.org.as_str())
        .bind(state.clock.now())
        .fetch_all(&state.pool)
        .await?;
        for id in overdue {
            if let Ok(record) = load(&state, &caller, &id).await {
                expire_if_overdue(&state, &caller, record).await?;
            }
        }
        state.projector.catch_up(&caller.org).await?;
    }
    let exclude = if q.status.is_some() {
        None
    } else {
        q.exclude_status.clone()
    };
    let filter = "org_id = $1
        AND ($2::text IS NULL OR agent_id = $2) AND ($3::text IS NULL OR swarm_id = $3)
        AND ($4::text IS NULL OR status = $4) AND ($5::text IS NULL OR status <> $5)
        AND ($6::text IS NULL OR action_type = $6) AND ($7::int IS NULL OR risk_score >= $7)
        AND ($8::text IS NULL OR outcome_status = $8)
        AND ($9::int IS NULL OR timestamp_start > now() - make_interval(days => $9))";
    macro_rules! bind_filter {
        ($query:expr) => {
            $query
                .bind(caller.org.as_str())
                .bind(&q.agent_id)
                .bind(&q.swarm_id)
                .bind(&q.status)
                .bind(&exclude)
                .bind(&q.action_type)
                .bind(risk_min.map(|r| r as i32))
                .bind(&q.outcome_status)
                .bind(days.map(|d| d as i32))
        };
    }
    let docs: Vec<Value> = bind_filter!(sqlx::query_scalar(&format!(
        "SELECT doc::json FROM action_records WHERE {filter}
          ORDER BY timestamp_start DESC, ledger_seq DESC LIMIT $10 OFFSET $11"
    )))
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?;
    type Stats = (i64, i64, i64, i64, i64, i64, Option<f64>, Option<f64>);
    let stats: Stats = bind_filter!(sqlx::query_as(&format!(
        "SELECT count(*), count(*) FILTER (WHERE status = 'completed'),
                count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'running'),
                count(*) FILTER (WHERE status = 'blocked'), count(*) FILTER (WHERE risk_score >= 70),
                avg(risk_score)::float8, sum(cost_estimate)::float8
           FROM action_records WHERE {filter}"
    )))
    .fetch_one(&state.pool)
    .await?;
    let actions: Vec<Value> = docs
        .into_iter()
        .filter_map(|d| serde_json::from_value::<ActionRecord>(d).ok())
        .map(|r| wire::action_row(&caller.org, &r))
        .collect();
    Ok(Json(json!({
        "actions": actions,
        "total": stats.0,
        "stats": {
            "total": stats.0, "completed": stats.1, "failed": stats.2, "running": stats.3,
            "blocked": stats.4, "high_risk": stats.5,
            "avg_risk": stats.6.unwrap_or(0.0), "total_cost": stats.7.unwrap_or(0.0),
        },
        "lastUpdated": wire::ts(state.clock.now()),
    })))
}

// ---- GET /api/actions/:id ----------------------------------------------------------------

async fn assumptions_of(
    state: &AppState,
    caller: &Caller,
    id: &ActionId,
) -> Result<Vec<AssumptionRecord>, ApiError> {
    state.projector.catch_up(&caller.org).await?;
    let docs: Vec<Value> = sqlx::query_scalar(
        "SELECT doc FROM assumptions WHERE org_id = $1 AND action_id = $2 ORDER BY created_at",
    )
    .bind(caller.org.as_str())
    .bind(id.as_str())
    .fetch_all(&state.pool)
    .await?;
    Ok(docs
        .into_iter()
        .filter_map(|d| serde_json::from_value(d).ok())
        .collect())
}

fn assumption_row(a: &AssumptionRecord) -> Value {
    let mut v = serde_json::to_value(a).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.insert("validated".into(), json!(u8::from(a.validated)));
        m.insert("invalidated".into(), json!(u8::from(a.invalidated)));
    }
    v
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    let record = load(&state, &caller, &id).await?;
    let record = expire_if_overdue(&state, &caller, record).await?;
    let guard: GuardDecision = state
        .ledger
        .load(&caller.org, record.guard_decision_id.as_str())
        .await?;
    let assumptions: Vec<Value> = assumptions_of(&state, &caller, &record.action_id)
        .await?
        .iter()
        .map(assumption_row)
        .collect();
    Ok(Json(json!({
        "action": wire::action_row(&caller.org, &record),
        "assumptions": assumptions,
        "guard_decision": guard.record.map(|d| wire::decision_row(&caller.org, &d)),
        "message_summary": {"total": 0, "participants": [], "first_message_at": null, "last_message_at": null},
        "deviations": [],
    })))
}

// ---- PATCH /api/actions/:id --------------------------------------------------------------

async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let body = object(&body)?;
    if body.contains_key("claim_execution") {
        return claim(&state, &caller, &id, &body).await;
    }
    legacy_update(&state, &caller, &id, &body).await
}

fn invalid_claim() -> ApiError {
    ApiError::new(ErrorCode::InvalidExecutionClaim, "Invalid execution claim")
}

/// The execution claim (contract 5): re-evaluates the recorded request under today's
/// policies, then claims the action's single attempt.
async fn claim(
    state: &AppState,
    caller: &Caller,
    id: &str,
    body: &Map<String, Value>,
) -> Result<Response, ApiError> {
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
    let act = match body.get("act") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(act_hash(v)?),
        Some(_) => return Err(invalid_claim()),
    };
    let Some(agent_id) = body
        .get("agent_id")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    else {
        return Err(ApiError::new(
            ErrorCode::AgentIdentityRequired,
            "Execution claim requires agent identity",
        ));
    };
    let record = load(state, caller, id).await?;
    let conflict = || {
        ApiError::new(
            ErrorCode::ExecutionClaimConflict,
            "Action is not eligible for a new execution attempt. Reconcile its state before retrying.",
        )
        .with("action_id", record.action_id.as_str())
    };
    // The cheap rules first: an ineligible claim is refused before anything is evaluated or
    // written.
    let mut claim = ClaimExecution {
        attempt_id: attempt_id.clone(),
        agent_id: agent_id.to_owned(),
        principal: caller.principal.clone(),
        act_hash: act.clone(),
        reevaluation: dashclaw_domain::guard::Verdict::Allow,
        guard_decision_id: record.guard_decision_id.clone(),
        now: state.clock.now(),
    };
    if let Err(ActionError::ClaimNotEligible(why)) = record.check_claim(&claim) {
        return Err(conflict().with("reason", why));
    }
    let recorded: GuardDecision = state
        .ledger
        .load(&caller.org, record.guard_decision_id.as_str())
        .await?;
    let Some(recorded) = recorded.record else {
        return Err(conflict());
    };
    let mut request = recorded.request;
    request.act_hash = act.clone();
    if !request
        .client_capabilities
        .iter()
        .any(|c| c == "execution_claims")
    {
        request.client_capabilities.push("execution_claims".into());
    }
    let now = state.clock.now();
    let grant = record.approved_by.as_deref().map(|who| OperatorGrant {
        action_id: record.action_id.as_str(),
        approved_by: who,
    });
    let decision = decide(
        &state.pool,
        &state.ledger,
        state.live.views(),
        state.live.counters(),
        caller,
        Ask {
            request,
            purpose: DecisionPurpose::Claim,
            action_id: Some(record.action_id.clone()),
            idempotency_key: None,
            grant,
            now,
        },
    )
    .await?;
    claim.reevaluation = decision.evaluation.decision;
    claim.guard_decision_id = decision.decision_id.clone();
    claim.now = now;
    let command = ActionCommand::ClaimExecution(claim);
    match run(state, caller, &record.action_id, command).await? {
        Ok(claimed) => Ok((
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({
                "claimed": true,
                "action_id": claimed.action_id,
                "attempt_id": attempt_id,
                "claimed_at": claimed.execution_claimed_at.map(wire::ts),
            })),
        )
            .into_response()),
        Err(ActionError::ClaimNotEligible(why)) => Err(conflict().with("reason", why)),
        Err(e) => Err(ApiError::internal(e)),
    }
}

const OUTCOME_FIELDS: &str = "status, output_summary, side_effects, artifacts_created, \
    error_message, timestamp_end, duration_ms, cost_estimate, tokens_in, tokens_out, model";

async fn legacy_update(
    state: &AppState,
    caller: &Caller,
    id: &str,
    body: &Map<String, Value>,
) -> Result<Response, ApiError> {
    let mut f = Fields::new(body);
    let now = state.clock.now();
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
        duration_ms: f.integer("duration_ms", 0, i64::MAX).map(|n| n as u64),
        cost_estimate: f.number("cost_estimate", 0.0, 10_000.0),
        tokens_in: f
            .integer("tokens_in", 0, i64::MAX)
            .map(|n| n.min(10_000_000) as u64),
        tokens_out: f
            .integer("tokens_out", 0, i64::MAX)
            .map(|n| n.min(10_000_000) as u64),
        model: f.string("model", 128),
        now,
    };
    let close_if_running = f.raw("close_if_running") == Some(&Value::Bool(true));
    f.finish()?;
    if update
        == (LegacyUpdate {
            now,
            ..Default::default()
        })
    {
        return Err(ApiError::validation(vec![format!(
            "At least one outcome field is required: {OUTCOME_FIELDS}"
        )]));
    }
    let record = load(state, caller, id).await?;
    match run(
        state,
        caller,
        &record.action_id,
        ActionCommand::Update(Box::new(update)),
    )
    .await?
    {
        Ok(updated) => Ok(Json(json!({
            "action": wire::action_row(&caller.org, &updated),
            "security": security(),
        }))
        .into_response()),
        Err(ActionError::NotRunning(_)) if close_if_running => Ok(Json(json!({
            "action": wire::action_row(&caller.org, &record),
            "security": security(),
        }))
        .into_response()),
        Err(ActionError::NotRunning(status)) => Err(ApiError::new(
            ErrorCode::Conflict,
            "Action is in a terminal state and cannot be modified",
        )
        .with("status", status.as_str())),
        Err(e) => Err(ApiError::internal(e)),
    }
}

// ---- outcomes ----------------------------------------------------------------------------

fn outcome_body(record: &ActionRecord) -> Value {
    let end = record.outcome_at.unwrap_or_else(wire::now);
    json!({
        "action_id": record.action_id,
        "status": record.outcome_status.as_str(),
        "outcome_at": record.outcome_at.map(wire::ts),
        "summary": record.outcome_summary,
        "error_message": record.outcome_error,
        "progress": record.outcome_progress,
        "elapsed_ms": (end - record.created_at).num_milliseconds().max(0),
    })
}

async fn outcome(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    let record = load(&state, &caller, &id).await?;
    Ok(Json(outcome_body(&record)))
}

async fn report_outcome(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let body = object(&body)?;
    let status = match body.get("status").and_then(Value::as_str) {
        Some("completed") => ReportedOutcome::Completed,
        Some("partial") => ReportedOutcome::Partial,
        Some("failed") => ReportedOutcome::Failed,
        _ => {
            return Err(ApiError::bad_request("Invalid status")
                .with_details("status must be one of: completed, partial, failed"))
        }
    };
    let text = |key: &str| -> Result<Option<String>, ApiError> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ApiError::validation(vec![format!(
                "{key} must be a string"
            )])),
        }
    };
    let summary = text("summary")?;
    let error_message = text("error_message")?;
    if status == ReportedOutcome::Failed && error_message.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "error_message is required when status is \"failed\"",
        ));
    }
    let progress = match body.get("progress") {
        Some(p @ Value::Object(_)) => Some(p.clone()),
        None | Some(Value::Null) if status != ReportedOutcome::Partial => None,
        _ => {
            return Err(ApiError::bad_request(
                "progress (object) is required when status is \"partial\"",
            ))
        }
    };
    if let Some(p) = &progress {
        let size = serde_json::to_vec(p).map(|v| v.len()).unwrap_or(0);
        if size > 8192 {
            return Err(ApiError::bad_request(format!(
                "progress payload too large ({size} bytes; max 8192)"
            )));
        }
    }
    let record = load(&state, &caller, &id).await?;
    let command = ActionCommand::ReportOutcome(ReportOutcome {
        status,
        summary,
        error_message,
        progress,
        now: state.clock.now(),
    });
    match run(&state, &caller, &record.action_id, command).await? {
        Ok(done) => Ok(Json(
            json!({"outcome": outcome_body(&done), "security": security()}),
        )),
        Err(ActionError::OutcomeNotAllowed(s)) => Err(ApiError::new(
            ErrorCode::OutcomeConflict,
            format!(
                "Cannot report an outcome for an action in status '{}'",
                s.as_str()
            ),
        )
        .with("current_status", s.as_str())),
        Err(ActionError::OutcomeAlreadySet(s)) => Err(ApiError::new(
            ErrorCode::OutcomeConflict,
            "outcome already set",
        )
        .with("current_status", s.as_str())),
        Err(e) => Err(ApiError::internal(e)),
    }
}

// ---- approvals ---------------------------------------------------------------------------

async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin("Admin access required for approvals")?;
    let body = object(&body)?;
    let allow = match body.get("decision").and_then(Value::as_str) {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return Err(ApiError::bad_request(
                "Invalid decision. Must be allow or deny.",
            ))
        }
    };
    let reasoning = match body.get("reasoning") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::validation(vec![
                "reasoning must be a string".into()
            ]))
        }
    };
    let decided = decide_approval(&state, &caller, &id, allow, reasoning).await?;
    Ok(Json(json!({
        "success": true,
        "action": wire::action_row(&caller.org, &decided),
        "security": security(),
    })))
}

/// An admin's approval or denial of a held action; shared by REST and GraphQL. The caller
/// has checked the role.
pub async fn decide_approval(
    state: &AppState,
    caller: &Caller,
    id: &str,
    allow: bool,
    reasoning: Option<String>,
) -> Result<ActionRecord, ApiError> {
    let record = load(state, caller, id).await?;
    let now = state.clock.now();
    let command = if allow {
        ActionCommand::Approve {
            approver: caller.principal.clone(),
            reasoning,
            now,
        }
    } else {
        ActionCommand::Deny {
            approver: caller.principal.clone(),
            reasoning,
            now,
        }
    };
    let expired_message = "Approval expired: the requesting agent stopped waiting for this decision, so approving it can no longer release anything. If the action is still wanted, have the agent retry it — a fresh approval request will be created.";
    match run(state, caller, &record.action_id, command).await? {
        Ok(decided) => Ok(decided),
        Err(ActionError::ApprovalOverdue) => {
            let expired = expire_if_overdue(state, caller, record).await?;
            Err(ApiError::new(ErrorCode::ApprovalExpired, expired_message)
                .with("action", wire::action_row(&caller.org, &expired)))
        }
        Err(ActionError::ApprovalExpired) => {
            Err(ApiError::new(ErrorCode::ApprovalExpired, expired_message))
        }
        Err(ActionError::NotPendingApproval) => Err(ApiError::new(
            ErrorCode::NotPendingApproval,
            "Action is not pending approval",
        )),
        Err(ActionError::SelfApproval) => Err(ApiError::new(
            ErrorCode::SelfApprovalForbidden,
            "Separation of duties: you cannot approve an action you recorded",
        )),
        Err(e) => Err(ApiError::internal(e)),
    }
}

// ---- trace and graph ---------------------------------------------------------------------

/// Actions of the org matching a SQL condition on `action_records` (bound: $1 org, $2 value).
async fn actions_where(
    state: &AppState,
    caller: &Caller,
    condition: &str,
    value: &str,
    limit: i64,
) -> Result<Vec<ActionRecord>, ApiError> {
    let docs: Vec<Value> = sqlx::query_scalar(&format!(
        "SELECT doc::json FROM action_records WHERE org_id = $1 AND {condition}
          ORDER BY timestamp_start DESC LIMIT {limit}"
    ))
    .bind(caller.org.as_str())
    .bind(value)
    .fetch_all(&state.pool)
    .await?;
    Ok(docs
        .into_iter()
        .filter_map(|d| serde_json::from_value(d).ok())
        .collect())
}

struct Trace {
    action: ActionRecord,
    assumptions: Vec<AssumptionRecord>,
    parents: Vec<ActionRecord>,
    children: Vec<ActionRecord>,
    related: Vec<ActionRecord>,
}

async fn gather(state: &AppState, caller: &Caller, id: &str) -> Result<Trace, ApiError> {
    let action = load(state, caller, id).await?;
    let assumptions = assumptions_of(state, caller, &action.action_id).await?;
    let mut parents = Vec::new();
    let mut next = action.parent_action_id.clone();
    while let Some(parent) = next.take() {
        if parents.len() >= 10 {
            break;
        }
        match load(state, caller, &parent).await {
            Ok(p) => {
                next = p.parent_action_id.clone();
                parents.push(p);
            }
            Err(_) => break,
        }
    }
    let children = actions_where(
        state,
        caller,
        "doc::json->>'parent_action_id' = $2",
        action.action_id.as_str(),
        100,
    )
    .await?;
    let related = actions_where(state, caller, "agent_id = $2", &action.agent_id, 200)
        .await?
        .into_iter()
        .filter(|r| {
            r.action_id != action.action_id
                && (r.timestamp_start - action.timestamp_start)
                    .num_seconds()
                    .abs()
                    <= 3600
        })
        .take(20)
        .collect();
    Ok(Trace {
        action,
        assumptions,
        parents,
        children,
        related,
    })
}

async fn trace(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    let t = gather(&state, &caller, &id).await?;
    let org = &caller.org;
    let row = |r: &ActionRecord| wire::action_row(org, r);
    let invalidated: Vec<&AssumptionRecord> =
        t.assumptions.iter().filter(|a| a.invalidated).collect();
    let validated = t.assumptions.iter().filter(|a| a.validated).count();
    let failed = |rs: &[ActionRecord]| -> Vec<String> {
        rs.iter()
            .filter(|r| r.status == ActionStatus::Failed)
            .map(|r| r.action_id.to_string())
            .collect()
    };
    let mut indicators = Vec::new();
    if !invalidated.is_empty() {
        indicators.push(json!({"type": "invalidated_assumptions", "severity": "high", "count": invalidated.len(),
            "detail": invalidated.iter().map(|a| a.assumption.clone()).collect::<Vec<_>>()}));
    }
    let parent_failures = failed(&t.parents);
    if !parent_failures.is_empty() {
        indicators.push(json!({"type": "parent_failures", "severity": "high", "count": parent_failures.len(), "detail": parent_failures}));
    }
    let related_failures = failed(&t.related);
    if !related_failures.is_empty() {
        indicators.push(json!({"type": "related_failures", "severity": "medium", "count": related_failures.len(), "detail": related_failures}));
    }
    Ok(Json(json!({
        "action": row(&t.action),
        "trace": {
            "assumptions": {
                "total": t.assumptions.len(), "validated": validated, "invalidated": invalidated.len(),
                "unvalidated": t.assumptions.len() - validated - invalidated.len(),
                "items": t.assumptions.iter().map(assumption_row).collect::<Vec<_>>(),
            },
            "loops": {"total": 0, "open": 0, "resolved": 0, "cancelled": 0, "items": []},
            "parent_chain": t.parents.iter().map(row).collect::<Vec<_>>(),
            "sub_actions": t.children.iter().map(row).collect::<Vec<_>>(),
            "related_actions": t.related.iter().map(row).collect::<Vec<_>>(),
            "root_cause_indicators": indicators,
        }
    })))
}

async fn graph(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    let t = gather(&state, &caller, &id).await?;
    let node = |r: &ActionRecord, root: bool| {
        json!({
            "id": format!("action:{}", r.action_id), "type": "action", "label": r.declared_goal,
            "status": r.status.as_str(), "riskScore": r.risk_score, "agentId": r.agent_id,
            "agentName": r.agent_name, "actionType": r.action_type,
            "timestamp": wire::ts(r.timestamp_start), "isRoot": root, "meta": {},
        })
    };
    let root = format!("action:{}", t.action.action_id);
    let mut nodes = vec![node(&t.action, true)];
    let mut edges = Vec::new();
    let mut child = root.clone();
    for p in &t.parents {
        let pid = format!("action:{}", p.action_id);
        nodes.push(node(p, false));
        edges.push(json!({"id": format!("{pid}->{child}"), "source": pid, "target": child, "type": "parent_child", "label": "spawned"}));
        child = pid;
    }
    for c in &t.children {
        let cid = format!("action:{}", c.action_id);
        nodes.push(node(c, false));
        edges.push(json!({"id": format!("{root}->{cid}"), "source": root, "target": cid, "type": "parent_child", "label": "spawned"}));
    }
    for r in &t.related {
        let rid = format!("action:{}", r.action_id);
        nodes.push(node(r, false));
        edges.push(json!({"id": format!("{root}~{rid}"), "source": root, "target": rid, "type": "related", "label": "same agent"}));
    }
    for a in &t.assumptions {
        let aid = format!("assumption:{}", a.assumption_id);
        let status = if a.invalidated {
            "invalidated"
        } else if a.validated {
            "validated"
        } else {
            "unvalidated"
        };
        nodes.push(
            json!({"id": aid, "type": "assumption", "label": a.assumption, "status": status,
            "riskScore": null, "agentId": t.action.agent_id, "agentName": t.action.agent_name,
            "actionType": null, "timestamp": wire::ts(a.created_at), "isRoot": false, "meta": {}}),
        );
        edges.push(json!({"id": format!("{aid}->{root}"), "source": aid, "target": root, "type": "assumption_of", "label": "assumed by"}));
    }
    Ok(Json(
        json!({"rootActionId": t.action.action_id, "nodes": nodes, "edges": edges}),
    ))
}

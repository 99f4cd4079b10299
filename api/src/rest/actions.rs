//! Actions: record (`POST /api/actions`), list, read, the legacy update and the execution
//! claim (`PATCH`), one-shot outcomes, approvals, trace and graph. Contract sections 4-7, 16.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dashclaw_domain::action::{ActionRecord, ActionStatus, OutcomeStatus};
use dashclaw_domain::assumption::AssumptionRecord;
use dashclaw_projections::read::actions::ActionFilter;
use dashclaw_projections::read::Page;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::extract::{Body, Id, Params};
use crate::input::fields::object;
use crate::rest::clamp_param;
use crate::service::actions::Recorded;
use crate::service::{Caller, Error, Permission};
use crate::state::AppState;
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

// ---- POST /api/actions -------------------------------------------------------------------

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Response, Error> {
    caller.require(Permission::Write)?;
    let new = crate::input::actions::record_action(&object(&body)?)?;
    let org = &caller.org;
    Ok(match state.service.record_action(&caller, new).await? {
        Recorded::Replayed(record) => (
            StatusCode::OK,
            Json(json!({
                "action": wire::action_row(org, &record),
                "action_id": record.action_id,
                "idempotent_replay": true,
            })),
        ),
        Recorded::New { record, decision } => (
            if record.status == ActionStatus::PendingApproval {
                StatusCode::ACCEPTED
            } else {
                StatusCode::CREATED
            },
            Json(json!({
                "action": wire::action_row(org, &record),
                "action_id": record.action_id,
                "decision": Value::Object(wire::decision_body(&decision)),
                "security": wire::security(),
            })),
        ),
    }
    .into_response())
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

fn check_enum(value: &Option<String>, name: &str, allowed: &[&str]) -> Result<(), Error> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(Error::validation(vec![format!(
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
) -> Result<Json<Value>, Error> {
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
    let filter = ActionFilter {
        agent_id: q.agent_id,
        swarm_id: q.swarm_id,
        status: q.status.as_deref().and_then(ActionStatus::parse),
        exclude_status: q.exclude_status.as_deref().and_then(ActionStatus::parse),
        action_type: q.action_type,
        outcome_status: q.outcome_status.as_deref().and_then(OutcomeStatus::parse),
        risk_min: risk_min.map(|r| r as i32),
        days: days.map(|d| d as i32),
        ..Default::default()
    };
    let (records, stats) = state
        .service
        .actions(&caller, filter, Page { limit, offset })
        .await?;
    let actions: Vec<Value> = records
        .iter()
        .map(|r| wire::action_row(&caller.org, r))
        .collect();
    Ok(Json(json!({
        "actions": actions,
        "total": stats.total,
        "stats": {
            "total": stats.total, "completed": stats.completed, "failed": stats.failed,
            "running": stats.running, "blocked": stats.blocked, "high_risk": stats.high_risk,
            "avg_risk": stats.avg_risk.unwrap_or(0.0), "total_cost": stats.total_cost.unwrap_or(0.0),
        },
        "lastUpdated": wire::ts(state.service.clock().now()),
    })))
}

// ---- GET /api/actions/:id ----------------------------------------------------------------

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, Error> {
    let view = state.service.action(&caller, &id).await?;
    let org = &caller.org;
    Ok(Json(json!({
        "action": wire::action_row(org, &view.record),
        "assumptions": view.assumptions.iter().map(wire::assumption_row).collect::<Vec<_>>(),
        "guard_decision": view.guard_decision.map(|d| wire::decision_row(org, &d)),
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
) -> Result<Response, Error> {
    caller.require(Permission::Write)?;
    let body = object(&body)?;
    let org = &caller.org;
    if body.contains_key("claim_execution") {
        let claim = crate::input::actions::claim(&body)?;
        let attempt_id = claim.attempt_id.clone();
        let claimed = state.service.claim_execution(&caller, &id, claim).await?;
        return Ok((
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({
                "claimed": true,
                "action_id": claimed.action_id,
                "attempt_id": attempt_id,
                "claimed_at": claimed.execution_claimed_at.map(wire::ts),
            })),
        )
            .into_response());
    }
    let (update, close_if_running) = crate::input::actions::legacy_update(&body)?;
    let updated = state
        .service
        .update_action(&caller, &id, update, close_if_running)
        .await?;
    Ok(Json(json!({
        "action": wire::action_row(org, &updated),
        "security": wire::security(),
    }))
    .into_response())
}

// ---- outcomes ----------------------------------------------------------------------------

async fn outcome(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, Error> {
    let record = state.service.load_action(&caller, &id).await?;
    let elapsed = state.service.elapsed_ms(&record);
    Ok(Json(wire::outcome_body(&record, elapsed)))
}

async fn report_outcome(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<Value>, Error> {
    caller.require(Permission::Write)?;
    let outcome = crate::input::actions::outcome(&object(&body)?)?;
    let done = state.service.report_outcome(&caller, &id, outcome).await?;
    let elapsed = state.service.elapsed_ms(&done);
    Ok(Json(json!({
        "outcome": wire::outcome_body(&done, elapsed),
        "security": wire::security(),
    })))
}

// ---- approvals ---------------------------------------------------------------------------

async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<Value>, Error> {
    caller.require_admin("Admin access required for approvals")?;
    let (allow, reasoning) = crate::input::actions::approval(&object(&body)?)?;
    let decided = state
        .service
        .decide_approval(&caller, &id, allow, reasoning)
        .await?;
    Ok(Json(json!({
        "success": true,
        "action": wire::action_row(&caller.org, &decided),
        "security": wire::security(),
    })))
}

// ---- trace and graph ---------------------------------------------------------------------

struct Trace {
    action: ActionRecord,
    assumptions: Vec<AssumptionRecord>,
    parents: Vec<ActionRecord>,
    children: Vec<ActionRecord>,
    related: Vec<ActionRecord>,
}

async fn gather(state: &AppState, caller: &Caller, id: &str) -> Result<Trace, Error> {
    let action = state.service.load_action(caller, id).await?;
    let assumptions = state
        .service
        .assumptions_of(caller, &action.action_id)
        .await?;
    let mut parents = Vec::new();
    let mut next = action.parent_action_id.clone();
    while let Some(parent) = next.take() {
        if parents.len() >= 10 {
            break;
        }
        match state.service.load_action(caller, &parent).await {
            Ok(p) => {
                next = p.parent_action_id.clone();
                parents.push(p);
            }
            Err(_) => break,
        }
    }
    let (children, of_agent) = state.service.neighbours(caller, &action).await?;
    let related = of_agent
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
) -> Result<Json<Value>, Error> {
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
                "items": t.assumptions.iter().map(wire::assumption_row).collect::<Vec<_>>(),
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
) -> Result<Json<Value>, Error> {
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

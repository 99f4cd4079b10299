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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Body, Id, Params};
use crate::input::fields::object;
use crate::rest::clamp_param;
use crate::service::actions::Recorded;
use crate::service::{Caller, Error, Permission};
use crate::state::AppState;
use crate::wire::{
    self, ActionRow, AssumptionRow, DecisionRow, GuardResult, OutcomeBody, SecuritySummary,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/actions", get(list).post(create))
        .route("/api/actions/stats", get(stats))
        .route("/api/actions/costs", get(costs))
        .route("/api/actions/{id}/cancel", post(cancel))
        .route("/api/actions/{id}/containment", post(containment))
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

/// `POST /api/actions`: the recorded action and its decision, or the action recorded under
/// the same id before (an idempotent replay).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum RecordedAction {
    New {
        action: ActionRow,
        action_id: String,
        decision: Box<GuardResult>,
        security: SecuritySummary,
    },
    Replayed {
        action: ActionRow,
        action_id: String,
        /// Always true.
        idempotent_replay: bool,
    },
}

/// Record an action; the guard evaluates it as it is recorded.
#[utoipa::path(post, path = "/api/actions", tag = "actions",
    request_body = crate::rest::requests::RecordActionBody,
    responses(
        (status = 201, description = "Recorded (allowed, warned or blocked)", body = RecordedAction),
        (status = 202, description = "Recorded and held for approval", body = RecordedAction),
        (status = 200, description = "Recorded before under this id", body = RecordedAction)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<RecordedAction>), Error> {
    caller.require(Permission::Write)?;
    let new = crate::input::actions::record_action(&object(&body)?)?;
    let org = &caller.org;
    Ok(match state.service.record_action(&caller, new).await? {
        Recorded::Replayed(record) => (
            StatusCode::OK,
            Json(RecordedAction::Replayed {
                action: ActionRow::new(org, &record),
                action_id: record.action_id.to_string(),
                idempotent_replay: true,
            }),
        ),
        Recorded::New { record, decision } => (
            if record.status == ActionStatus::PendingApproval {
                StatusCode::ACCEPTED
            } else {
                StatusCode::CREATED
            },
            Json(RecordedAction::New {
                action: ActionRow::new(org, &record),
                action_id: record.action_id.to_string(),
                decision: Box::new(GuardResult::from(decision.as_ref())),
                security: SecuritySummary::clean(),
            }),
        ),
    })
}

// ---- GET /api/actions --------------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    agent_id: Option<String>,
    swarm_id: Option<String>,
    /// An action status.
    status: Option<String>,
    exclude_status: Option<String>,
    action_type: Option<String>,
    /// 0-100.
    #[param(value_type = Option<i64>)]
    risk_min: Option<String>,
    /// pending, completed, partial, failed or lost_confirmation.
    outcome_status: Option<String>,
    /// 1-365: only the last N days.
    #[param(value_type = Option<i64>)]
    days: Option<String>,
    /// 1-200, default 50.
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    #[param(value_type = Option<i64>)]
    offset: Option<String>,
    /// contained, awaiting_promotion, promoted or discarded. No action of this server is ever
    /// contained (it never negotiates `allow_contained`), so any of them lists nothing.
    containment_status: Option<String>,
}

/// The containment statuses a list may ask for.
const CONTAINMENT_STATUSES: &[&str] = &["contained", "awaiting_promotion", "promoted", "discarded"];

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

/// `GET /api/actions`.
#[derive(Serialize, ToSchema)]
pub struct ActionList {
    pub actions: Vec<ActionRow>,
    pub total: i64,
    pub stats: ActionStats,
    #[serde(rename = "lastUpdated")]
    pub last_updated: String,
}

/// Over every action matching the filter.
#[derive(Serialize, ToSchema)]
pub struct ActionStats {
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    pub running: i64,
    pub blocked: i64,
    pub high_risk: i64,
    pub avg_risk: f64,
    pub total_cost: f64,
}

/// The org's actions, newest first.
#[utoipa::path(get, path = "/api/actions", tag = "actions", params(ListQuery),
    responses((status = 200, description = "The actions", body = ActionList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<ActionList>, Error> {
    let limit = clamp_param(q.limit.as_deref(), 50, 1, 200, "limit")?;
    let offset = clamp_param(q.offset.as_deref(), 0, 0, i64::MAX, "offset")?;
    check_enum(
        &q.containment_status,
        "containment_status",
        CONTAINMENT_STATUSES,
    )?;
    let contained = q.containment_status.is_some();
    let filter = filter_of(q)?;
    // No action of this server is ever contained: nothing to look up.
    let (records, stats) = if contained {
        (Vec::new(), Default::default())
    } else {
        let page = Page { limit, offset };
        state.service.actions(&caller, filter, page).await?
    };
    Ok(Json(ActionList {
        actions: records
            .iter()
            .map(|r| ActionRow::new(&caller.org, r))
            .collect(),
        total: stats.total,
        stats: ActionStats::from(&stats),
        last_updated: wire::ts(state.service.clock().now()),
    }))
}

/// The filter of `GET /api/actions` (and of its stats), validated.
fn filter_of(q: ListQuery) -> Result<ActionFilter, Error> {
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
    Ok(ActionFilter {
        agent_id: q.agent_id,
        swarm_id: q.swarm_id,
        status: q.status.as_deref().and_then(ActionStatus::parse),
        exclude_status: q.exclude_status.as_deref().and_then(ActionStatus::parse),
        action_type: q.action_type,
        outcome_status: q.outcome_status.as_deref().and_then(OutcomeStatus::parse),
        risk_min: risk_min.map(|r| r as i32),
        days: days.map(|d| d as i32),
        ..Default::default()
    })
}

impl From<&dashclaw_projections::read::actions::ActionStats> for ActionStats {
    fn from(stats: &dashclaw_projections::read::actions::ActionStats) -> Self {
        Self {
            total: stats.total,
            completed: stats.completed,
            failed: stats.failed,
            running: stats.running,
            blocked: stats.blocked,
            high_risk: stats.high_risk,
            avg_risk: stats.avg_risk.unwrap_or(0.0),
            total_cost: stats.total_cost.unwrap_or(0.0),
        }
    }
}

/// `GET /api/actions/stats`.
#[derive(Serialize, ToSchema)]
pub struct ActionStatsBody {
    pub stats: ActionStats,
    #[serde(rename = "lastUpdated")]
    pub last_updated: String,
}

/// The counts of `GET /api/actions` over every action matching the same filters, without
/// the rows.
#[utoipa::path(get, path = "/api/actions/stats", tag = "actions", params(ListQuery),
    responses((status = 200, description = "The counts", body = ActionStatsBody)))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<ActionStatsBody>, Error> {
    let filter = filter_of(q)?;
    let (_, stats) = state
        .service
        .actions(
            &caller,
            filter,
            Page {
                limit: 0,
                offset: 0,
            },
        )
        .await?;
    Ok(Json(ActionStatsBody {
        stats: ActionStats::from(&stats),
        last_updated: wire::ts(state.service.clock().now()),
    }))
}

/// `GET /api/actions/costs`: the cost side of the analytics.
#[derive(Serialize, ToSchema)]
pub struct CostsBody {
    pub window_days: i64,
    /// USD: reported costs, and costs priced from tokens and model where none was reported.
    pub total_cost_usd: f64,
    pub totals: wire::insight::AnalyticsTotals,
    pub by_agent: Vec<wire::insight::AnalyticsTotals>,
    pub by_action_type: Vec<wire::insight::AnalyticsTotals>,
    /// Per day, agent and action type.
    pub series: Vec<wire::insight::AnalyticsTotals>,
    pub pricing: String,
    pub generated_at: String,
}

/// What the org's actions cost over a window (`days` 1-365, default 30), by agent, action
/// type and day.
#[utoipa::path(get, path = "/api/actions/costs", tag = "actions",
    params(crate::rest::analytics::AnalyticsQuery),
    responses((status = 200, description = "The costs", body = CostsBody)))]
pub(crate) async fn costs(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<crate::rest::analytics::AnalyticsQuery>,
) -> Result<Json<CostsBody>, Error> {
    let filter = crate::rest::analytics::filter_of(q)?;
    let report = state.service.analytics(&caller, &filter).await?;
    let body = wire::AnalyticsBody::from(&report);
    Ok(Json(CostsBody {
        window_days: body.window_days,
        total_cost_usd: body.totals.cost_usd,
        totals: body.totals,
        by_agent: body.by_agent,
        by_action_type: body.by_action_type,
        series: body.series,
        pricing: body.pricing,
        generated_at: body.generated_at,
    }))
}

// ---- POST /api/actions/:id/cancel ----------------------------------------------------------

/// `POST /api/actions/:id/cancel`.
#[derive(ToSchema)]
#[schema(example = json!({"reason": "the maintenance window closed"}))]
pub struct CancelBody {
    pub reason: String,
}

/// `POST /api/actions/:id/cancel` answered.
#[derive(Serialize, ToSchema)]
pub struct CancelledAction {
    pub action: ActionRow,
}

/// Decide not to run a running action that has no outcome and no execution claim (its
/// recorder or an admin): status `cancelled`, closed directly.
#[utoipa::path(post, path = "/api/actions/{id}/cancel", tag = "actions",
    params(("id" = String, Path)), request_body = CancelBody,
    responses((status = 200, description = "Cancelled", body = CancelledAction)))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<CancelledAction>, Error> {
    caller.require(Permission::Write)?;
    let body = object(&body)?;
    let mut f = crate::input::fields::Fields::new(&body);
    let reason = f.string("reason", 2000);
    f.finish()?;
    let cancelled = state
        .service
        .cancel_action(&caller, &id, reason.as_deref().unwrap_or(""))
        .await?;
    Ok(Json(CancelledAction {
        action: ActionRow::new(&caller.org, &cancelled),
    }))
}

/// `POST /api/actions/:id/containment`.
#[derive(ToSchema)]
#[schema(example = json!({"verdict": "promote"}))]
pub struct ContainmentBody {
    /// promote or discard.
    pub verdict: String,
}

/// An operator's verdict on a contained action (admin). This server never negotiates
/// `allow_contained`, so no action is ever awaiting promotion: a valid verdict on an action of
/// the org is refused with 409 and says why.
#[utoipa::path(post, path = "/api/actions/{id}/containment", tag = "actions",
    params(("id" = String, Path)), request_body = ContainmentBody,
    responses((status = 409, description = "Not awaiting promotion (no action is ever contained)")))]
pub(crate) async fn containment(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<CancelledAction>, Error> {
    caller.require_admin("Admin access required")?;
    let body = object(&body)?;
    let mut f = crate::input::fields::Fields::new(&body);
    let verdict = f.one_of("verdict", &["promote", "discard"]);
    f.finish()?;
    if verdict.is_none() {
        return Err(Error::validation(vec![
            "verdict must be one of: promote, discard".into(),
        ]));
    }
    let record = state.service.load_action(&caller, &id).await?;
    Err(Error::new(
        crate::service::ErrorCode::Conflict,
        "Action is not awaiting promotion: this server never negotiates allow_contained, so no action is contained",
    )
    .with("reason", "CONTAINMENT_NOT_AWAITING_PROMOTION")
    .with("current_status", record.status.as_str()))
}

// ---- GET /api/actions/:id ----------------------------------------------------------------

/// `GET /api/actions/:id`.
#[derive(Serialize, ToSchema)]
pub struct ActionDetail {
    pub action: ActionRow,
    pub assumptions: Vec<AssumptionRow>,
    pub guard_decision: Option<DecisionRow>,
    /// Always empty: dashclaw keeps no agent messages.
    pub message_summary: MessageSummary,
    /// Always empty.
    #[schema(value_type = Vec<Object>)]
    pub deviations: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageSummary {
    pub total: u32,
    pub participants: Vec<String>,
    pub first_message_at: Option<String>,
    pub last_message_at: Option<String>,
}

/// One action, its assumptions and its guard decision.
#[utoipa::path(get, path = "/api/actions/{id}", tag = "actions", params(("id" = String, Path)),
    responses((status = 200, description = "The action", body = ActionDetail)))]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<ActionDetail>, Error> {
    let view = state.service.action(&caller, &id).await?;
    let org = &caller.org;
    Ok(Json(ActionDetail {
        action: ActionRow::new(org, &view.record),
        assumptions: view.assumptions.iter().map(AssumptionRow::from).collect(),
        guard_decision: view.guard_decision.map(|d| DecisionRow::new(org, &d)),
        message_summary: MessageSummary {
            total: 0,
            participants: Vec::new(),
            first_message_at: None,
            last_message_at: None,
        },
        deviations: Vec::new(),
    }))
}

// ---- PATCH /api/actions/:id --------------------------------------------------------------

/// `PATCH /api/actions/:id`: the claim's answer, or the updated action.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum PatchedAction {
    Claimed {
        /// Always true.
        claimed: bool,
        action_id: String,
        attempt_id: String,
        claimed_at: Option<String>,
    },
    Updated {
        action: Box<ActionRow>,
        security: SecuritySummary,
    },
}

/// Claim the execution of an action (once), or the legacy update of its outcome fields.
#[utoipa::path(patch, path = "/api/actions/{id}", tag = "actions", params(("id" = String, Path)),
    request_body = crate::rest::requests::PatchActionBody,
    responses((status = 200, description = "Claimed, or updated", body = PatchedAction)))]
pub(crate) async fn patch(
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
            Json(PatchedAction::Claimed {
                claimed: true,
                action_id: claimed.action_id.to_string(),
                attempt_id,
                claimed_at: claimed.execution_claimed_at.map(wire::ts),
            }),
        )
            .into_response());
    }
    let (update, close_if_running) = crate::input::actions::legacy_update(&body)?;
    let updated = state
        .service
        .update_action(&caller, &id, update, close_if_running)
        .await?;
    Ok(Json(PatchedAction::Updated {
        action: Box::new(ActionRow::new(org, &updated)),
        security: SecuritySummary::clean(),
    })
    .into_response())
}

// ---- outcomes ----------------------------------------------------------------------------

/// An action's outcome (pending until reported).
#[utoipa::path(get, path = "/api/actions/{id}/outcome", tag = "actions",
    params(("id" = String, Path)),
    responses((status = 200, description = "The outcome", body = OutcomeBody)))]
pub(crate) async fn outcome(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<OutcomeBody>, Error> {
    let record = state.service.load_action(&caller, &id).await?;
    let elapsed = state.service.elapsed_ms(&record);
    Ok(Json(OutcomeBody::new(&record, elapsed)))
}

/// `POST /api/actions/:id/outcome`.
#[derive(Serialize, ToSchema)]
pub struct ReportedOutcome {
    pub outcome: OutcomeBody,
    pub security: SecuritySummary,
}

/// Report an action's outcome, once: a second report is refused with 409.
#[utoipa::path(post, path = "/api/actions/{id}/outcome", tag = "actions",
    params(("id" = String, Path)),
    request_body = crate::rest::requests::OutcomeReportBody,
    responses((status = 200, description = "Recorded", body = ReportedOutcome)))]
pub(crate) async fn report_outcome(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<ReportedOutcome>, Error> {
    caller.require(Permission::Write)?;
    let outcome = crate::input::actions::outcome(&object(&body)?)?;
    let done = state.service.report_outcome(&caller, &id, outcome).await?;
    let elapsed = state.service.elapsed_ms(&done);
    Ok(Json(ReportedOutcome {
        outcome: OutcomeBody::new(&done, elapsed),
        security: SecuritySummary::clean(),
    }))
}

// ---- approvals ---------------------------------------------------------------------------

/// `POST /api/actions/:id/approve`.
#[derive(Serialize, ToSchema)]
pub struct Approved {
    /// Always true.
    pub success: bool,
    pub action: ActionRow,
    pub security: SecuritySummary,
}

/// Approve or deny a held action (admin keys; not the key that recorded it).
#[utoipa::path(post, path = "/api/actions/{id}/approve", tag = "approvals",
    params(("id" = String, Path)),
    request_body = crate::rest::requests::ApprovalBody,
    responses((status = 200, description = "Decided", body = Approved)))]
pub(crate) async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<Approved>, Error> {
    caller.require_admin("Admin access required for approvals")?;
    let (allow, reasoning) = crate::input::actions::approval(&object(&body)?)?;
    let decided = state
        .service
        .decide_approval(&caller, &id, allow, reasoning)
        .await?;
    Ok(Json(Approved {
        success: true,
        action: ActionRow::new(&caller.org, &decided),
        security: SecuritySummary::clean(),
    }))
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

/// `GET /api/actions/:id/trace`.
#[derive(Serialize, ToSchema)]
pub struct TraceBody {
    pub action: ActionRow,
    pub trace: TraceDetail,
}

#[derive(Serialize, ToSchema)]
pub struct TraceDetail {
    pub assumptions: AssumptionSummary,
    /// Always empty: dashclaw keeps no open loops.
    pub loops: LoopSummary,
    /// Parent, grandparent, ... (at most 10).
    pub parent_chain: Vec<ActionRow>,
    pub sub_actions: Vec<ActionRow>,
    /// The same agent's actions within an hour (at most 20).
    pub related_actions: Vec<ActionRow>,
    pub root_cause_indicators: Vec<RootCauseIndicator>,
}

#[derive(Serialize, ToSchema)]
pub struct AssumptionSummary {
    pub total: usize,
    pub validated: usize,
    pub invalidated: usize,
    pub unvalidated: usize,
    pub items: Vec<AssumptionRow>,
}

#[derive(Serialize, ToSchema)]
pub struct LoopSummary {
    pub total: u32,
    pub open: u32,
    pub resolved: u32,
    pub cancelled: u32,
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
}

/// A likely cause of the action's trouble.
#[derive(Serialize, ToSchema)]
pub struct RootCauseIndicator {
    /// invalidated_assumptions, parent_failures or related_failures.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// high or medium.
    pub severity: &'static str,
    pub count: usize,
    /// The assumptions' texts, or the failed actions' ids.
    pub detail: Vec<String>,
}

/// What may explain the action's trouble: invalidated assumptions, failed ancestors and
/// failed neighbours.
fn root_causes(t: &Trace, invalidated: Vec<String>) -> Vec<RootCauseIndicator> {
    let failed = |rs: &[ActionRecord]| -> Vec<String> {
        rs.iter()
            .filter(|r| r.status == ActionStatus::Failed)
            .map(|r| r.action_id.to_string())
            .collect()
    };
    [
        ("invalidated_assumptions", "high", invalidated),
        ("parent_failures", "high", failed(&t.parents)),
        ("related_failures", "medium", failed(&t.related)),
    ]
    .into_iter()
    .filter(|(_, _, detail)| !detail.is_empty())
    .map(|(kind, severity, detail)| RootCauseIndicator {
        kind,
        severity,
        count: detail.len(),
        detail,
    })
    .collect()
}

/// The action with its assumptions, ancestors, children and neighbours.
#[utoipa::path(get, path = "/api/actions/{id}/trace", tag = "actions",
    params(("id" = String, Path)),
    responses((status = 200, description = "The trace", body = TraceBody)))]
pub(crate) async fn trace(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<TraceBody>, Error> {
    let t = gather(&state, &caller, &id).await?;
    let org = &caller.org;
    let rows = |rs: &[ActionRecord]| rs.iter().map(|r| ActionRow::new(org, r)).collect();
    let invalidated: Vec<String> = t
        .assumptions
        .iter()
        .filter(|a| a.invalidated)
        .map(|a| a.assumption.clone())
        .collect();
    let validated = t.assumptions.iter().filter(|a| a.validated).count();
    let root_cause_indicators = root_causes(&t, invalidated.clone());
    Ok(Json(TraceBody {
        action: ActionRow::new(org, &t.action),
        trace: TraceDetail {
            assumptions: AssumptionSummary {
                total: t.assumptions.len(),
                validated,
                invalidated: invalidated.len(),
                unvalidated: t.assumptions.len() - validated - invalidated.len(),
                items: t.assumptions.iter().map(AssumptionRow::from).collect(),
            },
            loops: LoopSummary {
                total: 0,
                open: 0,
                resolved: 0,
                cancelled: 0,
                items: Vec::new(),
            },
            parent_chain: rows(&t.parents),
            sub_actions: rows(&t.children),
            related_actions: rows(&t.related),
            root_cause_indicators,
        },
    }))
}

/// `GET /api/actions/:id/graph`: nodes and edges for a graph view.
#[derive(Serialize, ToSchema)]
pub struct GraphBody {
    #[serde(rename = "rootActionId")]
    pub root_action_id: String,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphNode {
    /// `action:<id>` or `assumption:<id>`.
    pub id: String,
    /// action or assumption.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub label: String,
    pub status: String,
    pub risk_score: Option<u8>,
    pub agent_id: String,
    pub agent_name: Option<String>,
    pub action_type: Option<String>,
    pub timestamp: String,
    pub is_root: bool,
    /// Always empty.
    #[schema(value_type = Object)]
    pub meta: serde_json::Map<String, Value>,
}

#[derive(Serialize, ToSchema)]
pub struct GraphEdge {
    pub id: String,
    pub source: String,
    pub target: String,
    /// parent_child, related or assumption_of.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub label: &'static str,
}

/// An edge of `kind` (parent_child, related or assumption_of), with its label and its id
/// (`source->target`, or `source~target` for neighbours).
fn edge(source: &str, target: &str, kind: &'static str) -> GraphEdge {
    let (label, sep) = match kind {
        "parent_child" => ("spawned", "->"),
        "related" => ("same agent", "~"),
        _ => ("assumed by", "->"),
    };
    GraphEdge {
        id: format!("{source}{sep}{target}"),
        source: source.to_owned(),
        target: target.to_owned(),
        kind,
        label,
    }
}

fn action_node(r: &ActionRecord, is_root: bool) -> GraphNode {
    GraphNode {
        id: format!("action:{}", r.action_id),
        kind: "action",
        label: r.declared_goal.clone(),
        status: r.status.as_str().to_owned(),
        risk_score: Some(r.risk_score),
        agent_id: r.agent_id.clone(),
        agent_name: r.agent_name.clone(),
        action_type: Some(r.action_type.clone()),
        timestamp: wire::ts(r.timestamp_start),
        is_root,
        meta: Default::default(),
    }
}

fn assumption_node(a: &AssumptionRecord, owner: &ActionRecord) -> GraphNode {
    let status = if a.invalidated {
        "invalidated"
    } else if a.validated {
        "validated"
    } else {
        "unvalidated"
    };
    GraphNode {
        id: format!("assumption:{}", a.assumption_id),
        kind: "assumption",
        label: a.assumption.clone(),
        status: status.to_owned(),
        risk_score: None,
        agent_id: owner.agent_id.clone(),
        agent_name: owner.agent_name.clone(),
        action_type: None,
        timestamp: wire::ts(a.created_at),
        is_root: false,
        meta: Default::default(),
    }
}

/// The action's graph: its ancestors, children, neighbours and assumptions.
#[utoipa::path(get, path = "/api/actions/{id}/graph", tag = "actions",
    params(("id" = String, Path)),
    responses((status = 200, description = "The graph", body = GraphBody)))]
pub(crate) async fn graph(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<GraphBody>, Error> {
    let t = gather(&state, &caller, &id).await?;
    let root = format!("action:{}", t.action.action_id);
    let mut nodes = vec![action_node(&t.action, true)];
    let mut edges = Vec::new();
    let mut child = root.clone();
    for p in &t.parents {
        let pid = format!("action:{}", p.action_id);
        nodes.push(action_node(p, false));
        edges.push(edge(&pid, &child, "parent_child"));
        child = pid;
    }
    for c in &t.children {
        let cid = format!("action:{}", c.action_id);
        nodes.push(action_node(c, false));
        edges.push(edge(&root, &cid, "parent_child"));
    }
    for r in &t.related {
        let rid = format!("action:{}", r.action_id);
        nodes.push(action_node(r, false));
        edges.push(edge(&root, &rid, "related"));
    }
    for a in &t.assumptions {
        let node = assumption_node(a, &t.action);
        edges.push(edge(&node.id, &root, "assumption_of"));
        nodes.push(node);
    }
    Ok(Json(GraphBody {
        root_action_id: t.action.action_id.to_string(),
        nodes,
        edges,
    }))
}

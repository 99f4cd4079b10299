//! Preflight plans (contract section 12; the SDK's `submit_plan`, `get_plan`, `list_plans`,
//! `resolve_plan`, `attest_plan`, `wait_for_plan_review`).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use dashclaw_domain::plan::{PlanRecord, PlanStatus, PlanStep, Review, DEFAULT_TTL_MINUTES};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Body, Id, Params};
use crate::input::fields::{object, Fields};
use crate::rest::clamp_param;
use crate::service::plans::{NewPlan, NewStep, PlanFilter, PlanVerdict};
use crate::service::{Caller, Error, Permission};
use crate::state::AppState;
use crate::wire::ts;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/plans", get(list).post(submit))
        .route("/api/plans/{id}", get(read).post(resolve))
        .route("/api/plans/{id}/attest", post(attest))
}

/// A plan.
#[derive(Serialize, ToSchema)]
pub struct PlanRow {
    pub plan_id: String,
    pub org_id: String,
    pub agent_id: String,
    pub declared_goal: String,
    /// pending, approved, partially_approved, denied, revoked or expired.
    pub status: String,
    pub ttl_minutes: u32,
    /// The review deadline while pending; the end of the grants after review.
    pub expires_at: String,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<String>,
    pub created_at: String,
    /// Hex SHA-256 of what was reviewed (`docs/plans.md`); what `attest` checks.
    pub plan_hash: String,
}

/// A plan step with its preview and grant.
#[derive(Serialize, ToSchema)]
pub struct StepRow {
    pub step_id: String,
    pub plan_id: String,
    pub seq: u32,
    pub action_type: String,
    pub step_goal: String,
    #[schema(value_type = Option<Object>)]
    pub act: Option<Value>,
    pub act_content_hash: Option<String>,
    pub preview_decision: String,
    pub preview_risk_score: u8,
    pub preview_reasons: Vec<String>,
    /// pending, approved or denied.
    pub grant_status: String,
    pub grant_used_at: Option<String>,
    pub matched_action_id: Option<String>,
}

impl PlanRow {
    fn new(caller: &Caller, p: &PlanRecord) -> Self {
        Self {
            plan_id: p.plan_id.to_string(),
            org_id: caller.org.to_string(),
            agent_id: p.agent_id.clone(),
            declared_goal: p.declared_goal.clone(),
            status: p.status.as_str().to_owned(),
            ttl_minutes: p.ttl_minutes,
            expires_at: ts(p.expires_at),
            reviewed_by: p.reviewed_by.clone(),
            reviewed_at: p.reviewed_at.map(ts),
            created_at: ts(p.created_at),
            plan_hash: p.plan_hash(),
        }
    }
}

impl StepRow {
    fn new(plan: &PlanRecord, s: &PlanStep) -> Self {
        Self {
            step_id: s.step_id.clone(),
            plan_id: plan.plan_id.to_string(),
            seq: s.seq,
            action_type: s.action_type.clone(),
            step_goal: s.step_goal.clone(),
            act: s.act.clone(),
            act_content_hash: s.act_content_hash.clone(),
            preview_decision: s.preview.decision.as_str().to_owned(),
            preview_risk_score: s.preview.risk_score,
            preview_reasons: s.preview.reasons.clone(),
            grant_status: s.grant_status.as_str().to_owned(),
            grant_used_at: s.grant_used_at.map(ts),
            matched_action_id: s.matched_action_id.as_ref().map(ToString::to_string),
        }
    }
}

/// A plan with its steps.
#[derive(Serialize, ToSchema)]
pub struct PlanBody {
    pub plan: PlanRow,
    pub steps: Vec<StepRow>,
    /// Always empty: steps are bound to their acts, so a deviation is simply not covered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub deviations: Option<Vec<Value>>,
}

impl PlanBody {
    fn new(caller: &Caller, p: &PlanRecord, deviations: bool) -> Self {
        Self {
            plan: PlanRow::new(caller, p),
            steps: p.steps.iter().map(|s| StepRow::new(p, s)).collect(),
            deviations: deviations.then(Vec::new),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PlanList {
    pub plans: Vec<PlanRow>,
}

/// `POST /api/plans`.
#[derive(ToSchema)]
#[schema(example = json!({"agent_id": "claude-code", "declared_goal": "release 2.1",
    "steps": [{"action_type": "deploy", "step_goal": "deploy to prod",
               "act": {"kind": "shell", "command": "make deploy"}}], "ttl_minutes": 60}))]
pub struct SubmitPlanBody {
    pub agent_id: String,
    pub declared_goal: String,
    /// 1-25 steps `{action_type, step_goal, act?}`.
    #[schema(value_type = Vec<Object>)]
    pub steps: Value,
    /// 1-1440, default 60: the review window (and, clamped to 480, the grants' lifetime).
    pub ttl_minutes: Option<u32>,
}

/// `POST /api/plans/:id`.
#[derive(ToSchema)]
#[schema(example = json!({"verdict": "approve", "step_overrides": {"ps_0011223344556677_2": "deny"}}))]
pub struct ResolvePlanBody {
    /// approve, deny or revoke.
    pub verdict: String,
    /// Per step id: approve or deny (with `approve`).
    #[schema(value_type = Option<Object>)]
    pub step_overrides: Option<Value>,
}

/// `POST /api/plans/:id/attest`.
#[derive(ToSchema)]
#[schema(example = json!({"plan_hash": "9f2c..."}))]
pub struct AttestBody {
    pub plan_hash: String,
}

/// A plan that may be acted on.
#[derive(Serialize, ToSchema)]
pub struct AttestationBody {
    /// Always true.
    pub ok: bool,
    pub plan_id: String,
    pub plan_hash: String,
    pub status: String,
    pub expires_at: String,
    /// The steps whose grants are approved and unused.
    pub approved_steps: Vec<String>,
    pub attested_at: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    status: Option<String>,
    agent_id: Option<String>,
    /// 1-200, default 50.
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
}

fn steps_of(f: &mut Fields<'_>) -> Vec<NewStep> {
    let Some(Value::Array(items)) = f.raw("steps") else {
        f.errors.push("steps must be a non-empty array".into());
        return Vec::new();
    };
    if items.is_empty() {
        f.errors.push("steps must be a non-empty array".into());
    }
    let mut steps = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let text = |key: &str, max: usize| match item.get(key) {
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max => Some(s.clone()),
            _ => None,
        };
        let (Some(action_type), Some(step_goal)) =
            (text("action_type", 128), text("step_goal", 2000))
        else {
            let missing = if text("action_type", 128).is_none() {
                "action_type"
            } else {
                "step_goal"
            };
            f.errors.push(format!("steps[{i}] requires {missing}"));
            continue;
        };
        let act = match item.get("act") {
            None | Some(Value::Null) => None,
            Some(act @ Value::Object(_))
                if serde_json::to_vec(act).map_or(0, |v| v.len()) <= 16 * 1024 =>
            {
                Some(act.clone())
            }
            Some(_) => {
                f.errors.push(format!(
                    "steps[{i}].act must be an object ({{ kind: ... }}) of at most 16KB"
                ));
                continue;
            }
        };
        steps.push(NewStep {
            action_type,
            step_goal,
            act,
        });
    }
    steps
}

/// Submit a plan: each step previewed through the guard (nothing recorded as a decision).
#[utoipa::path(post, path = "/api/plans", tag = "plans", request_body = SubmitPlanBody,
    responses((status = 201, description = "Submitted, pending review", body = PlanBody)))]
pub(crate) async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<PlanBody>), Error> {
    caller.require(Permission::Write)?;
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let agent_id = f.required_string("agent_id", 128);
    let declared_goal = f.required_string("declared_goal", 2000);
    let steps = steps_of(&mut f);
    let ttl = f.integer("ttl_minutes", 1, 1440);
    f.finish()?;
    let (Some(agent_id), Some(declared_goal)) = (agent_id, declared_goal) else {
        return Err(Error::bad_request("agent_id is required"));
    };
    let new = NewPlan {
        agent_id,
        declared_goal,
        steps,
        ttl_minutes: ttl.map_or(DEFAULT_TTL_MINUTES, |t| t as u32),
    };
    let plan = state.service.submit_plan(&caller, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(PlanBody::new(&caller, &plan, false)),
    ))
}

/// A plan with its steps and their grants.
#[utoipa::path(get, path = "/api/plans/{id}", tag = "plans", params(("id" = String, Path)),
    responses((status = 200, description = "The plan", body = PlanBody)))]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<PlanBody>, Error> {
    let plan = state.service.plan(&caller, &id).await?;
    Ok(Json(PlanBody::new(&caller, &plan, true)))
}

/// The org's plans, most recently changed first.
#[utoipa::path(get, path = "/api/plans", tag = "plans", params(ListQuery),
    responses((status = 200, description = "The plans", body = PlanList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<PlanList>, Error> {
    let limit = clamp_param(q.limit.as_deref(), 50, 1, 200, "limit")?;
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(PlanStatus::parse(s).ok_or_else(|| {
            Error::validation(vec![format!(
                "status must be one of: {}",
                PlanStatus::ALL.join(", ")
            )])
        })?),
    };
    let filter = PlanFilter {
        status,
        agent_id: q.agent_id.filter(|a| !a.is_empty()),
        limit,
    };
    let plans = state.service.plans(&caller, &filter).await?;
    Ok(Json(PlanList {
        plans: plans.iter().map(|p| PlanRow::new(&caller, p)).collect(),
    }))
}

/// Review a plan (admin): approve (steps overridable), deny, or revoke.
#[utoipa::path(post, path = "/api/plans/{id}", tag = "plans", params(("id" = String, Path)),
    request_body = ResolvePlanBody,
    responses((status = 200, description = "Reviewed", body = PlanBody)))]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<PlanBody>, Error> {
    caller.require_admin("Admin access required")?;
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let verdict = f.string("verdict", 32);
    let overrides = f.object("step_overrides");
    f.finish()?;
    let mut steps = BTreeMap::new();
    for (step, v) in overrides.into_iter().flatten() {
        match v.as_str() {
            Some("approve") => steps.insert(step.clone(), true),
            Some("deny") => steps.insert(step.clone(), false),
            _ => {
                return Err(Error::validation(vec![format!(
                    "step_overrides.{step} must be approve or deny"
                )]))
            }
        };
    }
    let verdict = match verdict.as_deref() {
        Some("approve") => PlanVerdict::Review(Review::Approve, steps),
        Some("deny") => PlanVerdict::Review(Review::Deny, steps),
        Some("revoke") => PlanVerdict::Revoke,
        _ => {
            return Err(Error::bad_request(
                "Invalid verdict. Must be approve, deny, or revoke.",
            ))
        }
    };
    let plan = state.service.resolve_plan(&caller, &id, verdict).await?;
    Ok(Json(PlanBody::new(&caller, &plan, false)))
}

/// Prove a reviewed plan is still usable: approved, unexpired, unrevoked, same hash.
#[utoipa::path(post, path = "/api/plans/{id}/attest", tag = "plans",
    params(("id" = String, Path)), request_body = AttestBody,
    responses((status = 200, description = "Usable", body = AttestationBody)))]
pub(crate) async fn attest(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<AttestationBody>, Error> {
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let hash = f.string("plan_hash", 128).filter(|h| !h.is_empty());
    f.finish()?;
    let Some(hash) = hash else {
        return Err(Error::bad_request("plan_hash is required"));
    };
    let a = state.service.attest_plan(&caller, &id, &hash).await?;
    Ok(Json(AttestationBody {
        ok: true,
        plan_id: a.plan.plan_id.to_string(),
        plan_hash: a.plan_hash,
        status: a.plan.status.as_str().to_owned(),
        expires_at: ts(a.plan.expires_at),
        approved_steps: a
            .plan
            .steps
            .iter()
            .filter(|s| {
                s.grant_status == dashclaw_domain::plan::GrantStatus::Approved
                    && s.grant_used_at.is_none()
            })
            .map(|s| s.step_id.clone())
            .collect(),
        attested_at: ts(a.attested_at),
    }))
}

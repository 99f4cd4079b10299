//! Assumptions (contract 10.1-10.4): what an agent believed when it acted, validated or
//! invalidated later.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use dashclaw_domain::ids::AssumptionId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Body, Id, Params};
use crate::input::fields::{object, Fields};
use crate::rest::clamp_param;
use crate::service::assumptions::{AssumptionFilter, NewAssumption, Verdict};
use crate::service::{Caller, Error, Permission};
use crate::state::AppState;
use crate::wire::{self, AssumptionRow, SecuritySummary};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/assumptions", get(list).post(register))
        .route("/api/actions/assumptions", get(list).post(register))
        .route("/api/assumptions/{id}", get(read).patch(update))
        .route("/api/actions/assumptions/{id}", get(read).patch(update))
}

/// `POST /api/assumptions`.
#[derive(Serialize, ToSchema)]
pub struct RegisteredAssumption {
    pub assumption: AssumptionRow,
    pub assumption_id: String,
    pub security: SecuritySummary,
}

/// Register an assumption of an action.
#[utoipa::path(post, path = "/api/assumptions", tag = "assumptions",
    request_body = crate::rest::requests::NewAssumptionBody,
    responses((status = 201, description = "Registered", body = RegisteredAssumption)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<RegisteredAssumption>), Error> {
    caller.require(Permission::Write)?;
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let action_id = f.required_string("action_id", 128);
    let assumption = f.required_string("assumption", 2000);
    let basis = f.string("basis", 2000);
    let assumption_id = f.string("assumption_id", 128);
    f.boolean("validated");
    f.boolean("invalidated");
    f.string("invalidated_reason", 2000);
    f.finish()?;
    let (Some(action_id), Some(assumption)) = (action_id, assumption) else {
        return Err(Error::validation(vec!["action_id is required".into()]));
    };
    let assumption_id = assumption_id
        .map(|id| AssumptionId::parse(&id).map_err(|e| Error::validation(vec![e.to_string()])))
        .transpose()?;
    let new = NewAssumption {
        action_id,
        assumption,
        basis,
        assumption_id,
    };
    let r = state.service.register_assumption(&caller, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(RegisteredAssumption {
            assumption: AssumptionRow::from(&r),
            assumption_id: r.assumption_id.to_string(),
            security: SecuritySummary::clean(),
        }),
    ))
}

/// `GET /api/assumptions/:id`.
#[derive(Serialize, ToSchema)]
pub struct AssumptionDetail {
    pub assumption: AssumptionWithAction,
}

/// An assumption with the action it belongs to.
#[derive(Serialize, ToSchema)]
pub struct AssumptionWithAction {
    #[serde(flatten)]
    pub row: AssumptionRow,
    #[serde(flatten)]
    pub action: Option<AssumedBy>,
}

/// The action an assumption belongs to, as its detail shows it.
#[derive(Serialize, ToSchema)]
pub struct AssumedBy {
    pub agent_id: String,
    pub agent_name: Option<String>,
    pub declared_goal: String,
    pub action_type: String,
    pub action_status: String,
}

/// One assumption, with its action's agent, goal and status.
#[utoipa::path(get, path = "/api/assumptions/{id}", tag = "assumptions",
    params(("id" = String, Path)),
    responses((status = 200, description = "The assumption", body = AssumptionDetail)))]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<AssumptionDetail>, Error> {
    let (a, action) = state.service.assumption(&caller, &id).await?;
    Ok(Json(AssumptionDetail {
        assumption: AssumptionWithAction {
            row: AssumptionRow::from(&a),
            action: action.map(|act| AssumedBy {
                agent_id: act.agent_id,
                agent_name: act.agent_name,
                declared_goal: act.declared_goal,
                action_type: act.action_type,
                action_status: act.status.as_str().to_owned(),
            }),
        },
    }))
}

/// `PATCH /api/assumptions/:id`.
#[derive(Serialize, ToSchema)]
pub struct JudgedAssumption {
    pub assumption: AssumptionRow,
    /// With an invalidation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<SecuritySummary>,
}

/// Validate or invalidate an assumption.
#[utoipa::path(patch, path = "/api/assumptions/{id}", tag = "assumptions",
    params(("id" = String, Path)),
    request_body = crate::rest::requests::JudgeAssumptionBody,
    responses((status = 200, description = "Judged", body = JudgedAssumption)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    Body(body): Body,
) -> Result<Json<JudgedAssumption>, Error> {
    caller.require(Permission::Write)?;
    let body = object(&body)?;
    let Some(Value::Bool(validated)) = body.get("validated") else {
        return Err(Error::bad_request(
            "validated is required and must be a boolean",
        ));
    };
    let reason = match body.get("invalidated_reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() > 2000 => {
            return Err(Error::bad_request(
                "invalidated_reason exceeds max length of 2000",
            ))
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Error::bad_request("invalidated_reason must be a string")),
    };
    let verdict = if *validated {
        Verdict::Validated
    } else {
        Verdict::Invalidated(reason.unwrap_or_default())
    };
    let r = state
        .service
        .judge_assumption(&caller, &id, verdict)
        .await?;
    Ok(Json(JudgedAssumption {
        assumption: AssumptionRow::from(&r),
        security: (!*validated).then(SecuritySummary::clean),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// true or false.
    #[param(value_type = Option<bool>)]
    validated: Option<String>,
    action_id: Option<String>,
    agent_id: Option<String>,
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    #[param(value_type = Option<i64>)]
    offset: Option<String>,
}

/// `GET /api/assumptions`.
#[derive(Serialize, ToSchema)]
pub struct AssumptionList {
    pub assumptions: Vec<AssumptionRow>,
    /// The number on this page.
    pub total: usize,
    #[serde(rename = "lastUpdated")]
    pub last_updated: String,
}

/// The org's assumptions, newest first.
#[utoipa::path(get, path = "/api/assumptions", tag = "assumptions", params(ListQuery),
    responses((status = 200, description = "The assumptions", body = AssumptionList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<AssumptionList>, Error> {
    let limit = clamp_param(q.limit.as_deref(), 50, 1, 200, "limit")?;
    let offset = clamp_param(q.offset.as_deref(), 0, 0, i64::MAX, "offset")?;
    let validated = match q.validated.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return Err(Error::validation(vec![
                "validated must be true or false".into()
            ]))
        }
    };
    let filter = AssumptionFilter {
        limit,
        offset,
        validated,
        action_id: q.action_id,
        agent_id: q.agent_id,
    };
    let items: Vec<AssumptionRow> = state
        .service
        .assumptions(&caller, &filter)
        .await?
        .iter()
        .map(AssumptionRow::from)
        .collect();
    Ok(Json(AssumptionList {
        total: items.len(),
        assumptions: items,
        last_updated: wire::ts(state.service.clock().now()),
    }))
}

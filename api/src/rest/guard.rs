//! `POST /api/guard` ("may I do X?", optionally recording the action) and `GET /api/guard`
//! (the decision history). Contract sections 1-3.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use dashclaw_domain::guard::Verdict;
use dashclaw_projections::read::decisions::DecisionFilter;
use dashclaw_projections::read::Page;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Body, Params};
use crate::rest::clamp_param;
use crate::service::guard::{GuardAnswer, Recording};
use crate::service::{Caller, Error, Permission};
use crate::state::AppState;
use crate::wire::{DecisionRow, GuardReplay, GuardResult, SecuritySummary};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/guard", get(history).post(guard))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GuardQuery {
    /// `true`: also record the action (needs `agent_id` and `declared_goal`).
    #[param(value_type = Option<bool>)]
    record: Option<String>,
}

/// The guard's answer: a new decision, or the first one again for a retry within the
/// replay window.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum GuardResponse {
    Decided(Box<GuardResult>),
    Replayed(Box<GuardReplay>),
}

/// Ask the guard whether an action may run.
#[utoipa::path(post, path = "/api/guard", tag = "guard", params(GuardQuery),
    request_body = crate::rest::requests::GuardBody,
    responses((status = 200, description = "The decision", body = GuardResponse)))]
pub(crate) async fn guard(
    State(state): State<AppState>,
    caller: Caller,
    Params(query): Params<GuardQuery>,
    Body(body): Body,
) -> Result<Json<GuardResponse>, Error> {
    caller.require(Permission::Write)?;
    let record = query.record.as_deref() == Some("true");
    let ask = crate::input::guard::guard_body(&body)?;
    let answer = state.service.guard(&caller, ask, record).await?;
    Ok(Json(match answer {
        GuardAnswer::Replayed(prior) => {
            GuardResponse::Replayed(Box::new(GuardReplay::new(&prior, record)))
        }
        GuardAnswer::Decided {
            decision,
            recording,
        } => {
            let mut body = GuardResult::from(decision.as_ref());
            match recording {
                None => {}
                Some(Recording::MissingIdentity) => {
                    body.recorded = Some(false);
                    body.recorded_error =
                        Some("agent_id and declared_goal are required to record an action".into());
                }
                Some(Recording::Recorded(id)) => {
                    body.recorded = Some(true);
                    body.action_id = id.to_string();
                    body.security = Some(SecuritySummary::clean());
                }
            }
            GuardResponse::Decided(Box::new(body))
        }
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    agent_id: Option<String>,
    /// allow, warn, require_approval or block.
    decision: Option<String>,
    /// 1-90: only the last N days.
    #[param(value_type = Option<i64>)]
    days: Option<String>,
    /// 1-1000, default 20.
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    #[param(value_type = Option<i64>)]
    offset: Option<String>,
}

/// `GET /api/guard`.
#[derive(Serialize, ToSchema)]
pub struct DecisionHistory {
    pub decisions: Vec<DecisionRow>,
    pub total: i64,
    pub stats: DecisionStats,
    pub limit: i64,
    pub offset: i64,
}

/// The last 24 hours' decisions.
#[derive(Serialize, ToSchema)]
pub struct DecisionStats {
    pub total_24h: i64,
    pub blocks_24h: i64,
    pub warns_24h: i64,
    pub approvals_24h: i64,
}

/// The decision log, newest first (contract 3).
#[utoipa::path(get, path = "/api/guard", tag = "guard", params(HistoryQuery),
    responses((status = 200, description = "The decisions", body = DecisionHistory)))]
pub(crate) async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<HistoryQuery>,
) -> Result<Json<DecisionHistory>, Error> {
    let limit = clamp_param(q.limit.as_deref(), 20, 1, 1000, "limit")?;
    let offset = clamp_param(q.offset.as_deref(), 0, 0, i64::MAX, "offset")?;
    let days = match q.days.as_deref() {
        None => None,
        Some(d) => Some(clamp_param(Some(d), 1, 1, 90, "days")?),
    };
    let decision = q
        .decision
        .as_deref()
        .map(|d| {
            Verdict::parse(d).ok_or_else(|| {
                Error::validation(vec![
                    "decision must be one of: allow, warn, require_approval, block".into(),
                ])
            })
        })
        .transpose()?;
    let filter = DecisionFilter {
        agent_id: q.agent_id,
        decision,
        days: days.map(|d| d as i32),
    };
    let log = state
        .service
        .decisions(&caller, &filter, Page { limit, offset })
        .await?;
    let stats = log.last_24h;
    Ok(Json(DecisionHistory {
        decisions: log
            .decisions
            .iter()
            .map(|d| DecisionRow::new(&caller.org, d))
            .collect(),
        total: log.total,
        stats: DecisionStats {
            total_24h: stats.total,
            blocks_24h: stats.blocks,
            warns_24h: stats.warns,
            approvals_24h: stats.approvals,
        },
        limit,
        offset,
    }))
}

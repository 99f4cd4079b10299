//! `GET /api/analytics?days&agent_id&action_type`: volume, tokens and cost, enforcement, and
//! approval rates and time-to-decision, per day, agent and action type
//! ([`Service::analytics`]). Days are UTC calendar days: `days=N` covers the N days up to
//! today.
//!
//! [`Service::analytics`]: crate::service::Service::analytics

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::extract::Params;
use crate::rest::clamp_param;
use crate::service::insight::{AnalyticsFilter, ANALYTICS_DAYS};
use crate::service::{Caller, Error};
use crate::state::AppState;
use crate::wire::AnalyticsBody;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/analytics", get(analytics))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AnalyticsQuery {
    /// 1-365 UTC calendar days up to today, default 30.
    #[param(value_type = Option<i64>)]
    days: Option<String>,
    agent_id: Option<String>,
    action_type: Option<String>,
}

/// Volume, tokens and cost, enforcement, approval rates and time-to-decision, per day,
/// agent and action type.
/// The window and filters of an analytics query, validated.
pub(crate) fn filter_of(q: AnalyticsQuery) -> Result<AnalyticsFilter, Error> {
    let (min, max) = (*ANALYTICS_DAYS.start(), *ANALYTICS_DAYS.end());
    Ok(AnalyticsFilter {
        days: clamp_param(q.days.as_deref(), 30, min, max, "days")?,
        agent_id: q.agent_id,
        action_type: q.action_type,
    })
}

#[utoipa::path(get, path = "/api/analytics", tag = "insight", params(AnalyticsQuery),
    responses((status = 200, description = "The analytics", body = AnalyticsBody)))]
pub(crate) async fn analytics(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<AnalyticsQuery>,
) -> Result<Json<AnalyticsBody>, Error> {
    let filter = filter_of(q)?;
    let report = state.service.analytics(&caller, &filter).await?;
    Ok(Json(AnalyticsBody::from(&report)))
}

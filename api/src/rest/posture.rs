//! `GET /api/posture`: the posture score of the org's real traffic under its current
//! policies, its findings worst first, and the daily trend ([`Service::posture`]).
//!
//! [`Service::posture`]: crate::service::Service::posture

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::service::{Caller, Error};
use crate::state::AppState;
use crate::wire::PostureBody;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/posture", get(posture))
}

/// The posture score of the org's real traffic under its current policies, its findings
/// worst first, and the daily trend.
#[utoipa::path(get, path = "/api/posture", tag = "insight",
    responses((status = 200, description = "The posture", body = PostureBody)))]
pub(crate) async fn posture(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PostureBody>, Error> {
    let report = state.service.posture(&caller).await?;
    Ok(Json(PostureBody::from(&report)))
}

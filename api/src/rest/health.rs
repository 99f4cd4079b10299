//! `GET /api/health`: liveness, version and database status (public).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// Longest the database probe may take before the answer is "unreachable".
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

pub fn router() -> Router<AppState> {
    Router::new().route("/api/health", get(health))
}

/// `GET /api/health`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// healthy or unhealthy.
    pub status: &'static str,
    pub version: &'static str,
    /// connected or unreachable.
    pub database: &'static str,
}

/// Liveness: the version, and whether the database answers within a second.
#[utoipa::path(get, path = "/api/health", tag = "health", security(()),
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The database does not answer", body = Health)))]
pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let version = env!("CARGO_PKG_VERSION");
    // Within a second, whatever the database does: a load balancer must hear "down" at once.
    let probe = tokio::time::timeout(
        HEALTH_TIMEOUT,
        sqlx::query("SELECT 1").execute(state.service.pool()),
    );
    let answer = match probe.await {
        Ok(result) => result.map(drop).map_err(|e| e.to_string()),
        Err(_) => Err("no answer within 1 s".to_owned()),
    };
    match answer {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                status: "healthy",
                version,
                database: "connected",
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unhealthy",
                    version,
                    database: "unreachable",
                }),
            )
        }
    }
}

//! The published signing keys (public): `GET /.well-known/jwks.json` and its DashClaw alias
//! `GET /api/integrity/jwks`.

use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dashclaw_events::Jwks;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/integrity/jwks", get(jwks))
}

/// Per the DashClaw contract a failure answers an empty set (never cached), not an error:
/// verifiers treat "no keys" as "cannot verify", which is the truth at that moment.
async fn jwks(State(state): State<AppState>) -> Response {
    match dashclaw_store::keys::published(state.service.pool()).await {
        Ok(keys) if !keys.keys.is_empty() => {
            ([(CACHE_CONTROL, "public, max-age=300")], Json(keys)).into_response()
        }
        Ok(_) => ([(CACHE_CONTROL, "no-store")], Json(Jwks::default())).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the key set");
            ([(CACHE_CONTROL, "no-store")], Json(Jwks::default())).into_response()
        }
    }
}

//! `GET /api/keys` (the org's API keys, without secrets) and `DELETE /api/keys/:id` (revoke
//! one): admin only, within the caller's org. A revocation is an `ApiKeyRevoked` event; every
//! node's ledger tail drops its cached keys when it sees one, so the key is refused everywhere
//! within the tail's delay.

use axum::extract::State;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Id;
use crate::server::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/keys", get(list))
        .route("/api/keys/{id}", delete(revoke))
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.require_admin("Admin access required")?;
    state.projector.catch_up(&caller.org).await?;
    let keys = crate::auth::list_keys(&state.pool, &caller.org).await?;
    Ok(Json(json!({ "keys": keys })))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    caller.require_admin("Admin access required")?;
    crate::auth::revoke_key(
        &state.ledger,
        &state.projector,
        &state.keys,
        &caller.org,
        &id,
        &caller.principal,
    )
    .await?;
    Ok(Json(json!({ "id": id, "revoked": true })))
}

//! `GET /api/keys` (the org's API keys, without secrets) and `DELETE /api/keys/:id` (revoke
//! one): admin only, within the caller's org. A revocation is an `ApiKeyRevoked` event; every
//! node's ledger tail drops its cached keys when it sees one, so the key is refused everywhere
//! within the tail's delay.

use axum::extract::State;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::extract::Id;
use crate::service::Caller;
use crate::service::Error;
use crate::state::AppState;
use crate::wire::KeyRow;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/keys", get(list))
        .route("/api/keys/{id}", delete(revoke))
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, Error> {
    let keys = state.service.list_keys(&caller).await?;
    let keys: Vec<KeyRow> = keys.iter().map(KeyRow::from).collect();
    Ok(Json(json!({ "keys": keys })))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Value>, Error> {
    state.service.revoke_key(&caller, &id).await?;
    Ok(Json(json!({ "id": id, "revoked": true })))
}

//! `GET /api/keys` (the org's API keys, without secrets) and `DELETE /api/keys/:id` (revoke
//! one): admin only, within the caller's org. A revocation is an `ApiKeyRevoked` event; every
//! node's ledger tail drops its cached keys when it sees one, so the key is refused everywhere
//! within the tail's delay.

use axum::extract::State;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

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

/// `GET /api/keys`.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyRow>,
}

/// The org's API keys, without their secrets (admin keys).
#[utoipa::path(get, path = "/api/keys", tag = "keys",
    responses((status = 200, description = "The keys", body = KeyList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<KeyList>, Error> {
    let keys = state.service.list_keys(&caller).await?;
    Ok(Json(KeyList {
        keys: keys.iter().map(KeyRow::from).collect(),
    }))
}

/// `DELETE /api/keys/:id`.
#[derive(Serialize, ToSchema)]
pub struct RevokedKey {
    pub id: String,
    /// Always true.
    pub revoked: bool,
}

/// Revoke an API key of the org (admin keys); every node refuses it within the tail's delay.
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 200, description = "Revoked", body = RevokedKey)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<RevokedKey>, Error> {
    state.service.revoke_key(&caller, &id).await?;
    Ok(Json(RevokedKey { id, revoked: true }))
}

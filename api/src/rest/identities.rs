//! Agent pairing and identities (the SDK's `create_pairing`, `create_pairing_from_private_jwk`,
//! `get_pairing`, `wait_for_pairing`, `register_identity`, `get_identities`): `POST
//! /api/pairings`, `GET /api/pairings/:id`, `POST /api/pairings/:id/approve` (admin),
//! `POST/GET /api/identities`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use dashclaw_domain::identity::{IdentityRecord, PairingRecord};
use serde::Serialize;
use utoipa::ToSchema;

use crate::extract::{Body, Id};
use crate::input::fields::{object, Fields};
use crate::service::identities::OfferedKey;
use crate::service::{Caller, Error, Permission};
use crate::state::AppState;
use crate::wire::ts;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/pairings", post(request))
        .route("/api/pairings/{id}", get(read))
        .route("/api/pairings/{id}/approve", post(approve))
        .route("/api/identities", get(list).post(register))
}

/// A pairing request.
#[derive(Serialize, ToSchema)]
pub struct PairingRow {
    pub id: String,
    pub pairing_id: String,
    pub agent_id: String,
    pub agent_name: Option<String>,
    pub public_key: String,
    pub algorithm: String,
    /// pending, approved or expired (15 minutes after the request).
    pub status: String,
    pub created_at: String,
    pub expires_at: String,
    pub approved_by: Option<String>,
    pub approved_at: Option<String>,
}

impl From<&PairingRecord> for PairingRow {
    fn from(p: &PairingRecord) -> Self {
        Self {
            id: p.pairing_id.to_string(),
            pairing_id: p.pairing_id.to_string(),
            agent_id: p.agent_id.clone(),
            agent_name: p.agent_name.clone(),
            public_key: p.public_key.clone(),
            algorithm: p.algorithm.clone(),
            status: p.status.as_str().to_owned(),
            created_at: ts(p.created_at),
            expires_at: ts(p.expires_at),
            approved_by: p.approved_by.clone(),
            approved_at: p.approved_at.map(ts),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PairingBody {
    pub pairing: PairingRow,
}

/// `POST /api/pairings` answered.
#[derive(Serialize, ToSchema)]
pub struct RequestedPairing {
    pub pairing: PairingRow,
    /// Where an admin approves it (`POST`).
    pub pairing_url: String,
}

/// An agent's registered key.
#[derive(Serialize, ToSchema)]
pub struct IdentityRow {
    pub agent_id: String,
    pub public_key: String,
    pub algorithm: String,
    pub registered_by: String,
    /// `admin`, or `pairing:<id>`.
    pub via: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&IdentityRecord> for IdentityRow {
    fn from(i: &IdentityRecord) -> Self {
        Self {
            agent_id: i.agent_id.clone(),
            public_key: i.public_key.clone(),
            algorithm: i.algorithm.clone(),
            registered_by: i.registered_by.clone(),
            via: i.via.clone(),
            created_at: ts(i.created_at),
            updated_at: ts(i.updated_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IdentityBody {
    pub identity: IdentityRow,
}

#[derive(Serialize, ToSchema)]
pub struct IdentityList {
    pub identities: Vec<IdentityRow>,
}

/// `POST /api/pairings` and `POST /api/identities`.
#[derive(ToSchema)]
#[schema(example = json!({"agent_id": "claude-code", "public_key": "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----", "algorithm": "RSASSA-PKCS1-v1_5"}))]
pub struct KeyBody {
    pub agent_id: String,
    pub agent_name: Option<String>,
    /// SPKI PEM.
    pub public_key: String,
    /// RSASSA-PKCS1-v1_5 (RS256), ECDSA (ES256) or Ed25519 (EdDSA).
    pub algorithm: Option<String>,
}

fn offered_key(body: &[u8]) -> Result<OfferedKey, Error> {
    let body = object(body)?;
    let mut f = Fields::new(&body);
    let agent_id = f.required_string("agent_id", 128);
    let agent_name = f.string("agent_name", 256);
    let public_key = f.required_string("public_key", 16 * 1024);
    let algorithm = f.string("algorithm", 64);
    f.finish()?;
    let (Some(agent_id), Some(public_key)) = (agent_id, public_key) else {
        return Err(Error::validation(vec!["agent_id is required".into()]));
    };
    Ok(OfferedKey {
        agent_id,
        agent_name,
        public_key,
        algorithm: algorithm.unwrap_or_else(|| "RSASSA-PKCS1-v1_5".into()),
    })
}

/// Ask for an agent's key to be paired (an admin approves within 15 minutes).
#[utoipa::path(post, path = "/api/pairings", tag = "identity", request_body = KeyBody,
    responses((status = 201, description = "Pending approval", body = RequestedPairing)))]
pub(crate) async fn request(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<RequestedPairing>), Error> {
    caller.require(Permission::Write)?;
    let key = offered_key(&body)?;
    let pairing = state.service.request_pairing(&caller, key).await?;
    Ok((
        StatusCode::CREATED,
        Json(RequestedPairing {
            pairing_url: format!("/api/pairings/{}/approve", pairing.pairing_id),
            pairing: PairingRow::from(&pairing),
        }),
    ))
}

/// A pairing request and its status.
#[utoipa::path(get, path = "/api/pairings/{id}", tag = "identity", params(("id" = String, Path)),
    responses((status = 200, description = "The pairing", body = PairingBody)))]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<PairingBody>, Error> {
    let pairing = state.service.pairing(&caller, &id).await?;
    Ok(Json(PairingBody {
        pairing: PairingRow::from(&pairing),
    }))
}

/// Approve a pending pairing (admin): its key becomes the agent's identity.
#[utoipa::path(post, path = "/api/pairings/{id}/approve", tag = "identity",
    params(("id" = String, Path)),
    responses((status = 200, description = "Approved", body = PairingBody)))]
pub(crate) async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<PairingBody>, Error> {
    let pairing = state.service.approve_pairing(&caller, &id).await?;
    Ok(Json(PairingBody {
        pairing: PairingRow::from(&pairing),
    }))
}

/// Register or replace an agent's key (admin).
#[utoipa::path(post, path = "/api/identities", tag = "identity", request_body = KeyBody,
    responses((status = 201, description = "Registered", body = IdentityBody)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<IdentityBody>), Error> {
    caller.require_admin("Admin access required")?;
    let key = offered_key(&body)?;
    let identity = state.service.register_identity(&caller, key).await?;
    Ok((
        StatusCode::CREATED,
        Json(IdentityBody {
            identity: IdentityRow::from(&identity),
        }),
    ))
}

/// The org's registered agent keys.
#[utoipa::path(get, path = "/api/identities", tag = "identity",
    responses((status = 200, description = "The identities", body = IdentityList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<IdentityList>, Error> {
    let identities = state.service.identities(&caller).await?;
    Ok(Json(IdentityList {
        identities: identities.iter().map(IdentityRow::from).collect(),
    }))
}

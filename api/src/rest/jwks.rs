//! The published signing keys (public): `GET /.well-known/jwks.json` and its DashClaw alias
//! `GET /api/integrity/jwks`, and the same key as the verifier key of signed tree heads,
//! `GET /api/integrity/note-key`.

use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dashclaw_events::Jwks;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/integrity/jwks", get(jwks))
        .route("/api/integrity/note-key", get(note_key))
}

/// The verifier key of the server's signed tree heads (C2SP signed-note).
#[derive(Serialize, ToSchema)]
pub struct NoteKey {
    /// `<name>+<hex key id>+<base64(0x01 || Ed25519 public key)>`, as Go's `sumdb/note` and
    /// other transparency-log tools take it.
    pub verifier_key: String,
    /// The key name: the log origin, which each org's heads extend with `/<org_id>`.
    pub name: String,
    /// The 4-byte key id, hex: the first bytes of each signature.
    pub key_id: String,
    /// The same key's RFC 7638 thumbprint in the JWKS.
    pub kid: String,
}

/// The note verifier key of signed tree heads (the JWKS key, under the log origin's name).
#[utoipa::path(get, path = "/api/integrity/note-key", tag = "integrity", security(()),
    responses((status = 200, description = "The verifier key", body = NoteKey)))]
pub(crate) async fn note_key(State(state): State<AppState>) -> Json<NoteKey> {
    let signer = state.service.signer();
    let verifier = signer.verifier();
    Json(NoteKey {
        verifier_key: verifier.encode(),
        name: verifier.name.clone(),
        key_id: hex::encode(verifier.key_id()),
        kid: signer.key().kid().to_owned(),
    })
}

/// The published key set (RFC 7517): public Ed25519 keys only, whatever the stored set holds.
#[derive(Serialize, ToSchema, Default)]
pub struct PublicKeySet {
    pub keys: Vec<PublicKey>,
}

/// An Ed25519 public key as a JWK (RFC 8037).
#[derive(Serialize, ToSchema)]
pub struct PublicKey {
    /// Always "OKP".
    pub kty: String,
    /// Always "Ed25519".
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// The key's RFC 7638 thumbprint: the `kid` checkpoints and receipts name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl From<Jwks> for PublicKeySet {
    fn from(set: Jwks) -> Self {
        Self {
            keys: set
                .keys
                .into_iter()
                .map(|k| PublicKey {
                    kty: k.kty,
                    crv: k.crv,
                    x: k.x,
                    kid: k.kid,
                    alg: k.alg,
                    use_: k.use_,
                })
                .collect(),
        }
    }
}

/// The signing keys' public halves. Per the DashClaw contract a failure answers an empty set
/// (never cached), not an error: verifiers treat "no keys" as "cannot verify", which is the
/// truth at that moment.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "integrity", security(()),
    responses((status = 200, description = "The key set", body = PublicKeySet)))]
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    match dashclaw_store::keys::published(state.service.pool()).await {
        Ok(keys) if !keys.keys.is_empty() => (
            [(CACHE_CONTROL, "public, max-age=300")],
            Json(PublicKeySet::from(keys)),
        )
            .into_response(),
        Ok(_) => ([(CACHE_CONTROL, "no-store")], Json(PublicKeySet::default())).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the key set");
            ([(CACHE_CONTROL, "no-store")], Json(PublicKeySet::default())).into_response()
        }
    }
}

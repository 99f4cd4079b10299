//! Evidence for auditors (`docs/evidence-format.md`): an action's signed evidence bundle
//! (contract 13.4), a decision's replay, and the public verification of bundles and receipts
//! (contract 13.5).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::extract::{Body, Id};
use crate::input::fields::{object, Fields};
use crate::service::replay::DecisionReplay;
use crate::service::{Caller, Error};
use crate::state::AppState;

/// The routes behind the key check.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/artifacts/evidence-bundle", post(evidence_bundle))
        .route("/api/decisions/{id}/replay", get(replay))
}

/// The public routes.
pub fn public_router() -> Router<AppState> {
    Router::new().route("/api/integrity/verify", post(verify))
}

/// `POST /api/artifacts/evidence-bundle`.
#[derive(ToSchema)]
#[schema(example = json!({"action_id": "act_5b0c6f1e-2d4a-4c8e-9f3b-7a1d2e3f4a5b"}))]
pub struct EvidenceBundleRequest {
    pub action_id: String,
    /// Accepted for DashClaw compatibility; bundles are not stored (the ledger can produce
    /// one again at any time).
    pub persist: Option<bool>,
}

/// A signed bundle: `{version, issuedAt, engineVersion, payloadHash, prevBundleHash, payload,
/// signature}` (`docs/evidence-format.md`).
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct SignedBundle(Value);

/// The signed evidence bundle of one action.
#[utoipa::path(post, path = "/api/artifacts/evidence-bundle", tag = "integrity",
    request_body = EvidenceBundleRequest,
    responses((status = 200, description = "The signed bundle", body = SignedBundle)))]
pub(crate) async fn evidence_bundle(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<SignedBundle>, Error> {
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let action_id = f.required_string("action_id", 256);
    f.boolean("persist");
    f.finish()?;
    let bundle = state
        .service
        .evidence_bundle(&caller, &action_id.unwrap_or_default())
        .await?;
    let value = serde_json::to_value(bundle).map_err(Error::internal)?;
    Ok(Json(SignedBundle(value)))
}

/// A decision evaluated again under the policy set in force when it was made.
#[derive(Serialize, ToSchema)]
pub struct ReplayBody {
    pub decision_id: String,
    pub ledger_seq: u64,
    /// True when every field came out the same under the recorded policy set.
    pub identical: bool,
    /// The engine that made the decision (absent: recorded before engines were named).
    pub recorded_engine: Option<String>,
    pub replay_engine: String,
    pub policy_set: ReplayPolicySet,
    /// The recorded evaluation: decision, reasons, warnings, matched_policies, risk_score,
    /// risk_breakdown.
    #[schema(value_type = Object)]
    pub recorded: Value,
    /// The same fields, evaluated now.
    #[schema(value_type = Object)]
    pub replayed: Value,
    /// Each field that differs, with both values; empty when identical.
    #[schema(value_type = Vec<Object>)]
    pub differences: Value,
}

/// The policy set a replay ran under.
#[derive(Serialize, ToSchema)]
pub struct ReplayPolicySet {
    /// SHA-256 (hex) of the policies' JSON, as decisions record it.
    pub version: String,
    /// Whether a state of the ledger's policy set has the version the decision recorded.
    pub found: bool,
    /// The `ledger_seq` of the policy event that made this state (0: no policy yet).
    pub as_of_ledger_seq: u64,
    #[schema(value_type = Vec<Object>)]
    pub policies: Value,
}

impl From<DecisionReplay> for ReplayBody {
    fn from(r: DecisionReplay) -> Self {
        Self {
            decision_id: r.record.decision_id.to_string(),
            ledger_seq: r.ledger_seq,
            identical: r.identical(),
            recorded_engine: r.replay.recorded_engine.clone(),
            replay_engine: r.replay.replay_engine.to_owned(),
            policy_set: ReplayPolicySet {
                version: r.policy_set.version.clone(),
                found: r.policy_set_found,
                as_of_ledger_seq: r.policy_set.as_of,
                policies: json(&r.policy_set.policies),
            },
            recorded: json(&r.record.evaluation),
            replayed: json(&r.replay.evaluation),
            differences: json(&r.replay.differences),
        }
    }
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Replays a recorded guard decision from its recorded inputs under the policy set the
/// ledger had when it was made.
#[utoipa::path(get, path = "/api/decisions/{id}/replay", tag = "integrity",
    params(("id" = String, Path, description = "The guard decision id (act_gd_…)")),
    responses((status = 200, description = "The replay", body = ReplayBody)))]
pub(crate) async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<ReplayBody>, Error> {
    Ok(Json(
        state.service.replay_decision(&caller, &id).await?.into(),
    ))
}

/// `POST /api/integrity/verify`: one of the two.
#[derive(ToSchema)]
pub struct VerifyRequest {
    #[schema(value_type = Option<Object>)]
    pub bundle: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub receipt: Option<Value>,
}

/// `{ok: true, kid, prevBundleHash?, checks}` or `{ok: false, reason, detail?, checks?}`
/// (contract 13.5; `checks` lists each check made, in order).
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct VerifyAnswer(Value);

/// Verifies a bundle (every check of `dashclaw verify-bundle`) or a receipt against this
/// server's published keys.
#[utoipa::path(post, path = "/api/integrity/verify", tag = "integrity", security(()),
    request_body = VerifyRequest,
    responses((status = 200, description = "The verdict", body = VerifyAnswer)))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Json<VerifyAnswer>, Error> {
    let body = object(&body)?;
    // Each must be an object; what is inside is the verifier's to judge (DashClaw answers
    // `{ok: false, reason: "malformed"}` for a bundle it cannot read).
    let mut f = Fields::new(&body);
    f.object("bundle");
    f.object("receipt");
    f.finish()?;
    let body = Value::Object(body);
    Ok(Json(VerifyAnswer(
        state.service.verify_artifact(&body).await?,
    )))
}

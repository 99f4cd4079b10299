//! Proofs about the org's ledger (`docs/proofs.md`): its signed tree heads, and inclusion and
//! consistency proofs against them (RFC 9162), hashes as lowercase hex. Any key may read
//! them, readonly (auditor) keys included.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::Params;
use crate::service::integrity::{hex, SignedTreeHead};
use crate::service::{Caller, Error};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/integrity/checkpoint", get(checkpoint))
        .route("/api/integrity/proof/inclusion", get(inclusion))
        .route("/api/integrity/proof/consistency", get(consistency))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CheckpointQuery {
    /// The signed tree head of exactly this many events (default: the latest).
    size: Option<u64>,
}

/// A signed tree head of the org.
#[derive(Serialize, ToSchema)]
pub struct TreeHeadBody {
    pub org_id: String,
    pub tree_size: u64,
    /// The RFC 9162 root of the first `tree_size` events, lowercase hex.
    pub root_hash: String,
    /// The chain hash of event `tree_size`.
    pub chain_head: String,
    pub signed_at: String,
    /// The C2SP tlog-checkpoint signed note (what to keep, and what `dashclaw verify
    /// --against` reads).
    pub checkpoint: String,
}

impl From<SignedTreeHead> for TreeHeadBody {
    fn from(s: SignedTreeHead) -> Self {
        Self {
            org_id: s.org.to_string(),
            tree_size: s.head.size,
            root_hash: hex(&s.head.root),
            chain_head: s.head.chain_head.to_hex(),
            signed_at: s.head.signed_at,
            checkpoint: s.note,
        }
    }
}

/// The org's latest signed tree head, or the one of `size` events.
#[utoipa::path(get, path = "/api/integrity/checkpoint", tag = "integrity",
    params(CheckpointQuery),
    responses((status = 200, description = "The signed tree head", body = TreeHeadBody)))]
pub(crate) async fn checkpoint(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<CheckpointQuery>,
) -> Result<Json<TreeHeadBody>, Error> {
    let head = state.service.tree_head(&caller, q.size).await?;
    Ok(Json(head.into()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InclusionQuery {
    /// The event to prove (its `ledger_seq`, from 1).
    ledger_seq: u64,
    /// The tree to prove it in (default: the latest signed tree head's size).
    tree_size: Option<u64>,
}

/// An inclusion proof (RFC 9162 section 2.1.3): the leaf and its audit path.
#[derive(Serialize, ToSchema)]
pub struct InclusionBody {
    /// `ledger_seq - 1`.
    pub leaf_index: u64,
    pub tree_size: u64,
    /// `SHA-256(0x00 || event hash)`, lowercase hex.
    pub leaf_hash: String,
    /// The audit path, leaf to root, lowercase hex.
    pub hashes: Vec<String>,
}

/// The inclusion proof of an event in the org's tree of `tree_size` events.
#[utoipa::path(get, path = "/api/integrity/proof/inclusion", tag = "integrity",
    params(InclusionQuery),
    responses((status = 200, description = "The inclusion proof", body = InclusionBody)))]
pub(crate) async fn inclusion(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<InclusionQuery>,
) -> Result<Json<InclusionBody>, Error> {
    let proof = state
        .service
        .inclusion_proof(&caller, q.ledger_seq, q.tree_size)
        .await?;
    Ok(Json(InclusionBody {
        leaf_index: proof.leaf_index,
        tree_size: proof.tree_size,
        leaf_hash: hex(&proof.leaf_hash),
        hashes: proof.hashes.iter().map(hex).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsistencyQuery {
    /// The older tree's size (at least 1).
    from: u64,
    /// The newer tree's size (at least `from`, at most the chain's).
    to: u64,
}

/// A consistency proof (RFC 9162 section 2.1.4).
#[derive(Serialize, ToSchema)]
pub struct ConsistencyBody {
    pub first: u64,
    pub second: u64,
    /// Lowercase hex.
    pub hashes: Vec<String>,
}

/// The consistency proof from the org's tree of `from` events to that of `to`.
#[utoipa::path(get, path = "/api/integrity/proof/consistency", tag = "integrity",
    params(ConsistencyQuery),
    responses((status = 200, description = "The consistency proof", body = ConsistencyBody)))]
pub(crate) async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ConsistencyQuery>,
) -> Result<Json<ConsistencyBody>, Error> {
    let proof = state
        .service
        .consistency_proof(&caller, q.from, q.to)
        .await?;
    Ok(Json(ConsistencyBody {
        first: proof.first,
        second: proof.second,
        hashes: proof.hashes.iter().map(hex).collect(),
    }))
}

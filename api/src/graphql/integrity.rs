//! The ledger's proofs in GraphQL, the same operations as REST's `/api/integrity/*`: the
//! org's checkpoints and signed tree heads, consistency proofs, and each ledger event's
//! inclusion proof (`LedgerEvent.inclusionProof(treeSize)`), and REST's decision replay
//! (`decisionReplay(id)`). Hashes are lowercase hex.

use async_graphql::{ComplexObject, Context, Json, Object, SimpleObject};
use serde_json::Value;

use super::{gql, parts, LedgerEvent};
use crate::service::integrity::{hex, SignedTreeHead};
use crate::service::replay::DecisionReplay;
use crate::service::Error;

/// A signed checkpoint of the org's chain; since tree heads exist, also a signed tree head.
#[derive(SimpleObject)]
pub struct CheckpointObject {
    pub size: i64,
    pub head_hash: String,
    pub signed_at: String,
    pub kid: String,
    pub signature: String,
    /// The Merkle root at `size`, lowercase hex (absent on checkpoints signed before tree
    /// heads).
    pub root_hash: Option<String>,
    /// The signed tree head: a C2SP tlog-checkpoint signed note (absent likewise).
    pub note: Option<String>,
}

/// A signed tree head of the org.
#[derive(SimpleObject)]
pub struct TreeHeadObject {
    pub org_id: String,
    pub tree_size: i64,
    pub root_hash: String,
    pub chain_head: String,
    pub signed_at: String,
    /// The C2SP tlog-checkpoint signed note.
    pub checkpoint: String,
}

impl From<SignedTreeHead> for TreeHeadObject {
    fn from(s: SignedTreeHead) -> Self {
        Self {
            org_id: s.org.to_string(),
            tree_size: s.head.size as i64,
            root_hash: hex(&s.head.root),
            chain_head: s.head.chain_head.to_hex(),
            signed_at: s.head.signed_at,
            checkpoint: s.note,
        }
    }
}

/// An inclusion proof (RFC 9162 section 2.1.3).
#[derive(SimpleObject)]
pub struct InclusionProofObject {
    pub leaf_index: i64,
    pub tree_size: i64,
    pub leaf_hash: String,
    pub hashes: Vec<String>,
}

/// A consistency proof (RFC 9162 section 2.1.4).
#[derive(SimpleObject)]
pub struct ConsistencyProofObject {
    pub first: i64,
    pub second: i64,
    pub hashes: Vec<String>,
}

/// A guard decision evaluated again under the policy set the ledger had when it was made
/// (REST's `GET /api/decisions/:id/replay`).
#[derive(SimpleObject)]
pub struct DecisionReplayObject {
    pub decision_id: String,
    pub ledger_seq: i64,
    /// Every field came out the same, under the policy set the decision recorded.
    pub identical: bool,
    /// The engine that made the decision (null: recorded before engines were named).
    pub recorded_engine: Option<String>,
    pub replay_engine: String,
    /// The version (SHA-256 of the policies' JSON) the replay ran under.
    pub policy_set_version: String,
    /// Whether a state of the ledger's policy set has the version the decision recorded.
    pub policy_set_found: bool,
    /// The `ledgerSeq` of the policy event that made that state (0: no policy yet).
    pub policy_set_as_of: i64,
    /// The policies the replay ran under.
    pub policies: Json<Value>,
    /// The recorded evaluation: decision, reasons, warnings, matched_policies, risk_score,
    /// risk_breakdown.
    pub recorded: Json<Value>,
    /// The same fields, evaluated now.
    pub replayed: Json<Value>,
    /// Each field that differs (`{field, recorded, replayed}`); empty when identical.
    pub differences: Json<Value>,
}

impl From<DecisionReplay> for DecisionReplayObject {
    fn from(r: DecisionReplay) -> Self {
        fn json<T: serde::Serialize>(value: &T) -> Json<Value> {
            Json(serde_json::to_value(value).unwrap_or(Value::Null))
        }
        Self {
            decision_id: r.record.decision_id.to_string(),
            ledger_seq: r.ledger_seq as i64,
            identical: r.identical(),
            recorded_engine: r.replay.recorded_engine.clone(),
            replay_engine: r.replay.replay_engine.to_owned(),
            policy_set_version: r.policy_set.version.clone(),
            policy_set_found: r.policy_set_found,
            policy_set_as_of: r.policy_set.as_of as i64,
            policies: json(&r.policy_set.policies),
            recorded: json(&r.record.evaluation),
            replayed: json(&r.replay.evaluation),
            differences: json(&r.replay.differences),
        }
    }
}

/// A size argument: not negative.
fn size(name: &str, value: i64) -> async_graphql::Result<u64> {
    u64::try_from(value).map_err(|_| {
        gql(Error::validation(vec![format!(
            "{name} must not be negative"
        )]))
    })
}

#[ComplexObject]
impl LedgerEvent {
    /// This event's inclusion proof in the org's tree of `treeSize` events (default: the
    /// latest signed tree head's size).
    async fn inclusion_proof(
        &self,
        ctx: &Context<'_>,
        tree_size: Option<i64>,
    ) -> async_graphql::Result<InclusionProofObject> {
        let (state, caller) = parts(ctx)?;
        let tree_size = tree_size.map(|n| size("treeSize", n)).transpose()?;
        let proof = state
            .service
            .inclusion_proof(caller, self.ledger_seq as u64, tree_size)
            .await
            .map_err(gql)?;
        Ok(InclusionProofObject {
            leaf_index: proof.leaf_index as i64,
            tree_size: proof.tree_size as i64,
            leaf_hash: hex(&proof.leaf_hash),
            hashes: proof.hashes.iter().map(hex).collect(),
        })
    }
}

#[derive(Default)]
pub struct IntegrityQuery;

#[Object]
impl IntegrityQuery {
    /// The org's signed checkpoints, oldest first.
    async fn checkpoints(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<CheckpointObject>> {
        let (state, caller) = parts(ctx)?;
        let stored = state.service.checkpoints(caller).await.map_err(gql)?;
        Ok(stored
            .into_iter()
            .map(|c| CheckpointObject {
                size: c.signed.checkpoint.size as i64,
                head_hash: c.signed.checkpoint.head_hash.to_hex(),
                signed_at: c.signed.checkpoint.signed_at,
                kid: c.signed.kid,
                signature: c.signed.signature,
                root_hash: c.root_hash,
                note: c.note,
            })
            .collect())
    }

    /// The org's latest signed tree head, or the one of exactly `size` events.
    async fn tree_head(
        &self,
        ctx: &Context<'_>,
        size: Option<i64>,
    ) -> async_graphql::Result<TreeHeadObject> {
        let (state, caller) = parts(ctx)?;
        let size = size.map(|n| self::size("size", n)).transpose()?;
        let head = state.service.tree_head(caller, size).await.map_err(gql)?;
        Ok(head.into())
    }

    /// A guard decision (`act_gd_…`) replayed under the policies of its time.
    async fn decision_replay(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<DecisionReplayObject> {
        let (state, caller) = parts(ctx)?;
        let replay = state
            .service
            .replay_decision(caller, &id)
            .await
            .map_err(gql)?;
        Ok(replay.into())
    }

    /// The consistency proof from the org's tree of `from` events to that of `to`.
    async fn consistency_proof(
        &self,
        ctx: &Context<'_>,
        from: i64,
        to: i64,
    ) -> async_graphql::Result<ConsistencyProofObject> {
        let (state, caller) = parts(ctx)?;
        let (from, to) = (size("from", from)?, size("to", to)?);
        let proof = state
            .service
            .consistency_proof(caller, from, to)
            .await
            .map_err(gql)?;
        Ok(ConsistencyProofObject {
            first: proof.first as i64,
            second: proof.second as i64,
            hashes: proof.hashes.iter().map(hex).collect(),
        })
    }
}

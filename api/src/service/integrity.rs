//! Evidence about the ledger itself: signed tree heads, inclusion and consistency proofs
//! against them, the note verifier key, and signing heads (the checkpoint sweep, shutdown,
//! bundles). Every key may read all of it, a readonly (auditor) key included.

use dashclaw_events::merkle::Hash;
use dashclaw_events::{EventHash, OrgId, TreeHead};
use dashclaw_store::checkpoints::{self, StoredCheckpoint};
use dashclaw_store::tree::{self, InclusionProof};

use super::{Caller, Error, ErrorCode, Permission, Service};

/// A signed tree head of an org.
#[derive(Debug, Clone)]
pub struct SignedTreeHead {
    pub head: TreeHead,
    pub org: OrgId,
    /// The signed note, as stored and published.
    pub note: String,
}

impl SignedTreeHead {
    fn of(org: &OrgId, stored: StoredCheckpoint) -> Result<Self, Error> {
        let note = stored
            .note
            .ok_or_else(|| Error::internal("a checkpoint without a tree head was asked for"))?;
        // The body is everything before the blank line, with its final newline.
        let body = note.split_once("\n\n").map(|(body, _)| format!("{body}\n"));
        let head = TreeHead::parse(body.as_deref().unwrap_or_default())
            .map_err(|e| Error::internal(format!("stored tree head of {org}: {e}")))?;
        Ok(Self {
            head,
            org: org.clone(),
            note,
        })
    }
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    pub hashes: Vec<Hash>,
}

fn invalid(detail: String) -> Error {
    Error::validation(vec![detail])
}

impl Service {
    /// The org's latest signed tree head, or the one of exactly `size` events.
    pub async fn tree_head(
        &self,
        caller: &Caller,
        size: Option<u64>,
    ) -> Result<SignedTreeHead, Error> {
        caller.require(Permission::Read)?;
        let org = &caller.org;
        let stored = match size {
            Some(size) => checkpoints::at(self.pool(), org, size)
                .await?
                .filter(|c| c.note.is_some()),
            None => checkpoints::latest_tree_head(self.pool(), org).await?,
        };
        let stored = stored.ok_or_else(|| {
            Error::new(
                ErrorCode::NotFound,
                match size {
                    Some(size) => format!("No signed tree head of size {size}"),
                    None => "No signed tree head yet (one is signed within a second of the \
                             org's first event)"
                        .to_owned(),
                },
            )
        })?;
        SignedTreeHead::of(org, stored)
    }

    /// The org's checkpoints (tree heads among them), oldest first.
    pub async fn checkpoints(&self, caller: &Caller) -> Result<Vec<StoredCheckpoint>, Error> {
        caller.require(Permission::Read)?;
        Ok(checkpoints::list(self.pool(), &caller.org).await?)
    }

    /// How many events the org's chain holds.
    async fn chain_size(&self, org: &OrgId) -> Result<u64, Error> {
        Ok(dashclaw_store::chain::head(self.pool(), org).await?.size)
    }

    /// The inclusion proof of event `ledger_seq` in the org's tree of `tree_size` events
    /// (default: the latest signed tree head's size).
    pub async fn inclusion_proof(
        &self,
        caller: &Caller,
        ledger_seq: u64,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, Error> {
        caller.require(Permission::Read)?;
        let org = &caller.org;
        let tree_size = match tree_size {
            Some(size) => size,
            None => self.tree_head(caller, None).await?.head.size,
        };
        if ledger_seq == 0 || ledger_seq > tree_size {
            return Err(invalid(format!(
                "ledger_seq must be between 1 and tree_size ({tree_size})"
            )));
        }
        let size = self.chain_size(org).await?;
        if tree_size > size {
            return Err(invalid(format!(
                "tree_size {tree_size} exceeds the org's chain ({size} events)"
            )));
        }
        tree::inclusion(self.pool(), org, ledger_seq - 1, tree_size)
            .await?
            .ok_or_else(|| Error::internal("an inclusion proof inside the tree was not planned"))
    }

    /// The consistency proof from the org's tree of `first` events to that of `second`.
    pub async fn consistency_proof(
        &self,
        caller: &Caller,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProof, Error> {
        caller.require(Permission::Read)?;
        let org = &caller.org;
        if first == 0 || first > second {
            return Err(invalid(format!(
                "from must be at least 1 and at most to ({second})"
            )));
        }
        let size = self.chain_size(org).await?;
        if second > size {
            return Err(invalid(format!(
                "to {second} exceeds the org's chain ({size} events)"
            )));
        }
        let hashes = tree::consistency(self.pool(), org, first, second)
            .await?
            .ok_or_else(|| {
                Error::internal("a consistency proof inside the tree was not planned")
            })?;
        Ok(ConsistencyProof {
            first,
            second,
            hashes,
        })
    }

    /// Signs a tree head of `org` at its chain's head now (unless one exists at that size).
    pub async fn sign_tree_head(&self, org: &OrgId) -> Result<Option<StoredCheckpoint>, Error> {
        Ok(checkpoints::sign(self.pool(), self.signer(), org).await?)
    }

    /// Signs a tree head of every org whose chain moved since its last one (at shutdown, so
    /// that no event is left without a signed head while no node runs).
    pub async fn sign_tree_heads(&self) -> Result<Vec<StoredCheckpoint>, Error> {
        Ok(checkpoints::sign_all(self.pool(), self.signer()).await?)
    }
}

/// Lowercase hex of a hash (as the ledger writes hashes).
pub fn hex(hash: &Hash) -> String {
    EventHash(*hash).to_hex()
}

//! Pure, domain-blind ledger primitives: what an event looks like on the chain, how it is hashed,
//! how a chain is verified, how checkpoints and tree heads are signed, the Merkle tree's
//! proofs, and the signed evidence bundles built from them.
//!
//! Nothing here performs IO or knows what an "action" or "approval" is: the ledger treats
//! payloads as opaque canonical JSON. The byte-level formats are specified in
//! `docs/ledger-format.md`; golden vectors in `events/testdata/` pin them.

pub mod bundle;
mod canonical;
mod chain;
mod checkpoint;
mod envelope;
mod error;
pub mod export;
mod ids;
mod keys;
pub mod merkle;
pub mod note;
mod tree_head;

#[cfg(test)]
mod golden;

pub use canonical::CanonicalJson;
pub use chain::{Anomaly, ChainBreak, ChainVerifier, TamperKind};
pub use checkpoint::{Checkpoint, SignedCheckpoint, CHECKPOINT_TYPE};
pub use envelope::{entry_hash_input, entry_parts, genesis_hash, Envelope, EnvelopeRef};
pub use error::Error;
pub use ids::{EventHash, OrgId};
pub use keys::{jwk_thumbprint, Jwk, Jwks, LedgerKey};
pub use tree_head::{LogSigner, TreeHead, TreeHeadError};

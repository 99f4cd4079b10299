//! Tracking projections: fold each org's ledger, in `ledger_seq` order, into read models
//! (PostgreSQL tables), each batch in one transaction with the projection's checkpoint, so a
//! crash can neither skip nor double-count an event.
//!
//! Projections only read the ledger and write their own tables; they never write events.

pub mod governance;
pub mod webhooks;

pub use governance::{Governance, ProjectionError};
pub use webhooks::Outbox;

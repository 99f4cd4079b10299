//! The event store: the only code that writes events. It is a cqrs-es
//! [`PersistedEventRepository`](cqrs_es::persist::PersistedEventRepository) on PostgreSQL whose
//! `persist` chains every event into its org's ledger in the same transaction that writes it.
//!
//! Reads go through postgres-es (the table keeps its columns); writes go through the per-org
//! group committer in [`append`]. Also here: reading a chain back ([`chain`]), the server's
//! signing keys ([`keys`]), signed checkpoints and tree heads ([`checkpoints`]), the Merkle tree beside each chain
//! ([`tree`]) and verification ([`verify`]).

pub mod append;
pub mod chain;
pub mod checkpoints;
mod error;
pub mod exports;
pub mod keys;
mod repository;
pub mod tree;
pub mod verify;

pub use append::{timestamp, Appended, Appender, NewEvent};
pub use error::StoreError;
pub use repository::LedgerRepository;

/// The schema migrations in `migrations/`, embedded; applied by the binary at start and by the
/// test harness (`#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The channel on which every committed append is announced, with payload `<org_id>:<size>`.
pub const LEDGER_CHANNEL: &str = "dashclaw_ledger";

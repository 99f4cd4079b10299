//! The one error type of the store.

use cqrs_es::persist::PersistenceError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another append to the same stream won the race: reload the aggregate and retry the
    /// command, or report a conflict (HTTP 409) to the caller.
    #[error("stream {stream_id} was appended to concurrently (expected it at sequence {expected}, found {found})")]
    Conflict {
        stream_id: String,
        expected: u64,
        found: u64,
    },
    /// The events handed to the store are malformed (unscoped stream id, mixed streams,
    /// non-canonicalizable payload): a programming error in the caller.
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    /// The configured signing key (`DASHCLAW_SIGNING_KEY_JWK`) is unusable: fix the configuration.
    #[error("invalid signing key configuration: {0}")]
    InvalidKey(String),
    /// The database failed or is unreachable: retry later.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Stored data is unreadable (a signing key that does not parse, say).
    #[error("corrupt ledger data: {0}")]
    Corrupt(String),
    /// The database could not be reached within the append's deadline (no connection, or the
    /// deadline passed while the append waited): nothing was written. Retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database connection failed after the write was sent: it may or may not have been
    /// committed. Look the write up (by the ids it carried) before retrying it.
    #[error("commit outcome unknown: {0}")]
    CommitUnknown(String),
    /// The append's committer went away (the server is shutting down).
    #[error("the ledger writer is shutting down")]
    ShuttingDown,
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Database(sqlx::Error::Migrate(Box::new(e)))
    }
}

impl From<StoreError> for PersistenceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => Self::OptimisticLockError,
            StoreError::Database(e) => Self::ConnectionError(Box::new(e)),
            e @ StoreError::Unavailable(_) => Self::ConnectionError(Box::new(e)),
            other => Self::UnknownError(Box::new(other)),
        }
    }
}

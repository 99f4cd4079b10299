//! The application layer's one error: a code from a closed set a client can act on, a
//! message, and optional details and context (`current_status`, `action`, ...). Each
//! transport maps the code once (REST to a status in `rest::error`, GraphQL to an
//! extension); nothing here knows HTTP. Internal errors are logged with their cause and
//! answered generically.

use dashclaw_domain::action::ActionRecord;
use dashclaw_domain::guard_decision::GuardDecisionRecord;
use dashclaw_domain::OrgId;
use serde::Serialize;
use serde_json::{Map, Value};

/// Error codes a client can act on. Closed: a new code is a contract change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    BadRequest,
    InvalidJson,
    ValidationFailed,
    PromptInjection,
    InvalidExecutionClaim,
    NotPendingApproval,
    ReservedActionType,
    Unauthorized,
    Forbidden,
    SelfApprovalForbidden,
    AgentIdentityRequired,
    ActionBlocked,
    NotFound,
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// Cancelling an action needs a reason.
    ReasonRequired,
    /// Only a running, unclaimed action without an outcome can be cancelled.
    NotCancellable,
    Conflict,
    OutcomeConflict,
    ExecutionClaimConflict,
    ApprovalExpired,
    PayloadTooLarge,
    RateLimited,
    OrgRateLimited,
    DbUnavailable,
    /// The write was sent but its commit was never confirmed: it may be on the ledger. Look
    /// it up (the ids in the answer) before retrying.
    CommitUnknown,
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order (what the OpenAPI document lists; `status` in
    /// `http_error` matches on each, so a new code cannot go unmapped).
    pub const ALL: [ErrorCode; 26] = {
        use ErrorCode::*;
        [
            BadRequest,
            InvalidJson,
            ValidationFailed,
            PromptInjection,
            InvalidExecutionClaim,
            NotPendingApproval,
            ReservedActionType,
            Unauthorized,
            Forbidden,
            SelfApprovalForbidden,
            AgentIdentityRequired,
            ActionBlocked,
            NotFound,
            MethodNotAllowed,
            ReasonRequired,
            NotCancellable,
            Conflict,
            OutcomeConflict,
            ExecutionClaimConflict,
            ApprovalExpired,
            PayloadTooLarge,
            RateLimited,
            OrgRateLimited,
            DbUnavailable,
            CommitUnknown,
            Internal,
        ]
    };
}

/// What an error is about, typed: each transport renders it beside the message (REST as the
/// `action` and `decision` fields of the envelope).
#[derive(Debug)]
pub enum Subject {
    /// The action of `org` as it reads now (an expired approval).
    Action {
        org: OrgId,
        action: Box<ActionRecord>,
    },
    /// The action of `org` and the guard decision it was recorded under (a blocked action).
    Decided {
        org: OrgId,
        action: Box<ActionRecord>,
        decision: Box<GuardDecisionRecord>,
    },
}

/// An operation's failure, as every transport reports it: `{error, code, details?, ...}`.
#[derive(Debug, Serialize)]
pub struct Error {
    pub error: String,
    pub code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Seconds after which a retry may succeed (rate limits, outages).
    #[serde(skip)]
    pub retry_after: Option<u64>,
    #[serde(skip)]
    pub subject: Option<Box<Subject>>,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.error)
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn new(code: ErrorCode, error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            code,
            details: None,
            extra: Map::new(),
            retry_after: None,
            subject: None,
        }
    }

    /// The entity this error is about.
    pub fn about(mut self, subject: Subject) -> Self {
        self.subject = Some(Box::new(subject));
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn with_details(mut self, details: impl Into<Value>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// A retry may succeed after `secs` seconds.
    pub fn retry(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "Not found")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(ErrorCode::MethodNotAllowed, "Method not allowed")
    }

    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, error)
    }

    pub fn validation(details: Vec<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, "Validation failed").with_details(details)
    }

    pub fn forbidden(error: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, error)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "Unauthorized - Invalid or missing API key",
        )
    }

    /// The database cannot be reached: nothing was written; retry after a second.
    pub fn db_unavailable() -> Self {
        Self::new(ErrorCode::DbUnavailable, "Database unavailable").retry(1)
    }

    /// A write whose commit was not confirmed (see [`ErrorCode::CommitUnknown`]).
    pub fn commit_unknown() -> Self {
        Self::new(
            ErrorCode::CommitUnknown,
            "The database did not confirm the write: it may or may not be recorded. \
             Look it up before retrying.",
        )
        .retry(1)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "Internal server error")
    }
}

impl From<dashclaw_store::StoreError> for Error {
    fn from(e: dashclaw_store::StoreError) -> Self {
        tracing::error!(error = %e, "request failed in the store");
        match e {
            dashclaw_store::StoreError::Database(_)
            | dashclaw_store::StoreError::Unavailable(_) => Self::db_unavailable(),
            dashclaw_store::StoreError::CommitUnknown(_) => Self::commit_unknown(),
            _ => Self::new(ErrorCode::Internal, "Internal server error"),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        dashclaw_store::StoreError::Database(e).into()
    }
}

impl From<dashclaw_projections::ProjectionError> for Error {
    fn from(e: dashclaw_projections::ProjectionError) -> Self {
        match e {
            dashclaw_projections::ProjectionError::Database(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

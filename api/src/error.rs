//! The HTTP error envelope `{error, code, details?, ...}`: one closed set of codes, each
//! mapped once to a status. Route-specific context (`current_status`, `action`, `decision`)
//! rides in `extra`. Internal errors are logged with their cause and answered generically.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};

/// Error codes a client can act on.
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
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            BadRequest
            | InvalidJson
            | ValidationFailed
            | PromptInjection
            | InvalidExecutionClaim
            | NotPendingApproval
            | ReservedActionType => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            Forbidden | SelfApprovalForbidden | AgentIdentityRequired | ActionBlocked => {
                StatusCode::FORBIDDEN
            }
            NotFound => StatusCode::NOT_FOUND,
            Conflict | OutcomeConflict | ExecutionClaimConflict => StatusCode::CONFLICT,
            ApprovalExpired => StatusCode::GONE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RateLimited | OrgRateLimited => StatusCode::TOO_MANY_REQUESTS,
            DbUnavailable | CommitUnknown => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ApiError {
    pub error: String,
    pub code: ErrorCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            code,
            details: None,
            extra: Map::new(),
            retry_after: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    pub fn with_details(mut self, details: impl Into<Value>) -> Self {
        self.details = Some(details.into());
        self
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "Not found")
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

    /// The database cannot be reached: nothing was written; retry after a second.
    pub fn db_unavailable() -> Self {
        let mut e = Self::new(ErrorCode::DbUnavailable, "Database unavailable");
        e.retry_after = Some(1);
        e
    }

    /// A write whose commit was not confirmed (see [`ErrorCode::CommitUnknown`]).
    pub fn commit_unknown() -> Self {
        let mut e = Self::new(
            ErrorCode::CommitUnknown,
            "The database did not confirm the write: it may or may not be recorded. \
             Look it up before retrying.",
        );
        e.retry_after = Some(1);
        e
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "Internal server error")
    }
}

impl From<dashclaw_store::StoreError> for ApiError {
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

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        dashclaw_store::StoreError::Database(e).into()
    }
}

impl From<dashclaw_projections::ProjectionError> for ApiError {
    fn from(e: dashclaw_projections::ProjectionError) -> Self {
        match e {
            dashclaw_projections::ProjectionError::Database(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let retry = self.retry_after;
        let mut response = (status, Json(self)).into_response();
        if let Some(secs) = retry {
            if let Ok(v) = secs.to_string().parse() {
                response.headers_mut().insert("retry-after", v);
            }
        }
        response
    }
}

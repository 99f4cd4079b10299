//! The HTTP rendering of the application's error, shared by the HTTP adapters (REST, GraphQL
//! over HTTP): each code mapped once to a status, the envelope `{error, code, details?, ...}`
//! as the body, `Retry-After` when a retry may help.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::service::{Error, ErrorCode};

/// The HTTP status of `code`.
pub fn status(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        BadRequest
        | InvalidJson
        | ValidationFailed
        | PromptInjection
        | InvalidExecutionClaim
        | NotPendingApproval
        | ReservedActionType
        | ReasonRequired => StatusCode::BAD_REQUEST,
        Unauthorized => StatusCode::UNAUTHORIZED,
        Forbidden | SelfApprovalForbidden | AgentIdentityRequired | ActionBlocked => {
            StatusCode::FORBIDDEN
        }
        NotFound => StatusCode::NOT_FOUND,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Conflict | OutcomeConflict | ExecutionClaimConflict | NotCancellable => {
            StatusCode::CONFLICT
        }
        ApprovalExpired => StatusCode::GONE,
        PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        RateLimited | OrgRateLimited => StatusCode::TOO_MANY_REQUESTS,
        DbUnavailable | CommitUnknown => StatusCode::SERVICE_UNAVAILABLE,
        Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(mut self) -> Response {
        let retry = self.retry_after;
        if let Some(subject) = self.subject.take() {
            for (key, value) in crate::wire::error_subject(&subject) {
                self.extra.insert(key.to_owned(), value);
            }
        }
        let mut response = (status(self.code), Json(self)).into_response();
        if let Some(secs) = retry {
            if let Ok(v) = secs.to_string().parse() {
                response.headers_mut().insert("retry-after", v);
            }
        }
        response
    }
}

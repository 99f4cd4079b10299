//! REST's authentication and limits: the `x-api-key` header checked before anything else,
//! the caller handed to handlers, and the per-client limit on every request.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::extract::authenticate_headers;
use crate::service::{Caller, Error, ErrorCode};
use crate::state::AppState;

/// Middleware on the protected REST routes: the key is checked before anything else, the
/// body above all (an unauthenticated request is answered 401 without its body being read),
/// and the caller is handed to the handler.
pub async fn require_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/api/") {
        // Not an API path: the router's 404.
        return next.run(request).await;
    }
    match authenticate_headers(&state, request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Error> {
        // Set by `require_key`, which every protected route sits behind; a route outside it
        // gets no caller (fail closed).
        // What the caller may do is decided by the operation it calls (`Caller::require`).
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(Error::unauthorized)
    }
}

/// Middleware: the per-IP-and-path limit on every request.
pub async fn limit_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "local".to_owned());
    let key = format!("ip:{ip}:{}", request.uri().path());
    if let Err(secs) = state.ip_limit.hit(key) {
        let _ = secs;
        return Error::new(
            ErrorCode::RateLimited,
            "Rate limit exceeded. Please slow down.",
        )
        .retry(60)
        .into_response();
    }
    next.run(request).await
}

//! The HTTP edge shared by the HTTP adapters (REST, GraphQL over HTTP): the `x-api-key`
//! header, and request extractors whose refusals are the JSON error envelope, never axum's
//! plain-text rejections: the body (with the 2 MB cap), path ids and query strings. Path ids and query
//! parameters holding a NUL are refused here (bodies in `input::fields::object`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::input::fields::nul_message;
use crate::service::{Caller, Error, ErrorCode};
use crate::state::AppState;
use crate::state::MAX_BODY_BYTES;

/// The `x-api-key` header, if it holds a key.
pub fn api_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
}

/// The caller named by the request's `x-api-key`, or 401.
pub async fn authenticate_headers(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Caller, Error> {
    let key = api_key(headers).ok_or_else(Error::unauthorized)?;
    state.service.authenticate(key).await
}

/// The raw request body, refused with 413 JSON above [`MAX_BODY_BYTES`].
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::new(ErrorCode::PayloadTooLarge, "Request body too large")
                        .with("maxBytes", MAX_BODY_BYTES)
                } else {
                    Error::bad_request("Could not read the request body")
                }
            })
    }
}

/// A path id. One that cannot even be decoded (invalid UTF-8) can name nothing, so it is
/// handed on as an id that no entity has (empty), and the handler answers its usual 404. One
/// holding a NUL (`%00`) is refused with 400, like a NUL anywhere else.
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let id = Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| id)
            .unwrap_or_default();
        if id.contains('\0') {
            return Err(Error::validation(vec![nul_message("the path id")]));
        }
        Ok(Id(id))
    }
}

/// A query string, refused with 400 JSON when it does not parse (e.g. a repeated parameter).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or_default().as_bytes();
        let nul: Vec<String> = form_urlencoded::parse(query)
            .filter(|(key, value)| key.contains('\0') || value.contains('\0'))
            .map(|(key, _)| nul_message(&format!("query parameter {}", key.replace('\0', ""))))
            .collect();
        if !nul.is_empty() {
            return Err(Error::validation(nul));
        }
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| Error::validation(vec![e.body_text()]))
    }
}

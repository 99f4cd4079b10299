//! `POST /graphql`, GraphQL over HTTP: the key is checked before the body is read, the body is
//! capped like REST's, and every answer is JSON in GraphQL's shape
//! (`{"errors":[{"message","extensions":{"code"}}]}`), with the statuses of the
//! GraphQL-over-HTTP specification: 400 for a body that is not a GraphQL request; for a
//! document that does not parse or validate, 400 under `application/graphql-response+json`
//! and 200 under `application/json` (the default); 200 once execution has begun.

use async_graphql::http::GraphiQLSource;
use axum::extract::FromRequestParts;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Value};

use super::DashclawSchema;
use crate::extract::authenticate_headers;
use crate::extract::Body;
use crate::service::Caller;
use crate::service::{Error, ErrorCode};
use crate::state::AppState;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// An [`Error`] in GraphQL's shape, with its HTTP status.
pub fn error_response(e: Error) -> Response {
    let mut extensions = json!({ "code": e.code });
    if let Some(details) = e.details {
        extensions["details"] = details;
    }
    let status = crate::http_error::status(e.code);
    let body = json!({ "errors": [{ "message": e.error, "extensions": extensions }] });
    (status, axum::Json(body)).into_response()
}

/// The caller of a GraphQL request; refused in GraphQL's shape. Extracted before the body.
pub struct GraphqlCaller(pub Caller);

impl FromRequestParts<AppState> for GraphqlCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        authenticate_headers(state, &parts.headers)
            .await
            .map(GraphqlCaller)
            .map_err(error_response)
    }
}

/// GraphiQL, the in-browser GraphQL IDE.
#[utoipa::path(get, path = "/graphql", tag = "graphql", security(()),
    responses((status = 200, description = "The GraphiQL page", content_type = "text/html", body = String)))]
pub async fn graphiql() -> impl IntoResponse {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

/// Parses the body as one GraphQL request (`{query, operationName?, variables?}`).
fn request(body: &[u8]) -> Result<async_graphql::Request, Error> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Err(Error::bad_request(
            "Batched GraphQL requests are not supported",
        ));
    }
    let request: async_graphql::Request = serde_json::from_slice(body).map_err(|e| {
        Error::new(ErrorCode::InvalidJson, "The body is not a GraphQL request")
            .with_details(vec![e.to_string()])
    })?;
    if request.query.trim().is_empty() {
        return Err(
            Error::new(ErrorCode::InvalidJson, "The body is not a GraphQL request")
                .with_details(vec!["query is required".to_owned()]),
        );
    }
    Ok(request)
}

/// One GraphQL request `{query, operationName?, variables?}`; the schema is
/// `api/schema.graphql`. Errors are GraphQL's `{errors: [...]}` with `extensions.code`.
#[utoipa::path(post, path = "/graphql", tag = "graphql",
    request_body(content = Object, description = "A GraphQL request: {query, operationName?, variables?}"),
    responses((status = 200, description = "A GraphQL response {data?, errors?}", body = Object)))]
pub async fn execute(
    GraphqlCaller(caller): GraphqlCaller,
    headers: HeaderMap,
    schema: DashclawSchema,
    body: Result<Body, Error>,
) -> Response {
    let body = match body {
        Ok(Body(body)) => body,
        Err(e) => return error_response(e),
    };
    let request = match request(&body) {
        Ok(request) => request,
        Err(e) => return error_response(e),
    };
    let response = schema.execute(request.data(caller)).await;
    let modern = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains(GRAPHQL_RESPONSE));
    // A request error (the document does not parse or validate) has no data and no path.
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let mut body = match serde_json::to_value(&response) {
        Ok(body) => body,
        Err(e) => return error_response(Error::internal(e)),
    };
    let status = if modern && request_error {
        if let Value::Object(map) = &mut body {
            map.remove("data");
        }
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut answer = (status, axum::Json(body)).into_response();
    if modern {
        answer
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(GRAPHQL_RESPONSE));
    }
    answer
}

//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' `#[utoipa::path]`
//! annotations and the typed wire shapes: served at `GET /api/openapi.json`, committed as
//! `api/openapi.json` (a test fails when it drifts), validated in CI by
//! `openapi-spec-validator`.

use std::borrow::Cow;

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::graphql;
use crate::rest;
use crate::service::ErrorCode;

#[derive(OpenApi)]
#[openapi(
    info(title = "dashclaw", description = "Governance for AI agents: guard, approvals, \
        one-shot outcomes and a hash-chained ledger. DashClaw-compatible REST; every route but \
        the public ones takes an API key in `x-api-key`."),
    paths(
        rest::health::health, rest::jwks::jwks, rest::jwks::note_key, openapi_json,
        rest::guard::guard, rest::guard::history,
        rest::actions::create, rest::actions::list, rest::actions::read, rest::actions::patch,
        rest::actions::outcome, rest::actions::report_outcome, rest::actions::approve,
        rest::actions::trace, rest::actions::graph, rest::actions::stats, rest::actions::costs,
        rest::actions::cancel, rest::actions::containment,
        rest::assumptions::register, rest::assumptions::list, rest::assumptions::read,
        rest::assumptions::update,
        rest::policies::list, rest::policies::create, rest::policies::update,
        rest::policies::remove, rest::policy_tools::test, rest::policy_tools::simulate,
        rest::policy_packs::import, rest::policy_packs::proof, rest::policy_packs::packs,
        rest::org::halt, rest::org::set_halt, rest::org::sweeps, rest::org::set_sweeps,
        rest::org::signals, rest::org::scan,
        rest::keys::list, rest::keys::revoke,
        rest::analytics::analytics, rest::posture::posture,
        rest::stream::stream, rest::stream::status,
        rest::webhooks::list, rest::webhooks::create, rest::webhooks::delete,
        rest::webhooks::test, rest::webhooks::deliveries,
        rest::integrity::checkpoint, rest::integrity::inclusion,
        rest::integrity::consistency, rest::evidence::evidence_bundle, rest::evidence::replay,
        rest::evidence::verify, rest::compliance::export, rest::activity::activity,
        rest::orgs::list, rest::orgs::create, rest::orgs::read, rest::orgs::update, rest::orgs::keys,
        rest::sessions::create, rest::sessions::read, rest::sessions::update,
        rest::sessions::list, rest::sessions::events,
        rest::plans::submit, rest::plans::read, rest::plans::list, rest::plans::resolve,
        rest::plans::attest,
        rest::identities::request, rest::identities::read, rest::identities::approve,
        rest::identities::register, rest::identities::list,
        graphql::http::graphiql, graphql::http::execute, graphql::subscribe,
    ),
    components(schemas(ErrorEnvelope)),
    modifiers(&Conventions),
    security(("api_key" = [])),
)]
struct ApiDoc;

/// The document, as `GET /api/openapi.json` serves it.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// The document as committed in `api/openapi.json` (pretty, with a final newline).
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "health", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> axum::Json<Document> {
    axum::Json(document())
}

/// Routes served under a second path by the same handler (DashClaw's aliases).
const ALIASES: &[(&str, &str)] = &[
    ("/api/integrity/jwks", "/.well-known/jwks.json"),
    ("/api/approvals/{id}", "/api/actions/{id}/approve"),
    ("/api/actions/assumptions", "/api/assumptions"),
    ("/api/actions/assumptions/{id}", "/api/assumptions/{id}"),
    ("/api/actions/signals", "/api/signals"),
];

/// The error envelope of every refusal: `{error, code, details?}`, with the subject of some
/// refusals beside it (the blocked `action` and its `decision`, for example).
pub struct ErrorEnvelope;

impl PartialSchema for ErrorEnvelope {
    fn schema() -> RefOr<Schema> {
        let codes = ErrorCode::ALL.map(|c| serde_json::to_value(c).unwrap_or_default());
        ObjectBuilder::new()
            .description(Some(
                "A refusal: a message for a human, a code from a closed set for a program, and \
                 details (for a validation failure, every problem found).",
            ))
            .property(
                "error",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("What went wrong, for a human.")),
            )
            .required("error")
            .property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(codes)),
            )
            .required("code")
            .property(
                "details",
                ObjectBuilder::new()
                    .schema_type(SchemaType::AnyValue)
                    .description(Some(
                        "More about the problem: for validation, a list of strings.",
                    )),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for ErrorEnvelope {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Error")
    }
}

/// What every operation shares, applied after generation: the `x-api-key` scheme, the error
/// envelope as each operation's other answers, operation ids unique by method and path, and
/// the aliases.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "An API key of the org (admin, member or readonly).",
            ))),
        );
        components.responses.insert(
            "Error".into(),
            RefOr::T(error_response("The refusal, as the error envelope")),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, op) in operations(item) {
                op.operation_id = Some(operation_id(method, path));
                let public = op
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|r| r == &SecurityRequirement::default()));
                add_errors(op, public);
            }
        }
        for (alias, canonical) in ALIASES {
            if let Some(mut item) = doc.paths.paths.get(*canonical).cloned() {
                for (method, op) in operations(&mut item) {
                    op.operation_id = Some(operation_id(method, alias));
                }
                doc.paths.paths.insert((*alias).to_owned(), item);
            }
        }
    }
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
}

/// The refusals every operation can answer, besides those it documents itself.
fn add_errors(op: &mut Operation, public: bool) {
    let reference = || RefOr::Ref(Ref::from_response_name("Error"));
    let responses = &mut op.responses.responses;
    let takes_input = op
        .request_body
        .as_ref()
        .is_some_and(|b: &RequestBody| !b.content.is_empty())
        || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    if takes_input {
        responses.entry("400".into()).or_insert_with(reference);
    }
    if !public {
        responses.entry("401".into()).or_insert_with(reference);
    }
    responses.entry("429".into()).or_insert_with(reference);
    responses.entry("default".into()).or_insert_with(reference);
}

fn operations(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("get", item.get.as_mut()),
        ("put", item.put.as_mut()),
        ("post", item.post.as_mut()),
        ("delete", item.delete.as_mut()),
        ("patch", item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// `post /api/actions/{id}/outcome` -> `post_api_actions_id_outcome`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for part in path.split(|c: char| !c.is_ascii_alphanumeric()) {
        if !part.is_empty() {
            id.push('_');
            id.push_str(part);
        }
    }
    id
}

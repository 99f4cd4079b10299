//! The OpenAPI document (`api/openapi.json`): committed and current (regenerate with
//! `UPDATE_OPENAPI=1 tests/run openapi`), served without a key, listing exactly the routes
//! the server answers, and with request schemas whose every field its parser reads.

use std::collections::BTreeSet;
use std::path::Path;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::Api;

fn document() -> Value {
    serde_json::from_str(&dashclaw::openapi::document_json()).unwrap()
}

#[test]
fn the_committed_document_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let text = dashclaw::openapi::document_json();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "api/openapi.json is out of date: run `UPDATE_OPENAPI=1 tests/run openapi` and commit it"
    );
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["name"],
        "x-api-key"
    );
}

/// The `(method, path)` pairs the routers register: every `.route("path", get(..).post(..))`
/// in the crate's sources.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut routes = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let mut rest = source.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // The call's arguments, up to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map(|(i, _)| i)
                .unwrap();
            let call = &rest[..end];
            let path = call.split('"').nth(1).unwrap().to_owned();
            for method in ["get", "post", "put", "patch", "delete"] {
                let named = |sep: &str| call.contains(&format!("{sep}{method}("));
                if named(".")
                    || named("::")
                    || call.trim_start_matches(|c: char| c != ',')[1..]
                        .trim_start()
                        .starts_with(&format!("{method}("))
                {
                    routes.insert((method.to_owned(), path.clone()));
                }
            }
        }
    }
    routes
}

#[test]
fn every_route_the_server_answers_is_documented_and_no_other() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    let served = routes_in_source();
    assert!(served.len() > 40, "{served:?}");
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "served but not documented: {undocumented:?}\ndocumented but not served: {unserved:?}"
    );
    // Every operation: a unique id, and the error envelope for what it does not list.
    let mut ids = BTreeSet::new();
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()));
        assert_eq!(
            op["responses"]["default"]["$ref"], "#/components/responses/Error",
            "{method} {path}"
        );
    }
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn the_document_is_served_without_a_key(pool: PgPool) {
    let api = Api::start(pool).await;
    let (status, body) = api.get("/api/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, document());
}

/// A value of the wrong type for a property of this schema.
fn wrong_value(property: &Value) -> Option<Value> {
    let kind = match &property["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts.iter().find(|t| *t != "null")?.as_str()?.to_owned(),
        _ => return None,
    };
    Some(match kind.as_str() {
        "string" => json!(12345),
        "integer" | "number" => json!("not a number"),
        "boolean" => json!("not a boolean"),
        "array" | "object" => json!(5),
        _ => return None,
    })
}

/// A component schema's properties, through the `allOf` that a flattened struct makes.
fn properties(doc: &Value, schema: &str) -> serde_json::Map<String, Value> {
    let schema = &doc["components"]["schemas"][schema];
    let mut out = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        match part["$ref"].as_str() {
            Some(r) => out.extend(properties(doc, r.rsplit('/').next().unwrap())),
            None => out.extend(part["properties"].as_object().cloned().unwrap_or_default()),
        }
    }
    out
}

/// Documented fields a parser reads without refusing a wrong type, by design.
const LENIENT: &[(&str, &str, &str)] = &[
    (
        "GuardBody",
        "confidence",
        "an unusable confidence is dropped (contract 1.1)",
    ),
    (
        "PatchActionBody",
        "claim_execution",
        "a claim is all or nothing: INVALID_EXECUTION_CLAIM",
    ),
    ("PatchActionBody", "attempt_id", "read by the claim only"),
    ("PatchActionBody", "agent_id", "read by the claim only"),
    ("PatchActionBody", "act", "read by the claim only"),
    (
        "PatchActionBody",
        "close_if_running",
        "a flag: only `true` counts",
    ),
    (
        "PolicyTestBody",
        "agent_id",
        "the SDK's mode: read when it is a string",
    ),
    (
        "PolicyTestBody",
        "name",
        "recipe mode only; defaults to `recipe`",
    ),
    (
        "PolicyTestBody",
        "tests",
        "recipe mode only; defaults to rules.tests",
    ),
    (
        "PolicyTestBody",
        "policy_type",
        "recipe mode needs both policy_type and rules",
    ),
    (
        "PolicyTestBody",
        "rules",
        "recipe mode needs both policy_type and rules",
    ),
    ("ScanBody", "source", "echoed when it is a string"),
];

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn every_documented_body_field_is_read_by_its_parser(pool: PgPool) {
    let api = Api::start(pool).await;
    let doc = document();
    // What each body needs besides the field tried, so that the refusal is about that field.
    let base = |schema: &str| match schema {
        "JudgeAssumptionBody" => json!({"validated": false}),
        "OutcomeReportBody" => json!({"status": "completed"}),
        "ApprovalBody" => json!({"decision": "allow"}),
        "PolicyChangeBody" => json!({"id": "gp_000000000000000000000000"}),
        _ => json!({}),
    };
    let events = api.events().await;
    let mut tried = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(reference) =
                op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
            else {
                continue;
            };
            let schema = reference.rsplit('/').next().unwrap();
            let properties = properties(&doc, schema);
            let uri = path.replace("{id}", "act_00000000000000000000000000");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for (name, property) in &properties {
                if LENIENT.iter().any(|(s, f, _)| *s == schema && f == name) {
                    continue;
                }
                let Some(wrong) = wrong_value(property) else {
                    continue;
                };
                let mut body = base(schema);
                body[name] = wrong;
                let (status, answer) = api.call(method.clone(), &uri, &api.admin, Some(body)).await;
                assert_eq!(
                    status,
                    StatusCode::BAD_REQUEST,
                    "{method} {uri} {name}: {answer}"
                );
                assert!(
                    answer.to_string().contains(name.as_str()),
                    "{method} {uri}: a wrong {name} is refused without naming it: {answer}"
                );
                tried += 1;
            }
        }
    }
    assert!(tried > 80, "{tried}");
    assert_eq!(api.events().await, events, "a refused body changes nothing");
}

//! Organizations: only the bootstrap operator creates one (its profile the first event of the
//! new org's chain, with a first admin key that works at once); an org admin sees and renames
//! only its own org and lists its keys without secrets; other orgs are not found; bad input is
//! refused and writes nothing.

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::api::{assert_client_error, Api, BOOTSTRAP};

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn the_operator_creates_orgs_and_their_admins_see_only_their_own(pool: PgPool) {
    let api = Api::start(pool).await;
    let (status, created) = api
        .post(
            "/api/orgs",
            BOOTSTRAP,
            json!({"name": "Acme Corp", "slug": "acme-corp"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["org"]["id"], "org_acme-corp");
    assert_eq!(created["org"]["name"], "Acme Corp");
    assert_eq!(created["org"]["slug"], "acme-corp");
    let acme = created["api_key"].as_str().unwrap().to_owned();
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE org_id = 'org_acme-corp' ORDER BY ledger_seq",
    )
    .fetch_all(&api.pool)
    .await
    .unwrap();
    assert_eq!(events, ["OrgProfileChanged", "ApiKeyIssued"]);

    // The new admin key works at once, in its own org only.
    let (status, mine) = api.get("/api/orgs", &acme).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["orgs"].as_array().unwrap().len(), 1);
    assert_eq!(mine["orgs"][0]["id"], "org_acme-corp");
    let (status, keys) = api.get("/api/orgs/org_acme-corp/keys", &acme).await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    let listed = keys["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["role"], "admin");
    assert!(!keys.to_string().contains(&acme), "a secret was listed");
    assert!(!keys.to_string().contains("hash"), "{keys}");

    // Renamed by its admin: the slug and id stay.
    let (status, renamed) = api
        .call(
            Method::PATCH,
            "/api/orgs/org_acme-corp",
            &acme,
            Some(json!({"name": "Acme Corp v2"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["org"]["name"], "Acme Corp v2");
    assert_eq!(renamed["org"]["slug"], "acme-corp");
    let (_, read) = api.get("/api/orgs/org_acme-corp", &acme).await;
    assert_eq!(read["org"]["name"], "Acme Corp v2");

    // Other orgs are not found, whichever way they are asked for.
    for uri in ["/api/orgs/org_acme-corp", "/api/orgs/org_acme-corp/keys"] {
        let (status, body) = api.get(uri, &api.admin).await;
        assert_client_error(status, &body, StatusCode::NOT_FOUND);
    }
    let (status, body) = api
        .call(
            Method::PATCH,
            "/api/orgs/org_default",
            &acme,
            Some(json!({"name": "mine now"})),
        )
        .await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = api.get("/api/orgs/org_nowhere", BOOTSTRAP).await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND);

    // The default org has no profile until it is named; the operator sees every org.
    let (_, default) = api.get("/api/orgs/org_default", &api.admin).await;
    assert_eq!(default["org"]["name"], "org_default");
    assert_eq!(default["org"]["created_at"], serde_json::Value::Null);
    let (_, all) = api.get("/api/orgs", BOOTSTRAP).await;
    let ids: Vec<&str> = all["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"org_acme-corp") && ids.contains(&"org_default"),
        "{ids:?}"
    );
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn org_refusals_write_nothing(pool: PgPool) {
    let api = Api::start(pool).await;
    let (status, _) = api
        .post(
            "/api/orgs",
            BOOTSTRAP,
            json!({"name": "Acme", "slug": "acme"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let before = api.events().await;
    let refusals = [
        (
            BOOTSTRAP,
            json!({"name": "Acme again", "slug": "acme"}),
            StatusCode::CONFLICT,
        ),
        (
            api.admin.as_str(),
            json!({"name": "Mine", "slug": "mine"}),
            StatusCode::FORBIDDEN,
        ),
        (
            api.member.as_str(),
            json!({"name": "Mine", "slug": "mine"}),
            StatusCode::FORBIDDEN,
        ),
        (
            BOOTSTRAP,
            json!({"name": "Bad", "slug": "Not A Slug"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            BOOTSTRAP,
            json!({"name": "", "slug": "empty"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            BOOTSTRAP,
            json!({"slug": "nameless"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            BOOTSTRAP,
            json!({"name": 5, "slug": "typed"}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (key, body, expected) in refusals {
        let (status, answer) = api.post("/api/orgs", key, body).await;
        assert_client_error(status, &answer, expected);
    }
    let (status, answer) = api.get("/api/orgs", &api.member).await;
    assert_client_error(status, &answer, StatusCode::FORBIDDEN);
    let (status, answer) = api
        .call(
            Method::PATCH,
            "/api/orgs/org_default",
            &api.admin,
            Some(json!({"name": "x".repeat(201)})),
        )
        .await;
    assert_client_error(status, &answer, StatusCode::BAD_REQUEST);
    assert_eq!(api.events().await, before);
}

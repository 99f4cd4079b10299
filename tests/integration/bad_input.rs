//! Every governance endpoint's bad inputs: a clear 4xx JSON error and nothing written.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::api::{assert_client_error, Api};

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn guard_without_action_type_is_refused(pool: PgPool) {
    let api = Api::start(pool).await;
    let before = api.events().await;
    let (status, body) = api
        .post("/api/guard", &api.member, json!({"declared_goal": "x"}))
        .await;
    assert_client_error(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["details"], json!(["action_type is required"]));
    assert_eq!(api.events().await, before);
}

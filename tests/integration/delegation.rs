//! Delegation constraints (what the SDK's `create_delegation_constraint` writes) are enforced:
//! a composed subagent above its delegated risk ceiling is held, its parent is not, and the
//! policy's answer says it enforces (no inert warning).

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::api::{assert_client_error, Api};

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_subagent_above_its_delegated_ceiling_is_held(pool: PgPool) {
    let api = Api::start(pool).await;
    let (status, created) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": "Delegation constraint", "policy_type": "delegation_constraint",
                   "rules": {"parent": "claude-code", "child_types": ["explore"],
                             "max_risk_score": 40}, "active": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["policy"]["inert_warning"], json!(null), "{created}");
    let guard = |agent: &'static str| {
        let api = &api;
        async move {
            let (status, answer) = api
                .post(
                    "/api/guard",
                    &api.member,
                    json!({"action_type": "read", "agent_id": agent, "risk_score": 75}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            answer
        }
    };
    let held = guard("claude-code:explore").await;
    assert_eq!(held["decision"], "require_approval", "{held}");
    assert_eq!(
        held["reasons"][0],
        "Delegation constraint: risk 75 exceeds the delegated ceiling 40 for claude-code:explore"
    );
    let parent = guard("claude-code").await;
    assert_eq!(parent["decision"], "allow", "{parent}");

    let (status, body) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": "bad", "policy_type": "delegation_constraint",
                   "rules": {"max_depth": 20}}),
        )
        .await;
    assert_client_error(status, &body, StatusCode::BAD_REQUEST);
    assert!(body.to_string().contains("max_depth"), "{body}");
}

//! Preflight plans: steps previewed through the guard (no decision recorded), reviewed once by
//! another admin (overrides make it partially approved), attested by hash; an approved step is
//! a single-use grant for its exact act (used by the execution claim), a denied step blocks
//! its act; the sweep records expiry; bad input writes nothing; other orgs find nothing.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::{assert_client_error, Api};

fn act(command: &str) -> Value {
    json!({"kind": "shell", "command": command})
}

async fn guard(api: &Api, command: &str) -> Value {
    let (status, answer) = api
        .post(
            "/api/guard",
            &api.member,
            json!({"action_type": "deploy", "agent_id": "coder", "declared_goal": "ship",
                   "act": act(command)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_reviewed_plan_grants_its_approved_steps_once_and_blocks_its_denied_ones(pool: PgPool) {
    let api = Api::start(pool).await;
    let (status, _) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": "Hold deploys", "policy_type": "require_approval",
                   "rules": {"action_types": ["deploy"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let decisions = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE aggregate_type = 'GuardDecision'",
        )
        .fetch_one(&api.pool)
        .await
        .unwrap()
    };
    let (status, submitted) = api
        .post(
            "/api/plans",
            &api.member,
            json!({"agent_id": "coder", "declared_goal": "release",
                   "steps": [
                     {"action_type": "deploy", "step_goal": "deploy staging", "act": act("make staging")},
                     {"action_type": "deploy", "step_goal": "deploy prod", "act": act("make prod")}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{submitted}");
    assert_eq!(decisions().await, 0, "previews are not decisions");
    let plan = &submitted["plan"];
    let id = plan["plan_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("pa_"), "{id}");
    assert_eq!(plan["status"], "pending");
    let steps = submitted["steps"].as_array().unwrap();
    assert_eq!(steps[0]["preview_decision"], "require_approval");
    assert_eq!(steps[0]["grant_status"], "pending");
    let (staging, prod) = (
        steps[0]["step_id"].as_str().unwrap().to_owned(),
        steps[1]["step_id"].as_str().unwrap().to_owned(),
    );

    // Not yet reviewed: attesting is refused, the guard still holds.
    let hash = plan["plan_hash"].as_str().unwrap().to_owned();
    let (status, body) = api
        .post(
            &format!("/api/plans/{id}/attest"),
            &api.member,
            json!({"plan_hash": hash}),
        )
        .await;
    assert_client_error(status, &body, StatusCode::FORBIDDEN);
    assert_eq!(
        (body["ok"].clone(), body["reason"].clone()),
        (json!(false), json!("not_reviewed"))
    );
    assert_eq!(
        guard(&api, "make staging").await["decision"],
        "require_approval"
    );

    // The submitter may not review its own plan; another admin does, denying prod.
    let (status, body) = api
        .post(
            &format!("/api/plans/{id}"),
            &api.member,
            json!({"verdict": "approve"}),
        )
        .await;
    assert_client_error(status, &body, StatusCode::FORBIDDEN);
    let (status, reviewed) = api
        .post(
            &format!("/api/plans/{id}"),
            &api.admin,
            json!({"verdict": "approve", "step_overrides": {prod.clone(): "deny"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reviewed}");
    assert_eq!(reviewed["plan"]["status"], "partially_approved");
    let (status, again) = api
        .post(
            &format!("/api/plans/{id}"),
            &api.admin,
            json!({"verdict": "deny"}),
        )
        .await;
    assert_client_error(status, &again, StatusCode::NOT_FOUND);

    let (status, attested) = api
        .post(
            &format!("/api/plans/{id}/attest"),
            &api.member,
            json!({"plan_hash": hash}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{attested}");
    assert_eq!(attested["ok"], true);
    assert_eq!(attested["approved_steps"], json!([staging]));
    let (status, wrong) = api
        .post(
            &format!("/api/plans/{id}/attest"),
            &api.member,
            json!({"plan_hash": "00"}),
        )
        .await;
    assert_client_error(status, &wrong, StatusCode::FORBIDDEN);
    assert_eq!(wrong["reason"], "hash_mismatch");

    // The approved step's exact act is allowed; another act is not; the denied one blocks.
    let granted = guard(&api, "make staging").await;
    assert_eq!(granted["decision"], "allow", "{granted}");
    assert!(granted["matched_policies"]
        .as_array()
        .unwrap()
        .contains(&json!("builtin:plan_grant")));
    assert_eq!(
        guard(&api, "make staging --force").await["decision"],
        "require_approval"
    );
    let denied = guard(&api, "make prod").await;
    assert_eq!(denied["decision"], "block", "{denied}");
    assert!(denied["matched_policies"]
        .as_array()
        .unwrap()
        .contains(&json!("builtin:plan_deny")));

    // The execution claim uses the grant: the act is held again afterwards.
    let (status, created) = api
        .post(
            "/api/actions",
            &api.member,
            json!({"agent_id": "coder", "action_type": "deploy", "declared_goal": "ship",
                   "act": act("make staging"), "client_capabilities": ["execution_claims"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["action"]["status"], "running", "{created}");
    let action = created["action_id"].as_str().unwrap().to_owned();
    let (status, claimed) = api
        .call(
            Method::PATCH,
            &format!("/api/actions/{action}"),
            &api.member,
            Some(
                json!({"claim_execution": true, "attempt_id": "attempt-000000000001",
                        "agent_id": "coder", "act": act("make staging")}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    let (_, read) = api.get(&format!("/api/plans/{id}"), &api.readonly).await;
    let step = &read["steps"][0];
    assert!(step["grant_used_at"].is_string(), "{read}");
    assert_eq!(step["matched_action_id"], action.as_str());
    assert_eq!(read["deviations"], json!([]));
    assert_eq!(
        guard(&api, "make staging").await["decision"],
        "require_approval"
    );

    // Listed; revoked; expired by the sweep once past its grants' lifetime.
    let (_, listed) = api
        .get(
            "/api/plans?status=partially_approved&agent_id=coder",
            &api.readonly,
        )
        .await;
    assert_eq!(listed["plans"].as_array().unwrap().len(), 1, "{listed}");
    api.state
        .service
        .clock()
        .advance(chrono::Duration::minutes(61));
    let (_, late) = api.get(&format!("/api/plans/{id}"), &api.readonly).await;
    assert_eq!(late["plan"]["status"], "expired");
    assert_eq!(
        api.state
            .service
            .expire_plans(&crate::support::org("org_default"))
            .await
            .unwrap(),
        1
    );
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type = 'Plan' ORDER BY ledger_seq",
    )
    .fetch_all(&api.pool)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        [
            "PlanSubmitted",
            "PlanReviewed",
            "PlanGrantUsed",
            "PlanExpired"
        ]
    );

    // Other orgs find nothing.
    for uri in [format!("/api/plans/{id}")] {
        let (status, body) = api.get(&uri, &api.other_org).await;
        assert_client_error(status, &body, StatusCode::NOT_FOUND);
    }
    let (status, body) = api
        .post(
            &format!("/api/plans/{id}/attest"),
            &api.other_org,
            json!({"plan_hash": hash}),
        )
        .await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND);
    assert_eq!(body["reason"], "not_found");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn bad_plan_input_is_refused_and_writes_nothing(pool: PgPool) {
    let api = Api::start(pool).await;
    let (_, submitted) = api
        .post(
            "/api/plans",
            &api.member,
            json!({"agent_id": "a", "declared_goal": "g",
                   "steps": [{"action_type": "build", "step_goal": "b"}]}),
        )
        .await;
    let id = submitted["plan"]["plan_id"].as_str().unwrap().to_owned();
    let before = api.events().await;
    let many: Vec<Value> = (0..26)
        .map(|_| json!({"action_type": "x", "step_goal": "y"}))
        .collect();
    let resolve = format!("/api/plans/{id}");
    for (uri, key, body, expected) in [
        (
            "/api/plans",
            &api.member,
            json!({"declared_goal": "g", "steps": [{"action_type": "x", "step_goal": "y"}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/plans",
            &api.member,
            json!({"agent_id": "a", "steps": [{"action_type": "x", "step_goal": "y"}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/plans",
            &api.member,
            json!({"agent_id": "a", "declared_goal": "g", "steps": []}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/plans",
            &api.member,
            json!({"agent_id": "a", "declared_goal": "g", "steps": [{"step_goal": "y"}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/plans",
            &api.member,
            json!({"agent_id": "a", "declared_goal": "g", "steps": [{"action_type": "x"}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/plans",
            &api.member,
            json!({"agent_id": "a", "declared_goal": "g", "steps": [{"action_type": "x", "step_goal": "y", "act": "rm"}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/plans",
            &api.member,
            json!({"agent_id": "a", "declared_goal": "g", "steps": many}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/plans",
            &api.member,
            json!({"agent_id": "a", "declared_goal": "g", "steps": [{"action_type": "x", "step_goal": "y"}], "ttl_minutes": 0}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/plans",
            &api.readonly,
            json!({"agent_id": "a", "declared_goal": "g", "steps": [{"action_type": "x", "step_goal": "y"}]}),
            StatusCode::FORBIDDEN,
        ),
        (
            resolve.as_str(),
            &api.admin,
            json!({"verdict": "maybe"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            resolve.as_str(),
            &api.admin,
            json!({"verdict": "approve", "step_overrides": {"ps_nope": "deny"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            resolve.as_str(),
            &api.admin,
            json!({"verdict": "approve", "step_overrides": {"x": 1}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            resolve.as_str(),
            &api.member,
            json!({"verdict": "approve"}),
            StatusCode::FORBIDDEN,
        ),
        (
            "/api/plans/pa_0000000000000000",
            &api.admin,
            json!({"verdict": "approve"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/plans/pa_0000000000000000/attest",
            &api.member,
            json!({"plan_hash": "x"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/plans/pa_0000000000000000/attest",
            &api.member,
            json!({}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, answer) = api.post(uri, key, body.clone()).await;
        assert_client_error(status, &answer, expected);
        assert_eq!(api.events().await, before, "{uri} {body} wrote");
    }
    let (_, cap) = api.post("/api/plans", &api.member, json!({"agent_id": "a", "declared_goal": "g", "steps": (0..26).map(|_| json!({"action_type": "x", "step_goal": "y"})).collect::<Vec<_>>()})).await;
    assert_eq!(
        cap["error"],
        "Plan exceeds the 25-step cap (PLAN_MAX_STEPS)"
    );
    for uri in ["/api/plans?status=dancing", "/api/plans?limit=x"] {
        let (status, answer) = api.get(uri, &api.member).await;
        assert_client_error(status, &answer, StatusCode::BAD_REQUEST);
    }
}

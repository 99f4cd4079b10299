//! REST and GraphQL are two adapters of one application layer: for every operation both
//! have, the same bad input (or the same wrong key) is refused with the same code, message
//! and details, and writes nothing.

use axum::http::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::Api;

/// `(code, message, details)` of a refusal, as REST's envelope or GraphQL's first error
/// shows it.
type Refusal = (Value, Value, Value);

async fn rest(api: &Api, method: Method, uri: &str, key: &str, body: Option<Value>) -> Refusal {
    let (status, body) = api.call(method, uri, key, body).await;
    assert!(status.is_client_error(), "{status} {body}");
    (
        body["code"].clone(),
        body["error"].clone(),
        body.get("details").cloned().unwrap_or(Value::Null),
    )
}

async fn graphql(api: &Api, key: &str, query: &str, variables: Value) -> Refusal {
    let (_, body) = api
        .post(
            "/graphql",
            key,
            json!({"query": query, "variables": variables}),
        )
        .await;
    let error = &body["errors"][0];
    assert!(error.is_object(), "{body}");
    (
        error["extensions"]["code"].clone(),
        error["message"].clone(),
        error["extensions"]
            .get("details")
            .cloned()
            .unwrap_or(Value::Null),
    )
}

const CREATE: &str = "mutation($p: PolicyInput!) { createPolicy(input: $p) { id } }";
const UPDATE: &str =
    "mutation($id: String!, $p: PolicyPatch!) { updatePolicy(id: $id, patch: $p) { id } }";

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn rest_and_graphql_refuse_the_same_policies_alike(pool: PgPool) {
    let api = Api::start(pool).await;
    let rules = json!({"action_types": ["deploy"]});
    let many: Vec<String> = (0..101).map(|i| format!("agent-{i}")).collect();
    let events = api.events().await;
    for (case, rest_body, gql_input) in [
        (
            "empty name",
            json!({"name": "", "policy_type": "block_action_type", "rules": rules}),
            json!({"name": "", "policyType": "block_action_type", "rules": rules}),
        ),
        (
            "long name",
            json!({"name": "n".repeat(257), "policy_type": "block_action_type", "rules": rules}),
            json!({"name": "n".repeat(257), "policyType": "block_action_type", "rules": rules}),
        ),
        (
            "too many agents",
            json!({"name": "g", "policy_type": "block_action_type", "rules": rules, "agent_ids": many}),
            json!({"name": "g", "policyType": "block_action_type", "rules": rules, "agentIds": many}),
        ),
        (
            "rules of the wrong shape for the type",
            json!({"name": "g", "policy_type": "risk_threshold", "rules": {"threshold": 150}}),
            json!({"name": "g", "policyType": "risk_threshold", "rules": {"threshold": 150}}),
        ),
        (
            "rules not an object",
            json!({"name": "g", "policy_type": "block_action_type", "rules": 5}),
            json!({"name": "g", "policyType": "block_action_type", "rules": 5}),
        ),
    ] {
        let r = rest(
            &api,
            Method::POST,
            "/api/policies",
            &api.admin,
            Some(rest_body),
        )
        .await;
        let g = graphql(&api, &api.admin, CREATE, json!({"p": gql_input})).await;
        assert_eq!(r, g, "{case}");
        assert_eq!(r.0, "VALIDATION_FAILED", "{case}");
    }
    // The wrong keys, alike.
    let input = json!({"name": "g", "policyType": "block_action_type", "rules": rules});
    let body = json!({"name": "g", "policy_type": "block_action_type", "rules": rules});
    for key in [&api.member, &api.readonly] {
        let r = rest(&api, Method::POST, "/api/policies", key, Some(body.clone())).await;
        let g = graphql(&api, key, CREATE, json!({"p": input})).await;
        assert_eq!(r, g);
        assert_eq!(r.0, "FORBIDDEN");
    }
    assert_eq!(api.events().await, events, "nothing refused was written");

    // Changes and removals of a policy that does not exist, and a bad change.
    let unknown = "gp_0000000000000000";
    let r = rest(
        &api,
        Method::PATCH,
        "/api/policies",
        &api.admin,
        Some(json!({"id": unknown, "name": "x"})),
    )
    .await;
    let g = graphql(
        &api,
        &api.admin,
        UPDATE,
        json!({"id": unknown, "p": {"name": "x"}}),
    )
    .await;
    assert_eq!(r, g);
    assert_eq!(r.0, "NOT_FOUND");
    let r = rest(
        &api,
        Method::PATCH,
        "/api/policies",
        &api.admin,
        Some(json!({"id": unknown, "name": "n".repeat(257)})),
    )
    .await;
    let g = graphql(
        &api,
        &api.admin,
        UPDATE,
        json!({"id": unknown, "p": {"name": "n".repeat(257)}}),
    )
    .await;
    assert_eq!(r, g);
    assert_eq!(r.0, "VALIDATION_FAILED");
    let r = rest(
        &api,
        Method::DELETE,
        &format!("/api/policies?id={unknown}"),
        &api.admin,
        None,
    )
    .await;
    let g = graphql(
        &api,
        &api.admin,
        "mutation($id: String!) { deletePolicy(id: $id) }",
        json!({"id": unknown}),
    )
    .await;
    assert_eq!(r, g);
    assert_eq!(api.events().await, events, "nothing refused was written");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn rest_and_graphql_refuse_the_same_halts_and_approvals_alike(pool: PgPool) {
    let api = Api::start(pool).await;
    let events = api.events().await;
    let halt = "mutation($h: Boolean!, $r: String) { setHalt(halted: $h, reason: $r) { halted } }";
    let long = "r".repeat(1001);
    let r = rest(
        &api,
        Method::POST,
        "/api/halt",
        &api.admin,
        Some(json!({"halted": true, "reason": long})),
    )
    .await;
    let g = graphql(&api, &api.admin, halt, json!({"h": true, "r": long})).await;
    assert_eq!(r, g);
    assert_eq!(r.0, "VALIDATION_FAILED");
    for key in [&api.member, &api.readonly] {
        let r = rest(
            &api,
            Method::POST,
            "/api/halt",
            key,
            Some(json!({"halted": true})),
        )
        .await;
        let g = graphql(&api, key, halt, json!({"h": true})).await;
        assert_eq!(r, g);
    }

    // Approvals: an action that does not exist, the wrong keys, and nobody approves their
    // own action.
    let approve = "mutation($id: String!) { approve(actionId: $id) { actionId } }";
    let deny = "mutation($id: String!) { deny(actionId: $id) { actionId } }";
    let unknown = "act_nope";
    for (query, decision) in [(approve, "allow"), (deny, "deny")] {
        for key in [&api.admin, &api.member, &api.readonly] {
            let r = rest(
                &api,
                Method::POST,
                &format!("/api/actions/{unknown}/approve"),
                key,
                Some(json!({"decision": decision})),
            )
            .await;
            let g = graphql(&api, key, query, json!({"id": unknown})).await;
            assert_eq!(r, g, "{decision} by {key}");
        }
    }
    assert_eq!(api.events().await, events, "nothing refused was written");
    let (_, _) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": "gate", "policy_type": "require_approval",
                   "rules": {"action_types": ["deploy"]}}),
        )
        .await;
    let (_, held) = api
        .post(
            "/api/actions",
            &api.admin,
            json!({"agent_id": "a", "action_type": "deploy", "declared_goal": "ship"}),
        )
        .await;
    let id = held["action_id"].as_str().unwrap().to_owned();
    let events = api.events().await;
    let r = rest(
        &api,
        Method::POST,
        &format!("/api/actions/{id}/approve"),
        &api.admin,
        Some(json!({"decision": "allow"})),
    )
    .await;
    let g = graphql(&api, &api.admin, approve, json!({"id": id})).await;
    assert_eq!(r, g);
    assert_eq!(r.0, "SELF_APPROVAL_FORBIDDEN");
    assert_eq!(api.events().await, events, "nothing refused was written");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn rest_and_graphql_refuse_the_same_simulations_alike(pool: PgPool) {
    let api = Api::start(pool).await;
    let simulate = "query($t: String!, $r: JSON!, $d: Int) {
        simulatePolicy(policyType: $t, rules: $r, days: $d) { sampleSize } }";
    for (days, rules) in [
        (json!(365), json!({"action_types": ["x"]})),
        (json!(0), json!({"action_types": ["x"]})),
        (json!(7), json!({"threshold": 150})),
    ] {
        let r = rest(
            &api,
            Method::POST,
            "/api/policies/simulate",
            &api.readonly,
            Some(json!({"policy_type": if rules.get("threshold").is_some() { "risk_threshold" } else { "block_action_type" }, "rules": rules, "days": days})),
        )
        .await;
        let t = if rules.get("threshold").is_some() {
            "risk_threshold"
        } else {
            "block_action_type"
        };
        let g = graphql(
            &api,
            &api.readonly,
            simulate,
            json!({"t": t, "r": rules, "d": days}),
        )
        .await;
        assert_eq!(r, g, "days {days}, rules {rules}");
        assert_eq!(r.0, "VALIDATION_FAILED");
    }
}

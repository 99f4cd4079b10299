//! GraphQL over the real router and a real database: queries, auth, limits, GraphiQL, and the
//! committed SDL (`api/schema.graphql`; regenerate with `UPDATE_SCHEMA=1 tests/run graphql`).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;

use crate::api::Api;

async fn graphql(api: &Api, key: &str, query: &str, variables: Value) -> (StatusCode, Value) {
    api.post(
        "/graphql",
        key,
        json!({"query": query, "variables": variables}),
    )
    .await
}

#[test]
fn the_committed_sdl_matches_the_schema() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let sdl = dashclaw::graphql::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &sdl).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == sdl,
        "api/schema.graphql is out of date: run `UPDATE_SCHEMA=1 tests/run graphql` and commit it"
    );
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn decisions_are_queried_with_filters_history_and_their_guard_decision(pool: PgPool) {
    let api = Api::start(pool).await;
    api.post(
        "/api/policies",
        &api.admin,
        json!({"name": "hold deploys", "policy_type": "require_approval", "rules": {"action_types": ["deploy"]}}),
    )
    .await;
    let mut ids = Vec::new();
    for (agent, kind) in [("a", "deploy"), ("a", "build"), ("b", "build")] {
        let (_, created) = api
            .post(
                "/api/actions",
                &api.member,
                json!({"agent_id": agent, "action_type": kind, "declared_goal": format!("{kind} by {agent}")}),
            )
            .await;
        ids.push(created["action_id"].as_str().unwrap().to_owned());
    }
    api.post(
        &format!("/api/actions/{}/approve", ids[0]),
        &api.admin,
        json!({"decision": "allow"}),
    )
    .await;

    let query = "query($f: DecisionFilter) { decisions(first: 10, filter: $f) {
        edges { cursor node { actionId agentId status riskScore
          record { actionId orgId approvedBy approvedAt guardVerdict executionProtocol outcomeProgress }
          history { ledgerSeq eventType hash }
          guardDecision { decision policySetVersion matchedPolicies
            request { actionType agentId } riskBreakdown { baseScore final modifiers { factor } } } } }
        pageInfo { hasNextPage } } }";
    let (status, body) = graphql(&api, &api.readonly, query, json!({"f": {"agentId": "a"}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    let edges = body["data"]["decisions"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    let deploy = edges
        .iter()
        .find(|e| e["node"]["actionId"] == ids[0])
        .unwrap();
    assert_eq!(deploy["node"]["status"], "running");
    // The whole row, typed: the same fields as REST's action row, in camelCase.
    let record = &deploy["node"]["record"];
    assert_eq!(record["actionId"], ids[0]);
    assert_eq!(record["orgId"], "org_default");
    assert_eq!(record["guardVerdict"], "require_approval");
    assert!(record["approvedBy"].is_string(), "{record}");
    assert!(record["approvedAt"].is_string(), "{record}");
    assert_eq!(record["executionProtocol"], 1);
    assert!(record["outcomeProgress"].is_null(), "{record}");
    let history: Vec<_> = deploy["node"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["eventType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(history, ["ActionRecorded", "ActionApprovalGranted"]);
    assert_eq!(
        deploy["node"]["guardDecision"]["decision"],
        "require_approval"
    );
    assert_eq!(
        deploy["node"]["guardDecision"]["request"]["actionType"],
        "deploy"
    );
    let breakdown = &deploy["node"]["guardDecision"]["riskBreakdown"];
    assert!(breakdown["final"].as_i64().is_some(), "{breakdown}");
    assert_eq!(
        breakdown["final"], deploy["node"]["riskScore"],
        "{breakdown}"
    );

    let (_, held) = graphql(
        &api,
        &api.member,
        query,
        json!({"f": {"status": "running", "actionType": "deploy", "riskMin": 0, "riskMax": 100}}),
    )
    .await;
    assert_eq!(
        held["data"]["decisions"]["edges"].as_array().unwrap().len(),
        1,
        "{held}"
    );

    // Paging: one at a time, then after the first cursor.
    let page = "query($a: String) { decisions(first: 1, after: $a) { edges { cursor node { actionId } } pageInfo { hasNextPage } } }";
    let (_, first) = graphql(&api, &api.member, page, json!({"a": null})).await;
    assert_eq!(first["data"]["decisions"]["pageInfo"]["hasNextPage"], true);
    let cursor = first["data"]["decisions"]["edges"][0]["cursor"].clone();
    let (_, second) = graphql(&api, &api.member, page, json!({"a": cursor})).await;
    assert_ne!(
        second["data"]["decisions"]["edges"][0]["node"]["actionId"],
        first["data"]["decisions"]["edges"][0]["node"]["actionId"]
    );

    let (_, more) = graphql(
        &api,
        &api.member,
        "{ approvals { actionId } policies { name policyType } guardDecisions(first: 10) { decision }
           ledgerEvents(first: 3) { ledgerSeq prevHash hash } checkpoints { size }
           agents { agentId actions } posture { score summary { totalUnits } }
           analytics(days: 7) { totals { actions } } }",
        json!({}),
    )
    .await;
    assert!(more.get("errors").is_none(), "{more}");
    assert_eq!(
        more["data"]["policies"][0]["policyType"],
        "require_approval"
    );
    assert_eq!(more["data"]["guardDecisions"].as_array().unwrap().len(), 3);
    assert_eq!(more["data"]["ledgerEvents"][0]["ledgerSeq"], 1);
    assert_eq!(
        more["data"]["agents"][0],
        json!({"agentId": "a", "actions": 2})
    );
    assert_eq!(more["data"]["posture"]["summary"]["totalUnits"], 2);
    assert_eq!(more["data"]["analytics"]["totals"]["actions"], 3);

    // Simulation replays the recorded requests under a proposed policy, changing nothing.
    let events = api.events().await;
    let simulate = "query($t: String!, $r: JSON!, $d: Int) {
        simulatePolicy(policyType: $t, rules: $r, days: $d) {
          summary { total matches block } matches { actionId simulatedAction } } }";
    let (_, fires) = graphql(
        &api,
        &api.readonly,
        simulate,
        json!({"t": "block_action_type", "r": {"action_types": ["build"]}}),
    )
    .await;
    let summary = &fires["data"]["simulatePolicy"]["summary"];
    assert_eq!(
        (summary["total"].as_i64(), summary["block"].as_i64()),
        (Some(3), Some(2)),
        "{fires}"
    );
    let (_, never) = graphql(
        &api,
        &api.readonly,
        simulate,
        json!({"t": "block_action_type", "r": {"action_types": ["nothing_like_it"]}}),
    )
    .await;
    assert_eq!(
        never["data"]["simulatePolicy"]["summary"]["matches"], 0,
        "{never}"
    );
    let (_, bad) = graphql(
        &api,
        &api.readonly,
        simulate,
        json!({"t": "block_action_type", "r": {"action_types": ["x"]}, "d": 365}),
    )
    .await;
    assert_eq!(
        bad["errors"][0]["extensions"]["code"], "VALIDATION_FAILED",
        "{bad}"
    );
    let (_, unknown) = graphql(
        &api,
        &api.readonly,
        simulate,
        json!({"t": "nonsense", "r": {}}),
    )
    .await;
    // Unknown types are stored inert (contract): they would have decided nothing.
    assert_eq!(
        unknown["data"]["simulatePolicy"]["summary"]["matches"], 0,
        "{unknown}"
    );
    assert_eq!(api.events().await, events, "simulation wrote nothing");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn graphql_needs_a_key_limits_depth_and_serves_graphiql(pool: PgPool) {
    let api = Api::start(pool).await;
    let (status, body) = graphql(&api, "oc_live_nope", "{ policies { id } }", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "UNAUTHORIZED",
        "{body}"
    );
    assert_eq!(
        body["errors"][0]["message"],
        "Unauthorized - Invalid or missing API key"
    );

    let (_, other) = graphql(
        &api,
        &api.other_org,
        "{ decisions(first: 5) { edges { node { actionId } } } }",
        json!({}),
    )
    .await;
    assert_eq!(other["data"]["decisions"]["edges"], json!([]));

    let deep = "{ decisions { edges { node { history { payload } guardDecision { request { actionType } } } } } }";
    let (_, ok) = graphql(&api, &api.member, deep, json!({})).await;
    assert!(ok.get("errors").is_none(), "{ok}");
    let too_deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } }";
    let (_, refused) = graphql(&api, &api.member, too_deep, json!({})).await;
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nested too deep"),
        "{refused}"
    );

    let page = api
        .router
        .clone()
        .oneshot(Request::get("/graphql").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = axum::body::to_bytes(page.into_body(), 1 << 20)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&html).contains("graphiql"));
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn operators_mutate_through_the_same_commands_as_rest(pool: PgPool) {
    let api = Api::start(pool).await;
    let create =
        "mutation($i: PolicyInput!) { createPolicy(input: $i) { id name policyType active } }";
    let input = json!({"i": {"name": "hold deploys", "policyType": "require_approval", "rules": {"action_types": ["deploy"]}}});
    let (_, refused) = graphql(&api, &api.readonly, create, input.clone()).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let (_, refused) = graphql(&api, &api.member, create, input.clone()).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    let (_, created) = graphql(&api, &api.admin, create, input.clone()).await;
    let policy_id = created["data"]["createPolicy"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, duplicate) = graphql(&api, &api.admin, create, input).await;
    assert_eq!(
        duplicate["errors"][0]["extensions"]["code"], "CONFLICT",
        "{duplicate}"
    );

    let (_, held) = api
        .post(
            "/api/actions",
            &api.member,
            json!({"agent_id": "a", "action_type": "deploy", "declared_goal": "ship"}),
        )
        .await;
    let id = held["action_id"].as_str().unwrap().to_owned();
    let approve = "mutation($id: String!) { approve(actionId: $id, reasoning: \"ok\") { status approvedBy history { eventType } } }";
    let (_, approved) = graphql(&api, &api.admin, approve, json!({"id": id})).await;
    assert!(approved.get("errors").is_none(), "{approved}");
    assert_eq!(approved["data"]["approve"]["status"], "running");
    assert_eq!(
        approved["data"]["approve"]["history"][1]["eventType"],
        "ActionApprovalGranted"
    );
    let (_, again) = graphql(&api, &api.admin, approve, json!({"id": id})).await;
    assert_eq!(
        again["errors"][0]["extensions"]["code"], "NOT_PENDING_APPROVAL",
        "{again}"
    );

    let update =
        "mutation($id: String!) { updatePolicy(id: $id, patch: {active: false}) { active } }";
    let (_, updated) = graphql(&api, &api.admin, update, json!({"id": policy_id})).await;
    assert_eq!(
        updated["data"]["updatePolicy"]["active"], false,
        "{updated}"
    );
    let (_, deleted) = graphql(
        &api,
        &api.admin,
        "mutation($id: String!) { deletePolicy(id: $id) }",
        json!({"id": policy_id}),
    )
    .await;
    assert_eq!(deleted["data"]["deletePolicy"], true, "{deleted}");

    let (_, halted) = graphql(
        &api,
        &api.admin,
        "mutation { setHalt(halted: true, reason: \"drill\") { halted reason } }",
        json!({}),
    )
    .await;
    assert_eq!(halted["data"]["setHalt"]["halted"], true, "{halted}");
    let (_, blocked) = api
        .post(
            "/api/guard",
            &api.member,
            json!({"action_type": "research", "agent_id": "a"}),
        )
        .await;
    assert_eq!(blocked["decision"], "block", "{blocked}");
}

/// The next JSON message of a WebSocket (failing the test after 10 s).
pub async fn next_message<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("no message within 10 s")
            .expect("the socket closed")
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] != "ping" && value["type"] != "ka" {
                return value;
            }
        }
    }
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn subscriptions_push_ledger_events_and_the_approvals_queue_over_websocket(pool: PgPool) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let api = Api::start(pool).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(dashclaw::server::serve(
        listener,
        api.state.clone(),
        std::future::pending(),
    ));
    api.post(
        "/api/policies",
        &api.admin,
        json!({"name": "hold deploys", "policy_type": "require_approval", "rules": {"action_types": ["deploy"]}}),
    )
    .await;

    let mut request = format!("ws://{address}/graphql/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    request
        .headers_mut()
        .insert("x-api-key", api.readonly.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"type": "connection_init", "payload": {}})))
        .await
        .unwrap();
    assert_eq!(next_message(&mut ws).await["type"], "connection_ack");
    ws.send(send(json!({"id": "q", "type": "subscribe",
        "payload": {"query": "subscription { approvalsQueue { actionId status } }"}})))
        .await
        .unwrap();
    let first = next_message(&mut ws).await;
    assert_eq!(
        first["payload"]["data"]["approvalsQueue"],
        json!([]),
        "{first}"
    );
    ws.send(send(json!({"id": "l", "type": "subscribe",
        "payload": {"query": "subscription { ledger { ledgerSeq name data } }"}})))
        .await
        .unwrap();
    // Both subscriptions listen to the ledger tail once they run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while api
        .state
        .service
        .tail()
        .subscribers_of(&dashclaw_events::OrgId::new("org_default").unwrap())
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the subscriptions never started"
        );
        tokio::task::yield_now().await;
    }

    let (_, held) = api
        .post(
            "/api/actions",
            &api.member,
            json!({"agent_id": "a", "action_type": "deploy", "declared_goal": "ship"}),
        )
        .await;
    let id = held["action_id"].as_str().unwrap().to_owned();
    let mut queue = None;
    let mut created = None;
    while queue.is_none() || created.is_none() {
        let message = next_message(&mut ws).await;
        assert_eq!(message["type"], "next", "{message}");
        let data = &message["payload"]["data"];
        if message["id"] == "q" {
            if data["approvalsQueue"]
                .as_array()
                .is_some_and(|q| !q.is_empty())
            {
                queue = Some(data["approvalsQueue"].clone());
            }
        } else if data["ledger"]["name"] == "action.created" {
            created = Some(data["ledger"].clone());
        }
    }
    assert_eq!(
        queue.unwrap(),
        json!([{"actionId": id, "status": "pending_approval"}])
    );
    assert_eq!(created.unwrap()["data"]["action_id"], id);
    server.abort();
}

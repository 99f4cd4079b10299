//! The governance loop's guarantees under concurrency and time: one action per idempotency
//! key, exactly one outcome and one claim among racing writers, expiry that nothing can
//! release, and a verifiable chain afterwards.

use axum::http::StatusCode;
use futures_util::future::join_all;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::Api;
use crate::support::{dashclaw_async, url_of};

async fn count(api: &Api, aggregate_type: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = $1")
        .bind(aggregate_type)
        .fetch_one(&api.pool)
        .await
        .unwrap()
}

async fn policy(api: &Api, policy_type: &str, rules: Value) {
    let (status, body) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": format!("{policy_type} policy"), "policy_type": policy_type, "rules": rules}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn create(api: &Api, key: &str, body: Value) -> Value {
    let (status, body) = api.post("/api/actions", key, body).await;
    assert!(status.is_success(), "{status}: {body}");
    body
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_thousand_identical_creates_make_one_action(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let body = json!({
        "agent_id": "agent-1", "action_type": "deploy", "declared_goal": "ship it",
        "idempotency_key": "k-1",
    });
    let answers =
        join_all((0..1000).map(|_| api.post("/api/actions", &api.member, body.clone()))).await;
    let created = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let replays = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::OK && b["idempotent_replay"] == true)
        .count();
    assert_eq!((created, replays), (1, 999));
    let ids: std::collections::BTreeSet<_> = answers
        .iter()
        .map(|(_, b)| b["action_id"].to_string())
        .collect();
    assert_eq!(ids.len(), 1, "every answer names the same action");
    assert_eq!(count(&api, "Action").await, 1);

    let verify = dashclaw_async(&url_of(&pool).await, &["verify"]).await;
    assert!(verify.status.success(), "{verify:?}");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn racing_outcome_reporters_have_exactly_one_winner(pool: PgPool) {
    let api = Api::start(pool).await;
    let created = create(
        &api,
        &api.member,
        json!({"agent_id": "a", "action_type": "build", "declared_goal": "g"}),
    )
    .await;
    let id = created["action_id"].as_str().unwrap().to_owned();
    let uri = format!("/api/actions/{id}/outcome");
    let reports = (0..64).map(|i| {
        let status = if i % 2 == 0 { "completed" } else { "failed" };
        api.post(
            &uri,
            &api.member,
            json!({"status": status, "error_message": "e"}),
        )
    });
    let answers = join_all(reports).await;
    let won = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let refused = answers
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["current_status"].is_string())
        .count();
    assert_eq!((won, refused), (1, 63));
    assert_eq!(
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE event_type = 'ActionOutcomeReported'"
        )
        .fetch_one(&api.pool)
        .await
        .unwrap(),
        1
    );
}

fn claim_body(attempt: usize) -> Value {
    json!({"claim_execution": true, "attempt_id": format!("attempt-{attempt:012}"), "agent_id": "a", "act": {"kind": "shell", "command": "ls"}})
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn racing_claims_have_exactly_one_winner(pool: PgPool) {
    let api = Api::start(pool).await;
    let created = create(
        &api,
        &api.member,
        json!({"agent_id": "a", "action_type": "build", "declared_goal": "g", "act": {"kind": "shell", "command": "ls"}}),
    )
    .await;
    let uri = format!("/api/actions/{}", created["action_id"].as_str().unwrap());
    let answers = join_all((0..32).map(|i| {
        api.call(
            axum::http::Method::PATCH,
            &uri,
            &api.member,
            Some(claim_body(i)),
        )
    }))
    .await;
    let won: Vec<_> = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert_eq!(won[0].1["claimed"], true);
    assert!(answers
        .iter()
        .filter(|(s, _)| *s != StatusCode::OK)
        .all(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == "EXECUTION_CLAIM_CONFLICT"));
    // A claim must come from the principal that recorded the action.
    let other = create(
        &api,
        &api.member,
        json!({"agent_id": "a", "action_type": "build", "declared_goal": "g2", "act": {"kind": "shell", "command": "ls"}}),
    )
    .await;
    let uri = format!("/api/actions/{}", other["action_id"].as_str().unwrap());
    let (status, _) = api
        .call(
            axum::http::Method::PATCH,
            &uri,
            &api.admin,
            Some(claim_body(99)),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn an_expired_approval_releases_nothing(pool: PgPool) {
    let api = Api::start(pool).await;
    policy(
        &api,
        "require_approval",
        json!({"action_types": ["deploy"]}),
    )
    .await;
    let created = create(
        &api,
        &api.member,
        json!({"agent_id": "a", "action_type": "deploy", "declared_goal": "g", "approval_wait_seconds": 5}),
    )
    .await;
    assert_eq!(created["action"]["status"], "pending_approval");
    let id = created["action_id"].as_str().unwrap().to_owned();

    // 5 s wait + 15 min grace, then a little more.
    api.state
        .service
        .clock()
        .advance(chrono::Duration::seconds(5 + 15 * 60 + 1));
    let (status, body) = api
        .post(
            &format!("/api/actions/{id}/approve"),
            &api.admin,
            json!({"decision": "allow"}),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert_eq!(body["code"], "APPROVAL_EXPIRED");
    assert_eq!(body["action"]["status"], "expired");
    let (status, _) = api
        .post(
            &format!("/api/actions/{id}/approve"),
            &api.admin,
            json!({"decision": "allow"}),
        )
        .await;
    assert_eq!(status, StatusCode::GONE);

    let (status, body) = api
        .post(
            &format!("/api/actions/{id}/outcome"),
            &api.member,
            json!({"status": "completed"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["current_status"], "expired");
    let (status, _) = api
        .call(
            axum::http::Method::PATCH,
            &format!("/api/actions/{id}"),
            &api.member,
            Some(claim_body(1)),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, read) = api.get(&format!("/api/actions/{id}"), &api.member).await;
    assert_eq!(read["action"]["status"], "expired");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn the_pending_queue_shows_overdue_approvals_as_expired_and_reads_write_nothing(
    pool: PgPool,
) {
    let api = Api::start(pool).await;
    policy(
        &api,
        "require_approval",
        json!({"action_types": ["deploy"]}),
    )
    .await;
    create(&api, &api.member, json!({"agent_id": "a", "action_type": "deploy", "declared_goal": "old", "approval_wait_seconds": 5})).await;
    api.state
        .service
        .clock()
        .advance(chrono::Duration::minutes(30));
    create(
        &api,
        &api.member,
        json!({"agent_id": "a", "action_type": "deploy", "declared_goal": "new"}),
    )
    .await;
    let goals = |body: &Value| -> Vec<Value> {
        body["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["declared_goal"].clone())
            .collect()
    };
    let (_, queue) = api
        .get("/api/actions?status=pending_approval", &api.admin)
        .await;
    assert_eq!(goals(&queue), vec![json!("new")]);
    assert_eq!(queue["total"], 1, "{queue}");
    let (_, expired) = api.get("/api/actions?status=expired", &api.admin).await;
    assert_eq!(goals(&expired), vec![json!("old")]);
    assert_eq!(expired["actions"][0]["status"], "expired", "{expired}");
    let (_, others) = api
        .get("/api/actions?exclude_status=expired", &api.admin)
        .await;
    assert_eq!(goals(&others), vec![json!("new")]);
    let expiries = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE event_type = 'ActionApprovalExpired'",
        )
        .fetch_one(&api.pool)
        .await
        .unwrap()
    };
    assert_eq!(count(&api, "Action").await, 2, "reads recorded nothing");
    assert_eq!(expiries().await, 0);
    // The sweep records the expiry, once.
    api.state
        .service
        .projections()
        .catch_up_all()
        .await
        .unwrap();
    let sweeps = crate::sweeps::sweeps_of(&api, dashclaw_sweeps::Settings::default()).await;
    assert_eq!(sweeps.expired_approvals().await.unwrap(), 1);
    assert_eq!(expiries().await, 1);
    let (_, expired) = api.get("/api/actions?status=expired", &api.admin).await;
    assert_eq!(goals(&expired), vec![json!("old")]);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn an_approved_claim_must_come_within_fifteen_minutes(pool: PgPool) {
    let api = Api::start(pool).await;
    policy(
        &api,
        "require_approval",
        json!({"action_types": ["deploy"]}),
    )
    .await;
    let act = json!({"kind": "shell", "command": "deploy"});
    let created = create(
        &api,
        &api.member,
        json!({"agent_id": "a", "action_type": "deploy", "declared_goal": "g", "act": act}),
    )
    .await;
    let id = created["action_id"].as_str().unwrap().to_owned();
    let (status, _) = api
        .post(
            &format!("/api/actions/{id}/approve"),
            &api.admin,
            json!({"decision": "allow"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    api.state
        .service
        .clock()
        .advance(chrono::Duration::minutes(16));
    let mut claim = claim_body(1);
    claim["act"] = act;
    let (status, body) = api
        .call(
            axum::http::Method::PATCH,
            &format!("/api/actions/{id}"),
            &api.member,
            Some(claim),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn policy_and_halt_changes_apply_to_the_next_decision(pool: PgPool) {
    let api = Api::start(pool).await;
    let guard = json!({"action_type": "deploy", "declared_goal": "ship", "agent_id": "a"});
    let (_, first) = api.post("/api/guard", &api.member, guard.clone()).await;
    assert_eq!(first["decision"], "allow");
    policy(
        &api,
        "block_action_type",
        json!({"action_types": ["deploy"]}),
    )
    .await;
    let (_, second) = api.post("/api/guard", &api.member, guard.clone()).await;
    assert_eq!(second["decision"], "block");
    assert_ne!(first["policy_set_version"], second["policy_set_version"]);

    let (status, _) = api
        .post(
            "/api/halt",
            &api.admin,
            json!({"halted": true, "reason": "incident"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let research = json!({"action_type": "research", "agent_id": "a"});
    let (_, halted) = api.post("/api/guard", &api.member, research.clone()).await;
    assert_eq!(halted["decision"], "block");
    assert!(
        halted["reason"].as_str().unwrap().contains("incident"),
        "{halted}"
    );
    api.post("/api/halt", &api.admin, json!({"halted": false}))
        .await;
    let (_, resumed) = api.post("/api/guard", &api.member, research).await;
    assert_eq!(resumed["decision"], "allow");
}

/// Reads an SSE body until `done` holds for what arrived (or fails after 10 s).
async fn read_until(
    body: &mut axum::body::BodyDataStream,
    seen: &mut String,
    done: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done(seen) {
        let chunk = tokio::time::timeout_at(deadline, futures_util::StreamExt::next(body))
            .await
            .unwrap_or_else(|_| panic!("the stream did not deliver in time; got: {seen}"))
            .expect("the stream ended")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

async fn open_stream(api: &Api, last_event_id: Option<&str>) -> axum::body::BodyDataStream {
    use tower::ServiceExt;
    let mut request = axum::http::Request::get("/api/stream").header("x-api-key", &api.member);
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = api
        .router
        .clone()
        .oneshot(request.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        response.headers()
    );
    response.into_body().into_data_stream()
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn the_stream_replays_from_last_event_id_then_pushes_live_events(pool: PgPool) {
    let mut config = dashclaw::server::Config::new(Some(crate::api::BOOTSTRAP));
    config.heartbeat = std::time::Duration::from_millis(50);
    let api = Api::with_config(pool, config).await;
    policy(
        &api,
        "require_approval",
        json!({"action_types": ["deploy"]}),
    )
    .await;
    let held = create(
        &api,
        &api.member,
        json!({"agent_id": "a", "action_type": "deploy", "declared_goal": "g"}),
    )
    .await;
    let id = held["action_id"].as_str().unwrap().to_owned();

    // Replay: everything after event 0 of the org, then `connected`.
    let mut replayed = open_stream(&api, Some("0")).await;
    let mut seen = String::new();
    read_until(&mut replayed, &mut seen, |s| s.contains("event: connected")).await;
    assert!(seen.contains("event: action.created"), "{seen}");
    assert!(seen.contains(&id), "{seen}");
    assert!(seen.contains("event: guard.decision.created"), "{seen}");
    assert!(seen.contains("\"replayed\":"), "{seen}");
    // Frames are padded so that 4 KiB blocking readers see them at once.
    assert!(seen.len() > 4096 * 3, "{}", seen.len());
    drop(replayed);

    // Live: an approval made after connecting arrives as action.updated with approved_by.
    let mut live = open_stream(&api, None).await;
    let mut seen = String::new();
    read_until(&mut live, &mut seen, |s| s.contains("event: connected")).await;
    let (status, _) = api
        .post(
            &format!("/api/actions/{id}/approve"),
            &api.admin,
            json!({"decision": "allow"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    read_until(&mut live, &mut seen, |s| {
        s.contains("event: action.updated")
    })
    .await;
    let frame = seen
        .split("\n\n")
        .find(|f| f.contains("event: action.updated"))
        .unwrap();
    let data: Value = serde_json::from_str(
        frame
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(data["action_id"], id);
    assert_eq!(data["status"], "running");
    assert!(data["approved_by"].as_str().unwrap().starts_with("key_"));
    // Heartbeats keep the connection alive.
    read_until(&mut live, &mut seen, |s| s.contains(": heartbeat")).await;
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn guard_replays_a_keyed_decision_for_ten_minutes(pool: PgPool) {
    let api = Api::start(pool).await;
    let body = json!({"action_type": "deploy", "declared_goal": "g", "agent_id": "a", "idempotency_key": "gk-1"});
    let (_, first) = api.post("/api/guard", &api.member, body.clone()).await;
    assert!(first.get("idempotent_replay").is_none(), "{first}");
    let (_, second) = api.post("/api/guard", &api.member, body.clone()).await;
    assert_eq!(second["idempotent_replay"], true);
    assert_eq!(second["decision_id"], first["decision_id"]);
    assert_eq!(
        count(&api, "GuardDecision").await,
        1,
        "a replay writes nothing"
    );
    api.state
        .service
        .clock()
        .advance(chrono::Duration::minutes(11));
    let (_, third) = api.post("/api/guard", &api.member, body).await;
    assert!(third.get("idempotent_replay").is_none(), "{third}");
    assert_ne!(third["decision_id"], first["decision_id"]);
    assert_eq!(count(&api, "GuardDecision").await, 2);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn rate_limits_count_decisions_made_before_a_restart(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    policy(
        &api,
        "rate_limit",
        json!({"max_actions": 3, "window_minutes": 60, "action": "warn"}),
    )
    .await;
    let ask = json!({"action_type": "research", "agent_id": "chatty"});
    for _ in 0..3 {
        let (_, d) = api.post("/api/guard", &api.member, ask.clone()).await;
        assert_eq!(d["decision"], "allow", "{d}");
    }
    api.state
        .service
        .projections()
        .catch_up_all()
        .await
        .unwrap();
    drop(api);

    // A new server process on the same database has seen none of them.
    let restarted = Api::start(pool).await;
    let (_, d) = restarted.post("/api/guard", &restarted.member, ask).await;
    assert_eq!(d["decision"], "warn", "{d}");
    assert!(
        d["warnings"][0]
            .as_str()
            .unwrap()
            .contains("Agent made 3 guard evaluations in 60min"),
        "{d}"
    );
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn policy_recipes_run_against_their_policy(pool: PgPool) {
    let api = Api::start(pool).await;
    let rules = json!({
        "action_types": ["deploy"],
        "tests": [
            {"name": "deploy is held", "input": {"action_type": "deploy"}, "expect": {"decision": "require_approval"}},
            {"name": "build passes", "input": {"action_type": "build"}, "expect": {"decision": "allow"}},
            {"name": "a wrong expectation", "input": {"action_type": "deploy"}, "expect": {"decision": "allow"}}
        ]
    });
    let (status, recipe) = api
        .post(
            "/api/policies/test",
            &api.member,
            json!({"policy_type": "require_approval", "rules": rules}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{recipe}");
    assert_eq!(recipe["mode"], "recipe");
    let r = &recipe["results"];
    assert_eq!(
        (
            r["total_tests"].as_u64(),
            r["passed"].as_u64(),
            r["failed"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(r["success"], false);
    assert_eq!(r["details"][0]["tests"][2]["actual"], "require_approval");

    // Legacy mode (what the SDK sends): every active policy's own recipes.
    policy(&api, "require_approval", rules).await;
    let (_, legacy) = api
        .post("/api/policies/test", &api.member, json!({"agent_id": "a"}))
        .await;
    assert_eq!(legacy["results"]["total_policies"], 1);
    assert_eq!(legacy["results"]["passed"], 2);
    assert!(legacy.get("mode").is_none());
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn simulation_replays_recorded_requests_without_side_effects(pool: PgPool) {
    let api = Api::start(pool).await;
    for (kind, n) in [("deploy", 3), ("build", 5)] {
        for i in 0..n {
            api.post(
                "/api/guard",
                &api.member,
                json!({"action_type": kind, "agent_id": "a", "declared_goal": format!("{kind} {i}")}),
            )
            .await;
        }
    }
    let events = api.events().await;
    let (status, fires) = api
        .post(
            "/api/policies/simulate",
            &api.admin,
            json!({"policy_type": "block_action_type", "rules": {"action_types": ["deploy"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fires}");
    assert_eq!(
        fires["summary"],
        json!({"total": 8, "matches": 3, "block": 3, "warn": 0, "require_approval": 0, "allow": 5})
    );
    assert_eq!(fires["matches"].as_array().unwrap().len(), 3);
    assert_eq!(fires["matches"][0]["original_status"], "allow");
    let (_, never) = api
        .post(
            "/api/policies/simulate",
            &api.admin,
            json!({"policy_type": "block_action_type", "rules": {"action_types": ["launch_missiles"]}}),
        )
        .await;
    assert_eq!(never["summary"]["matches"], 0);
    assert_eq!(api.events().await, events, "a simulation writes nothing");
    let (status, bad) = api
        .post(
            "/api/policies/simulate",
            &api.admin,
            json!({"policy_type": "risk_threshold", "rules": {"threshold": 150}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn analytics_count_volume_cost_enforcement_and_approvals(pool: PgPool) {
    let api = Api::start(pool).await;
    policy(
        &api,
        "require_approval",
        json!({"action_types": ["deploy"]}),
    )
    .await;
    let (status, _) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": "no drops", "policy_type": "block_action_type", "rules": {"action_types": ["drop"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // Priced from the table: 1M in + 100k out of gpt-4o = $3.50; reported cost kept: $1.25.
    create(
        &api,
        &api.member,
        json!({"agent_id": "a", "action_type": "build", "declared_goal": "b1",
        "tokens_in": 1_000_000, "tokens_out": 100_000, "model": "gpt-4o-2024-08-06"}),
    )
    .await;
    create(
        &api,
        &api.member,
        json!({"agent_id": "a", "action_type": "build", "declared_goal": "b2",
        "tokens_in": 10, "model": "gpt-4o", "cost_estimate": 1.25}),
    )
    .await;
    let (status, _) = api
        .post(
            "/api/actions",
            &api.member,
            json!({"agent_id": "b", "action_type": "drop", "declared_goal": "d"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut held = Vec::new();
    for i in 0..3 {
        let c = create(
            &api,
            &api.member,
            json!({"agent_id": "b", "action_type": "deploy",
            "declared_goal": format!("deploy {i}"), "approval_wait_seconds": 5}),
        )
        .await;
        held.push(c["action_id"].as_str().unwrap().to_owned());
    }
    api.post(
        "/api/guard",
        &api.member,
        json!({"action_type": "research", "agent_id": "a"}),
    )
    .await;
    api.state
        .service
        .clock()
        .advance(chrono::Duration::seconds(60));
    api.post(
        &format!("/api/actions/{}/approve", held[0]),
        &api.admin,
        json!({"decision": "allow"}),
    )
    .await;
    api.state
        .service
        .clock()
        .advance(chrono::Duration::seconds(60));
    api.post(
        &format!("/api/actions/{}/approve", held[1]),
        &api.admin,
        json!({"decision": "deny"}),
    )
    .await;
    api.state
        .service
        .clock()
        .advance(chrono::Duration::minutes(30));
    // The third approval is overdue: the sweep records its expiry (reads never write).
    api.state
        .service
        .projections()
        .catch_up_all()
        .await
        .unwrap();
    let sweeps = crate::sweeps::sweeps_of(&api, dashclaw_sweeps::Settings::default()).await;
    assert_eq!(sweeps.expired_approvals().await.unwrap(), 1);

    let (status, a) = api.get("/api/analytics?days=7", &api.readonly).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["totals"]["actions"], 6, "{a}");
    assert_eq!(a["totals"]["blocked"], 1);
    assert_eq!(a["totals"]["approvals_requested"], 3);
    assert_eq!(a["totals"]["tokens_in"], 1_000_010);
    assert!(
        (a["totals"]["cost_usd"].as_f64().unwrap() - 4.75).abs() < 1e-6,
        "{a}"
    );
    assert_eq!(
        a["enforcement"],
        json!({"decisions": 7, "allowed": 3, "warnings": 0, "approvals_required": 3, "blocked": 1})
    );
    let ap = &a["approvals"];
    assert_eq!(
        (
            ap["requested"].as_i64(),
            ap["approved"].as_i64(),
            ap["denied"].as_i64(),
            ap["expired"].as_i64()
        ),
        (Some(3), Some(1), Some(1), Some(1)),
        "{ap}"
    );
    assert_eq!(ap["approve_rate"], 0.3333);
    let p50 = ap["time_to_decision_seconds"]["p50"].as_f64().unwrap();
    assert!((p50 - 90.0).abs() < 2.0, "{ap}");
    let agents: Vec<_> = a["by_agent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["agent_id"].clone())
        .collect();
    assert_eq!(agents, vec![json!("a"), json!("b")]);
    assert!(!a["series"].as_array().unwrap().is_empty());
    let (_, only_a) = api.get("/api/analytics?agent_id=a", &api.member).await;
    assert_eq!(only_a["totals"]["actions"], 2);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn posture_rises_only_for_policies_that_fire_on_real_traffic(pool: PgPool) {
    let api = Api::start(pool).await;
    let (_, empty) = api.get("/api/posture", &api.readonly).await;
    assert_eq!(empty["score"], 100, "no traffic: nothing ungoverned");
    for i in 0..6 {
        let kind = if i % 2 == 0 { "deploy" } else { "research" };
        api.post(
            "/api/guard",
            &api.member,
            json!({"action_type": kind, "agent_id": "a", "reversible": i % 3 != 0, "systems_touched": ["production"]}),
        )
        .await;
    }
    let (_, bare) = api.get("/api/posture", &api.readonly).await;
    assert_eq!(bare["score"], 0, "{bare}");
    assert_eq!(bare["status"], "at_risk");
    assert_eq!(
        bare["findings"][0]["key"], "action_type:deploy",
        "worst first: {bare}"
    );
    assert_eq!(bare["summary"]["totalUnits"], 2);

    let (status, _) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": "never", "policy_type": "block_action_type", "rules": {"action_types": ["launch_missiles"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, drafted) = api.get("/api/posture", &api.readonly).await;
    assert_eq!(
        drafted["score"], bare["score"],
        "a policy that never fires changes nothing"
    );

    policy(
        &api,
        "require_approval",
        json!({"action_types": ["deploy"]}),
    )
    .await;
    let (_, governed) = api.get("/api/posture", &api.readonly).await;
    let score = governed["score"].as_i64().unwrap();
    assert!(score > 50, "{governed}");
    assert_eq!(governed["findings"].as_array().unwrap().len(), 1);
    assert_eq!(governed["findings"][0]["key"], "action_type:research");
    assert_eq!(
        governed["snapshots"],
        json!([]),
        "reading writes no snapshot"
    );
    // The daily snapshot is recorded by the sweeps (one per org and day, the latest wins).
    let org = dashclaw_events::OrgId::new("org_default").unwrap();
    for _ in 0..2 {
        let recorded = api
            .state
            .service
            .record_posture_snapshot(&org)
            .await
            .unwrap();
        assert_eq!(i64::from(recorded), score);
    }
    let (_, governed) = api.get("/api/posture", &api.readonly).await;
    assert_eq!(
        governed["snapshots"].as_array().unwrap().len(),
        1,
        "one snapshot per day"
    );
    assert_eq!(governed["snapshots"][0]["score"], score);
}

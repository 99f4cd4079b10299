//! The sweeps: a lost-confirmation sweep racing late agent reports ends with exactly one
//! outcome per action; approvals expire by their (per-org) grace, once; checkpoints are
//! signed every N events or T; per-org settings over REST; and two `dashclaw serve`
//! processes on one database run each transition once, a killed leader replaced.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use dashclaw::sweeping::LedgerEffects;
use dashclaw_sweeps::{Settings, Sweeps};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::{assert_client_error, Api, BOOTSTRAP};
use crate::support::url_of;

async fn sweeps_of(api: &Api, settings: Settings) -> Sweeps {
    let key = dashclaw_store::keys::signing_key(&api.pool, None)
        .await
        .unwrap();
    let effects = LedgerEffects {
        ledger: api.state.ledger.clone(),
        pool: api.pool.clone(),
        key,
    };
    let clock = api.state.clock.clone();
    Sweeps::new(
        api.pool.clone(),
        settings,
        Arc::new(effects),
        Arc::new(move || clock.now()),
    )
}

/// Terminal events (outcome reported or confirmation lost) of each action, by id.
async fn terminal_events(pool: &PgPool, ids: &[String]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for id in ids {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_type = 'Action' AND aggregate_id = $1
                AND event_type IN ('ActionOutcomeReported', 'ActionConfirmationLost')",
        )
        .bind(format!("org_default/{id}"))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push((id.clone(), n));
    }
    out
}

async fn running_actions(api: &Api, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, body) = api
            .post(
                "/api/actions",
                &api.member,
                json!({"agent_id": "a", "action_type": "build", "declared_goal": format!("b{i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["action_id"].as_str().unwrap().to_owned());
    }
    ids
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_sweep_racing_late_reports_leaves_exactly_one_outcome_per_action(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let ids = running_actions(&api, 24).await;
    api.state.projector.catch_up_all().await.unwrap();
    let sweeps = sweeps_of(&api, Settings::default()).await;
    assert_eq!(sweeps.lost_confirmations().await.unwrap(), 0, "not due yet");
    api.state.clock.advance(chrono::Duration::minutes(16));

    // The sweep and every agent's late report at the same time.
    let sweep = tokio::spawn(async move { sweeps.lost_confirmations().await });
    let api = &api;
    let reports = futures_util::future::join_all(ids.iter().map(|id| async move {
        let path = format!("/api/actions/{id}/outcome");
        api.post(
            &path,
            &api.member,
            json!({"status": "completed", "summary": "late"}),
        )
        .await
    }))
    .await;
    let swept = sweep.await.unwrap().unwrap();
    let accepted = reports.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    for (status, body) in &reports {
        assert!(
            *status == StatusCode::OK || *status == StatusCode::CONFLICT,
            "{status} {body}"
        );
    }
    assert_eq!(
        swept + accepted,
        ids.len(),
        "swept {swept}, accepted {accepted}"
    );
    for (id, n) in terminal_events(&pool, &ids).await {
        assert_eq!(n, 1, "{id} has {n} terminal events");
    }
    // Lost ones are signals; running the sweep again changes nothing.
    let sweeps = sweeps_of(api, Settings::default()).await;
    api.state.projector.catch_up_all().await.unwrap();
    assert_eq!(sweeps.lost_confirmations().await.unwrap(), 0);
    let (_, signals) = api.get("/api/signals", &api.member).await;
    let lost = signals["signals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == "lost_confirmation")
        .count();
    assert_eq!(lost, swept, "{signals}");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn pending_approvals_are_not_lost_but_expire_by_the_orgs_grace(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let (status, body) = api
        .call(
            axum::http::Method::PUT,
            "/api/settings/sweeps",
            &api.admin,
            Some(json!({"approval_grace": "1s", "lost_confirmation_timeout": "1m"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effective"]["approval_grace"], "1s");
    let (status, _) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": "hold", "policy_type": "require_approval",
                   "rules": {"action_types": ["deploy"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, held) = api
        .post(
            "/api/actions",
            &api.member,
            json!({"agent_id": "a", "action_type": "deploy", "declared_goal": "ship",
                   "approval_wait_seconds": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let id = held["action_id"].as_str().unwrap().to_owned();
    api.state.projector.catch_up_all().await.unwrap();
    let sweeps = sweeps_of(&api, Settings::default()).await;

    api.state.clock.advance(chrono::Duration::seconds(5));
    assert_eq!(
        sweeps.expired_approvals().await.unwrap(),
        0,
        "within the grace"
    );
    api.state.clock.advance(chrono::Duration::minutes(5));
    assert_eq!(
        sweeps.lost_confirmations().await.unwrap(),
        0,
        "a pending approval is never a lost confirmation"
    );
    assert_eq!(sweeps.expired_approvals().await.unwrap(), 1);
    let (_, action) = api.get(&format!("/api/actions/{id}"), &api.member).await;
    assert_eq!(action["action"]["status"], "expired", "{action}");
    api.state.projector.catch_up_all().await.unwrap();
    assert_eq!(sweeps.expired_approvals().await.unwrap(), 0, "exactly once");
    let (status, body) = api
        .post(
            &format!("/api/actions/{id}/approve"),
            &api.admin,
            json!({"decision": "allow"}),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn checkpoints_are_signed_every_n_events_or_after_t(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let (status, body) = api
        .call(
            axum::http::Method::PUT,
            "/api/settings/sweeps",
            &api.admin,
            Some(json!({"checkpoint_every_events": 5, "checkpoint_interval": "1h"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sweeps = sweeps_of(&api, Settings::default()).await;
    let checkpoints = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM checkpoints WHERE org_id = 'org_default'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    running_actions(&api, 3).await; // 6 events, plus the keys and the settings
    assert!(sweeps.checkpoints().await.unwrap() >= 1);
    let signed = checkpoints().await;
    assert_eq!(
        sweeps.checkpoints().await.unwrap(),
        0,
        "nothing new to sign"
    );
    running_actions(&api, 1).await; // 2 events: fewer than 5, younger than an hour
    assert_eq!(sweeps.checkpoints().await.unwrap(), 0);
    api.state.clock.advance(chrono::Duration::minutes(61));
    // (org_other's unsigned key event is as old, under the server's default interval.)
    assert!(sweeps.checkpoints().await.unwrap() >= 1);
    assert_eq!(checkpoints().await, signed + 1, "old enough");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn sweep_settings_refuse_bad_input_and_non_admins(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let before = api.events().await;
    for body in [
        json!({"lost_confirmation_timeout": "soon"}),
        json!({"approval_grace": 60}),
        json!({"checkpoint_every_events": 0}),
        json!({"checkpoint_interval": "40 days"}),
        json!({"lost_confirmation_timout": "1m"}),
        json!([1]),
    ] {
        let (status, answer) = api
            .call(
                axum::http::Method::PUT,
                "/api/settings/sweeps",
                &api.admin,
                Some(body.clone()),
            )
            .await;
        assert_client_error(status, &answer, StatusCode::BAD_REQUEST);
        assert!(answer["error"].is_string(), "{body} -> {answer}");
    }
    for key in [&api.member, &api.readonly] {
        let (status, answer) = api
            .call(
                axum::http::Method::PUT,
                "/api/settings/sweeps",
                key,
                Some(json!({"approval_grace": "1m"})),
            )
            .await;
        assert_client_error(status, &answer, StatusCode::FORBIDDEN);
    }
    assert_eq!(api.events().await, before, "nothing was written");
    let (_, now) = api.get("/api/settings/sweeps", &api.admin).await;
    assert_eq!(now["overrides"]["approval_grace"], Value::Null, "{now}");
    assert_eq!(now["effective"]["lost_confirmation_timeout"], "15m");
}

// ---- two nodes ------------------------------------------------------------------------------

/// A `dashclaw serve` process; killed when dropped.
struct Node {
    child: Child,
    address: String,
}

impl Node {
    fn start(url: &str, name: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dashclaw"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env(
                "DATABASE_URL",
                format!(
                    "{url}{}application_name={name}",
                    if url.contains('?') { '&' } else { '?' }
                ),
            )
            .env("DASHCLAW_API_KEY", BOOTSTRAP)
            .env("DASHCLAW_SWEEP_CADENCE", "100ms")
            .env("DASHCLAW_LOST_CONFIRMATION_TIMEOUT", "1s")
            .env("DASHCLAW_RATE_LIMIT_MAX", "1000000")
            .env("DASHCLAW_ORG_RATE_LIMIT_MAX", "1000000")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        Self { child, address }
    }

    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let mut stream = TcpStream::connect(&self.address).unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nx-api-key: {BOOTSTRAP}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nConnection: close\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let json = response
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (status, json)
    }

    fn create_running(&self, goal: &str) -> String {
        let (status, body) = self.post(
            "/api/actions",
            &json!({"agent_id": "a", "action_type": "build", "declared_goal": goal}),
        );
        assert_eq!(status, 201, "{body}");
        body["action_id"].as_str().unwrap().to_owned()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (polling the ledger, no sleeping) until every action has a terminal event.
async fn until_all_terminal(pool: &PgPool, ids: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let done = terminal_events(pool, ids)
            .await
            .iter()
            .filter(|(_, n)| *n > 0)
            .count();
        if done == ids.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {} actions swept",
            ids.len()
        );
    }
}

/// Which node (application_name) holds the lost_confirmation sweep's leader lock.
async fn leader(pool: &PgPool) -> Option<String> {
    sqlx::query_scalar(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted
            AND l.objid::int4 = hashtext('dashclaw.sweep.lost_confirmation')",
    )
    .fetch_optional(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn two_nodes_sweep_each_action_once_and_a_killed_leader_is_replaced(pool: PgPool) {
    let url = url_of(&pool).await;
    let a = Node::start(&url, "node-a");
    let b = Node::start(&url, "node-b");
    let mut ids: Vec<String> = (0..6).map(|i| a.create_running(&format!("a{i}"))).collect();
    ids.extend((0..6).map(|i| b.create_running(&format!("b{i}"))));
    until_all_terminal(&pool, &ids, Duration::from_secs(30)).await;
    for (id, n) in terminal_events(&pool, &ids).await {
        assert_eq!(n, 1, "{id} was swept {n} times by two nodes");
    }

    // Kill whichever node leads; the other takes over within a cadence (plus the timeout).
    let holder = leader(&pool).await.expect("a node leads the sweep");
    let (killed, survivor) = if holder == "node-a" { (a, b) } else { (b, a) };
    drop(killed);
    let started = Instant::now();
    let more: Vec<String> = (0..4)
        .map(|i| survivor.create_running(&format!("c{i}")))
        .collect();
    until_all_terminal(&pool, &more, Duration::from_secs(30)).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "the survivor took {took:?} to take over"
    );
    for (id, n) in terminal_events(&pool, &more).await {
        assert_eq!(n, 1, "{id}: {n}");
    }
    let now_leading = leader(&pool).await;
    assert!(now_leading.is_some() && now_leading != Some(holder.clone()));
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_policy_or_halt_set_on_one_node_applies_on_the_other_within_a_second(pool: PgPool) {
    let url = url_of(&pool).await;
    let a = Node::start(&url, "node-a");
    let b = Node::start(&url, "node-b");
    let guard = json!({"action_type": "drop_table", "agent_id": "a", "declared_goal": "clean"});
    let verdict = |node: &Node| node.post("/api/guard", &guard).1["decision"].clone();
    assert_eq!(verdict(&a), "allow");
    // Within one second of the change's answer, node A decides under it.
    let within_a_second = |wanted: &str| {
        let since = Instant::now();
        while verdict(&a) != wanted {
            assert!(
                since.elapsed() < Duration::from_secs(1),
                "node A still does not answer {wanted}"
            );
        }
    };
    let (status, body) = b.post(
        "/api/policies",
        &json!({"name": "no drops", "policy_type": "block_action_type",
                "rules": {"action_types": ["drop_table"]}}),
    );
    assert_eq!(status, 201, "{body}");
    within_a_second("block");
    let (status, body) = b.post("/api/halt", &json!({"halted": true, "reason": "drill"}));
    assert_eq!(status, 200, "{body}");
    let guard_research = json!({"action_type": "research", "agent_id": "a", "declared_goal": "x"});
    let since = Instant::now();
    while a.post("/api/guard", &guard_research).1["decision"] != "block" {
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "node A ignores the halt"
        );
    }
}

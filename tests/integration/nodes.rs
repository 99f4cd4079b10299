//! Several `dashclaw serve` processes on one database: each sweep transition happens once and
//! a killed leader is replaced; a policy or halt set on one node applies on the other within a
//! second; a GraphQL subscriber on one node sees what another node commits; a tree head is
//! signed within about a second of a write and at shutdown. (An approval on
//! one node waking the official SDK waiting on another: tests/conformance.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::BOOTSTRAP;
use crate::support::url_of;
use crate::sweeps::terminal_events;

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

    fn get(&self, path: &str) -> Value {
        let mut stream = TcpStream::connect(&self.address).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nx-api-key: {BOOTSTRAP}\r\nConnection: close\r\n\r\n",
            self.address
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null)
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

    // Kill whichever node leads (SIGKILL: no goodbye); the other takes the lock within a
    // cadence (100 ms here, plus the time PostgreSQL takes to notice the dead session).
    let holder = leader(&pool).await.expect("a node leads the sweep");
    let (killed, survivor) = if holder == "node-a" { (a, b) } else { (b, a) };
    drop(killed);
    let killed_at = Instant::now();
    loop {
        match leader(&pool).await {
            Some(now) if now != holder => break,
            _ => assert!(
                killed_at.elapsed() < Duration::from_secs(2),
                "no node took over the sweep within 2 s of the leader's death"
            ),
        }
    }
    let took_over = killed_at.elapsed();
    assert!(
        took_over < Duration::from_millis(1000),
        "the survivor took {took_over:?} to lead (cadence 100 ms)"
    );
    let more: Vec<String> = (0..4)
        .map(|i| survivor.create_running(&format!("c{i}")))
        .collect();
    until_all_terminal(&pool, &more, Duration::from_secs(30)).await;
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

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_graphql_subscriber_on_one_node_sees_what_another_node_commits(pool: PgPool) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let url = url_of(&pool).await;
    let a = Node::start(&url, "node-a");
    let b = Node::start(&url, "node-b");
    let (status, _) = b.post(
        "/api/policies",
        &json!({"name": "hold", "policy_type": "require_approval",
                "rules": {"action_types": ["deploy"]}}),
    );
    assert_eq!(status, 201);

    let mut request = format!("ws://{}/graphql/ws", a.address)
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    headers.insert("x-api-key", BOOTSTRAP.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"type": "connection_init", "payload": {}})))
        .await
        .unwrap();
    assert_eq!(
        crate::graphql::next_message(&mut ws).await["type"],
        "connection_ack"
    );
    ws.send(send(json!({"id": "q", "type": "subscribe",
        "payload": {"query": "subscription { approvalsQueue { actionId status } }"}})))
        .await
        .unwrap();
    let first = crate::graphql::next_message(&mut ws).await;
    assert_eq!(
        first["payload"]["data"]["approvalsQueue"],
        json!([]),
        "{first}"
    );
    // The subscription listens to node A's ledger tail once it runs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.get("/api/stream/status")["subscribers"].as_u64() < Some(1) {
        assert!(Instant::now() < deadline, "the subscription never started");
    }

    let (status, held) = b.post(
        "/api/actions",
        &json!({"agent_id": "a", "action_type": "deploy", "declared_goal": "ship"}),
    );
    assert_eq!(status, 202, "{held}");
    let id = held["action_id"].clone();
    loop {
        let message = crate::graphql::next_message(&mut ws).await;
        let queue = &message["payload"]["data"]["approvalsQueue"];
        if queue
            .as_array()
            .is_some_and(|q| q.iter().any(|a| a["actionId"] == id))
        {
            break;
        }
    }
}

/// The org's chain size and its largest signed tree head, read from the database.
async fn chain_and_head(pool: &PgPool) -> (i64, Option<i64>) {
    sqlx::query_as(
        "SELECT h.size, (SELECT max(size) FROM checkpoints c
                          WHERE c.org_id = h.org_id AND c.note IS NOT NULL)
           FROM ledger_heads h WHERE h.org_id = 'org_default'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_tree_head_is_signed_within_about_a_second_and_at_shutdown(pool: PgPool) {
    let url = url_of(&pool).await;
    let a = Node::start(&url, "node-a");
    let b = Node::start(&url, "node-b");
    let guard = json!({"agent_id": "a", "action_type": "deploy"});
    for _ in 0..3 {
        assert_eq!(a.post("/api/guard", &guard).0, 200);
    }
    let written = Instant::now();
    let (size, _) = chain_and_head(&pool).await;
    // Polling the other node, no sleeping: its latest head covers the chain soon.
    let took = loop {
        let head = b.get("/api/integrity/checkpoint");
        if head["tree_size"].as_i64().is_some_and(|n| n >= size) {
            assert_eq!(head["org_id"], "org_default");
            break written.elapsed();
        }
        assert!(
            written.elapsed() < Duration::from_secs(5),
            "no tree head of {size} events after 5 s: {head}"
        );
    };
    assert!(took < Duration::from_millis(2500), "signed after {took:?}");
    eprintln!("tree head covering the chain signed {took:?} after the write");

    // Written just before both nodes stop: the heads signed at shutdown cover it.
    for _ in 0..5 {
        assert_eq!(b.post("/api/guard", &guard).0, 200);
    }
    for node in [&a, &b] {
        let sent = Command::new("kill")
            .args(["-TERM", &node.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }
    for mut node in [a, b] {
        assert!(node.child.wait().unwrap().success());
    }
    let (size, head) = chain_and_head(&pool).await;
    assert_eq!(
        head,
        Some(size),
        "the last events were left without a signed tree head"
    );
}

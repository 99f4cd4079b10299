//! Webhooks end to end: a real server state (ledger tail, outbox fold, delivery worker) on a
//! real database, delivering to a receiver on loopback inside the test; signatures, retries
//! with backoff, a restart in the middle of a failing delivery, and refused registrations.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::post;
use dashclaw::server::Config;
use dashclaw::service::webhooks::signature;
use dashclaw::service::RateLimit;
use dashclaw_domain::api_key::Role;
use dashclaw_events::OrgId;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::api::{assert_client_error, Api, BOOTSTRAP};

/// One request the receiver got.
#[derive(Debug)]
struct Received {
    at: Instant,
    delivery: String,
    event: String,
    timestamp: String,
    signature: String,
    body: Bytes,
    answered: StatusCode,
}

/// A loopback HTTP receiver that fails the first `fail_first` attempts of every delivery
/// (500) and accepts the rest, and reports every request on a channel.
struct Receiver {
    url: String,
    requests: mpsc::UnboundedReceiver<Received>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Self {
        let (tx, requests) = mpsc::unbounded_channel();
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                let seen = seen.clone();
                async move {
                    let h = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let delivery = h(signature::DELIVERY_HEADER);
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        let n = seen.entry(delivery.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    let answered = if n <= fail_first {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    };
                    let _ = tx.send(Received {
                        at: Instant::now(),
                        event: h(signature::EVENT_HEADER),
                        timestamp: h(signature::TIMESTAMP_HEADER),
                        signature: h(signature::SIGNATURE_HEADER),
                        delivery,
                        body,
                        answered,
                    });
                    answered
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            requests,
            _server: server,
        }
    }

    /// The next request, or a failure after `within`.
    async fn next(&mut self, within: Duration) -> Received {
        tokio::time::timeout(within, self.requests.recv())
            .await
            .expect("the receiver got a request in time")
            .expect("the receiver is running")
    }

    /// Requests until every delivery in `ids` has been answered 200.
    async fn until_delivered(&mut self, ids: &HashSet<String>) -> Vec<Received> {
        let mut got = Vec::new();
        let mut done = HashSet::new();
        while !ids.is_subset(&done) {
            let r = self.next(Duration::from_secs(20)).await;
            if r.answered == StatusCode::OK {
                done.insert(r.delivery.clone());
            }
            got.push(r);
        }
        got
    }
}

/// A config for tests: loopback receivers allowed, quick retries.
fn config(retry_base: Duration) -> Config {
    let mut config = Config::new(Some(BOOTSTRAP));
    let wide = RateLimit {
        max: 1_000_000,
        window: Duration::from_secs(60),
    };
    config.ip_limit = wide;
    config.service.org_limit = wide;
    config.service.webhooks.allow_private = true;
    config.service.webhooks.retry_base = retry_base;
    config.service.webhooks.retry_max = retry_base * 16;
    config.service.webhooks.timeout = Duration::from_secs(5);
    config.service.webhooks.poll = Duration::from_millis(100);
    config
}

async fn register(api: &Api, url: &str, events: Value) -> (String, String) {
    let (status, body) = api
        .post(
            "/api/webhooks",
            &api.admin,
            json!({"url": url, "events": events}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let hook = &body["webhook"];
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(hook["id"].as_str().unwrap().starts_with("wh_"));
    assert_eq!(hook["active"], 1);
    (hook["id"].as_str().unwrap().to_owned(), secret)
}

/// Delivery ids queued for `webhook` (after folding everything recorded so far).
async fn queued(api: &Api, webhook: &str) -> HashSet<String> {
    let org = OrgId::new("org_default").unwrap();
    api.state.service.outbox().catch_up(&org).await.unwrap();
    api.state.service.webhooks().wake();
    sqlx::query_scalar("SELECT delivery_id FROM webhook_outbox WHERE webhook_id = $1")
        .bind(webhook)
        .fetch_all(&api.pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn assert_signed(r: &Received, secret: &str) {
    let ts: i64 = r.timestamp.parse().unwrap();
    assert!(
        signature::verify(secret, ts, &r.body, &r.signature),
        "bad signature on {r:?}"
    );
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["id"], r.delivery.as_str());
    assert_eq!(body["event"], r.event.as_str());
}

async fn hold_deploys(api: &Api) {
    let (status, body) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": "Deploys need a human", "policy_type": "require_approval",
                   "rules": {"action_types": ["deploy"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn record_action(api: &Api, action_type: &str) -> String {
    let (status, body) = api
        .post(
            "/api/actions",
            &api.member,
            json!({"agent_id": "agent-1", "action_type": action_type, "declared_goal": "ship it"}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    body["action_id"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn every_subscribed_event_arrives_once_and_signed(pool: PgPool) {
    let api = Api::with_config(pool, config(Duration::from_millis(50))).await;
    let mut receiver = Receiver::start(0).await;
    let (hook, secret) = register(
        &api,
        &receiver.url,
        json!([
            "action.created",
            "approval_pending",
            "approval_granted",
            "decision.created"
        ]),
    )
    .await;
    hold_deploys(&api).await;
    let action = record_action(&api, "deploy").await;
    let (status, body) = api
        .post(
            &format!("/api/actions/{action}/approve"),
            &api.admin,
            json!({"decision": "allow", "reasoning": "fine"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let expected = queued(&api, &hook).await;
    let got = receiver.until_delivered(&expected).await;
    // Quiesce the worker (it records what it has in flight), then nothing more may arrive.
    api.state.service.stop().await;
    assert!(receiver.requests.try_recv().is_err(), "an extra request");

    let mut types = HashMap::new();
    for r in &got {
        assert_signed(r, &secret);
        assert!(expected.contains(&r.delivery));
        *types.entry(r.event.clone()).or_insert(0) += 1;
    }
    assert_eq!(got.len(), expected.len(), "each delivery exactly once");
    for t in ["action.created", "approval_pending", "approval_granted"] {
        assert_eq!(types.get(t), Some(&1), "{t}: {types:?}");
    }
    assert!(types.get("decision.created").is_some_and(|n| *n >= 1));
    assert_eq!(types.len(), 4, "only subscribed types: {types:?}");
    let pending = got.iter().find(|r| r.event == "approval_pending").unwrap();
    let body: Value = serde_json::from_slice(&pending.body).unwrap();
    assert_eq!(body["data"]["action_id"], action.as_str());
    assert_eq!(body["data"]["status"], "pending_approval");
    assert!(body["ledger_seq"].as_i64().unwrap() > 0);

    // Every attempt is recorded: one successful attempt per delivery.
    let (status, body) = api
        .get(&format!("/api/webhooks/{hook}/deliveries"), &api.readonly)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = body["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    assert!(rows
        .iter()
        .all(|d| d["success"] == true && d["status_code"] == 200 && d["attempt"] == 1));

    // Listed with the secret masked.
    let (_, list) = api.get("/api/webhooks", &api.member).await;
    let listed = &list["webhooks"][0];
    assert_eq!(listed["id"], hook.as_str());
    assert_ne!(listed["secret"], secret.as_str());
    assert!(listed["secret"].as_str().unwrap().starts_with("****"));
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_failing_receiver_sees_retries_with_backoff_and_attempts_are_recorded(pool: PgPool) {
    let base = Duration::from_millis(100);
    let api = Api::with_config(pool, config(base)).await;
    let mut receiver = Receiver::start(3).await;
    let (hook, secret) = register(&api, &receiver.url, json!(["action.created"])).await;
    record_action(&api, "research").await;

    let expected = queued(&api, &hook).await;
    assert_eq!(expected.len(), 1);
    let got = receiver.until_delivered(&expected).await;
    api.state.service.stop().await;
    assert!(receiver.requests.try_recv().is_err(), "an extra request");

    let codes: Vec<u16> = got.iter().map(|r| r.answered.as_u16()).collect();
    assert_eq!(codes, [500, 500, 500, 200]);
    for r in &got {
        assert_signed(r, &secret);
    }
    // Waits of at least base, 2 base, 4 base between attempts.
    for (i, pair) in got.windows(2).enumerate() {
        let gap = pair[1].at - pair[0].at;
        let min = base * (1 << i);
        assert!(gap >= min, "gap {i} was {gap:?}, expected at least {min:?}");
    }

    let (status, body) = api
        .get(&format!("/api/webhooks/{hook}/deliveries"), &api.admin)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows = body["deliveries"].as_array().unwrap();
    let attempts: Vec<(i64, Value, bool)> = rows
        .iter()
        .map(|d| {
            (
                d["attempt"].as_i64().unwrap(),
                d["status_code"].clone(),
                d["success"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (4, json!(200), true),
            (3, json!(500), false),
            (2, json!(500), false),
            (1, json!(500), false)
        ],
        "newest first"
    );
    assert!(rows[1]["error"].as_str().unwrap().contains("500"));
    assert_eq!(rows[0]["delivery_state"], "delivered");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_delivery_failing_across_a_restart_completes_once(pool: PgPool) {
    let mut receiver = Receiver::start(2).await;
    // Server A retries slowly enough to be stopped between attempts.
    let a = Api::with_config(pool.clone(), config(Duration::from_millis(400))).await;
    let (hook, secret) = register(&a, &receiver.url, json!(["action.created"])).await;
    let first_action = record_action(&a, "research").await;
    let first = receiver.next(Duration::from_secs(20)).await;
    assert_eq!(first.answered, StatusCode::INTERNAL_SERVER_ERROR);
    // Stop A mid-retry: its worker records the failed attempt and stops; then A goes away.
    a.state.service.stop().await;
    drop(a);

    // Server B on the same database finishes it, and delivers what happens next.
    let b = Api::with_config(pool, config(Duration::from_millis(50))).await;
    let second_action = record_action(&b, "research").await;
    let expected = queued(&b, &hook).await;
    assert_eq!(expected.len(), 2, "one delivery per event, none doubled");
    let mut got = vec![first];
    got.extend(receiver.until_delivered(&expected).await);
    b.state.service.stop().await;
    assert!(receiver.requests.try_recv().is_err(), "an extra request");

    let mut per_delivery: HashMap<String, Vec<u16>> = HashMap::new();
    for r in &got {
        assert_signed(r, &secret);
        per_delivery
            .entry(r.delivery.clone())
            .or_default()
            .push(r.answered.as_u16());
    }
    assert_eq!(per_delivery.len(), 2);
    for codes in per_delivery.values() {
        assert_eq!(codes, &[500, 500, 200], "{per_delivery:?}");
    }
    let actions: HashSet<String> = got
        .iter()
        .filter(|r| r.answered == StatusCode::OK)
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["data"]["action_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(actions, HashSet::from([first_action, second_action]));
    let recorded: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT delivery_id, attempts, state FROM webhook_outbox WHERE webhook_id = $1",
    )
    .bind(&hook)
    .fetch_all(&b.pool)
    .await
    .unwrap();
    assert_eq!(recorded.len(), 2);
    assert!(recorded.iter().all(|(_, n, s)| *n == 3 && s == "delivered"));
    let attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_attempts WHERE webhook_id = $1")
            .bind(&hook)
            .fetch_one(&b.pool)
            .await
            .unwrap();
    assert_eq!(attempts, 6, "every attempt recorded, across both servers");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn the_test_endpoint_sends_a_signed_test_delivery(pool: PgPool) {
    let api = Api::with_config(pool, config(Duration::from_millis(50))).await;
    let mut receiver = Receiver::start(0).await;
    // Subscribed to nothing that happens here, so the test delivery is the only request.
    let (hook, secret) = register(&api, &receiver.url, json!(["lost_confirmation"])).await;
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/webhooks/{hook}/test"),
            &api.admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["status_code"], 200);
    let r = receiver.next(Duration::from_secs(5)).await;
    assert_eq!(r.event, "test");
    assert_eq!(r.delivery, body["delivery_id"].as_str().unwrap());
    assert_signed(&r, &secret);

    // Deleted: gone from the list, and its routes answer 404.
    let (status, body) = api
        .call(
            Method::DELETE,
            &format!("/api/webhooks?id={hook}"),
            &api.admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"success": true, "deleted": hook}));
    let (_, list) = api.get("/api/webhooks", &api.admin).await;
    assert_eq!(list["webhooks"], json!([]));
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/webhooks/{hook}/test"),
            &api.admin,
            None,
        )
        .await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND);
}

async fn webhook_rows(api: &Api) -> (i64, i64, i64, i64) {
    let count = |table: &'static str| {
        let pool = api.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    (
        api.events().await,
        count("webhook_secrets").await,
        count("webhook_outbox").await,
        count("webhook_attempts").await,
    )
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn bad_registrations_and_foreign_ids_are_refused_and_change_nothing(pool: PgPool) {
    // Production settings: private targets are not allowed.
    let api = Api::start(pool).await;
    // A registration nobody will ever deliver to (a signal that is accepted, never sent).
    let (hook, _) = register(&api, "http://hooks.example.com/x", json!(["stale_loop"])).await;
    let other_admin = crate::api::issue_key(
        &api.state,
        &OrgId::new("org_other").unwrap(),
        Role::Admin,
        "other admin",
        "test",
    )
    .await;
    let before = webhook_rows(&api).await;

    let cases: Vec<(Value, &str, StatusCode, &str)> = vec![
        (
            json!({"url": "ftp://example.com/x"}),
            "admin",
            StatusCode::BAD_REQUEST,
            "http or https",
        ),
        (
            json!({"url": "file:///etc/passwd"}),
            "admin",
            StatusCode::BAD_REQUEST,
            "http or https",
        ),
        (
            json!({"url": "http://127.0.0.1:9/x"}),
            "admin",
            StatusCode::BAD_REQUEST,
            "public",
        ),
        (
            json!({"url": "http://[::1]/x"}),
            "admin",
            StatusCode::BAD_REQUEST,
            "public",
        ),
        (
            json!({"url": "http://localhost:8080/x"}),
            "admin",
            StatusCode::BAD_REQUEST,
            "localhost",
        ),
        (
            json!({"url": "http://169.254.169.254/latest"}),
            "admin",
            StatusCode::BAD_REQUEST,
            "public",
        ),
        (
            json!({"url": "http://10.1.2.3/x"}),
            "admin",
            StatusCode::BAD_REQUEST,
            "public",
        ),
        (
            json!({"url": "http://example.com/x", "events": ["nope"]}),
            "admin",
            StatusCode::BAD_REQUEST,
            "events[0] must be one of",
        ),
        (
            json!({"url": "http://example.com/x", "events": []}),
            "admin",
            StatusCode::BAD_REQUEST,
            "events cannot be empty",
        ),
        (
            json!({"url": "http://example.com/x", "events": "all"}),
            "admin",
            StatusCode::BAD_REQUEST,
            "events must be an array",
        ),
        (
            json!({"events": ["all"]}),
            "admin",
            StatusCode::BAD_REQUEST,
            "url is required",
        ),
        (
            json!({"url": 5}),
            "admin",
            StatusCode::BAD_REQUEST,
            "url must be a string",
        ),
        (
            json!({"url": "not a url"}),
            "admin",
            StatusCode::BAD_REQUEST,
            "url",
        ),
        (
            json!({"url": "http://example.com/x"}),
            "readonly",
            StatusCode::FORBIDDEN,
            "readonly",
        ),
        (
            json!({"url": "http://example.com/x"}),
            "member",
            StatusCode::FORBIDDEN,
            "Admin",
        ),
    ];
    for (body, who, expected, message) in cases {
        let key = match who {
            "admin" => &api.admin,
            "readonly" => &api.readonly,
            _ => &api.member,
        };
        let (status, answer) = api.post("/api/webhooks", key, body.clone()).await;
        assert_client_error(status, &answer, expected);
        assert!(
            answer.to_string().contains(message),
            "{body} -> {answer} should mention {message:?}"
        );
    }
    let (status, answer) = api
        .raw(
            Method::POST,
            "/api/webhooks",
            &api.admin,
            b"{not json".to_vec(),
        )
        .await;
    assert_client_error(status, &answer, StatusCode::BAD_REQUEST);

    // Deletion: no id, unknown id, another org's admin, a readonly key.
    for (uri, key, expected) in [
        (
            "/api/webhooks".to_owned(),
            &api.admin,
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/webhooks?id=wh_nope".to_owned(),
            &api.admin,
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/webhooks?id={hook}"),
            &other_admin,
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/api/webhooks?id={hook}"),
            &api.readonly,
            StatusCode::FORBIDDEN,
        ),
        (
            format!("/api/webhooks?id={hook}"),
            &api.member,
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, answer) = api.call(Method::DELETE, &uri, key, None).await;
        assert_client_error(status, &answer, expected);
    }
    // Another org cannot test it or read its deliveries, nor see it listed.
    for (method, uri) in [
        (Method::POST, format!("/api/webhooks/{hook}/test")),
        (Method::GET, format!("/api/webhooks/{hook}/deliveries")),
        (Method::GET, "/api/webhooks/wh_nope/deliveries".to_owned()),
    ] {
        let (status, answer) = api.call(method, &uri, &other_admin, None).await;
        assert_client_error(status, &answer, StatusCode::NOT_FOUND);
    }
    let (_, list) = api.get("/api/webhooks", &other_admin).await;
    assert_eq!(list["webhooks"], json!([]));
    let (status, answer) = api
        .call(
            Method::POST,
            &format!("/api/webhooks/{hook}/test"),
            &api.readonly,
            None,
        )
        .await;
    assert_client_error(status, &answer, StatusCode::FORBIDDEN);

    assert_eq!(
        webhook_rows(&api).await,
        before,
        "a refused request wrote something"
    );
    let (_, list) = api.get("/api/webhooks", &api.admin).await;
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn https_targets_are_spoken_to_over_tls(pool: PgPool) {
    use tokio::io::AsyncReadExt;

    // One attempt only: the retry would come a minute later.
    let api = Api::with_config(pool, config(Duration::from_secs(60))).await;
    // A loopback "server" that only records the first bytes the client sends.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 3];
        socket.read_exact(&mut first).await.unwrap();
        let _ = tx.send(first);
    });
    let (hook, _) = register(
        &api,
        &format!("https://{address}/hook"),
        json!(["lost_confirmation"]),
    )
    .await;
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/api/webhooks/{hook}/test"),
            &api.admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    let first = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap();
    // A TLS record of type handshake (the ClientHello), version 3.x.
    assert_eq!(first[..2], [0x16, 0x03], "not a TLS ClientHello: {first:?}");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn denials_lost_confirmations_and_drift_map_to_their_types(pool: PgPool) {
    use dashclaw::service::Actor;
    use dashclaw_domain::action::{Action, ActionCommand};

    let api = Api::with_config(pool, config(Duration::from_millis(50))).await;
    let mut receiver = Receiver::start(0).await;
    let (hook, secret) = register(
        &api,
        &receiver.url,
        json!([
            "approval_denied",
            "lost_confirmation",
            "signal.detected",
            "assumption_drift"
        ]),
    )
    .await;
    hold_deploys(&api).await;
    let held = record_action(&api, "deploy").await;
    let (status, body) = api
        .post(
            &format!("/api/actions/{held}/approve"),
            &api.admin,
            json!({"decision": "deny", "reasoning": "not today"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The lost-confirmation sweep's command, sent as the sweep will send it.
    let running = record_action(&api, "research").await;
    let org = OrgId::new("org_default").unwrap();
    api.state
        .service
        .aggregates()
        .execute::<Action>(
            &org,
            &running,
            ActionCommand::MarkConfirmationLost {
                now: api.state.service.clock().now(),
            },
            &Actor::of("sweep", None),
        )
        .await
        .unwrap_or_else(|_| panic!("the action is awaiting its outcome"));
    let (status, body) = api
        .post(
            "/api/assumptions",
            &api.member,
            json!({"action_id": running, "assumption": "the cache is warm"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let assumption = body["assumption_id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .call(
            Method::PATCH,
            &format!("/api/assumptions/{assumption}"),
            &api.member,
            Some(json!({"validated": false, "invalidated_reason": "it was cold"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let expected = queued(&api, &hook).await;
    let got = receiver.until_delivered(&expected).await;
    api.state.service.stop().await;
    assert!(receiver.requests.try_recv().is_err(), "an extra request");
    let mut seen: Vec<(String, Value)> = got
        .iter()
        .map(|r| {
            assert_signed(r, &secret);
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            (r.event.clone(), body["data"].clone())
        })
        .collect();
    seen.sort_by(|a, b| (&a.0, a.1.to_string()).cmp(&(&b.0, b.1.to_string())));
    let kinds: Vec<(&str, &str)> = seen
        .iter()
        .map(|(event, data)| {
            let detail = match event.as_str() {
                "signal.detected" | "assumption_drift" => data["type"].as_str().unwrap(),
                _ => data["status"].as_str().unwrap(),
            };
            (event.as_str(), detail)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("approval_denied", "failed"),
            ("assumption_drift", "assumption_drift"),
            ("lost_confirmation", "unknown"),
            ("signal.detected", "lost_confirmation"),
            ("signal.detected", "assumption_drift"),
        ],
        "{seen:?}"
    );
    let lost = &seen[2].1;
    assert_eq!(lost["action_id"], running.as_str());
    assert_eq!(lost["outcome_status"], "lost_confirmation", "{lost}");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn two_servers_on_one_database_deliver_each_event_once(pool: PgPool) {
    let mut receiver = Receiver::start(1).await;
    // Two nodes, each with its own pool, as two processes would have.
    let a = Api::with_config(
        crate::support::own_pool(&pool, 8).await,
        config(Duration::from_millis(20)),
    )
    .await;
    let b = Api::with_config(
        crate::support::own_pool(&pool, 8).await,
        config(Duration::from_millis(20)),
    )
    .await;
    let (hook, secret) = register(&a, &receiver.url, json!(["action.created"])).await;
    // Traffic through both servers; both tails fold, both workers claim.
    for i in 0..20 {
        let server = if i % 2 == 0 { &a } else { &b };
        record_action(server, "research").await;
    }
    let expected = queued(&a, &hook).await;
    assert_eq!(expected.len(), 20);
    b.state.service.webhooks().wake();
    let got = receiver.until_delivered(&expected).await;
    a.state.service.stop().await;
    b.state.service.stop().await;
    assert!(receiver.requests.try_recv().is_err(), "an extra request");
    let mut per_delivery: HashMap<&str, Vec<u16>> = HashMap::new();
    for r in &got {
        assert_signed(r, &secret);
        per_delivery
            .entry(r.delivery.as_str())
            .or_default()
            .push(r.answered.as_u16());
    }
    assert_eq!(per_delivery.len(), 20);
    assert!(
        per_delivery.values().all(|codes| codes == &[500, 200]),
        "each delivery: one failure, then exactly one success: {per_delivery:?}"
    );
    let attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_attempts WHERE webhook_id = $1")
            .bind(&hook)
            .fetch_one(&a.pool)
            .await
            .unwrap();
    assert_eq!(attempts, 40);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_delivery_is_given_up_after_the_maximum_attempts(pool: PgPool) {
    let mut config = config(Duration::from_millis(20));
    config.service.webhooks.max_attempts = 3;
    let api = Api::with_config(pool, config).await;
    let mut receiver = Receiver::start(usize::MAX).await;
    let (hook, _) = register(&api, &receiver.url, json!(["action.created"])).await;
    record_action(&api, "research").await;
    let expected = queued(&api, &hook).await;
    assert_eq!(expected.len(), 1);
    for _ in 0..3 {
        let r = receiver.next(Duration::from_secs(10)).await;
        assert_eq!(r.answered, StatusCode::INTERNAL_SERVER_ERROR);
    }
    api.state.service.stop().await;
    let (attempts, state): (i32, String) =
        sqlx::query_as("SELECT attempts, state FROM webhook_outbox WHERE webhook_id = $1")
            .bind(&hook)
            .fetch_one(&api.pool)
            .await
            .unwrap();
    assert_eq!((attempts, state.as_str()), (3, "failed"));
    assert!(receiver.requests.try_recv().is_err(), "a fourth attempt");
    let (_, body) = api
        .get(&format!("/api/webhooks/{hook}/deliveries"), &api.admin)
        .await;
    assert_eq!(body["total"], 3);
    assert_eq!(body["deliveries"][0]["delivery_state"], "failed");
}

/// A `dashclaw serve` process on a free loopback port.
struct Served {
    child: tokio::process::Child,
    base: String,
}

impl Served {
    async fn start(url: &str, retry_base: &str) -> Self {
        use tokio::io::AsyncBufReadExt;

        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dashclaw"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", url)
            .env("DASHCLAW_API_KEY", BOOTSTRAP)
            .env("DASHCLAW_WEBHOOKS_ALLOW_PRIVATE", "true")
            .env("DASHCLAW_WEBHOOK_RETRY_BASE", retry_base)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Self {
            base: format!("http://{address}"),
            child,
        }
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let client = dashclaw::service::http_client::HttpClient::new(true, Duration::from_secs(10));
        let request = axum::http::Request::post(format!("{}{path}", self.base))
            .header("x-api-key", BOOTSTRAP)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let (status, bytes) = client.send(request).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_served_process_killed_mid_retry_loses_and_doubles_nothing(pool: PgPool) {
    let url = crate::support::url_of(&pool).await;
    let mut receiver = Receiver::start(2).await;
    let mut a = Served::start(&url, "500ms").await;
    let (status, body) = a
        .post(
            "/api/webhooks",
            json!({"url": receiver.url, "events": ["action.created"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let hook = body["webhook"]["id"].as_str().unwrap().to_owned();
    let secret = body["webhook"]["secret"].as_str().unwrap().to_owned();
    let action = json!({"agent_id": "a", "action_type": "research", "declared_goal": "g"});
    let (status, body) = a.post("/api/actions", action.clone()).await;
    assert!(status.is_success(), "{body}");
    let first_action = body["action_id"].as_str().unwrap().to_owned();
    let first = receiver.next(Duration::from_secs(20)).await;
    assert_eq!(first.answered, StatusCode::INTERNAL_SERVER_ERROR);
    // A crash: no graceful anything.
    a.child.kill().await.unwrap();

    let mut b = Served::start(&url, "50ms").await;
    let (status, body) = b.post("/api/actions", action).await;
    assert!(status.is_success(), "{body}");
    let second_action = body["action_id"].as_str().unwrap().to_owned();
    let mut got = vec![first];
    let mut delivered: HashMap<String, String> = HashMap::new();
    while delivered.len() < 2 {
        let r = receiver.next(Duration::from_secs(20)).await;
        if r.answered == StatusCode::OK {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let action = body["data"]["action_id"].as_str().unwrap().to_owned();
            assert!(
                delivered.insert(r.delivery.clone(), action).is_none(),
                "delivered twice"
            );
        }
        got.push(r);
    }
    // A graceful stop (SIGTERM): B records the attempts it has in flight, then exits.
    let pid = b.child.id().unwrap().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    let exited = tokio::time::timeout(Duration::from_secs(30), b.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exited.success(), "{exited:?}");
    assert!(receiver.requests.try_recv().is_err(), "an extra request");
    let actions: HashSet<&String> = delivered.values().collect();
    assert_eq!(actions, HashSet::from([&first_action, &second_action]));
    for r in &got {
        assert_signed(r, &secret);
    }
    // The outbox has one row per event, both delivered; every recorded attempt was made.
    let rows: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT delivery_id, attempts, state FROM webhook_outbox WHERE webhook_id = $1",
    )
    .bind(&hook)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (id, attempts, state) in &rows {
        assert_eq!(state, "delivered");
        let sent = got.iter().filter(|r| &r.delivery == id).count();
        assert!(
            *attempts as usize <= sent && *attempts >= 2,
            "{id}: {attempts} of {sent}"
        );
    }
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_receiver_that_hangs_does_not_hold_up_other_webhooks(pool: PgPool) {
    let mut config = config(Duration::from_secs(60));
    config.service.webhooks.timeout = Duration::from_secs(3);
    let api = Api::with_config(pool, config).await;
    // A receiver that accepts requests and never answers.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_url = format!("http://{}/hook", hanging.local_addr().unwrap());
    tokio::spawn(async move {
        let app = axum::Router::new().route("/hook", post(std::future::pending::<()>));
        axum::serve(hanging, app).await.unwrap();
    });
    let mut fast = Receiver::start(0).await;
    register(&api, &hanging_url, json!(["action.created"])).await;
    register(&api, &fast.url, json!(["action.created"])).await;

    record_action(&api, "research").await;
    fast.next(Duration::from_secs(2)).await;
    // The first pass now waits for the hanging receiver (up to the 3 s timeout); the next
    // event still reaches the fast receiver at once, through another worker.
    let started = Instant::now();
    record_action(&api, "research").await;
    let second = fast.next(Duration::from_secs(2)).await;
    assert_eq!(second.answered, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "held up for {:?}",
        started.elapsed()
    );
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn deleting_a_webhook_cancels_its_pending_deliveries(pool: PgPool) {
    // The retry would come a minute later.
    let api = Api::with_config(pool, config(Duration::from_secs(60))).await;
    let mut receiver = Receiver::start(usize::MAX).await;
    let (hook, _) = register(&api, &receiver.url, json!(["action.created"])).await;
    record_action(&api, "research").await;
    let first = receiver.next(Duration::from_secs(10)).await;
    assert_eq!(first.answered, StatusCode::INTERNAL_SERVER_ERROR);
    // Quiesce the worker so that the failed attempt is recorded.
    api.state.service.stop().await;
    let (status, body) = api
        .call(
            Method::DELETE,
            &format!("/api/webhooks?id={hook}"),
            &api.admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let states: Vec<(String, i32)> =
        sqlx::query_as("SELECT state, attempts FROM webhook_outbox WHERE webhook_id = $1")
            .bind(&hook)
            .fetch_all(&api.pool)
            .await
            .unwrap();
    assert_eq!(states, [("cancelled".to_owned(), 1)]);
    // Nothing is queued for it any more.
    record_action(&api, "research").await;
    assert_eq!(queued(&api, &hook).await.len(), 1);
}

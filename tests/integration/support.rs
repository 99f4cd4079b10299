//! Shared helpers: URLs of the per-test database, appending sample events, running the binary.

use std::process::Output;
use std::str::FromStr;

use dashclaw_events::{CanonicalJson, OrgId};
use dashclaw_store::{Appended, Appender, NewEvent};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};

/// A `DATABASE_URL` for the database behind `pool` (the per-test database of `#[sqlx::test]`).
pub async fn url_of(pool: &PgPool) -> String {
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").expect("tests/run sets DATABASE_URL");
    PgConnectOptions::from_str(&base)
        .unwrap()
        .database(&name)
        .to_url_lossy()
        .to_string()
}

pub fn org(name: &str) -> OrgId {
    OrgId::new(name).unwrap()
}

pub fn event(n: usize) -> NewEvent {
    let mut metadata = serde_json::Map::new();
    metadata.insert("actor".into(), json!("tester"));
    metadata.insert("request_id".into(), json!(format!("req-{n}")));
    NewEvent {
        event_type: "ThingHappened".into(),
        event_version: "1.0".into(),
        payload: CanonicalJson::encode(&json!({"n": n, "note": "ünïcødé \"quoted\"", "x": 1.5}))
            .unwrap(),
        metadata,
    }
}

/// Appends `count` single-event appends to fresh streams of `org`.
pub async fn seed(appender: &Appender, org: &OrgId, count: usize) -> Vec<Appended> {
    let mut out = Vec::with_capacity(count);
    for n in 0..count {
        let stream = org.stream_id(&format!("thing_{n}"));
        out.push(
            appender
                .append("Thing", &stream, 1, vec![event(n)])
                .await
                .unwrap(),
        );
    }
    out
}

/// Runs the `dashclaw` binary with `DATABASE_URL` set to `url`.
pub fn dashclaw(url: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dashclaw"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the dashclaw binary runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A pool of its own on the database behind `pool`, as a separate server node would have. (A
/// `#[sqlx::test]` pool has 5 connections; two servers sharing it starve each other under a
/// loaded test run, since each holds one for its ledger tail's LISTEN.)
pub async fn own_pool(pool: &PgPool, max_connections: u32) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .connect(&url_of(pool).await)
        .await
        .unwrap()
}

/// [`dashclaw`] without blocking the test's runtime: a server running in the test process
/// keeps serving (and folding) while the command runs. (A blocked runtime can freeze the
/// server mid-catch-up holding a checkpoint lock that the command then waits for.)
pub async fn dashclaw_async(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_dashclaw"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the dashclaw binary runs")
}

/// The database's signing key as a tree-head signer under the tests' log origin
/// (`localhost`, the default of `Config::new`).
pub async fn signer(pool: &PgPool) -> dashclaw_events::LogSigner {
    let key = dashclaw_store::keys::signing_key(pool, None).await.unwrap();
    dashclaw_events::LogSigner::new(key, "localhost").unwrap()
}

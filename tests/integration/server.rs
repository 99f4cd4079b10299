//! The HTTP edge (router tests without a socket) and `dashclaw up` end to end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dashclaw::server::{app, AppState, Config};
use dashclaw_events::Jwks;
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;

async fn get(pool: &PgPool, uri: &str) -> (StatusCode, Option<String>, Value) {
    let state = AppState::start(pool.clone(), Config::new(None))
        .await
        .unwrap();
    let response = app(state)
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let cache = response
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, cache, serde_json::from_slice(&body).unwrap())
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn health_reports_version_and_database(pool: PgPool) {
    let (status, _, body) = get(&pool, "/api/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["database"], "connected");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn jwks_publishes_the_signing_key_by_thumbprint(pool: PgPool) {
    // A server starts with its signing key (generated once, then kept in the database).
    let key = dashclaw_store::keys::signing_key(&pool, None)
        .await
        .unwrap();
    for uri in ["/.well-known/jwks.json", "/api/integrity/jwks"] {
        let (status, cache, body) = get(&pool, uri).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(cache.as_deref(), Some("public, max-age=300"));
        let jwks: Jwks = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(jwks.keys[0].kid.as_deref(), Some(key.kid()));
        assert_eq!(jwks.keys[0].thumbprint(), key.kid());
        assert!(
            body["keys"][0].get("d").is_none(),
            "the private key must never be published"
        );
    }
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_configured_signing_key_is_used_and_published(pool: PgPool) {
    let configured = dashclaw_events::LedgerKey::from_seed([42; 32]);
    let jwk = serde_json::to_string(&configured.private_jwk()).unwrap();
    let key = dashclaw_store::keys::signing_key(&pool, Some(&jwk))
        .await
        .unwrap();
    assert_eq!(key.kid(), configured.kid());
    let published = dashclaw_store::keys::published(&pool).await.unwrap();
    assert_eq!(published.keys.len(), 1);
    assert_eq!(published.keys[0].d, None);
    let bad = dashclaw_store::keys::signing_key(&pool, Some("{\"kty\":\"RSA\"}")).await;
    assert!(bad.is_err());
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn unknown_routes_answer_a_json_404(pool: PgPool) {
    // Without a key an unknown API route is refused like a known one (nothing tells which
    // routes exist); with a key it is a JSON 404, and so is any path outside the API.
    let (status, _, body) = get(&pool, "/api/nope").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "UNAUTHORIZED");
    let (status, _, body) = get(&pool, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "NOT_FOUND");
    assert_eq!(body["error"], "Not found");
}

fn http_get(address: &str, path: &str) -> String {
    http_get_with_key(address, path, "")
}

fn http_get_with_key(address: &str, path: &str, key: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// `dashclaw up` with no DATABASE_URL: provisions a private cluster, prints an admin key once,
/// serves, shuts down cleanly on SIGTERM (stopping its cluster), and `verify` reads it after.
#[test]
fn up_provisions_a_private_postgres_and_serves() {
    let data_dir = std::env::temp_dir().join(format!("dashclaw-up-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    std::fs::create_dir_all(&data_dir).unwrap();
    let dir = data_dir.join("data");

    let mut child = Command::new(env!("CARGO_BIN_EXE_dashclaw"))
        .args(["up", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .env_remove("DASHCLAW_API_KEY")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let key_line = lines.next().unwrap().unwrap();
    assert!(
        key_line.starts_with("admin API key (shown only now; store it): oc_live_"),
        "{key_line}"
    );
    let listening = lines.next().unwrap().unwrap();
    let address = listening
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {listening:?}"))
        .to_owned();

    let health = http_get(&address, "/api/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"database\":\"connected\""), "{health}");
    let jwks = http_get(&address, "/.well-known/jwks.json");
    assert!(jwks.contains("\"kty\":\"OKP\""), "{jwks}");
    // The printed key works at once; no key is refused.
    let key = key_line.rsplit(' ').next().unwrap();
    let actions = http_get_with_key(&address, "/api/actions", key);
    assert!(actions.starts_with("HTTP/1.1 200"), "{actions}");
    let refused = http_get(&address, "/api/actions");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(
        child.wait().unwrap().success(),
        "up should exit cleanly on SIGTERM"
    );
    assert!(
        !dir.join("pg/postmaster.pid").exists(),
        "up should stop the cluster it started"
    );

    // Other commands find the private cluster through --data-dir (and stop it again after).
    let verify = Command::new(env!("CARGO_BIN_EXE_dashclaw"))
        .args(["verify", "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("intact: 1 events"),
        "the minted key is the one event"
    );
    assert!(!dir.join("pg/postmaster.pid").exists());
    std::fs::remove_dir_all(&data_dir).unwrap();
}

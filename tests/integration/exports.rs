//! Compliance exports: `dashclaw export` writes a directory that `dashclaw verify-export`
//! verifies offline; a second export proves the first one's tree is a prefix of its own; an
//! edited, dropped or reordered line, an edited manifest and a foreign key set each fail at
//! the check that names them; the streaming API serves the same lines and manifest.

use axum::http::StatusCode;
use dashclaw_events::export::{ExportVerifier, Manifest};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::Api;
use crate::support::{dashclaw_async, stdout, url_of};

async fn activity(api: &Api, n: usize) {
    for i in 0..n {
        let (status, body) = api
            .post(
                "/api/guard",
                &api.member,
                json!({"action_type": "deploy", "declared_goal": format!("ship {i}"), "agent_id": "a"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dashclaw-exports-{}-{name}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn export(url: &str, out: &std::path::Path) -> String {
    let out = dashclaw_async(
        url,
        &[
            "export",
            "--org",
            "org_default",
            "--log-origin",
            "localhost",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

async fn verify_export(url: &str, dir: &std::path::Path, jwks: &str) -> (Option<i32>, String) {
    let out = dashclaw_async(
        url,
        &["verify-export", dir.to_str().unwrap(), "--jwks", jwks],
    )
    .await;
    (out.status.code(), stdout(&out))
}

fn copy_dir(from: &std::path::Path, name: &str) -> std::path::PathBuf {
    let to = scratch(name);
    std::fs::create_dir_all(&to).unwrap();
    for file in ["events.jsonl", "manifest.json"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
    to
}

fn edit_lines(dir: &std::path::Path, edit: impl FnOnce(&mut Vec<String>)) {
    let path = dir.join("events.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    edit(&mut lines);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn exports_verify_offline_chain_to_each_other_and_catch_every_edit(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let url = url_of(&pool).await;
    activity(&api, 20).await;
    let jwks_dir = scratch("keys");
    std::fs::create_dir_all(&jwks_dir).unwrap();
    let jwks = jwks_dir.join("jwks.json");
    let (_, keys) = api.get("/.well-known/jwks.json", "").await;
    std::fs::write(&jwks, keys.to_string()).unwrap();
    let jwks = jwks.to_str().unwrap().to_owned();

    let first = scratch("first");
    let printed = export(&url, &first).await;
    assert!(printed.contains("the org's first export"), "{printed}");
    let (code, text) = verify_export(&url, &first, &jwks).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok     previous export: none"), "{text}");
    assert!(text.contains("VERIFIED:"), "{text}");
    let events = api.events().await as u64;
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(first.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        (manifest.first_ledger_seq, manifest.events),
        (1, manifest.last_ledger_seq)
    );
    assert!(manifest.events <= events && manifest.events >= 20);
    assert_eq!(manifest.counts["GuardDecisionRecorded"], 20);

    // A second export proves the first one's tree is a prefix of its own.
    activity(&api, 5).await;
    let second = scratch("second");
    let printed = export(&url, &second).await;
    assert!(
        printed.contains("consistent with the previous export's head"),
        "{printed}"
    );
    let (code, text) = verify_export(&url, &second, &jwks).await;
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("ok     previous export: the previous export's tree of"),
        "{text}"
    );

    // Refusing to overwrite.
    let out = dashclaw_async(
        &url,
        &["export", "--org", "org_default", second.to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));

    // Each edit fails at its check.
    type Edit = Box<dyn FnOnce(&std::path::Path)>;
    let cases: [(&str, Edit, &str); 6] = [
        (
            "edited",
            Box::new(|d| edit_lines(d, |l| l[10] = l[10].replace("ship ", "sail "))),
            "FAIL   event hashes: line 11",
        ),
        (
            "dropped",
            Box::new(|d| edit_lines(d, |l| drop(l.remove(5)))),
            "FAIL   chain links: line 6",
        ),
        (
            "reordered",
            Box::new(|d| edit_lines(d, |l| l.swap(7, 8))),
            "FAIL   chain links: line 8",
        ),
        (
            "truncated",
            Box::new(|d| edit_lines(d, |l| drop(l.pop()))),
            "FAIL   counts",
        ),
        (
            "manifest",
            Box::new(|d| {
                let path = d.join("manifest.json");
                let mut m: Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                m["counts"]["GuardDecisionRecorded"] = json!(1);
                std::fs::write(&path, m.to_string()).unwrap();
            }),
            "FAIL   manifest signature",
        ),
        (
            "unknown",
            Box::new(|d| edit_lines(d, |l| l.push("{\"no\": \"hash\"}".into()))),
            "FAIL   event hashes",
        ),
    ];
    for (name, edit, expected) in cases {
        let dir = copy_dir(&second, name);
        edit(&dir);
        let (code, text) = verify_export(&url, &dir, &jwks).await;
        assert_eq!(code, Some(1), "{name}: {text}");
        assert!(text.contains(expected), "{name}: {text}");
        assert!(text.contains("NOT VERIFIED"), "{name}: {text}");
    }

    // A key set without the signing key.
    let stranger = dashclaw_events::LedgerKey::from_seed([9; 32]);
    let foreign = jwks_dir.join("foreign.json");
    std::fs::write(
        &foreign,
        json!({"keys": [stranger.public_jwk()]}).to_string(),
    )
    .unwrap();
    let (code, text) = verify_export(&url, &second, foreign.to_str().unwrap()).await;
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("FAIL   manifest signature"), "{text}");

    // Not an export at all.
    let empty = scratch("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _) = verify_export(&url, &empty, &jwks).await;
    assert_eq!(code, Some(2));
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn the_export_api_streams_the_lines_and_the_signed_manifest(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    activity(&api, 12).await;
    let request = axum::http::Request::get("/api/compliance/export")
        .header("x-api-key", &api.readonly)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(api.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let body = axum::body::to_bytes(response.into_body(), 1 << 26)
        .await
        .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let last: Value = serde_json::from_str(lines.pop().unwrap()).unwrap();
    let manifest = serde_json::to_string(&last["manifest"]).unwrap();
    let (_, keys) = api.get("/.well-known/jwks.json", "").await;
    let keys = serde_json::from_value(keys).unwrap();
    let mut verifier = ExportVerifier::open(&manifest, &keys)
        .map_err(|e| e.1)
        .unwrap();
    assert_eq!(verifier.manifest().events as usize, lines.len());
    for line in &lines {
        verifier.push(line).unwrap();
    }
    let (passed, outcome) = verifier.finish(&keys);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(passed.len(), 7, "{passed:?}");

    // A range in the future holds nothing; a reversed one is refused.
    let soon = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, _) = api
        .get(
            &format!("/api/compliance/export?from={soon}&to=2020-01-01T00:00:00Z"),
            &api.readonly,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

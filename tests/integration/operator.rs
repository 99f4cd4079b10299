//! The operator CLI (`dashclaw approvals`, `approve`, `deny`): the real binary against a real
//! server on loopback, and its errors for a missing key, an unreachable server and a refusal.

use std::net::SocketAddr;
use std::process::Output;

use axum::http::StatusCode;
use dashclaw::server::serve;
use serde_json::json;
use sqlx::PgPool;

use crate::api::Api;

/// Runs `dashclaw args` with the given base URL and key (none: the variable is unset).
async fn cli(base: &str, key: Option<&str>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dashclaw"));
    command
        .args(args)
        .env("DASHCLAW_BASE_URL", base)
        .env("RUST_LOG", "warn")
        .env_remove("DASHCLAW_API_KEY");
    if let Some(key) = key {
        command.env("DASHCLAW_API_KEY", key);
    }
    command.output().await.expect("the dashclaw binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Serves `api`'s state on a loopback port; returns the base URL.
async fn listen(api: &Api) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, api.state.clone(), std::future::pending()));
    format!("http://{address}")
}

async fn held_action(api: &Api, goal: &str) -> String {
    let (status, body) = api
        .post(
            "/api/actions",
            &api.member,
            json!({"agent_id": "agent-1", "action_type": "deploy", "declared_goal": goal}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["action_id"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn the_cli_lists_approves_and_denies_held_actions(pool: PgPool) {
    let api = Api::start(pool).await;
    let base = listen(&api).await;
    let (status, body) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": "Deploys need a human", "policy_type": "require_approval",
                   "rules": {"action_types": ["deploy"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let first = held_action(&api, "roll out v2").await;
    let second = held_action(&api, "roll out v3").await;

    let out = cli(&base, Some(&api.admin), &["approvals"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(listed.contains("2 action(s) pending approval"), "{listed}");
    for id in [&first, &second] {
        assert!(listed.contains(id.as_str()), "{listed}");
    }
    assert!(listed.contains("risk "), "{listed}");
    assert!(listed.contains("reasons: "), "{listed}");
    assert!(listed.contains("Deploys need a human"), "{listed}");

    let out = cli(&base, Some(&api.admin), &["approvals", "--json"]).await;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);

    let out = cli(
        &base,
        Some(&api.admin),
        &["approve", &first, "--reason", "change window open"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("approved {first}: status running")));
    let out = cli(
        &base,
        Some(&api.admin),
        &["deny", &second, "--reason", "not today"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("denied {second}: status failed")));

    let (_, approved) = api.get(&format!("/api/actions/{first}"), &api.admin).await;
    assert_eq!(approved["action"]["status"], "running");
    assert!(approved["action"]["approved_by"]
        .as_str()
        .unwrap()
        .starts_with("key_"));
    assert!(approved["action"]["reasoning"]
        .as_str()
        .unwrap()
        .contains("change window open"));
    let (_, denied) = api.get(&format!("/api/actions/{second}"), &api.admin).await;
    assert_eq!(denied["action"]["status"], "failed");

    let out = cli(&base, Some(&api.admin), &["approvals"]).await;
    assert!(text(&out.stdout).contains("no actions pending approval"));

    // A refusal: the server's message and code, exit 1.
    let out = cli(&base, Some(&api.admin), &["approve", &first]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("Action is not pending approval") && err.contains("NOT_PENDING_APPROVAL"),
        "{err}"
    );
    let out = cli(&base, Some(&api.member), &["approve", &second]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("HTTP 403"),
        "{}",
        text(&out.stderr)
    );
    let out = cli(&base, Some("oc_live_wrong"), &["approvals"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("HTTP 401"),
        "{}",
        text(&out.stderr)
    );
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn the_cli_explains_a_missing_key_and_an_unreachable_server(pool: PgPool) {
    let api = Api::start(pool).await;
    let base = listen(&api).await;
    let out = cli(&base, None, &["approvals"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("DASHCLAW_API_KEY"),
        "{}",
        text(&out.stderr)
    );

    // A port nobody listens on (bound, then released).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = cli(
        &format!("http://{closed}"),
        Some(&api.admin),
        &["approvals"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("cannot reach the dashclaw server"), "{err}");

    let out = cli("not a url", Some(&api.admin), &["approve", "act_x"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("DASHCLAW_BASE_URL"));
}

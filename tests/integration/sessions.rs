//! Agent sessions: started running, updated (each status change a session event with its
//! detail), refused once closed, listed with what their actions add up to (actions that name
//! the session, or its agent's inside its lifetime); other orgs' sessions are not found; bad
//! input is refused and writes nothing.

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::api::{assert_client_error, Api};

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_session_lives_changes_and_closes_on_the_chain(pool: PgPool) {
    let api = Api::start(pool).await;
    let (status, created) = api
        .post(
            "/api/sessions",
            &api.member,
            json!({"agent_id": "coder", "workspace": "/repo", "branch": "main"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let s = &created["session"];
    let id = s["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sess_") && id.len() == 17, "{id}");
    assert_eq!(s["status"], "running");
    assert_eq!(s["org_id"], "org_default");
    assert_eq!(s["action_count"], 0);
    assert_eq!(s["event_count"], 1);

    // Two actions belong to it: one names it, one is its agent's inside its lifetime; one
    // of another agent does not.
    for (agent, session, cost) in [
        ("coder", Some(id.as_str()), 0.25),
        ("coder", None, 0.5),
        ("other", None, 4.0),
    ] {
        let mut body = json!({"agent_id": agent, "action_type": "build",
            "declared_goal": "compile", "cost_estimate": cost, "risk_score": 10});
        if let Some(session) = session {
            body["session_id"] = json!(session);
        }
        let (status, answer) = api.post("/api/actions", &api.member, body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }

    let (status, blocked) = api
        .call(
            Method::PATCH,
            &format!("/api/sessions/{id}"),
            &api.member,
            Some(
                json!({"status": "blocked", "blocked_reason": "waiting for CI",
                        "green_level": "package", "commits_behind": 2}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{blocked}");
    let b = &blocked["session"];
    assert_eq!(b["status"], "blocked");
    assert_eq!(b["blocked_reason"], "waiting for CI");
    assert_eq!(b["green_level"], "package");
    assert_eq!(b["commits_behind"], 2);
    assert_eq!(b["action_count"], 2, "{b}");
    assert_eq!(b["total_cost"], 0.75);
    assert_eq!(b["last_declared_goal"], "compile");

    let (status, closed) = api
        .call(
            Method::PATCH,
            &format!("/api/sessions/{id}"),
            &api.member,
            Some(json!({"status": "closed", "summary": "merged"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{closed}");
    assert_eq!(closed["session"]["status"], "closed");
    assert_eq!(closed["session"]["blocked_reason"], json!(null));

    let (status, events) = api
        .get(&format!("/api/sessions/{id}/events"), &api.readonly)
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let kinds: Vec<(i64, &str, Option<&str>)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["kind"].as_str().unwrap(),
                e["detail"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "running", None),
            (2, "blocked", Some("waiting for CI")),
            (3, "closed", Some("merged"))
        ]
    );

    // Closed is final: an update is refused and writes nothing.
    let before = api.events().await;
    let (status, body) = api
        .call(
            Method::PATCH,
            &format!("/api/sessions/{id}"),
            &api.member,
            Some(json!({"status": "running"})),
        )
        .await;
    assert_client_error(status, &body, StatusCode::CONFLICT);
    assert_eq!(body["error"], "Session is closed and cannot be updated");
    assert_eq!(api.events().await, before);

    // Listed, filtered; the chain holds the session's three events.
    let (_, listed) = api
        .get("/api/sessions?agent_id=coder&status=closed", &api.readonly)
        .await;
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{listed}");
    assert_eq!(sessions[0]["id"], id.as_str());
    assert_eq!(sessions[0]["action_count"], 2);
    let (_, none) = api.get("/api/sessions?status=running", &api.readonly).await;
    assert_eq!(none["sessions"], json!([]));
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type = 'Session' ORDER BY ledger_seq",
    )
    .fetch_all(&api.pool)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        ["SessionStarted", "SessionUpdated", "SessionUpdated"]
    );

    // Another org does not find it.
    for uri in [
        format!("/api/sessions/{id}"),
        format!("/api/sessions/{id}/events"),
    ] {
        let (status, body) = api.get(&uri, &api.other_org).await;
        assert_client_error(status, &body, StatusCode::NOT_FOUND);
    }
    let (_, theirs) = api.get("/api/sessions", &api.other_org).await;
    assert_eq!(theirs["sessions"], json!([]));
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn bad_session_input_is_refused_and_writes_nothing(pool: PgPool) {
    let api = Api::start(pool).await;
    let (_, created) = api
        .post("/api/sessions", &api.member, json!({"agent_id": "coder"}))
        .await;
    let id = created["session"]["id"].as_str().unwrap().to_owned();
    let before = api.events().await;
    let uri = format!("/api/sessions/{id}");
    for (method, uri, key, body, expected) in [
        (
            Method::POST,
            "/api/sessions",
            &api.member,
            json!({}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/sessions",
            &api.member,
            json!({"agent_id": 7}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/sessions",
            &api.readonly,
            json!({"agent_id": "a"}),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::PATCH,
            uri.as_str(),
            &api.member,
            json!({}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            uri.as_str(),
            &api.member,
            json!({"status": "dancing"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            uri.as_str(),
            &api.member,
            json!({"green_level": "emerald"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            uri.as_str(),
            &api.member,
            json!({"commits_behind": -1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            uri.as_str(),
            &api.readonly,
            json!({"status": "idle"}),
            StatusCode::FORBIDDEN,
        ),
        (
            Method::PATCH,
            "/api/sessions/sess_000000000000",
            &api.member,
            json!({"status": "idle"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, answer) = api.call(method, uri, key, Some(body.clone())).await;
        assert_client_error(status, &answer, expected);
        assert_eq!(api.events().await, before, "{body} wrote");
    }
    for uri in ["/api/sessions?status=dancing", "/api/sessions?limit=x"] {
        let (status, answer) = api.get(uri, &api.member).await;
        assert_client_error(status, &answer, StatusCode::BAD_REQUEST);
    }
    let (status, answer) = api.get("/api/sessions/nope", &api.member).await;
    assert_client_error(status, &answer, StatusCode::NOT_FOUND);
}

//! Agent pairing and identities: a pairing waits for an admin (15 minutes, then expired), its
//! approval registers the key on the agent's identity stream; admins register keys directly;
//! bad keys and bad input write nothing; other orgs find nothing. Containment verdicts are
//! refused with the reason (no action is ever contained here).

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::api::{assert_client_error, Api};

const PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_pairing_approved_in_time_registers_the_agents_key(pool: PgPool) {
    let api = Api::start(pool).await;
    let (status, requested) = api
        .post(
            "/api/pairings",
            &api.member,
            json!({"agent_id": "coder", "public_key": PEM, "algorithm": "Ed25519"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{requested}");
    let id = requested["pairing"]["id"].as_str().unwrap().to_owned();
    assert_eq!(requested["pairing"]["status"], "pending");
    let (status, body) = api
        .post(
            &format!("/api/pairings/{id}/approve"),
            &api.member,
            json!({}),
        )
        .await;
    assert_client_error(status, &body, StatusCode::FORBIDDEN);
    let (status, approved) = api
        .post(
            &format!("/api/pairings/{id}/approve"),
            &api.admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["pairing"]["status"], "approved");
    let (status, again) = api
        .post(
            &format!("/api/pairings/{id}/approve"),
            &api.admin,
            json!({}),
        )
        .await;
    assert_client_error(status, &again, StatusCode::CONFLICT);
    let (_, listed) = api.get("/api/identities", &api.readonly).await;
    assert_eq!(listed["identities"][0]["agent_id"], "coder", "{listed}");
    assert_eq!(listed["identities"][0]["via"], format!("pairing:{id}"));

    // A pairing nobody approves expires after 15 minutes.
    let (_, late) = api
        .post(
            "/api/pairings",
            &api.member,
            json!({"agent_id": "slow", "public_key": PEM, "algorithm": "Ed25519"}),
        )
        .await;
    let late = late["pairing"]["id"].as_str().unwrap().to_owned();
    api.state
        .service
        .clock()
        .advance(chrono::Duration::minutes(16));
    let (_, read) = api.get(&format!("/api/pairings/{late}"), &api.member).await;
    assert_eq!(read["pairing"]["status"], "expired");
    let (status, body) = api
        .post(
            &format!("/api/pairings/{late}/approve"),
            &api.admin,
            json!({}),
        )
        .await;
    assert_client_error(status, &body, StatusCode::GONE);

    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_type IN ('Pairing', 'AgentIdentity')
          ORDER BY ledger_seq",
    )
    .fetch_all(&api.pool)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        [
            "PairingRequested",
            "PairingApproved",
            "AgentKeyRegistered",
            "PairingRequested"
        ]
    );

    // Other orgs find nothing.
    let (status, body) = api
        .get(&format!("/api/pairings/{id}"), &api.other_org)
        .await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND);
    let (_, theirs) = api.get("/api/identities", &api.other_org).await;
    assert_eq!(theirs["identities"], json!([]));
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn bad_keys_and_bad_input_are_refused_and_write_nothing(pool: PgPool) {
    let api = Api::start(pool).await;
    let (_, created) = api
        .post(
            "/api/actions",
            &api.member,
            json!({"agent_id": "a", "action_type": "x", "declared_goal": "g"}),
        )
        .await;
    let action = created["action_id"].as_str().unwrap().to_owned();
    let containment = format!("/api/actions/{action}/containment");
    let before = api.events().await;
    for (uri, key, body, expected) in [
        (
            "/api/pairings",
            &api.member,
            json!({"public_key": PEM}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/pairings",
            &api.member,
            json!({"agent_id": "a", "public_key": "not a key"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/pairings",
            &api.member,
            json!({"agent_id": "a", "public_key": PEM, "algorithm": "ROT13"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/pairings",
            &api.readonly,
            json!({"agent_id": "a", "public_key": PEM}),
            StatusCode::FORBIDDEN,
        ),
        (
            "/api/identities",
            &api.member,
            json!({"agent_id": "a", "public_key": PEM}),
            StatusCode::FORBIDDEN,
        ),
        (
            "/api/identities",
            &api.admin,
            json!({"agent_id": "a", "public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/pairings/pair_0000000000000000/approve",
            &api.admin,
            json!({}),
            StatusCode::NOT_FOUND,
        ),
        (
            containment.as_str(),
            &api.admin,
            json!({"verdict": "keep"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            containment.as_str(),
            &api.member,
            json!({"verdict": "promote"}),
            StatusCode::FORBIDDEN,
        ),
        (
            containment.as_str(),
            &api.admin,
            json!({"verdict": "promote"}),
            StatusCode::CONFLICT,
        ),
        (
            "/api/actions/act_nope/containment",
            &api.admin,
            json!({"verdict": "discard"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, answer) = api.post(uri, key, body.clone()).await;
        assert_client_error(status, &answer, expected);
        assert_eq!(api.events().await, before, "{uri} {body} wrote");
    }
    let (status, answer) = api
        .get("/api/actions?containment_status=frozen", &api.member)
        .await;
    assert_client_error(status, &answer, StatusCode::BAD_REQUEST);
    let (_, none) = api
        .get(
            "/api/actions?containment_status=awaiting_promotion",
            &api.member,
        )
        .await;
    assert_eq!(none["actions"], json!([]));
    assert_eq!(none["total"], 0);
}

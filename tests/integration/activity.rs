//! The activity log (`GET /api/activity`), answered from the ledger: every event of the org,
//! newest first, filtered by agent and kind, with totals and pagination; another org's
//! events never appear; bad parameters are refused and change nothing.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::api::{assert_client_error, Api};

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn the_activity_log_is_the_ledger_newest_first(pool: PgPool) {
    let api = Api::start(pool).await;
    for agent in ["alpha", "alpha", "beta"] {
        let (status, _) = api
            .post(
                "/api/guard",
                &api.member,
                json!({"action_type": "deploy", "declared_goal": "ship", "agent_id": agent}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = api
        .post(
            "/api/guard",
            &api.other_org,
            json!({"action_type": "deploy", "agent_id": "alpha"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ours: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE org_id = 'org_default'")
        .fetch_one(&api.pool)
        .await
        .unwrap();

    let (status, all) = api.get("/api/activity", &api.readonly).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let logs = all["logs"].as_array().unwrap();
    assert_eq!(all["stats"]["total"], ours);
    assert_eq!(all["stats"]["today"], ours);
    assert_eq!(logs.len() as i64, ours.min(50));
    let seqs: Vec<i64> = logs
        .iter()
        .map(|l| l["ledger_seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    assert_eq!(logs[0]["action"], "GuardDecisionRecorded");
    assert_eq!(logs[0]["resource_type"], "GuardDecision");
    assert_eq!(logs[0]["agent_id"], "beta");
    assert!(logs[0]["resource_id"]
        .as_str()
        .unwrap()
        .starts_with("act_gd_"));
    assert_eq!(
        logs[0]["details"]["Recorded"]["request"]["agent_id"],
        "beta"
    );
    assert_eq!(logs[0]["hash"].as_str().unwrap().len(), 64);
    // The three keys issued by the harness and the decisions' principal: several actors.
    assert!(
        all["stats"]["unique_actors"].as_u64().unwrap() >= 2,
        "{all}"
    );

    let (_, alpha) = api
        .get(
            "/api/activity?agent_id=alpha&type=guard_decision",
            &api.member,
        )
        .await;
    assert_eq!(alpha["stats"]["total"], 2, "{alpha}");
    assert!(alpha["logs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["agent_id"] == "alpha" && l["resource_type"] == "GuardDecision"));
    let (_, by_event) = api
        .get("/api/activity?type=ApiKeyIssued", &api.member)
        .await;
    assert_eq!(by_event["stats"]["total"], 3, "{by_event}");

    let (_, page) = api.get("/api/activity?limit=2&offset=1", &api.member).await;
    assert_eq!(page["pagination"], json!({"limit": 2, "offset": 1}));
    let page_seqs: Vec<i64> = page["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ledger_seq"].as_i64().unwrap())
        .collect();
    assert_eq!(page_seqs, seqs[1..3]);

    // The other org sees its own events only.
    let (_, theirs) = api.get("/api/activity", &api.other_org).await;
    assert!(theirs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["agent_id"] != "beta"));
    assert_eq!(
        theirs["stats"]["total"].as_i64().unwrap(),
        api.events().await - ours
    );
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn activity_refuses_bad_parameters_and_writes_nothing(pool: PgPool) {
    let api = Api::start(pool).await;
    let before = api.events().await;
    for query in ["limit=many", "offset=-", "limit=1.5"] {
        let (status, body) = api
            .get(&format!("/api/activity?{query}"), &api.member)
            .await;
        assert_client_error(status, &body, StatusCode::BAD_REQUEST);
    }
    let (status, _) = api.get("/api/activity", "not-a-key").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.events().await, before);
}

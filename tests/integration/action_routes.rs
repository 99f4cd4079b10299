//! The action routes beside the record: counts (`/api/actions/stats`), costs
//! (`/api/actions/costs`), cancelling a running action nobody claimed, and a JSON 405 for a
//! known route asked with the wrong method.

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::api::{assert_client_error, Api};

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn stats_and_costs_count_what_the_list_filters(pool: PgPool) {
    let api = Api::start(pool).await;
    for (agent, kind, cost, risk) in [
        ("a", "build", 1.5, 10),
        ("a", "deploy", 2.0, 80),
        ("b", "build", 0.25, 20),
    ] {
        let (status, answer) = api
            .post(
                "/api/actions",
                &api.member,
                json!({"agent_id": agent, "action_type": kind, "declared_goal": "g",
                       "cost_estimate": cost, "risk_score": risk}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let (status, all) = api.get("/api/actions/stats", &api.readonly).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["stats"]["total"], 3);
    assert_eq!(all["stats"]["total_cost"], 3.75);
    assert_eq!(all["stats"]["high_risk"], 1);
    let (_, a) = api
        .get("/api/actions/stats?agent_id=a", &api.readonly)
        .await;
    assert_eq!(a["stats"]["total"], 2);
    let (_, list) = api.get("/api/actions?agent_id=a", &api.readonly).await;
    assert_eq!(list["stats"]["total"], a["stats"]["total"]);
    let (status, body) = api
        .get("/api/actions/stats?status=dancing", &api.readonly)
        .await;
    assert_client_error(status, &body, StatusCode::BAD_REQUEST);

    let (status, costs) = api.get("/api/actions/costs?days=7", &api.readonly).await;
    assert_eq!(status, StatusCode::OK, "{costs}");
    assert_eq!(costs["window_days"], 7);
    assert_eq!(costs["total_cost_usd"], 3.75);
    let by_agent: Vec<(String, f64)> = costs["by_agent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["agent_id"].as_str().unwrap().to_owned(),
                g["cost_usd"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_agent, [("a".to_owned(), 3.5), ("b".to_owned(), 0.25)]);
    let (status, body) = api.get("/api/actions/costs?days=x", &api.readonly).await;
    assert_client_error(status, &body, StatusCode::BAD_REQUEST);
    // Another org's counts are its own.
    let (_, theirs) = api.get("/api/actions/stats", &api.other_org).await;
    assert_eq!(theirs["stats"]["total"], 0);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_running_unclaimed_action_is_cancelled_once_for_a_reason(pool: PgPool) {
    let api = Api::start(pool).await;
    let record = |key: String| {
        let api = &api;
        async move {
            let (status, answer) = api
                .post(
                    "/api/actions",
                    &key,
                    json!({"agent_id": "a", "action_type": "migrate", "declared_goal": "g"}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{answer}");
            answer["action_id"].as_str().unwrap().to_owned()
        }
    };
    let id = record(api.member.clone()).await;
    let uri = format!("/api/actions/{id}/cancel");
    let before = api.events().await;
    for (key, body, expected) in [
        (&api.member, json!({}), StatusCode::BAD_REQUEST),
        (
            &api.member,
            json!({"reason": "  "}),
            StatusCode::BAD_REQUEST,
        ),
        (&api.member, json!({"reason": 3}), StatusCode::BAD_REQUEST),
        (&api.readonly, json!({"reason": "r"}), StatusCode::FORBIDDEN),
        (
            &api.other_org,
            json!({"reason": "r"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, answer) = api.post(&uri, key, body.clone()).await;
        assert_client_error(status, &answer, expected);
        assert_eq!(api.events().await, before, "{body} wrote");
    }
    let (_, missing) = api.post(&uri, &api.member, json!({})).await;
    assert_eq!(missing["code"], "REASON_REQUIRED");

    let (status, cancelled) = api
        .post(&uri, &api.member, json!({"reason": "the window closed"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    let a = &cancelled["action"];
    assert_eq!(a["status"], "cancelled");
    assert_eq!(a["close_source"], "direct");
    assert_eq!(
        a["outcome_summary"],
        "Deliberately not executed: the window closed"
    );
    assert_eq!(api.events().await, before + 1);

    // Once: a second cancel, an outcome or a claim afterwards are refused.
    let (status, again) = api.post(&uri, &api.member, json!({"reason": "r"})).await;
    assert_client_error(status, &again, StatusCode::CONFLICT);
    assert_eq!(again["code"], "NOT_CANCELLABLE");
    assert_eq!(again["current_status"], "cancelled");
    let (status, outcome) = api
        .post(
            &format!("/api/actions/{id}/outcome"),
            &api.member,
            json!({"status": "completed"}),
        )
        .await;
    assert_client_error(status, &outcome, StatusCode::CONFLICT);

    // Someone else's action: an admin may cancel it, another member may not.
    let theirs = record(api.admin.clone()).await;
    let (status, body) = api
        .post(
            &format!("/api/actions/{theirs}/cancel"),
            &api.member,
            json!({"reason": "r"}),
        )
        .await;
    assert_client_error(status, &body, StatusCode::FORBIDDEN);
    let mine = record(api.member.clone()).await;
    let (status, body) = api
        .post(
            &format!("/api/actions/{mine}/cancel"),
            &api.admin,
            json!({"reason": "ops"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .post(
            "/api/actions/act_nope/cancel",
            &api.member,
            json!({"reason": "r"}),
        )
        .await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_known_route_with_the_wrong_method_answers_a_json_405(pool: PgPool) {
    let api = Api::start(pool).await;
    for (method, uri) in [
        (Method::DELETE, "/api/guard"),
        (Method::PUT, "/api/actions"),
        (Method::DELETE, "/api/sessions"),
        (Method::GET, "/api/actions/act_1/cancel"),
    ] {
        let (status, body) = api.call(method.clone(), uri, &api.member, None).await;
        assert_client_error(status, &body, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["code"], "METHOD_NOT_ALLOWED", "{method} {uri}");
    }
}

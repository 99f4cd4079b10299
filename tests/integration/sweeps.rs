//! The sweeps, in process with the server's clock advanced: a lost-confirmation sweep racing
//! late agent reports ends with exactly one outcome per action; approvals expire by their
//! (per-org) grace, once; checkpoints are signed every N events or T; each org's posture
//! snapshot is taken once per interval, one row a day; per-org settings over REST. (Several
//! nodes: `nodes.rs`.)

use std::sync::Arc;

use axum::http::StatusCode;
use dashclaw::service::sweep_effects::LedgerEffects;
use dashclaw_sweeps::{Settings, Sweeps};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::{assert_client_error, Api};

pub(crate) async fn sweeps_of(api: &Api, settings: Settings) -> Sweeps {
    let effects = LedgerEffects::new(api.state.service.clone());
    let clock = api.state.service.clock().clone();
    Sweeps::new(
        api.pool.clone(),
        settings,
        Arc::new(effects),
        Arc::new(move || clock.now()),
    )
}

/// Terminal events (outcome reported or confirmation lost) of each action, by id.
pub async fn terminal_events(pool: &PgPool, ids: &[String]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for id in ids {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_type = 'Action' AND aggregate_id = $1
                AND event_type IN ('ActionOutcomeReported', 'ActionConfirmationLost')",
        )
        .bind(format!("org_default/{id}"))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push((id.clone(), n));
    }
    out
}

async fn running_actions(api: &Api, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, body) = api
            .post(
                "/api/actions",
                &api.member,
                json!({"agent_id": "a", "action_type": "build", "declared_goal": format!("b{i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["action_id"].as_str().unwrap().to_owned());
    }
    ids
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_sweep_racing_late_reports_leaves_exactly_one_outcome_per_action(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let ids = running_actions(&api, 24).await;
    api.state
        .service
        .projections()
        .catch_up_all()
        .await
        .unwrap();
    let sweeps = sweeps_of(&api, Settings::default()).await;
    assert_eq!(sweeps.lost_confirmations().await.unwrap(), 0, "not due yet");
    api.state
        .service
        .clock()
        .advance(chrono::Duration::minutes(16));

    // The sweep and every agent's late report at the same time.
    let sweep = tokio::spawn(async move { sweeps.lost_confirmations().await });
    let api = &api;
    let reports = futures_util::future::join_all(ids.iter().map(|id| async move {
        let path = format!("/api/actions/{id}/outcome");
        api.post(
            &path,
            &api.member,
            json!({"status": "completed", "summary": "late"}),
        )
        .await
    }))
    .await;
    let swept = sweep.await.unwrap().unwrap();
    let accepted = reports.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    for (status, body) in &reports {
        assert!(
            *status == StatusCode::OK || *status == StatusCode::CONFLICT,
            "{status} {body}"
        );
    }
    assert_eq!(
        swept + accepted,
        ids.len(),
        "swept {swept}, accepted {accepted}"
    );
    for (id, n) in terminal_events(&pool, &ids).await {
        assert_eq!(n, 1, "{id} has {n} terminal events");
    }
    // Lost ones are signals; running the sweep again changes nothing.
    let sweeps = sweeps_of(api, Settings::default()).await;
    api.state
        .service
        .projections()
        .catch_up_all()
        .await
        .unwrap();
    assert_eq!(sweeps.lost_confirmations().await.unwrap(), 0);
    let (_, signals) = api.get("/api/signals", &api.member).await;
    let lost = signals["signals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == "lost_confirmation")
        .count();
    assert_eq!(lost, swept, "{signals}");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn pending_approvals_are_not_lost_but_expire_by_the_orgs_grace(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let (status, body) = api
        .call(
            axum::http::Method::PUT,
            "/api/settings/sweeps",
            &api.admin,
            Some(json!({"approval_grace": "1s", "lost_confirmation_timeout": "1m"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["effective"]["approval_grace"], "1s");
    let (status, _) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": "hold", "policy_type": "require_approval",
                   "rules": {"action_types": ["deploy"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, held) = api
        .post(
            "/api/actions",
            &api.member,
            json!({"agent_id": "a", "action_type": "deploy", "declared_goal": "ship",
                   "approval_wait_seconds": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    let id = held["action_id"].as_str().unwrap().to_owned();
    api.state
        .service
        .projections()
        .catch_up_all()
        .await
        .unwrap();
    let sweeps = sweeps_of(&api, Settings::default()).await;

    api.state
        .service
        .clock()
        .advance(chrono::Duration::seconds(5));
    assert_eq!(
        sweeps.expired_approvals().await.unwrap(),
        0,
        "within the grace"
    );
    api.state
        .service
        .clock()
        .advance(chrono::Duration::minutes(5));
    assert_eq!(
        sweeps.lost_confirmations().await.unwrap(),
        0,
        "a pending approval is never a lost confirmation"
    );
    assert_eq!(sweeps.expired_approvals().await.unwrap(), 1);
    let (_, action) = api.get(&format!("/api/actions/{id}"), &api.member).await;
    assert_eq!(action["action"]["status"], "expired", "{action}");
    api.state
        .service
        .projections()
        .catch_up_all()
        .await
        .unwrap();
    assert_eq!(sweeps.expired_approvals().await.unwrap(), 0, "exactly once");
    let (status, body) = api
        .post(
            &format!("/api/actions/{id}/approve"),
            &api.admin,
            json!({"decision": "allow"}),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn checkpoints_are_signed_every_n_events_or_after_t(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let (status, body) = api
        .call(
            axum::http::Method::PUT,
            "/api/settings/sweeps",
            &api.admin,
            Some(json!({"checkpoint_every_events": 5, "checkpoint_interval": "1h"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sweeps = sweeps_of(&api, Settings::default()).await;
    let checkpoints = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM checkpoints WHERE org_id = 'org_default'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    running_actions(&api, 3).await; // 6 events, plus the keys and the settings
    assert!(sweeps.checkpoints().await.unwrap() >= 1);
    let signed = checkpoints().await;
    assert_eq!(
        sweeps.checkpoints().await.unwrap(),
        0,
        "nothing new to sign"
    );
    running_actions(&api, 1).await; // 2 events: fewer than 5, younger than an hour
    assert_eq!(sweeps.checkpoints().await.unwrap(), 0);
    api.state
        .service
        .clock()
        .advance(chrono::Duration::minutes(61));
    // (org_other's unsigned key event is as old, under the server's default interval.)
    assert!(sweeps.checkpoints().await.unwrap() >= 1);
    assert_eq!(checkpoints().await, signed + 1, "old enough");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn sweep_settings_refuse_bad_input_and_non_admins(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let before = api.events().await;
    for body in [
        json!({"lost_confirmation_timeout": "soon"}),
        json!({"approval_grace": 60}),
        json!({"checkpoint_every_events": 0}),
        json!({"checkpoint_interval": "40 days"}),
        json!({"lost_confirmation_timout": "1m"}),
        json!([1]),
    ] {
        let (status, answer) = api
            .call(
                axum::http::Method::PUT,
                "/api/settings/sweeps",
                &api.admin,
                Some(body.clone()),
            )
            .await;
        assert_client_error(status, &answer, StatusCode::BAD_REQUEST);
        assert!(answer["error"].is_string(), "{body} -> {answer}");
    }
    for key in [&api.member, &api.readonly] {
        let (status, answer) = api
            .call(
                axum::http::Method::PUT,
                "/api/settings/sweeps",
                key,
                Some(json!({"approval_grace": "1m"})),
            )
            .await;
        assert_client_error(status, &answer, StatusCode::FORBIDDEN);
    }
    assert_eq!(api.events().await, before, "nothing was written");
    let (_, now) = api.get("/api/settings/sweeps", &api.admin).await;
    assert_eq!(now["overrides"]["approval_grace"], Value::Null, "{now}");
    assert_eq!(now["effective"]["lost_confirmation_timeout"], "15m");
}

/// The snapshots `GET /api/posture` shows the org of `key`: (score, when taken), newest first.
async fn posture_snapshots(api: &Api, key: &str) -> Vec<(i64, chrono::DateTime<chrono::Utc>)> {
    let (status, body) = api.get("/api/posture", key).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let at = chrono::DateTime::parse_from_rfc3339(s["createdAt"].as_str().unwrap());
            (s["score"].as_i64().unwrap(), at.unwrap().to_utc())
        })
        .collect()
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn posture_snapshots_are_taken_per_org_once_per_interval_one_row_a_day(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let clock = api.state.service.clock().clone();
    // Start just after a UTC midnight, so that the hour and more this test spans is one day
    // whenever it runs.
    let now = clock.now();
    let next_day = now.date_naive().succ_opt().unwrap();
    clock.advance(next_day.and_hms_opt(0, 1, 0).unwrap().and_utc() - now);
    let settings = Settings {
        posture_interval: std::time::Duration::from_secs(60 * 60),
        ..Settings::default()
    };
    let sweeps = sweeps_of(&api, settings).await;
    for i in 0..6 {
        let kind = if i % 2 == 0 { "deploy" } else { "research" };
        let (status, body) = api
            .post(
                "/api/guard",
                &api.member,
                json!({"action_type": kind, "agent_id": "a", "systems_touched": ["production"]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(posture_snapshots(&api, &api.readonly).await, vec![]);

    // org_default (its traffic) and org_other (only its key): every org with a ledger.
    assert_eq!(sweeps.run("posture_snapshots").await.unwrap(), 2);
    let (_, bare) = api.get("/api/posture", &api.readonly).await;
    let first = posture_snapshots(&api, &api.readonly).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, bare["score"].as_i64().unwrap());
    assert_eq!(posture_snapshots(&api, &api.other_org).await.len(), 1);
    assert_eq!(
        sweeps.run("posture_snapshots").await.unwrap(),
        0,
        "within the interval"
    );

    let (status, body) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": "hold deploys", "policy_type": "require_approval",
                   "rules": {"action_types": ["deploy"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, governed) = api.get("/api/posture", &api.readonly).await;
    let score = governed["score"].as_i64().unwrap();
    assert_ne!(score, first[0].0, "{governed}");
    assert_eq!(
        sweeps.run("posture_snapshots").await.unwrap(),
        0,
        "a changed score waits for the interval"
    );
    assert_eq!(posture_snapshots(&api, &api.readonly).await, first);

    clock.advance(chrono::Duration::minutes(61));
    assert_eq!(sweeps.run("posture_snapshots").await.unwrap(), 2);
    let later = posture_snapshots(&api, &api.readonly).await;
    assert_eq!(later.len(), 1, "still one row for the day: {later:?}");
    assert_eq!(later[0].0, score, "the newer score");
    assert!(later[0].1 > first[0].1, "taken later: {later:?} {first:?}");
    assert_eq!(sweeps.run("posture_snapshots").await.unwrap(), 0);

    // The next day keeps a row of its own.
    clock.advance(chrono::Duration::days(1));
    assert_eq!(sweeps.run("posture_snapshots").await.unwrap(), 2);
    let two_days = posture_snapshots(&api, &api.readonly).await;
    assert_eq!(two_days.len(), 2, "{two_days:?}");
    assert_eq!(two_days[1], later[0], "yesterday's row is kept");
    assert!(two_days[0].1 > later[0].1, "newest first");
}

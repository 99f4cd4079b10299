//! The projections are exact: killed mid-stream and resumed, they end identical to a rebuild
//! from zero, and both equal what the live projector built while the traffic ran (every read
//! model: decisions ledger, guard decision log, analytics, assumptions, API keys).

use std::process::Command;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::Api;
use crate::support::url_of;

/// Everything the projection wrote, in a stable order.
async fn snapshot(pool: &PgPool) -> Vec<Value> {
    let mut out = Vec::new();
    for sql in [
        "SELECT jsonb_build_object('doc', doc, 'status', status, 'outcome', outcome_status,
                'seq', ledger_seq) FROM action_records ORDER BY org_id, action_id",
        "SELECT to_jsonb(g) FROM guard_decisions g ORDER BY org_id, decision_id",
        "SELECT jsonb_build_object('doc', doc, 'seq', ledger_seq) FROM assumptions
          ORDER BY org_id, assumption_id",
        "SELECT jsonb_build_object('id', id, 'org', org_id, 'role', role, 'revoked', revoked_at)
           FROM api_keys ORDER BY id",
        "SELECT to_jsonb(a) FROM analytics_actions a
          ORDER BY org_id, day, agent_id, action_type, model",
        "SELECT to_jsonb(a) FROM analytics_approvals a ORDER BY org_id, action_id",
        "SELECT to_jsonb(a) FROM analytics_decisions a ORDER BY org_id, day, agent_id, decision",
        "SELECT jsonb_build_object('projection', projection, 'org', org_id, 'seq', ledger_seq)
           FROM projection_checkpoints WHERE projection IN ('governance', 'decisions')
          ORDER BY projection, org_id",
    ] {
        out.extend(
            sqlx::query_scalar::<_, Value>(sql)
                .fetch_all(pool)
                .await
                .unwrap(),
        );
    }
    out
}

/// A few hundred actions through the real API: allowed, held and approved or denied,
/// blocked, completed, failed, with assumptions.
async fn traffic(api: &Api) {
    let (status, _) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": "hold deploys", "policy_type": "require_approval", "rules": {"action_types": ["deploy"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for i in 0..150 {
        let kind = ["build", "deploy", "research"][i % 3];
        let (_, created) = api
            .post(
                "/api/actions",
                &api.member,
                json!({"agent_id": format!("agent-{}", i % 7), "action_type": kind, "declared_goal": format!("step {i}")}),
            )
            .await;
        let id = created["action_id"].as_str().unwrap().to_owned();
        if kind == "deploy" {
            let decision = if i % 2 == 0 { "allow" } else { "deny" };
            api.post(
                &format!("/api/actions/{id}/approve"),
                &api.admin,
                json!({"decision": decision}),
            )
            .await;
        }
        if i % 5 == 0 {
            api.post(
                "/api/assumptions",
                &api.member,
                json!({"action_id": id, "assumption": format!("a{i}")}),
            )
            .await;
        }
        let outcome = if i % 4 == 0 {
            json!({"status": "failed", "error_message": "boom"})
        } else {
            json!({"status": "completed"})
        };
        api.post(&format!("/api/actions/{id}/outcome"), &api.member, outcome)
            .await;
        api.call(
            Method::POST,
            "/api/guard",
            &api.member,
            Some(json!({"action_type": "research", "agent_id": "g"})),
        )
        .await;
    }
}

fn replay(url: &str, resume: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dashclaw"));
    command
        .arg("replay")
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .env("DASHCLAW_REPLAY_BATCH", "10");
    if resume {
        command.arg("--resume");
    }
    command
}

async fn checkpoint(pool: &PgPool) -> i64 {
    // The replayed projections' (the webhook outbox keeps its own checkpoints).
    sqlx::query_scalar(
        "SELECT COALESCE(sum(ledger_seq), 0)::int8 FROM projection_checkpoints
          WHERE projection IN ('governance', 'decisions')",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_projector_killed_mid_stream_resumes_to_the_same_state_as_a_rebuild(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    traffic(&api).await;
    api.state
        .service
        .projections()
        .catch_up_all()
        .await
        .unwrap();
    let live = snapshot(&pool).await;
    for table in [
        "analytics_actions",
        "analytics_approvals",
        "analytics_decisions",
    ] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(rows > 0, "the traffic left {table} empty: nothing compared");
    }
    drop(api);
    let url = url_of(&pool).await;
    let total: i64 = sqlx::query_scalar("SELECT sum(size)::int8 FROM ledger_heads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(total > 500, "{total}");

    // Forget the read models, start rebuilding them and kill the process (SIGKILL) once it
    // has committed its first batch, part-way through.
    let mut killed_mid_stream = false;
    let mut runs = Vec::new();
    let projector = dashclaw_projections::Projections::new(pool.clone());
    for _ in 0..5 {
        projector.reset().await.unwrap();
        let mut child = replay(&url, true)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Waits (without sleeping) for the first committed batch.
        while checkpoint(&pool).await == 0 && child.try_wait().unwrap().is_none() {}
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        let done = checkpoint(&pool).await;
        runs.push(format!(
            "{} at {done}/{total}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
        // Every projection keeps its own checkpoints: the sum ends at total x projections.
        let projections = projector.trackers().len() as i64;
        if done > 0 && done < total * projections {
            killed_mid_stream = true;
            break;
        }
    }
    assert!(
        killed_mid_stream,
        "the replay was never caught part-way: {runs:?}"
    );

    let resumed = replay(&url, true).output().unwrap();
    assert!(resumed.status.success(), "{resumed:?}");
    let after_crash = snapshot(&pool).await;

    let rebuilt = replay(&url, false).output().unwrap();
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    let stdout = String::from_utf8_lossy(&rebuilt.stdout);
    assert!(
        stdout.contains(&format!("replayed {total} events")),
        "{stdout}"
    );
    let from_zero = snapshot(&pool).await;

    assert_eq!(after_crash.len(), from_zero.len());
    assert_eq!(
        after_crash, from_zero,
        "resume after a crash differs from a rebuild"
    );
    assert_eq!(
        live, from_zero,
        "the live projection differs from a rebuild"
    );
}

/// Catch-ups racing over the same checkpoints (as several tasks and nodes do) fold every
/// window once: whoever finds the checkpoint moved drops what it prepared and looks again.
#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn racing_catch_ups_fold_every_event_once(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    traffic(&api).await;
    api.state
        .service
        .projections()
        .catch_up_all()
        .await
        .unwrap();
    let live = snapshot(&pool).await;
    drop(api);

    let projections = dashclaw_projections::Projections::new(pool.clone());
    projections.reset().await.unwrap();
    // Small windows, so that the racers meet many times.
    let trackers: Vec<_> = projections
        .trackers()
        .iter()
        .map(|t| t.clone().with_window(7))
        .collect();
    let org = dashclaw_domain::OrgId::new("org_default").unwrap();
    let passed = std::sync::atomic::AtomicU64::new(0);
    let count = |n| {
        passed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    };
    let racers = trackers
        .iter()
        .flat_map(|t| (0..3).map(move |_| t))
        .map(|t| t.catch_up_with(&org, &count));
    let together = dashclaw_projections::catch_up_together(&trackers, &count);
    let (racers, together) =
        futures_util::future::join(futures_util::future::try_join_all(racers), together).await;
    racers.unwrap();
    together.unwrap();

    // Each projection passed each event of every org exactly once, whoever folded it.
    let total: i64 = sqlx::query_scalar("SELECT sum(size)::int8 FROM ledger_heads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        passed.load(std::sync::atomic::Ordering::Relaxed),
        total as u64 * trackers.len() as u64
    );
    assert_eq!(
        snapshot(&pool).await,
        live,
        "racing catch-ups differ from the live projection"
    );
}

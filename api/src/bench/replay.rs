//! `dashclaw bench --suite replay`: builds a ledger of governance traffic through the HTTP API
//! (guard checks, actions recorded with their guard decision, outcomes reported), lets the live
//! projection fold it, then times `dashclaw replay` rebuilding the read models from zero in a
//! separate process and checks that the rebuilt tables equal the live ones. Method:
//! BENCHMARKS.md.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};

use super::guard::{setup, Client};
use crate::bench::BenchArgs;

/// Events one round of a client writes: a guard check (1), an action with its guard decision
/// (2) and its outcome (1).
const EVENTS_PER_ROUND: usize = 4;

/// Client `c`'s round `i`: posts the guard check, the action and its outcome.
async fn round(client: &mut Client, c: usize, i: usize) -> Result<()> {
    const CHECKED: [&str; 6] = [
        "research",
        "build",
        "deploy",
        "post",
        "migrate",
        "drop_table",
    ];
    // Actions of types the bench policies let run (deploys would wait for an approval).
    const RUN: [&str; 3] = ["research", "build", "post"];
    let agent = format!("replay-agent-{}", c % 10);
    let guard = json!({
        "action_type": CHECKED[(c + i) % CHECKED.len()],
        "declared_goal": format!("replay bench check {i} of client {c}"),
        "agent_id": agent,
        "systems_touched": ["kubernetes", "github"],
        "reversible": i % 3 != 0,
    });
    expect(client.post("/api/guard", &guard.to_string()).await?, 200)?;
    let action = json!({
        "action_type": RUN[(c + i) % RUN.len()],
        "declared_goal": format!("replay bench action {i} of client {c}"),
        "agent_id": agent,
        "systems_touched": ["github"],
        "tokens_in": 1200 + i % 500,
        "tokens_out": 300 + i % 200,
        "model": "gpt-4o",
    });
    let created = expect(client.post("/api/actions", &action.to_string()).await?, 201)?;
    let id = created["action_id"]
        .as_str()
        .context("the created action has no action_id")?;
    let outcome = if i % 10 == 9 {
        json!({"status": "failed", "error_message": "replay bench failure"})
    } else {
        json!({"status": "completed", "summary": "done"})
    };
    let path = format!("/api/actions/{id}/outcome");
    expect(client.post(&path, &outcome.to_string()).await?, 200)?;
    Ok(())
}

fn expect((status, body): (u16, Vec<u8>), wanted: u16) -> Result<Value> {
    if status != wanted {
        bail!("answered {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// A digest of every read-model table the governance projection maintains, row by row.
async fn read_models(pool: &PgPool) -> Result<Vec<(String, i64, String)>> {
    let mut digests = Vec::new();
    for (table, key) in [
        ("action_records", "org_id, action_id"),
        ("guard_decisions", "org_id, decision_id"),
        ("assumptions", "org_id, assumption_id"),
        (
            "analytics_actions",
            "org_id, day, agent_id, action_type, model",
        ),
        ("analytics_approvals", "org_id, action_id"),
        ("analytics_decisions", "org_id, day, agent_id, decision"),
        ("api_keys", "id"),
    ] {
        let (rows, digest): (i64, Option<String>) = sqlx::query_as(&format!(
            "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY {key})) FROM {table} t"
        ))
        .fetch_one(pool)
        .await?;
        digests.push((table.to_owned(), rows, digest.unwrap_or_default()));
    }
    Ok(digests)
}

pub async fn run(args: &BenchArgs, pool: &PgPool, options: &PgConnectOptions) -> Result<()> {
    let rounds = args.replay_events.div_ceil(EVENTS_PER_ROUND).max(1);
    let clients = args.guard_clients.clamp(1, rounds);
    println!(
        "building a ledger of ~{} events: {rounds} rounds (guard check, action, outcome) from {clients} HTTP clients",
        rounds * EVENTS_PER_ROUND
    );
    let (state, served, address, key) = setup(pool).await?;
    let started = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (address, key, done) = (address.clone(), key.clone(), done.clone());
            let count = rounds / clients + usize::from(c < rounds % clients);
            tokio::spawn(async move {
                let mut client = Client::connect(&address, &key).await?;
                for i in 0..count {
                    round(&mut client, c, i).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                eprintln!(
                    "  {} of {rounds} rounds in {:.0} s",
                    done.load(Ordering::Relaxed),
                    started.elapsed().as_secs_f64()
                );
            }
        })
    };
    for task in tasks {
        task.await??;
    }
    progress.abort();
    let seconds = started.elapsed().as_secs_f64();
    state.service.projections().catch_up_all().await?;
    served.abort();
    let _ = served.await;
    drop(state);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    println!(
        "{:<34} {events} events in {seconds:.1} s ({:.0} events/s through the API)",
        "ledger built",
        events as f64 / seconds
    );
    let live = read_models(pool).await?;
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    sqlx::query("CHECKPOINT").execute(pool).await?;

    let started = Instant::now();
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .arg("replay")
        .env("DATABASE_URL", options.to_url_lossy().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    ensure!(status.success(), "dashclaw replay failed: {status}");
    println!(
        "{:<34} {events} events in {elapsed:.3} s = {:.0} events/s (whole process)",
        "dashclaw replay (from zero)",
        events as f64 / elapsed
    );
    let rebuilt = read_models(pool).await?;
    for ((table, rows, before), (_, rebuilt_rows, after)) in live.iter().zip(&rebuilt) {
        ensure!(
            before == after,
            "replay rebuilt {table} differently: {rows} live rows, {rebuilt_rows} rebuilt"
        );
    }
    println!(
        "{:<34} identical to the live projection: {}",
        "",
        live.iter()
            .map(|(table, rows, _)| format!("{table} {rows} rows"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

//! `dashclaw bench --suite evidence`: on a ledger of `--evidence-events` events in one org,
//! the Merkle tree's integration throughput, inclusion-proof latency over HTTP at a fixed
//! offered rate (open loop, like the guard suite), the size of a typical approved action's
//! evidence bundle, and the whole-process throughput of `dashclaw export` and `dashclaw
//! verify-export`. Method and recorded numbers: BENCHMARKS.md.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dashclaw_domain::api_key::Role;
use dashclaw_domain::OrgId;
use dashclaw_store::{checkpoints, tree, Appender, NewEvent};
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};

use crate::bench::guard::{setup, Client};
use crate::bench::{payload, BenchArgs, Phase};
use crate::service::keys::KeyAdmin;

/// Events per append while building the ledger (one stream each).
const BATCH: usize = 500;
/// Offered rate of the proof phase, requests per second.
const PROOF_RATE: f64 = 200.0;

pub async fn run(args: &BenchArgs, pool: &PgPool, options: &PgConnectOptions) -> Result<()> {
    let org = OrgId::new("org_default")?;
    let n = args.evidence_events;

    // The ledger: n events of the size of a guard decision, in appends of BATCH.
    let appender = Appender::new(pool.clone());
    let started = Instant::now();
    let writers = 4;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (appender, org) = (appender.clone(), org.clone());
            tokio::spawn(async move {
                let mut i = w * BATCH;
                while i < n {
                    let events = (i..(i + BATCH).min(n))
                        .map(|k| NewEvent {
                            event_type: "ActionCreated".into(),
                            event_version: "1.0".into(),
                            payload: payload(k),
                            metadata: serde_json::Map::new(),
                        })
                        .collect();
                    appender
                        .append("Thing", &org.stream_id(&format!("batch_{i}")), 1, events)
                        .await?;
                    i += writers * BATCH;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    println!(
        "{:<34} {n} events appended in {:.1} s (appends of {BATCH})",
        "ledger built",
        started.elapsed().as_secs_f64()
    );

    // Integration from nothing: the catch-up throughput of the tree's follower.
    let started = Instant::now();
    let integrated = tree::integrate(pool, &org, &|_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    let subtrees: i64 = sqlx::query_scalar("SELECT count(*) FROM merkle_subtrees")
        .fetch_one(pool)
        .await?;
    println!(
        "{:<34} {} events in {seconds:.3} s = {:.0} events/s ({subtrees} stored subtrees)",
        "tree integration (catch-up)",
        integrated.size,
        integrated.size as f64 / seconds
    );

    let (state, served, address, member) = setup(pool).await?;
    let service = &state.service;
    let admin = KeyAdmin::new(
        service.aggregates(),
        service.projections(),
        service.clock().now(),
    )
    .issue(&org, Role::Admin, "bench approver", "bench")
    .await
    .map_err(|e| anyhow::anyhow!(e.error))?;
    checkpoints::sign(pool, service.signer(), &org).await?;
    let head = checkpoints::latest_tree_head(pool, &org)
        .await?
        .context("no tree head")?;
    let size = head.size();

    // Inclusion proofs of random events in the latest head, open loop.
    let seconds = args.guard_seconds.max(1);
    let clients = 10;
    let total = (PROOF_RATE * seconds as f64) as usize;
    let interval = Duration::from_secs_f64(clients as f64 / PROOF_RATE);
    let start = Instant::now() + Duration::from_millis(200);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (address, key) = (address.clone(), member.clone());
            let count = total / clients + usize::from(c < total % clients);
            let offset = Duration::from_secs_f64(c as f64 / PROOF_RATE);
            tokio::spawn(async move {
                let mut client = Client::connect(&address, &key).await?;
                let mut latencies = Vec::with_capacity(count);
                let mut seq = 1 + (c as u64 * 7_919) % size;
                for i in 0..count {
                    let due = start + offset + interval * i as u32;
                    tokio::time::sleep_until(due.into()).await;
                    // A cheap spread over the whole tree (a stride coprime with most sizes).
                    seq = 1 + (seq + 104_729) % size;
                    let path =
                        format!("/api/integrity/proof/inclusion?ledger_seq={seq}&tree_size={size}");
                    let (status, body) = client.send("GET", &path, "").await?;
                    if status != 200 {
                        bail!(
                            "proof answered {status}: {}",
                            String::from_utf8_lossy(&body)
                        );
                    }
                    latencies.push(due.elapsed());
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let mut proofs = Phase {
        name: format!("inclusion proof @ {PROOF_RATE:.0}/s, tree of {size}"),
        ops: total,
        elapsed: start.elapsed(),
        latencies,
    };
    proofs.print(None);
    let (p999, max) = (
        proofs.percentile(0.999),
        proofs.latencies.last().copied().unwrap_or_default(),
    );
    println!(
        "{:<34} p99.9 {:.3} ms  max {:.3} ms (latency from the scheduled send time)",
        "",
        p999.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );

    // A typical approved action: held, approved, claimed, completed, with its bundle.
    let mut agent = Client::connect(&address, &member).await?;
    let mut approver = Client::connect(&address, &admin).await?;
    let act = json!({"kind": "shell", "command": "kubectl rollout restart deploy/billing"});
    let (status, body) = agent
        .post(
            "/api/actions",
            &json!({"agent_id": "agent-7", "action_type": "deploy", "act": act,
                    "declared_goal": "Deploy build 4512 of the billing service to production",
                    "systems_touched": ["kubernetes", "github"], "reversible": true})
            .to_string(),
        )
        .await?;
    let created: Value = serde_json::from_slice(&body)?;
    let Some(id) = created["action_id"].as_str().filter(|_| status < 300) else {
        bail!("recording the action failed: {status} {created}");
    };
    for (as_admin, method, path, body) in [
        (
            true,
            "POST",
            format!("/api/actions/{id}/approve"),
            json!({"decision": "allow", "reasoning": "change window open"}),
        ),
        (
            false,
            "PATCH",
            format!("/api/actions/{id}"),
            json!({"claim_execution": true, "attempt_id": "attempt-000000000001",
                   "agent_id": "agent-7", "act": act}),
        ),
        (
            false,
            "POST",
            format!("/api/actions/{id}/outcome"),
            json!({"status": "completed", "summary": "rolled out to 3/3 pods"}),
        ),
    ] {
        let client = if as_admin { &mut approver } else { &mut agent };
        let (status, answer) = client.send(method, &path, &body.to_string()).await?;
        if status >= 300 {
            bail!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    let (status, bundle) = agent
        .post(
            "/api/artifacts/evidence-bundle",
            &json!({"action_id": id}).to_string(),
        )
        .await?;
    if status != 200 {
        bail!("bundle: {status} {}", String::from_utf8_lossy(&bundle));
    }
    let parsed: Value = serde_json::from_slice(&bundle)?;
    println!(
        "{:<34} {} bytes ({} events, {} audit-path hashes each, tree of {})",
        "evidence bundle, approved action",
        bundle.len(),
        parsed["payload"]["ledger"]["events"]
            .as_array()
            .map_or(0, Vec::len),
        parsed["payload"]["ledger"]["events"][0]["audit_path"]
            .as_array()
            .map_or(0, Vec::len),
        parsed["payload"]["ledger"]["tree_head"]
            .as_str()
            .and_then(|note| note.lines().nth(1))
            .unwrap_or("?")
    );
    served.abort();
    let _ = served.await;
    drop(state);

    // Export and verify-export, each a whole `dashclaw` process.
    let dir = std::env::temp_dir().join(format!("dashclaw-bench-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = options.to_url_lossy().to_string();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE org_id = $1")
        .bind(org.as_str())
        .fetch_one(pool)
        .await?;
    let exe = std::env::current_exe()?;
    let timed = |args: Vec<String>| {
        let (exe, url) = (exe.clone(), url.clone());
        async move {
            let started = Instant::now();
            let out = tokio::process::Command::new(exe)
                .args(&args)
                .env("DATABASE_URL", url)
                .env("RUST_LOG", "warn")
                .output()
                .await?;
            if !out.status.success() {
                bail!(
                    "dashclaw {}: {}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(started.elapsed())
        }
    };
    let out = dir.join("export");
    let elapsed = timed(vec![
        "export".into(),
        "--org".into(),
        org.to_string(),
        out.display().to_string(),
    ])
    .await?;
    let bytes = std::fs::metadata(out.join("events.jsonl"))?.len();
    println!(
        "{:<34} {events} events ({:.0} MB) in {:.3} s = {:.0} events/s",
        "dashclaw export (whole process)",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
    let jwks = dir.join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_string(&dashclaw_store::keys::published(pool).await?)?,
    )?;
    let elapsed = timed(vec![
        "verify-export".into(),
        out.display().to_string(),
        "--jwks".into(),
        jwks.display().to_string(),
    ])
    .await?;
    println!(
        "{:<34} {events} events in {:.3} s = {:.0} events/s",
        "dashclaw verify-export (whole)",
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

//! `dashclaw bench`: ledger append and verify throughput beside a raw INSERT baseline measured
//! in the same run, on the same server. Method and recorded numbers: BENCHMARKS.md.

pub mod evidence;
pub mod guard;
pub mod replay;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use dashclaw_events::{CanonicalJson, OrgId};
use dashclaw_store::{Appender, NewEvent};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

#[derive(Args, Clone)]
pub struct BenchArgs {
    /// PostgreSQL server to measure (a scratch database is created there and dropped after).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Events per phase.
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// Keep the scratch database afterwards (to inspect it or run `dashclaw verify` again).
    #[arg(long)]
    pub keep: bool,
    /// Which measurements: `ledger` (append + verify), `guard` (POST /api/guard latency and
    /// throughput over HTTP), `replay` (rebuilding the read models from a ledger of
    /// `--replay-events` events of governance traffic), `evidence` (tree integration, proof
    /// latency over HTTP, bundle size, export and verify-export on `--evidence-events`
    /// events), or `all` (ledger and guard).
    #[arg(long, default_value = "all", value_parser = ["all", "ledger", "guard", "replay", "evidence"])]
    pub suite: String,
    /// Offered load of the guard latency phase, requests per second.
    #[arg(long, default_value_t = 1000)]
    pub guard_rate: u32,
    /// HTTP clients of the guard phases (each its own keep-alive connection).
    #[arg(long, default_value_t = 50)]
    pub guard_clients: usize,
    /// Length of each guard phase, seconds.
    #[arg(long, default_value_t = 20)]
    pub guard_seconds: u64,
    /// Events of the ledger the replay suite builds (through the HTTP API) and then replays.
    #[arg(long, default_value_t = 1_000_000)]
    pub replay_events: usize,
    /// Whether the guard suite maintains the Merkle tree and signs heads meanwhile (`on`, as
    /// a server does) or not (`off`), to measure what the tree costs the guard.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub tree_maintenance: String,
    /// Events of the ledger the evidence suite builds before it measures proofs, bundles,
    /// export and verify-export.
    #[arg(long, default_value_t = 1_000_000)]
    pub evidence_events: usize,
}

/// One measured phase.
pub(crate) struct Phase {
    pub name: String,
    pub ops: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Phase {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&mut self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }

    pub fn print(&mut self, baseline: Option<f64>) {
        let vs = baseline.map_or(String::new(), |b| {
            format!("  ({:.0}% of raw INSERT)", 100.0 * self.rate() / b)
        });
        let (p50, p99) = (self.percentile(0.50), self.percentile(0.99));
        println!(
            "{:<34} {:>9} ops in {:>7.3} s = {:>9.0} /s   p50 {:>7.3} ms  p99 {:>7.3} ms{vs}",
            self.name,
            self.ops,
            self.elapsed.as_secs_f64(),
            self.rate(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
        );
    }
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let server = PgConnectOptions::from_str(&args.database_url).context("DATABASE_URL")?;
    let scratch = format!("dashclaw_bench_{}", std::process::id());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(server.clone())
        .await?;
    sqlx::query(&format!("CREATE DATABASE {scratch}"))
        .execute(&admin)
        .await?;
    let options = server.clone().database(&scratch);
    let pool = PgPoolOptions::new()
        .max_connections(args.writers.max(16) as u32 + 8)
        .connect_with(options.clone())
        .await?;
    let result = measure(&args, &pool, &options).await;
    pool.close().await;
    if args.keep {
        println!("kept the scratch database: {}", options.to_url_lossy());
    } else {
        sqlx::query(&format!("DROP DATABASE {scratch} WITH (FORCE)"))
            .execute(&admin)
            .await?;
    }
    result
}

async fn measure(args: &BenchArgs, pool: &PgPool, options: &PgConnectOptions) -> Result<()> {
    dashclaw_store::MIGRATOR.run(pool).await?;
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'server_version') ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let (n, c) = (args.events, args.writers);
    println!(
        "dashclaw bench: {n} events per phase, {c} writers, {} cores; PostgreSQL {}",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );

    if args.suite == "replay" {
        return replay::run(args, pool, options).await;
    }
    if args.suite == "evidence" {
        return evidence::run(args, pool, options).await;
    }
    sqlx::query("CREATE TABLE raw_inserts (id bigserial PRIMARY KEY, payload json NOT NULL)")
        .execute(pool)
        .await?;
    let payload_text = payload(0).into_string();
    let mut raw = run_phase(format!("raw INSERT, {c} writers"), n, c, {
        let pool = pool.clone();
        move |_, _| {
            let pool = pool.clone();
            let payload_text = payload_text.clone();
            async move {
                sqlx::query("INSERT INTO raw_inserts (payload) VALUES ($1::json)")
                    .bind(payload_text)
                    .execute(&pool)
                    .await
                    .map(|_| ())
                    .map_err(anyhow::Error::from)
            }
        }
    })
    .await?;
    raw.print(None);
    let baseline = raw.rate();
    if args.suite == "guard" {
        return guard::run(args, pool, baseline).await;
    }

    let appender = Appender::new(pool.clone());
    let one_org = OrgId::new("org_bench")?;
    let mut single = run_phase(format!("ledger append, 1 org, {c} writers"), n, c, {
        let appender = appender.clone();
        move |writer, i| append(appender.clone(), one_org.clone(), writer, i)
    })
    .await?;
    single.print(Some(baseline));

    let orgs: Arc<Vec<OrgId>> = Arc::new(
        (0..c)
            .map(|w| OrgId::new(format!("org_bench_{w}")))
            .collect::<Result<_, _>>()?,
    );
    let mut many = run_phase(format!("ledger append, {c} orgs, 1 writer each"), n, c, {
        let appender = appender.clone();
        move |writer, i| append(appender.clone(), orgs[writer].clone(), writer, i)
    })
    .await?;
    many.print(Some(baseline));

    // Tree heads, so that verify checks signatures and recomputes Merkle roots too.
    let key = dashclaw_store::keys::signing_key(pool, None).await?;
    let signer = dashclaw_events::LogSigner::new(key, "bench")?;
    dashclaw_store::checkpoints::sign_all(pool, &signer).await?;

    let total = 2 * n;
    let started = Instant::now();
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .arg("verify")
        .env("DATABASE_URL", options.to_url_lossy().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        status.success(),
        "dashclaw verify failed on the benchmark ledger: {status}"
    );
    let mut verify = Phase {
        name: "dashclaw verify (whole process)".into(),
        ops: total,
        elapsed,
        latencies: vec![],
    };
    verify.print(None);
    if args.suite == "all" {
        guard::run(args, pool, baseline).await?;
    }
    Ok(())
}

/// A payload of the size of a real guard decision / action event (~300 bytes).
pub(crate) fn payload(i: usize) -> CanonicalJson {
    let value = json!({
        "action_type": "deploy",
        "agent_id": format!("agent-{}", i % 50),
        "declared_goal": "Deploy build 4512 of the billing service to production",
        "risk_score": 55,
        "systems_touched": ["kubernetes", "github", "pagerduty"],
        "idempotency_key": format!("idem-{i:012}"),
        "reversible": true,
    });
    CanonicalJson::encode(&value).unwrap_or_else(|_| CanonicalJson::from_stored("{}".into()))
}

async fn append(appender: Appender, org: OrgId, writer: usize, i: usize) -> Result<()> {
    let mut metadata = serde_json::Map::new();
    metadata.insert("actor".into(), json!("bench"));
    metadata.insert("request_id".into(), json!(format!("req-{writer}-{i}")));
    let event = NewEvent {
        event_type: "ActionCreated".into(),
        event_version: "1.0".into(),
        payload: payload(i),
        metadata,
    };
    appender
        .append(
            "Action",
            &org.stream_id(&format!("act_{writer}_{i}")),
            1,
            vec![event],
        )
        .await?;
    Ok(())
}

/// Runs `ops` operations split over `writers` concurrent tasks; each task times each op.
async fn run_phase<F, Fut>(name: String, ops: usize, writers: usize, op: F) -> Result<Phase>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let op = op.clone();
            let count = ops / writers + usize::from(w < ops % writers);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(count);
                for i in 0..count {
                    let t = Instant::now();
                    op(w, i).await?;
                    latencies.push(t.elapsed());
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(ops);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Phase {
        name,
        ops,
        elapsed: started.elapsed(),
        latencies,
    })
}

//! `dashclaw bench --suite guard`: `POST /api/guard` over real HTTP on loopback against a
//! server in this process, every decision durably recorded in the ledger before it is
//! answered. Two phases: latency at a fixed offered rate (open loop: each request has a
//! scheduled send time and its latency is measured from that time, so a slow server cannot
//! hide its queueing), then the maximum sustained rate (closed loop). Method: BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dashclaw_domain::api_key::Role;
use dashclaw_domain::OrgId;
use serde_json::json;
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::bench::{BenchArgs, Phase};
use crate::server::{self, AppState, Config};
use crate::service::keys::KeyAdmin;
use crate::service::RateLimit;

/// A minimal keep-alive HTTP/1.1 client for one connection (enough for JSON POSTs).
pub(crate) struct Client {
    stream: BufReader<TcpStream>,
    host: String,
    key: String,
}

impl Client {
    pub(crate) async fn connect(address: &str, key: &str) -> Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            host: address.to_owned(),
            key: key.to_owned(),
        })
    }

    /// POSTs `body` to `path`; returns the status and the response body.
    pub(crate) async fn post(&mut self, path: &str, body: &str) -> Result<(u16, Vec<u8>)> {
        self.send("POST", path, body).await
    }

    /// Sends one request; returns the status and the response body.
    pub(crate) async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, Vec<u8>)> {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\nx-api-key: {}\r\ncontent-length: {}\r\n\r\n{body}",
            self.host,
            self.key,
            body.len()
        );
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("bad status line")?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                }
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// The guard request of client `c`, request `i`: a mix of agents and action types under a
/// small realistic policy set (some allowed, some warned, some held, some blocked).
fn request(c: usize, i: usize) -> String {
    const TYPES: [&str; 6] = [
        "research",
        "build",
        "deploy",
        "post",
        "migrate",
        "drop_table",
    ];
    json!({
        "action_type": TYPES[(c + i) % TYPES.len()],
        "declared_goal": format!("bench request {i} of client {c}: update the billing service"),
        "agent_id": format!("bench-agent-{}", c % 10),
        "systems_touched": ["kubernetes", "github"],
        "reversible": i % 3 != 0,
        "approval_wait_seconds": 300,
    })
    .to_string()
}

fn decision_id(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value["decision_id"].as_str().map(str::to_owned)
}

/// Until `until`: takes the latest decision client 0 was answered and polls the decision log
/// (the governance read model) until it is there; the lag is from the answer (after the
/// commit) to the row being readable.
async fn sample_projection_lag(
    pool: PgPool,
    answered: Arc<std::sync::Mutex<Option<(String, Instant)>>>,
    until: Instant,
) -> Result<Vec<Duration>> {
    let mut lags = Vec::new();
    let mut last = String::new();
    while Instant::now() < until {
        let latest = answered.lock().ok().and_then(|slot| slot.clone());
        let Some((id, at)) = latest.filter(|(id, _)| *id != last) else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        loop {
            let there: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM events e JOIN guard_decisions g
                                  ON g.org_id = e.org_id AND g.ledger_seq = e.ledger_seq
                                 WHERE e.aggregate_type = 'GuardDecision'
                                   AND e.aggregate_id = 'org_default/' || $1)",
            )
            .bind(&id)
            .fetch_one(&pool)
            .await?;
            if there {
                lags.push(at.elapsed());
                break;
            }
            if at.elapsed() > Duration::from_secs(10) {
                bail!("decision {id} never reached the read model");
            }
        }
        last = id;
    }
    Ok(lags)
}

/// Until `until`, every 50 ms: the chain's size and the latest signed tree head's. Returns
/// the most events the head trailed by, and the longest time: at each sample, how long ago
/// the chain was no longer than the head is now.
async fn sample_head_lag(pool: PgPool, until: Instant) -> Result<(u64, f64)> {
    let mut history: Vec<(Instant, u64)> = Vec::new();
    let (mut max_events, mut max_seconds) = (0u64, 0f64);
    while Instant::now() < until {
        let (chain, head): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE((SELECT size FROM ledger_heads WHERE org_id = 'org_default'), 0),
                    COALESCE((SELECT max(size) FROM checkpoints
                               WHERE org_id = 'org_default' AND note IS NOT NULL), 0)",
        )
        .fetch_one(&pool)
        .await?;
        let now = Instant::now();
        let (chain, head) = (chain as u64, head as u64);
        history.push((now, chain));
        max_events = max_events.max(chain.saturating_sub(head));
        // The first sample at which the chain had grown past the head: the head has been
        // behind since then.
        if let Some((since, _)) = history.iter().find(|(_, size)| *size > head) {
            max_seconds = max_seconds.max((now - *since).as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((max_events, max_seconds))
}

pub(crate) async fn setup(
    pool: &PgPool,
) -> Result<(
    AppState,
    tokio::task::JoinHandle<std::io::Result<()>>,
    String,
    String,
)> {
    let mut config = Config::new(None);
    let wide = RateLimit {
        max: u32::MAX,
        window: Duration::from_secs(60),
    };
    config.ip_limit = wide;
    config.service.org_limit = wide;
    let state = AppState::start(pool.clone(), config)
        .await
        .map_err(|e| anyhow::anyhow!(e.error))?;
    let org = OrgId::new("org_default")?;
    let service = &state.service;
    let key = KeyAdmin::new(
        service.aggregates(),
        service.projections(),
        service.clock().now(),
    )
    .issue(&org, Role::Member, "bench", "bench")
    .await
    .map_err(|e| anyhow::anyhow!(e.error))?;
    let admin = KeyAdmin::new(
        service.aggregates(),
        service.projections(),
        service.clock().now(),
    )
    .issue(&org, Role::Admin, "bench", "bench")
    .await
    .map_err(|e| anyhow::anyhow!(e.error))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let served = tokio::spawn(server::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));
    let mut client = Client::connect(&address, &admin).await?;
    for (name, policy_type, rules) in [
        ("prod gate", "risk_threshold", json!({"threshold": 90})),
        (
            "hold deploys",
            "require_approval",
            json!({"action_types": ["deploy", "migrate"]}),
        ),
        (
            "no drops",
            "block_action_type",
            json!({"action_types": ["drop_table"]}),
        ),
        (
            "review posts",
            "warn_action_type",
            json!({"action_types": ["post"]}),
        ),
    ] {
        let body = json!({"name": name, "policy_type": policy_type, "rules": rules}).to_string();
        let (status, answer) = client.post("/api/policies", &body).await?;
        if status != 201 {
            bail!(
                "creating a policy failed: {status} {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    Ok((state, served, address, key))
}

pub async fn run(args: &BenchArgs, pool: &PgPool, baseline: f64) -> Result<()> {
    // Settle what earlier phases left behind (dirty buffers, dead tuples), so that a
    // checkpoint or autovacuum they triggered does not land in the middle of this one.
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    sqlx::query("CHECKPOINT").execute(pool).await?;
    let (state, served, address, key) = setup(pool).await?;
    let (address, key) = (address.as_str(), key.as_str());
    // Tree maintenance as the checkpoint sweep does it (integrate, sign a head) at its
    // period, or not at all (the tree is then integrated only when a proof needs it).
    let maintenance = (args.tree_maintenance == "on").then(|| {
        let (pool, signer) = (pool.clone(), state.service.signer().clone());
        tokio::spawn(async move {
            let org = OrgId::new("org_default").unwrap_or_else(|_| unreachable!());
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                if let Err(e) = dashclaw_store::checkpoints::sign(&pool, &signer, &org).await {
                    tracing::warn!(error = %e, "benchmark tree maintenance");
                }
            }
        })
    });
    println!(
        "{:<34} tree maintenance {} (integrate + sign a head every 250 ms)",
        "", args.tree_maintenance
    );
    let clients = args.guard_clients.max(1);
    let seconds = args.guard_seconds.max(1);

    // Phase 1: fixed offered rate, open loop; then the same load again while the projection
    // lag is sampled (its polling would otherwise weigh on the latencies measured).
    let rate = f64::from(args.guard_rate.max(1));
    let total = (rate * seconds as f64) as usize;
    let interval = Duration::from_secs_f64(clients as f64 / rate);
    for measure_lag in [false, true] {
        let start = Instant::now() + Duration::from_millis(200);
        // Client 0 publishes each decision it was answered, for the projection-lag sampler.
        let answered: Arc<std::sync::Mutex<Option<(String, Instant)>>> = Arc::default();
        let sampler = measure_lag.then(|| {
            tokio::spawn(sample_projection_lag(
                pool.clone(),
                answered.clone(),
                start + Duration::from_secs(seconds),
            ))
        });
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (address, key) = (address.to_owned(), key.to_owned());
                let answered = answered.clone();
                let count = total / clients + usize::from(c < total % clients);
                let offset = Duration::from_secs_f64(c as f64 / rate);
                tokio::spawn(async move {
                    let mut client = Client::connect(&address, &key).await?;
                    let mut latencies = Vec::with_capacity(count);
                    for i in 0..count {
                        let due = start + offset + interval * i as u32;
                        tokio::time::sleep_until(due.into()).await;
                        let n = i + usize::from(measure_lag) * count;
                        let (status, body) = client.post("/api/guard", &request(c, n)).await?;
                        if status != 200 {
                            bail!(
                                "guard answered {status}: {}",
                                String::from_utf8_lossy(&body)
                            );
                        }
                        latencies.push(due.elapsed());
                        if c == 0 && measure_lag {
                            let at = Instant::now();
                            if let Some(id) = decision_id(&body) {
                                if let Ok(mut slot) = answered.lock() {
                                    *slot = Some((id, at));
                                }
                            }
                        }
                    }
                    Ok(latencies)
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(total);
        for task in tasks {
            latencies.extend(task.await??);
        }
        if let Some(sampler) = sampler {
            let mut lags = sampler.await??;
            let samples = lags.len();
            lags.sort_unstable();
            let at = |p: f64| {
                lags.get(((samples as f64 * p).ceil() as usize).clamp(1, samples.max(1)) - 1)
                    .map_or(0.0, |d| d.as_secs_f64() * 1e3)
            };
            println!(
            "{:<34} projection lag (answer -> read model) at {rate:.0}/s over {samples} samples: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
            "",
            at(0.5),
            at(0.99),
            lags.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
            continue;
        }
        let mut offered = Phase {
            name: format!("guard @ {rate:.0}/s offered, {clients} clients"),
            ops: total,
            elapsed: start.elapsed(),
            latencies,
        };
        offered.print(None);
        let (p90, p999) = (offered.percentile(0.90), offered.percentile(0.999));
        let max = offered.latencies.last().copied().unwrap_or_default();
        println!(
        "{:<34} p90 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms (latency from the scheduled send time)",
        "",
        p90.as_secs_f64() * 1e3,
        p999.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    }

    // Phase 2: as fast as the clients can go, closed loop; with tree maintenance on, how far
    // the signed tree head trails the chain is sampled meanwhile.
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let head_lag = maintenance
        .is_some()
        .then(|| tokio::spawn(sample_head_lag(pool.clone(), deadline)));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (address, key, done) = (address.to_owned(), key.to_owned(), done.clone());
            tokio::spawn(async move {
                let mut client = Client::connect(&address, &key).await?;
                let mut latencies = Vec::new();
                let mut i = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let (status, body) = client
                        .post("/api/guard", &request(c, 1_000_000 + i))
                        .await?;
                    if status != 200 {
                        bail!(
                            "guard answered {status}: {}",
                            String::from_utf8_lossy(&body)
                        );
                    }
                    latencies.push(t.elapsed());
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    i += 1;
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let mut max_rate = Phase {
        name: format!("guard, max sustained, {clients} clients"),
        ops: done.load(std::sync::atomic::Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies,
    };
    max_rate.print(Some(baseline));
    if let Some(head_lag) = head_lag {
        let (events, seconds) = head_lag.await??;
        println!(
            "{:<34} signed tree head behind the chain during it: max {events} events, max {:.3} s",
            "", seconds
        );
    }
    if let Some(maintenance) = maintenance {
        maintenance.abort();
    }

    let decisions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'GuardDecision'")
            .fetch_one(pool)
            .await?;
    println!(
        "{:<34} {decisions} guard decisions in the ledger ({} answered)",
        "",
        2 * total + max_rate.ops
    );
    served.abort();
    let _ = served.await;
    drop(state);
    Ok(())
}

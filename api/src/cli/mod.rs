//! The `dashclaw` command line: `up`, `serve`, `migrate`, `verify`, `keys`, `checkpoint`,
//! `replay`, `bench`, and the operator commands `approvals`, `approve`, `deny`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

mod evidence;
mod integrity;
pub mod operator;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use dashclaw_events::{LedgerKey, OrgId};
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::provision::Database;
use crate::server::{self, AppState, Config};
use crate::service::keys::KeyAdmin;
use crate::service::RateLimit;
use crate::service::{Aggregates, Clock};
use cqrs_es::Aggregate;
use dashclaw_domain::api_key::Role;
use dashclaw_projections::Projections;
use dashclaw_store::LedgerRepository;
use operator::Operator;

#[derive(Parser)]
#[command(
    name = "dashclaw",
    version,
    about = "Governance server for AI agents: guard, approvals, one-shot outcomes, on a verifiable ledger.",
    after_help = "Without DATABASE_URL, commands use the private PostgreSQL cluster that \
                  `dashclaw up` provisions under --data-dir (default ./.dashclaw)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Provision (if needed) a private PostgreSQL under --data-dir, migrate, create the signing
    /// key and an admin API key (printed once), and serve. With DATABASE_URL, use that database.
    Up {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Serve against DATABASE_URL (required); applies migrations first.
    Serve {
        /// PostgreSQL connection URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Check every event hash, chain link, head, checkpoint signature and signed tree head
    /// (its Merkle root recomputed from the chain). Exits 1 and names the first bad
    /// (org, ledger_seq) if anything was tampered with.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        /// Verify only this org's chain.
        #[arg(long)]
        org: Option<String>,
        /// A signed tree head saved earlier (e.g. from `GET /api/integrity/checkpoint`): the
        /// chain must still contain its tree. Repeatable.
        #[arg(long, value_name = "HEAD_FILE")]
        against: Vec<PathBuf>,
    },
    /// Print the published signing keys (JWKS), creating the signing key if there is none;
    /// `keys create` mints an API key.
    Keys {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        key: KeyArgs,
        #[command(subcommand)]
        action: Option<KeysAction>,
    },
    /// Sign a tree head of every org whose chain moved (or of --org) now, and print them
    /// (C2SP signed notes).
    Checkpoint {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// Checkpoint only this org.
        #[arg(long)]
        org: Option<String>,
    },
    /// Rebuild the read models from the ledger (from the first event, or with --resume from
    /// where they stopped), with a progress bar; prints events/s.
    Replay {
        #[command(flatten)]
        db: DbArgs,
        /// Which projection: `all` (side by side), `governance` (actions, assumptions, API
        /// keys) or `decisions` (the guard decision log).
        #[arg(long, default_value = "all", value_parser = ["all", "governance", "decisions"])]
        projection: String,
        /// Continue from the projection's checkpoints instead of starting from zero.
        #[arg(long)]
        resume: bool,
    },
    /// Re-evaluate recorded guard decisions under the policy set the ledger had when each
    /// was made, and show that every field comes out the same (or what differs). Exits 1 if
    /// any differs.
    ReplayDecision {
        #[command(flatten)]
        db: DbArgs,
        /// The decision (act_gd_...); without it, every decision of the org.
        id: Option<String>,
        /// The org of the decisions.
        #[arg(long, default_value = "org_default")]
        org: String,
    },
    /// Verify a saved evidence bundle offline: payload hash, bundle signature, tree head,
    /// event hashes, chain links, inclusion proofs, policy sets and replayed verdicts, each on
    /// its own line. No database needed. Exits 1 naming the first check that fails, 2 for
    /// unusable input.
    VerifyBundle {
        /// The bundle (the body of `POST /api/artifacts/evidence-bundle`).
        file: PathBuf,
        #[command(flatten)]
        keys: KeySetArgs,
    },
    /// Export an org's events (all, or those recorded in [--from, --to)) for auditors: OUT/events.jsonl
    /// (one exact entry per line) and OUT/manifest.json (signed: counts, range, a covering tree
    /// head, and a consistency proof from the org's previous export). See docs/compliance.md.
    Export {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        key: KeyArgs,
        /// The org to export.
        #[arg(long)]
        org: String,
        /// Events recorded at or after this time (RFC 3339, e.g. 2026-10-01T00:00:00Z).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Events recorded before this time (RFC 3339).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// The directory to write (new or empty).
        out: PathBuf,
    },
    /// Verify an export directory offline: manifest signature, tree head, every event's hash
    /// and link, the counts, the last event's inclusion proof and the consistency proof from
    /// the previous export, each on its own line. Exits 1 naming the first check that fails,
    /// 2 for unusable input.
    VerifyExport {
        /// The directory `dashclaw export` wrote.
        dir: PathBuf,
        #[command(flatten)]
        keys: KeySetArgs,
    },
    /// Measure ledger append and verify throughput against a raw INSERT baseline (creates and
    /// drops a scratch database on the DATABASE_URL server). See BENCHMARKS.md.
    Bench(crate::bench::BenchArgs),
    /// List the actions waiting for approval on a running server, with risk score and the
    /// guard's reasons (needs an admin key).
    Approvals {
        #[command(flatten)]
        client: ClientArgs,
        /// Print the rows as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Approve a held action on a running server.
    Approve {
        /// The action id (act_...).
        id: String,
        /// Why (recorded with the decision).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deny a held action on a running server.
    Deny {
        /// The action id (act_...).
        id: String,
        /// Why (recorded with the decision, and shown to the agent).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
struct ClientArgs {
    /// The server to talk to.
    #[arg(
        long,
        env = "DASHCLAW_BASE_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    base_url: String,
    /// An admin API key of the org.
    #[arg(long, env = "DASHCLAW_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Mint an API key (printed once; only its SHA-256 is stored) for an org and role.
    Create {
        /// The org the key acts in.
        #[arg(long, default_value = "org_default")]
        org: String,
        /// admin (everything, incl. approvals and policies), member (the agent loop) or
        /// readonly (GET only).
        #[arg(long, default_value = "member")]
        role: String,
        /// A label for the key.
        #[arg(long, default_value = "api key")]
        name: String,
    },
    /// List an org's API keys (id, name, role, created, revoked; never the key or its hash).
    List {
        /// The org whose keys to list.
        #[arg(long, default_value = "org_default")]
        org: String,
        /// Print the rows as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by its id (key_...): an `ApiKeyRevoked` event; every server refuses
    /// the key within a second.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: String,
    },
}

#[derive(Args)]
struct DbArgs {
    /// PostgreSQL connection URL; if unset, the private cluster under --data-dir is used.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Where `dashclaw up` keeps its private PostgreSQL cluster.
    #[arg(long, env = "DASHCLAW_DATA_DIR", default_value = ".dashclaw")]
    data_dir: PathBuf,
}

/// Where an offline verifier takes the published keys from.
#[derive(Args)]
struct KeySetArgs {
    /// The published key set (a saved `/.well-known/jwks.json`); without it, the key set is
    /// fetched from --base-url.
    #[arg(long, value_name = "FILE")]
    jwks: Option<PathBuf>,
    /// The server whose published keys to use when --jwks is not given.
    #[arg(
        long,
        env = "DASHCLAW_BASE_URL",
        default_value = "http://127.0.0.1:3000"
    )]
    base_url: String,
}

impl KeySetArgs {
    fn source(self) -> evidence::KeySource {
        match self.jwks {
            Some(path) => evidence::KeySource::File(path),
            None => evidence::KeySource::Server(self.base_url),
        }
    }
}

#[derive(Args)]
struct KeyArgs {
    /// Ed25519 private JWK to sign with; if unset, a key generated once and kept in the
    /// database is used.
    #[arg(long, env = "DASHCLAW_SIGNING_KEY_JWK", hide_env_values = true)]
    signing_key_jwk: Option<String>,
    /// The log origin of signed tree heads: an org's heads name `<origin>/<org_id>`, and
    /// the note key is named after it. Set the same on every node. [default: this host's
    /// name]
    #[arg(long, env = "DASHCLAW_LOG_ORIGIN")]
    log_origin: Option<String>,
}

impl KeyArgs {
    /// The configured log origin, else this machine's host name.
    fn log_origin(&self) -> String {
        self.log_origin.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .or_else(|_| std::fs::read_to_string("/etc/hostname"))
                .map(|name| name.trim().to_owned())
                .ok()
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "localhost".to_owned())
        })
    }

    /// The tree-head signer: the signing key under the log origin.
    async fn signer(&self, pool: &PgPool) -> Result<dashclaw_events::LogSigner> {
        let key = dashclaw_store::keys::signing_key(pool, self.signing_key_jwk.as_deref()).await?;
        let origin = self.log_origin();
        dashclaw_events::LogSigner::new(key, &origin)
            .with_context(|| format!("--log-origin {origin:?} cannot name a log"))
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DASHCLAW_BIND", default_value = "127.0.0.1:3000")]
    bind: SocketAddr,
    /// Bootstrap admin API key (org_default, role admin). When set, `up` mints no other key.
    #[arg(long, env = "DASHCLAW_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The org the bootstrap key acts in.
    #[arg(long, env = "DASHCLAW_API_KEY_ORG", default_value = "org_default")]
    api_key_org: String,
    /// Requests per client IP and path per window (contract default 100).
    #[arg(long, env = "DASHCLAW_RATE_LIMIT_MAX", default_value_t = 100)]
    rate_limit_max: u32,
    /// The per-IP window in milliseconds.
    #[arg(long, env = "DASHCLAW_RATE_LIMIT_WINDOW_MS", default_value_t = 60_000)]
    rate_limit_window_ms: u64,
    /// Guard and action-create requests per org per window (contract default 600).
    #[arg(long, env = "DASHCLAW_ORG_RATE_LIMIT_MAX", default_value_t = 600)]
    org_rate_limit_max: u32,
    /// The per-org window in milliseconds.
    #[arg(
        long,
        env = "DASHCLAW_ORG_RATE_LIMIT_WINDOW_MS",
        default_value_t = 60_000
    )]
    org_rate_limit_window_ms: u64,
    /// Allow webhooks to private, loopback, link-local and other non-public addresses (by
    /// default only public hosts are accepted and delivered to).
    #[arg(
        long,
        env = "DASHCLAW_WEBHOOKS_ALLOW_PRIVATE",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    webhooks_allow_private: bool,
    /// Wait before the first webhook retry; each further retry waits twice as long.
    #[arg(long, env = "DASHCLAW_WEBHOOK_RETRY_BASE", default_value = "1s", value_parser = humantime::parse_duration)]
    webhook_retry_base: Duration,
    /// Longest wait between two webhook attempts.
    #[arg(long, env = "DASHCLAW_WEBHOOK_RETRY_MAX", default_value = "10m", value_parser = humantime::parse_duration)]
    webhook_retry_max: Duration,
    /// Attempts per webhook delivery before it is given up.
    #[arg(long, env = "DASHCLAW_WEBHOOK_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    webhook_max_attempts: u32,
    /// Timeout of one webhook attempt.
    #[arg(long, env = "DASHCLAW_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    webhook_timeout: Duration,
    /// Longest a request waits for a database connection (and a write to be sent) before it
    /// is answered 503 DB_UNAVAILABLE, with nothing written.
    #[arg(long, env = "DASHCLAW_DB_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    db_timeout: Duration,
    /// A client must send a request's headers within this long (also the most a kept-alive
    /// connection may sit idle between requests); else the connection is closed.
    #[arg(long, env = "DASHCLAW_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,
    /// Open connections one client address may hold at once; more are closed at accept.
    #[arg(long, env = "DASHCLAW_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_client: u32,
    #[command(flatten)]
    key: KeyArgs,
}

/// Entry point of the binary: 0 on success, 1 when verification finds tampering, 2 on errors.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Up { db, serve } => {
            let database = Database::open_for_server(
                db.database_url.as_deref(),
                &db.data_dir,
                true,
                serve.db_timeout,
            )
            .await?;
            up(database, serve).await?;
        }
        Command::Serve {
            database_url,
            serve,
        } => {
            let database = Database::open_for_server(
                Some(&database_url),
                &PathBuf::new(),
                false,
                serve.db_timeout,
            )
            .await?;
            database.migrate().await?;
            run_server(database, serve).await?;
        }
        Command::Migrate { db } => {
            let database = Database::open(db.database_url.as_deref(), &db.data_dir, false).await?;
            database.migrate().await?;
            println!("migrations applied ({})", database.location);
            database.close().await?;
        }
        Command::Verify { db, org, against } => {
            let database = Database::open(db.database_url.as_deref(), &db.data_dir, false).await?;
            let org = org.map(OrgId::new).transpose()?;
            let code = integrity::verify(&database.pool, org.as_ref(), &against).await;
            database.close().await?;
            return code;
        }
        Command::Keys { db, key, action } => keys(db, key, action).await?,
        Command::Checkpoint { db, key, org } => {
            let database = Database::open(db.database_url.as_deref(), &db.data_dir, false).await?;
            let signer = key.signer(&database.pool).await?;
            integrity::checkpoint(&database.pool, &signer, org).await?;
            database.close().await?;
        }
        Command::Replay {
            db,
            projection,
            resume,
        } => {
            let database = Database::open(db.database_url.as_deref(), &db.data_dir, false).await?;
            replay(&database.pool, &projection, resume).await?;
            database.close().await?;
        }
        Command::ReplayDecision { db, id, org } => {
            let database = Database::open(db.database_url.as_deref(), &db.data_dir, false).await?;
            let org = OrgId::new(org)?;
            let code = evidence::replay_decisions(&database.pool, &org, id.as_deref()).await;
            database.close().await?;
            return code;
        }
        Command::VerifyBundle { file, keys } => {
            return evidence::verify_bundle(&file, &keys.source()).await;
        }
        Command::Export {
            db,
            key,
            org,
            from,
            to,
            out,
        } => {
            if let (Some(from), Some(to)) = (from, to) {
                anyhow::ensure!(from <= to, "--from must not be after --to");
            }
            let database = Database::open(db.database_url.as_deref(), &db.data_dir, false).await?;
            let signer = key.signer(&database.pool).await?;
            let org = OrgId::new(org)?;
            let range = crate::service::compliance::ExportRange { from, to };
            let code = evidence::export(&database.pool, &signer, &org, range, &out).await;
            database.close().await?;
            return code;
        }
        Command::VerifyExport { dir, keys } => {
            return evidence::verify_export(&dir, &keys.source()).await;
        }
        Command::Bench(args) => crate::bench::run(args).await?,
        Command::Approvals { client, json } => return approvals(client, json).await,
        Command::Approve { id, reason, client } => return decide(client, &id, true, reason).await,
        Command::Deny { id, reason, client } => return decide(client, &id, false, reason).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `dashclaw keys`: the published key set, or create, list and revoke API keys.
async fn keys(db: DbArgs, key: KeyArgs, action: Option<KeysAction>) -> Result<()> {
    let database = Database::open(db.database_url.as_deref(), &db.data_dir, false).await?;
    match action {
        None => {
            signing_key(&database.pool, &key).await?;
            let jwks = dashclaw_store::keys::published(&database.pool).await?;
            println!("{}", serde_json::to_string_pretty(&jwks)?);
        }
        Some(KeysAction::Create { org, role, name }) => {
            let org = OrgId::new(org)?;
            let role = Role::parse(&role).context("--role must be admin, member or readonly")?;
            let api_key = issue(&database.pool, &org, role, &name).await?;
            println!("{api_key}");
            eprintln!(
                "{} key for {org} created (shown only now; store it)",
                role.as_str()
            );
        }
        Some(KeysAction::List { org, json }) => {
            let org = OrgId::new(org)?;
            Projections::new(database.pool.clone())
                .catch_up(&org)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            let listed = crate::service::keys::list_keys(&database.pool, &org)
                .await
                .map_err(|e| anyhow::anyhow!(e.error))?;
            let rows: Vec<_> = listed.iter().map(crate::wire::KeyRow::from).collect();
            let keys = serde_json::to_value(rows)?;
            let keys = keys.as_array().map(Vec::as_slice).unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else {
                print_keys(&org, keys);
            }
        }
        Some(KeysAction::Revoke { id }) => {
            let org = dashclaw_store::chain::org_of_entity(
                &database.pool,
                dashclaw_domain::api_key::ApiKey::TYPE,
                &id,
            )
            .await?
            .with_context(|| format!("no API key {id} on the ledger (see `dashclaw keys list`)"))?;
            let aggregates = Aggregates::new(LedgerRepository::new(database.pool.clone()));
            let projections = Projections::new(database.pool.clone());
            KeyAdmin::new(&aggregates, &projections, Clock::default().now())
                .revoke(&org, &id, "cli")
                .await
                .map_err(|e| {
                    let code = serde_json::to_value(e.code).unwrap_or_default();
                    anyhow::anyhow!("{} ({})", e.error, code.as_str().unwrap_or("?"))
                })?;
            eprintln!("key {id} of {org} revoked; servers refuse it within a second");
        }
    }
    database.close().await?;
    Ok(())
}

/// `dashclaw approvals`: the pending approvals of a running server.
async fn approvals(client: ClientArgs, json: bool) -> Result<ExitCode> {
    let result = async {
        let operator = Operator::new(&client.base_url, client.api_key.as_deref())?;
        operator.pending().await
    }
    .await;
    Ok(match result {
        Ok(actions) if json => {
            println!("{}", serde_json::to_string_pretty(&actions)?);
            ExitCode::SUCCESS
        }
        Ok(actions) => {
            operator::print_pending(&actions);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    })
}

/// `dashclaw approve` / `deny`.
async fn decide(
    client: ClientArgs,
    id: &str,
    allow: bool,
    reason: Option<String>,
) -> Result<ExitCode> {
    let result = async {
        let operator = Operator::new(&client.base_url, client.api_key.as_deref())?;
        operator.decide(id, allow, reason.as_deref()).await
    }
    .await;
    Ok(match result {
        Ok(action) => {
            println!(
                "{} {id}: status {}{}",
                if allow { "approved" } else { "denied" },
                action["status"].as_str().unwrap_or("?"),
                action["approved_by"]
                    .as_str()
                    .map(|by| format!(", approved by {by}"))
                    .unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    })
}

async fn up(database: Database, serve: ServeArgs) -> Result<()> {
    database.migrate().await?;
    if serve.api_key.is_none() {
        if let Some(api_key) = mint_first_admin_key(&database.pool).await? {
            println!("admin API key (shown only now; store it): {api_key}");
        }
    }
    run_server(database, serve).await
}

async fn run_server(database: Database, serve: ServeArgs) -> Result<()> {
    let listener = TcpListener::bind(serve.bind).await.with_context(|| {
        format!(
            "cannot listen on {} (choose another with --bind)",
            serve.bind
        )
    })?;
    let address = listener.local_addr()?;
    let mut config = Config::new(serve.api_key.as_deref());
    // DASHCLAW_SWEEP_CADENCE, DASHCLAW_LOST_CONFIRMATION_TIMEOUT, DASHCLAW_APPROVAL_GRACE,
    // DASHCLAW_CHECKPOINT_EVERY_EVENTS, DASHCLAW_CHECKPOINT_INTERVAL (README).
    config.service.sweeps = dashclaw_sweeps::Settings::from_env()?;
    config.service.bootstrap_org = OrgId::new(serve.api_key_org.clone())?;
    config.ip_limit = RateLimit {
        max: serve.rate_limit_max,
        window: Duration::from_millis(serve.rate_limit_window_ms),
    };
    config.service.org_limit = RateLimit {
        max: serve.org_rate_limit_max,
        window: Duration::from_millis(serve.org_rate_limit_window_ms),
    };
    config.header_read_timeout = serve.header_read_timeout;
    config.max_connections_per_client = serve.max_connections_per_client as usize;
    config.service.webhooks = crate::service::webhooks::WebhookConfig {
        allow_private: serve.webhooks_allow_private,
        retry_base: serve.webhook_retry_base,
        retry_max: serve.webhook_retry_max.max(serve.webhook_retry_base),
        max_attempts: serve.webhook_max_attempts,
        timeout: serve.webhook_timeout,
        ..Default::default()
    };
    config.service.signing_key_jwk = serve.key.signing_key_jwk.clone();
    config.service.log_origin = serve.key.log_origin();
    let state = AppState::start(database.pool.clone(), config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot start: {}", e.error))?;
    let signer = state.service.signer();
    println!(
        "dashclaw {} listening on http://{address} (database: {}, signing key: {}, log: {})",
        env!("CARGO_PKG_VERSION"),
        database.location,
        signer.key().kid(),
        signer.name()
    );
    let sweeps = state.service.start_sweeps();
    let served = server::serve(listener, state.clone(), server::shutdown_signal()).await;
    sweeps.iter().for_each(tokio::task::JoinHandle::abort);
    // No event is left without a signed tree head while no node runs.
    match state.service.sign_tree_heads().await {
        Ok(signed) if !signed.is_empty() => {
            tracing::info!(orgs = signed.len(), "tree heads signed at shutdown")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e.error, "cannot sign tree heads at shutdown"),
    }
    state.service.stop().await;
    database.close().await?;
    served.context("the HTTP server failed")
}

/// `dashclaw keys list` as a table.
fn print_keys(org: &OrgId, keys: &[serde_json::Value]) {
    if keys.is_empty() {
        println!("{org} has no API keys");
        return;
    }
    println!(
        "{:<40} {:<9} {:<25} {:<25} name",
        "id", "role", "created", "revoked"
    );
    for k in keys {
        let text = |field: &str| k[field].as_str().unwrap_or("-").to_owned();
        println!(
            "{:<41} {:<9} {:<25} {:<25} {}",
            text("id"),
            text("role"),
            text("created_at"),
            text("revoked_at"),
            text("name")
        );
    }
}

async fn signing_key(pool: &PgPool, key: &KeyArgs) -> Result<LedgerKey> {
    Ok(dashclaw_store::keys::signing_key(pool, key.signing_key_jwk.as_deref()).await?)
}

/// Mints an API key through the ledger (an `ApiKeyIssued` event) and returns it.
async fn issue(pool: &PgPool, org: &OrgId, role: Role, name: &str) -> Result<String> {
    let aggregates = Aggregates::new(LedgerRepository::new(pool.clone()));
    let projections = Projections::new(pool.clone());
    KeyAdmin::new(&aggregates, &projections, Clock::default().now())
        .issue(org, role, name, "cli")
        .await
        .map_err(|e| anyhow::anyhow!(e.error))
}

/// Mints an admin key for `org_default` if no admin key exists yet; returns it (the only time
/// it is ever visible: only its SHA-256 is stored).
async fn mint_first_admin_key(pool: &PgPool) -> Result<Option<String>> {
    let mut lock = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock(hashtext('dashclaw.first_admin_key'))")
        .execute(&mut *lock)
        .await?;
    let minted = async {
        Projections::new(pool.clone())
            .catch_up_all()
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let exists = dashclaw_projections::read::keys::admin_key_exists(pool)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        if exists {
            return Ok(None);
        }
        let org = OrgId::new("org_default")?;
        issue(pool, &org, Role::Admin, "first admin key")
            .await
            .map(Some)
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock(hashtext('dashclaw.first_admin_key'))")
        .execute(&mut *lock)
        .await?;
    minted
}

async fn replay(pool: &PgPool, projection: &str, resume: bool) -> Result<()> {
    // Undocumented knob for tests: fold in small transactions, so a kill lands mid-stream.
    let window: Option<i64> = std::env::var("DASHCLAW_REPLAY_BATCH")
        .ok()
        .and_then(|b| b.parse().ok());
    let trackers: Vec<_> = Projections::new(pool.clone())
        .trackers()
        .iter()
        .filter(|t| projection == "all" || t.name() == projection)
        .map(|t| match window {
            Some(window) => t.clone().with_window(window),
            None => t.clone(),
        })
        .collect();
    if !resume {
        for tracker in &trackers {
            tracker.reset().await?;
        }
    }
    let mut behind = Vec::new();
    for tracker in &trackers {
        behind.push(tracker.behind().await?);
    }
    let names = trackers
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ");
    let events = behind.iter().copied().max().unwrap_or(0);
    eprintln!(
        "replaying {events} ledger events into {names}{}",
        if resume { " (resuming)" } else { " from zero" }
    );
    // The bar counts each projection's passage over each event.
    let bar = indicatif::ProgressBar::new(behind.iter().sum());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {percent}% ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let progress = |n| bar.inc(n);
    dashclaw_projections::catch_up_together(&trackers, &progress).await?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "replayed {events} events into {names} in {seconds:.3} s ({:.0} events/s)",
        events as f64 / seconds.max(1e-9)
    );
    Ok(())
}

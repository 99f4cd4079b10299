//! The application layer: every governance operation, once, for every transport. An
//! operation is a method on [`Service`] taking the [`Caller`] and a typed request and
//! returning a typed result or one [`Error`] (a closed code set, no HTTP statuses). The
//! service owns what the operations share: permissions, the per-org limit, the clock, the
//! caches, the ledger tail, webhook delivery and the sweeps' effects. It knows no transport:
//! no axum, async-graphql, clap or OpenAPI (a test in `tests/integration/architecture.rs`
//! holds it to that).

pub mod actions;
pub mod aggregates;
pub mod approvals;
pub mod assumptions;
pub mod caller;
pub mod clock;
pub mod compliance;
pub mod error;
pub mod evidence;
pub mod guard;
pub mod http_client;
pub mod identities;
pub mod insight;
pub mod integrity;
pub mod keys;
pub mod ledger;
pub mod limits;
pub mod org;
pub mod org_view;
pub mod orgs;
pub mod plans;
pub mod policies;
pub mod policy_packs;
pub mod policy_tools;
pub mod replay;
pub mod sessions;
pub mod signals;
pub mod sweep_effects;
pub mod tail;
pub mod webhooks;

use std::sync::Arc;

use dashclaw_domain::OrgId;
use dashclaw_events::LogSigner;
use dashclaw_projections::{Outbox, Projections};
use dashclaw_store::LedgerRepository;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

pub use aggregates::{Actor, Aggregates, CommandError};
pub use caller::{Caller, Permission, Role};
pub use clock::Clock;
pub use error::{Error, ErrorCode, Subject};
pub use limits::RateLimit;

use keys::KeyCache;
use limits::OrgLimit;
use tail::{LedgerTail, OutboxFeed};
use webhooks::{WebhookConfig, Webhooks};

/// The application's settings, validated at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// SHA-256 of `DASHCLAW_API_KEY`, the bootstrap admin key.
    pub bootstrap_key: Option<[u8; 32]>,
    /// The org the bootstrap key acts in.
    pub bootstrap_org: OrgId,
    /// Per org on recording decisions and actions (contract: 600 per 60 s).
    pub org_limit: RateLimit,
    /// The sweeps' timeouts and cadences (orgs may override them).
    pub sweeps: dashclaw_sweeps::Settings,
    /// Webhook delivery: retries, timeouts, which targets are allowed.
    pub webhooks: WebhookConfig,
    /// The private JWK to sign with (`DASHCLAW_SIGNING_KEY_JWK`); else the key kept in the
    /// database (generated once).
    pub signing_key_jwk: Option<String>,
    /// The log origin of tree heads (`DASHCLAW_LOG_ORIGIN`): an org's heads name
    /// `<log origin>/<org_id>`, and the note key is named after it.
    pub log_origin: String,
}

impl Config {
    pub fn new(bootstrap_key: Option<&str>) -> Self {
        Self {
            bootstrap_key: bootstrap_key.map(|k| Sha256::digest(k.as_bytes()).into()),
            bootstrap_org: OrgId::new("org_default").unwrap_or_else(|_| unreachable!()),
            org_limit: RateLimit {
                max: 600,
                window: std::time::Duration::from_secs(60),
            },
            sweeps: dashclaw_sweeps::Settings::default(),
            webhooks: WebhookConfig::default(),
            signing_key_jwk: None,
            log_origin: "localhost".to_owned(),
        }
    }
}

/// The application. Cheap to clone; its background work (the ledger tail, webhook delivery)
/// stops with the last clone, the delivery gracefully with [`Service::stop`].
#[derive(Clone)]
pub struct Service {
    clock: Clock,
    pool: PgPool,
    aggregates: Aggregates,
    projections: Projections,
    tail: LedgerTail,
    config: Arc<Config>,
    keys: KeyCache,
    org_limit: OrgLimit,
    outbox: Outbox,
    webhooks: Webhooks,
    signer: Arc<LogSigner>,
}

impl Service {
    /// Builds the service and starts the ledger tail (LISTEN/NOTIFY) that feeds live events,
    /// caches, the projector and the webhook outbox, and the webhook delivery workers.
    pub async fn start(pool: PgPool, config: Config) -> Result<Self, Error> {
        let key =
            dashclaw_store::keys::signing_key(&pool, config.signing_key_jwk.as_deref()).await?;
        let signer = LogSigner::new(key, &config.log_origin).map_err(|e| {
            Error::bad_request(format!(
                "DASHCLAW_LOG_ORIGIN={:?} cannot name a log: {e}",
                config.log_origin
            ))
        })?;
        let projections = Projections::new(pool.clone());
        let keys = KeyCache::default();
        let outbox = Outbox::new(pool.clone());
        let wake = Arc::new(tokio::sync::Notify::new());
        let webhooks = Webhooks::start(pool.clone(), config.webhooks.clone(), wake.clone());
        let feed = OutboxFeed {
            outbox: outbox.clone(),
            wake,
        };
        let tail = LedgerTail::start(pool.clone(), projections.clone(), feed, keys.clone()).await?;
        Ok(Self {
            clock: Clock::default(),
            aggregates: Aggregates::new(LedgerRepository::new(pool.clone())),
            projections,
            tail,
            org_limit: OrgLimit::new(config.org_limit),
            config: Arc::new(config),
            keys,
            pool,
            outbox,
            webhooks,
            signer: Arc::new(signer),
        })
    }

    /// Stops background work that should not be cut off mid-way: the webhook workers record
    /// the attempts they have in flight, then stop.
    pub async fn stop(&self) {
        self.webhooks.shutdown().await;
    }

    /// Starts this node's sweeps (each runs while this node leads it); they stop when the
    /// returned handles are aborted (until then they hold a clone of the service, and so its
    /// ledger tail).
    pub fn start_sweeps(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let effects = sweep_effects::LedgerEffects::new(self.clone());
        let clock = self.clock.clone();
        dashclaw_sweeps::Sweeps::new(
            self.pool.clone(),
            self.config.sweeps.clone(),
            Arc::new(effects),
            Arc::new(move || clock.now()),
        )
        .spawn()
    }

    /// How long past its declared wait a pending approval of `org` lives: the org's
    /// override, else the server's setting.
    pub async fn approval_grace(&self, org: &OrgId) -> Result<chrono::Duration, Error> {
        let view = self.tail.views().get(&self.aggregates, org).await?;
        let grace = self.config.sweeps.for_org(&view.sweeps).approval_grace;
        chrono::Duration::from_std(grace).map_err(Error::internal)
    }

    /// Counts one recording request against the caller's org limit.
    pub fn org_hit(&self, org: &OrgId) -> Result<(), Error> {
        self.org_limit.hit(org)
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The signer of tree heads (and its ledger key, which signs everything else).
    pub fn signer(&self) -> &LogSigner {
        &self.signer
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn aggregates(&self) -> &Aggregates {
        &self.aggregates
    }

    pub fn projections(&self) -> &Projections {
        &self.projections
    }

    pub fn tail(&self) -> &LedgerTail {
        &self.tail
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }

    fn keys(&self) -> &KeyCache {
        &self.keys
    }
}

/// Mints random bytes (ids, keys) from OS randomness.
pub fn random<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).map_err(Error::internal)?;
    Ok(bytes)
}

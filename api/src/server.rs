//! The HTTP server: shared state, the router, graceful shutdown, background tasks.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use dashclaw_domain::OrgId;
use dashclaw_events::LedgerKey;
use dashclaw_projections::{Outbox, Projections};
use dashclaw_store::LedgerRepository;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::auth::{KeyCache, RateLimiter};
use crate::commands::Ledger;
use crate::error::ApiError;
use crate::live::{Live, OutboxFeed};
use crate::routes;
use crate::webhooks::{WebhookConfig, Webhooks};

/// Request bodies larger than this are refused with 413 (contract section 0.2).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// A fixed-window rate limit: `max` requests per `window`.
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    pub max: u32,
    pub window: Duration,
}

/// Server configuration, validated at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// SHA-256 of `DASHCLAW_API_KEY`, the bootstrap admin key.
    pub bootstrap_key: Option<[u8; 32]>,
    /// The org the bootstrap key acts in.
    pub bootstrap_org: OrgId,
    /// Per client IP and path, every route (contract: 100 per 60 s).
    pub ip_limit: RateLimit,
    /// Per org on `POST /api/guard` and `POST /api/actions` (contract: 600 per 60 s).
    pub org_limit: RateLimit,
    /// SSE heartbeat period (contract: 15 s).
    pub heartbeat: Duration,
    /// The sweeps' timeouts and cadences (orgs may override them).
    pub sweeps: dashclaw_sweeps::Settings,
    /// Webhook delivery: retries, timeouts, which targets are allowed.
    pub webhooks: WebhookConfig,
    /// A client must send a request's headers within this long, and a kept-alive connection
    /// may sit idle between requests no longer than this.
    pub header_read_timeout: Duration,
    /// Open connections one client address may hold at once.
    pub max_connections_per_client: usize,
}

impl Config {
    pub fn new(bootstrap_key: Option<&str>) -> Self {
        Self {
            bootstrap_key: bootstrap_key.map(|k| Sha256::digest(k.as_bytes()).into()),
            bootstrap_org: OrgId::new("org_default").unwrap_or_else(|_| unreachable!()),
            ip_limit: RateLimit {
                max: 100,
                window: Duration::from_secs(60),
            },
            org_limit: RateLimit {
                max: 600,
                window: Duration::from_secs(60),
            },
            heartbeat: Duration::from_secs(15),
            sweeps: dashclaw_sweeps::Settings::default(),
            webhooks: WebhookConfig::default(),
            header_read_timeout: Duration::from_secs(5),
            max_connections_per_client: 256,
        }
    }
}

/// The server's clock: the system clock plus an offset that tests can advance, so that
/// time-driven rules (approval expiry, claim windows) are tested without waiting.
#[derive(Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        crate::wire::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }

    /// Moves this clock forward (tests only ever need forward).
    pub fn advance(&self, by: chrono::Duration) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub clock: Clock,
    pub pool: PgPool,
    pub ledger: Ledger,
    pub projector: Projections,
    pub live: Live,
    pub config: Arc<Config>,
    pub keys: KeyCache,
    pub limiter: RateLimiter,
    /// The webhook outbox fold (also run by the ledger tail) and the delivery worker.
    pub outbox: Outbox,
    pub webhooks: Webhooks,
}

impl AppState {
    /// How long past its declared wait a pending approval of `org` lives: the org's override,
    /// else the server's setting.
    pub async fn approval_grace(&self, org: &OrgId) -> Result<chrono::Duration, ApiError> {
        let view = self.live.views().get(&self.ledger, org).await?;
        let grace = self.config.sweeps.for_org(&view.sweeps).approval_grace;
        chrono::Duration::from_std(grace).map_err(ApiError::internal)
    }

    /// Builds the state and starts the ledger tail (LISTEN/NOTIFY) that feeds SSE, caches,
    /// the projector and the webhook outbox, and the webhook delivery worker. They stop when
    /// the last clone of the state is dropped (the worker gracefully with [`Self::stop`]).
    pub async fn start(pool: PgPool, config: Config) -> Result<Self, ApiError> {
        let repo = LedgerRepository::new(pool.clone());
        let projector = Projections::new(pool.clone());
        let keys = KeyCache::default();
        let outbox = Outbox::new(pool.clone());
        let wake = Arc::new(tokio::sync::Notify::new());
        let webhooks = Webhooks::start(pool.clone(), config.webhooks.clone(), wake.clone());
        let feed = OutboxFeed {
            outbox: outbox.clone(),
            wake,
        };
        let live = Live::start(pool.clone(), projector.clone(), feed, keys.clone()).await?;
        Ok(Self {
            clock: Clock::default(),
            ledger: Ledger::new(repo),
            projector,
            live,
            limiter: RateLimiter::new(config.ip_limit, config.org_limit),
            config: Arc::new(config),
            keys,
            pool,
            outbox,
            webhooks,
        })
    }

    /// Stops background work that should not be cut off mid-way: the webhook worker records
    /// the attempts it has in flight, then stops.
    pub async fn stop(&self) {
        self.webhooks.shutdown().await;
    }
}

/// The whole HTTP surface: the public routes, the REST routes behind the key check, and
/// GraphQL (which checks keys itself, answering in GraphQL's error shape).
pub fn app(state: AppState) -> Router {
    let public = Router::new()
        .merge(routes::health::router())
        .merge(routes::jwks::router());
    let rest = Router::new()
        .merge(routes::guard::router())
        .merge(routes::actions::router())
        .merge(routes::assumptions::router())
        .merge(routes::policies::router())
        .merge(routes::policy_tools::router())
        .merge(routes::org::router())
        .merge(routes::keys::router())
        .merge(routes::analytics::router())
        .merge(routes::posture::router())
        .merge(routes::stream::router())
        .merge(routes::webhooks::router())
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_key,
        ));
    Router::new()
        .merge(public)
        .merge(rest)
        .merge(crate::graphql::router(&state))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::limit_requests,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
///
/// Each connection is HTTP/1.1 (with upgrades, for GraphQL's WebSocket) and must send each
/// request's headers within the configured timeout, so a client that trickles bytes (or
/// idles) cannot hold a connection; one client address may hold only so many at once.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_read_timeout = state.config.header_read_timeout;
    let clients = ClientConnections::new(state.config.max_connections_per_client);
    let router = app(state);
    // Told to stop, each connection finishes its request in flight and closes; `open` closes
    // when the last connection has (each holds a sender).
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(slot) = clients.enter(peer.ip()) else {
            tracing::warn!(client = %peer.ip(), "too many connections from one client; closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            tower_service::Service::call(&mut router.clone(), request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .with_upgrades();
        let (mut stopping, open) = (stopping.clone(), open.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = async { stopping.wait_for(|stop| *stop).await.map(drop) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, client = %peer, "connection ended with an error");
            }
            drop((slot, open));
        });
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    all_closed.recv().await;
    Ok(())
}

/// Open connections per client address.
#[derive(Clone)]
struct ClientConnections {
    max: usize,
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// One open connection; counted until dropped.
struct ClientSlot {
    clients: ClientConnections,
    ip: std::net::IpAddr,
}

impl ClientConnections {
    fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    fn enter(&self, ip: std::net::IpAddr) -> Option<ClientSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self
            .clients
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Starts this node's sweeps (each runs while this node leads it); they stop when the
/// returned handles are aborted.
pub fn start_sweeps(state: &AppState, key: LedgerKey) -> Vec<tokio::task::JoinHandle<()>> {
    let effects = crate::sweeping::LedgerEffects {
        ledger: state.ledger.clone(),
        pool: state.pool.clone(),
        key,
    };
    let clock = state.clock.clone();
    dashclaw_sweeps::Sweeps::new(
        state.pool.clone(),
        state.config.sweeps.clone(),
        Arc::new(effects),
        Arc::new(move || clock.now()),
    )
    .spawn()
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

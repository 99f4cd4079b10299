//! What every HTTP adapter can reach: the application, the edge's settings and its
//! per-client limit (the adapters depend on this, the router in `server` on them).

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::service::limits::{RateLimit, Windows};
use crate::service::{self, Service};

/// Request bodies larger than this are refused with 413 (contract section 0.2).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Server configuration: the application's settings and the HTTP edge's.
#[derive(Clone, Debug)]
pub struct Config {
    pub service: service::Config,
    /// Per client IP and path, every route (contract: 100 per 60 s).
    pub ip_limit: RateLimit,
    /// SSE heartbeat period (contract: 15 s).
    pub heartbeat: Duration,
    /// A client must send a request's headers within this long, and a kept-alive connection
    /// may sit idle between requests no longer than this.
    pub header_read_timeout: Duration,
    /// Open connections one client address may hold at once.
    pub max_connections_per_client: usize,
}

impl Config {
    pub fn new(bootstrap_key: Option<&str>) -> Self {
        Self {
            service: service::Config::new(bootstrap_key),
            ip_limit: RateLimit {
                max: 100,
                window: Duration::from_secs(60),
            },
            heartbeat: Duration::from_secs(15),
            header_read_timeout: Duration::from_secs(5),
            max_connections_per_client: 256,
        }
    }
}

/// The HTTP edge's settings.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub heartbeat: Duration,
    pub header_read_timeout: Duration,
    pub max_connections_per_client: usize,
}

/// What every HTTP adapter can reach: the application, the edge's settings and its
/// per-client limit. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub service: Service,
    pub http: Arc<HttpConfig>,
    pub ip_limit: Windows,
}

impl AppState {
    /// Starts the application (see [`Service::start`]) behind the HTTP edge.
    pub async fn start(pool: PgPool, config: Config) -> Result<Self, service::Error> {
        Ok(Self {
            service: Service::start(pool, config.service).await?,
            http: Arc::new(HttpConfig {
                heartbeat: config.heartbeat,
                header_read_timeout: config.header_read_timeout,
                max_connections_per_client: config.max_connections_per_client,
            }),
            ip_limit: Windows::new(config.ip_limit),
        })
    }
}

//! The HTTP server: the router, graceful shutdown, and the background checkpoint signer.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use dashclaw_events::LedgerKey;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::error::ApiError;
use crate::routes;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(routes::health::router())
        .merge(routes::jwks::router())
        .fallback(|| async { ApiError::not_found() })
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Signs a checkpoint for every org whose chain moved, every `interval`, until the task is
/// dropped. (Leader election across nodes arrives with the sweeps; until then each node may
/// sign, which is harmless: checkpoints are idempotent per (org, size).)
pub async fn sign_checkpoints_every(pool: PgPool, key: LedgerKey, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match dashclaw_store::checkpoints::sign_all(&pool, &key).await {
            Ok(signed) if !signed.is_empty() => {
                tracing::info!(orgs = signed.len(), "signed checkpoints")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checkpoint signing failed; will retry"),
        }
    }
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

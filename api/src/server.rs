//! The HTTP server: the adapters' shared state, the router, the accept loop, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tokio::net::TcpListener;

use crate::rest;
use crate::service;
pub use crate::state::{AppState, Config, HttpConfig, MAX_BODY_BYTES};

/// The whole HTTP surface: the public routes, the REST routes behind the key check, and
/// GraphQL (which checks keys itself, answering in GraphQL's error shape).
pub fn app(state: AppState) -> Router {
    let public = Router::new()
        .merge(rest::health::router())
        .merge(rest::jwks::router())
        .merge(rest::evidence::public_router())
        .route(
            "/api/openapi.json",
            axum::routing::get(crate::openapi::openapi_json),
        );
    let rest = Router::new()
        .merge(rest::guard::router())
        .merge(rest::actions::router())
        .merge(rest::assumptions::router())
        .merge(rest::policies::router())
        .merge(rest::policy_tools::router())
        .merge(rest::policy_packs::router())
        .merge(rest::org::router())
        .merge(rest::keys::router())
        .merge(rest::analytics::router())
        .merge(rest::posture::router())
        .merge(rest::stream::router())
        .merge(rest::webhooks::router())
        .merge(rest::integrity::router())
        .merge(rest::evidence::router())
        .merge(rest::compliance::router())
        .merge(rest::activity::router())
        .merge(rest::orgs::router())
        .merge(rest::sessions::router())
        .merge(rest::plans::router())
        .merge(rest::identities::router())
        .fallback(|| async { service::Error::not_found() })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rest::auth::require_key,
        ));
    Router::new()
        .merge(public)
        .merge(rest)
        .merge(crate::graphql::router(&state))
        .method_not_allowed_fallback(|| async { service::Error::method_not_allowed() })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rest::auth::limit_requests,
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
    let header_read_timeout = state.http.header_read_timeout;
    let clients = ClientConnections::new(state.http.max_connections_per_client);
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

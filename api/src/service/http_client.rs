//! The outgoing HTTP client (hyper-util's, HTTP/1 over tokio; https through rustls with the
//! `ring` provider and the Mozilla roots of `webpki-roots`), shared by webhook delivery and
//! the operator CLI. Its resolver refuses non-public addresses unless allowed, so a host name
//! that resolves to a private address is refused at connect time (no check-then-use gap).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::webhooks::target;

/// Response bodies are read up to this size (the rest is an error).
const MAX_RESPONSE: usize = 1 << 20;

/// Resolves host names with the system resolver and drops non-public addresses unless
/// `allow_private`.
#[derive(Clone)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let usable: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| allow_private || target::is_public(a.ip()))
                .collect();
            if usable.is_empty() && !all.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} resolves only to non-public addresses ({}), which are not allowed",
                        name.as_str(),
                        all[0].ip()
                    ),
                ));
            }
            Ok(usable.into_iter())
        })
    }
}

/// An HTTP/1 client with a whole-exchange timeout.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    allow_private: bool,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(allow_private: bool, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new_with_resolver(GuardedResolver { allow_private });
        connector.set_connect_timeout(Some(timeout));
        connector.set_nodelay(true);
        // The TLS layer decides per scheme; the TCP layer must then accept https URLs.
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            client,
            allow_private,
            timeout,
        }
    }

    /// Sends `request` and reads the answer; an error is a message (no answer came back, or
    /// the address is not allowed).
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), String> {
        let uri = request.uri();
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(format!("unsupported URL {uri}")),
        }
        if !self.allow_private {
            // Literal addresses never reach the resolver.
            if let Some(ip) = uri.host().and_then(target::literal_ip) {
                if !target::is_public(ip) {
                    return Err(format!("address {ip} is not public and is not allowed"));
                }
            }
        }
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| describe(&e))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| format!("reading the response failed: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("timed out after {:?}", self.timeout)),
        }
    }
}

/// The whole cause chain of a client error (hyper's top level says only "client error").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

//! Router tests of the governance REST API (no socket): a real database, real keys, the real
//! router. `Api` is the harness the other API test modules share.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use dashclaw::server::{app, AppState, Config};
use dashclaw::service::keys::KeyAdmin;
use dashclaw::service::RateLimit;
use dashclaw_domain::api_key::Role;
use dashclaw_events::OrgId;
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;

/// Mints a key of `role` in `org` through the ledger, as `dashclaw keys create` does.
pub async fn issue_key(state: &AppState, org: &OrgId, role: Role, name: &str, by: &str) -> String {
    let service = &state.service;
    KeyAdmin::new(
        service.aggregates(),
        service.projections(),
        service.clock().now(),
    )
    .issue(org, role, name, by)
    .await
    .unwrap()
}

pub const BOOTSTRAP: &str = "oc_test_bootstrap_key";

/// A router over a fresh database with an admin and a member key of `org_default`, and a
/// member key of `org_other`.
pub struct Api {
    pub router: Router,
    pub pool: PgPool,
    pub state: AppState,
    /// An admin key (principal `key_…`), not the bootstrap operator.
    pub admin: String,
    pub member: String,
    pub readonly: String,
    pub other_org: String,
}

impl Api {
    pub async fn start(pool: PgPool) -> Self {
        let mut config = Config::new(Some(BOOTSTRAP));
        let wide = RateLimit {
            max: 1_000_000,
            window: std::time::Duration::from_secs(60),
        };
        config.ip_limit = wide;
        config.service.org_limit = wide;
        Self::with_config(pool, config).await
    }

    pub async fn with_config(pool: PgPool, config: Config) -> Self {
        let state = AppState::start(pool.clone(), config).await.unwrap();
        let org = OrgId::new("org_default").unwrap();
        let other = OrgId::new("org_other").unwrap();
        let key = |org: OrgId, role| {
            let state = state.clone();
            async move { issue_key(&state, &org, role, "test", "test").await }
        };
        Self {
            admin: key(org.clone(), Role::Admin).await,
            member: key(org.clone(), Role::Member).await,
            readonly: key(org, Role::Readonly).await,
            other_org: key(other, Role::Member).await,
            router: app(state.clone()),
            state,
            pool,
        }
    }

    /// Sends a request with a JSON body (or none); returns the status and the JSON answer.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        key: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        self.raw(method, uri, key, bytes.into_bytes()).await
    }

    /// Sends raw body bytes.
    pub async fn raw(
        &self,
        method: Method,
        uri: &str,
        key: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .header("x-api-key", key)
            .body(Body::from(body))
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{status}: body is not JSON: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, json)
    }

    pub async fn post(&self, uri: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, uri, key, Some(body)).await
    }

    pub async fn get(&self, uri: &str, key: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri, key, None).await
    }

    /// Events in the whole ledger: a refused request must not change it.
    pub async fn events(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// A 4xx with the error envelope: `error` (a message) and `code` (SCREAMING_SNAKE).
#[track_caller]
pub fn assert_client_error(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(
        body["code"]
            .as_str()
            .is_some_and(|c| c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_')),
        "{body}"
    );
}

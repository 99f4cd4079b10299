//! Tenant authentication (`x-api-key`, stored as SHA-256, org-scoped, with a role) and the
//! contract's rate limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dashclaw_domain::api_key::Role;
use dashclaw_domain::OrgId;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorCode};
use crate::server::{AppState, RateLimit};

/// The principal of the bootstrap key (exempt from separation of duties).
pub use dashclaw_domain::action::OPERATOR;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub org: OrgId,
    pub role: Role,
    /// `operator` for the bootstrap key, else `key_<id>`: who recorded or approved something.
    pub principal: String,
}

impl Caller {
    pub fn require_admin(&self, message: &str) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden(message))
        }
    }
}

/// How long a looked-up key is trusted without asking the database again. Revocations are
/// enforced sooner: every node's ledger tail marks a revoked key the moment it sees the event.
const KEY_TTL: Duration = Duration::from_secs(30);

/// Key lookups, cached by key hash, and the ids of keys seen revoked.
#[derive(Clone, Default)]
pub struct KeyCache(Arc<Mutex<Keys>>);

#[derive(Default)]
struct Keys {
    by_hash: HashMap<KeyHash, (Caller, Instant)>,
    /// Key ids revoked since this node started: refused even while the read model that
    /// lookups use has not caught up with the revocation yet.
    revoked: std::collections::HashSet<String>,
}

type KeyHash = [u8; 32];

impl KeyCache {
    pub fn clear(&self) {
        if let Ok(mut keys) = self.0.lock() {
            keys.by_hash.clear();
        }
    }

    /// Refuses the key `id` from now on (the ledger tail saw its revocation).
    pub fn revoked(&self, id: &str) {
        if let Ok(mut keys) = self.0.lock() {
            keys.by_hash.retain(|_, (caller, _)| caller.principal != id);
            keys.revoked.insert(id.to_owned());
        }
    }

    fn is_revoked(&self, id: &str) -> bool {
        self.0.lock().is_ok_and(|keys| keys.revoked.contains(id))
    }

    fn get(&self, hash: &[u8; 32]) -> Option<Caller> {
        let keys = self.0.lock().ok()?;
        let (caller, at) = keys.by_hash.get(hash)?;
        (at.elapsed() < KEY_TTL).then(|| caller.clone())
    }

    fn put(&self, hash: [u8; 32], caller: Caller) {
        if let Ok(mut keys) = self.0.lock() {
            if keys.revoked.contains(&caller.principal) {
                return;
            }
            if keys.by_hash.len() > 10_000 {
                keys.by_hash.clear();
            }
            keys.by_hash.insert(hash, (caller, Instant::now()));
        }
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        ErrorCode::Unauthorized,
        "Unauthorized - Invalid or missing API key",
    )
}

/// Compares two digests without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn authenticate(state: &AppState, key: &str) -> Result<Caller, ApiError> {
    let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    if let Some(bootstrap) = &state.config.bootstrap_key {
        if same(bootstrap, &hash) {
            return Ok(Caller {
                org: state.config.bootstrap_org.clone(),
                role: Role::Admin,
                principal: OPERATOR.to_owned(),
            });
        }
    }
    if let Some(caller) = state.keys.get(&hash) {
        return Ok(caller);
    }
    let row: Option<(String, String, String)> = sqlx::query_as(
        "SELECT id, org_id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hex::encode(hash))
    .fetch_optional(&state.pool)
    .await?;
    let (id, org, role) = row.ok_or_else(unauthorized)?;
    if state.keys.is_revoked(&id) {
        return Err(unauthorized());
    }
    let caller = Caller {
        org: OrgId::new(org).map_err(ApiError::internal)?,
        role: Role::parse(&role).ok_or_else(|| ApiError::internal("unknown role in api_keys"))?,
        principal: id,
    };
    state.keys.put(hash, caller.clone());
    Ok(caller)
}

/// The `x-api-key` header, if it holds a key.
pub fn api_key(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
}

/// The caller named by the request's `x-api-key`, or 401.
pub async fn authenticate_headers(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Caller, ApiError> {
    authenticate(state, api_key(headers).ok_or_else(unauthorized)?).await
}

/// Middleware on the protected REST routes: the key is checked before anything else, the
/// body above all (an unauthenticated request is answered 401 without its body being read),
/// and the caller is handed to the handler.
pub async fn require_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/api/") {
        // Not an API path: the router's 404.
        return next.run(request).await;
    }
    match authenticate_headers(&state, request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        // Set by `require_key`, which every protected route sits behind; a route outside it
        // gets no caller (fail closed).
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(unauthorized)?;
        if caller.role == Role::Readonly && parts.method != Method::GET {
            return Err(ApiError::forbidden("Forbidden - readonly API key"));
        }
        Ok(caller)
    }
}

/// Fixed-window counters for the contract's two limits.
#[derive(Clone)]
pub struct RateLimiter {
    ip: RateLimit,
    org: RateLimit,
    windows: Arc<Mutex<HashMap<String, (Instant, u32)>>>,
}

impl RateLimiter {
    pub fn new(ip: RateLimit, org: RateLimit) -> Self {
        Self {
            ip,
            org,
            windows: Arc::default(),
        }
    }

    /// Counts a hit on `key`; `Err(seconds to wait)` when over the limit.
    fn hit(&self, key: String, limit: RateLimit) -> Result<(), u64> {
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        if windows.len() > 100_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < limit.window);
        }
        let (start, count) = windows.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= limit.window {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count > limit.max {
            let left = limit.window.saturating_sub(now.duration_since(*start));
            Err(left.as_secs().max(1))
        } else {
            Ok(())
        }
    }

    /// The per-org limit on guard and action creation.
    pub fn org_hit(&self, org: &OrgId) -> Result<(), ApiError> {
        self.hit(format!("org:{org}"), self.org).map_err(|secs| {
            ApiError::new(
                ErrorCode::OrgRateLimited,
                format!(
                    "Organization rate limit exceeded ({} requests per window). Retry after {secs}s.",
                    self.org.max
                ),
            )
            .with("retry_after_ms", secs * 1000)
            .with("limit", self.org.max)
            .retry(secs)
        })
    }
}

impl ApiError {
    fn retry(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

/// Middleware: the per-IP-and-path limit on every request.
pub async fn limit_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "local".to_owned());
    let key = format!("ip:{ip}:{}", request.uri().path());
    if let Err(secs) = state.limiter.hit(key, state.limiter.ip) {
        let _ = secs;
        return ApiError::new(
            ErrorCode::RateLimited,
            "Rate limit exceeded. Please slow down.",
        )
        .retry(60)
        .into_response();
    }
    next.run(request).await
}

/// Mints an API key for `org`: the key is returned (and shown once); only its SHA-256 is
/// stored, through an `ApiKeyIssued` event. The read model is caught up before returning,
/// so the key works at once (should that fail, the key is still returned: it is issued, and
/// works as soon as any catch-up succeeds).
pub async fn issue_key(
    ledger: &crate::commands::Ledger,
    projector: &dashclaw_projections::Projections,
    org: &OrgId,
    role: Role,
    name: &str,
    by: &str,
) -> Result<String, ApiError> {
    use dashclaw_domain::api_key::{ApiKey, ApiKeyCommand, ApiKeyRecord};
    use dashclaw_domain::ids::ApiKeyId;

    let secret: [u8; 24] = crate::governance::random()?;
    let key = format!("oc_live_{}", hex::encode(secret));
    let id = ApiKeyId::random(crate::governance::random()?);
    let record = ApiKeyRecord {
        id: id.clone(),
        key_hash: hex::encode(Sha256::digest(key.as_bytes())),
        role,
        name: name.to_owned(),
        created_by: by.to_owned(),
        created_at: crate::wire::now(),
        revoked_at: None,
    };
    let actor = crate::commands::Actor::of(by, None);
    match ledger
        .execute::<ApiKey>(
            org,
            id.as_str(),
            ApiKeyCommand::Issue(Box::new(record)),
            &actor,
        )
        .await
    {
        Ok(_) => {}
        Err(crate::commands::CommandError::Failed(e)) => return Err(e),
        Err(crate::commands::CommandError::Rejected(e)) => return Err(ApiError::internal(e)),
    }
    // The key is on the ledger now, whatever follows: it must be handed out, never lost.
    if let Err(e) = projector.catch_up(org).await {
        tracing::warn!(%org, error = %e, "API key issued; it works once the read models catch up");
    }
    Ok(key)
}

/// The org's API keys as JSON rows, without their hashes.
pub async fn list_keys(
    pool: &sqlx::PgPool,
    org: &OrgId,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let keys = dashclaw_projections::governance::keys_of(pool, org).await?;
    Ok(keys
        .into_iter()
        .map(|k| {
            serde_json::json!({
                "id": k.id,
                "name": k.name,
                "role": k.role,
                "created_at": crate::wire::ts(k.created_at),
                "revoked_at": k.revoked_at.map(crate::wire::ts),
            })
        })
        .collect())
}

/// Revokes the key `id` of `org` (an `ApiKeyRevoked` event), refuses it on this node at
/// once and brings the read model up to date. 404 if the org has no such key, 409 if it is
/// already revoked.
pub async fn revoke_key(
    ledger: &crate::commands::Ledger,
    projector: &dashclaw_projections::Projections,
    keys: &KeyCache,
    org: &OrgId,
    id: &str,
    by: &str,
) -> Result<(), ApiError> {
    use dashclaw_domain::api_key::{ApiKey, ApiKeyCommand, ApiKeyError};

    if dashclaw_domain::ids::ApiKeyId::parse(id).is_err() {
        return Err(ApiError::new(ErrorCode::NotFound, "API key not found"));
    }
    let actor = crate::commands::Actor::of(by, None);
    let now = crate::wire::now();
    ledger
        .execute::<ApiKey>(org, id, ApiKeyCommand::Revoke { now }, &actor)
        .await
        .map_err(|e| match e {
            crate::commands::CommandError::Failed(e) => e,
            crate::commands::CommandError::Rejected(ApiKeyError::NotFound) => {
                ApiError::new(ErrorCode::NotFound, "API key not found")
            }
            crate::commands::CommandError::Rejected(ApiKeyError::AlreadyRevoked) => {
                ApiError::new(ErrorCode::Conflict, "API key already revoked")
            }
            crate::commands::CommandError::Rejected(other) => ApiError::internal(other),
        })?;
    keys.revoked(id);
    projector.catch_up(org).await?;
    Ok(())
}

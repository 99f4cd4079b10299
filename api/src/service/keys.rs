//! API keys: authenticating one (stored as SHA-256, org-scoped, with a role; cached, with
//! revocations seen on the ledger enforced at once), issuing, listing and revoking them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashclaw_domain::api_key::{ApiKey, ApiKeyCommand, ApiKeyError, ApiKeyRecord, Role};
use dashclaw_domain::ids::ApiKeyId;
use dashclaw_domain::OrgId;
use dashclaw_projections::governance::KeyListing;
use dashclaw_projections::Projections;
use sha2::{Digest, Sha256};

use super::aggregates::{Actor, Aggregates, CommandError};
use super::caller::{Caller, Permission, OPERATOR};
use super::{random, Error, ErrorCode, Service};

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
    revoked: HashSet<String>,
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

    fn get(&self, hash: &KeyHash) -> Option<Caller> {
        let keys = self.0.lock().ok()?;
        let (caller, at) = keys.by_hash.get(hash)?;
        (at.elapsed() < KEY_TTL).then(|| caller.clone())
    }

    fn put(&self, hash: KeyHash, caller: Caller) {
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

/// Compares two digests without an early exit.
fn same(a: &KeyHash, b: &KeyHash) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Service {
    /// The caller a key names, or 401 `UNAUTHORIZED`.
    pub async fn authenticate(&self, key: &str) -> Result<Caller, Error> {
        let hash: KeyHash = Sha256::digest(key.as_bytes()).into();
        let config = self.config();
        if let Some(bootstrap) = &config.bootstrap_key {
            if same(bootstrap, &hash) {
                return Ok(Caller {
                    org: config.bootstrap_org.clone(),
                    role: Role::Admin,
                    principal: OPERATOR.to_owned(),
                });
            }
        }
        let keys = self.keys();
        if let Some(caller) = keys.get(&hash) {
            return Ok(caller);
        }
        let found =
            dashclaw_projections::read::keys::active_key_by_hash(self.pool(), &hex::encode(hash))
                .await?;
        let holder = found.ok_or_else(Error::unauthorized)?;
        if keys.is_revoked(&holder.id) {
            return Err(Error::unauthorized());
        }
        let caller = Caller {
            org: holder.org_id,
            role: holder.role,
            principal: holder.id,
        };
        keys.put(hash, caller.clone());
        Ok(caller)
    }

    /// The caller's org's API keys, without their hashes (admin).
    pub async fn list_keys(&self, caller: &Caller) -> Result<Vec<KeyListing>, Error> {
        caller.require_admin("Admin access required")?;
        self.projections().catch_up(&caller.org).await?;
        list_keys(self.pool(), &caller.org).await
    }

    /// Revokes the key `id` of the caller's org (admin); refused on this node at once.
    pub async fn revoke_key(&self, caller: &Caller, id: &str) -> Result<(), Error> {
        caller.require_admin("Admin access required")?;
        let keys = KeyAdmin::new(self.aggregates(), self.projections(), self.clock().now());
        keys.revoke(&caller.org, id, &caller.principal).await?;
        self.keys().revoked(id);
        Ok(())
    }

    /// Issues a key of `role` in the caller's org (admin).
    pub async fn issue_key(
        &self,
        caller: &Caller,
        role: Role,
        name: &str,
    ) -> Result<String, Error> {
        caller.require(Permission::Admin)?;
        let keys = KeyAdmin::new(self.aggregates(), self.projections(), self.clock().now());
        keys.issue(&caller.org, role, name, &caller.principal).await
    }
}

/// The org's API keys as its admins see them listed (read model `api_keys`).
pub async fn list_keys(pool: &sqlx::PgPool, org: &OrgId) -> Result<Vec<KeyListing>, Error> {
    Ok(dashclaw_projections::governance::keys_of(pool, org).await?)
}

/// Issuing and revoking keys, for the server and for the admin CLI (which runs no server).
pub struct KeyAdmin<'a> {
    aggregates: &'a Aggregates,
    projections: &'a Projections,
    now: chrono::DateTime<chrono::Utc>,
}

impl<'a> KeyAdmin<'a> {
    pub fn new(
        aggregates: &'a Aggregates,
        projections: &'a Projections,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Self {
            aggregates,
            projections,
            now,
        }
    }

    /// Mints an API key for `org`: the key is returned (and shown once); only its SHA-256 is
    /// stored, through an `ApiKeyIssued` event. The read model is caught up before
    /// returning, so the key works at once (should that fail, the key is still returned: it
    /// is issued, and works as soon as any catch-up succeeds).
    pub async fn issue(
        &self,
        org: &OrgId,
        role: Role,
        name: &str,
        by: &str,
    ) -> Result<String, Error> {
        let secret: [u8; 24] = random()?;
        let key = format!("oc_live_{}", hex::encode(secret));
        let id = ApiKeyId::random(random()?);
        let record = ApiKeyRecord {
            id: id.clone(),
            key_hash: hex::encode(Sha256::digest(key.as_bytes())),
            role,
            name: name.to_owned(),
            created_by: by.to_owned(),
            created_at: self.now,
            revoked_at: None,
        };
        let command = ApiKeyCommand::Issue(Box::new(record));
        match self
            .aggregates
            .execute::<ApiKey>(org, id.as_str(), command, &Actor::of(by, None))
            .await
        {
            Ok(_) => {}
            Err(CommandError::Failed(e)) => return Err(e),
            Err(CommandError::Rejected(e)) => return Err(Error::internal(e)),
        }
        // The key is on the ledger now, whatever follows: it must be handed out, never lost.
        if let Err(e) = self.projections.catch_up(org).await {
            tracing::warn!(%org, error = %e, "API key issued; it works once the read models catch up");
        }
        Ok(key)
    }

    /// Revokes the key `id` of `org` (an `ApiKeyRevoked` event) and brings the read model up
    /// to date. 404 if the org has no such key, 409 if it is already revoked.
    pub async fn revoke(&self, org: &OrgId, id: &str, by: &str) -> Result<(), Error> {
        if ApiKeyId::parse(id).is_err() {
            return Err(Error::new(ErrorCode::NotFound, "API key not found"));
        }
        let command = ApiKeyCommand::Revoke { now: self.now };
        self.aggregates
            .execute::<ApiKey>(org, id, command, &Actor::of(by, None))
            .await
            .map_err(|e| match e {
                CommandError::Failed(e) => e,
                CommandError::Rejected(ApiKeyError::NotFound) => {
                    Error::new(ErrorCode::NotFound, "API key not found")
                }
                CommandError::Rejected(ApiKeyError::AlreadyRevoked) => {
                    Error::new(ErrorCode::Conflict, "API key already revoked")
                }
                CommandError::Rejected(other) => Error::internal(other),
            })?;
        self.projections.catch_up(org).await?;
        Ok(())
    }
}

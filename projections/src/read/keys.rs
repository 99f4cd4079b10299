//! Reads of `api_keys`, the read model of `ApiKey` events: listing an org's keys and looking
//! a key up by its hash.

use chrono::{DateTime, Utc};
use dashclaw_domain::api_key::Role;
use dashclaw_domain::OrgId;
use sqlx::PgPool;

use super::{org_of_row, unreadable};
use crate::ProjectionError;

const TABLE: &str = "api_keys";

/// An API key as its org's admins see it listed: never its hash.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct KeyListing {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The org's API keys, oldest first.
pub async fn keys_of(pool: &PgPool, org: &OrgId) -> Result<Vec<KeyListing>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT id, name, role, created_at, revoked_at FROM api_keys
          WHERE org_id = $1 ORDER BY created_at, id",
    )
    .bind(org.as_str())
    .fetch_all(pool)
    .await?)
}

/// Whose a key is: what authentication learns from its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHolder {
    /// The key's id (the caller's principal).
    pub id: String,
    pub org_id: OrgId,
    pub role: Role,
}

/// The unrevoked key whose SHA-256 is `key_hash` (lowercase hex), if any.
pub async fn active_key_by_hash(
    pool: &PgPool,
    key_hash: &str,
) -> Result<Option<KeyHolder>, ProjectionError> {
    let row: Option<(String, String, String)> = sqlx::query_as(
        "SELECT id, org_id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(key_hash)
    .fetch_optional(pool)
    .await?;
    let Some((id, org, role)) = row else {
        return Ok(None);
    };
    let org_id = org_of_row(TABLE, org, &id)?;
    let role = Role::parse(&role).ok_or_else(|| {
        unreadable(
            TABLE,
            org_id.as_str(),
            &id,
            format!("unknown role {role:?}"),
        )
    })?;
    Ok(Some(KeyHolder { id, org_id, role }))
}

/// Whether any org has an unrevoked admin key (`dashclaw up` mints the first one otherwise).
pub async fn admin_key_exists(pool: &PgPool) -> Result<bool, ProjectionError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM api_keys WHERE role = 'admin' AND revoked_at IS NULL)",
    )
    .fetch_one(pool)
    .await?)
}

//! The server's Ed25519 signing key and the published key set.

use dashclaw_events::{Jwk, Jwks, LedgerKey};
use sqlx::PgPool;

use crate::StoreError;

/// The signing key: the private JWK in `configured` (from `DASHCLAW_SIGNING_KEY_JWK`) if given,
/// else the newest key kept in the database, else a new key generated now and kept. Every key
/// used is recorded (public part) so that `dashclaw verify` can check old checkpoints.
pub async fn signing_key(pool: &PgPool, configured: Option<&str>) -> Result<LedgerKey, StoreError> {
    if let Some(text) = configured {
        let jwk: Jwk = serde_json::from_str(text).map_err(|e| {
            StoreError::InvalidKey(format!("DASHCLAW_SIGNING_KEY_JWK is not a JWK: {e}"))
        })?;
        let key = LedgerKey::from_jwk(&jwk)
            .map_err(|e| StoreError::InvalidKey(format!("DASHCLAW_SIGNING_KEY_JWK: {e}")))?;
        record_public(pool, &key).await?;
        return Ok(key);
    }
    let mut tx = pool.begin().await?;
    // Two nodes starting at once must not both generate a key.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('dashclaw.signing_key'))")
        .execute(&mut *tx)
        .await?;
    let stored: Option<(sqlx::types::Json<Jwk>,)> = sqlx::query_as(
        "SELECT private_jwk FROM signing_keys WHERE private_jwk IS NOT NULL
          ORDER BY created_at DESC, kid LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let key = match stored {
        Some((jwk,)) => LedgerKey::from_jwk(&jwk.0)
            .map_err(|e| StoreError::Corrupt(format!("stored signing key: {e}")))?,
        None => {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed)
                .map_err(|e| StoreError::Corrupt(format!("no OS randomness for a key: {e}")))?;
            let key = LedgerKey::from_seed(seed);
            sqlx::query(
                "INSERT INTO signing_keys (kid, public_jwk, private_jwk) VALUES ($1, $2, $3)",
            )
            .bind(key.kid())
            .bind(sqlx::types::Json(key.public_jwk()))
            .bind(sqlx::types::Json(key.private_jwk()))
            .execute(&mut *tx)
            .await?;
            tracing::info!(kid = key.kid(), "generated a new ledger signing key");
            key
        }
    };
    tx.commit().await?;
    Ok(key)
}

/// Records a configured key's public part so later verification can check its signatures.
async fn record_public(pool: &PgPool, key: &LedgerKey) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, public_jwk) VALUES ($1, $2) ON CONFLICT (kid) DO NOTHING",
    )
    .bind(key.kid())
    .bind(sqlx::types::Json(key.public_jwk()))
    .execute(pool)
    .await?;
    Ok(())
}

/// Every key that has signed for this ledger, public parts only, oldest first.
pub async fn published(pool: &PgPool) -> Result<Jwks, StoreError> {
    let rows: Vec<(sqlx::types::Json<Jwk>,)> =
        sqlx::query_as("SELECT public_jwk FROM signing_keys ORDER BY created_at, kid")
            .fetch_all(pool)
            .await?;
    Ok(Jwks {
        keys: rows.into_iter().map(|(jwk,)| jwk.0).collect(),
    })
}

//! Signed checkpoints: stored, append-only, one per (org, size).

use chrono::Utc;
use dashclaw_events::{Checkpoint, LedgerKey, OrgId, SignedCheckpoint};
use sqlx::PgPool;

use crate::{chain, timestamp, StoreError};

/// Signs the org's current head, unless it is empty or already checkpointed at this size.
/// Returns the checkpoint at the current size (new or existing).
pub async fn sign(
    pool: &PgPool,
    key: &LedgerKey,
    org: &OrgId,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    let head = chain::head(pool, org).await?;
    if head.size == 0 {
        return Ok(None);
    }
    let signed = Checkpoint {
        org_id: org.clone(),
        size: head.size,
        head_hash: head.head_hash,
        signed_at: timestamp(Utc::now()),
    }
    .sign(key);
    sqlx::query(
        "INSERT INTO checkpoints (org_id, size, head_hash, signed_at, kid, signature)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, size) DO NOTHING",
    )
    .bind(org.as_str())
    .bind(head.size as i64)
    .bind(signed.checkpoint.head_hash.to_hex())
    .bind(&signed.checkpoint.signed_at)
    .bind(&signed.kid)
    .bind(&signed.signature)
    .execute(pool)
    .await?;
    // The row at this size: ours, or one another node signed first.
    let (signed_at, kid, signature): (String, String, String) = sqlx::query_as(
        "SELECT signed_at, kid, signature FROM checkpoints WHERE org_id = $1 AND size = $2",
    )
    .bind(org.as_str())
    .bind(head.size as i64)
    .fetch_one(pool)
    .await?;
    Ok(Some(SignedCheckpoint {
        checkpoint: Checkpoint {
            signed_at,
            ..signed.checkpoint
        },
        kid,
        signature,
    }))
}

/// Signs a checkpoint for every org whose head has moved past its latest checkpoint.
pub async fn sign_all(pool: &PgPool, key: &LedgerKey) -> Result<Vec<SignedCheckpoint>, StoreError> {
    let due: Vec<(String,)> = sqlx::query_as(
        "SELECT h.org_id FROM ledger_heads h
          WHERE h.size > COALESCE((SELECT max(c.size) FROM checkpoints c WHERE c.org_id = h.org_id), 0)
          ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut signed = Vec::with_capacity(due.len());
    for (org,) in due {
        let org = OrgId::new(org).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        signed.extend(sign(pool, key, &org).await?);
    }
    Ok(signed)
}

/// The org's checkpoints, smallest first. Rows are returned as stored; a malformed one is
/// kept (with an impossible hash) so that verification reports it rather than skipping it.
pub async fn list(pool: &PgPool, org: &OrgId) -> Result<Vec<SignedCheckpoint>, StoreError> {
    let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
        "SELECT size, head_hash, signed_at, kid, signature FROM checkpoints
          WHERE org_id = $1 ORDER BY size",
    )
    .bind(org.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(size, head_hash, signed_at, kid, signature)| SignedCheckpoint {
                checkpoint: Checkpoint {
                    org_id: org.clone(),
                    size: size as u64,
                    head_hash: head_hash
                        .parse()
                        .unwrap_or(dashclaw_events::EventHash([0; 32])),
                    signed_at,
                },
                kid,
                signature,
            },
        )
        .collect())
}

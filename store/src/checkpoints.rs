//! Signed checkpoints, which are also signed tree heads: stored, append-only, one per
//! (org, size). Each binds the org's chain head and Merkle root at its size twice: as the
//! JSON statement signed since the first version (`signature`), and as a C2SP
//! `tlog-checkpoint` signed note (`note`, signed since tree heads exist).

use chrono::Utc;
use dashclaw_events::{Checkpoint, LogSigner, OrgId, SignedCheckpoint, TreeHead};
use sqlx::PgPool;

use crate::{timestamp, tree, StoreError};

/// A checkpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub signed: SignedCheckpoint,
    /// The Merkle root at `size`, lowercase hex (absent on checkpoints signed before tree
    /// heads existed).
    pub root_hash: Option<String>,
    /// The signed tree head (absent likewise).
    pub note: Option<String>,
}

impl StoredCheckpoint {
    pub fn size(&self) -> u64 {
        self.signed.checkpoint.size
    }
}

/// Integrates the org's tree up to its chain's head and signs that head, unless the chain
/// is empty or already signed at this size. Returns the checkpoint at that size (new, or
/// the one another node signed first).
pub async fn sign(
    pool: &PgPool,
    signer: &LogSigner,
    org: &OrgId,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let tree = tree::integrate(pool, org, &|_| {}).await?;
    if tree.size == 0 {
        return Ok(None);
    }
    let signed_at = timestamp(Utc::now());
    let signed = Checkpoint {
        org_id: org.clone(),
        size: tree.size,
        head_hash: tree.head_hash,
        signed_at: signed_at.clone(),
    }
    .sign(signer.key());
    let note = signer.sign(&TreeHead {
        origin: signer.origin_of(org),
        size: tree.size,
        root: tree.root,
        chain_head: tree.head_hash,
        signed_at,
    });
    let mut tx = pool.begin().await?;
    tree::relaxed_commit(&mut tx).await?;
    sqlx::query(
        "INSERT INTO checkpoints (org_id, size, head_hash, signed_at, kid, signature, root_hash, note)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (org_id, size) DO NOTHING",
    )
    .bind(org.as_str())
    .bind(tree.size as i64)
    .bind(signed.checkpoint.head_hash.to_hex())
    .bind(&signed.checkpoint.signed_at)
    .bind(&signed.kid)
    .bind(&signed.signature)
    .bind(dashclaw_events::EventHash(tree.root).to_hex())
    .bind(&note)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    at(pool, org, tree.size).await
}

/// Signs every org whose chain has moved past its latest checkpoint.
pub async fn sign_all(
    pool: &PgPool,
    signer: &LogSigner,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
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
        signed.extend(sign(pool, signer, &org).await?);
    }
    Ok(signed)
}

type Row = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);
const COLUMNS: &str = "size, head_hash, signed_at, kid, signature, root_hash, note";

/// A row as stored; a malformed hash is kept (as an impossible one) so that verification
/// reports it rather than skipping it.
fn stored(
    org: &OrgId,
    (size, head_hash, signed_at, kid, signature, root_hash, note): Row,
) -> StoredCheckpoint {
    StoredCheckpoint {
        signed: SignedCheckpoint {
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
        root_hash,
        note,
    }
}

/// The org's checkpoints, smallest first.
pub async fn list(pool: &PgPool, org: &OrgId) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM checkpoints WHERE org_id = $1 ORDER BY size"
    ))
    .bind(org.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|row| stored(org, row)).collect())
}

/// The org's checkpoint at exactly `size`.
pub async fn at(
    pool: &PgPool,
    org: &OrgId,
    size: u64,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM checkpoints WHERE org_id = $1 AND size = $2"
    ))
    .bind(org.as_str())
    .bind(size as i64)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| stored(org, row)))
}

/// The org's latest signed tree head (the largest checkpoint with a note).
pub async fn latest_tree_head(
    pool: &PgPool,
    org: &OrgId,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM checkpoints WHERE org_id = $1 AND note IS NOT NULL
          ORDER BY size DESC LIMIT 1"
    ))
    .bind(org.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|row| stored(org, row)))
}

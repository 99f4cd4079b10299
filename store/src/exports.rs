//! The record of compliance exports: which tree head each export of an org was made against,
//! so that the next one proves its tree extends that one (a consistency proof).

use chrono::{DateTime, Utc};
use dashclaw_events::OrgId;
use sqlx::PgPool;

use crate::StoreError;

/// One export, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRecord {
    pub exported_at: DateTime<Utc>,
    pub first_ledger_seq: u64,
    pub last_ledger_seq: u64,
    /// The size of the signed tree head the export's manifest carries.
    pub tree_size: u64,
    pub kid: String,
}

/// Records an export of `org`.
pub async fn record(pool: &PgPool, org: &OrgId, export: &ExportRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO compliance_exports
             (org_id, exported_at, first_ledger_seq, last_ledger_seq, tree_size, kid)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(org.as_str())
    .bind(export.exported_at)
    .bind(export.first_ledger_seq as i64)
    .bind(export.last_ledger_seq as i64)
    .bind(export.tree_size as i64)
    .bind(&export.kid)
    .execute(pool)
    .await?;
    Ok(())
}

/// The org's latest export (by time), if any.
pub async fn latest(pool: &PgPool, org: &OrgId) -> Result<Option<ExportRecord>, StoreError> {
    let row: Option<(DateTime<Utc>, i64, i64, i64, String)> = sqlx::query_as(
        "SELECT exported_at, first_ledger_seq, last_ledger_seq, tree_size, kid
           FROM compliance_exports WHERE org_id = $1
          ORDER BY exported_at DESC, tree_size DESC LIMIT 1",
    )
    .bind(org.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(
        row.map(|(exported_at, first, last, tree_size, kid)| ExportRecord {
            exported_at,
            first_ledger_seq: first as u64,
            last_ledger_seq: last as u64,
            tree_size: tree_size as u64,
            kid,
        }),
    )
}

/// The `ledger_seq` range of `org`'s events recorded in `[from, to)` (either bound open),
/// `None` when there are none.
pub async fn seq_range(
    pool: &PgPool,
    org: &OrgId,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<Option<(u64, u64)>, StoreError> {
    let row: (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT min(ledger_seq), max(ledger_seq) FROM events
          WHERE org_id = $1 AND ($2::timestamptz IS NULL OR recorded_at >= $2)
            AND ($3::timestamptz IS NULL OR recorded_at < $3)",
    )
    .bind(org.as_str())
    .bind(from)
    .bind(to)
    .fetch_one(pool)
    .await?;
    Ok(match row {
        (Some(first), Some(last)) => Some((first as u64, last as u64)),
        _ => None,
    })
}

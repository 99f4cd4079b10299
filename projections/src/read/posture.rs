//! `posture_snapshots`: one posture score per org per day (the latest computed that day).
//! Not folded from the ledger: written when a score is computed, so its one writer is here.

use chrono::{DateTime, NaiveDate, Utc};
use dashclaw_domain::OrgId;
use sqlx::PgPool;

use crate::ProjectionError;

/// One day's score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PostureSnapshot {
    pub score: i32,
    /// When it was computed.
    pub created_at: DateTime<Utc>,
}

/// Keeps `score`, computed at `at`, as the org's snapshot of `day` (replacing an earlier one
/// of that day).
pub async fn record_snapshot(
    pool: &PgPool,
    org: &OrgId,
    day: NaiveDate,
    score: u8,
    at: DateTime<Utc>,
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO posture_snapshots (org_id, day, score, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (org_id, day) DO UPDATE SET score = EXCLUDED.score, created_at = EXCLUDED.created_at",
    )
    .bind(org.as_str())
    .bind(day)
    .bind(i32::from(score))
    .bind(at)
    .execute(pool)
    .await?;
    Ok(())
}

/// The org's latest `limit` daily snapshots, newest day first.
pub async fn snapshots(
    pool: &PgPool,
    org: &OrgId,
    limit: i64,
) -> Result<Vec<PostureSnapshot>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT score, created_at FROM posture_snapshots WHERE org_id = $1
          ORDER BY day DESC LIMIT $2",
    )
    .bind(org.as_str())
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

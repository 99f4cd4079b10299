//! Reads of `entity_records`: one small aggregate by id, or a page of them (newest change
//! first) whose state contains a given JSON fragment.

use cqrs_es::Aggregate;
use dashclaw_domain::OrgId;
use serde_json::Value;
use sqlx::PgPool;

use super::{unreadable, Page};
use crate::ProjectionError;

const TABLE: &str = "entity_records";

fn decode<A: Aggregate>(org: &OrgId, id: &str, doc: Value) -> Result<A, ProjectionError> {
    serde_json::from_value(doc).map_err(|e| unreadable(TABLE, org.as_str(), id, e))
}

/// The entity `id` of aggregate type `A` in `org`, as last folded (`None`: no such entity).
pub async fn get<A: Aggregate>(
    pool: &PgPool,
    org: &OrgId,
    id: &str,
) -> Result<Option<A>, ProjectionError> {
    let row: Option<(Value,)> = sqlx::query_as(
        "SELECT doc FROM entity_records
          WHERE org_id = $1 AND aggregate_type = $2 AND entity_id = $3",
    )
    .bind(org.as_str())
    .bind(A::TYPE)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(|(doc,)| decode(org, id, doc)).transpose()
}

/// The entities of type `A` in `org` whose state contains `fragment` (JSONB containment,
/// `@>`: e.g. `{"record": {"agent_id": "a"}}`), most recently changed first.
pub async fn page<A: Aggregate>(
    pool: &PgPool,
    org: &OrgId,
    fragment: &Value,
    page: Page,
) -> Result<Vec<A>, ProjectionError> {
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT entity_id, doc FROM entity_records
          WHERE org_id = $1 AND aggregate_type = $2 AND doc @> $3
          ORDER BY ledger_seq DESC LIMIT $4 OFFSET $5",
    )
    .bind(org.as_str())
    .bind(A::TYPE)
    .bind(fragment)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, doc)| decode(org, &id, doc))
        .collect()
}

/// The ids of the plans of `agent` in `org` that may still be in force (pending, approved,
/// partially approved or denied as last folded: the caller reads their current state).
pub async fn plans_in_force_of(
    pool: &PgPool,
    org: &OrgId,
    agent: &str,
) -> Result<Vec<String>, ProjectionError> {
    Ok(sqlx::query_scalar(
        "SELECT entity_id FROM entity_records
          WHERE org_id = $1 AND aggregate_type = 'Plan' AND doc #>> '{record,agent_id}' = $2
            AND doc #>> '{record,status}' IN ('pending', 'approved', 'partially_approved', 'denied')",
    )
    .bind(org.as_str())
    .bind(agent)
    .fetch_all(pool)
    .await?)
}

/// The plans of `org` with one of `statuses` (as stored) whose `expires_at` has passed
/// `now`, at most `limit` (the plan-expiry sweep's work).
pub async fn overdue_plans(
    pool: &PgPool,
    org: &OrgId,
    now: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> Result<Vec<String>, ProjectionError> {
    Ok(sqlx::query_scalar(
        "SELECT entity_id FROM entity_records
          WHERE org_id = $1 AND aggregate_type = 'Plan'
            AND doc #>> '{record,status}' IN ('pending', 'approved', 'partially_approved', 'denied')
            AND (doc #>> '{record,expires_at}')::timestamptz <= $2
          LIMIT $3",
    )
    .bind(org.as_str())
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

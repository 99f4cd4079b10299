//! Reads of `assumptions` (joined to `action_records` for the agent that holds them).

use dashclaw_domain::assumption::AssumptionRecord;
use dashclaw_domain::ids::ActionId;
use dashclaw_domain::OrgId;
use sqlx::PgPool;

use super::{decode_row, Page};
use crate::ProjectionError;

const TABLE: &str = "assumptions";

/// Which assumptions `GET /api/assumptions` lists; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssumptionFilter {
    /// Of this action.
    pub action_id: Option<String>,
    /// Of an action of this agent (an assumption whose action is not in the read model has
    /// no agent, and then matches only when this is `None`).
    pub agent_id: Option<String>,
    /// Validated (`true`) or not (`false`).
    pub validated: Option<bool>,
}

fn records(
    org: &OrgId,
    rows: Vec<(String, String)>,
) -> Result<Vec<AssumptionRecord>, ProjectionError> {
    rows.iter()
        .map(|(id, doc)| decode_row(TABLE, org.as_str(), id, doc))
        .collect()
}

/// The assumptions of the org's action `action`, oldest first.
pub async fn of_action(
    pool: &PgPool,
    org: &OrgId,
    action: &ActionId,
) -> Result<Vec<AssumptionRecord>, ProjectionError> {
    let rows = sqlx::query_as(
        "SELECT assumption_id, doc::text FROM assumptions
          WHERE org_id = $1 AND action_id = $2 ORDER BY created_at",
    )
    .bind(org.as_str())
    .bind(action.as_str())
    .fetch_all(pool)
    .await?;
    records(org, rows)
}

/// The org's assumptions matching `filter`, newest first, one page of them.
pub async fn page(
    pool: &PgPool,
    org: &OrgId,
    filter: &AssumptionFilter,
    page: Page,
) -> Result<Vec<AssumptionRecord>, ProjectionError> {
    let rows = sqlx::query_as(
        "SELECT a.assumption_id, a.doc::text FROM assumptions a
           LEFT JOIN action_records r ON r.org_id = a.org_id AND r.action_id = a.action_id
          WHERE a.org_id = $1 AND ($2::text IS NULL OR a.action_id = $2)
            AND ($3::text IS NULL OR r.agent_id = $3)
            AND ($4::bool IS NULL OR (a.doc->>'validated')::bool = $4)
          ORDER BY a.created_at DESC LIMIT $5 OFFSET $6",
    )
    .bind(org.as_str())
    .bind(filter.action_id.as_deref())
    .bind(filter.agent_id.as_deref())
    .bind(filter.validated)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(pool)
    .await?;
    records(org, rows)
}

//! Reads of `action_records`, the decisions ledger: lists with their filters and totals, the
//! approvals queue, trace neighbours, agents, and what the sweeps look at.

use chrono::{DateTime, Utc};
use dashclaw_domain::action::{ActionRecord, ActionStatus, OutcomeStatus};
use dashclaw_domain::ids::ActionId;
use dashclaw_domain::OrgId;
use sqlx::PgPool;

use super::{decode_row, org_of_row, Page};
use crate::ProjectionError;

const TABLE: &str = "action_records";

/// Which actions a list shows. Every field left `None` matches everything; the fields set
/// must all match. It carries the query parameters of `GET /api/actions` and the GraphQL
/// `DecisionFilter`, with their meanings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActionFilter {
    pub agent_id: Option<String>,
    pub swarm_id: Option<String>,
    pub status: Option<ActionStatus>,
    /// Leaves this status out, unless `status` is given (which then alone decides, as
    /// `GET /api/actions` documents).
    pub exclude_status: Option<ActionStatus>,
    pub action_type: Option<String>,
    pub outcome_status: Option<OutcomeStatus>,
    /// `risk_score >= risk_min`.
    pub risk_min: Option<i32>,
    /// `risk_score <= risk_max`.
    pub risk_max: Option<i32>,
    /// Started within the last `days` days of the database's clock.
    pub days: Option<i32>,
    /// Started at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Started before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Statuses as of this instant: a pending approval past its deadline
    /// (`approval_expires_at`, or 24 h after the start when none was set) counts as
    /// `expired`, before the sweep records its expiry. `None`: as stored.
    pub seen_at: Option<DateTime<Utc>>,
}

/// The filter's condition on `action_records`; `$1` is the org, `$2`..`$13` the fields in
/// [`bind_filter`]'s order. (Macros so that the queries stay `&'static str`.)
macro_rules! overdue {
    () => {
        "($13::timestamptz IS NOT NULL AND status = 'pending_approval'
          AND COALESCE(approval_expires_at, timestamp_start + interval '24 hours') < $13)"
    };
}
macro_rules! filtered {
    () => {
        concat!(
            " FROM action_records
          WHERE org_id = $1
            AND ($2::text IS NULL OR agent_id = $2) AND ($3::text IS NULL OR swarm_id = $3)
            AND ($4::text IS NULL OR (status = $4 AND NOT ($4 = 'pending_approval' AND ",
            overdue!(),
            ")) OR ($4 = 'expired' AND ",
            overdue!(),
            "))
            AND ($5::text IS NULL OR (CASE WHEN ",
            overdue!(),
            " THEN 'expired' ELSE status END) <> $5)
            AND ($6::text IS NULL OR action_type = $6)
            AND ($7::text IS NULL OR outcome_status = $7)
            AND ($8::int IS NULL OR risk_score >= $8) AND ($9::int IS NULL OR risk_score <= $9)
            AND ($10::int IS NULL OR timestamp_start > now() - make_interval(days => $10))
            AND ($11::timestamptz IS NULL OR timestamp_start >= $11)
            AND ($12::timestamptz IS NULL OR timestamp_start < $12)"
        )
    };
}

/// Binds the org and the filter's fields as [`filtered!`] numbers them.
fn bind_filter<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    org: &'q OrgId,
    f: &'q ActionFilter,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    let exclude = if f.status.is_some() {
        None
    } else {
        f.exclude_status
    };
    query
        .bind(org.as_str())
        .bind(f.agent_id.as_deref())
        .bind(f.swarm_id.as_deref())
        .bind(f.status.map(ActionStatus::as_str))
        .bind(exclude.map(ActionStatus::as_str))
        .bind(f.action_type.as_deref())
        .bind(f.outcome_status.map(OutcomeStatus::as_str))
        .bind(f.risk_min)
        .bind(f.risk_max)
        .bind(f.days)
        .bind(f.since)
        .bind(f.until)
        .bind(f.seen_at)
}

/// Decodes `(action_id, doc)` rows of `org` in their order.
fn records(org: &OrgId, rows: Vec<(String, String)>) -> Result<Vec<ActionRecord>, ProjectionError> {
    rows.iter()
        .map(|(id, doc)| decode_row(TABLE, org.as_str(), id, doc))
        .collect()
}

/// Like [`records`], each as it reads at `seen_at` (when given).
fn records_seen(
    org: &OrgId,
    rows: Vec<(String, String)>,
    seen_at: Option<DateTime<Utc>>,
) -> Result<Vec<ActionRecord>, ProjectionError> {
    let records = records(org, rows)?;
    Ok(match seen_at {
        Some(now) => records.iter().map(|r| r.as_seen_at(now)).collect(),
        None => records,
    })
}

/// The org's actions matching `filter`, newest first (by start, then by the last event
/// folded into them), one page of them.
pub async fn page(
    pool: &PgPool,
    org: &OrgId,
    filter: &ActionFilter,
    page: Page,
) -> Result<Vec<ActionRecord>, ProjectionError> {
    let query = sqlx::query_as(concat!(
        "SELECT action_id, doc",
        filtered!(),
        " ORDER BY timestamp_start DESC, ledger_seq DESC LIMIT $14 OFFSET $15"
    ));
    let rows = bind_filter(query, org, filter)
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(pool)
        .await?;
    records_seen(org, rows, filter.seen_at)
}

/// Counts over every action a filter matches (not only one page): `GET /api/actions`'s
/// `total` and `stats`.
#[derive(Clone, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct ActionStats {
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    pub running: i64,
    pub blocked: i64,
    /// `risk_score >= 70`.
    pub high_risk: i64,
    /// `None` when nothing matched.
    pub avg_risk: Option<f64>,
    /// The sum of the reported cost estimates; `None` when none was reported.
    pub total_cost: Option<f64>,
}

/// [`ActionStats`] of the org's actions matching `filter`.
pub async fn stats(
    pool: &PgPool,
    org: &OrgId,
    filter: &ActionFilter,
) -> Result<ActionStats, ProjectionError> {
    let query = sqlx::query_as(concat!(
        "SELECT count(*) AS total, count(*) FILTER (WHERE status = 'completed') AS completed,
                count(*) FILTER (WHERE status = 'failed') AS failed,
                count(*) FILTER (WHERE status = 'running') AS running,
                count(*) FILTER (WHERE status = 'blocked') AS blocked,
                count(*) FILTER (WHERE risk_score >= 70) AS high_risk,
                avg(risk_score)::float8 AS avg_risk, sum(cost_estimate)::float8 AS total_cost",
        filtered!()
    ));
    Ok(bind_filter(query, org, filter).fetch_one(pool).await?)
}

/// The org's approvals queue as of `now` (those past their deadline are expired), oldest
/// first, at most `limit`.
pub async fn pending_approvals(
    pool: &PgPool,
    org: &OrgId,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ActionRecord>, ProjectionError> {
    let rows = sqlx::query_as(
        "SELECT action_id, doc FROM action_records
          WHERE org_id = $1 AND status = 'pending_approval'
            AND COALESCE(approval_expires_at, timestamp_start + interval '24 hours') >= $3
          ORDER BY timestamp_start LIMIT $2",
    )
    .bind(org.as_str())
    .bind(limit)
    .bind(now)
    .fetch_all(pool)
    .await?;
    records(org, rows)
}

/// The org's actions whose `parent_action_id` is `parent`, newest first, at most `limit`.
pub async fn children(
    pool: &PgPool,
    org: &OrgId,
    parent: &ActionId,
    limit: i64,
) -> Result<Vec<ActionRecord>, ProjectionError> {
    let rows = sqlx::query_as(
        "SELECT action_id, doc FROM action_records
          WHERE org_id = $1 AND doc::json->>'parent_action_id' = $2
          ORDER BY timestamp_start DESC LIMIT $3",
    )
    .bind(org.as_str())
    .bind(parent.as_str())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    records(org, rows)
}

/// The org's actions of agent `agent_id`, newest first, at most `limit`.
pub async fn of_agent(
    pool: &PgPool,
    org: &OrgId,
    agent_id: &str,
    limit: i64,
) -> Result<Vec<ActionRecord>, ProjectionError> {
    let rows = sqlx::query_as(
        "SELECT action_id, doc FROM action_records
          WHERE org_id = $1 AND agent_id = $2
          ORDER BY timestamp_start DESC LIMIT $3",
    )
    .bind(org.as_str())
    .bind(agent_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    records(org, rows)
}

/// One agent that has recorded actions.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct AgentActivity {
    pub agent_id: String,
    pub actions: i64,
    pub last_action_at: Option<DateTime<Utc>>,
    pub avg_risk: Option<f64>,
}

/// The org's agents, most actions first (ties by id), at most `limit`.
pub async fn agents(
    pool: &PgPool,
    org: &OrgId,
    limit: i64,
) -> Result<Vec<AgentActivity>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT agent_id, count(*) AS actions, max(timestamp_start) AS last_action_at,
                avg(risk_score)::float8 AS avg_risk
           FROM action_records WHERE org_id = $1 GROUP BY agent_id
          ORDER BY count(*) DESC, agent_id LIMIT $2",
    )
    .bind(org.as_str())
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Open actions across every org, as a sweep looks for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenActions {
    /// Running (or pending) with no outcome reported: candidates for lost confirmation.
    AwaitingOutcome,
    /// Held for a human's approval: candidates for expiry.
    AwaitingApproval,
}

/// Every org's actions that are `which`, by (org, action id), read in pages of 500 so that
/// no single query holds a long snapshot.
pub async fn open_actions(
    pool: &PgPool,
    which: OpenActions,
) -> Result<Vec<(OrgId, ActionRecord)>, ProjectionError> {
    const PAGE: i64 = 500;
    let sql = match which {
        OpenActions::AwaitingOutcome => {
            "SELECT org_id, action_id, doc FROM action_records
              WHERE status IN ('running', 'pending') AND outcome_status = 'pending'
                AND (org_id, action_id) > ($1, $2)
              ORDER BY org_id, action_id LIMIT $3"
        }
        OpenActions::AwaitingApproval => {
            "SELECT org_id, action_id, doc FROM action_records
              WHERE status = 'pending_approval' AND (org_id, action_id) > ($1, $2)
              ORDER BY org_id, action_id LIMIT $3"
        }
    };
    let mut out = Vec::new();
    let mut after = (String::new(), String::new());
    loop {
        let rows: Vec<(String, String, String)> = sqlx::query_as(sql)
            .bind(&after.0)
            .bind(&after.1)
            .bind(PAGE)
            .fetch_all(pool)
            .await?;
        let done = (rows.len() as i64) < PAGE;
        for (org, id, doc) in rows {
            let record = decode_row(TABLE, &org, &id, &doc)?;
            let org_id = org_of_row(TABLE, org.clone(), &id)?;
            out.push((org_id, record));
            after = (org, id);
        }
        if done {
            return Ok(out);
        }
    }
}

//! Reads of the analytics read models (`analytics_actions`, `analytics_decisions`,
//! `analytics_approvals`) for `GET /api/analytics`.

use chrono::NaiveDate;
use dashclaw_domain::OrgId;
use sqlx::PgPool;

use crate::ProjectionError;

/// The window and filters of an analytics query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalyticsFilter {
    /// The first UTC day counted.
    pub since: NaiveDate,
    pub agent_id: Option<String>,
    /// Decisions carry no action type: [`decisions_by_verdict`] ignores this.
    pub action_type: Option<String>,
}

/// The actions of one (day, agent, action type, model) group, summed.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct ActionGroup {
    pub day: NaiveDate,
    pub agent_id: String,
    pub action_type: String,
    /// `None` when the actions named no model.
    pub model: Option<String>,
    pub actions: i64,
    pub completed: i64,
    pub failed: i64,
    pub blocked: i64,
    /// The guard required an approval.
    pub held: i64,
    pub approved: i64,
    pub denied: i64,
    pub expired: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// USD, the sum of the reported cost estimates.
    pub cost_reported: f64,
    /// Tokens of actions that reported no cost (priced from the model by the caller).
    pub unpriced_tokens_in: i64,
    pub unpriced_tokens_out: i64,
}

/// The org's action groups in the window, by day, agent and action type.
pub async fn action_groups(
    pool: &PgPool,
    org: &OrgId,
    filter: &AnalyticsFilter,
) -> Result<Vec<ActionGroup>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT day, agent_id, action_type, NULLIF(model, '') AS model,
                sum(actions)::int8 AS actions, sum(completed)::int8 AS completed,
                sum(failed)::int8 AS failed, sum(blocked)::int8 AS blocked,
                sum(held)::int8 AS held, sum(approved)::int8 AS approved,
                sum(denied)::int8 AS denied, sum(expired)::int8 AS expired,
                sum(tokens_in)::int8 AS tokens_in, sum(tokens_out)::int8 AS tokens_out,
                (sum(cost_reported_micro_usd) / 1e6)::float8 AS cost_reported,
                sum(unpriced_tokens_in)::int8 AS unpriced_tokens_in,
                sum(unpriced_tokens_out)::int8 AS unpriced_tokens_out
           FROM analytics_actions
          WHERE org_id = $1 AND day >= $2
            AND ($3::text IS NULL OR agent_id = $3) AND ($4::text IS NULL OR action_type = $4)
          GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3",
    )
    .bind(org.as_str())
    .bind(filter.since)
    .bind(filter.agent_id.as_deref())
    .bind(filter.action_type.as_deref())
    .fetch_all(pool)
    .await?)
}

/// How many guard decisions gave one verdict.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct VerdictCount {
    /// `allow`, `warn`, `require_approval` or `block`.
    pub decision: String,
    pub decisions: i64,
}

/// The org's guard decisions in the window, per verdict (unordered; verdicts never given
/// are absent). Filtered by agent only.
pub async fn decisions_by_verdict(
    pool: &PgPool,
    org: &OrgId,
    filter: &AnalyticsFilter,
) -> Result<Vec<VerdictCount>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT decision, sum(decisions)::int8 AS decisions FROM analytics_decisions
          WHERE org_id = $1 AND day >= $2 AND ($3::text IS NULL OR agent_id = $3)
          GROUP BY 1",
    )
    .bind(org.as_str())
    .bind(filter.since)
    .bind(filter.agent_id.as_deref())
    .fetch_all(pool)
    .await?)
}

/// Percentiles of the seconds from an action's start to its approval or denial; `None`
/// when nothing was decided in the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, sqlx::FromRow)]
pub struct TimeToDecision {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

/// [`TimeToDecision`] of the org's approvals decided in the window.
pub async fn time_to_decision(
    pool: &PgPool,
    org: &OrgId,
    filter: &AnalyticsFilter,
) -> Result<TimeToDecision, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds) AS p99
           FROM analytics_approvals
          WHERE org_id = $1 AND day >= $2
            AND ($3::text IS NULL OR agent_id = $3) AND ($4::text IS NULL OR action_type = $4)",
    )
    .bind(org.as_str())
    .bind(filter.since)
    .bind(filter.agent_id.as_deref())
    .bind(filter.action_type.as_deref())
    .fetch_one(pool)
    .await?)
}

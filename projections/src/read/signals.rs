//! The queries behind `GET /api/signals` (contract 10.5), over `action_records` and
//! `assumptions`. Each takes an optional agent (`None`: every agent) and measures time by the
//! database's clock, as the signals always have.

use dashclaw_domain::OrgId;
use sqlx::PgPool;

use crate::ProjectionError;

/// How many things of one kind an agent has.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AgentCount {
    pub agent_id: String,
    pub count: i64,
}

/// An action a signal names.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct FlaggedAction {
    pub action_id: String,
    pub agent_id: String,
}

/// An action a signal names, with how long it has been waiting.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct WaitingAction {
    pub action_id: String,
    pub agent_id: String,
    /// Hours since the action started.
    pub hours: f64,
}

/// A risky action a signal names.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RiskyAction {
    pub action_id: String,
    pub agent_id: String,
    pub risk_score: i32,
}

/// Agents with more than 3 failed actions started in the last 24 hours (unordered).
pub async fn repeated_failures(
    pool: &PgPool,
    org: &OrgId,
    agent: Option<&str>,
) -> Result<Vec<AgentCount>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT agent_id, count(*) AS count FROM action_records
          WHERE org_id = $1 AND ($2::text IS NULL OR agent_id = $2) AND status = 'failed'
            AND timestamp_start > now() - interval '24 hours'
          GROUP BY agent_id HAVING count(*) > 3",
    )
    .bind(org.as_str())
    .bind(agent)
    .fetch_all(pool)
    .await?)
}

/// Actions started in the last 7 days whose confirmation was lost, newest first, at most 50.
pub async fn lost_confirmations(
    pool: &PgPool,
    org: &OrgId,
    agent: Option<&str>,
) -> Result<Vec<FlaggedAction>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT action_id, agent_id FROM action_records
          WHERE org_id = $1 AND ($2::text IS NULL OR agent_id = $2)
            AND outcome_status = 'lost_confirmation'
            AND timestamp_start > now() - interval '7 days'
          ORDER BY timestamp_start DESC LIMIT 50",
    )
    .bind(org.as_str())
    .bind(agent)
    .fetch_all(pool)
    .await?)
}

/// Actions still running more than 4 hours after they started, oldest first, at most 50.
pub async fn stale_running(
    pool: &PgPool,
    org: &OrgId,
    agent: Option<&str>,
) -> Result<Vec<WaitingAction>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT action_id, agent_id,
                extract(epoch FROM now() - timestamp_start)::float8 / 3600 AS hours
           FROM action_records
          WHERE org_id = $1 AND ($2::text IS NULL OR agent_id = $2) AND status = 'running'
            AND timestamp_start < now() - interval '4 hours'
          ORDER BY timestamp_start LIMIT 50",
    )
    .bind(org.as_str())
    .bind(agent)
    .fetch_all(pool)
    .await?)
}

/// Approvals waiting more than an hour after the action started, oldest first, at most 50.
pub async fn approval_backlog(
    pool: &PgPool,
    org: &OrgId,
    agent: Option<&str>,
) -> Result<Vec<WaitingAction>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT action_id, agent_id,
                extract(epoch FROM now() - timestamp_start)::float8 / 3600 AS hours
           FROM action_records
          WHERE org_id = $1 AND ($2::text IS NULL OR agent_id = $2) AND status = 'pending_approval'
            AND timestamp_start < now() - interval '1 hour'
          ORDER BY timestamp_start LIMIT 50",
    )
    .bind(org.as_str())
    .bind(agent)
    .fetch_all(pool)
    .await?)
}

/// Per agent, how many assumptions of its actions were invalidated in the last 7 days
/// (unordered; agents with none are absent).
pub async fn assumption_drift(
    pool: &PgPool,
    org: &OrgId,
    agent: Option<&str>,
) -> Result<Vec<AgentCount>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT r.agent_id, count(*) AS count FROM assumptions a
           JOIN action_records r ON r.org_id = a.org_id AND r.action_id = a.action_id
          WHERE a.org_id = $1 AND ($2::text IS NULL OR r.agent_id = $2)
            AND (a.doc->>'invalidated')::bool
            AND (a.doc->>'invalidated_at')::timestamptz > now() - interval '7 days'
          GROUP BY r.agent_id",
    )
    .bind(org.as_str())
    .bind(agent)
    .fetch_all(pool)
    .await?)
}

/// Running actions at risk 90 or more that no human approved, newest first, at most 50.
pub async fn unsupervised_high_risk(
    pool: &PgPool,
    org: &OrgId,
    agent: Option<&str>,
) -> Result<Vec<RiskyAction>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT action_id, agent_id, risk_score FROM action_records
          WHERE org_id = $1 AND ($2::text IS NULL OR agent_id = $2) AND status = 'running'
            AND risk_score >= 90 AND doc::json->>'approved_by' IS NULL
          ORDER BY timestamp_start DESC LIMIT 50",
    )
    .bind(org.as_str())
    .bind(agent)
    .fetch_all(pool)
    .await?)
}

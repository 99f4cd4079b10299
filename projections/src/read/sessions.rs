//! What a session's actions add up to (contract section 11): an action belongs to a session
//! when it names the session (`session_id`), or when it names none and its agent is the
//! session's, started inside the session's lifetime.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use dashclaw_domain::session::SessionRecord;
use dashclaw_domain::OrgId;
use sqlx::PgPool;

use crate::ProjectionError;

/// The aggregates of one session's actions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SessionActivity {
    pub action_count: i64,
    pub last_action_at: Option<DateTime<Utc>>,
    pub total_cost: f64,
    pub max_risk: Option<i32>,
    pub last_outcome_status: Option<String>,
    pub last_status: Option<String>,
    pub last_declared_goal: Option<String>,
}

/// The activity of each of `sessions` (of `org`), by session id; a session without actions
/// has the default (zero) activity.
pub async fn activity(
    pool: &PgPool,
    org: &OrgId,
    sessions: &[&SessionRecord],
) -> Result<HashMap<String, SessionActivity>, ProjectionError> {
    if sessions.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<&str> = sessions.iter().map(|s| s.session_id.as_str()).collect();
    let agents: Vec<&str> = sessions.iter().map(|s| s.agent_id.as_str()).collect();
    let since: Vec<DateTime<Utc>> = sessions.iter().map(|s| s.created_at).collect();
    let until: Vec<Option<DateTime<Utc>>> = sessions.iter().map(|s| s.ended_at).collect();
    type Row = (
        String,
        i64,
        Option<DateTime<Utc>>,
        Option<f64>,
        Option<i32>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "WITH s AS (SELECT * FROM UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[])
                      AS s(id, agent, since, until)),
              member AS (
                SELECT s.id AS session, a.* FROM s JOIN action_records a
                    ON a.org_id = $1 AND a.session_id = s.id
                UNION ALL
                SELECT s.id, a.* FROM s JOIN action_records a
                    ON a.org_id = $1 AND a.agent_id = s.agent AND a.session_id IS NULL
                   AND a.timestamp_start >= s.since
                   AND (s.until IS NULL OR a.timestamp_start <= s.until))
         SELECT session, count(*), max(timestamp_start), sum(cost_estimate), max(risk_score),
                (array_agg(outcome_status ORDER BY timestamp_start DESC))[1],
                (array_agg(status ORDER BY timestamp_start DESC))[1],
                (array_agg(doc::json ->> 'declared_goal' ORDER BY timestamp_start DESC))[1]
           FROM member GROUP BY session",
    )
    .bind(org.as_str())
    .bind(&ids)
    .bind(&agents)
    .bind(&since)
    .bind(&until)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, count, last, cost, risk, outcome, status, goal)| {
            (
                id,
                SessionActivity {
                    action_count: count,
                    last_action_at: last,
                    total_cost: cost.unwrap_or(0.0),
                    max_risk: risk,
                    last_outcome_status: outcome,
                    last_status: status,
                    last_declared_goal: goal,
                },
            )
        })
        .collect())
}

//! Reads of the guard decision log, `guard_decisions`.
//!
//! A row holds only what lists filter and sort on, and the `ledger_seq` of the decision's
//! one event (migration 0003 dropped the copied record): the record itself is read from that
//! event, through [`dashclaw_store::chain::events_at`] (the ledger's SQL stays in the store),
//! and decoded here. A row whose event is missing or does not decode is an error.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use dashclaw_domain::guard::Verdict;
use dashclaw_domain::guard_decision::{
    DecisionPurpose, GuardDecision, GuardDecisionEvent, GuardDecisionRecord,
};
use dashclaw_domain::OrgId;
use sqlx::PgPool;

use super::{unreadable, Page};
use crate::ProjectionError;

const TABLE: &str = "guard_decisions";

/// Which decisions `GET /api/guard` (and GraphQL `guardDecisions`) lists; `None` matches
/// everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecisionFilter {
    pub agent_id: Option<String>,
    pub decision: Option<Verdict>,
    /// Made within the last `days` days of the database's clock.
    pub days: Option<i32>,
}

/// The records of the org's decisions at these `ledger_seq`s, in the same order.
async fn records_at(
    pool: &PgPool,
    org: &OrgId,
    ledger_seqs: &[i64],
) -> Result<Vec<GuardDecisionRecord>, ProjectionError> {
    let mut events: HashMap<i64, String> = dashclaw_store::chain::events_at(pool, org, ledger_seqs)
        .await?
        .into_iter()
        .map(|e| (e.ledger_seq, e.payload))
        .collect();
    ledger_seqs
        .iter()
        .map(|seq| {
            let key = seq.to_string();
            let payload = events
                .remove(seq)
                .ok_or_else(|| unreadable(TABLE, org.as_str(), &key, "its event is missing"))?;
            match crate::storable::decode::<GuardDecisionEvent>(&payload) {
                Ok(GuardDecisionEvent::Recorded(record)) => Ok(*record),
                Err(e) => Err(ProjectionError::Undecodable {
                    org: org.to_string(),
                    ledger_seq: *seq as u64,
                    aggregate_type: GuardDecision::TYPE.to_owned(),
                    detail: e.to_string(),
                }),
            }
        })
        .collect()
}

/// The org's decisions matching `filter`, newest first (by time, then ledger position), one
/// page of them.
pub async fn page(
    pool: &PgPool,
    org: &OrgId,
    filter: &DecisionFilter,
    page: Page,
) -> Result<Vec<GuardDecisionRecord>, ProjectionError> {
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT ledger_seq FROM guard_decisions
          WHERE org_id = $1 AND ($2::text IS NULL OR agent_id = $2)
            AND ($3::text IS NULL OR decision = $3)
            AND ($4::int IS NULL OR created_at > now() - make_interval(days => $4))
          ORDER BY created_at DESC, ledger_seq DESC LIMIT $5 OFFSET $6",
    )
    .bind(org.as_str())
    .bind(filter.agent_id.as_deref())
    .bind(filter.decision.map(Verdict::as_str))
    .bind(filter.days)
    .bind(page.limit)
    .bind(page.offset)
    .fetch_all(pool)
    .await?;
    records_at(pool, org, &seqs).await
}

/// How many of the org's decisions match `filter` (every page).
pub async fn total(
    pool: &PgPool,
    org: &OrgId,
    filter: &DecisionFilter,
) -> Result<i64, ProjectionError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM guard_decisions
          WHERE org_id = $1 AND ($2::text IS NULL OR agent_id = $2)
            AND ($3::text IS NULL OR decision = $3)
            AND ($4::int IS NULL OR created_at > now() - make_interval(days => $4))",
    )
    .bind(org.as_str())
    .bind(filter.agent_id.as_deref())
    .bind(filter.decision.map(Verdict::as_str))
    .bind(filter.days)
    .fetch_one(pool)
    .await?)
}

/// The org's decisions of the last 24 hours (database clock), by verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct DecisionStats {
    pub total: i64,
    pub blocks: i64,
    pub warns: i64,
    /// `require_approval` verdicts.
    pub approvals: i64,
}

/// [`DecisionStats`] of the org.
pub async fn stats_24h(pool: &PgPool, org: &OrgId) -> Result<DecisionStats, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT count(*) AS total, count(*) FILTER (WHERE decision = 'block') AS blocks,
                count(*) FILTER (WHERE decision = 'warn') AS warns,
                count(*) FILTER (WHERE decision = 'require_approval') AS approvals
           FROM guard_decisions WHERE org_id = $1 AND created_at > now() - interval '24 hours'",
    )
    .bind(org.as_str())
    .fetch_one(pool)
    .await?)
}

/// The org's newest decision made under idempotency key `key` after `since`, if any: what
/// the guard's idempotent replay window answers again.
pub async fn by_idempotency_key(
    pool: &PgPool,
    org: &OrgId,
    key: &str,
    since: DateTime<Utc>,
) -> Result<Option<GuardDecisionRecord>, ProjectionError> {
    let seq: Option<i64> = sqlx::query_scalar(
        "SELECT ledger_seq FROM guard_decisions
          WHERE org_id = $1 AND idempotency_key = $2 AND created_at > $3
          ORDER BY created_at DESC LIMIT 1",
    )
    .bind(org.as_str())
    .bind(key)
    .bind(since)
    .fetch_optional(pool)
    .await?;
    let Some(seq) = seq else { return Ok(None) };
    Ok(records_at(pool, org, &[seq]).await?.pop())
}

/// The org's recorded guard requests: of its newest `limit` decisions made after `since`
/// (newest first), those that are not claims (a claim re-evaluates a request already
/// counted). Real traffic to replay (simulation, posture).
pub async fn recorded_requests(
    pool: &PgPool,
    org: &OrgId,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<GuardDecisionRecord>, ProjectionError> {
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT ledger_seq FROM guard_decisions
          WHERE org_id = $1 AND created_at > $2
          ORDER BY ledger_seq DESC LIMIT $3",
    )
    .bind(org.as_str())
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut records = records_at(pool, org, &seqs).await?;
    // After the limit, as before: the sample is the newest decisions, claims then dropped.
    records.retain(|r| r.purpose != DecisionPurpose::Claim);
    Ok(records)
}

/// One of an agent's recent decisions, as the rate limiter counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RecentDecision {
    pub ledger_seq: i64,
    pub created_at: DateTime<Utc>,
}

/// The newest `limit` decisions of agent `agent_id` in the org made after `since`, newest
/// first: what seeds a restarted node's rate counters.
pub async fn recent_of_agent(
    pool: &PgPool,
    org: &OrgId,
    agent_id: &str,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<RecentDecision>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT ledger_seq, created_at FROM guard_decisions
          WHERE org_id = $1 AND agent_id = $2 AND created_at > $3
          ORDER BY ledger_seq DESC LIMIT $4",
    )
    .bind(org.as_str())
    .bind(agent_id)
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

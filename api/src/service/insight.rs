//! What the org's own traffic says: the posture score (its recent guard requests replayed
//! under today's policies, `domain::posture`) with its daily snapshots, and the analytics
//! of volume, cost, enforcement and approvals from the analytics read models. Reads only:
//! the daily posture snapshot is written by [`Service::record_posture_snapshot`], which the
//! `posture_snapshots` sweep calls (through `sweep_effects::LedgerEffects`).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use dashclaw_domain::posture::{assess, Posture, Sample};
use dashclaw_domain::pricing;
use dashclaw_domain::OrgId;

use super::{Caller, Error, Service};

/// The traffic a posture score looks at.
pub const POSTURE_WINDOW_DAYS: i64 = 30;
/// At most this many recorded requests are replayed for a score.
const POSTURE_SAMPLE: i64 = 5_000;

/// The org's posture now.
#[derive(Debug)]
pub struct PostureReport {
    pub posture: Posture,
    /// Recorded requests the score replayed.
    pub sample_size: usize,
    pub window_days: i64,
    /// The daily snapshots, newest first: (score, when taken).
    pub snapshots: Vec<(i32, DateTime<Utc>)>,
    pub at: DateTime<Utc>,
}

/// Which actions analytics look at.
#[derive(Clone, Debug, Default)]
pub struct AnalyticsFilter {
    /// UTC calendar days up to today (1-365).
    pub days: i64,
    pub agent_id: Option<String>,
    pub action_type: Option<String>,
}

impl Service {
    /// The posture of the caller's org: its recorded requests of the last 30 days replayed
    /// under its current policies, and the daily trend.
    pub async fn posture(&self, caller: &Caller) -> Result<PostureReport, Error> {
        let (posture, sample_size, at) = self.assess_posture(&caller.org).await?;
        let snapshots = self.posture_snapshots(&caller.org).await?;
        Ok(PostureReport {
            posture,
            sample_size,
            window_days: POSTURE_WINDOW_DAYS,
            snapshots,
            at,
        })
    }

    async fn assess_posture(&self, org: &OrgId) -> Result<(Posture, usize, DateTime<Utc>), Error> {
        let now = self.clock().now();
        let since = now - chrono::Duration::days(POSTURE_WINDOW_DAYS);
        let records = self.recorded_requests(org, since, POSTURE_SAMPLE).await?;
        let samples: Vec<Sample<'_>> = records
            .iter()
            .map(|r| Sample {
                request: &r.request,
                risk_score: r.evaluation.risk_score,
                action_id: r.action_id.as_ref().map(|a| a.as_str()),
            })
            .collect();
        let view = self.tail().views().get(self.aggregates(), org).await?;
        Ok((assess(&samples, &view.policies, now), samples.len(), now))
    }

    /// Records today's posture snapshot of `org` (replacing an earlier one of the same
    /// day); returns the score.
    pub async fn record_posture_snapshot(&self, org: &OrgId) -> Result<u8, Error> {
        let (posture, _, now) = self.assess_posture(org).await?;
        dashclaw_projections::read::posture::record_snapshot(
            self.pool(),
            org,
            now.date_naive(),
            posture.score,
            now,
        )
        .await?;
        Ok(posture.score)
    }

    async fn posture_snapshots(&self, org: &OrgId) -> Result<Vec<(i32, DateTime<Utc>)>, Error> {
        Ok(sqlx::query_as(
            "SELECT score, created_at FROM posture_snapshots WHERE org_id = $1
              ORDER BY day DESC LIMIT 30",
        )
        .bind(org.as_str())
        .fetch_all(self.pool())
        .await?)
    }
}

/// One (day, agent, action type, model) group of actions, as the read model sums it.
#[derive(sqlx::FromRow)]
struct Group {
    day: NaiveDate,
    agent_id: String,
    action_type: String,
    model: Option<String>,
    actions: i64,
    completed: i64,
    failed: i64,
    blocked: i64,
    held: i64,
    approved: i64,
    denied: i64,
    expired: i64,
    tokens_in: i64,
    tokens_out: i64,
    cost_reported: f64,
    unpriced_tokens_in: i64,
    unpriced_tokens_out: i64,
}

/// Counts and costs of a set of actions.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub actions: i64,
    pub completed: i64,
    pub failed: i64,
    pub blocked: i64,
    /// Held for approval.
    pub held: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_usd: f64,
    /// Tokens of actions that reported no cost and whose model has no known price.
    pub unpriced_tokens: i64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.actions += o.actions;
        self.completed += o.completed;
        self.failed += o.failed;
        self.blocked += o.blocked;
        self.held += o.held;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
        self.cost_usd += o.cost_usd;
        self.unpriced_tokens += o.unpriced_tokens;
    }
}

/// Guard decisions by verdict.
#[derive(Debug, Default, Clone, Copy)]
pub struct Enforcement {
    pub decisions: i64,
    pub allowed: i64,
    pub warnings: i64,
    pub approvals_required: i64,
    pub blocked: i64,
}

/// Approval requests and how they were decided.
#[derive(Debug, Default, Clone, Copy)]
pub struct Approvals {
    pub requested: i64,
    pub approved: i64,
    pub denied: i64,
    pub expired: i64,
    /// Seconds from request to decision: p50, p90, p99 (none decided: `None`).
    pub time_to_decision: [Option<f64>; 3],
}

/// The org's analytics over a window.
#[derive(Debug)]
pub struct AnalyticsReport {
    pub window_days: i64,
    pub totals: Totals,
    pub enforcement: Enforcement,
    pub approvals: Approvals,
    /// Per (day, agent, action type), in that order.
    pub series: Vec<((NaiveDate, String, String), Totals)>,
    pub by_agent: Vec<(String, Totals)>,
    pub by_action_type: Vec<(String, Totals)>,
    pub generated_at: DateTime<Utc>,
}

/// The days an analytics window may span.
pub const ANALYTICS_DAYS: std::ops::RangeInclusive<i64> = 1..=365;

impl Service {
    /// The caller's org's analytics: volume, tokens and cost (priced from the model table
    /// when an action reported none), enforcement, and approvals with time-to-decision.
    pub async fn analytics(
        &self,
        caller: &Caller,
        filter: &AnalyticsFilter,
    ) -> Result<AnalyticsReport, Error> {
        let days = filter.days;
        let since = (self.clock().now() - chrono::Duration::days(days - 1)).date_naive();
        self.projections().catch_up(&caller.org).await?;
        let org = caller.org.as_str();

        let groups: Vec<Group> = sqlx::query_as(
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
        .bind(org)
        .bind(since)
        .bind(&filter.agent_id)
        .bind(&filter.action_type)
        .fetch_all(self.pool())
        .await?;

        let mut total = Totals::default();
        let mut by_day: BTreeMap<(NaiveDate, String, String), Totals> = BTreeMap::new();
        let mut by_agent: BTreeMap<String, Totals> = BTreeMap::new();
        let mut by_type: BTreeMap<String, Totals> = BTreeMap::new();
        let (mut requested, mut approved, mut denied, mut expired) = (0, 0, 0, 0);
        for g in groups {
            requested += g.held;
            approved += g.approved;
            denied += g.denied;
            expired += g.expired;
            // Actions that reported no cost are priced from their tokens and model.
            let (uin, uout) = (g.unpriced_tokens_in, g.unpriced_tokens_out);
            let priced = g
                .model
                .as_deref()
                .and_then(|m| pricing::cost(m, uin.max(0) as u64, uout.max(0) as u64));
            let t = Totals {
                actions: g.actions,
                completed: g.completed,
                failed: g.failed,
                blocked: g.blocked,
                held: g.held,
                tokens_in: g.tokens_in,
                tokens_out: g.tokens_out,
                cost_usd: g.cost_reported + priced.unwrap_or(0.0),
                unpriced_tokens: if priced.is_some() { 0 } else { uin + uout },
            };
            let (day, agent, kind) = (g.day, g.agent_id, g.action_type);
            total.add(&t);
            by_day
                .entry((day, agent.clone(), kind.clone()))
                .or_default()
                .add(&t);
            by_agent.entry(agent).or_default().add(&t);
            by_type.entry(kind).or_default().add(&t);
        }

        let enforcement: Vec<(String, i64)> = sqlx::query_as(
            "SELECT decision, sum(decisions)::int8 FROM analytics_decisions
              WHERE org_id = $1 AND day >= $2 AND ($3::text IS NULL OR agent_id = $3)
              GROUP BY 1",
        )
        .bind(org)
        .bind(since)
        .bind(&filter.agent_id)
        .fetch_all(self.pool())
        .await?;
        let count = |d: &str| {
            enforcement
                .iter()
                .find(|(k, _)| k == d)
                .map_or(0, |(_, n)| *n)
        };

        type Percentiles = (Option<f64>, Option<f64>, Option<f64>);
        let (p50, p90, p99): Percentiles = sqlx::query_as(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
                    percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds),
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds)
               FROM analytics_approvals
              WHERE org_id = $1 AND day >= $2
                AND ($3::text IS NULL OR agent_id = $3) AND ($4::text IS NULL OR action_type = $4)",
        )
        .bind(org)
        .bind(since)
        .bind(&filter.agent_id)
        .bind(&filter.action_type)
        .fetch_one(self.pool())
        .await?;

        let enforcement = Enforcement {
            decisions: enforcement.iter().map(|(_, n)| n).sum::<i64>(),
            allowed: count("allow"),
            warnings: count("warn"),
            approvals_required: count("require_approval"),
            blocked: count("block"),
        };
        Ok(AnalyticsReport {
            window_days: days,
            totals: total,
            enforcement,
            approvals: Approvals {
                requested,
                approved,
                denied,
                expired,
                time_to_decision: [p50, p90, p99],
            },
            series: by_day.into_iter().collect(),
            by_agent: by_agent.into_iter().collect(),
            by_action_type: by_type.into_iter().collect(),
            generated_at: self.clock().now(),
        })
    }
}

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
use dashclaw_projections::read::analytics;

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
        let snapshots =
            dashclaw_projections::read::posture::snapshots(self.pool(), org, 30).await?;
        Ok(snapshots
            .into_iter()
            .map(|s| (s.score, s.created_at))
            .collect())
    }
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
        let read = analytics::AnalyticsFilter {
            since,
            agent_id: filter.agent_id.clone(),
            action_type: filter.action_type.clone(),
        };
        let (pool, org) = (self.pool(), &caller.org);
        let groups = analytics::action_groups(pool, org, &read).await?;

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

        let verdicts = analytics::decisions_by_verdict(pool, org, &read).await?;
        let count = |d: &str| {
            verdicts
                .iter()
                .find(|v| v.decision == d)
                .map_or(0, |v| v.decisions)
        };
        let time = analytics::time_to_decision(pool, org, &read).await?;
        let enforcement = Enforcement {
            decisions: verdicts.iter().map(|v| v.decisions).sum::<i64>(),
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
                time_to_decision: [time.p50, time.p90, time.p99],
            },
            series: by_day.into_iter().collect(),
            by_agent: by_agent.into_iter().collect(),
            by_action_type: by_type.into_iter().collect(),
            generated_at: self.clock().now(),
        })
    }
}

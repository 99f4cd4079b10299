//! Trying policies without side effects: what a proposed policy alone would have decided
//! for the org's recorded guard requests ([`Service::simulate_policy`]), and the verdict one
//! policy alone gives one request ([`decide_alone`], which policy recipes use).

use chrono::{DateTime, Utc};
use dashclaw_domain::guard::{
    evaluate, validate_policy, DecisionCounter, GuardContext, GuardRequest, Policy, Verdict,
};
use serde_json::Value;

use super::{Caller, Error, Service};

/// Most recorded requests one simulation replays.
const SIMULATION_SAMPLE: i64 = 10_000;
/// Most matches listed.
const SIMULATION_MATCHES: usize = 50;
/// The days a simulation may look back.
pub const SIMULATION_DAYS: std::ops::RangeInclusive<i64> = 1..=90;

/// Recipes and simulations see no rate history.
pub(crate) struct NoHistory;

impl DecisionCounter for NoHistory {
    fn decisions_since(&self, _: &str, _: DateTime<Utc>) -> u32 {
        0
    }
}

/// The verdict `policy` alone gives `request`.
pub fn decide_alone(
    policy: &Policy,
    request: &GuardRequest,
    now: DateTime<Utc>,
) -> (Verdict, String) {
    let evaluation = evaluate(
        request,
        &GuardContext {
            policies: std::slice::from_ref(policy),
            halt: None,
            counter: &NoHistory,
            operator_grant: None,
            plan_step: None,
            now,
        },
    );
    let reason = evaluation
        .reasons
        .iter()
        .chain(&evaluation.warnings)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    (evaluation.decision, reason)
}

/// A recorded request the proposed policy would have decided otherwise than allow.
#[derive(Debug)]
pub struct SimulatedMatch {
    /// The action it was recorded for, else the decision's id.
    pub action_id: String,
    pub goal: Option<String>,
    /// The agent's name, else its id.
    pub agent_name: Option<String>,
    pub at: DateTime<Utc>,
    pub original: Verdict,
    pub simulated: Verdict,
    pub reason: String,
}

/// What a proposed policy would have done to the window's traffic.
#[derive(Debug)]
pub struct SimulationReport {
    /// Requests replayed.
    pub total: usize,
    /// Simulated verdicts: allow, warn, require_approval, block.
    pub counts: [usize; 4],
    /// The first matches (at most 50), newest first.
    pub matches: Vec<SimulatedMatch>,
    pub window_days: i64,
}

impl Service {
    /// What a proposed policy alone would have decided for each guard request of the
    /// caller's org recorded in the last `days` (1-90). Writes nothing.
    pub async fn simulate_policy(
        &self,
        caller: &Caller,
        policy_type: &str,
        rules: Value,
        days: i64,
    ) -> Result<SimulationReport, Error> {
        let (min, max) = (*SIMULATION_DAYS.start(), *SIMULATION_DAYS.end());
        if days < min {
            return Err(Error::validation(vec![format!("days must be >= {min}")]));
        }
        if days > max {
            return Err(Error::validation(vec![format!("days must be <= {max}")]));
        }
        validate_policy(policy_type, &rules).map_err(Error::validation)?;
        let policy = Policy {
            id: "proposed".into(),
            name: "proposed policy".into(),
            policy_type: policy_type.to_owned(),
            rules,
            active: true,
            agent_ids: None,
        };
        let since = self.clock().now() - chrono::Duration::days(days);
        let records = self
            .recorded_requests(&caller.org, since, SIMULATION_SAMPLE)
            .await?;
        let mut report = SimulationReport {
            total: records.len(),
            counts: [0; 4],
            matches: Vec::new(),
            window_days: days,
        };
        for record in records {
            let (verdict, reason) = decide_alone(&policy, &record.request, record.evaluated_at);
            report.counts[verdict as usize] += 1;
            if verdict != Verdict::Allow && report.matches.len() < SIMULATION_MATCHES {
                let request = record.request;
                report.matches.push(SimulatedMatch {
                    action_id: record
                        .action_id
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_else(|| record.decision_id.to_string()),
                    goal: request.declared_goal,
                    agent_name: request.agent_name.or(request.agent_id),
                    at: record.evaluated_at,
                    original: record.evaluation.decision,
                    simulated: verdict,
                    reason,
                });
            }
        }
        Ok(report)
    }
}

/// What one active policy did to the traffic recorded since it last changed.
#[derive(Debug)]
pub struct PolicyTraffic {
    pub policy: dashclaw_domain::policy_set::StoredPolicy,
    /// Requests recorded since the policy last changed (its rules as they are now).
    pub replayed: usize,
    /// The policy alone, per verdict: allow, warn, require_approval, block.
    pub counts: [usize; 4],
    /// Requests it fired on whose recorded verdict was at least as strict.
    pub enforced: usize,
    /// Requests it fired on whose recorded verdict was milder (a grant downgraded them).
    pub overridden: usize,
}

impl Service {
    /// Replays the requests recorded in the last `days` (1-90) through each of the caller's
    /// org's active policies alone, and compares with what was recorded. Writes nothing.
    pub async fn policy_traffic(
        &self,
        caller: &Caller,
        days: i64,
    ) -> Result<Vec<PolicyTraffic>, Error> {
        let days = days.clamp(*SIMULATION_DAYS.start(), *SIMULATION_DAYS.end());
        let since = self.clock().now() - chrono::Duration::days(days);
        let policies: Vec<_> = self
            .policies(caller, None)
            .await?
            .into_iter()
            .filter(|p| p.policy.active)
            .collect();
        let records = self
            .recorded_requests(&caller.org, since, SIMULATION_SAMPLE)
            .await?;
        Ok(policies
            .into_iter()
            .map(|stored| {
                let mut t = PolicyTraffic {
                    policy: stored,
                    replayed: 0,
                    counts: [0; 4],
                    enforced: 0,
                    overridden: 0,
                };
                let policy = &t.policy.policy;
                for record in records.iter().filter(|r| {
                    r.evaluated_at >= t.policy.updated_at
                        && policy.applies_to(r.request.agent_id.as_deref())
                }) {
                    let (verdict, _) = decide_alone(policy, &record.request, record.evaluated_at);
                    t.replayed += 1;
                    t.counts[verdict as usize] += 1;
                    if verdict != Verdict::Allow {
                        if record.evaluation.decision >= verdict {
                            t.enforced += 1;
                        } else {
                            t.overridden += 1;
                        }
                    }
                }
                t
            })
            .collect())
    }
}

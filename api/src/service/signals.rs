//! Decision-integrity signals (contract 10.5), computed from the read models: repeated
//! failures, lost confirmations, stale running actions, approvals waiting, assumption drift
//! and high-impact actions running without a human approval. Red ones first.

use dashclaw_projections::read::signals;

use super::{Caller, Error, Service};

/// One signal: what kind, how bad, and what it is about.
#[derive(Clone, Debug)]
pub struct Signal {
    /// `repeated_failures`, `lost_confirmation`, `stale_running_action`, `approval_backlog`,
    /// `assumption_drift` or `high_impact_low_oversight`.
    pub kind: &'static str,
    /// Red (act now) or amber (look soon).
    pub red: bool,
    pub label: &'static str,
    pub detail: String,
    /// What to do about it.
    pub help: &'static str,
    pub agent_id: String,
    pub action_id: Option<String>,
}

impl Service {
    /// The signals of the caller's org (of one agent, if given), red first.
    pub async fn signals(
        &self,
        caller: &Caller,
        agent: Option<&str>,
    ) -> Result<Vec<Signal>, Error> {
        self.projections().catch_up(&caller.org).await?;
        let (pool, org) = (self.pool(), &caller.org);
        let mut out = Vec::new();
        for a in signals::repeated_failures(pool, org, agent).await? {
            out.push(Signal {
                kind: "repeated_failures",
                red: a.count > 5,
                label: "Repeated failures",
                detail: format!("{} failed {} actions in 24 h", a.agent_id, a.count),
                help: "Look at the failing actions before letting the agent retry.",
                agent_id: a.agent_id,
                action_id: None,
            });
        }
        for a in signals::lost_confirmations(pool, org, agent).await? {
            out.push(Signal {
                kind: "lost_confirmation",
                red: true,
                label: "Lost confirmation",
                detail: format!(
                    "{} never reported its outcome; it was reconciled to unknown",
                    a.action_id
                ),
                help: "Find out whether it ran before retrying it: a retry could run it twice.",
                agent_id: a.agent_id,
                action_id: Some(a.action_id),
            });
        }
        for a in signals::stale_running(pool, org, agent).await? {
            out.push(Signal {
                kind: "stale_running_action",
                red: a.hours > 24.0,
                label: "Stale running action",
                detail: format!(
                    "{} has been running for {:.1} h without an outcome",
                    a.action_id, a.hours
                ),
                help: "Report its outcome or reconcile it.",
                agent_id: a.agent_id,
                action_id: Some(a.action_id),
            });
        }
        for a in signals::approval_backlog(pool, org, agent).await? {
            out.push(Signal {
                kind: "approval_backlog",
                red: a.hours >= 4.0,
                label: "Approval waiting",
                detail: format!("{} has waited {:.1} h for a decision", a.action_id, a.hours),
                help: "Approve or deny it.",
                agent_id: a.agent_id,
                action_id: Some(a.action_id),
            });
        }
        for a in signals::assumption_drift(pool, org, agent).await? {
            out.push(Signal {
                kind: "assumption_drift",
                red: a.count >= 4,
                label: "Assumption drift",
                detail: format!(
                    "{} of {}'s assumptions were invalidated in 7 days",
                    a.count, a.agent_id
                ),
                help: "Review what the agent believes before its next action.",
                agent_id: a.agent_id,
                action_id: None,
            });
        }
        for a in signals::unsupervised_high_risk(pool, org, agent).await? {
            out.push(Signal {
                kind: "high_impact_low_oversight",
                red: true,
                label: "High impact, low oversight",
                detail: format!(
                    "{} runs at risk {} without a human approval",
                    a.action_id, a.risk_score
                ),
                help: "Add a require_approval or risk_threshold policy for this action type.",
                agent_id: a.agent_id,
                action_id: Some(a.action_id),
            });
        }
        out.sort_by_key(|s| !s.red);
        Ok(out)
    }
}

//! Commands on an action. Each carries `now`: the domain has no clock of its own.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::record::{ActionStatus, ReportedOutcome};
use crate::guard::Verdict;
use crate::ids::{ActionId, GuardDecisionId};

#[derive(Debug, Clone, PartialEq)]
pub enum ActionCommand {
    /// Record a new action under the guard verdict it was given.
    Record(Box<NewAction>),
    /// An admin releases a held action.
    Approve {
        approver: String,
        reasoning: Option<String>,
        now: DateTime<Utc>,
    },
    /// An admin refuses a held action.
    Deny {
        approver: String,
        reasoning: Option<String>,
        now: DateTime<Utc>,
    },
    /// Record that a pending approval outlived its window.
    Expire { now: DateTime<Utc> },
    /// Claim the single execution attempt of a running action.
    ClaimExecution(ClaimExecution),
    /// Report the one-shot terminal outcome.
    ReportOutcome(ReportOutcome),
    /// The legacy `PATCH /api/actions/:id` outcome update.
    Update(Box<LegacyUpdate>),
    /// The outcome was not reported within the org's timeout (sent by the lost-confirmation
    /// sweep). Only an action whose outcome is still pending and whose lifecycle is not
    /// closed qualifies; a pending approval is left to expire by its own rule.
    MarkConfirmationLost { now: DateTime<Utc> },
    /// Decide not to run a running action that nobody has claimed (contract 5.5).
    Cancel {
        reason: String,
        cancelled_by: String,
        now: DateTime<Utc>,
    },
}

/// What an agent declared when recording an action (validated at the edge).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionDetails {
    pub agent_id: String,
    pub agent_name: Option<String>,
    pub swarm_id: Option<String>,
    pub parent_action_id: Option<String>,
    pub action_type: String,
    pub declared_goal: String,
    pub reasoning: Option<String>,
    pub authorization_scope: Option<String>,
    pub trigger: Option<String>,
    pub systems_touched: Vec<String>,
    pub input_summary: Option<String>,
    /// A client-supplied lifecycle status, honoured when guard neither holds nor blocks.
    pub status: Option<ActionStatus>,
    pub reversible: Option<bool>,
    pub confidence: Option<u8>,
    pub recommendation_id: Option<String>,
    pub output_summary: Option<String>,
    pub side_effects: Vec<String>,
    pub artifacts_created: Vec<String>,
    pub error_message: Option<String>,
    pub timestamp_start: Option<DateTime<Utc>>,
    pub timestamp_end: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub cost_estimate: Option<f64>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    pub model: Option<String>,
    pub idempotency_key: Option<String>,
    pub session_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewAction {
    pub action_id: ActionId,
    pub details: ActionDetails,
    pub verdict: Verdict,
    pub risk_score: u8,
    pub guard_decision_id: GuardDecisionId,
    /// `reasons.join("; ")` of the guard decision, quoted when the action is blocked.
    pub guard_reason: Option<String>,
    pub matched_policies: Vec<String>,
    pub approval_wait_seconds: u32,
    /// Added to the wait before a pending approval expires (the org's setting).
    pub approval_grace: chrono::Duration,
    pub act_content_hash: Option<String>,
    pub created_by: String,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimExecution {
    pub attempt_id: String,
    pub agent_id: String,
    pub principal: String,
    pub act_hash: Option<String>,
    /// The verdict of re-evaluating the recorded request under today's policies.
    pub reevaluation: Verdict,
    /// The guard decision that re-evaluation was recorded as.
    pub guard_decision_id: GuardDecisionId,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReportOutcome {
    pub status: ReportedOutcome,
    pub summary: Option<String>,
    pub error_message: Option<String>,
    pub progress: Option<Value>,
    pub now: DateTime<Utc>,
}

/// The legacy outcome update: only these fields may change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegacyUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ActionStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side_effects: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts_created: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_end: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_estimate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub now: DateTime<Utc>,
}

impl LegacyUpdate {
    /// Whether the update touches the fields that close an action (only allowed while running).
    pub fn closes(&self) -> bool {
        self.status.is_some() || self.output_summary.is_some() || self.timestamp_end.is_some()
    }
}

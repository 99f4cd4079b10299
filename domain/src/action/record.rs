//! The state of one action: the DashClaw action record, folded from its events.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::command::{LegacyUpdate, NewAction};
use super::event::ActionEvent;
use crate::guard::Verdict;
use crate::ids::{ActionId, GuardDecisionId};

/// Lifecycle status (`status` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
    Pending,
    PendingApproval,
    Blocked,
    Expired,
    Unknown,
}

impl ActionStatus {
    /// Every status, as on the wire.
    pub const ALL: &'static [&'static str] = &[
        "running",
        "completed",
        "failed",
        "cancelled",
        "pending",
        "pending_approval",
        "blocked",
        "expired",
        "unknown",
    ];

    /// The statuses a client may set (the server alone sets `expired` and `unknown`).
    pub const CLIENT_SUPPLIABLE: &'static [&'static str] = &[
        "running",
        "completed",
        "failed",
        "cancelled",
        "pending",
        "pending_approval",
        "blocked",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Pending => "pending",
            Self::PendingApproval => "pending_approval",
            Self::Blocked => "blocked",
            Self::Expired => "expired",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "pending" => Self::Pending,
            "pending_approval" => Self::PendingApproval,
            "blocked" => Self::Blocked,
            "expired" => Self::Expired,
            "unknown" => Self::Unknown,
            _ => return None,
        })
    }

    /// Statuses in which nothing will ever run: no outcome can be reported for them. (The
    /// contract lists blocked, pending_approval, cancelled and failed; expired and unknown are
    /// added so that an expired approval can never be completed.)
    pub fn refuses_outcomes(self) -> bool {
        matches!(
            self,
            Self::Blocked
                | Self::PendingApproval
                | Self::Cancelled
                | Self::Failed
                | Self::Expired
                | Self::Unknown
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed
                | Self::Failed
                | Self::Cancelled
                | Self::Blocked
                | Self::Expired
                | Self::Unknown
        )
    }
}

/// The one-shot outcome (`outcome_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    Pending,
    Completed,
    Partial,
    Failed,
    LostConfirmation,
}

impl OutcomeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::LostConfirmation => "lost_confirmation",
        }
    }

    /// The outcome named as on the wire (`as_str`'s inverse).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "completed" => Self::Completed,
            "partial" => Self::Partial,
            "failed" => Self::Failed,
            "lost_confirmation" => Self::LostConfirmation,
            _ => return None,
        })
    }
}

/// What an agent may report as the terminal outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportedOutcome {
    Completed,
    Partial,
    Failed,
}

impl From<ReportedOutcome> for OutcomeStatus {
    fn from(r: ReportedOutcome) -> Self {
        match r {
            ReportedOutcome::Completed => Self::Completed,
            ReportedOutcome::Partial => Self::Partial,
            ReportedOutcome::Failed => Self::Failed,
        }
    }
}

/// How the lifecycle was closed (`close_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseSource {
    Outcome,
    Direct,
}

/// The action record. Field names are the wire names of the DashClaw action row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub action_id: ActionId,
    pub agent_id: String,
    #[serde(default)]
    pub agent_name: Option<String>,
    #[serde(default)]
    pub swarm_id: Option<String>,
    #[serde(default)]
    pub parent_action_id: Option<String>,
    pub action_type: String,
    pub declared_goal: String,
    #[serde(default)]
    pub reasoning: Option<String>,
    #[serde(default)]
    pub authorization_scope: Option<String>,
    #[serde(default)]
    pub trigger: Option<String>,
    #[serde(default)]
    pub systems_touched: Vec<String>,
    #[serde(default)]
    pub input_summary: Option<String>,
    pub status: ActionStatus,
    pub reversible: bool,
    pub risk_score: u8,
    pub confidence: u8,
    #[serde(default)]
    pub recommendation_id: Option<String>,
    #[serde(default)]
    pub output_summary: Option<String>,
    #[serde(default)]
    pub side_effects: Vec<String>,
    #[serde(default)]
    pub artifacts_created: Vec<String>,
    #[serde(default)]
    pub error_message: Option<String>,
    pub timestamp_start: DateTime<Utc>,
    #[serde(default)]
    pub timestamp_end: Option<DateTime<Utc>>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub cost_estimate: Option<f64>,
    #[serde(default)]
    pub tokens_in: Option<u64>,
    #[serde(default)]
    pub tokens_out: Option<u64>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    pub guard_decision_id: GuardDecisionId,
    /// The guard verdict the action was recorded under.
    pub guard_verdict: Verdict,
    #[serde(default)]
    pub approval_expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub approved_by: Option<String>,
    #[serde(default)]
    pub approved_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub approval_grant_used_at: Option<DateTime<Utc>>,
    /// When a held action was approved, denied or expired (for time-to-decision analytics).
    #[serde(default)]
    pub approval_decided_at: Option<DateTime<Utc>>,
    pub outcome_status: OutcomeStatus,
    #[serde(default)]
    pub outcome_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub outcome_summary: Option<String>,
    #[serde(default)]
    pub outcome_error: Option<String>,
    #[serde(default)]
    pub outcome_progress: Option<Value>,
    #[serde(default)]
    pub close_source: Option<CloseSource>,
    #[serde(default)]
    pub act_content_hash: Option<String>,
    /// The principal (API key) that recorded the action; only it may claim execution.
    pub created_by: String,
    #[serde(default)]
    pub execution_claimed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub execution_attempt_id: Option<String>,
    #[serde(default)]
    pub execution_guard_decision_id: Option<GuardDecisionId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ActionRecord {
    pub fn new(new: NewAction) -> Self {
        let d = new.details;
        let now = new.now;
        let (status, error_message, timestamp_end, duration_ms, expires) = match new.verdict {
            Verdict::Block => (
                ActionStatus::Blocked,
                Some(format!(
                    "Blocked by policy: {} [Policies: {}]",
                    new.guard_reason.as_deref().unwrap_or("no reason"),
                    new.matched_policies.join(", ")
                )),
                Some(d.timestamp_start.unwrap_or(now)),
                Some(0),
                None,
            ),
            Verdict::RequireApproval => {
                let wait = i64::from(new.approval_wait_seconds.clamp(5, 86_400));
                (
                    ActionStatus::PendingApproval,
                    d.error_message,
                    d.timestamp_end,
                    d.duration_ms,
                    Some(now + Duration::seconds(wait) + new.approval_grace),
                )
            }
            Verdict::Allow | Verdict::Warn => (
                d.status.unwrap_or(ActionStatus::Running),
                d.error_message,
                d.timestamp_end,
                d.duration_ms,
                None,
            ),
        };
        Self {
            action_id: new.action_id,
            agent_id: d.agent_id,
            agent_name: d.agent_name,
            swarm_id: d.swarm_id,
            parent_action_id: d.parent_action_id,
            action_type: d.action_type,
            declared_goal: d.declared_goal,
            reasoning: d.reasoning,
            authorization_scope: d.authorization_scope,
            trigger: d.trigger,
            systems_touched: d.systems_touched,
            input_summary: d.input_summary,
            status,
            reversible: d.reversible.unwrap_or(true),
            risk_score: new.risk_score,
            confidence: d.confidence.unwrap_or(50),
            recommendation_id: d.recommendation_id,
            output_summary: d.output_summary,
            side_effects: d.side_effects,
            artifacts_created: d.artifacts_created,
            error_message,
            timestamp_start: d.timestamp_start.unwrap_or(now),
            timestamp_end,
            duration_ms,
            cost_estimate: d.cost_estimate,
            tokens_in: d.tokens_in,
            tokens_out: d.tokens_out,
            model: d.model,
            idempotency_key: d.idempotency_key,
            session_id: d.session_id,
            guard_decision_id: new.guard_decision_id,
            guard_verdict: new.verdict,
            approval_expires_at: expires,
            approved_by: None,
            approved_at: None,
            approval_grant_used_at: None,
            approval_decided_at: None,
            outcome_status: OutcomeStatus::Pending,
            outcome_at: None,
            outcome_summary: None,
            outcome_error: None,
            outcome_progress: None,
            close_source: status.is_terminal().then_some(CloseSource::Direct),
            act_content_hash: new.act_content_hash,
            created_by: new.created_by,
            execution_claimed_at: None,
            execution_attempt_id: None,
            execution_guard_decision_id: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether a pending approval has outlived its window at `now`.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        let deadline = self
            .approval_expires_at
            .unwrap_or(self.created_at + Duration::hours(24));
        now > deadline
    }

    /// This record as a reader should see it at `now`: a pending approval past its deadline
    /// is expired (as of its deadline) even before the sweep records the expiry, so no read
    /// ever shows an approval that can no longer be granted as pending.
    pub fn as_seen_at(&self, now: DateTime<Utc>) -> ActionRecord {
        let mut seen = self.clone();
        if seen.status == ActionStatus::PendingApproval && seen.is_overdue(now) {
            let deadline = seen
                .approval_expires_at
                .unwrap_or(seen.created_at + Duration::hours(24));
            seen.apply(ActionEvent::ApprovalExpired { at: deadline });
        }
        seen
    }

    pub(super) fn apply(&mut self, event: ActionEvent) {
        match event {
            ActionEvent::Recorded(_) => {}
            ActionEvent::ApprovalGranted {
                approved_by,
                reasoning,
                at,
            } => {
                self.append_decision("ALLOW", &approved_by, reasoning.as_deref());
                self.approval_decided_at = Some(at);
                self.status = ActionStatus::Running;
                self.approved_by = Some(approved_by);
                self.approved_at = Some(at);
                self.updated_at = at;
            }
            ActionEvent::ApprovalDenied {
                denied_by,
                reasoning,
                at,
            } => {
                self.append_decision("DENY", &denied_by, reasoning.as_deref());
                self.approval_decided_at = Some(at);
                self.status = ActionStatus::Failed;
                self.error_message =
                    Some(reasoning.unwrap_or_else(|| "Denied by human operator".to_owned()));
                self.approved_by = None;
                self.updated_at = at;
            }
            ActionEvent::ApprovalExpired { at } => {
                self.approval_decided_at = Some(at);
                self.status = ActionStatus::Expired;
                self.error_message = Some(
                    "Approval expired: the requesting client stopped waiting before a decision \
                     was made"
                        .to_owned(),
                );
                self.updated_at = at;
            }
            ActionEvent::ExecutionClaimed {
                attempt_id,
                guard_decision_id,
                at,
            } => {
                if self.approved_at.is_some() {
                    self.approval_grant_used_at = Some(at);
                }
                self.execution_claimed_at = Some(at);
                self.execution_attempt_id = Some(attempt_id);
                self.execution_guard_decision_id = Some(guard_decision_id);
                self.updated_at = at;
            }
            ActionEvent::OutcomeReported {
                status,
                summary,
                error_message,
                progress,
                at,
            } => {
                self.outcome_status = status.into();
                self.outcome_at = Some(at);
                self.outcome_summary = summary;
                self.outcome_error = error_message;
                self.outcome_progress = progress;
                if matches!(self.status, ActionStatus::Running | ActionStatus::Pending) {
                    self.status = match status {
                        ReportedOutcome::Completed => ActionStatus::Completed,
                        ReportedOutcome::Partial | ReportedOutcome::Failed => ActionStatus::Failed,
                    };
                }
                self.timestamp_end.get_or_insert(at);
                self.close_source.get_or_insert(CloseSource::Outcome);
                self.updated_at = at;
            }
            ActionEvent::Updated(update) => self.apply_update(*update),
            ActionEvent::ConfirmationLost { at } => {
                self.outcome_status = OutcomeStatus::LostConfirmation;
                self.outcome_at = Some(at);
                self.outcome_summary = Some("No outcome reported within timeout window".to_owned());
                self.status = ActionStatus::Unknown;
                self.error_message = Some(
                    "Outcome never reported — reconciled to unknown by the stale-outcome sweep"
                        .to_owned(),
                );
                self.timestamp_end.get_or_insert(at);
                self.close_source.get_or_insert(CloseSource::Outcome);
                self.updated_at = at;
            }
            ActionEvent::Cancelled { reason, at, .. } => {
                self.status = ActionStatus::Cancelled;
                self.outcome_summary = Some(format!("Deliberately not executed: {reason}"));
                self.timestamp_end.get_or_insert(at);
                self.close_source = Some(CloseSource::Direct);
                self.updated_at = at;
            }
        }
    }

    fn append_decision(&mut self, verdict: &str, by: &str, reason: Option<&str>) {
        let note = format!(
            "\n\n[HITL Decision: {verdict} by {by}]\nReason: {}",
            reason.unwrap_or("(none given)")
        );
        self.reasoning
            .get_or_insert_with(String::new)
            .push_str(&note);
    }

    fn apply_update(&mut self, u: LegacyUpdate) {
        let at = u.now;
        if let Some(status) = u.status {
            self.status = status;
            if self.outcome_status == OutcomeStatus::Pending {
                let implicit = match status {
                    ActionStatus::Completed => Some(OutcomeStatus::Completed),
                    ActionStatus::Failed | ActionStatus::Cancelled | ActionStatus::Blocked => {
                        Some(OutcomeStatus::Failed)
                    }
                    _ => None,
                };
                if let Some(outcome) = implicit {
                    self.outcome_status = outcome;
                    self.outcome_at = Some(at);
                    self.close_source = Some(CloseSource::Outcome);
                }
            }
        }
        if u.output_summary.is_some() {
            self.output_summary = u.output_summary;
        }
        if u.timestamp_end.is_some() {
            self.timestamp_end = u.timestamp_end;
        }
        if let Some(v) = u.side_effects {
            self.side_effects = v;
        }
        if let Some(v) = u.artifacts_created {
            self.artifacts_created = v;
        }
        if u.error_message.is_some() {
            self.error_message = u.error_message;
        }
        if u.duration_ms.is_some() {
            self.duration_ms = u.duration_ms;
        }
        if u.cost_estimate.is_some() {
            self.cost_estimate = u.cost_estimate;
        }
        if u.tokens_in.is_some() {
            self.tokens_in = u.tokens_in;
        }
        if u.tokens_out.is_some() {
            self.tokens_out = u.tokens_out;
        }
        if u.model.is_some() {
            self.model = u.model;
        }
        self.updated_at = at;
    }
}

//! The Action aggregate: one agent action from record to its single terminal outcome.
//!
//! Lifecycle: recorded (running | pending_approval | blocked) -> approved / denied / expired ->
//! execution claimed (once) -> outcome (completed | partial | failed, once). One-shot finality
//! lives here: a second outcome or claim is refused by `handle`, and the per-stream sequence
//! turns a racing second writer into a conflict that is retried against the new state.

mod command;
mod event;
mod record;
#[cfg(test)]
mod tests;

use chrono::Duration;
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

pub use command::{
    ActionCommand, ActionDetails, ClaimExecution, LegacyUpdate, NewAction, ReportOutcome,
};
pub use event::ActionEvent;
pub use record::{ActionRecord, ActionStatus, CloseSource, OutcomeStatus, ReportedOutcome};

use crate::guard::Verdict;

/// How long after `approved_at` an approval can still be turned into an execution claim.
pub const APPROVAL_GRANT_WINDOW: Duration = Duration::minutes(15);
/// The default grace added to the wait an agent declared before a pending approval expires
/// (orgs and the server environment can change it: `sweeps::Settings`).
pub const APPROVAL_GRACE: Duration = Duration::minutes(15);
/// Summaries and error messages are cut to this many characters.
pub const TEXT_LIMIT: usize = 4000;

/// The principal whose approvals are exempt from separation of duties (the bootstrap key).
pub const OPERATOR: &str = "operator";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub record: Option<ActionRecord>,
}

/// Why a command on an action was refused. Each variant names the broken rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// The action id is taken: answer with the existing action (idempotent replay) or 409.
    #[error("Action with this action_id already exists")]
    AlreadyExists,
    /// No such action in this org: 404.
    #[error("Action not found")]
    NotFound,
    /// Approve/deny on an action that is not waiting for one: 400.
    #[error("Action is not pending approval")]
    NotPendingApproval,
    /// The approval window has passed; the caller should record the expiry and answer 410.
    #[error("Approval expired")]
    ApprovalOverdue,
    /// The approval already expired: 410.
    #[error("Approval expired")]
    ApprovalExpired,
    /// Nobody approves their own action (except the bootstrap operator): 403.
    #[error("Separation of duties: a principal may not approve its own action")]
    SelfApproval,
    /// Expire on an action that is not overdue: nothing to do.
    #[error("Approval is not overdue")]
    NotOverdue,
    /// The execution claim does not hold: 409 EXECUTION_CLAIM_CONFLICT.
    #[error("Action is not eligible for a new execution attempt: {0}")]
    ClaimNotEligible(&'static str),
    /// Outcomes cannot be reported in this lifecycle status: 409 with `current_status`.
    #[error("Cannot report an outcome for an action in status '{}'", .0.as_str())]
    OutcomeNotAllowed(ActionStatus),
    /// The one-shot outcome is already set: 409 with `current_status`.
    #[error("outcome already set")]
    OutcomeAlreadySet(OutcomeStatus),
    /// A legacy update tried to close an action that is no longer running: 409.
    #[error("Action is in a terminal state and cannot be modified")]
    NotRunning(ActionStatus),
    /// The action is closed, held for approval or already has its outcome: nothing was lost.
    #[error("Action is not awaiting an outcome")]
    NotAwaitingOutcome,
    /// Only a running action with no outcome and no execution claim can be cancelled: 409.
    #[error("Action cannot be cancelled: {0}")]
    NotCancellable(&'static str),
}

impl Action {
    fn recorded(&self) -> Result<&ActionRecord, ActionError> {
        self.record.as_ref().ok_or(ActionError::NotFound)
    }
}

impl Aggregate for Action {
    const TYPE: &'static str = "Action";
    type Command = ActionCommand;
    type Event = ActionEvent;
    type Error = ActionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ActionCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ActionError> {
        let event = match command {
            ActionCommand::Record(new) => {
                if self.record.is_some() {
                    return Err(ActionError::AlreadyExists);
                }
                ActionEvent::Recorded(Box::new(ActionRecord::new(*new)))
            }
            ActionCommand::Approve {
                approver,
                reasoning,
                now,
            } => {
                self.recorded()?.check_decision_by(&approver, now)?;
                ActionEvent::ApprovalGranted {
                    approved_by: approver,
                    reasoning,
                    at: now,
                }
            }
            ActionCommand::Deny {
                approver,
                reasoning,
                now,
            } => {
                self.recorded()?.check_decision_by(&approver, now)?;
                ActionEvent::ApprovalDenied {
                    denied_by: approver,
                    reasoning,
                    at: now,
                }
            }
            ActionCommand::Expire { now } => {
                let record = self.recorded()?;
                if record.status != ActionStatus::PendingApproval || !record.is_overdue(now) {
                    return Err(ActionError::NotOverdue);
                }
                ActionEvent::ApprovalExpired { at: now }
            }
            ActionCommand::ClaimExecution(claim) => {
                self.recorded()?.check_claim(&claim)?;
                ActionEvent::ExecutionClaimed {
                    attempt_id: claim.attempt_id,
                    guard_decision_id: claim.guard_decision_id,
                    at: claim.now,
                }
            }
            ActionCommand::ReportOutcome(report) => {
                // An approval past its deadline is expired, recorded by the sweep or not.
                let seen = self.recorded()?.as_seen_at(report.now);
                let record = &seen;
                // A second report hears of the outcome the agent set (a `partial` one leaves
                // the action `failed`; the retry must be told `partial`). A late report after
                // the sweep's lost confirmation hears of the status (`unknown`).
                match record.outcome_status {
                    OutcomeStatus::Pending => {}
                    OutcomeStatus::LostConfirmation if record.status.refuses_outcomes() => {}
                    set => return Err(ActionError::OutcomeAlreadySet(set)),
                }
                if record.status.refuses_outcomes() {
                    return Err(ActionError::OutcomeNotAllowed(record.status));
                }
                if record.outcome_status != OutcomeStatus::Pending {
                    return Err(ActionError::OutcomeAlreadySet(record.outcome_status));
                }
                ActionEvent::OutcomeReported {
                    status: report.status,
                    summary: report.summary.map(|s| truncate(s, TEXT_LIMIT)),
                    error_message: report.error_message.map(|s| truncate(s, TEXT_LIMIT)),
                    progress: report.progress,
                    at: report.now,
                }
            }
            ActionCommand::MarkConfirmationLost { now } => {
                let record = self.recorded()?;
                let awaiting = record.outcome_status == OutcomeStatus::Pending
                    && matches!(record.status, ActionStatus::Running | ActionStatus::Pending);
                if !awaiting {
                    return Err(ActionError::NotAwaitingOutcome);
                }
                ActionEvent::ConfirmationLost { at: now }
            }
            ActionCommand::Cancel {
                reason,
                cancelled_by,
                now,
            } => {
                let seen = self.recorded()?.as_seen_at(now);
                use ActionError::NotCancellable as No;
                if seen.status != ActionStatus::Running {
                    return Err(No("it is not running"));
                }
                if seen.outcome_status != OutcomeStatus::Pending {
                    return Err(No("its outcome is already recorded"));
                }
                if seen.execution_claimed_at.is_some() {
                    return Err(No("its execution was already claimed"));
                }
                ActionEvent::Cancelled {
                    reason: truncate(reason, TEXT_LIMIT),
                    cancelled_by,
                    at: now,
                }
            }
            ActionCommand::Update(update) => {
                let seen = self.recorded()?.as_seen_at(update.now);
                let record = &seen;
                if update.closes() && record.status != ActionStatus::Running {
                    return Err(ActionError::NotRunning(record.status));
                }
                ActionEvent::Updated(update)
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: ActionEvent) {
        match event {
            ActionEvent::Recorded(record) => self.record = Some(*record),
            other => {
                if let Some(record) = self.record.as_mut() {
                    record.apply(other);
                }
            }
        }
    }
}

impl ActionRecord {
    /// Approve and deny both need a pending, unexpired approval, decided by someone other
    /// than its recorder (the bootstrap operator excepted).
    fn check_decision_by(
        &self,
        approver: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), ActionError> {
        self.check_decidable(now)?;
        if approver == self.created_by && approver != OPERATOR {
            return Err(ActionError::SelfApproval);
        }
        Ok(())
    }

    fn check_decidable(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), ActionError> {
        match self.status {
            ActionStatus::Expired => Err(ActionError::ApprovalExpired),
            ActionStatus::PendingApproval if self.is_overdue(now) => {
                Err(ActionError::ApprovalOverdue)
            }
            ActionStatus::PendingApproval => Ok(()),
            _ => Err(ActionError::NotPendingApproval),
        }
    }

    /// The execution-claim rules (contract section 5.2), all checked against one state.
    pub fn check_claim(&self, claim: &ClaimExecution) -> Result<(), ActionError> {
        use ActionError::ClaimNotEligible as No;
        if self.execution_claimed_at.is_some() {
            return Err(No("execution was already claimed"));
        }
        if self.status != ActionStatus::Running {
            return Err(No("action is not running"));
        }
        if self.outcome_status != OutcomeStatus::Pending {
            return Err(No("outcome already recorded"));
        }
        if self.guard_verdict == Verdict::Block {
            return Err(No("guard blocked this action"));
        }
        if self.agent_id != claim.agent_id {
            return Err(No("claimant agent differs from the recording agent"));
        }
        if self.created_by != claim.principal {
            return Err(No(
                "claimant principal differs from the recording principal",
            ));
        }
        if self.act_content_hash != claim.act_hash {
            return Err(No("act differs from the recorded act"));
        }
        if let Some(approved_at) = self.approved_at {
            if self.approval_grant_used_at.is_some() {
                return Err(No("approval grant already used"));
            }
            if claim.now - approved_at > APPROVAL_GRANT_WINDOW {
                return Err(No("approval is older than the 15-minute claim window"));
            }
        }
        if !matches!(claim.reevaluation, Verdict::Allow | Verdict::Warn) {
            return Err(No("current policies no longer allow this action"));
        }
        Ok(())
    }
}

/// Cuts `s` to at most `limit` characters (not bytes).
pub fn truncate(mut s: String, limit: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(limit) {
        s.truncate(i);
    }
    s
}

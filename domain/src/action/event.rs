//! Events of an action. Stored names and versions are frozen once shipped.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::command::LegacyUpdate;
use super::record::{ActionRecord, ReportedOutcome};
use crate::ids::GuardDecisionId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ActionEvent {
    /// The full record as created (status running, pending_approval or blocked, ...).
    Recorded(Box<ActionRecord>),
    ApprovalGranted {
        approved_by: String,
        reasoning: Option<String>,
        at: DateTime<Utc>,
    },
    ApprovalDenied {
        denied_by: String,
        reasoning: Option<String>,
        at: DateTime<Utc>,
    },
    ApprovalExpired {
        at: DateTime<Utc>,
    },
    ExecutionClaimed {
        attempt_id: String,
        guard_decision_id: GuardDecisionId,
        at: DateTime<Utc>,
    },
    OutcomeReported {
        status: ReportedOutcome,
        summary: Option<String>,
        error_message: Option<String>,
        progress: Option<Value>,
        at: DateTime<Utc>,
    },
    Updated(Box<LegacyUpdate>),
    ConfirmationLost {
        at: DateTime<Utc>,
    },
    /// Deliberately not executed.
    Cancelled {
        reason: String,
        cancelled_by: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for ActionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Recorded(_) => "ActionRecorded",
            Self::ApprovalGranted { .. } => "ActionApprovalGranted",
            Self::ApprovalDenied { .. } => "ActionApprovalDenied",
            Self::ApprovalExpired { .. } => "ActionApprovalExpired",
            Self::ExecutionClaimed { .. } => "ActionExecutionClaimed",
            Self::OutcomeReported { .. } => "ActionOutcomeReported",
            Self::Updated(_) => "ActionUpdated",
            Self::ConfirmationLost { .. } => "ActionConfirmationLost",
            Self::Cancelled { .. } => "ActionCancelled",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

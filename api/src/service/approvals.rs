//! A human's answer to a held action: approve or deny (admin keys; nobody approves an action
//! they recorded, except the bootstrap operator). An approval past its deadline can release
//! nothing: it is answered as expired.

use dashclaw_domain::action::{ActionCommand, ActionError, ActionRecord};

use super::error::Subject;
use super::{Caller, Error, ErrorCode, Service};

const EXPIRED: &str = "Approval expired: the requesting agent stopped waiting for this decision, so approving it can no longer release anything. If the action is still wanted, have the agent retry it — a fresh approval request will be created.";

impl Service {
    /// Approves (`allow`) or denies a held action of the caller's org (admin). An expired
    /// approval is refused with `APPROVAL_EXPIRED` about the action as it reads now.
    pub async fn decide_approval(
        &self,
        caller: &Caller,
        id: &str,
        allow: bool,
        reasoning: Option<String>,
    ) -> Result<ActionRecord, Error> {
        caller.require_admin("Admin access required for approvals")?;
        let record = self.load_action(caller, id).await?;
        let now = self.clock().now();
        let approver = caller.principal.clone();
        let command = if allow {
            ActionCommand::Approve {
                approver,
                reasoning,
                now,
            }
        } else {
            ActionCommand::Deny {
                approver,
                reasoning,
                now,
            }
        };
        let expired = || Error::new(ErrorCode::ApprovalExpired, EXPIRED);
        match self.run_action(caller, &record.action_id, command).await? {
            Ok(decided) => Ok(decided),
            Err(ActionError::ApprovalOverdue) => {
                let seen = Box::new(record.as_seen_at(now));
                Err(expired().about(Subject::Action {
                    org: caller.org.clone(),
                    action: seen,
                }))
            }
            Err(ActionError::ApprovalExpired) => Err(expired()),
            Err(ActionError::NotPendingApproval) => Err(Error::new(
                ErrorCode::NotPendingApproval,
                "Action is not pending approval",
            )),
            Err(ActionError::SelfApproval) => Err(Error::new(
                ErrorCode::SelfApprovalForbidden,
                "Separation of duties: you cannot approve an action you recorded",
            )),
            Err(e) => Err(Error::internal(e)),
        }
    }
}

//! The sweeps' pure decisions: given a record (or a chain's state), the settings and the time,
//! whether a transition is due. The loops only act on a `true`, and only by sending a command
//! the aggregate may still refuse (an agent's report that won the race).

use chrono::{DateTime, Utc};
use dashclaw_domain::action::{ActionRecord, ActionStatus, OutcomeStatus};

/// A running action whose outcome was not reported within `timeout` of it starting to run
/// (its start, or its approval or claim when later). Pending approvals are never "lost":
/// they expire by their own rule.
pub fn confirmation_lost(
    r: &ActionRecord,
    now: DateTime<Utc>,
    timeout: std::time::Duration,
) -> bool {
    let awaiting = r.outcome_status == OutcomeStatus::Pending
        && matches!(r.status, ActionStatus::Running | ActionStatus::Pending);
    let running_since = [
        Some(r.timestamp_start),
        r.approved_at,
        r.execution_claimed_at,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(r.timestamp_start);
    awaiting
        && chrono::Duration::from_std(timeout).is_ok_and(|timeout| now > running_since + timeout)
}

/// A pending approval past its deadline (the declared wait plus the grace).
pub fn approval_expired(r: &ActionRecord, now: DateTime<Utc>) -> bool {
    r.status == ActionStatus::PendingApproval && r.is_overdue(now)
}

/// Where an org's chain and its signatures stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainState {
    /// Events in the chain.
    pub size: u64,
    /// Events covered by the latest checkpoint (0 when none).
    pub signed_size: u64,
    /// When the oldest unsigned event was recorded.
    pub oldest_unsigned_at: Option<DateTime<Utc>>,
}

/// Whether to sign a checkpoint: `every_events` are unsigned, or the oldest unsigned event
/// has waited `interval`.
pub fn checkpoint_due(
    chain: ChainState,
    now: DateTime<Utc>,
    every_events: u64,
    interval: std::time::Duration,
) -> bool {
    let unsigned = chain.size.saturating_sub(chain.signed_size);
    let waited = chain.oldest_unsigned_at.is_some_and(|at| {
        chrono::Duration::from_std(interval).is_ok_and(|interval| now >= at + interval)
    });
    unsigned > 0 && (unsigned >= every_events.max(1) || waited)
}

/// Whether to (re)compute an org's posture snapshot, given when its latest one was taken:
/// none yet, the latest is of an earlier UTC day (each day keeps its own row), or it has
/// aged `interval`.
pub fn posture_due(
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    interval: std::time::Duration,
) -> bool {
    last.is_none_or(|at| {
        at.date_naive() != now.date_naive()
            || chrono::Duration::from_std(interval).is_ok_and(|interval| now >= at + interval)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;
    use dashclaw_domain::action::{
        ActionDetails, ActionRecord, ActionStatus, NewAction, OutcomeStatus, APPROVAL_GRACE,
    };
    use dashclaw_domain::guard::Verdict;
    use dashclaw_domain::ids::{ActionId, GuardDecisionId};

    use super::*;

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap() + chrono::Duration::minutes(minutes)
    }

    fn record(status: ActionStatus) -> ActionRecord {
        let mut r = ActionRecord::new(NewAction {
            action_id: ActionId::parse("act_1").unwrap(),
            details: ActionDetails {
                agent_id: "agent-1".into(),
                action_type: "deploy".into(),
                declared_goal: "ship it".into(),
                ..Default::default()
            },
            verdict: Verdict::Allow,
            risk_score: 40,
            guard_decision_id: GuardDecisionId::random([1; 8]),
            guard_reason: None,
            matched_policies: vec![],
            approval_wait_seconds: 300,
            approval_grace: APPROVAL_GRACE,
            act_content_hash: None,
            created_by: "key_agent".into(),
            now: t(0),
        });
        r.status = status;
        r
    }

    #[test]
    fn a_running_action_is_lost_only_after_its_timeout() {
        let r = record(ActionStatus::Running);
        let timeout = Duration::from_secs(15 * 60);
        assert!(!confirmation_lost(&r, t(15), timeout));
        assert!(confirmation_lost(&r, t(16), timeout));
    }

    #[test]
    fn the_clock_restarts_when_an_approval_or_a_claim_lets_it_run() {
        let mut r = record(ActionStatus::Running);
        r.approved_at = Some(t(60));
        assert!(!confirmation_lost(&r, t(70), Duration::from_secs(15 * 60)));
        assert!(confirmation_lost(&r, t(76), Duration::from_secs(15 * 60)));
    }

    #[test]
    fn pending_approvals_and_reported_outcomes_are_never_lost() {
        let held = record(ActionStatus::PendingApproval);
        assert!(!confirmation_lost(&held, t(600), Duration::from_secs(60)));
        let mut done = record(ActionStatus::Completed);
        done.outcome_status = OutcomeStatus::Completed;
        assert!(!confirmation_lost(&done, t(600), Duration::from_secs(60)));
    }

    #[test]
    fn approvals_expire_after_their_deadline_only() {
        let mut r = record(ActionStatus::PendingApproval);
        r.approval_expires_at = Some(t(20));
        assert!(!approval_expired(&r, t(20)));
        assert!(approval_expired(&r, t(21)));
        r.status = ActionStatus::Running;
        assert!(!approval_expired(&r, t(21)));
    }

    #[test]
    fn checkpoints_are_due_by_count_or_by_age() {
        let chain = |size, signed_size, minutes| ChainState {
            size,
            signed_size,
            oldest_unsigned_at: Some(t(minutes)),
        };
        let minute = Duration::from_secs(60);
        assert!(
            !checkpoint_due(chain(10, 10, 0), t(100), 5, minute),
            "nothing unsigned"
        );
        assert!(
            !checkpoint_due(chain(14, 10, 0), t(0), 5, minute),
            "too few, too young"
        );
        assert!(
            checkpoint_due(chain(15, 10, 0), t(0), 5, minute),
            "enough events"
        );
        assert!(
            checkpoint_due(chain(11, 10, 0), t(1), 5, minute),
            "old enough"
        );
    }

    #[test]
    fn a_posture_snapshot_is_due_first_thing_each_day_and_then_every_interval() {
        let hour = Duration::from_secs(60 * 60);
        assert!(posture_due(None, t(0), hour), "none yet");
        assert!(!posture_due(Some(t(0)), t(59), hour), "within the interval");
        assert!(posture_due(Some(t(0)), t(60), hour), "the interval passed");
        // t(0) is noon: the last minute of the day, then the first of the next.
        assert!(!posture_due(Some(t(11 * 60 + 30)), t(11 * 60 + 59), hour));
        assert!(
            posture_due(Some(t(11 * 60 + 30)), t(12 * 60), hour),
            "the day changed"
        );
        assert!(
            !posture_due(Some(t(5)), t(0), hour),
            "a snapshot from a clock ahead"
        );
    }
}

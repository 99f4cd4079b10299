//! Given/when/then tests of the Action aggregate: every command and every refusal.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;

use super::*;
use crate::action::command::ActionDetails;
use crate::ids::{ActionId, GuardDecisionId};

type Fixture = TestFramework<Action>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

fn new_action(verdict: Verdict) -> NewAction {
    NewAction {
        action_id: ActionId::parse("act_1").unwrap(),
        details: ActionDetails {
            agent_id: "agent-1".into(),
            action_type: "deploy".into(),
            declared_goal: "ship it".into(),
            ..Default::default()
        },
        verdict,
        risk_score: 75,
        guard_decision_id: GuardDecisionId::random([1; 8]),
        guard_reason: Some("Prod gate: Risk score 75 >= threshold 70".into()),
        matched_policies: vec!["gp_1".into()],
        approval_wait_seconds: 300,
        approval_grace: APPROVAL_GRACE,
        act_content_hash: Some("h1".into()),
        created_by: "key_agent".into(),
        now: t0(),
    }
}

fn recorded(verdict: Verdict) -> ActionEvent {
    ActionEvent::Recorded(Box::new(ActionRecord::new(new_action(verdict))))
}

fn granted(at: DateTime<Utc>) -> ActionEvent {
    ActionEvent::ApprovalGranted {
        approved_by: "key_admin".into(),
        reasoning: None,
        at,
    }
}

fn claim(now: DateTime<Utc>) -> ClaimExecution {
    ClaimExecution {
        attempt_id: "attempt-000000000001".into(),
        agent_id: "agent-1".into(),
        principal: "key_agent".into(),
        act_hash: Some("h1".into()),
        reevaluation: Verdict::Allow,
        guard_decision_id: GuardDecisionId::random([2; 8]),
        now,
    }
}

fn outcome(status: ReportedOutcome) -> ReportOutcome {
    ReportOutcome {
        status,
        summary: Some("done".into()),
        error_message: None,
        progress: None,
        now: t0() + Duration::minutes(1),
    }
}

fn state(events: Vec<ActionEvent>) -> ActionRecord {
    let mut action = Action::default();
    for e in events {
        action.apply(e);
    }
    action.record.unwrap()
}

#[test]
fn recording_sets_status_from_the_verdict() {
    assert_eq!(
        state(vec![recorded(Verdict::Allow)]).status,
        ActionStatus::Running
    );
    assert_eq!(
        state(vec![recorded(Verdict::Warn)]).status,
        ActionStatus::Running
    );
    let held = state(vec![recorded(Verdict::RequireApproval)]);
    assert_eq!(held.status, ActionStatus::PendingApproval);
    assert_eq!(
        held.approval_expires_at,
        Some(t0() + Duration::seconds(300) + Duration::minutes(15))
    );
    let blocked = state(vec![recorded(Verdict::Block)]);
    assert_eq!(blocked.status, ActionStatus::Blocked);
    assert_eq!(
        blocked.error_message.as_deref(),
        Some("Blocked by policy: Prod gate: Risk score 75 >= threshold 70 [Policies: gp_1]")
    );
    assert_eq!(blocked.duration_ms, Some(0));
}

#[test]
fn record_emits_the_record_and_refuses_a_second_time() {
    Fixture::with(())
        .given_no_previous_events()
        .when(ActionCommand::Record(Box::new(new_action(Verdict::Allow))))
        .then_expect_events(vec![recorded(Verdict::Allow)]);
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow)])
        .when(ActionCommand::Record(Box::new(new_action(Verdict::Allow))))
        .then_expect_error(ActionError::AlreadyExists);
}

#[test]
fn commands_on_an_unknown_action_are_not_found() {
    Fixture::with(())
        .given_no_previous_events()
        .when(ActionCommand::Expire { now: t0() })
        .then_expect_error(ActionError::NotFound);
}

#[test]
fn approval_releases_a_held_action() {
    let now = t0() + Duration::minutes(2);
    Fixture::with(())
        .given(vec![recorded(Verdict::RequireApproval)])
        .when(ActionCommand::Approve {
            approver: "key_admin".into(),
            reasoning: None,
            now,
        })
        .then_expect_events(vec![granted(now)]);
    let s = state(vec![recorded(Verdict::RequireApproval), granted(now)]);
    assert_eq!(s.status, ActionStatus::Running);
    assert_eq!(s.approved_by.as_deref(), Some("key_admin"));
    assert!(s
        .reasoning
        .unwrap()
        .contains("[HITL Decision: ALLOW by key_admin]"));
}

#[test]
fn approvals_refuse_self_approval_but_not_the_operator() {
    let approve = |who: &str| ActionCommand::Approve {
        approver: who.into(),
        reasoning: None,
        now: t0(),
    };
    Fixture::with(())
        .given(vec![recorded(Verdict::RequireApproval)])
        .when(approve("key_agent"))
        .then_expect_error(ActionError::SelfApproval);
    let mut by_operator = new_action(Verdict::RequireApproval);
    by_operator.created_by = OPERATOR.into();
    let events = Fixture::with(())
        .given(vec![ActionEvent::Recorded(Box::new(ActionRecord::new(
            by_operator,
        )))])
        .when(approve(OPERATOR))
        .inspect_result();
    assert!(events.is_ok());
}

#[test]
fn approvals_need_a_pending_unexpired_action() {
    let approve = |now| ActionCommand::Approve {
        approver: "key_admin".into(),
        reasoning: None,
        now,
    };
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow)])
        .when(approve(t0()))
        .then_expect_error(ActionError::NotPendingApproval);
    Fixture::with(())
        .given(vec![recorded(Verdict::RequireApproval)])
        .when(approve(t0() + Duration::minutes(21)))
        .then_expect_error(ActionError::ApprovalOverdue);
    Fixture::with(())
        .given(vec![
            recorded(Verdict::RequireApproval),
            ActionEvent::ApprovalExpired { at: t0() },
        ])
        .when(approve(t0()))
        .then_expect_error(ActionError::ApprovalExpired);
}

#[test]
fn denial_fails_the_action_with_the_reason() {
    let denied = ActionEvent::ApprovalDenied {
        denied_by: "key_admin".into(),
        reasoning: Some("not today".into()),
        at: t0(),
    };
    Fixture::with(())
        .given(vec![recorded(Verdict::RequireApproval)])
        .when(ActionCommand::Deny {
            approver: "key_admin".into(),
            reasoning: Some("not today".into()),
            now: t0(),
        })
        .then_expect_events(vec![denied.clone()]);
    let s = state(vec![recorded(Verdict::RequireApproval), denied]);
    assert_eq!(s.status, ActionStatus::Failed);
    assert_eq!(s.error_message.as_deref(), Some("not today"));
    assert_eq!(s.approved_by, None);
}

#[test]
fn expiry_happens_only_after_the_window() {
    Fixture::with(())
        .given(vec![recorded(Verdict::RequireApproval)])
        .when(ActionCommand::Expire {
            now: t0() + Duration::minutes(19),
        })
        .then_expect_error(ActionError::NotOverdue);
    let late = t0() + Duration::minutes(21);
    Fixture::with(())
        .given(vec![recorded(Verdict::RequireApproval)])
        .when(ActionCommand::Expire { now: late })
        .then_expect_events(vec![ActionEvent::ApprovalExpired { at: late }]);
}

#[test]
fn an_overdue_approval_reads_as_expired_before_the_sweep_records_it() {
    let held = state(vec![recorded(Verdict::RequireApproval)]);
    let deadline = held.approval_expires_at.unwrap();
    assert_eq!(
        held.as_seen_at(deadline).status,
        ActionStatus::PendingApproval
    );
    let seen = held.as_seen_at(deadline + Duration::seconds(1));
    assert_eq!(seen.status, ActionStatus::Expired);
    assert_eq!(seen.approval_decided_at, Some(deadline));
    // What the sweep then records reads the same, apart from when it was recorded.
    let late = deadline + Duration::minutes(5);
    let swept = state(vec![
        recorded(Verdict::RequireApproval),
        ActionEvent::ApprovalExpired { at: late },
    ]);
    assert_eq!(swept.status, seen.status);
    assert_eq!(swept.error_message, seen.error_message);
    // Outcomes and updates meet the expiry too, recorded or not.
    let mut report = outcome(ReportedOutcome::Completed);
    report.now = late;
    Fixture::with(())
        .given(vec![recorded(Verdict::RequireApproval)])
        .when(ActionCommand::ReportOutcome(report))
        .then_expect_error(ActionError::OutcomeNotAllowed(ActionStatus::Expired));
}

#[test]
fn a_running_action_can_be_claimed_once() {
    let c = claim(t0());
    let claimed = ActionEvent::ExecutionClaimed {
        attempt_id: c.attempt_id.clone(),
        guard_decision_id: c.guard_decision_id.clone(),
        at: c.now,
    };
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow)])
        .when(ActionCommand::ClaimExecution(c.clone()))
        .then_expect_events(vec![claimed.clone()]);
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow), claimed])
        .when(ActionCommand::ClaimExecution(c))
        .then_expect_error(ActionError::ClaimNotEligible(
            "execution was already claimed",
        ));
}

#[test]
fn claims_are_refused_for_blocked_denied_expired_and_held_actions() {
    let denied = ActionEvent::ApprovalDenied {
        denied_by: "key_admin".into(),
        reasoning: None,
        at: t0(),
    };
    for given in [
        vec![recorded(Verdict::Block)],
        vec![recorded(Verdict::RequireApproval)],
        vec![recorded(Verdict::RequireApproval), denied],
        vec![
            recorded(Verdict::RequireApproval),
            ActionEvent::ApprovalExpired { at: t0() },
        ],
    ] {
        Fixture::with(())
            .given(given)
            .when(ActionCommand::ClaimExecution(claim(t0())))
            .then_expect_error(ActionError::ClaimNotEligible("action is not running"));
    }
}

#[test]
fn claims_check_identity_act_policy_and_the_approval_window() {
    type Tweak = Box<dyn Fn(&mut ClaimExecution)>;
    let cases: Vec<(Tweak, &str)> = vec![
        (
            Box::new(|c| c.agent_id = "other".into()),
            "claimant agent differs from the recording agent",
        ),
        (
            Box::new(|c| c.principal = "key_other".into()),
            "claimant principal differs from the recording principal",
        ),
        (
            Box::new(|c| c.act_hash = Some("h2".into())),
            "act differs from the recorded act",
        ),
        (
            Box::new(|c| c.reevaluation = Verdict::RequireApproval),
            "current policies no longer allow this action",
        ),
    ];
    for (tweak, reason) in cases {
        let mut c = claim(t0());
        tweak(&mut c);
        Fixture::with(())
            .given(vec![recorded(Verdict::Allow)])
            .when(ActionCommand::ClaimExecution(c))
            .then_expect_error(ActionError::ClaimNotEligible(reason));
    }
    Fixture::with(())
        .given(vec![recorded(Verdict::RequireApproval), granted(t0())])
        .when(ActionCommand::ClaimExecution(claim(
            t0() + Duration::minutes(16),
        )))
        .then_expect_error(ActionError::ClaimNotEligible(
            "approval is older than the 15-minute claim window",
        ));
    let s = state(vec![
        recorded(Verdict::RequireApproval),
        granted(t0()),
        ActionEvent::ExecutionClaimed {
            attempt_id: "a".into(),
            guard_decision_id: GuardDecisionId::random([3; 8]),
            at: t0(),
        },
    ]);
    assert_eq!(s.approval_grant_used_at, Some(t0()));
}

#[test]
fn the_outcome_is_one_shot() {
    let reported = ActionEvent::OutcomeReported {
        status: ReportedOutcome::Completed,
        summary: Some("done".into()),
        error_message: None,
        progress: None,
        at: t0() + Duration::minutes(1),
    };
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow)])
        .when(ActionCommand::ReportOutcome(outcome(
            ReportedOutcome::Completed,
        )))
        .then_expect_events(vec![reported.clone()]);
    let s = state(vec![recorded(Verdict::Allow), reported.clone()]);
    assert_eq!(s.status, ActionStatus::Completed);
    assert_eq!(s.outcome_status, OutcomeStatus::Completed);
    assert_eq!(s.close_source, Some(CloseSource::Outcome));
    assert!(s.timestamp_end.is_some());
    // The lifecycle is closed now, so a second report is refused by status.
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow), reported])
        .when(ActionCommand::ReportOutcome(outcome(
            ReportedOutcome::Failed,
        )))
        .then_expect_error(ActionError::OutcomeAlreadySet(OutcomeStatus::Completed));
}

#[test]
fn a_retried_partial_outcome_is_told_partial() {
    let partial = ActionEvent::OutcomeReported {
        status: ReportedOutcome::Partial,
        summary: Some("half".into()),
        error_message: None,
        progress: None,
        at: t0() + Duration::minutes(1),
    };
    let s = state(vec![recorded(Verdict::Allow), partial.clone()]);
    assert_eq!(s.outcome_status, OutcomeStatus::Partial);
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow), partial])
        .when(ActionCommand::ReportOutcome(outcome(
            ReportedOutcome::Partial,
        )))
        .then_expect_error(ActionError::OutcomeAlreadySet(OutcomeStatus::Partial));
}

#[test]
fn outcomes_are_refused_for_actions_that_must_not_run() {
    let denied = ActionEvent::ApprovalDenied {
        denied_by: "key_admin".into(),
        reasoning: None,
        at: t0(),
    };
    let cases = [
        (vec![recorded(Verdict::Block)], ActionStatus::Blocked),
        (
            vec![recorded(Verdict::RequireApproval)],
            ActionStatus::PendingApproval,
        ),
        (
            vec![recorded(Verdict::RequireApproval), denied],
            ActionStatus::Failed,
        ),
        (
            vec![
                recorded(Verdict::RequireApproval),
                ActionEvent::ApprovalExpired { at: t0() },
            ],
            ActionStatus::Expired,
        ),
    ];
    for (given, status) in cases {
        Fixture::with(())
            .given(given)
            .when(ActionCommand::ReportOutcome(outcome(
                ReportedOutcome::Completed,
            )))
            .then_expect_error(ActionError::OutcomeNotAllowed(status));
    }
}

#[test]
fn legacy_updates_close_running_actions_only() {
    let update = LegacyUpdate {
        status: Some(ActionStatus::Completed),
        duration_ms: Some(12),
        now: t0(),
        ..Default::default()
    };
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow)])
        .when(ActionCommand::Update(Box::new(update.clone())))
        .then_expect_events(vec![ActionEvent::Updated(Box::new(update.clone()))]);
    let s = state(vec![
        recorded(Verdict::Allow),
        ActionEvent::Updated(Box::new(update.clone())),
    ]);
    assert_eq!(s.outcome_status, OutcomeStatus::Completed);
    Fixture::with(())
        .given(vec![recorded(Verdict::Block)])
        .when(ActionCommand::Update(Box::new(update)))
        .then_expect_error(ActionError::NotRunning(ActionStatus::Blocked));
    // Non-closing fields always apply.
    let cost = LegacyUpdate {
        tokens_in: Some(5),
        now: t0(),
        ..Default::default()
    };
    let events = Fixture::with(())
        .given(vec![recorded(Verdict::Block)])
        .when(ActionCommand::Update(Box::new(cost)))
        .inspect_result();
    assert!(events.is_ok());
}

#[test]
fn truncate_counts_characters() {
    assert_eq!(truncate("héllo".into(), 2), "hé");
    assert_eq!(truncate("hi".into(), 10), "hi");
}

#[test]
fn a_lost_confirmation_closes_a_running_action_once_and_races_with_a_late_report() {
    let lost = ActionEvent::ConfirmationLost {
        at: t0() + Duration::minutes(16),
    };
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow)])
        .when(ActionCommand::MarkConfirmationLost {
            now: t0() + Duration::minutes(16),
        })
        .then_expect_events(vec![lost.clone()]);
    let s = state(vec![recorded(Verdict::Allow), lost.clone()]);
    assert_eq!(s.outcome_status, OutcomeStatus::LostConfirmation);
    assert_eq!(s.status, ActionStatus::Unknown);
    // The late agent report loses: exactly one terminal outcome.
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow), lost])
        .when(ActionCommand::ReportOutcome(outcome(
            ReportedOutcome::Completed,
        )))
        .then_expect_error(ActionError::OutcomeNotAllowed(ActionStatus::Unknown));
    // And the other way round: a reported outcome leaves nothing to lose.
    let reported = ActionEvent::OutcomeReported {
        status: ReportedOutcome::Completed,
        summary: None,
        error_message: None,
        progress: None,
        at: t0(),
    };
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow), reported])
        .when(ActionCommand::MarkConfirmationLost { now: t0() })
        .then_expect_error(ActionError::NotAwaitingOutcome);
    // A pending approval is not poisoned: it expires by its own rule.
    Fixture::with(())
        .given(vec![recorded(Verdict::RequireApproval)])
        .when(ActionCommand::MarkConfirmationLost { now: t0() })
        .then_expect_error(ActionError::NotAwaitingOutcome);
}

#[test]
fn statuses_and_outcomes_parse_what_they_print() {
    for s in ActionStatus::ALL {
        assert_eq!(ActionStatus::parse(s).map(ActionStatus::as_str), Some(*s));
    }
    for o in [
        OutcomeStatus::Pending,
        OutcomeStatus::Completed,
        OutcomeStatus::Partial,
        OutcomeStatus::Failed,
        OutcomeStatus::LostConfirmation,
    ] {
        assert_eq!(OutcomeStatus::parse(o.as_str()), Some(o));
    }
    assert_eq!(OutcomeStatus::parse("done"), None);
}

fn cancel() -> ActionCommand {
    ActionCommand::Cancel {
        reason: "window closed".into(),
        cancelled_by: "key_admin".into(),
        now: t0() + Duration::minutes(2),
    }
}

#[test]
fn a_running_unclaimed_action_is_cancelled_once() {
    let cancelled = ActionEvent::Cancelled {
        reason: "window closed".into(),
        cancelled_by: "key_admin".into(),
        at: t0() + Duration::minutes(2),
    };
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow)])
        .when(cancel())
        .then_expect_events(vec![cancelled.clone()]);
    let r = state(vec![recorded(Verdict::Allow), cancelled.clone()]);
    assert_eq!(r.status, ActionStatus::Cancelled);
    assert_eq!(r.close_source, Some(CloseSource::Direct));
    assert_eq!(
        r.outcome_summary.as_deref(),
        Some("Deliberately not executed: window closed")
    );
    Fixture::with(())
        .given(vec![recorded(Verdict::Allow), cancelled])
        .when(cancel())
        .then_expect_error(ActionError::NotCancellable("it is not running"));
}

#[test]
fn held_claimed_or_finished_actions_are_not_cancellable() {
    Fixture::with(())
        .given(vec![recorded(Verdict::RequireApproval)])
        .when(cancel())
        .then_expect_error(ActionError::NotCancellable("it is not running"));
    Fixture::with(())
        .given(vec![
            recorded(Verdict::Allow),
            ActionEvent::ExecutionClaimed {
                attempt_id: "attempt-000000000001".into(),
                guard_decision_id: GuardDecisionId::random([2; 8]),
                at: t0(),
            },
        ])
        .when(cancel())
        .then_expect_error(ActionError::NotCancellable(
            "its execution was already claimed",
        ));
    Fixture::with(())
        .given(vec![])
        .when(cancel())
        .then_expect_error(ActionError::NotFound);
}

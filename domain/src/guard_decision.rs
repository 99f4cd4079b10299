//! The GuardDecision aggregate: one immutable record per guard evaluation.
//!
//! It carries the inputs, the policy-set version in force, the verdict, reasons, matched
//! policies and risk breakdown, so that an auditor can replay the evaluation later and show
//! it comes out the same.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::guard::{Evaluation, GuardRequest};
use crate::ids::{ActionId, GuardDecisionId};

/// Why the guard was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionPurpose {
    /// `POST /api/guard` (with or without `?record=true`).
    Guard,
    /// `POST /api/actions`: the action is evaluated as it is recorded.
    Action,
    /// An execution claim re-evaluates the recorded request under today's policies.
    Claim,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardDecisionRecord {
    pub decision_id: GuardDecisionId,
    pub request: GuardRequest,
    pub evaluation: Evaluation,
    /// SHA-256 of the canonical policy set that was in force (see `PolicySet::version_hash`).
    pub policy_set_version: String,
    /// Whether the org was halted.
    pub halted: bool,
    pub principal: String,
    pub purpose: DecisionPurpose,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<ActionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub evaluated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardDecision {
    pub record: Option<GuardDecisionRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GuardDecisionCommand {
    Record(Box<GuardDecisionRecord>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum GuardDecisionEvent {
    Recorded(Box<GuardDecisionRecord>),
}

impl DomainEvent for GuardDecisionEvent {
    fn event_type(&self) -> String {
        "GuardDecisionRecorded".to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardDecisionError {
    /// Decision ids are random; a collision means the caller should mint a new one.
    #[error("guard decision already recorded")]
    AlreadyRecorded,
}

impl Aggregate for GuardDecision {
    const TYPE: &'static str = "GuardDecision";
    type Command = GuardDecisionCommand;
    type Event = GuardDecisionEvent;
    type Error = GuardDecisionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: GuardDecisionCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), GuardDecisionError> {
        let GuardDecisionCommand::Record(record) = command;
        if self.record.is_some() {
            return Err(GuardDecisionError::AlreadyRecorded);
        }
        sink.write(GuardDecisionEvent::Recorded(record), self).await;
        Ok(())
    }

    fn apply(&mut self, event: GuardDecisionEvent) {
        let GuardDecisionEvent::Recorded(record) = event;
        self.record = Some(*record);
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::guard::{evaluate, DecisionCounter, GuardContext};

    struct NoHistory;
    impl DecisionCounter for NoHistory {
        fn decisions_since(&self, _: &str, _: DateTime<Utc>) -> u32 {
            0
        }
    }

    fn record() -> GuardDecisionRecord {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap();
        let request = GuardRequest {
            action_type: "deploy".into(),
            ..Default::default()
        };
        let evaluation = evaluate(
            &request,
            &GuardContext {
                policies: &[],
                halt: None,
                counter: &NoHistory,
                operator_grant: None,
                now,
            },
        );
        GuardDecisionRecord {
            decision_id: GuardDecisionId::random([7; 8]),
            request,
            evaluation,
            policy_set_version: "v".into(),
            halted: false,
            principal: "key_agent".into(),
            purpose: DecisionPurpose::Guard,
            action_id: None,
            idempotency_key: None,
            evaluated_at: now,
        }
    }

    #[test]
    fn a_decision_is_recorded_once() {
        let event = GuardDecisionEvent::Recorded(Box::new(record()));
        TestFramework::<GuardDecision>::with(())
            .given_no_previous_events()
            .when(GuardDecisionCommand::Record(Box::new(record())))
            .then_expect_events(vec![event.clone()]);
        TestFramework::<GuardDecision>::with(())
            .given(vec![event])
            .when(GuardDecisionCommand::Record(Box::new(record())))
            .then_expect_error(GuardDecisionError::AlreadyRecorded);
    }

    #[test]
    fn a_recorded_decision_replays_to_the_same_evaluation() {
        let r = record();
        let again = evaluate(
            &r.request,
            &GuardContext {
                policies: &[],
                halt: None,
                counter: &NoHistory,
                operator_grant: None,
                now: r.evaluated_at,
            },
        );
        assert_eq!(again, r.evaluation);
    }
}

//! The GuardDecision aggregate: one immutable record per guard evaluation.
//!
//! It carries the inputs, the policy-set version in force, the verdict, reasons, matched
//! policies and risk breakdown, so that an auditor can replay the evaluation later and show
//! it comes out the same.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::guard::{
    evaluate, DecisionCounter, Evaluation, GuardContext, GuardRequest, Halt, OperatorGrant, Policy,
    ENGINE_VERSION,
};
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
    /// What the engine saw besides the request and the policies, so that the decision can be
    /// replayed exactly. Absent from decisions recorded before it was (they replay with no
    /// rate counts and no operator grant, and say so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<RecordedContext>,
}

/// The inputs of an evaluation that are neither the request nor the policy set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedContext {
    /// [`ENGINE_VERSION`](crate::guard::ENGINE_VERSION) of the engine that evaluated.
    pub engine: String,
    /// The org's halt switch, when it was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt: Option<RecordedHalt>,
    /// Every answer the decision counter gave (rate_limit policies ask it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<CounterAnswer>,
    /// The operator approval that covered an execution claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_grant: Option<RecordedGrant>,
    /// The reviewed plan step that named the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_step: Option<RecordedPlanStep>,
}

/// A plan step as [`crate::guard::PlanStepGrant`] gave it to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedPlanStep {
    pub plan_id: String,
    pub step_id: String,
    pub seq: u32,
    pub approved: bool,
    pub reviewed_by: String,
}

impl RecordedPlanStep {
    pub fn as_grant(&self) -> crate::guard::PlanStepGrant<'_> {
        crate::guard::PlanStepGrant {
            plan_id: &self.plan_id,
            step_id: &self.step_id,
            seq: self.seq,
            approved: self.approved,
            reviewed_by: &self.reviewed_by,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedHalt {
    pub actor: String,
    pub reason: String,
}

/// One question a rate_limit policy asked and the answer it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterAnswer {
    pub agent_id: String,
    pub since: DateTime<Utc>,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedGrant {
    pub action_id: String,
    pub approved_by: String,
}

/// A [`DecisionCounter`] that remembers what it answered, for [`RecordedContext::counts`].
pub struct RecordingCounter<'a> {
    inner: &'a dyn DecisionCounter,
    answers: std::sync::Mutex<Vec<CounterAnswer>>,
}

impl<'a> RecordingCounter<'a> {
    pub fn new(inner: &'a dyn DecisionCounter) -> Self {
        Self {
            inner,
            answers: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// What it was asked and answered, in order.
    pub fn into_answers(self) -> Vec<CounterAnswer> {
        self.answers.into_inner().unwrap_or_default()
    }
}

impl DecisionCounter for RecordingCounter<'_> {
    fn decisions_since(&self, agent_id: &str, since: DateTime<Utc>) -> u32 {
        let count = self.inner.decisions_since(agent_id, since);
        if let Ok(mut answers) = self.answers.lock() {
            answers.push(CounterAnswer {
                agent_id: agent_id.to_owned(),
                since,
                count,
            });
        }
        count
    }
}

/// Answers a replay's counter questions from the recorded answers (0 for a question that
/// was not asked when the decision was made).
struct RecordedCounts<'a>(&'a [CounterAnswer]);

impl DecisionCounter for RecordedCounts<'_> {
    fn decisions_since(&self, agent_id: &str, since: DateTime<Utc>) -> u32 {
        self.0
            .iter()
            .find(|a| a.agent_id == agent_id && a.since == since)
            .map_or(0, |a| a.count)
    }
}

/// One field of an evaluation that came out differently.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// `decision`, `reasons`, `warnings`, `matched_policies`, `risk_score` or `risk_breakdown`.
    pub field: &'static str,
    pub recorded: serde_json::Value,
    pub replayed: serde_json::Value,
}

/// A decision evaluated again.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replay {
    /// The engine that recorded the decision (`None`: recorded before engines were named).
    pub recorded_engine: Option<String>,
    /// This engine.
    pub replay_engine: &'static str,
    pub evaluation: Evaluation,
    /// Empty when the replay came out the same in every field.
    pub differences: Vec<Difference>,
}

impl Replay {
    pub fn identical(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Evaluates `record`'s request again under `policies` (the policy set in force when it was
/// made, which the caller reconstructs) and the recorded context, at the recorded time, and
/// compares every field of the evaluation with the recorded one.
pub fn replay(record: &GuardDecisionRecord, policies: &[Policy]) -> Replay {
    let context = record.context.clone().unwrap_or_default();
    let halt = match (&context.halt, record.halted) {
        (Some(h), _) => Some(Halt {
            actor: &h.actor,
            reason: &h.reason,
        }),
        // Recorded before halts were: the engine's defaults stand in for who and why.
        (None, true) => Some(Halt {
            actor: "",
            reason: "",
        }),
        (None, false) => None,
    };
    let grant = context.operator_grant.as_ref().map(|g| OperatorGrant {
        action_id: &g.action_id,
        approved_by: &g.approved_by,
    });
    let evaluation = evaluate(
        &record.request,
        &GuardContext {
            policies,
            halt,
            counter: &RecordedCounts(&context.counts),
            operator_grant: grant,
            plan_step: context.plan_step.as_ref().map(RecordedPlanStep::as_grant),
            now: record.evaluated_at,
        },
    );
    let differences = differences(&record.evaluation, &evaluation);
    Replay {
        recorded_engine: record.context.as_ref().map(|c| c.engine.clone()),
        replay_engine: ENGINE_VERSION,
        evaluation,
        differences,
    }
}

fn differences(recorded: &Evaluation, replayed: &Evaluation) -> Vec<Difference> {
    fn json<T: Serialize>(v: &T) -> serde_json::Value {
        serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
    }
    let mut out = Vec::new();
    let mut compare = |field, a: serde_json::Value, b: serde_json::Value| {
        if a != b {
            out.push(Difference {
                field,
                recorded: a,
                replayed: b,
            });
        }
    };
    compare(
        "decision",
        json(&recorded.decision),
        json(&replayed.decision),
    );
    compare("reasons", json(&recorded.reasons), json(&replayed.reasons));
    compare(
        "warnings",
        json(&recorded.warnings),
        json(&replayed.warnings),
    );
    compare(
        "matched_policies",
        json(&recorded.matched_policies),
        json(&replayed.matched_policies),
    );
    compare(
        "risk_score",
        json(&recorded.risk_score),
        json(&replayed.risk_score),
    );
    compare(
        "risk_breakdown",
        json(&recorded.risk_breakdown),
        json(&replayed.risk_breakdown),
    );
    out
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

    /// 1: without the recorded context; 2: with it (an added member, so a version-1 reader
    /// that ignores unknown members still reads it, and version 1 decodes as no context);
    /// 3: with a plan step in the context (a version-2 reader would replay it without).
    fn event_version(&self) -> String {
        let Self::Recorded(record) = self;
        match &record.context {
            None => "1",
            Some(c) if c.plan_step.is_some() => "3",
            Some(_) => "2",
        }
        .to_owned()
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
    use crate::guard::GuardContext;

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
                plan_step: None,
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
            context: None,
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
                plan_step: None,
                now: r.evaluated_at,
            },
        );
        assert_eq!(again, r.evaluation);
    }

    #[test]
    fn a_replay_names_every_field_that_differs() {
        let mut r = record();
        assert!(replay(&r, &[]).identical());
        r.evaluation.decision = crate::guard::Verdict::Block;
        r.evaluation.risk_score = 99;
        let again = replay(&r, &[]);
        let fields: Vec<&str> = again.differences.iter().map(|d| d.field).collect();
        assert_eq!(fields, ["decision", "risk_score"]);
        assert_eq!(again.differences[0].recorded, "block");
        assert_eq!(again.differences[0].replayed, "allow");
        assert_eq!(again.recorded_engine, None);
    }

    #[test]
    fn a_rate_limited_decision_replays_from_its_recorded_counts() {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap();
        let policy: Policy = serde_json::from_value(serde_json::json!({
            "id": "gp_1", "name": "three an hour", "policy_type": "rate_limit",
            "rules": {"max_actions": 3, "window_minutes": 60}, "active": true, "agent_ids": null
        }))
        .unwrap();
        struct Busy;
        impl DecisionCounter for Busy {
            fn decisions_since(&self, _: &str, _: DateTime<Utc>) -> u32 {
                5
            }
        }
        let request = GuardRequest {
            action_type: "deploy".into(),
            agent_id: Some("a".into()),
            ..Default::default()
        };
        let counter = RecordingCounter::new(&Busy);
        let evaluation = evaluate(
            &request,
            &GuardContext {
                policies: std::slice::from_ref(&policy),
                halt: None,
                counter: &counter,
                operator_grant: None,
                plan_step: None,
                now,
            },
        );
        assert_ne!(evaluation.decision, crate::guard::Verdict::Allow);
        let counts = counter.into_answers();
        assert_eq!(counts.len(), 1);
        let mut r = record();
        r.request = request;
        r.evaluation = evaluation;
        r.context = Some(RecordedContext {
            engine: ENGINE_VERSION.into(),
            counts,
            ..Default::default()
        });
        assert!(replay(&r, std::slice::from_ref(&policy)).identical());
        // Without the recorded counts the same decision would not come out the same.
        r.context = None;
        assert!(!replay(&r, &[policy]).identical());
    }
}

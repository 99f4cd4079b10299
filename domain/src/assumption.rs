//! The Assumption aggregate: what an agent believed when it acted, later validated or
//! invalidated.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::{ActionId, AssumptionId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssumptionRecord {
    pub assumption_id: AssumptionId,
    pub action_id: ActionId,
    pub assumption: String,
    pub basis: Option<String>,
    pub validated: bool,
    pub invalidated: bool,
    pub invalidated_reason: Option<String>,
    pub validated_at: Option<DateTime<Utc>>,
    pub invalidated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assumption {
    pub record: Option<AssumptionRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AssumptionCommand {
    /// The caller has checked that the parent action exists in the org.
    Register(Box<AssumptionRecord>),
    Validate {
        now: DateTime<Utc>,
    },
    Invalidate {
        reason: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AssumptionEvent {
    Registered(Box<AssumptionRecord>),
    Validated { at: DateTime<Utc> },
    Invalidated { reason: String, at: DateTime<Utc> },
}

impl DomainEvent for AssumptionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Registered(_) => "AssumptionRegistered",
            Self::Validated { .. } => "AssumptionValidated",
            Self::Invalidated { .. } => "AssumptionInvalidated",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssumptionError {
    /// 409.
    #[error("Assumption with this assumption_id already exists")]
    AlreadyExists,
    /// 404.
    #[error("Assumption not found")]
    NotFound,
    /// Invalidation is final: 409.
    #[error("Assumption is already invalidated")]
    AlreadyInvalidated,
}

impl Aggregate for Assumption {
    const TYPE: &'static str = "Assumption";
    type Command = AssumptionCommand;
    type Event = AssumptionEvent;
    type Error = AssumptionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: AssumptionCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), AssumptionError> {
        let event = match (command, &self.record) {
            (AssumptionCommand::Register(record), None) => AssumptionEvent::Registered(record),
            (AssumptionCommand::Register(_), Some(_)) => {
                return Err(AssumptionError::AlreadyExists)
            }
            (_, None) => return Err(AssumptionError::NotFound),
            (_, Some(r)) if r.invalidated => return Err(AssumptionError::AlreadyInvalidated),
            (AssumptionCommand::Validate { now }, Some(_)) => {
                AssumptionEvent::Validated { at: now }
            }
            (AssumptionCommand::Invalidate { reason, now }, Some(_)) => {
                AssumptionEvent::Invalidated { reason, at: now }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: AssumptionEvent) {
        match event {
            AssumptionEvent::Registered(record) => self.record = Some(*record),
            AssumptionEvent::Validated { at } => {
                if let Some(r) = self.record.as_mut() {
                    r.validated = true;
                    r.validated_at = Some(at);
                }
            }
            AssumptionEvent::Invalidated { reason, at } => {
                if let Some(r) = self.record.as_mut() {
                    r.invalidated = true;
                    r.invalidated_reason = Some(reason);
                    r.invalidated_at = Some(at);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap()
    }

    fn registered() -> AssumptionEvent {
        AssumptionEvent::Registered(Box::new(AssumptionRecord {
            assumption_id: AssumptionId::parse("asm_1").unwrap(),
            action_id: ActionId::parse("act_1").unwrap(),
            assumption: "the table is empty".into(),
            basis: None,
            validated: false,
            invalidated: false,
            invalidated_reason: None,
            validated_at: None,
            invalidated_at: None,
            created_at: now(),
        }))
    }

    #[test]
    fn validate_and_invalidate_once() {
        TestFramework::<Assumption>::with(())
            .given(vec![registered()])
            .when(AssumptionCommand::Validate { now: now() })
            .then_expect_events(vec![AssumptionEvent::Validated { at: now() }]);
        let invalidated = AssumptionEvent::Invalidated {
            reason: "3 rows".into(),
            at: now(),
        };
        TestFramework::<Assumption>::with(())
            .given(vec![registered()])
            .when(AssumptionCommand::Invalidate {
                reason: "3 rows".into(),
                now: now(),
            })
            .then_expect_events(vec![invalidated.clone()]);
        TestFramework::<Assumption>::with(())
            .given(vec![registered(), invalidated])
            .when(AssumptionCommand::Validate { now: now() })
            .then_expect_error(AssumptionError::AlreadyInvalidated);
    }

    #[test]
    fn register_once_and_only_known_ones_change() {
        let AssumptionEvent::Registered(record) = registered() else {
            unreachable!()
        };
        TestFramework::<Assumption>::with(())
            .given(vec![registered()])
            .when(AssumptionCommand::Register(record))
            .then_expect_error(AssumptionError::AlreadyExists);
        TestFramework::<Assumption>::with(())
            .given_no_previous_events()
            .when(AssumptionCommand::Validate { now: now() })
            .then_expect_error(AssumptionError::NotFound);
    }
}

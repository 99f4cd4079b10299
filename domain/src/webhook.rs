//! The Webhook aggregate: an org's registration of a URL to receive governance events.
//!
//! Registrations are ledger events so that who subscribed which URL to what, and when it was
//! removed, is on the verifiable chain. The signing secret is **not** in the event (the
//! ledger is readable by every key of the org and handed to auditors, and an immutable event
//! could never be redacted): only its SHA-256 is, and the secret itself is kept beside the
//! ledger (ADR 0004).

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::WebhookId;

/// Subscribes to every event type.
pub const ALL: &str = "all";

/// The event types the server delivers (each is produced from ledger events).
pub const DELIVERED: &[&str] = &[
    "action.created",
    "decision.created",
    "signal.detected",
    "approval_pending",
    "approval_granted",
    "approval_denied",
    "approval_expired",
    "lost_confirmation",
    "assumption_drift",
];

/// Names a registration may subscribe to: `all`, the delivered types, and the DashClaw signal
/// names the contract accepts but that are computed signals, not ledger events, and so are
/// not delivered yet (accepted so that SDK registrations do not fail).
pub const ACCEPTED_ONLY: &[&str] = &[
    "autonomy_spike",
    "high_impact_low_oversight",
    "repeated_failures",
    "stale_loop",
    "stale_assumption",
    "stale_running_action",
    "drift_alert",
];

/// Whether `name` may appear in a registration's `events`.
pub fn is_known_event(name: &str) -> bool {
    name == ALL || DELIVERED.contains(&name) || ACCEPTED_ONLY.contains(&name)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub id: WebhookId,
    pub url: String,
    /// Subscribed event types (`["all"]` for every type).
    pub events: Vec<String>,
    /// Hex SHA-256 of the signing secret; the secret is stored beside the ledger.
    pub secret_sha256: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
}

impl WebhookRecord {
    /// Whether an event of type `event_type` goes to this webhook.
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.deleted_at.is_none() && self.events.iter().any(|e| e == ALL || e == event_type)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub record: Option<WebhookRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookCommand {
    Register(Box<WebhookRecord>),
    Delete { by: String, now: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WebhookEvent {
    Registered(Box<WebhookRecord>),
    Deleted {
        deleted_by: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for WebhookEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Registered(_) => "WebhookRegistered",
            Self::Deleted { .. } => "WebhookDeleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The id is taken: mint another.
    #[error("webhook already registered")]
    AlreadyRegistered,
    /// No such webhook: answer 404.
    #[error("webhook not found")]
    NotFound,
    /// Deleted before: answer 404 (it no longer exists for the caller).
    #[error("webhook already deleted")]
    AlreadyDeleted,
}

impl Aggregate for Webhook {
    const TYPE: &'static str = "Webhook";
    type Command = WebhookCommand;
    type Event = WebhookEvent;
    type Error = WebhookError;
    type Services = ();

    async fn handle(
        &mut self,
        command: WebhookCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), WebhookError> {
        let event = match (command, &self.record) {
            (WebhookCommand::Register(record), None) => WebhookEvent::Registered(record),
            (WebhookCommand::Register(_), Some(_)) => return Err(WebhookError::AlreadyRegistered),
            (WebhookCommand::Delete { .. }, None) => return Err(WebhookError::NotFound),
            (WebhookCommand::Delete { .. }, Some(r)) if r.deleted_at.is_some() => {
                return Err(WebhookError::AlreadyDeleted)
            }
            (WebhookCommand::Delete { by, now }, Some(_)) => WebhookEvent::Deleted {
                deleted_by: by,
                at: now,
            },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: WebhookEvent) {
        match event {
            WebhookEvent::Registered(record) => self.record = Some(*record),
            WebhookEvent::Deleted { at, .. } => {
                if let Some(r) = self.record.as_mut() {
                    r.deleted_at = Some(at);
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

    fn record() -> Box<WebhookRecord> {
        Box::new(WebhookRecord {
            id: WebhookId::random([7; 16]),
            url: "https://hooks.example.com/dashclaw".into(),
            events: vec![ALL.into()],
            secret_sha256: "ab".repeat(32),
            created_by: "key_1".into(),
            created_at: now(),
            deleted_at: None,
        })
    }

    type Fw = TestFramework<Webhook>;

    #[test]
    fn register_then_delete() {
        Fw::with(())
            .given_no_previous_events()
            .when(WebhookCommand::Register(record()))
            .then_expect_events(vec![WebhookEvent::Registered(record())]);
        Fw::with(())
            .given(vec![WebhookEvent::Registered(record())])
            .when(WebhookCommand::Delete {
                by: "key_1".into(),
                now: now(),
            })
            .then_expect_events(vec![WebhookEvent::Deleted {
                deleted_by: "key_1".into(),
                at: now(),
            }]);
    }

    #[test]
    fn refusals() {
        Fw::with(())
            .given(vec![WebhookEvent::Registered(record())])
            .when(WebhookCommand::Register(record()))
            .then_expect_error(WebhookError::AlreadyRegistered);
        Fw::with(())
            .given_no_previous_events()
            .when(WebhookCommand::Delete {
                by: "k".into(),
                now: now(),
            })
            .then_expect_error(WebhookError::NotFound);
        Fw::with(())
            .given(vec![
                WebhookEvent::Registered(record()),
                WebhookEvent::Deleted {
                    deleted_by: "k".into(),
                    at: now(),
                },
            ])
            .when(WebhookCommand::Delete {
                by: "k".into(),
                now: now(),
            })
            .then_expect_error(WebhookError::AlreadyDeleted);
    }

    #[test]
    fn subscriptions() {
        let mut r = *record();
        assert!(r.subscribes_to("approval_granted"));
        r.events = vec!["approval_granted".into()];
        assert!(r.subscribes_to("approval_granted"));
        assert!(!r.subscribes_to("action.created"));
        r.deleted_at = Some(now());
        assert!(!r.subscribes_to("approval_granted"));
        assert!(is_known_event("signal.detected") && is_known_event("stale_loop"));
        assert!(!is_known_event("nope"));
    }
}

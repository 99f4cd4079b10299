//! Agent identities (contract 1.6 and 17): the public key an agent signs its identity tokens
//! with, registered by an admin ([`AgentIdentity`], one stream per agent id) or through a
//! pairing the agent requests and an admin approves within 15 minutes ([`Pairing`]).

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::PairingId;

/// How long a pairing request waits for an admin.
pub const PAIRING_TTL: Duration = Duration::minutes(15);

/// The signature algorithms an identity key may be for (WebCrypto names, as the SDK sends
/// them, and their JOSE names).
pub const ALGORITHMS: &[&str] = &[
    "RSASSA-PKCS1-v1_5",
    "RS256",
    "ECDSA",
    "ES256",
    "Ed25519",
    "EdDSA",
];

/// The stream of an agent's identity.
pub fn identity_entity(agent_id: &str) -> String {
    format!("agent:{agent_id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityRecord {
    pub agent_id: String,
    /// SPKI PEM.
    pub public_key: String,
    pub algorithm: String,
    pub registered_by: String,
    /// `admin`, or the pairing that registered it.
    pub via: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentIdentity {
    pub record: Option<IdentityRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IdentityCommand {
    /// Registers the agent's key, replacing any earlier one.
    Register {
        agent_id: String,
        public_key: String,
        algorithm: String,
        by: String,
        via: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum IdentityEvent {
    KeyRegistered {
        agent_id: String,
        public_key: String,
        algorithm: String,
        registered_by: String,
        via: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for IdentityEvent {
    fn event_type(&self) -> String {
        "AgentKeyRegistered".to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The same key is registered already: nothing to record.
    #[error("This key is already registered for the agent")]
    Unchanged,
}

impl Aggregate for AgentIdentity {
    const TYPE: &'static str = "AgentIdentity";
    type Command = IdentityCommand;
    type Event = IdentityEvent;
    type Error = IdentityError;
    type Services = ();

    async fn handle(
        &mut self,
        command: IdentityCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), IdentityError> {
        let IdentityCommand::Register {
            agent_id,
            public_key,
            algorithm,
            by,
            via,
            now,
        } = command;
        if self
            .record
            .as_ref()
            .is_some_and(|r| r.public_key == public_key && r.algorithm == algorithm)
        {
            return Err(IdentityError::Unchanged);
        }
        let event = IdentityEvent::KeyRegistered {
            agent_id,
            public_key,
            algorithm,
            registered_by: by,
            via,
            at: now,
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: IdentityEvent) {
        let IdentityEvent::KeyRegistered {
            agent_id,
            public_key,
            algorithm,
            registered_by,
            via,
            at,
        } = event;
        let created_at = self.record.as_ref().map_or(at, |r| r.created_at);
        self.record = Some(IdentityRecord {
            agent_id,
            public_key,
            algorithm,
            registered_by,
            via,
            created_at,
            updated_at: at,
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairingStatus {
    Pending,
    Approved,
    Expired,
}

impl PairingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairingRecord {
    pub pairing_id: PairingId,
    pub agent_id: String,
    pub agent_name: Option<String>,
    pub public_key: String,
    pub algorithm: String,
    /// Pending or approved as recorded; see [`PairingRecord::status_at`].
    pub status: PairingStatus,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub approved_by: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
}

impl PairingRecord {
    /// A pending pairing past its 15 minutes is expired.
    pub fn status_at(&self, now: DateTime<Utc>) -> PairingStatus {
        match self.status {
            PairingStatus::Pending if now >= self.expires_at => PairingStatus::Expired,
            s => s,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pairing {
    pub record: Option<PairingRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PairingCommand {
    Request(Box<PairingRecord>),
    Approve { by: String, now: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PairingEvent {
    Requested(Box<PairingRecord>),
    Approved {
        approved_by: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for PairingEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Requested(_) => "PairingRequested",
            Self::Approved { .. } => "PairingApproved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    #[error("Pairing already exists")]
    AlreadyExists,
    #[error("Pairing not found")]
    NotFound,
    #[error("Pairing expired")]
    Expired,
    #[error("Pairing is already approved")]
    AlreadyApproved,
}

impl Aggregate for Pairing {
    const TYPE: &'static str = "Pairing";
    type Command = PairingCommand;
    type Event = PairingEvent;
    type Error = PairingError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PairingCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PairingError> {
        let event = match (command, &self.record) {
            (PairingCommand::Request(r), None) => PairingEvent::Requested(r),
            (PairingCommand::Request(_), Some(_)) => return Err(PairingError::AlreadyExists),
            (PairingCommand::Approve { .. }, None) => return Err(PairingError::NotFound),
            (PairingCommand::Approve { by, now }, Some(r)) => match r.status_at(now) {
                PairingStatus::Pending => PairingEvent::Approved {
                    approved_by: by,
                    at: now,
                },
                PairingStatus::Approved => return Err(PairingError::AlreadyApproved),
                PairingStatus::Expired => return Err(PairingError::Expired),
            },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: PairingEvent) {
        match event {
            PairingEvent::Requested(r) => self.record = Some(*r),
            PairingEvent::Approved { approved_by, at } => {
                if let Some(r) = self.record.as_mut() {
                    r.status = PairingStatus::Approved;
                    r.approved_by = Some(approved_by);
                    r.approved_at = Some(at);
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

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap()
    }

    fn requested() -> PairingEvent {
        PairingEvent::Requested(Box::new(PairingRecord {
            pairing_id: PairingId::parse("pair_00").unwrap(),
            agent_id: "a".into(),
            agent_name: None,
            public_key: "PEM".into(),
            algorithm: "RSASSA-PKCS1-v1_5".into(),
            status: PairingStatus::Pending,
            requested_by: "key_agent".into(),
            created_at: t0(),
            expires_at: t0() + PAIRING_TTL,
            approved_by: None,
            approved_at: None,
        }))
    }

    #[test]
    fn a_pairing_is_approved_once_within_its_ttl() {
        let approve = |now| PairingCommand::Approve {
            by: "key_admin".into(),
            now,
        };
        let approved = PairingEvent::Approved {
            approved_by: "key_admin".into(),
            at: t0(),
        };
        TestFramework::<Pairing>::with(())
            .given(vec![requested()])
            .when(approve(t0()))
            .then_expect_events(vec![approved.clone()]);
        TestFramework::<Pairing>::with(())
            .given(vec![requested(), approved])
            .when(approve(t0()))
            .then_expect_error(PairingError::AlreadyApproved);
        TestFramework::<Pairing>::with(())
            .given(vec![requested()])
            .when(approve(t0() + PAIRING_TTL))
            .then_expect_error(PairingError::Expired);
        TestFramework::<Pairing>::with(())
            .given_no_previous_events()
            .when(approve(t0()))
            .then_expect_error(PairingError::NotFound);
    }

    #[test]
    fn a_key_is_registered_and_replaced_but_not_twice_the_same() {
        let register = |key: &str| IdentityCommand::Register {
            agent_id: "a".into(),
            public_key: key.into(),
            algorithm: "Ed25519".into(),
            by: "key_admin".into(),
            via: "admin".into(),
            now: t0(),
        };
        let registered = |key: &str| IdentityEvent::KeyRegistered {
            agent_id: "a".into(),
            public_key: key.into(),
            algorithm: "Ed25519".into(),
            registered_by: "key_admin".into(),
            via: "admin".into(),
            at: t0(),
        };
        TestFramework::<AgentIdentity>::with(())
            .given_no_previous_events()
            .when(register("k1"))
            .then_expect_events(vec![registered("k1")]);
        TestFramework::<AgentIdentity>::with(())
            .given(vec![registered("k1")])
            .when(register("k2"))
            .then_expect_events(vec![registered("k2")]);
        TestFramework::<AgentIdentity>::with(())
            .given(vec![registered("k1")])
            .when(register("k1"))
            .then_expect_error(IdentityError::Unchanged);
    }
}

//! The ApiKey aggregate: tenant credentials, stored as a SHA-256 hash, with a role.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::ApiKeyId;

/// What a key may do: admin (everything, incl. approvals and policies), member (the agent
/// loop), readonly (GET only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
    Readonly,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Readonly => "readonly",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            "readonly" => Some(Self::Readonly),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    /// Hex SHA-256 of the key; the key itself is shown once and never stored.
    pub key_hash: String,
    pub role: Role,
    pub name: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub record: Option<ApiKeyRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApiKeyCommand {
    Issue(Box<ApiKeyRecord>),
    Revoke { now: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ApiKeyEvent {
    Issued(Box<ApiKeyRecord>),
    Revoked { at: DateTime<Utc> },
}

impl DomainEvent for ApiKeyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Issued(_) => "ApiKeyIssued",
            Self::Revoked { .. } => "ApiKeyRevoked",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error("API key already issued")]
    AlreadyIssued,
    #[error("API key not found")]
    NotFound,
    #[error("API key already revoked")]
    AlreadyRevoked,
}

impl Aggregate for ApiKey {
    const TYPE: &'static str = "ApiKey";
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = ApiKeyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ApiKeyCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ApiKeyError> {
        let event = match (command, &self.record) {
            (ApiKeyCommand::Issue(record), None) => ApiKeyEvent::Issued(record),
            (ApiKeyCommand::Issue(_), Some(_)) => return Err(ApiKeyError::AlreadyIssued),
            (ApiKeyCommand::Revoke { .. }, None) => return Err(ApiKeyError::NotFound),
            (ApiKeyCommand::Revoke { .. }, Some(r)) if r.revoked_at.is_some() => {
                return Err(ApiKeyError::AlreadyRevoked)
            }
            (ApiKeyCommand::Revoke { now }, Some(_)) => ApiKeyEvent::Revoked { at: now },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: ApiKeyEvent) {
        match event {
            ApiKeyEvent::Issued(record) => self.record = Some(*record),
            ApiKeyEvent::Revoked { at } => {
                if let Some(r) = self.record.as_mut() {
                    r.revoked_at = Some(at);
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

    fn record() -> Box<ApiKeyRecord> {
        Box::new(ApiKeyRecord {
            id: ApiKeyId::parse("key_1").unwrap(),
            key_hash: "ab".repeat(32),
            role: Role::Member,
            name: "agent".into(),
            created_by: "cli".into(),
            created_at: now(),
            revoked_at: None,
        })
    }

    #[test]
    fn issue_then_revoke_once() {
        TestFramework::<ApiKey>::with(())
            .given_no_previous_events()
            .when(ApiKeyCommand::Issue(record()))
            .then_expect_events(vec![ApiKeyEvent::Issued(record())]);
        TestFramework::<ApiKey>::with(())
            .given(vec![ApiKeyEvent::Issued(record())])
            .when(ApiKeyCommand::Revoke { now: now() })
            .then_expect_events(vec![ApiKeyEvent::Revoked { at: now() }]);
        TestFramework::<ApiKey>::with(())
            .given(vec![
                ApiKeyEvent::Issued(record()),
                ApiKeyEvent::Revoked { at: now() },
            ])
            .when(ApiKeyCommand::Revoke { now: now() })
            .then_expect_error(ApiKeyError::AlreadyRevoked);
        TestFramework::<ApiKey>::with(())
            .given(vec![ApiKeyEvent::Issued(record())])
            .when(ApiKeyCommand::Issue(record()))
            .then_expect_error(ApiKeyError::AlreadyIssued);
        TestFramework::<ApiKey>::with(())
            .given_no_previous_events()
            .when(ApiKeyCommand::Revoke { now: now() })
            .then_expect_error(ApiKeyError::NotFound);
    }

    #[test]
    fn roles_round_trip() {
        for role in [Role::Admin, Role::Member, Role::Readonly] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}

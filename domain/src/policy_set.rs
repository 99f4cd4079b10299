//! The PolicySet aggregate: an org's guard policies, versioned by the stream sequence.
//!
//! One stream per org, so the guard reads one consistent set and every change is an event
//! that invalidates every node's cache (they watch the ledger).

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::guard::{validate_policy, Policy};

/// The entity id of an org's policy-set stream.
pub const POLICY_SET_ID: &str = "policy-set";

/// A policy as stored, with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub policy: Policy,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicySet {
    /// In creation order.
    pub policies: Vec<StoredPolicy>,
}

impl PolicySet {
    /// The policies as the guard engine takes them.
    pub fn policies(&self) -> Vec<Policy> {
        self.policies.iter().map(|p| p.policy.clone()).collect()
    }

    pub fn get(&self, id: &str) -> Option<&StoredPolicy> {
        self.policies.iter().find(|p| p.policy.id == id)
    }

    /// SHA-256 (hex) over the JSON of the policies in force: recorded with every guard
    /// decision so a replay can tell whether it runs under the same rules.
    pub fn version_hash(&self) -> String {
        let json = serde_json::to_vec(&self.policies()).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }
}

/// Changes to one policy; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyChanges {
    pub name: Option<String>,
    pub policy_type: Option<String>,
    pub rules: Option<Value>,
    pub active: Option<bool>,
    /// `Some(None)` clears the agent scope.
    pub agent_ids: Option<Option<Vec<String>>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PolicySetCommand {
    Create {
        policy: Policy,
        by: String,
        now: DateTime<Utc>,
    },
    Update {
        id: String,
        changes: PolicyChanges,
        now: DateTime<Utc>,
    },
    Delete {
        ids: Vec<String>,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PolicySetEvent {
    Created(StoredPolicy),
    Updated { policy: Policy, at: DateTime<Utc> },
    Deleted { ids: Vec<String>, at: DateTime<Utc> },
}

impl DomainEvent for PolicySetEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Created(_) => "PolicyCreated",
            Self::Updated { .. } => "PolicyUpdated",
            Self::Deleted { .. } => "PolicyDeleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicySetError {
    /// Names are unique per org: 409.
    #[error("A policy with that name already exists")]
    DuplicateName,
    /// 404.
    #[error("Policy not found")]
    NotFound,
    /// The rules do not fit the policy type: 400 with these details.
    #[error("Validation failed")]
    Invalid(Vec<String>),
}

impl Aggregate for PolicySet {
    const TYPE: &'static str = "PolicySet";
    type Command = PolicySetCommand;
    type Event = PolicySetEvent;
    type Error = PolicySetError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PolicySetCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PolicySetError> {
        let event = match command {
            PolicySetCommand::Create { policy, by, now } => {
                if self.policies.iter().any(|p| p.policy.name == policy.name) {
                    return Err(PolicySetError::DuplicateName);
                }
                validate_policy(&policy.policy_type, &policy.rules)
                    .map_err(PolicySetError::Invalid)?;
                PolicySetEvent::Created(StoredPolicy {
                    policy,
                    created_by: by,
                    created_at: now,
                    updated_at: now,
                })
            }
            PolicySetCommand::Update { id, changes, now } => {
                let mut policy = self
                    .get(&id)
                    .ok_or(PolicySetError::NotFound)?
                    .policy
                    .clone();
                if let Some(name) = changes.name {
                    if self
                        .policies
                        .iter()
                        .any(|p| p.policy.name == name && p.policy.id != id)
                    {
                        return Err(PolicySetError::DuplicateName);
                    }
                    policy.name = name;
                }
                if let Some(t) = changes.policy_type {
                    policy.policy_type = t;
                }
                if let Some(rules) = changes.rules {
                    policy.rules = rules;
                }
                if let Some(active) = changes.active {
                    policy.active = active;
                }
                if let Some(agent_ids) = changes.agent_ids {
                    policy.agent_ids = agent_ids;
                }
                validate_policy(&policy.policy_type, &policy.rules)
                    .map_err(PolicySetError::Invalid)?;
                PolicySetEvent::Updated { policy, at: now }
            }
            PolicySetCommand::Delete { ids, now } => {
                if ids.is_empty() || ids.iter().any(|id| self.get(id).is_none()) {
                    return Err(PolicySetError::NotFound);
                }
                PolicySetEvent::Deleted { ids, at: now }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: PolicySetEvent) {
        match event {
            PolicySetEvent::Created(stored) => self.policies.push(stored),
            PolicySetEvent::Updated { policy, at } => {
                if let Some(stored) = self.policies.iter_mut().find(|p| p.policy.id == policy.id) {
                    stored.policy = policy;
                    stored.updated_at = at;
                }
            }
            PolicySetEvent::Deleted { ids, .. } => {
                self.policies.retain(|p| !ids.contains(&p.policy.id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use cqrs_es::test::TestFramework;
    use serde_json::json;

    use super::*;

    fn policy(id: &str, name: &str) -> Policy {
        Policy {
            id: id.into(),
            name: name.into(),
            policy_type: "block_action_type".into(),
            rules: json!({"action_types": ["rm"]}),
            active: true,
            agent_ids: None,
        }
    }

    fn created(id: &str, name: &str) -> PolicySetEvent {
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap();
        PolicySetEvent::Created(StoredPolicy {
            policy: policy(id, name),
            created_by: "key_admin".into(),
            created_at: at,
            updated_at: at,
        })
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap()
    }

    #[test]
    fn create_update_delete() {
        TestFramework::<PolicySet>::with(())
            .given_no_previous_events()
            .when(PolicySetCommand::Create {
                policy: policy("gp_1", "no rm"),
                by: "key_admin".into(),
                now: now(),
            })
            .then_expect_events(vec![created("gp_1", "no rm")]);
        let mut changed = policy("gp_1", "no rm");
        changed.active = false;
        TestFramework::<PolicySet>::with(())
            .given(vec![created("gp_1", "no rm")])
            .when(PolicySetCommand::Update {
                id: "gp_1".into(),
                changes: PolicyChanges {
                    active: Some(false),
                    ..Default::default()
                },
                now: now(),
            })
            .then_expect_events(vec![PolicySetEvent::Updated {
                policy: changed,
                at: now(),
            }]);
        TestFramework::<PolicySet>::with(())
            .given(vec![created("gp_1", "no rm")])
            .when(PolicySetCommand::Delete {
                ids: vec!["gp_1".into()],
                now: now(),
            })
            .then_expect_events(vec![PolicySetEvent::Deleted {
                ids: vec!["gp_1".into()],
                at: now(),
            }]);
    }

    #[test]
    fn refusals() {
        TestFramework::<PolicySet>::with(())
            .given(vec![created("gp_1", "no rm")])
            .when(PolicySetCommand::Create {
                policy: policy("gp_2", "no rm"),
                by: "key_admin".into(),
                now: now(),
            })
            .then_expect_error(PolicySetError::DuplicateName);
        TestFramework::<PolicySet>::with(())
            .given_no_previous_events()
            .when(PolicySetCommand::Delete {
                ids: vec!["gp_9".into()],
                now: now(),
            })
            .then_expect_error(PolicySetError::NotFound);
        let mut bad = policy("gp_3", "bad");
        bad.policy_type = "risk_threshold".into();
        bad.rules = json!({"threshold": 150});
        let refused = TestFramework::<PolicySet>::with(())
            .given_no_previous_events()
            .when(PolicySetCommand::Create {
                policy: bad,
                by: "key_admin".into(),
                now: now(),
            })
            .inspect_result();
        assert!(matches!(refused, Err(PolicySetError::Invalid(_))));
    }

    #[test]
    fn the_version_hash_follows_the_policies() {
        let mut set = PolicySet::default();
        let empty = set.version_hash();
        set.apply(created("gp_1", "no rm"));
        assert_ne!(set.version_hash(), empty);
        set.apply(PolicySetEvent::Deleted {
            ids: vec!["gp_1".into()],
            at: now(),
        });
        assert_eq!(set.version_hash(), empty);
    }
}

//! Guard policies: list, create, update, delete. Every change is a `PolicySet` event; every
//! node drops its cached policies when its ledger tail sees it, this one at once. The limits
//! on names, types, rules and agent scopes are checked here, so every transport refuses the
//! same input with the same message.

use chrono::{DateTime, Duration, Utc};
use dashclaw_domain::guard::Policy;
use dashclaw_domain::ids::PolicyId;
use dashclaw_domain::policy_set::{
    PolicyChanges, PolicySet, PolicySetCommand, PolicySetError, StoredPolicy, POLICY_SET_ID,
};
use serde_json::{json, Value};

use super::aggregates::{Actor, CommandError};
use super::{random, Caller, Error, ErrorCode, Service};

/// How long an `allow_grant` lasts when its rules name no `expires_at`.
const DEFAULT_GRANT_TTL: Duration = Duration::days(7);
/// The longest policy name.
pub const NAME_MAX: usize = 256;
/// The longest policy type.
pub const TYPE_MAX: usize = 64;
/// The longest rules, stringified.
pub const RULES_MAX: usize = 4000;
/// The most agents a policy may be scoped to.
pub const AGENT_IDS_MAX: usize = 100;

/// A policy to add.
#[derive(Clone, Debug)]
pub struct NewPolicy {
    pub name: String,
    pub policy_type: String,
    pub rules: Value,
    pub active: bool,
    /// `None`: org-wide.
    pub agent_ids: Option<Vec<String>>,
}

/// What is wrong with a text field of at most `max` characters, if anything.
pub fn text_problem(field: &str, value: &str, max: usize) -> Option<String> {
    if value.is_empty() {
        Some(format!("{field} cannot be empty"))
    } else if value.chars().count() > max {
        Some(format!("{field} exceeds max length of {max}"))
    } else {
        None
    }
}

/// What is wrong with a policy's rules, if anything: an object of bounded size.
pub fn rules_problem(rules: &Value) -> Option<String> {
    if !rules.is_object() {
        return Some("rules must be an object".into());
    }
    let length = serde_json::to_string(rules).map(|s| s.len()).unwrap_or(0);
    (length > RULES_MAX).then(|| format!("rules exceeds max length of {RULES_MAX}"))
}

/// What is wrong with an agent scope, if anything.
pub fn agent_ids_problem(ids: &[String]) -> Option<String> {
    (ids.len() > AGENT_IDS_MAX).then(|| "agent_ids must be an array of strings".into())
}

impl NewPolicy {
    /// Every problem, in field order (empty: valid).
    pub fn problems(&self) -> Vec<String> {
        [
            text_problem("name", &self.name, NAME_MAX),
            text_problem("policy_type", &self.policy_type, TYPE_MAX),
            rules_problem(&self.rules),
            self.agent_ids.as_deref().and_then(agent_ids_problem),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Every problem of a change (empty: valid).
pub fn changes_problems(changes: &PolicyChanges) -> Vec<String> {
    [
        changes
            .name
            .as_deref()
            .and_then(|n| text_problem("name", n, NAME_MAX)),
        changes
            .policy_type
            .as_deref()
            .and_then(|t| text_problem("policy_type", t, TYPE_MAX)),
        changes.rules.as_ref().and_then(rules_problem),
        changes
            .agent_ids
            .as_ref()
            .and_then(|ids| ids.as_deref().and_then(agent_ids_problem)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn refuse_problems(problems: Vec<String>) -> Result<(), Error> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::validation(problems))
    }
}

/// Stamps a default expiry on grants that have none.
fn stamp_grant(policy_type: &str, rules: &mut Value, now: DateTime<Utc>) {
    if policy_type == "allow_grant" {
        if let Value::Object(m) = rules {
            if !m.contains_key("expires_at") {
                let expires =
                    (now + DEFAULT_GRANT_TTL).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                m.insert("expires_at".into(), json!(expires));
            }
        }
    }
}

impl Service {
    /// The org's policies, newest first; only those that apply to `agent_id` if given.
    pub async fn policies(
        &self,
        caller: &Caller,
        agent_id: Option<&str>,
    ) -> Result<Vec<StoredPolicy>, Error> {
        let set: PolicySet = self.aggregates().load(&caller.org, POLICY_SET_ID).await?;
        Ok(set
            .policies
            .into_iter()
            .rev()
            .filter(|p| agent_id.is_none() || p.policy.applies_to(agent_id))
            .collect())
    }

    /// The org's active policies that apply to `agent_id` (all of them when `None`), in
    /// the order the guard evaluates them.
    pub async fn active_policies(
        &self,
        caller: &Caller,
        agent_id: Option<&str>,
    ) -> Result<Vec<Policy>, Error> {
        let view = self
            .tail()
            .views()
            .get(self.aggregates(), &caller.org)
            .await?;
        Ok(view
            .policies
            .iter()
            .filter(|p| p.active && p.applies_to(agent_id))
            .cloned()
            .collect())
    }

    /// Adds a policy (admin); an `allow_grant` without `expires_at` gets the default
    /// lifetime.
    pub async fn create_policy(
        &self,
        caller: &Caller,
        new: NewPolicy,
    ) -> Result<StoredPolicy, Error> {
        caller.require_admin("Admin access required")?;
        refuse_problems(new.problems())?;
        let now = self.clock().now();
        let mut rules = new.rules;
        stamp_grant(&new.policy_type, &mut rules, now);
        let policy = Policy {
            id: PolicyId::random(random()?).to_string(),
            name: new.name,
            policy_type: new.policy_type,
            rules,
            active: new.active,
            agent_ids: new.agent_ids.filter(|ids| !ids.is_empty()),
        };
        let id = policy.id.clone();
        let by = caller.principal.clone();
        let set = self
            .change_policies(caller, PolicySetCommand::Create { policy, by, now })
            .await?;
        set.get(&id)
            .cloned()
            .ok_or_else(|| Error::internal("created policy missing"))
    }

    /// Changes a policy (admin).
    pub async fn update_policy(
        &self,
        caller: &Caller,
        id: &str,
        changes: PolicyChanges,
    ) -> Result<StoredPolicy, Error> {
        caller.require_admin("Admin access required")?;
        refuse_problems(changes_problems(&changes))?;
        let command = PolicySetCommand::Update {
            id: id.to_owned(),
            changes,
            now: self.clock().now(),
        };
        let set = self.change_policies(caller, command).await?;
        set.get(id)
            .cloned()
            .ok_or_else(|| Error::new(ErrorCode::NotFound, "Policy not found"))
    }

    /// Removes policies (admin); all or none.
    pub async fn delete_policies(&self, caller: &Caller, ids: Vec<String>) -> Result<(), Error> {
        caller.require_admin("Admin access required")?;
        if ids.is_empty() {
            return Err(Error::validation(vec!["id is required".into()]));
        }
        let now = self.clock().now();
        self.change_policies(caller, PolicySetCommand::Delete { ids, now })
            .await
            .map(drop)
    }

    async fn change_policies(
        &self,
        caller: &Caller,
        command: PolicySetCommand,
    ) -> Result<PolicySet, Error> {
        let actor = Actor::of(&caller.principal, None);
        let result = self
            .aggregates()
            .execute::<PolicySet>(&caller.org, POLICY_SET_ID, command, &actor)
            .await;
        // This node sees its own change at once; others when the ledger tail reaches it.
        self.tail().views().invalidate(&caller.org);
        match result {
            Ok(set) => Ok(set),
            Err(CommandError::Rejected(PolicySetError::DuplicateName)) => Err(Error::new(
                ErrorCode::Conflict,
                "A policy with that name already exists",
            )),
            Err(CommandError::Rejected(PolicySetError::NotFound)) => {
                Err(Error::new(ErrorCode::NotFound, "Policy not found"))
            }
            Err(CommandError::Rejected(PolicySetError::Invalid(details))) => {
                Err(Error::validation(details))
            }
            Err(CommandError::Failed(e)) => Err(e),
        }
    }
}

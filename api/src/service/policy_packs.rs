//! Policy packs (contract 9.3): named sets of policies shipped with the binary
//! (`api/packs/*.yml`), or a pack's text in the request (YAML, or JSON, which is YAML), imported
//! into the org's policy set. Importing is idempotent: a policy whose name the org already has
//! is skipped; a policy that does not validate is reported and the others still import.
//!
//! A pack: `{version, project, description, policies: [{id, description, policy_type, rules,
//! tests?: [{name, input, expect: {decision}}], agent_ids?, active?}]}`. A policy's name is
//! its `description`, else its `id`; its `tests` become `rules.tests`, the recipes
//! `POST /api/policies/test` and the proof report run.

use std::collections::HashSet;

use dashclaw_domain::guard::validate_policy;
use dashclaw_domain::policy_set::StoredPolicy;
use serde::Deserialize;
use serde_json::Value;

use super::policies::NewPolicy;
use super::{Caller, Error, ErrorCode, Service};

/// The packs shipped with the binary, by id.
pub const PACKS: &[(&str, &str)] = &[
    (
        "catastrophe-only",
        include_str!("../../packs/catastrophe-only.yml"),
    ),
    (
        "claude-code-starter",
        include_str!("../../packs/claude-code-starter.yml"),
    ),
    (
        "data-protection",
        include_str!("../../packs/data-protection.yml"),
    ),
    (
        "prod-infra-shield",
        include_str!("../../packs/prod-infra-shield.yml"),
    ),
    (
        "read-only-analyst",
        include_str!("../../packs/read-only-analyst.yml"),
    ),
    (
        "spend-lockdown",
        include_str!("../../packs/spend-lockdown.yml"),
    ),
];

/// The most policies one import may hold.
pub const MAX_PACK_POLICIES: usize = 50;
/// The longest pack text accepted.
pub const MAX_PACK_BYTES: usize = 256 * 1024;

/// Where the policies come from.
#[derive(Clone, Debug)]
pub enum PackSource {
    /// A pack shipped with the binary.
    Named(String),
    /// A pack's text (YAML or JSON).
    Text(String),
}

#[derive(Debug, Deserialize)]
struct PackFile {
    #[serde(default)]
    policies: Vec<PackPolicy>,
}

#[derive(Debug, Deserialize)]
struct PackPolicy {
    id: Option<String>,
    name: Option<String>,
    description: Option<String>,
    policy_type: String,
    #[serde(default)]
    rules: Value,
    #[serde(default)]
    tests: Option<Vec<Value>>,
    #[serde(default)]
    agent_ids: Option<Vec<String>>,
    #[serde(default)]
    active: Option<bool>,
}

/// One policy of a pack as an import sees it.
#[derive(Clone, Debug)]
pub struct PackEntry {
    pub name: String,
    pub policy_type: String,
    pub rules: Value,
    /// Why it would not import: its name is taken, or it does not validate.
    pub conflict: Option<String>,
    new: Option<NewPolicy>,
}

/// What an import did.
#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    pub imported: Vec<StoredPolicy>,
    /// Names already in the org's set.
    pub skipped: Vec<String>,
    /// Policies that did not validate, each `<name>: <problems>`.
    pub errors: Vec<String>,
}

fn pack_text(source: &PackSource) -> Result<&str, Error> {
    match source {
        PackSource::Named(id) => PACKS
            .iter()
            .find(|(name, _)| name == id)
            .map(|(_, text)| *text)
            .ok_or_else(|| {
                let ids: Vec<&str> = PACKS.iter().map(|(id, _)| *id).collect();
                Error::bad_request(format!("Invalid pack. Choose from: {}", ids.join(", ")))
            }),
        PackSource::Text(text) if text.len() > MAX_PACK_BYTES => Err(Error::bad_request(format!(
            "yaml exceeds {MAX_PACK_BYTES} bytes"
        ))),
        PackSource::Text(text) => Ok(text),
    }
}

/// The policies of a pack, each checked against the org's names and the validation rules.
fn entries(text: &str, taken: &HashSet<String>) -> Result<Vec<PackEntry>, Error> {
    let pack: PackFile = serde_yaml_ng::from_str(text).map_err(|e| {
        Error::new(ErrorCode::ValidationFailed, "Invalid pack")
            .with_details(vec![format!("yaml: {e}")])
    })?;
    if pack.policies.is_empty() {
        return Err(Error::bad_request("The pack holds no policies"));
    }
    if pack.policies.len() > MAX_PACK_POLICIES {
        return Err(Error::bad_request(format!(
            "A pack may hold at most {MAX_PACK_POLICIES} policies"
        )));
    }
    let mut seen = taken.clone();
    let mut out = Vec::new();
    for (i, p) in pack.policies.into_iter().enumerate() {
        let name = p
            .name
            .or(p.description)
            .or(p.id)
            .unwrap_or_else(|| format!("policy {}", i + 1));
        let mut rules = p.rules;
        if let (Value::Object(m), Some(tests)) = (&mut rules, p.tests) {
            m.entry("tests").or_insert(Value::Array(tests));
        }
        let new = NewPolicy {
            name: name.clone(),
            policy_type: p.policy_type.clone(),
            rules: rules.clone(),
            active: p.active.unwrap_or(true),
            agent_ids: p.agent_ids,
        };
        let mut problems = new.problems();
        if problems.is_empty() {
            problems.extend(
                validate_policy(&new.policy_type, &new.rules)
                    .err()
                    .unwrap_or_default(),
            );
        }
        let conflict = if !seen.insert(name.clone()) {
            Some("A policy with that name already exists".to_owned())
        } else if !problems.is_empty() {
            Some(problems.join("; "))
        } else {
            None
        };
        out.push(PackEntry {
            name,
            policy_type: p.policy_type,
            rules,
            new: conflict.is_none().then_some(new),
            conflict,
        });
    }
    Ok(out)
}

impl Service {
    /// What importing `source` would do, writing nothing.
    pub async fn preview_pack(
        &self,
        caller: &Caller,
        source: &PackSource,
    ) -> Result<Vec<PackEntry>, Error> {
        caller.require_admin("Admin access required")?;
        let text = pack_text(source)?;
        entries(text, &self.policy_names(caller).await?)
    }

    /// Imports `source`'s policies into the caller's org (admin): each new name is a policy
    /// created on the chain; names the org has are skipped; invalid policies are reported.
    pub async fn import_pack(
        &self,
        caller: &Caller,
        source: &PackSource,
    ) -> Result<ImportReport, Error> {
        caller.require_admin("Admin access required")?;
        let text = pack_text(source)?;
        let taken = self.policy_names(caller).await?;
        let mut report = ImportReport::default();
        for entry in entries(text, &taken)? {
            match (entry.new, entry.conflict) {
                (Some(new), _) => match self.create_policy(caller, new).await {
                    Ok(created) => report.imported.push(created),
                    // Created by someone else meanwhile.
                    Err(e) if e.code == ErrorCode::Conflict => report.skipped.push(entry.name),
                    Err(e) => return Err(e),
                },
                (None, Some(_)) if taken.contains(&entry.name) => report.skipped.push(entry.name),
                (None, conflict) => {
                    report
                        .errors
                        .push(format!("{}: {}", entry.name, conflict.unwrap_or_default()))
                }
            }
        }
        Ok(report)
    }

    async fn policy_names(&self, caller: &Caller) -> Result<HashSet<String>, Error> {
        Ok(self
            .policies(caller, None)
            .await?
            .into_iter()
            .map(|p| p.policy.name)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_pack_parses_and_validates() {
        for (id, text) in PACKS {
            let entries = entries(text, &HashSet::new()).unwrap_or_else(|e| panic!("{id}: {e:?}"));
            assert!(!entries.is_empty(), "{id}");
            for e in entries {
                assert_eq!(e.conflict, None, "{id}: {}", e.name);
            }
        }
    }

    #[test]
    fn taken_names_conflict_and_bad_policies_say_why() {
        let text = r#"{"policies": [
            {"id": "a", "policy_type": "block_action_type", "rules": {"action_types": ["x"]}},
            {"id": "b", "policy_type": "risk_threshold", "rules": {"threshold": 400}},
            {"id": "a", "policy_type": "warn_action_type", "rules": {"action_types": ["y"]}}
        ]}"#;
        let taken = HashSet::from(["a".to_owned()]);
        let e = entries(text, &taken).unwrap();
        assert!(e[0].conflict.as_deref().unwrap().contains("already exists"));
        assert!(
            e[1].conflict.as_deref().unwrap().contains("threshold"),
            "{:?}",
            e[1]
        );
        assert!(entries("policies: [", &taken).is_err());
        assert!(entries("policies: []", &taken).is_err());
    }
}

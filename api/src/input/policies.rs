//! Policy bodies (`POST`/`PATCH /api/policies`) into [`NewPolicy`] and [`PolicyChanges`].

use dashclaw_domain::policy_set::PolicyChanges;
use serde_json::{Map, Value};

use crate::service::policies::{
    agent_ids_problem, text_problem, NewPolicy, NAME_MAX, RULES_MAX, TYPE_MAX,
};
use crate::service::Error;

/// `rules`: an object, or a string holding one; at most 4000 characters once stringified.
pub fn rules(v: &Value, errors: &mut Vec<String>) -> Option<Value> {
    let rules = match v {
        Value::Object(_) => v.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(r @ Value::Object(_)) => r,
            _ => {
                errors.push("rules must be valid JSON".into());
                return None;
            }
        },
        _ => {
            errors.push("rules must be an object".into());
            return None;
        }
    };
    if serde_json::to_string(&rules).map(|s| s.len()).unwrap_or(0) > RULES_MAX {
        errors.push(format!("rules exceeds max length of {RULES_MAX}"));
        return None;
    }
    Some(rules)
}

fn active(v: Option<&Value>, errors: &mut Vec<String>) -> Option<bool> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(n) if n.as_i64() == Some(1) => Some(true),
        Some(n) if n.as_i64() == Some(0) => Some(false),
        Some(_) => {
            errors.push("active must be a boolean".into());
            None
        }
    }
}

/// `agent_ids`: an array of strings or a string holding one. `Some(None)` = org-wide.
fn agent_ids(v: Option<&Value>, errors: &mut Vec<String>) -> Option<Option<Vec<String>>> {
    let v = v?;
    let parsed = match v {
        Value::Null => return Some(None),
        Value::String(s) => serde_json::from_str::<Value>(s).unwrap_or(Value::Bool(false)),
        other => other.clone(),
    };
    match serde_json::from_value::<Vec<String>>(parsed) {
        Ok(ids) => match agent_ids_problem(&ids) {
            Some(problem) => {
                errors.push(problem);
                None
            }
            None => Some((!ids.is_empty()).then_some(ids)),
        },
        Err(_) => {
            errors.push("agent_ids must be an array of strings".into());
            None
        }
    }
}

fn text(
    body: &Map<String, Value>,
    key: &str,
    max: usize,
    errors: &mut Vec<String>,
) -> Option<String> {
    match body.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match text_problem(key, s, max) {
            Some(problem) => {
                errors.push(problem);
                None
            }
            None => Some(s.clone()),
        },
        Some(_) => {
            errors.push(format!("{key} must be a string"));
            None
        }
    }
}

fn rules_field(body: &Map<String, Value>, errors: &mut Vec<String>) -> Option<Value> {
    body.get("rules")
        .filter(|v| !v.is_null())
        .and_then(|v| rules(v, errors))
}

/// A new policy: `name`, `policy_type` and `rules` required; `active` (default true) and
/// `agent_ids` optional.
pub fn new_policy(body: &Map<String, Value>) -> Result<NewPolicy, Error> {
    let mut errors = Vec::new();
    let name = text(body, "name", NAME_MAX, &mut errors);
    let policy_type = text(body, "policy_type", TYPE_MAX, &mut errors);
    let rules = rules_field(body, &mut errors);
    let active = active(body.get("active"), &mut errors).unwrap_or(true);
    let agent_ids = agent_ids(body.get("agent_ids"), &mut errors).flatten();
    for (key, missing) in [
        ("name", name.is_none()),
        ("policy_type", policy_type.is_none()),
        ("rules", rules.is_none()),
    ] {
        if missing && !errors.iter().any(|e| e.starts_with(key)) {
            errors.push(format!("{key} is required"));
        }
    }
    match (name, policy_type, rules) {
        (Some(name), Some(policy_type), Some(rules)) if errors.is_empty() => Ok(NewPolicy {
            name,
            policy_type,
            rules,
            active,
            agent_ids,
        }),
        _ => Err(Error::validation(errors)),
    }
}

/// A change to the policy `id`: any of the fields of a new policy.
pub fn policy_change(body: &Map<String, Value>) -> Result<(String, PolicyChanges), Error> {
    let mut errors = Vec::new();
    let Some(id) = text(body, "id", 64, &mut errors) else {
        return Err(Error::validation(vec!["id is required".into()]));
    };
    let changes = PolicyChanges {
        name: text(body, "name", NAME_MAX, &mut errors),
        policy_type: text(body, "policy_type", TYPE_MAX, &mut errors),
        rules: rules_field(body, &mut errors),
        active: active(body.get("active"), &mut errors),
        agent_ids: agent_ids(body.get("agent_ids"), &mut errors),
    };
    if errors.is_empty() {
        Ok((id, changes))
    } else {
        Err(Error::validation(errors))
    }
}

//! Guard policies (contract 9.1-9.2): list, create, update, delete. Every change is a
//! PolicySet event; every node drops its cached policies when the ledger shows it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::Duration;
use dashclaw_domain::guard::Policy;
use dashclaw_domain::ids::PolicyId;
use dashclaw_domain::policy_set::{
    PolicyChanges, PolicySet, PolicySetCommand, PolicySetError, StoredPolicy, POLICY_SET_ID,
};
use dashclaw_domain::OrgId;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::commands::{Actor, CommandError};
use crate::error::{ApiError, ErrorCode};
use crate::extract::{Body, Params};
use crate::governance::random;
use crate::server::AppState;
use crate::validate::object;
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/policies",
        get(list).post(create).patch(update).delete(remove),
    )
}

/// How long an `allow_grant` lasts when its rules name no `expires_at`.
const DEFAULT_GRANT_TTL: Duration = Duration::days(7);

fn row(org: &OrgId, p: &StoredPolicy) -> Value {
    let policy = &p.policy;
    json!({
        "id": policy.id,
        "org_id": org.as_str(),
        "name": policy.name,
        "policy_type": policy.policy_type,
        "rules": serde_json::to_string(&policy.rules).unwrap_or_default(),
        "active": u8::from(policy.active),
        "agent_ids": policy.agent_ids.as_ref().map(|a| serde_json::to_string(a).unwrap_or_default()),
        "created_by": p.created_by,
        "created_at": wire::ts(p.created_at),
        "updated_at": wire::ts(p.updated_at),
        "inert_warning": policy.inert_warning(),
    })
}

fn admin(caller: &Caller) -> Result<(), ApiError> {
    caller.require_admin("Admin access required")
}

fn problem(errors: &mut Vec<String>, message: impl Into<String>) {
    errors.push(message.into());
}

/// `rules`: an object, or a string holding one; at most 4000 characters once stringified.
pub fn parse_rules(v: &Value, errors: &mut Vec<String>) -> Option<Value> {
    let rules = match v {
        Value::Object(_) => v.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(r @ Value::Object(_)) => r,
            _ => {
                problem(errors, "rules must be valid JSON");
                return None;
            }
        },
        _ => {
            problem(errors, "rules must be an object");
            return None;
        }
    };
    if serde_json::to_string(&rules).map(|s| s.len()).unwrap_or(0) > 4000 {
        problem(errors, "rules exceeds max length of 4000");
        return None;
    }
    Some(rules)
}

fn parse_active(v: Option<&Value>, errors: &mut Vec<String>) -> Option<bool> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(n) if n.as_i64() == Some(1) => Some(true),
        Some(n) if n.as_i64() == Some(0) => Some(false),
        Some(_) => {
            problem(errors, "active must be a boolean");
            None
        }
    }
}

/// `agent_ids`: an array of strings or a string holding one. `Some(None)` = org-wide.
fn parse_agent_ids(v: Option<&Value>, errors: &mut Vec<String>) -> Option<Option<Vec<String>>> {
    let v = v?;
    let parsed = match v {
        Value::Null => return Some(None),
        Value::String(s) => serde_json::from_str::<Value>(s).unwrap_or(Value::Bool(false)),
        other => other.clone(),
    };
    match serde_json::from_value::<Vec<String>>(parsed) {
        Ok(ids) if ids.len() <= 100 => Some((!ids.is_empty()).then_some(ids)),
        _ => {
            problem(errors, "agent_ids must be an array of strings");
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
        Some(Value::String(s)) if s.is_empty() => {
            problem(errors, format!("{key} cannot be empty"));
            None
        }
        Some(Value::String(s)) if s.chars().count() > max => {
            problem(errors, format!("{key} exceeds max length of {max}"));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            problem(errors, format!("{key} must be a string"));
            None
        }
    }
}

/// Stamps a default expiry on grants that have none.
fn stamp_grant(policy_type: &str, rules: &mut Value, now: chrono::DateTime<chrono::Utc>) {
    if policy_type == "allow_grant" {
        if let Value::Object(m) = rules {
            if !m.contains_key("expires_at") {
                m.insert(
                    "expires_at".into(),
                    json!(wire::ts(now + DEFAULT_GRANT_TTL)),
                );
            }
        }
    }
}

/// Runs a command on the org's policy set; shared by REST and GraphQL (the caller has
/// checked the role).
pub async fn change_policies(
    state: &AppState,
    caller: &Caller,
    command: PolicySetCommand,
) -> Result<PolicySet, ApiError> {
    let actor = Actor::of(&caller.principal, None);
    let result = state
        .ledger
        .execute::<PolicySet>(&caller.org, POLICY_SET_ID, command, &actor)
        .await;
    // This node sees its own change at once; others when the ledger tail reaches it.
    state.live.views().invalidate(&caller.org);
    match result {
        Ok(set) => Ok(set),
        Err(CommandError::Rejected(PolicySetError::DuplicateName)) => Err(ApiError::new(
            ErrorCode::Conflict,
            "A policy with that name already exists",
        )),
        Err(CommandError::Rejected(PolicySetError::NotFound)) => {
            Err(ApiError::new(ErrorCode::NotFound, "Policy not found"))
        }
        Err(CommandError::Rejected(PolicySetError::Invalid(details))) => {
            Err(ApiError::validation(details))
        }
        Err(CommandError::Failed(e)) => Err(e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    agent_id: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let set: PolicySet = state.ledger.load(&caller.org, POLICY_SET_ID).await?;
    let policies: Vec<Value> = set
        .policies
        .iter()
        .rev()
        .filter(|p| q.agent_id.is_none() || p.policy.applies_to(q.agent_id.as_deref()))
        .map(|p| row(&caller.org, p))
        .collect();
    Ok(Json(json!({ "policies": policies })))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin(&caller)?;
    let body = object(&body)?;
    let mut errors = Vec::new();
    let name = text(&body, "name", 256, &mut errors);
    let policy_type = text(&body, "policy_type", 64, &mut errors);
    let rules = body
        .get("rules")
        .filter(|v| !v.is_null())
        .and_then(|v| parse_rules(v, &mut errors));
    let active = parse_active(body.get("active"), &mut errors).unwrap_or(true);
    let agent_ids = parse_agent_ids(body.get("agent_ids"), &mut errors).flatten();
    for (key, missing) in [
        ("name", name.is_none()),
        ("policy_type", policy_type.is_none()),
        ("rules", rules.is_none()),
    ] {
        if missing && !errors.iter().any(|e| e.starts_with(key)) {
            errors.push(format!("{key} is required"));
        }
    }
    let (Some(name), Some(policy_type), Some(rules)) = (name, policy_type, rules) else {
        return Err(ApiError::validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let stored =
        create_policy(&state, &caller, name, policy_type, rules, active, agent_ids).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"policy": row(&caller.org, &stored), "policy_id": stored.policy.id})),
    ))
}

/// Adds a policy to the caller's org (an `allow_grant` without `expires_at` gets the default
/// lifetime); shared by REST and GraphQL.
pub async fn create_policy(
    state: &AppState,
    caller: &Caller,
    name: String,
    policy_type: String,
    mut rules: Value,
    active: bool,
    agent_ids: Option<Vec<String>>,
) -> Result<StoredPolicy, ApiError> {
    stamp_grant(&policy_type, &mut rules, state.clock.now());
    let policy = Policy {
        id: PolicyId::random(random()?).to_string(),
        name,
        policy_type,
        rules,
        active,
        agent_ids,
    };
    let id = policy.id.clone();
    let set = change_policies(
        state,
        caller,
        PolicySetCommand::Create {
            policy,
            by: caller.principal.clone(),
            now: state.clock.now(),
        },
    )
    .await?;
    set.get(&id)
        .cloned()
        .ok_or_else(|| ApiError::internal("created policy missing"))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    admin(&caller)?;
    let body = object(&body)?;
    let mut errors = Vec::new();
    let Some(id) = text(&body, "id", 64, &mut errors) else {
        return Err(ApiError::validation(vec!["id is required".into()]));
    };
    let changes = PolicyChanges {
        name: text(&body, "name", 256, &mut errors),
        policy_type: text(&body, "policy_type", 64, &mut errors),
        rules: body
            .get("rules")
            .filter(|v| !v.is_null())
            .and_then(|v| parse_rules(v, &mut errors)),
        active: parse_active(body.get("active"), &mut errors),
        agent_ids: parse_agent_ids(body.get("agent_ids"), &mut errors),
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let set = change_policies(
        &state,
        &caller,
        PolicySetCommand::Update {
            id: id.clone(),
            changes,
            now: state.clock.now(),
        },
    )
    .await?;
    let stored = set
        .get(&id)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "Policy not found"))?;
    Ok(Json(json!({ "policy": row(&caller.org, stored) })))
}

#[derive(Deserialize)]
struct DeleteQuery {
    id: Option<String>,
    ids: Option<String>,
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<DeleteQuery>,
) -> Result<Json<Value>, ApiError> {
    admin(&caller)?;
    let (ids, single) = match (&q.id, &q.ids) {
        (Some(id), _) => (vec![id.clone()], true),
        (None, Some(ids)) => (
            ids.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            false,
        ),
        (None, None) => return Err(ApiError::validation(vec!["id is required".into()])),
    };
    if ids.is_empty() {
        return Err(ApiError::validation(vec!["id is required".into()]));
    }
    change_policies(
        &state,
        &caller,
        PolicySetCommand::Delete {
            ids: ids.clone(),
            now: state.clock.now(),
        },
    )
    .await?;
    Ok(Json(if single {
        json!({"deleted": true, "id": ids[0]})
    } else {
        json!({"deleted": ids.len(), "ids": ids})
    }))
}

//! Policy tooling on the ledger, without side effects: `POST /api/policies/test` runs each
//! policy's `rules.tests` recipes, `POST /api/policies/simulate` replays a proposed policy over
//! the org's recorded guard requests and reports what it would have decided.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use dashclaw_domain::guard::{validate_policy, Policy};
use serde_json::{json, Map, Value};

use crate::extract::Body;
use crate::input::fields::{object, Fields};
use crate::input::guard::guard_fields;
use crate::service::policy_tools::decide_alone;
use crate::service::Caller;
use crate::service::Error;
use crate::state::AppState;
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/policies/test", post(test))
        .route("/api/policies/simulate", post(simulate))
}

/// Runs one recipe `{name, input, expect: {decision}}` against `policy`'s rules (its agent
/// scope is not what a recipe tests, so it is lifted).
fn run_recipe(policy: &Policy, recipe: &Value, index: usize, now: DateTime<Utc>) -> Value {
    let unscoped = Policy {
        agent_ids: None,
        ..policy.clone()
    };
    let policy = &unscoped;
    let name = recipe["name"]
        .as_str()
        .map_or_else(|| format!("test {}", index + 1), str::to_owned);
    let expected = recipe["expect"]["decision"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let empty = Map::new();
    let input = recipe["input"].as_object().unwrap_or(&empty);
    let mut f = Fields::new(input);
    let parsed = guard_fields(&mut f, true);
    match (parsed, f.errors.is_empty()) {
        (Some(input), true) => {
            let (verdict, reason) = decide_alone(policy, &input.request, now);
            json!({"name": name, "passed": verdict.as_str() == expected, "expected": expected,
                   "actual": verdict.as_str(), "reason": reason})
        }
        _ => json!({"name": name, "passed": false, "expected": expected, "actual": null,
                    "reason": format!("invalid test input: {}", f.errors.join("; "))}),
    }
}

fn recipes(rules: &Value, body_tests: Option<&Value>) -> Vec<Value> {
    body_tests
        .or_else(|| rules.get("tests"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// `POST /api/policies/test`: with `policy_type` and `rules` in the body, runs that policy's
/// recipes ("recipe" mode); otherwise (the SDK sends `{agent_id}`) runs the recipes of every
/// active policy of the org.
async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<Value>, Error> {
    let body = object(&body)?;
    let now = state.service.clock().now();
    let recipe_mode = body.contains_key("policy_type") && body.contains_key("rules");
    let details = if recipe_mode {
        vec![test_recipe(&body, now)?]
    } else {
        let agent = body.get("agent_id").and_then(Value::as_str);
        let policies = state.service.active_policies(&caller, agent).await?;
        policies
            .iter()
            .map(|policy| {
                let tests = run_recipes(policy, &recipes(&policy.rules, None), now);
                json!({"policy_id": policy.id, "policy_name": policy.name, "tests": tests})
            })
            .collect()
    };
    let mut answer = json!({
        "results": summary(details),
        "generated_at": wire::ts(now),
    });
    if recipe_mode {
        answer["mode"] = json!("recipe");
    }
    Ok(Json(answer))
}

/// "Recipe" mode: the policy in the body, tried on its recipes.
fn test_recipe(body: &Map<String, Value>, now: DateTime<Utc>) -> Result<Value, Error> {
    let policy_type = body
        .get("policy_type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let rules = body.get("rules").cloned().unwrap_or(Value::Null);
    validate_policy(&policy_type, &rules).map_err(Error::validation)?;
    let policy = Policy {
        id: "recipe".into(),
        name: body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("recipe")
            .to_owned(),
        policy_type,
        rules: rules.clone(),
        active: true,
        agent_ids: None,
    };
    let tests = run_recipes(&policy, &recipes(&rules, body.get("tests")), now);
    Ok(json!({"policy_id": null, "policy_name": policy.name, "tests": tests}))
}

fn run_recipes(policy: &Policy, recipes: &[Value], now: DateTime<Utc>) -> Vec<Value> {
    recipes
        .iter()
        .enumerate()
        .map(|(i, r)| run_recipe(policy, r, i, now))
        .collect()
}

/// The totals over every policy's recipes, with the details.
fn summary(details: Vec<Value>) -> Value {
    let all: Vec<&Value> = details
        .iter()
        .flat_map(|d| d["tests"].as_array().into_iter().flatten())
        .collect();
    let passed = all.iter().filter(|t| t["passed"] == true).count();
    json!({
        "total_policies": details.len(),
        "total_tests": all.len(),
        "passed": passed,
        "failed": all.len() - passed,
        "success": passed == all.len(),
        "details": details,
    })
}

/// `POST /api/policies/simulate {policy_type, rules, days=7}`: what the proposed policy alone
/// would have decided for each guard request recorded in the window (no side effects).
async fn simulate(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<wire::SimulationBody>, Error> {
    let body = object(&body)?;
    let mut f = Fields::new(&body);
    let policy_type = f.required_string("policy_type", 64);
    let rules = f.object("rules").cloned();
    let days = f.integer("days", 1, 90).unwrap_or(7);
    if rules.is_none() && !f.present("rules") {
        f.errors.push("rules is required".into());
    }
    f.finish()?;
    let (Some(policy_type), Some(rules)) = (policy_type, rules) else {
        return Err(Error::validation(vec!["policy_type is required".into()]));
    };
    let report = state
        .service
        .simulate_policy(&caller, &policy_type, Value::Object(rules), days)
        .await?;
    Ok(Json(wire::SimulationBody::from(&report)))
}

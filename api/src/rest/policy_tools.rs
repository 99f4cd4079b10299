//! Policy tooling on the ledger, without side effects: `POST /api/policies/test` runs each
//! policy's `rules.tests` recipes, `POST /api/policies/simulate` replays a proposed policy over
//! the org's recorded guard requests and reports what it would have decided.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use dashclaw_domain::guard::{
    evaluate, validate_policy, DecisionCounter, GuardContext, GuardRequest, Policy, Verdict,
};
use serde_json::{json, Map, Value};

use crate::extract::Body;
use crate::input::fields::{object, Fields};
use crate::input::guard::guard_fields;
use crate::server::AppState;
use crate::service::Caller;
use crate::service::Error;
use crate::wire;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/policies/test", post(test))
        .route("/api/policies/simulate", post(simulate))
}

/// Recipes and simulations see no rate history.
struct NoHistory;

impl DecisionCounter for NoHistory {
    fn decisions_since(&self, _: &str, _: DateTime<Utc>) -> u32 {
        0
    }
}

/// The verdict `policy` alone gives `request`.
fn decide_alone(policy: &Policy, request: &GuardRequest, now: DateTime<Utc>) -> (Verdict, String) {
    let evaluation = evaluate(
        request,
        &GuardContext {
            policies: std::slice::from_ref(policy),
            halt: None,
            counter: &NoHistory,
            operator_grant: None,
            now,
        },
    );
    let reason = evaluation
        .reasons
        .iter()
        .chain(&evaluation.warnings)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    (evaluation.decision, reason)
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
    let mut details = Vec::new();
    let recipe_mode = body.contains_key("policy_type") && body.contains_key("rules");
    if recipe_mode {
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
        let tests: Vec<Value> = recipes(&rules, body.get("tests"))
            .iter()
            .enumerate()
            .map(|(i, r)| run_recipe(&policy, r, i, now))
            .collect();
        details.push(json!({"policy_id": null, "policy_name": policy.name, "tests": tests}));
    } else {
        let view = state
            .service
            .tail()
            .views()
            .get(state.service.aggregates(), &caller.org)
            .await?;
        let agent = body.get("agent_id").and_then(Value::as_str);
        for policy in view
            .policies
            .iter()
            .filter(|p| p.active && p.applies_to(agent))
        {
            let tests: Vec<Value> = recipes(&policy.rules, None)
                .iter()
                .enumerate()
                .map(|(i, r)| run_recipe(policy, r, i, now))
                .collect();
            details
                .push(json!({"policy_id": policy.id, "policy_name": policy.name, "tests": tests}));
        }
    }
    let all: Vec<&Value> = details
        .iter()
        .flat_map(|d| d["tests"].as_array().into_iter().flatten())
        .collect();
    let passed = all.iter().filter(|t| t["passed"] == true).count();
    let mut answer = json!({
        "results": {
            "total_policies": details.len(),
            "total_tests": all.len(),
            "passed": passed,
            "failed": all.len() - passed,
            "success": passed == all.len(),
            "details": details,
        },
        "generated_at": wire::ts(now),
    });
    if recipe_mode {
        answer["mode"] = json!("recipe");
    }
    Ok(Json(answer))
}

/// Most recorded requests one simulation replays.
const SIMULATION_SAMPLE: i64 = 10_000;
/// Most matches listed.
const SIMULATION_MATCHES: usize = 50;

/// `POST /api/policies/simulate {policy_type, rules, days=7}`: what the proposed policy alone
/// would have decided for each guard request recorded in the window (no side effects).
async fn simulate(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<Value>, Error> {
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
    Ok(Json(
        simulate_policy(&state, &caller, &policy_type, Value::Object(rules), days).await?,
    ))
}

/// What a proposed policy alone would have decided for each guard request of the caller's
/// org recorded in the last `days` (REST and GraphQL; no side effects).
pub async fn simulate_policy(
    state: &AppState,
    caller: &Caller,
    policy_type: &str,
    rules: Value,
    days: i64,
) -> Result<Value, Error> {
    validate_policy(policy_type, &rules).map_err(Error::validation)?;
    let policy = Policy {
        id: "proposed".into(),
        name: "proposed policy".into(),
        policy_type: policy_type.to_owned(),
        rules,
        active: true,
        agent_ids: None,
    };
    let since = state.service.clock().now() - chrono::Duration::days(days);
    let records = state
        .service
        .recorded_requests(&caller.org, since, SIMULATION_SAMPLE)
        .await?;
    let mut counts = [0usize; 4];
    let mut matches = Vec::new();
    let mut total = 0;
    for record in records {
        total += 1;
        let (verdict, reason) = decide_alone(&policy, &record.request, record.evaluated_at);
        counts[verdict as usize] += 1;
        if verdict != Verdict::Allow && matches.len() < SIMULATION_MATCHES {
            matches.push(json!({
                "action_id": record.action_id.as_ref().map(ToString::to_string)
                    .unwrap_or_else(|| record.decision_id.to_string()),
                "goal": record.request.declared_goal,
                "agent_name": record.request.agent_name.as_ref().or(record.request.agent_id.as_ref()),
                "timestamp": wire::ts(record.evaluated_at),
                "original_status": record.evaluation.decision,
                "simulated_action": verdict,
                "simulated_reason": reason,
            }));
        }
    }
    let [allow, warn, require_approval, block] = counts;
    Ok(json!({
        "summary": {"total": total, "matches": total - allow, "block": block, "warn": warn,
                    "require_approval": require_approval, "allow": allow},
        "matches": matches,
        "matches_truncated": total - allow > matches.len(),
        "sample_size": total,
        "window_days": days,
    }))
}

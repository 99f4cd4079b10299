//! Policy tooling on the ledger, without side effects: `POST /api/policies/test` runs each
//! policy's `rules.tests` recipes, `POST /api/policies/simulate` replays a proposed policy over
//! the org's recorded guard requests and reports what it would have decided.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use dashclaw_domain::guard::{validate_policy, Policy};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::extract::Body;
use crate::input::fields::{object, Fields};
use crate::input::guard::guard_fields;
use crate::service::policy_tools::decide_alone;
use crate::service::Caller;
use crate::service::Error;
use crate::state::AppState;
use crate::wire::{self, SimulationBody};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/policies/test", post(test))
        .route("/api/policies/simulate", post(simulate))
}

/// One recipe's result.
#[derive(Serialize, ToSchema)]
pub struct RecipeResult {
    pub name: String,
    pub passed: bool,
    /// The decision the recipe expects.
    pub expected: String,
    /// The decision the policy gave; null when the recipe's input is invalid.
    pub actual: Option<String>,
    pub reason: String,
}

/// One policy's recipes.
#[derive(Serialize, ToSchema)]
pub struct PolicyTests {
    /// Null in recipe mode.
    pub policy_id: Option<String>,
    pub policy_name: String,
    pub tests: Vec<RecipeResult>,
}

/// The totals over every policy's recipes, with the details.
#[derive(Serialize, ToSchema)]
pub struct TestSummary {
    pub total_policies: usize,
    pub total_tests: usize,
    pub passed: usize,
    pub failed: usize,
    pub success: bool,
    pub details: Vec<PolicyTests>,
}

/// `POST /api/policies/test`.
#[derive(Serialize, ToSchema)]
pub struct TestReport {
    pub results: TestSummary,
    pub generated_at: String,
    /// "recipe" when the body held the policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
}

/// Runs one recipe `{name, input, expect: {decision}}` against `policy`'s rules (its agent
/// scope is not what a recipe tests, so it is lifted).
fn run_recipe(policy: &Policy, recipe: &Value, index: usize, now: DateTime<Utc>) -> RecipeResult {
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
            RecipeResult {
                name,
                passed: verdict.as_str() == expected,
                expected,
                actual: Some(verdict.as_str().to_owned()),
                reason,
            }
        }
        _ => RecipeResult {
            name,
            passed: false,
            expected,
            actual: None,
            reason: format!("invalid test input: {}", f.errors.join("; ")),
        },
    }
}

pub(crate) fn recipes(rules: &Value, body_tests: Option<&Value>) -> Vec<Value> {
    body_tests
        .or_else(|| rules.get("tests"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Runs policies' `rules.tests` recipes: with `policy_type` and `rules` in the body, that
/// policy's ("recipe" mode); otherwise (the SDK sends `{agent_id}`) those of every active
/// policy of the org.
#[utoipa::path(post, path = "/api/policies/test", tag = "policies",
    request_body = crate::rest::requests::PolicyTestBody,
    responses((status = 200, description = "The results", body = TestReport)))]
pub(crate) async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<TestReport>, Error> {
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
            .map(|policy| PolicyTests {
                policy_id: Some(policy.id.clone()),
                policy_name: policy.name.clone(),
                tests: run_recipes(policy, &recipes(&policy.rules, None), now),
            })
            .collect()
    };
    Ok(Json(TestReport {
        results: summary(details),
        generated_at: wire::ts(now),
        mode: recipe_mode.then_some("recipe"),
    }))
}

/// "Recipe" mode: the policy in the body, tried on its recipes.
fn test_recipe(body: &Map<String, Value>, now: DateTime<Utc>) -> Result<PolicyTests, Error> {
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
    Ok(PolicyTests {
        policy_id: None,
        policy_name: policy.name,
        tests,
    })
}

pub(crate) fn run_recipes(
    policy: &Policy,
    recipes: &[Value],
    now: DateTime<Utc>,
) -> Vec<RecipeResult> {
    recipes
        .iter()
        .enumerate()
        .map(|(i, r)| run_recipe(policy, r, i, now))
        .collect()
}

fn summary(details: Vec<PolicyTests>) -> TestSummary {
    let total_tests = details.iter().map(|d| d.tests.len()).sum();
    let passed = details
        .iter()
        .flat_map(|d| &d.tests)
        .filter(|t| t.passed)
        .count();
    TestSummary {
        total_policies: details.len(),
        total_tests,
        passed,
        failed: total_tests - passed,
        success: passed == total_tests,
        details,
    }
}

/// `POST /api/policies/simulate {policy_type, rules, days=7}`: what the proposed policy alone
/// would have decided for each guard request recorded in the window (no side effects).
#[utoipa::path(post, path = "/api/policies/simulate", tag = "policies",
    request_body = crate::rest::requests::SimulateBody,
    responses((status = 200, description = "What the policy would have decided", body = SimulationBody)))]
pub(crate) async fn simulate(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body,
) -> Result<Json<SimulationBody>, Error> {
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
    Ok(Json(SimulationBody::from(&report)))
}

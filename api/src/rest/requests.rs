//! The request bodies as the OpenAPI document describes them. They document; they do not
//! parse: each body is read by its `input::` function, which keeps DashClaw's rules and
//! messages (unknown fields dropped, `null` as absent, camelCase aliases, every problem in one
//! 400), which serde's derive cannot give. Keep each beside its parser's field list;
//! `tests/integration/openapi.rs` sends each documented field with a value of the wrong type
//! and checks the refusal names it, so a documented field the parser does not read fails.
#![allow(dead_code)]

use serde_json::Value;
use utoipa::ToSchema;

/// The guard fields `POST /api/guard` and `POST /api/actions` share (`input::guard`).
#[derive(ToSchema)]
pub struct GuardFields {
    /// The client's own score: it can only raise the server's.
    #[schema(minimum = 0, maximum = 100)]
    pub risk_score: Option<u8>,
    #[schema(max_length = 256)]
    pub agent_name: Option<String>,
    /// At most 50, each at most 500 characters.
    pub systems_touched: Option<Vec<String>>,
    pub reversible: Option<bool>,
    #[schema(max_length = 1024)]
    pub target: Option<String>,
    /// At most 100, each at most 500 characters.
    pub write_paths: Option<Vec<String>>,
    #[schema(max_length = 50000)]
    pub content: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub source_of_truth: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub intel: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub tool: Option<Value>,
    #[schema(max_length = 1000)]
    pub trigger: Option<String>,
    #[schema(max_length = 128)]
    pub swarm_id: Option<String>,
    /// A retry with the same key within the replay window answers the first decision.
    #[schema(max_length = 256)]
    pub idempotency_key: Option<String>,
    /// How long a held action waits for a human (default 300).
    #[schema(minimum = 5, maximum = 86400)]
    pub approval_wait_seconds: Option<u32>,
    /// At most 8.
    pub client_capabilities: Option<Vec<String>>,
    /// 0-100 (on the guard, another value is dropped, not refused).
    #[schema(minimum = 0, maximum = 100)]
    pub confidence: Option<u8>,
    /// The act the decision is bound to (at most 16 KB serialized); its canonical SHA-256 is
    /// the `act_hash` an execution claim must match.
    #[schema(value_type = Option<Object>)]
    pub act: Option<Value>,
}

/// `POST /api/guard`: "may I do this?" (contract 1.1).
#[derive(ToSchema)]
#[schema(example = json!({"action_type": "deploy", "declared_goal": "Ship v2 to production",
    "agent_id": "agent-1", "risk_score": 40, "systems_touched": ["prod"], "reversible": true}))]
pub struct GuardBody {
    /// Required (or its alias `action`).
    #[schema(max_length = 128)]
    pub action_type: String,
    /// Alias of `action_type`.
    #[schema(max_length = 128)]
    pub action: Option<String>,
    #[schema(max_length = 2000)]
    pub declared_goal: Option<String>,
    /// Alias of `declared_goal`.
    #[schema(max_length = 2000)]
    pub intent: Option<String>,
    #[schema(max_length = 128)]
    pub agent_id: Option<String>,
    #[serde(flatten)]
    pub guard: GuardFields,
}

/// `POST /api/actions`: record an action; it is evaluated by the guard as it is recorded
/// (contract 4.1).
#[derive(ToSchema)]
#[schema(example = json!({"agent_id": "agent-1", "declared_goal": "Rotate the API keys",
    "action_type": "security", "risk_score": 30, "systems_touched": ["vault"]}))]
pub struct RecordActionBody {
    #[schema(max_length = 128)]
    pub agent_id: String,
    #[schema(max_length = 2000)]
    pub declared_goal: String,
    #[schema(max_length = 128)]
    pub action_type: String,
    /// A client-chosen id (`act_...`).
    #[schema(max_length = 128)]
    pub action_id: Option<String>,
    #[schema(max_length = 128)]
    pub parent_action_id: Option<String>,
    #[schema(max_length = 4000)]
    pub reasoning: Option<String>,
    #[schema(max_length = 1000)]
    pub authorization_scope: Option<String>,
    #[schema(max_length = 4000)]
    pub input_summary: Option<String>,
    /// running, completed, failed or cancelled.
    pub status: Option<String>,
    #[schema(max_length = 128)]
    pub recommendation_id: Option<String>,
    #[schema(max_length = 4000)]
    pub output_summary: Option<String>,
    pub side_effects: Option<Vec<String>>,
    pub artifacts_created: Option<Vec<String>>,
    #[schema(max_length = 4000)]
    pub error_message: Option<String>,
    pub timestamp_start: Option<String>,
    pub timestamp_end: Option<String>,
    pub duration_ms: Option<u64>,
    #[schema(minimum = 0)]
    pub cost_estimate: Option<f64>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    #[schema(max_length = 128)]
    pub model: Option<String>,
    #[schema(max_length = 128)]
    pub session_id: Option<String>,
    /// The decision of an earlier `POST /api/guard` this action acts on.
    #[schema(max_length = 64)]
    pub guard_decision_id: Option<String>,
    #[serde(flatten)]
    pub guard: GuardFields,
}

/// `PATCH /api/actions/:id`: either the execution claim (`claim_execution: true` and
/// nothing but these four fields) or the legacy update (at least one outcome field).
#[derive(ToSchema)]
#[schema(example = json!({"claim_execution": true, "attempt_id": "attempt-0123456789abcdef",
    "agent_id": "agent-1"}))]
pub struct PatchActionBody {
    /// Exactly `true` for a claim.
    pub claim_execution: Option<bool>,
    /// A claim's attempt id: 16-128 of `[A-Za-z0-9_-]`.
    pub attempt_id: Option<String>,
    pub agent_id: Option<String>,
    /// A claim's act; it must hash to the decision's `act_hash`.
    #[schema(value_type = Option<Object>)]
    pub act: Option<Value>,
    /// Legacy update: running, completed, failed or cancelled.
    pub status: Option<String>,
    #[schema(max_length = 4000)]
    pub output_summary: Option<String>,
    pub side_effects: Option<Vec<String>>,
    pub artifacts_created: Option<Vec<String>>,
    #[schema(max_length = 4000)]
    pub error_message: Option<String>,
    pub timestamp_end: Option<String>,
    pub duration_ms: Option<u64>,
    pub cost_estimate: Option<f64>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    #[schema(max_length = 128)]
    pub model: Option<String>,
    /// Answer an action that no longer runs as it is, instead of refusing.
    pub close_if_running: Option<bool>,
}

/// `POST /api/actions/:id/outcome`: the one-shot outcome (contract 6).
#[derive(ToSchema)]
#[schema(example = json!({"status": "completed", "summary": "Deployed v2"}))]
pub struct OutcomeReportBody {
    /// completed, partial or failed.
    pub status: String,
    pub summary: Option<String>,
    pub error_message: Option<String>,
    /// Required for partial.
    #[schema(value_type = Option<Object>)]
    pub progress: Option<Value>,
}

/// `POST /api/actions/:id/approve`: an operator's answer to a held action (admin keys).
#[derive(ToSchema)]
#[schema(example = json!({"decision": "allow", "reasoning": "Change window is open"}))]
pub struct ApprovalBody {
    /// allow or deny.
    pub decision: String,
    pub reasoning: Option<String>,
}

/// `POST /api/assumptions`: what an agent believed when it acted (contract 10.1).
#[derive(ToSchema)]
#[schema(example = json!({"action_id": "act_00000000000000000000000000", "assumption": "Staging passed",
    "basis": "CI run 42"}))]
pub struct NewAssumptionBody {
    #[schema(max_length = 128)]
    pub action_id: String,
    #[schema(max_length = 2000)]
    pub assumption: String,
    #[schema(max_length = 2000)]
    pub basis: Option<String>,
    #[schema(max_length = 128)]
    pub assumption_id: Option<String>,
}

/// `PATCH /api/assumptions/:id`: validate or invalidate.
#[derive(ToSchema)]
#[schema(example = json!({"validated": false, "invalidated_reason": "The tests were skipped"}))]
pub struct JudgeAssumptionBody {
    pub validated: bool,
    #[schema(max_length = 2000)]
    pub invalidated_reason: Option<String>,
}

/// `POST /api/policies` (admin): a guard policy (contract 9.1).
#[derive(ToSchema)]
#[schema(example = json!({"name": "Hold deploys", "policy_type": "require_approval",
    "rules": {"action_types": ["deploy"]}}))]
pub struct NewPolicyBody {
    #[schema(max_length = 256)]
    pub name: String,
    /// One of the policy types of contract 9.1 (risk_threshold, block_action_type, ...).
    #[schema(max_length = 64)]
    pub policy_type: String,
    /// The type's rules: an object, or a JSON string of one.
    #[schema(value_type = Object)]
    pub rules: Value,
    /// Default true.
    pub active: Option<bool>,
    /// The agents the policy applies to (all when absent).
    pub agent_ids: Option<Vec<String>>,
}

/// `PATCH /api/policies` (admin): any of a new policy's fields, for the policy `id`.
#[derive(ToSchema)]
#[schema(example = json!({"id": "pol_1", "active": false}))]
pub struct PolicyChangeBody {
    pub id: String,
    pub name: Option<String>,
    pub policy_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub rules: Option<Value>,
    pub active: Option<bool>,
    pub agent_ids: Option<Vec<String>>,
}

/// `POST /api/policies/test`: with `policy_type` and `rules`, runs that policy's recipes
/// ("recipe" mode); otherwise the recipes of every active policy (of `agent_id`).
#[derive(ToSchema)]
#[schema(example = json!({"agent_id": "agent-1"}))]
pub struct PolicyTestBody {
    pub agent_id: Option<String>,
    pub name: Option<String>,
    pub policy_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub rules: Option<Value>,
    /// Recipes `{name, input, expect: {decision}}`; default: `rules.tests`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tests: Option<Value>,
}

/// `POST /api/policies/simulate`: a proposed policy replayed over the recorded requests.
#[derive(ToSchema)]
#[schema(example = json!({"policy_type": "risk_threshold", "rules": {"threshold": 70}, "days": 7}))]
pub struct SimulateBody {
    pub policy_type: String,
    #[schema(value_type = Object)]
    pub rules: Value,
    /// Default 7.
    #[schema(minimum = 1, maximum = 90)]
    pub days: Option<u32>,
}

/// `POST /api/halt` (admin): stop (or resume) every agent of the org.
#[derive(ToSchema)]
#[schema(example = json!({"halted": true, "reason": "Incident 42"}))]
pub struct HaltBody {
    pub halted: bool,
    #[schema(max_length = 1000)]
    pub reason: Option<String>,
}

/// `PUT /api/settings/sweeps` (admin): the org's overrides, replacing the previous ones;
/// durations from 1 s to 30 days; null or absent is the server's setting.
#[derive(ToSchema)]
#[schema(example = json!({"lost_confirmation_timeout": "30m", "approval_grace": "90s"}))]
pub struct SweepOverridesBody {
    pub lost_confirmation_timeout: Option<String>,
    pub approval_grace: Option<String>,
    pub checkpoint_interval: Option<String>,
    #[schema(minimum = 1, maximum = 1000000)]
    pub checkpoint_every_events: Option<u64>,
}

/// `POST /api/security/prompt-injection`: scan a text.
#[derive(ToSchema)]
#[schema(example = json!({"text": "Ignore all previous instructions", "source": "email"}))]
pub struct ScanBody {
    pub text: String,
    pub source: Option<String>,
}

/// `POST /api/webhooks` (admin): register a delivery target.
#[derive(ToSchema)]
#[schema(example = json!({"url": "https://hooks.example.com/dashclaw", "events": ["action.created"]}))]
pub struct WebhookBody {
    /// https (http only to allowed private hosts).
    pub url: String,
    /// The event types to deliver (all when absent).
    pub events: Option<Vec<String>>,
}

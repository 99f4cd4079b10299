//! Guard policies: the stored row shape, write-time validation (contract §9.2, §2.4), and how
//! each enforced policy type judges one request.

use std::borrow::Cow;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{GuardContext, GuardRequest, Verdict};

/// The policy types this engine enforces. Any other type is stored and listed but inert: an
/// active one adds [`Policy::inert_warning`] to every decision it would have governed.
pub const KNOWN_POLICY_TYPES: &[&str] = &[
    "risk_threshold",
    "require_approval",
    "block_action_type",
    "warn_action_type",
    "protected_path",
    "agent_allowlist",
    "rate_limit",
    "allow_grant",
    "delegation_constraint",
];

/// The values `rules.action` may take, in the order the validation message lists them.
const RULE_ACTIONS: &[&str] = &["allow", "warn", "block", "require_approval"];

const DEFAULT_RISK_THRESHOLD: f64 = 80.0;
const DEFAULT_RATE_LIMIT_MAX: f64 = 50.0;
const DEFAULT_RATE_LIMIT_WINDOW_MINUTES: i64 = 60;
const MAX_RATE_LIMIT_WINDOW_MINUTES: i64 = 10_080;

/// One stored guard policy (a `guard_policies` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// `gp_<24 hex>`.
    pub id: String,
    pub name: String,
    /// Free-form: unknown types are stored but inert.
    pub policy_type: String,
    /// A JSON object; its keys depend on the type.
    pub rules: Value,
    pub active: bool,
    /// `None` or empty: the policy is org-wide.
    pub agent_ids: Option<Vec<String>>,
}

/// A rejected policy write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The type or rules are malformed. Answer 400
    /// `{"error":"Validation failed","details": details}` and store nothing.
    #[error("Validation failed: {}", .details.join("; "))]
    Invalid { details: Vec<String> },
}

impl PolicyError {
    /// The human-readable messages, in the order they were found.
    pub fn details(&self) -> &[String] {
        match self {
            PolicyError::Invalid { details } => details,
        }
    }
}

impl From<Vec<String>> for PolicyError {
    fn from(details: Vec<String>) -> Self {
        PolicyError::Invalid { details }
    }
}

impl Policy {
    /// Whether this policy governs the agent: it is org-wide, or its `agent_ids` name the agent
    /// or the agent's base id (the part before the first `:` of a composed `parent:child` id),
    /// so a policy written for a parent also holds its subagents.
    pub fn applies_to(&self, agent_id: Option<&str>) -> bool {
        let Some(ids) = self.agent_ids.as_deref().filter(|ids| !ids.is_empty()) else {
            return true;
        };
        let Some(agent) = agent_id.filter(|a| !a.is_empty()) else {
            return false;
        };
        let base = agent
            .split_once(':')
            .map(|(base, _)| base)
            .filter(|base| !base.is_empty());
        ids.iter()
            .any(|id| id == agent || Some(id.as_str()) == base)
    }

    /// The warning an active policy of an unknown type adds to every decision: the operator
    /// sees it listed as on while it governs nothing, and must be told.
    pub fn inert_warning(&self) -> Option<String> {
        (self.active && !is_known_type(&self.policy_type)).then(|| {
            unenforceable(
                self,
                &format!("unknown policy_type \"{}\"", self.policy_type),
            )
        })
    }

    /// What this policy guarantees of every decision it governs, in one sentence (the proof
    /// report states it, and the report's recipes and replay test it).
    pub fn guarantee(&self) -> String {
        let empty = Map::new();
        let rules = self.rules.as_object().unwrap_or(&empty);
        let list = |key: &str| string_list(rules, key).collect::<Vec<_>>().join(", ");
        let verb = |default: Verdict| match rule_action(rules, default) {
            Verdict::Allow => "allowed",
            Verdict::Warn => "recorded with a warning",
            Verdict::RequireApproval => "held for approval",
            Verdict::Block => "blocked",
        };
        let prefix = rules
            .get("target_prefix")
            .and_then(Value::as_str)
            .map(|p| format!(" aimed under {p}"))
            .unwrap_or_default();
        let what = match self.policy_type.as_str() {
            "risk_threshold" => format!(
                "Every request with a final risk score of {} or more is {}",
                number(rules.get("threshold").and_then(Value::as_f64).unwrap_or(DEFAULT_RISK_THRESHOLD)),
                verb(Verdict::Block)
            ),
            "require_approval" => format!(
                "Every request of action type {}{prefix} is held for approval",
                list("action_types")
            ),
            "block_action_type" => format!(
                "Every request of action type {}{prefix} is blocked",
                list("action_types")
            ),
            "warn_action_type" => format!(
                "Every request of action type {}{prefix} is recorded with a warning",
                list("action_types")
            ),
            "protected_path" => format!(
                "Every request whose target or write paths match {} is {}",
                list("paths"),
                verb(Verdict::RequireApproval)
            ),
            "agent_allowlist" => format!(
                "Every request of an action type other than {} is {}",
                list("allowed_action_types"),
                verb(Verdict::Warn)
            ),
            "rate_limit" => format!(
                "An agent's guard requests from the {}th within {} minutes on are {}",
                number(rules.get("max_actions").and_then(Value::as_f64).unwrap_or(DEFAULT_RATE_LIMIT_MAX)),
                rules
                    .get("window_minutes")
                    .and_then(Value::as_i64)
                    .unwrap_or(DEFAULT_RATE_LIMIT_WINDOW_MINUTES),
                verb(Verdict::Warn)
            ),
            "allow_grant" => format!(
                "Held or warned requests of action type {}{prefix} are allowed until {}, unless a policy made them ungrantable",
                rules.get("action_type").and_then(Value::as_str).unwrap_or("?"),
                rules.get("expires_at").and_then(Value::as_str).unwrap_or("it is revoked")
            ),
            "delegation_constraint" => format!(
                "Every subagent of {} that breaks its delegated limits is {}",
                rules.get("parent").and_then(Value::as_str).unwrap_or("*"),
                match rules.get("escalate_action").and_then(Value::as_str) {
                    Some("block") => "blocked",
                    _ => "held for approval",
                }
            ),
            other => format!("Nothing: the policy type \"{other}\" is not enforced"),
        };
        match self.agent_ids.as_deref().filter(|ids| !ids.is_empty()) {
            Some(ids) => format!("{what} (agents {} and their subagents)", ids.join(", ")),
            None => what,
        }
    }

    /// Whether the guard enforces this policy's type.
    pub fn is_enforced(&self) -> bool {
        is_known_type(&self.policy_type)
    }

    /// [`validate_policy`] for this policy's type and rules.
    pub fn validate(&self) -> Result<(), PolicyError> {
        validate_policy(&self.policy_type, &self.rules).map_err(PolicyError::from)
    }

    /// `rules.ungrantable == true`: no standing grant may clear a verdict this policy raised.
    pub(crate) fn is_ungrantable(&self) -> bool {
        self.rules.get("ungrantable").and_then(Value::as_bool) == Some(true)
    }
}

pub(crate) fn is_known_type(policy_type: &str) -> bool {
    KNOWN_POLICY_TYPES.contains(&policy_type)
}

/// `Policy "<name>" (<id>) is ACTIVE but cannot enforce: <why>`.
pub(crate) fn unenforceable(policy: &Policy, why: &str) -> String {
    format!(
        "Policy \"{}\" ({}) is ACTIVE but cannot enforce: {why}",
        policy.name, policy.id
    )
}

/// Validates a policy write (`POST`/`PATCH /api/policies`). `Err` holds every message for the
/// 400 `details`. Unknown policy types are accepted: they are stored and inert.
pub fn validate_policy(policy_type: &str, rules: &Value) -> Result<(), Vec<String>> {
    let Some(rules) = rules.as_object() else {
        return Err(vec!["rules must be an object".to_owned()]);
    };
    // A bad action makes every other message moot, so it is reported alone.
    if let Some(action) = present(rules, "action") {
        let valid = action.as_str().is_some_and(|a| RULE_ACTIONS.contains(&a));
        if !valid && !action.as_str().is_some_and(str::is_empty) {
            return Err(vec![format!(
                "rules.action must be one of: {}",
                RULE_ACTIONS.join(", ")
            )]);
        }
    }

    let mut errors = Vec::new();
    validate_test_recipes(rules, &mut errors);
    if present(rules, "ungrantable").is_some_and(|v| !v.is_boolean()) {
        errors.push("rules.ungrantable must be a boolean".to_owned());
    }
    match policy_type {
        "risk_threshold" => validate_risk_threshold(rules, &mut errors),
        "require_approval" | "block_action_type" | "warn_action_type"
            if !non_empty_array(rules, "action_types") =>
        {
            errors.push(format!(
                "{policy_type} policy requires rules.action_types array"
            ));
        }
        "allow_grant" => validate_allow_grant(rules, &mut errors),
        "protected_path" => {
            if !non_empty_array(rules, "paths") {
                errors.push("protected_path policy requires rules.paths array".to_owned());
            } else if !all_strings_within(rules, "paths", 256) {
                errors.push(
                    "protected_path rules.paths must be non-empty strings (<=256 chars)".to_owned(),
                );
            }
        }
        "agent_allowlist" => {
            if !non_empty_array(rules, "allowed_action_types") {
                errors.push(
                    "agent_allowlist policy requires rules.allowed_action_types array".to_owned(),
                );
            } else if !all_strings_within(rules, "allowed_action_types", 128) {
                errors.push(
                    "agent_allowlist rules.allowed_action_types must be non-empty strings (<=128 chars)"
                        .to_owned(),
                );
            }
            // `allow` would make the policy a silent no-op.
            if present(rules, "action")
                .and_then(Value::as_str)
                .is_some_and(|a| a == "allow")
            {
                errors.push(
                    "agent_allowlist rules.action must be one of warn, require_approval, block when present"
                        .to_owned(),
                );
            }
        }
        "delegation_constraint" => validate_delegation(rules, &mut errors),
        "rate_limit" => {
            if present(rules, "max_actions").is_some_and(|v| !v.as_f64().is_some_and(|n| n > 0.0)) {
                errors.push("rate_limit policy requires rules.max_actions > 0".to_owned());
            }
            let window_ok = |v: &Value| {
                v.as_f64()
                    .is_some_and(|n| (1.0..=MAX_RATE_LIMIT_WINDOW_MINUTES as f64).contains(&n))
            };
            if present(rules, "window_minutes").is_some_and(|v| !window_ok(v)) {
                errors.push(format!(
                    "rate_limit policy requires rules.window_minutes between 1 and {MAX_RATE_LIMIT_WINDOW_MINUTES}"
                ));
            }
        }
        _ => {}
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn validate_risk_threshold(rules: &Map<String, Value>, errors: &mut Vec<String>) {
    let threshold = rules
        .get("threshold")
        .and_then(Value::as_f64)
        .filter(|t| (0.0..=100.0).contains(t));
    if threshold.is_none() {
        errors.push("risk_threshold policy requires rules.threshold (0-100)".to_owned());
    }
    let Some(contain_above) = present(rules, "contain_above") else {
        return;
    };
    match contain_above
        .as_f64()
        .filter(|c| c.fract() == 0.0 && (0.0..=100.0).contains(c))
    {
        None => {
            errors.push("risk_threshold rules.contain_above must be an integer 0-100".to_owned())
        }
        Some(c) if threshold.is_some_and(|t| c >= t) => errors.push(
            "risk_threshold rules.contain_above must be strictly below rules.threshold".to_owned(),
        ),
        Some(_) => {}
    }
    if rules.get("action").and_then(Value::as_str) != Some("require_approval") {
        errors.push(
            "risk_threshold rules.contain_above requires rules.action 'require_approval' (containment sits below the interrupt rail)"
                .to_owned(),
        );
    }
}

fn validate_allow_grant(rules: &Map<String, Value>, errors: &mut Vec<String>) {
    if rules
        .get("action_type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        errors.push("allow_grant policy requires rules.action_type".to_owned());
    }
    if present(rules, "target_prefix").is_some_and(|v| {
        !v.as_str()
            .is_some_and(|p| !p.is_empty() && p.chars().count() <= 256)
    }) {
        errors.push(
            "allow_grant rules.target_prefix must be a non-empty string (<=256 chars)".to_owned(),
        );
    }
    if present(rules, "max_risk")
        .is_some_and(|v| !v.as_f64().is_some_and(|r| (0.0..=100.0).contains(&r)))
    {
        errors.push("allow_grant rules.max_risk must be a number 0-100".to_owned());
    }
    if present(rules, "expires_at").is_some_and(|v| v.as_str().and_then(parse_timestamp).is_none())
    {
        errors.push(
            "rules.expires_at must be a parseable timestamp (ISO 8601 recommended)".to_owned(),
        );
    }
}

/// Inline recipes (`rules.tests`) that `POST /api/policies/test` runs through the evaluator;
/// malformed ones are refused at write time so they cannot be stored. Only the first bad
/// entry is reported.
fn validate_test_recipes(rules: &Map<String, Value>, errors: &mut Vec<String>) {
    let Some(tests) = present(rules, "tests") else {
        return;
    };
    let Some(tests) = tests.as_array() else {
        errors.push("rules.tests must be an array when present".to_owned());
        return;
    };
    for test in tests {
        let name_ok = test
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let error = if !test.is_object() || !name_ok {
            Some("each rules.tests entry requires a non-empty name string".to_owned())
        } else if !test.get("input").is_some_and(Value::is_object) {
            Some("each rules.tests entry requires an input object".to_owned())
        } else if !test
            .get("expect")
            .and_then(|e| e.get("decision"))
            .and_then(Value::as_str)
            .is_some_and(|d| RULE_ACTIONS.contains(&d))
        {
            Some(format!(
                "each rules.tests entry requires expect.decision in: {}",
                RULE_ACTIONS.join(", ")
            ))
        } else {
            None
        };
        if let Some(error) = error {
            errors.push(error);
            return;
        }
    }
}

/// `delegation_constraint` rules: every limit well-formed, and at least one limit.
fn validate_delegation(rules: &Map<String, Value>, errors: &mut Vec<String>) {
    if present(rules, "parent").is_some_and(|v| v.as_str().is_none_or(str::is_empty)) {
        errors.push("delegation_constraint rules.parent must be a non-empty string".to_owned());
    }
    for key in [
        "child_types",
        "allowed_action_types",
        "blocked_action_types",
        "blocked_path_globs",
    ] {
        if present(rules, key).is_some() && !all_strings_within(rules, key, 256) {
            errors.push(format!(
                "delegation_constraint rules.{key} must be an array of non-empty strings (<=256 chars)"
            ));
        }
    }
    if present(rules, "max_risk_score")
        .is_some_and(|v| !v.as_f64().is_some_and(|n| (0.0..=100.0).contains(&n)))
    {
        errors.push("delegation_constraint rules.max_risk_score must be 0-100".to_owned());
    }
    if present(rules, "max_depth")
        .is_some_and(|v| !v.as_u64().is_some_and(|n| (1..=8).contains(&n)))
    {
        errors.push("delegation_constraint rules.max_depth must be an integer 1-8".to_owned());
    }
    if present(rules, "escalate_action")
        .is_some_and(|v| !matches!(v.as_str(), Some("require_approval" | "block")))
    {
        errors.push(
            "delegation_constraint rules.escalate_action must be require_approval or block"
                .to_owned(),
        );
    }
    if present(rules, "require_verified_parent").is_some_and(|v| !v.is_boolean()) {
        errors.push(
            "delegation_constraint rules.require_verified_parent must be a boolean".to_owned(),
        );
    }
    const LIMITS: &[&str] = &[
        "max_risk_score",
        "allowed_action_types",
        "blocked_action_types",
        "blocked_path_globs",
        "max_depth",
        "require_verified_parent",
    ];
    if !LIMITS.iter().any(|k| present(rules, k).is_some()) {
        errors.push(format!(
            "delegation_constraint policy requires at least one of rules.{}",
            LIMITS.join(", rules.")
        ));
    }
}

/// A key that is present and not `null` (`null` means absent, contract §0.4).
fn present<'a>(rules: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    rules.get(key).filter(|v| !v.is_null())
}

fn non_empty_array(rules: &Map<String, Value>, key: &str) -> bool {
    rules
        .get(key)
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

fn all_strings_within(rules: &Map<String, Value>, key: &str, max_chars: usize) -> bool {
    rules.get(key).and_then(Value::as_array).is_some_and(|a| {
        a.iter().all(|v| {
            v.as_str()
                .is_some_and(|s| !s.is_empty() && s.chars().count() <= max_chars)
        })
    })
}

fn string_list<'a>(rules: &'a Map<String, Value>, key: &str) -> impl Iterator<Item = &'a str> {
    rules
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

pub(crate) fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

// ── Evaluation ──────────────────────────────────────────────────────────────────────────────

/// What one policy decided about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub action: Verdict,
    pub reason: String,
}

/// Judges `request` against one active, applicable policy of a known type. `None`: the policy
/// does not fire. `allow_grant` never fires here: grants only act in the downgrade pass.
pub(crate) fn evaluate_policy(
    policy: &Policy,
    rules: &Map<String, Value>,
    request: &GuardRequest,
    context: &GuardContext<'_>,
    final_score: u8,
) -> Option<Outcome> {
    let action_type = request.action_type.as_str();
    match policy.policy_type.as_str() {
        "risk_threshold" => risk_threshold(rules, final_score),
        "require_approval" => match_action_type(rules, request).then(|| {
            outcome(
                Verdict::RequireApproval,
                format!("Action type \"{action_type}\" requires approval"),
            )
        }),
        "block_action_type" => match_action_type(rules, request).then(|| {
            outcome(
                Verdict::Block,
                format!("Action type \"{action_type}\" is blocked by policy"),
            )
        }),
        "warn_action_type" => match_action_type(rules, request).then(|| {
            outcome(
                Verdict::Warn,
                format!("Action type \"{action_type}\" recorded for review"),
            )
        }),
        "protected_path" => {
            let patterns: Vec<&str> = string_list(rules, "paths")
                .filter(|p| !p.is_empty())
                .collect();
            if patterns.is_empty() {
                return None;
            }
            let hit = request
                .target
                .iter()
                .filter(|t| !t.is_empty())
                .chain(request.write_paths.iter())
                .find(|path| patterns.iter().any(|p| glob_matches(p, path)))?;
            Some(outcome(
                rule_action(rules, Verdict::RequireApproval),
                format!("Protected path touched: {hit}"),
            ))
        }
        "agent_allowlist" => {
            let mut allowed = string_list(rules, "allowed_action_types").peekable();
            if allowed.peek().is_none() || action_type.is_empty() {
                return None;
            }
            if allowed.any(|t| t == action_type) {
                return None;
            }
            Some(outcome(
                rule_action(rules, Verdict::Warn),
                format!("Action type \"{action_type}\" is outside the agent's allowlist"),
            ))
        }
        "rate_limit" => rate_limit(rules, request, context),
        "delegation_constraint" => delegation_constraint(rules, request, final_score),
        _ => None,
    }
}

/// `delegation_constraint`: caps what a composed subagent (`parent:child[:...]`) may do. It
/// governs only composed ids whose parent (the first segment) is `rules.parent` (`*`: any) and
/// whose child type (the second) is in `rules.child_types` (`*`: any); every limit it breaks
/// is a reason, and the verdict is `rules.escalate_action` (default `require_approval`).
fn delegation_constraint(
    rules: &Map<String, Value>,
    request: &GuardRequest,
    final_score: u8,
) -> Option<Outcome> {
    let agent = request.agent_id.as_deref()?;
    let segments: Vec<&str> = agent.split(':').collect();
    let (parent, child) = match segments.as_slice() {
        [parent, child, ..] if !parent.is_empty() && !child.is_empty() => (*parent, *child),
        _ => return None,
    };
    let wanted_parent = rules.get("parent").and_then(Value::as_str).unwrap_or("*");
    if wanted_parent != "*" && wanted_parent != parent {
        return None;
    }
    let mut child_types = string_list(rules, "child_types").peekable();
    if child_types.peek().is_some() && !child_types.any(|t| t == "*" || t == child) {
        return None;
    }
    let action_type = request.action_type.as_str();
    let mut broken = Vec::new();
    let depth = segments.len() - 1;
    if let Some(max) = rules.get("max_depth").and_then(Value::as_u64) {
        if depth as u64 > max {
            broken.push(format!("delegation depth {depth} exceeds max_depth {max}"));
        }
    }
    if let Some(ceiling) = rules.get("max_risk_score").and_then(Value::as_f64) {
        if f64::from(final_score) > ceiling {
            broken.push(format!(
                "risk {final_score} exceeds the delegated ceiling {}",
                number(ceiling)
            ));
        }
    }
    let mut allowed = string_list(rules, "allowed_action_types").peekable();
    if allowed.peek().is_some() && !allowed.any(|t| t == action_type) {
        broken.push(format!("action type \"{action_type}\" is not delegated"));
    }
    if string_list(rules, "blocked_action_types").any(|t| t == action_type) {
        broken.push(format!(
            "action type \"{action_type}\" is blocked for delegates"
        ));
    }
    let globs: Vec<&str> = string_list(rules, "blocked_path_globs")
        .filter(|g| !g.is_empty())
        .collect();
    if let Some(hit) = request
        .target
        .iter()
        .filter(|t| !t.is_empty())
        .chain(request.write_paths.iter())
        .find(|path| globs.iter().any(|g| glob_matches(g, path)))
    {
        broken.push(format!("path {hit} is blocked for delegates"));
    }
    let verified = request.verification == Some(super::Verification::Verified);
    if rules
        .get("require_verified_parent")
        .and_then(Value::as_bool)
        == Some(true)
        && !verified
    {
        broken.push("the parent's identity is not verified".to_owned());
    }
    if broken.is_empty() {
        return None;
    }
    let escalate = match rules.get("escalate_action").and_then(Value::as_str) {
        Some("block") => Verdict::Block,
        _ => Verdict::RequireApproval,
    };
    Some(outcome(
        escalate,
        format!("{} for {agent}", broken.join("; ")),
    ))
}

fn outcome(action: Verdict, reason: String) -> Outcome {
    Outcome { action, reason }
}

/// `rules.action` where the type lets it override the default; an unrecognised value falls
/// back to the type's default rather than silently disabling the policy.
fn rule_action(rules: &Map<String, Value>, default: Verdict) -> Verdict {
    rules
        .get("action")
        .and_then(Value::as_str)
        .and_then(Verdict::from_rule)
        .unwrap_or(default)
}

fn risk_threshold(rules: &Map<String, Value>, final_score: u8) -> Option<Outcome> {
    let threshold = rules
        .get("threshold")
        .and_then(Value::as_f64)
        .unwrap_or(DEFAULT_RISK_THRESHOLD);
    let score = f64::from(final_score);
    if score >= threshold {
        return Some(outcome(
            rule_action(rules, Verdict::Block),
            format!(
                "Risk score {final_score} >= threshold {}",
                number(threshold)
            ),
        ));
    }
    // The containment band would be `allow_contained`, but this server never negotiates it
    // (the SDK never advertises it), so the band interrupts, exactly as the upstream server's
    // capability negotiation ends up doing.
    let contain_above = rules.get("contain_above").and_then(Value::as_f64)?;
    let interrupting = rules.get("action").and_then(Value::as_str) == Some("require_approval");
    (interrupting && score >= contain_above).then(|| {
        outcome(
            Verdict::RequireApproval,
            format!(
                "Risk score {final_score} in containment band [{}, {}) but containment is not negotiated (requires approval)",
                number(contain_above),
                number(threshold)
            ),
        )
    })
}

/// `require_approval` / `block_action_type` / `warn_action_type`: the request's type is listed
/// and, when `rules.target_prefix` narrows the rule, the target or a write path is under it.
fn match_action_type(rules: &Map<String, Value>, request: &GuardRequest) -> bool {
    if !string_list(rules, "action_types").any(|t| t == request.action_type) {
        return false;
    }
    match rules.get("target_prefix").and_then(Value::as_str) {
        Some(prefix) if !prefix.is_empty() => target_prefix_matches(prefix, request),
        _ => true,
    }
}

fn rate_limit(
    rules: &Map<String, Value>,
    request: &GuardRequest,
    context: &GuardContext<'_>,
) -> Option<Outcome> {
    let agent_id = request.agent_id.as_deref().filter(|a| !a.is_empty())?;
    let max_actions = rules
        .get("max_actions")
        .and_then(Value::as_f64)
        .filter(|m| *m > 0.0)
        .unwrap_or(DEFAULT_RATE_LIMIT_MAX);
    let window = window_minutes(rules.get("window_minutes"));
    let since = context
        .now
        .checked_sub_signed(Duration::minutes(window))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let count = context.counter.decisions_since(agent_id, since);
    (f64::from(count) >= max_actions).then(|| {
        outcome(
            rule_action(rules, Verdict::Warn),
            format!(
                "Agent made {count} guard evaluations in {window}min (limit: {})",
                number(max_actions)
            ),
        )
    })
}

/// `window_minutes` as the upstream server reads it: truncated to an integer, 0 or unreadable
/// means the 60-minute default, then clamped to 1..=10080.
fn window_minutes(raw: Option<&Value>) -> i64 {
    let parsed = match raw {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    parsed
        .map(f64::trunc)
        .filter(|w| w.is_finite() && *w != 0.0)
        .map_or(DEFAULT_RATE_LIMIT_WINDOW_MINUTES, |w| {
            // Clamped first, so the cast cannot truncate.
            w.clamp(1.0, MAX_RATE_LIMIT_WINDOW_MINUTES as f64) as i64
        })
}

/// Renders a JSON number the way the reference server prints it: `80`, not `80.0`.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

// ── Grants ──────────────────────────────────────────────────────────────────────────────────

/// How one `allow_grant` policy relates to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GrantCheck {
    /// Another action type or target: the grant says nothing about this request.
    NotApplicable,
    /// The grant would match but cannot be judged; the reason completes
    /// `Policy "…" (…) is ACTIVE but cannot enforce: <reason>`.
    Unenforceable(&'static str),
    /// Lapsed: an inert lifecycle state, not a misconfiguration.
    Expired,
    /// The final risk is above the grant's ceiling (rendered as the reference server does).
    RiskNotCovered { ceiling: String },
    /// The grant covers this request.
    Covers,
}

pub(crate) fn check_grant(
    rules: &Map<String, Value>,
    request: &GuardRequest,
    now: DateTime<Utc>,
    final_score: u8,
) -> GrantCheck {
    if rules.get("action_type").and_then(Value::as_str) != Some(request.action_type.as_str())
        || request.action_type.is_empty()
    {
        return GrantCheck::NotApplicable;
    }
    match rules.get("target_prefix") {
        None | Some(Value::Null) => {}
        Some(Value::String(prefix)) => {
            if !target_prefix_matches(prefix, request) {
                return GrantCheck::NotApplicable;
            }
        }
        Some(_) => {
            return GrantCheck::Unenforceable("allow_grant rules.target_prefix is not a string")
        }
    }
    // A grant without a readable expiry is not honoured: grants that never lapse are how
    // approval policies end up silently nullified by a months-old "don't ask again".
    let Some(expires_at) = rules
        .get("expires_at")
        .and_then(Value::as_str)
        .and_then(parse_timestamp)
    else {
        return GrantCheck::Unenforceable("allow_grant has no valid rules.expires_at");
    };
    if expires_at <= now {
        return GrantCheck::Expired;
    }
    match rules.get("max_risk") {
        None | Some(Value::Null) => GrantCheck::Covers,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(ceiling) if f64::from(final_score) > ceiling => GrantCheck::RiskNotCovered {
                ceiling: number(ceiling),
            },
            Some(_) => GrantCheck::Covers,
            None => GrantCheck::Unenforceable("allow_grant rules.max_risk is not a number"),
        },
        Some(_) => GrantCheck::Unenforceable("allow_grant rules.max_risk is not a number"),
    }
}

// ── Targets and paths ───────────────────────────────────────────────────────────────────────

/// Whether the request's target or any write path lies under `prefix`: hosts match exactly or
/// as a subdomain (`stripe.com` covers `api.stripe.com`); paths match exactly or at a `/`
/// boundary (`/repo/src` covers `/repo/src/a.rs`, never `/repo/srcfoo`). URLs compare by host.
/// An empty prefix matches nothing.
pub(crate) fn target_prefix_matches(prefix: &str, request: &GuardRequest) -> bool {
    request
        .target
        .iter()
        .chain(request.write_paths.iter())
        .filter_map(|candidate| normalize_target(candidate))
        .any(|candidate| prefix_matches(prefix, &candidate))
}

/// A URL becomes its lower-cased host (no userinfo, no port); anything else is trimmed.
fn normalize_target(raw: &str) -> Option<Cow<'_, str>> {
    let t = raw.trim();
    if t.is_empty() {
        return None;
    }
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|s| t.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s)))
        .map(|s| s.len());
    let Some(scheme_len) = scheme_len else {
        return Some(Cow::Borrowed(t));
    };
    let rest = &t[scheme_len..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port
            .find(']')
            .map_or(host_port, |end| &host_port[..=end])
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then(|| Cow::Owned(host.to_ascii_lowercase()))
}

fn prefix_matches(prefix: &str, candidate: &str) -> bool {
    if prefix.is_empty() || candidate.is_empty() {
        return false;
    }
    if candidate == prefix {
        return true;
    }
    if prefix.contains('/') {
        let dir = prefix.strip_suffix('/').unwrap_or(prefix);
        return candidate
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'));
    }
    candidate
        .strip_suffix(prefix)
        .is_some_and(|head| head.ends_with('.'))
}

/// Protected-path glob match. `*` stays within a path segment, `?` is one character, `**`
/// spans any number of segments (including none). Paths and patterns are compared with
/// forward slashes, a Windows drive letter dropped and leading `./` stripped. A pattern that
/// is neither absolute nor starts with `**` also matches as a trailing sub-path, so
/// `middleware.js` catches `app/x/middleware.js` wherever the agent's cwd was.
pub(crate) fn glob_matches(pattern: &str, path: &str) -> bool {
    let path = normalize_path(path);
    let pattern = normalize_path(pattern);
    if path.is_empty() || pattern.is_empty() {
        return false;
    }
    let path_segments: Vec<&str> = path.split('/').collect();
    let mut pattern_segments: Vec<&str> = pattern.split('/').collect();
    if wildcard(
        &pattern_segments,
        &path_segments,
        |s| *s == "**",
        |p, s| segment_matches(p, s),
    ) {
        return true;
    }
    if pattern.starts_with("**") || pattern.starts_with('/') {
        return false;
    }
    pattern_segments.insert(0, "**");
    wildcard(
        &pattern_segments,
        &path_segments,
        |s| *s == "**",
        |p, s| segment_matches(p, s),
    )
}

fn normalize_path(raw: &str) -> String {
    let mut s = raw.trim().replace('\\', "/");
    let bytes = s.as_bytes();
    if bytes.len() >= 3 && bytes[0].is_ascii_alphabetic() && &bytes[1..3] == b":/" {
        s.replace_range(..2, "");
    }
    while s.starts_with("./") {
        s.replace_range(..2, "");
    }
    s
}

fn segment_matches(pattern: &str, segment: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let segment: Vec<char> = segment.chars().collect();
    wildcard(
        &pattern,
        &segment,
        |c| *c == '*',
        |p, c| *p == '?' || p == c,
    )
}

/// Greedy wildcard matching with backtracking to the last star: linear-ish, no recursion,
/// so a hostile pattern cannot make matching explode.
fn wildcard<T>(
    pattern: &[T],
    input: &[T],
    is_star: impl Fn(&T) -> bool,
    matches_one: impl Fn(&T, &T) -> bool,
) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while i < input.len() {
        if p < pattern.len() && is_star(&pattern[p]) {
            backtrack = Some((p, i));
            p += 1;
        } else if p < pattern.len() && matches_one(&pattern[p], &input[i]) {
            p += 1;
            i += 1;
        } else if let Some((star, consumed)) = backtrack {
            p = star + 1;
            i = consumed + 1;
            backtrack = Some((star, consumed + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(is_star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(policy_type: &str, rules: Value) -> Vec<String> {
        validate_policy(policy_type, &rules)
            .err()
            .unwrap_or_default()
    }

    #[test]
    fn validation_accepts_well_formed_rules_of_every_type() {
        let ok = [
            ("risk_threshold", json!({"threshold": 80})),
            ("risk_threshold", json!({"threshold": 0, "action": "warn"})),
            (
                "risk_threshold",
                json!({"threshold": 80, "contain_above": 60, "action": "require_approval"}),
            ),
            (
                "require_approval",
                json!({"action_types": ["deploy"], "target_prefix": "/prod"}),
            ),
            ("block_action_type", json!({"action_types": ["security"]})),
            (
                "warn_action_type",
                json!({"action_types": ["post"], "ungrantable": true}),
            ),
            (
                "allow_grant",
                json!({"action_type": "deploy", "target_prefix": "api.stripe.com", "max_risk": 60,
                       "expires_at": "2030-01-01T00:00:00Z"}),
            ),
            ("allow_grant", json!({"action_type": "deploy"})),
            (
                "protected_path",
                json!({"paths": ["**/.env", "src/auth/**"], "action": "block"}),
            ),
            (
                "agent_allowlist",
                json!({"allowed_action_types": ["build", "test"]}),
            ),
            ("rate_limit", json!({})),
            (
                "rate_limit",
                json!({"max_actions": 5, "window_minutes": 10080}),
            ),
            ("webhook_check", json!({"url": "ftp://not-validated-here"})),
            ("some_future_type", json!({"anything": [1, 2, 3]})),
            (
                "require_approval",
                json!({"action_types": ["deploy"], "tests": [
                    {"name": "holds deploy", "input": {"action_type": "deploy"},
                     "expect": {"decision": "require_approval"}}
                ]}),
            ),
        ];
        for (t, rules) in ok {
            assert_eq!(validate_policy(t, &rules), Ok(()), "{t} {rules}");
        }
    }

    #[test]
    fn validation_messages_per_type() {
        let msg = "risk_threshold policy requires rules.threshold (0-100)";
        assert_eq!(errors("risk_threshold", json!({})), vec![msg]);
        assert_eq!(
            errors("risk_threshold", json!({"threshold": 101})),
            vec![msg]
        );
        assert_eq!(
            errors("risk_threshold", json!({"threshold": "80"})),
            vec![msg]
        );
        assert_eq!(
            errors(
                "risk_threshold",
                json!({"threshold": 50, "contain_above": 60, "action": "require_approval"})
            ),
            vec!["risk_threshold rules.contain_above must be strictly below rules.threshold"]
        );
        assert_eq!(
            errors("risk_threshold", json!({"threshold": 50, "contain_above": 10.5})),
            vec![
                "risk_threshold rules.contain_above must be an integer 0-100",
                "risk_threshold rules.contain_above requires rules.action 'require_approval' (containment sits below the interrupt rail)"
            ]
        );

        for t in ["require_approval", "block_action_type", "warn_action_type"] {
            let expected = vec![format!("{t} policy requires rules.action_types array")];
            assert_eq!(errors(t, json!({})), expected);
            assert_eq!(errors(t, json!({"action_types": []})), expected);
            assert_eq!(errors(t, json!({"action_types": "deploy"})), expected);
        }

        assert_eq!(
            errors("allow_grant", json!({})),
            vec!["allow_grant policy requires rules.action_type"]
        );
        assert_eq!(
            errors(
                "allow_grant",
                json!({"action_type": "deploy", "target_prefix": "", "max_risk": 101, "expires_at": "tomorrow"})
            ),
            vec![
                "allow_grant rules.target_prefix must be a non-empty string (<=256 chars)",
                "allow_grant rules.max_risk must be a number 0-100",
                "rules.expires_at must be a parseable timestamp (ISO 8601 recommended)"
            ]
        );

        assert_eq!(
            errors("protected_path", json!({"paths": []})),
            vec!["protected_path policy requires rules.paths array"]
        );
        assert_eq!(
            errors("protected_path", json!({"paths": ["ok", ""]})),
            vec!["protected_path rules.paths must be non-empty strings (<=256 chars)"]
        );

        assert_eq!(
            errors("agent_allowlist", json!({"action": "allow"})),
            vec![
                "agent_allowlist policy requires rules.allowed_action_types array",
                "agent_allowlist rules.action must be one of warn, require_approval, block when present"
            ]
        );
        assert_eq!(
            errors("agent_allowlist", json!({"allowed_action_types": [7]})),
            vec!["agent_allowlist rules.allowed_action_types must be non-empty strings (<=128 chars)"]
        );

        assert_eq!(
            errors("rate_limit", json!({"max_actions": 0, "window_minutes": 0})),
            vec![
                "rate_limit policy requires rules.max_actions > 0",
                "rate_limit policy requires rules.window_minutes between 1 and 10080"
            ]
        );
        assert_eq!(
            errors("rate_limit", json!({"window_minutes": 10081})),
            vec!["rate_limit policy requires rules.window_minutes between 1 and 10080"]
        );
    }

    #[test]
    fn validation_of_common_rule_keys() {
        // A bad action is reported alone, whatever the type.
        assert_eq!(
            errors("risk_threshold", json!({"action": "deny"})),
            vec!["rules.action must be one of: allow, warn, block, require_approval"]
        );
        assert_eq!(
            errors("unknown_type", json!({"action": 3})),
            vec!["rules.action must be one of: allow, warn, block, require_approval"]
        );
        assert_eq!(errors("x", json!([])), vec!["rules must be an object"]);
        assert_eq!(errors("x", json!("{}")), vec!["rules must be an object"]);
        assert_eq!(
            errors("x", json!({"ungrantable": "yes"})),
            vec!["rules.ungrantable must be a boolean"]
        );
        assert_eq!(
            errors("x", json!({"tests": {}})),
            vec!["rules.tests must be an array when present"]
        );
        assert_eq!(
            errors("x", json!({"tests": [{"name": ""}]})),
            vec!["each rules.tests entry requires a non-empty name string"]
        );
        assert_eq!(
            errors("x", json!({"tests": [{"name": "a", "input": 1}]})),
            vec!["each rules.tests entry requires an input object"]
        );
        assert_eq!(
            errors("x", json!({"tests": [{"name": "a", "input": {}, "expect": {"decision": "maybe"}}]})),
            vec!["each rules.tests entry requires expect.decision in: allow, warn, block, require_approval"]
        );
        // null means absent.
        assert_eq!(
            validate_policy("x", &json!({"action": null, "tests": null})),
            Ok(())
        );
    }

    #[test]
    fn policy_error_carries_the_details() {
        let policy = Policy {
            id: "gp_000000000000000000000001".into(),
            name: "p".into(),
            policy_type: "protected_path".into(),
            rules: json!({}),
            active: true,
            agent_ids: None,
        };
        let err = policy.validate().unwrap_err();
        assert_eq!(
            err.details(),
            ["protected_path policy requires rules.paths array"]
        );
        assert_eq!(
            err.to_string(),
            "Validation failed: protected_path policy requires rules.paths array"
        );
    }

    #[test]
    fn globs() {
        let cases: &[(&str, &str, bool)] = &[
            ("**/.env", ".env", true),
            ("**/.env", "app/config/.env", true),
            ("**/.env", "/home/me/app/.env", true),
            ("**/.env", "prod.env", false),
            ("**/.env", "app/.env.local", false),
            ("**/.env*", "app/.env.local", true),
            ("src/auth/**", "src/auth/login.rs", true),
            ("src/auth/**", "src/auth/deep/er/x.rs", true),
            ("src/auth/**", "src/authz/x.rs", false),
            ("src/*.rs", "src/main.rs", true),
            ("src/*.rs", "src/bin/main.rs", false),
            ("src/?.rs", "src/a.rs", true),
            ("src/?.rs", "src/ab.rs", false),
            ("src/?.rs", "src/é.rs", true),
            ("middleware.js", "app/x/middleware.js", true),
            ("middleware.js", "app/x/middleware.jsx", false),
            ("/etc/**", "/etc/passwd", true),
            ("/etc/**", "/var/etc/passwd", false),
            ("**/secrets/**", "C:\\Users\\me\\secrets\\key.pem", true),
            ("config/*.yml", "./config/prod.yml", true),
            ("*.pem", "certs/server.pem", true),
            ("**", "anything/at/all", true),
            ("a/**/b/**/c", "a/x/b/y/z/c", true),
            ("a/**/b/**/c", "a/x/y/z/c", false),
            ("", "x", false),
            ("x", "", false),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(
                glob_matches(pattern, path),
                *expected,
                "{pattern} vs {path}"
            );
        }
        // Many stars against a long path stays fast (no exponential backtracking).
        let long = vec!["a"; 200].join("/");
        assert!(!glob_matches("**/a/**/a/**/a/**/a/**/b", &long));
        assert!(!segment_matches("*a*a*a*a*a*a*b", &"a".repeat(500)));
    }

    #[test]
    fn target_prefixes() {
        let req = |target: &str, write_paths: &[&str]| GuardRequest {
            action_type: "api".into(),
            target: Some(target.into()),
            write_paths: write_paths.iter().map(|p| p.to_string()).collect(),
            ..GuardRequest::default()
        };
        assert!(target_prefix_matches(
            "api.stripe.com",
            &req("https://api.stripe.com/v1/charges", &[])
        ));
        assert!(target_prefix_matches(
            "stripe.com",
            &req("https://user:pw@API.Stripe.com:443/x", &[])
        ));
        assert!(!target_prefix_matches(
            "stripe.com",
            &req("https://evilstripe.com/", &[])
        ));
        assert!(!target_prefix_matches(
            "stripe.com",
            &req("https://stripe.com.evil.io/", &[])
        ));
        assert!(target_prefix_matches(
            "/repo/src",
            &req("/repo/src/a.rs", &[])
        ));
        // The directory itself is not "under" it (as upstream).
        assert!(!target_prefix_matches("/repo/src/", &req("/repo/src", &[])));
        assert!(!target_prefix_matches(
            "/repo/src",
            &req("/repo/srcfoo/a.rs", &[])
        ));
        assert!(target_prefix_matches(
            "/repo/src",
            &req("/elsewhere", &["/repo/src/lib.rs"])
        ));
        assert!(!target_prefix_matches("", &req("/repo", &[])));
        assert!(!target_prefix_matches("/repo", &req("  ", &[])));
        assert_eq!(
            normalize_target("https://[::1]:8080/x").as_deref(),
            Some("[::1]")
        );
        assert_eq!(
            normalize_target("HTTPS://Example.COM").as_deref(),
            Some("example.com")
        );
        assert_eq!(normalize_target(" ./a ").as_deref(), Some("./a"));
        assert_eq!(normalize_target("http:///nohost"), None);
    }

    #[test]
    fn applies_to_scoping() {
        let mut p = Policy {
            id: "gp_1".into(),
            name: "p".into(),
            policy_type: "risk_threshold".into(),
            rules: json!({}),
            active: true,
            agent_ids: None,
        };
        assert!(p.applies_to(None));
        assert!(p.applies_to(Some("a")));
        p.agent_ids = Some(vec![]);
        assert!(p.applies_to(Some("a")));
        assert!(p.applies_to(None));
        p.agent_ids = Some(vec!["claude-code".into()]);
        assert!(p.applies_to(Some("claude-code")));
        assert!(p.applies_to(Some("claude-code:explore")));
        assert!(p.applies_to(Some("claude-code:explore:deep")));
        assert!(!p.applies_to(Some("claude-coder")));
        assert!(!p.applies_to(Some("other:claude-code")));
        assert!(!p.applies_to(Some(":claude-code")));
        assert!(!p.applies_to(None));
        assert!(!p.applies_to(Some("")));
        p.agent_ids = Some(vec!["claude-code:explore".into()]);
        assert!(p.applies_to(Some("claude-code:explore")));
        assert!(!p.applies_to(Some("claude-code")));
        assert!(!p.applies_to(Some("claude-code:plan")));
    }

    #[test]
    fn inert_warning_only_for_active_unknown_types() {
        let mut p = Policy {
            id: "gp_abc".into(),
            name: "Webhook gate".into(),
            policy_type: "webhook_check".into(),
            rules: json!({}),
            active: true,
            agent_ids: None,
        };
        assert_eq!(
            p.inert_warning().as_deref(),
            Some("Policy \"Webhook gate\" (gp_abc) is ACTIVE but cannot enforce: unknown policy_type \"webhook_check\"")
        );
        p.active = false;
        assert_eq!(p.inert_warning(), None);
        p.active = true;
        for t in KNOWN_POLICY_TYPES {
            p.policy_type = (*t).to_owned();
            assert_eq!(p.inert_warning(), None, "{t}");
        }
    }

    #[test]
    fn numbers_render_like_the_reference_server() {
        assert_eq!(number(80.0), "80");
        assert_eq!(number(80.5), "80.5");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn window_minutes_defaults_and_clamps() {
        assert_eq!(window_minutes(None), 60);
        assert_eq!(window_minutes(Some(&json!(0))), 60);
        assert_eq!(window_minutes(Some(&json!(90.7))), 90);
        assert_eq!(window_minutes(Some(&json!("15"))), 15);
        assert_eq!(window_minutes(Some(&json!(-5))), 1);
        assert_eq!(window_minutes(Some(&json!(99999))), 10_080);
        assert_eq!(window_minutes(Some(&json!(true))), 60);
    }
}

//! The guard engine: decides allow / warn / require_approval / block for "may I do X?".
//!
//! Pure and deterministic (contract §2): everything that varies — the org's policies, its
//! kill switch, the agent's recent decision count, an operator's approval, the clock — comes in
//! through [`GuardContext`], so an auditor can replay a recorded decision and get the same
//! [`Evaluation`] back. Regexes are compiled once per process.
//!
//! Evaluation order: org halt (short-circuits to block) → every active policy that applies to
//! the agent, in slice order, each only able to raise the verdict → the downgrade passes
//! (`allow_grant` policies, then an operator's approval of this exact action), which never
//! touch `block`.

mod injection;
mod policy;
mod risk;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

pub use injection::{scan as scan_prompt_injection, InjectionFinding, InjectionScan, Severity};
pub use policy::{validate_policy, Policy, PolicyError, KNOWN_POLICY_TYPES};
pub use risk::{score_risk, RiskBase, RiskBreakdown, RiskModifier};

use policy::{check_grant, evaluate_policy, unenforceable, GrantCheck, Outcome};

/// The engine's name and version, recorded with every decision: a replay by another version
/// says so beside any difference. Bump the crate version when `evaluate` changes meaning.
pub const ENGINE_VERSION: &str = concat!("dashclaw-guard/", env!("CARGO_PKG_VERSION"));

/// `matched_policies` marker of the org kill switch.
pub const MATCHED_ORG_HALT: &str = "builtin:org_halt";
/// `matched_policies` marker of the operator-approval downgrade.
pub const MATCHED_OPERATOR_APPROVAL: &str = "builtin:operator_approval";
/// `matched_policies` marker of an approved plan step covering the request.
pub const MATCHED_PLAN_GRANT: &str = "builtin:plan_grant";
/// `matched_policies` marker of a denied plan step forcing a block.
pub const MATCHED_PLAN_DENY: &str = "builtin:plan_deny";
/// The client capability that makes an operator's approval usable (run_governed sends it).
pub const EXECUTION_CLAIMS: &str = "execution_claims";

const SUPERSEDED_PREFIX: &str = "superseded by grant: ";

/// Guard verdicts, ordered by severity: `Allow < Warn < RequireApproval < Block`.
///
/// `allow_contained` is deliberately absent: the SDK never advertises it, so the reference
/// server negotiates it down to `require_approval`, and so does this one.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    #[default]
    Allow,
    Warn,
    RequireApproval,
    Block,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Warn => "warn",
            Verdict::RequireApproval => "require_approval",
            Verdict::Block => "block",
        }
    }

    /// The verdict named as on the wire (`as_str`'s inverse).
    pub fn parse(s: &str) -> Option<Verdict> {
        Self::from_rule(s)
    }

    /// A policy's `rules.action` value.
    pub(crate) fn from_rule(action: &str) -> Option<Verdict> {
        match action {
            "allow" => Some(Verdict::Allow),
            "warn" => Some(Verdict::Warn),
            "require_approval" => Some(Verdict::RequireApproval),
            "block" => Some(Verdict::Block),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an agent asks about: the validated guard inputs (the HTTP layer validates and fills
/// this). Optional fields are omitted when serialized so the stored form stays compact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardRequest {
    pub action_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_goal: Option<String>,
    /// Client-reported, 0..=100; can only raise risk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk_score: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub systems_touched: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reversible: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_capabilities: Vec<String>,
    /// Hash of the evidence `act`, computed by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act_hash: Option<String>,
    /// What the server established of the agent's identity (never read from the body):
    /// absent when no identity token came with the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// How the agent's identity token checked out (contract 1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// Signed by a registered key or the configured issuer; `agent_id` is its subject.
    Verified,
    /// No token could be checked (none configured, or the issuer was unreachable).
    Unverified,
    /// A token that failed its checks (signature, expiry, audience, replayed `jti`).
    Invalid,
}

impl Verification {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Unverified => "unverified",
            Self::Invalid => "invalid",
        }
    }
}

/// The org's kill switch as the engine needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt<'a> {
    pub actor: &'a str,
    pub reason: &'a str,
}

/// Authority that can downgrade require_approval to allow: an operator's approval of this exact
/// action (used when an approved action claims execution). The caller finds it (same agent,
/// goal, type, act hash, approved within 15 minutes, unused); the engine only applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperatorGrant<'a> {
    pub action_id: &'a str,
    pub approved_by: &'a str,
}

/// A reviewed plan step that names this request (same agent, action type and act hash, its
/// plan in force, an approved step's grant unused). The caller finds it; the engine applies
/// it: a denied step blocks, an approved one downgrades a hold or a warning to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanStepGrant<'a> {
    pub plan_id: &'a str,
    pub step_id: &'a str,
    pub seq: u32,
    pub approved: bool,
    pub reviewed_by: &'a str,
}

/// Counts this agent's earlier guard decisions (for rate_limit policies). Implemented by the
/// caller from memory; `since` is inclusive.
pub trait DecisionCounter {
    fn decisions_since(&self, agent_id: &str, since: DateTime<Utc>) -> u32;
}

/// Everything besides the request that a decision depends on.
#[derive(Clone, Copy)]
pub struct GuardContext<'a> {
    /// The org's policy set, active and inactive.
    pub policies: &'a [Policy],
    pub halt: Option<Halt<'a>>,
    pub counter: &'a dyn DecisionCounter,
    pub operator_grant: Option<OperatorGrant<'a>>,
    pub plan_step: Option<PlanStepGrant<'a>>,
    pub now: DateTime<Utc>,
}

/// The engine's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub decision: Verdict,
    /// Why the action is held or blocked; empty unless the decision is require_approval or block.
    pub reasons: Vec<String>,
    pub warnings: Vec<String>,
    /// Policy ids and builtin markers, in evaluation order.
    pub matched_policies: Vec<String>,
    /// The final risk score.
    pub risk_score: u8,
    pub risk_breakdown: RiskBreakdown,
}

/// Evaluates one guard request. Pure, deterministic and cheap (microseconds): the same inputs
/// always give the same [`Evaluation`], which is what lets a recorded decision be replayed.
pub fn evaluate(request: &GuardRequest, context: &GuardContext<'_>) -> Evaluation {
    let risk_breakdown = score_risk(request);
    let score = risk_breakdown.final_score;
    let mut acc = Accumulator::default();

    if let Some(halt) = context.halt {
        // Halt means stop: no policy is consulted, and nothing downgrades a block.
        acc.raise(Verdict::Block);
        acc.reasons.push(format!(
            "Org halted by {}: {}",
            or_default(halt.actor, "admin"),
            or_default(halt.reason, "no reason given")
        ));
        acc.matched_policies.push(MATCHED_ORG_HALT.to_owned());
        return acc.finish(risk_breakdown);
    }

    let agent_id = request.agent_id.as_deref();
    let applicable: Vec<&Policy> = context
        .policies
        .iter()
        .filter(|p| p.active && p.applies_to(agent_id))
        .collect();

    for &policy in &applicable {
        if let Some(warning) = policy.inert_warning() {
            acc.warnings.push(warning);
            continue;
        }
        let Some(rules) = policy.rules.as_object() else {
            acc.warnings
                .push(unenforceable(policy, "rules is not a JSON object"));
            continue;
        };
        if let Some(outcome) = evaluate_policy(policy, rules, request, context, score) {
            acc.apply(policy, outcome);
        }
    }

    apply_allow_grants(&applicable, request, context, score, &mut acc);
    apply_plan_step(context, &mut acc);
    apply_operator_grant(request, context, &mut acc);
    acc.finish(risk_breakdown)
}

/// `allow_grant` post-pass: the first grant covering this request downgrades warn or
/// require_approval to allow. A verdict raised by an ungrantable policy is never cleared by a
/// standing grant.
fn apply_allow_grants(
    policies: &[&Policy],
    request: &GuardRequest,
    context: &GuardContext<'_>,
    score: u8,
    acc: &mut Accumulator<'_>,
) {
    if !matches!(acc.decision, Verdict::Warn | Verdict::RequireApproval) {
        return;
    }
    for &grant in policies.iter().filter(|p| p.policy_type == "allow_grant") {
        // Malformed rules were already reported by the raise pass.
        let Some(rules) = grant.rules.as_object() else {
            continue;
        };
        match check_grant(rules, request, context.now, score) {
            GrantCheck::NotApplicable | GrantCheck::Expired => {}
            GrantCheck::Unenforceable(why) => acc.warnings.push(unenforceable(grant, why)),
            // Announced, and the next grant still gets its chance: a silent skip reads as
            // "my grant stopped working" with nothing in the record to say why.
            GrantCheck::RiskNotCovered { ceiling } => acc.warnings.push(format!(
                "{}: grant does not cover risk {score} (ceiling {ceiling})",
                grant.name
            )),
            GrantCheck::Covers => {
                if let Some(gate) = acc.gating.iter().find(|g| g.ungrantable) {
                    acc.warnings.push(format!(
                        "{}: marked ungrantable — allow_grant policies cannot clear this verdict",
                        gate.name
                    ));
                    return;
                }
                acc.warnings.push(format!(
                    "{}: grant downgraded {} to allow",
                    grant.name, acc.decision
                ));
                acc.matched_policies.push(grant.id.clone());
                acc.downgrade_to_allow();
                return;
            }
        }
    }
}

/// Operator-approval post-pass: an operator approved this exact action, which is claiming
/// execution now. Unlike a standing grant this is a human decision about this one action, so
/// `ungrantable` does not stop it (otherwise an approved, ungrantable-gated action could never
/// be claimed and run_governed would always fail after approval).
fn apply_operator_grant(
    request: &GuardRequest,
    context: &GuardContext<'_>,
    acc: &mut Accumulator<'_>,
) {
    if acc.decision != Verdict::RequireApproval
        || !request
            .client_capabilities
            .iter()
            .any(|c| c == EXECUTION_CLAIMS)
    {
        return;
    }
    let Some(grant) = context.operator_grant else {
        return;
    };
    let act_bound = if request.act_hash.is_some() {
        ", act-bound"
    } else {
        ""
    };
    acc.warnings.push(format!(
        "Covered by operator approval {} (approved by {}{act_bound}) — require_approval downgraded to allow",
        grant.action_id, grant.approved_by
    ));
    acc.matched_policies
        .push(MATCHED_OPERATOR_APPROVAL.to_owned());
    acc.downgrade_to_allow();
}

/// Plan post-pass: an operator reviewed this exact act in a plan. Denied, it blocks whatever
/// the policies said; approved, it clears a hold or a warning (never a block).
fn apply_plan_step(context: &GuardContext<'_>, acc: &mut Accumulator<'_>) {
    let Some(step) = context.plan_step else {
        return;
    };
    if !step.approved {
        acc.raise(Verdict::Block);
        acc.reasons.push(format!(
            "Plan {} step {} was denied at review by {}",
            step.plan_id, step.seq, step.reviewed_by
        ));
        acc.matched_policies.push(MATCHED_PLAN_DENY.to_owned());
        return;
    }
    if !matches!(acc.decision, Verdict::Warn | Verdict::RequireApproval) {
        return;
    }
    acc.warnings.push(format!(
        "Covered by plan {} step {} (approved by {}, act-bound) — {} downgraded to allow",
        step.plan_id, step.seq, step.reviewed_by, acc.decision
    ));
    acc.matched_policies.push(MATCHED_PLAN_GRANT.to_owned());
    acc.downgrade_to_allow();
}

fn or_default<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.trim().is_empty() {
        default
    } else {
        value
    }
}

/// A policy that raised warn or require_approval, remembered so the grant pass can honour
/// `rules.ungrantable`. Blocks need no entry: nothing downgrades them.
struct Gate<'a> {
    name: &'a str,
    ungrantable: bool,
}

#[derive(Default)]
struct Accumulator<'a> {
    decision: Verdict,
    reasons: Vec<String>,
    warnings: Vec<String>,
    matched_policies: Vec<String>,
    gating: Vec<Gate<'a>>,
}

impl<'a> Accumulator<'a> {
    fn raise(&mut self, verdict: Verdict) {
        self.decision = self.decision.max(verdict);
    }

    fn apply(&mut self, policy: &'a Policy, outcome: Outcome) {
        let line = format!("{}: {}", policy.name, outcome.reason);
        match outcome.action {
            Verdict::Allow => {}
            Verdict::Warn => self.warnings.push(line),
            Verdict::RequireApproval | Verdict::Block => self.reasons.push(line),
        }
        if matches!(outcome.action, Verdict::Warn | Verdict::RequireApproval) {
            self.gating.push(Gate {
                name: &policy.name,
                ungrantable: policy.is_ungrantable(),
            });
        }
        self.matched_policies.push(policy.id.clone());
        self.raise(outcome.action);
    }

    /// The held verdict's reasons stop deciding but stay visible: they are why the action
    /// would have needed approval, which the record must keep.
    fn downgrade_to_allow(&mut self) {
        self.decision = Verdict::Allow;
        self.warnings.extend(
            self.reasons
                .drain(..)
                .map(|r| format!("{SUPERSEDED_PREFIX}{r}")),
        );
    }

    fn finish(self, risk_breakdown: RiskBreakdown) -> Evaluation {
        Evaluation {
            decision: self.decision,
            reasons: self.reasons,
            warnings: self.warnings,
            matched_policies: self.matched_policies,
            risk_score: risk_breakdown.final_score,
            risk_breakdown,
        }
    }
}

/// How many guard patterns this process has compiled. Every regex of the engine goes through
/// [`compile`] from a `LazyLock`, so this stops growing after first use; a test holds it to that.
static COMPILED_PATTERNS: AtomicUsize = AtomicUsize::new(0);

/// Compiles one of the engine's fixed patterns. They are constants, so failure is a bug in
/// this module that the tests catch, not a runtime condition.
pub(crate) fn compile(source: &str, case_insensitive: bool) -> Regex {
    COMPILED_PATTERNS.fetch_add(1, Ordering::Relaxed);
    RegexBuilder::new(source)
        .case_insensitive(case_insensitive)
        .build()
        .expect("guard pattern is a valid regex")
}

#[cfg(test)]
pub(crate) fn compiled_pattern_count() -> usize {
    COMPILED_PATTERNS.load(Ordering::Relaxed)
}

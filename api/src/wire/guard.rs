//! The guard's wire shapes: its answer (contract 1.2), the answer to a retry within the replay
//! window (1.4), and a decision as the history endpoint and the live stream show it (3).

use dashclaw_domain::guard::RiskBreakdown;
use dashclaw_domain::guard_decision::{DecisionPurpose, GuardDecisionRecord};
use dashclaw_domain::OrgId;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ts, SecuritySummary};

/// How a risk score was derived: a base for the action type, additive modifiers, the
/// client's score (which can only raise it), and the score policies were judged on.
#[derive(Debug, Serialize, ToSchema)]
pub struct RiskBreakdownBody {
    pub base: RiskBase,
    pub modifiers: Vec<RiskModifier>,
    /// clamp(base + the modifiers, 0, 100).
    pub server_total: u8,
    /// The request's risk_score clamped to 100; null when the client sent none.
    pub client_reported: Option<u8>,
    /// max(server_total, client_reported).
    pub effective: u8,
    /// The score policies are judged on.
    #[serde(rename = "final")]
    pub final_score: u8,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RiskBase {
    pub action_type: String,
    pub score: u8,
}

/// One additive term of a risk score.
#[derive(Debug, Serialize, ToSchema)]
pub struct RiskModifier {
    pub factor: String,
    pub delta: i32,
}

impl From<&RiskBreakdown> for RiskBreakdownBody {
    fn from(r: &RiskBreakdown) -> Self {
        Self {
            base: RiskBase {
                action_type: r.base.action_type.clone(),
                score: r.base.score,
            },
            modifiers: r
                .modifiers
                .iter()
                .map(|m| RiskModifier {
                    factor: m.factor.clone(),
                    delta: m.delta,
                })
                .collect(),
            server_total: r.server_total,
            client_reported: r.client_reported,
            effective: r.effective,
            final_score: r.final_score,
        }
    }
}

/// The guard's answer (`POST /api/guard`, and the `decision` of a recorded action).
#[derive(Debug, Serialize, ToSchema)]
pub struct GuardResult {
    /// allow, warn, require_approval or block.
    pub decision: String,
    pub decision_id: String,
    /// The decision id, or the recorded action's id with `?record=true`.
    pub action_id: String,
    /// Always true: an action must be claimed before it runs (contract 5.3).
    pub execution_claim_required: bool,
    pub claim_protocol: u8,
    /// The reasons joined by "; ", or null.
    pub reason: Option<String>,
    pub reasons: Vec<String>,
    pub warnings: Vec<String>,
    /// The warnings, then the reasons.
    pub signals: Vec<String>,
    pub matched_policies: Vec<String>,
    pub risk_score: u8,
    pub agent_risk_score: Option<u8>,
    pub risk_breakdown: RiskBreakdownBody,
    /// Always "declared".
    pub intent_source: String,
    /// Always "unverified".
    pub verification_status: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    /// SHA-256 of the policy set in force.
    pub policy_set_version: String,
    pub evaluated_at: String,
    /// With `?record=true`: whether the action was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<bool>,
    /// With `?record=true`: why it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<SecuritySummary>,
}

impl From<&GuardDecisionRecord> for GuardResult {
    fn from(d: &GuardDecisionRecord) -> Self {
        let e = &d.evaluation;
        Self {
            decision: e.decision.as_str().to_owned(),
            decision_id: d.decision_id.to_string(),
            action_id: d.decision_id.to_string(),
            execution_claim_required: true,
            claim_protocol: 1,
            reason: reason(&e.reasons),
            reasons: e.reasons.clone(),
            warnings: e.warnings.clone(),
            signals: e.warnings.iter().chain(&e.reasons).cloned().collect(),
            matched_policies: e.matched_policies.clone(),
            risk_score: e.risk_score,
            agent_risk_score: d.request.risk_score,
            risk_breakdown: RiskBreakdownBody::from(&e.risk_breakdown),
            intent_source: "declared".into(),
            verification_status: "unverified".into(),
            agent_id: d.request.agent_id.clone(),
            agent_name: d.request.agent_name.clone(),
            policy_set_version: d.policy_set_version.clone(),
            evaluated_at: ts(d.evaluated_at),
            recorded: None,
            recorded_error: None,
            security: None,
        }
    }
}

/// The answer to a retried guard call within the replay window (contract 1.4).
#[derive(Debug, Serialize, ToSchema)]
pub struct GuardReplay {
    pub decision: String,
    pub decision_id: String,
    /// The recorded action's id, or the decision id.
    pub action_id: String,
    pub reason: Option<String>,
    pub risk_score: u8,
    pub matched_policies: Vec<String>,
    pub verification_status: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub evaluated_at: String,
    /// Always true.
    pub idempotent_replay: bool,
    /// With `?record=true`, when the first call recorded an action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded: Option<bool>,
}

impl GuardReplay {
    pub fn new(prior: &GuardDecisionRecord, record: bool) -> Self {
        let e = &prior.evaluation;
        Self {
            decision: e.decision.as_str().to_owned(),
            decision_id: prior.decision_id.to_string(),
            action_id: prior
                .action_id
                .as_ref()
                .map_or_else(|| prior.decision_id.to_string(), ToString::to_string),
            reason: reason(&e.reasons),
            risk_score: e.risk_score,
            matched_policies: e.matched_policies.clone(),
            verification_status: "unverified".into(),
            agent_id: prior.request.agent_id.clone(),
            agent_name: prior.request.agent_name.clone(),
            evaluated_at: ts(prior.evaluated_at),
            idempotent_replay: true,
            recorded: (record && prior.action_id.is_some()).then_some(true),
        }
    }
}

/// A guard decision as the history endpoint and the live stream show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionRow {
    pub id: String,
    pub decision_id: String,
    pub org_id: String,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub verification_status: String,
    pub action_type: String,
    pub risk_score: u8,
    pub agent_risk_score: Option<u8>,
    pub decision: String,
    pub reason: Option<String>,
    pub reasons: Vec<String>,
    pub warnings: Vec<String>,
    pub matched_policies: Vec<String>,
    pub risk_breakdown: RiskBreakdownBody,
    pub policy_set_version: String,
    /// guard, action or claim: why the guard was asked.
    pub purpose: String,
    pub action_id: Option<String>,
    pub act_hash: Option<String>,
    pub created_at: String,
    /// Always false.
    pub degraded: bool,
}

impl DecisionRow {
    pub fn new(org: &OrgId, d: &GuardDecisionRecord) -> Self {
        let e = &d.evaluation;
        Self {
            id: d.decision_id.to_string(),
            decision_id: d.decision_id.to_string(),
            org_id: org.as_str().to_owned(),
            agent_id: d.request.agent_id.clone(),
            agent_name: d.request.agent_name.clone(),
            verification_status: "unverified".into(),
            action_type: d.request.action_type.clone(),
            risk_score: e.risk_score,
            agent_risk_score: d.request.risk_score,
            decision: e.decision.as_str().to_owned(),
            reason: reason(&e.reasons),
            reasons: e.reasons.clone(),
            warnings: e.warnings.clone(),
            matched_policies: e.matched_policies.clone(),
            risk_breakdown: RiskBreakdownBody::from(&e.risk_breakdown),
            policy_set_version: d.policy_set_version.clone(),
            purpose: match d.purpose {
                DecisionPurpose::Guard => "guard",
                DecisionPurpose::Action => "action",
                DecisionPurpose::Claim => "claim",
            }
            .into(),
            action_id: d.action_id.as_ref().map(ToString::to_string),
            act_hash: d.request.act_hash.clone(),
            created_at: ts(d.evaluated_at),
            degraded: false,
        }
    }
}

/// `reasons.join("; ")`, or null when there are none.
pub fn reason(reasons: &[String]) -> Option<String> {
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

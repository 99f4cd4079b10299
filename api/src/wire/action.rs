//! The action's wire shapes: DashClaw's action row (contract 4.1), its outcome (contract 6),
//! an assumption row (contract 10) and the injection-scan summary of accepted writes.

use async_graphql::{Json, SimpleObject};
use chrono::{DateTime, Utc};
use dashclaw_domain::action::{ActionRecord, CloseSource};
use dashclaw_domain::assumption::AssumptionRecord;
use dashclaw_domain::OrgId;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::ts;

/// An action as REST, SSE and GraphQL show it: the record's fields (their wire names are
/// DashClaw's), with the org and the two constant flags DashClaw's row carries.
#[derive(Debug, Clone, Serialize, ToSchema, SimpleObject)]
#[graphql(name = "ActionRow")]
pub struct ActionRow {
    pub action_id: String,
    pub org_id: String,
    pub agent_id: String,
    pub agent_name: Option<String>,
    pub swarm_id: Option<String>,
    pub parent_action_id: Option<String>,
    pub action_type: String,
    pub declared_goal: String,
    pub reasoning: Option<String>,
    pub authorization_scope: Option<String>,
    pub trigger: Option<String>,
    pub systems_touched: Vec<String>,
    pub input_summary: Option<String>,
    /// running, completed, failed, cancelled, pending_approval, blocked, expired, ...
    pub status: String,
    pub reversible: bool,
    /// 0-100.
    pub risk_score: u8,
    /// 0-100.
    pub confidence: u8,
    pub recommendation_id: Option<String>,
    pub output_summary: Option<String>,
    pub side_effects: Vec<String>,
    pub artifacts_created: Vec<String>,
    pub error_message: Option<String>,
    pub timestamp_start: DateTime<Utc>,
    pub timestamp_end: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
    pub cost_estimate: Option<f64>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    pub model: Option<String>,
    pub idempotency_key: Option<String>,
    pub session_id: Option<String>,
    pub guard_decision_id: String,
    /// The guard verdict the action was recorded under.
    pub guard_verdict: String,
    pub approval_expires_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub approval_grant_used_at: Option<DateTime<Utc>>,
    pub approval_decided_at: Option<DateTime<Utc>>,
    /// pending, completed, partial, failed or lost_confirmation.
    pub outcome_status: String,
    pub outcome_at: Option<DateTime<Utc>>,
    pub outcome_summary: Option<String>,
    pub outcome_error: Option<String>,
    /// Whatever progress the agent last reported (free-form JSON).
    #[schema(value_type = Option<Object>)]
    pub outcome_progress: Option<Json<Value>>,
    /// outcome or direct: how the lifecycle was closed.
    pub close_source: Option<String>,
    pub act_content_hash: Option<String>,
    /// The principal (API key) that recorded the action; only it may claim execution.
    pub created_by: String,
    pub execution_claimed_at: Option<DateTime<Utc>>,
    pub execution_attempt_id: Option<String>,
    pub execution_guard_decision_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Always 1: every action is claim-eligible (contract 5.3).
    pub execution_protocol: u8,
    /// Always false: agent identity is not verified.
    pub identity_verified: bool,
}

impl ActionRow {
    pub fn new(org: &OrgId, r: &ActionRecord) -> Self {
        Self {
            action_id: r.action_id.to_string(),
            org_id: org.as_str().to_owned(),
            agent_id: r.agent_id.clone(),
            agent_name: r.agent_name.clone(),
            swarm_id: r.swarm_id.clone(),
            parent_action_id: r.parent_action_id.clone(),
            action_type: r.action_type.clone(),
            declared_goal: r.declared_goal.clone(),
            reasoning: r.reasoning.clone(),
            authorization_scope: r.authorization_scope.clone(),
            trigger: r.trigger.clone(),
            systems_touched: r.systems_touched.clone(),
            input_summary: r.input_summary.clone(),
            status: r.status.as_str().to_owned(),
            reversible: r.reversible,
            risk_score: r.risk_score,
            confidence: r.confidence,
            recommendation_id: r.recommendation_id.clone(),
            output_summary: r.output_summary.clone(),
            side_effects: r.side_effects.clone(),
            artifacts_created: r.artifacts_created.clone(),
            error_message: r.error_message.clone(),
            timestamp_start: r.timestamp_start,
            timestamp_end: r.timestamp_end,
            duration_ms: r.duration_ms,
            cost_estimate: r.cost_estimate,
            tokens_in: r.tokens_in,
            tokens_out: r.tokens_out,
            model: r.model.clone(),
            idempotency_key: r.idempotency_key.clone(),
            session_id: r.session_id.clone(),
            guard_decision_id: r.guard_decision_id.to_string(),
            guard_verdict: r.guard_verdict.as_str().to_owned(),
            approval_expires_at: r.approval_expires_at,
            approved_by: r.approved_by.clone(),
            approved_at: r.approved_at,
            approval_grant_used_at: r.approval_grant_used_at,
            approval_decided_at: r.approval_decided_at,
            outcome_status: r.outcome_status.as_str().to_owned(),
            outcome_at: r.outcome_at,
            outcome_summary: r.outcome_summary.clone(),
            outcome_error: r.outcome_error.clone(),
            outcome_progress: r.outcome_progress.clone().map(Json),
            close_source: r.close_source.map(|c| {
                match c {
                    CloseSource::Outcome => "outcome",
                    CloseSource::Direct => "direct",
                }
                .to_owned()
            }),
            act_content_hash: r.act_content_hash.clone(),
            created_by: r.created_by.clone(),
            execution_claimed_at: r.execution_claimed_at,
            execution_attempt_id: r.execution_attempt_id.clone(),
            execution_guard_decision_id: r
                .execution_guard_decision_id
                .as_ref()
                .map(ToString::to_string),
            created_at: r.created_at,
            updated_at: r.updated_at,
            execution_protocol: 1,
            identity_verified: false,
        }
    }
}

/// An action's outcome (contract 6); `elapsed_ms` runs from its creation to the outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutcomeBody {
    pub action_id: String,
    /// pending, completed, partial, failed or lost_confirmation.
    pub status: String,
    pub outcome_at: Option<String>,
    pub summary: Option<String>,
    pub error_message: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub progress: Option<Value>,
    pub elapsed_ms: i64,
}

impl OutcomeBody {
    pub fn new(record: &ActionRecord, elapsed_ms: i64) -> Self {
        Self {
            action_id: record.action_id.to_string(),
            status: record.outcome_status.as_str().to_owned(),
            outcome_at: record.outcome_at.map(ts),
            summary: record.outcome_summary.clone(),
            error_message: record.outcome_error.clone(),
            progress: record.outcome_progress.clone(),
            elapsed_ms,
        }
    }
}

/// An assumption row (contract 10): its record, with `validated` and `invalidated` as 0/1.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssumptionRow {
    pub assumption_id: String,
    pub action_id: String,
    pub assumption: String,
    pub basis: Option<String>,
    /// 0 or 1.
    pub validated: u8,
    /// 0 or 1.
    pub invalidated: u8,
    pub invalidated_reason: Option<String>,
    pub validated_at: Option<DateTime<Utc>>,
    pub invalidated_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<&AssumptionRecord> for AssumptionRow {
    fn from(a: &AssumptionRecord) -> Self {
        Self {
            assumption_id: a.assumption_id.to_string(),
            action_id: a.action_id.to_string(),
            assumption: a.assumption.clone(),
            basis: a.basis.clone(),
            validated: u8::from(a.validated),
            invalidated: u8::from(a.invalidated),
            invalidated_reason: a.invalidated_reason.clone(),
            validated_at: a.validated_at,
            invalidated_at: a.invalidated_at,
            created_at: a.created_at,
        }
    }
}

/// The prompt-injection scan summary DashClaw attaches to accepted writes (always clean:
/// a goal the scanner would block is refused before anything is written).
#[derive(Debug, Serialize, ToSchema)]
pub struct SecuritySummary {
    pub clean: bool,
    pub findings_count: u32,
    pub critical_count: u32,
    pub categories: Vec<String>,
}

impl SecuritySummary {
    pub fn clean() -> Self {
        Self {
            clean: true,
            findings_count: 0,
            critical_count: 0,
            categories: Vec::new(),
        }
    }
}

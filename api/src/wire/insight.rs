//! The typed shapes of posture, analytics and policy simulation: REST's JSON bodies
//! (`GET /api/posture`, `GET /api/analytics`, `POST /api/policies/simulate`) and the GraphQL
//! objects of the same names (fields in camelCase there).

use async_graphql::{Json, SimpleObject};
use dashclaw_domain::posture::{Finding, Unit};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::ts;
use crate::service::insight::{AnalyticsReport, PostureReport, Totals};
use crate::service::policy_tools::SimulationReport;

/// `GET /api/posture` (DashClaw's field names).
#[derive(Debug, Serialize, SimpleObject, ToSchema)]
#[graphql(name = "Posture")]
pub struct PostureBody {
    /// 0-100.
    pub score: u8,
    /// healthy (>= 85), needs_attention (>= 60) or at_risk.
    pub status: String,
    /// Always null: no dimension caps the score.
    #[serde(rename = "cappedBy")]
    pub capped_by: Option<String>,
    pub dimensions: Vec<PostureDimension>,
    /// Worst first: the units not fully governed.
    pub findings: Vec<PostureFinding>,
    pub summary: PostureSummary,
    pub units: Vec<PostureUnit>,
    pub window_days: i64,
    pub sample_size: usize,
    /// Daily scores, newest first.
    pub snapshots: Vec<PostureSnapshot>,
    #[serde(rename = "snapshotTs")]
    pub snapshot_ts: String,
}

#[derive(Debug, Serialize, SimpleObject, ToSchema)]
pub struct PostureDimension {
    pub dimension: String,
    pub score: u8,
    pub weight: u8,
}

#[derive(Debug, Serialize, SimpleObject, ToSchema)]
pub struct PostureFinding {
    pub key: String,
    pub dimension: String,
    pub severity: String,
    pub title: String,
    pub evidence: PostureEvidence,
    /// Points the score would gain if the unit were fully governed.
    #[serde(rename = "scoreDelta")]
    pub score_delta: u8,
    /// A draft policy that would govern the unit, for an operator to review.
    #[schema(value_type = Object)]
    pub fix: Json<Value>,
    pub status: String,
}

#[derive(Debug, Serialize, SimpleObject, ToSchema)]
pub struct PostureEvidence {
    #[serde(rename = "observedCount")]
    pub observed_count: usize,
    #[serde(rename = "exampleActionIds")]
    pub example_action_ids: Vec<String>,
}

#[derive(Debug, Serialize, SimpleObject, ToSchema)]
pub struct PostureSummary {
    #[serde(rename = "totalUnits")]
    pub total_units: usize,
    #[serde(rename = "coveredUnits")]
    pub covered_units: usize,
    #[serde(rename = "pointsRecoverable")]
    pub points_recoverable: u32,
    #[serde(rename = "openFindings")]
    pub open_findings: usize,
}

/// One action type of the org's traffic and how well today's policies govern it.
#[derive(Debug, Serialize, SimpleObject, ToSchema)]
pub struct PostureUnit {
    pub key: String,
    pub action_type: String,
    pub observed: usize,
    /// low, medium, high or critical, from the highest risk observed.
    pub risk_level: String,
    pub irreversible: bool,
    pub weight: f64,
    /// 0-1: how strongly the current policies govern the unit's real traffic.
    pub grade: f64,
    pub example_action_ids: Vec<String>,
}

#[derive(Debug, Serialize, SimpleObject, ToSchema)]
pub struct PostureSnapshot {
    pub score: i32,
    #[serde(rename = "createdAt")]
    pub created_at: String,
}

fn finding(f: &Finding) -> PostureFinding {
    PostureFinding {
        key: f.key.clone(),
        dimension: "enforcement".into(),
        severity: f.severity.into(),
        title: f.title.clone(),
        evidence: PostureEvidence {
            observed_count: f.observed,
            example_action_ids: f.example_action_ids.clone(),
        },
        score_delta: f.score_delta,
        fix: Json(f.fix.clone()),
        status: "open".into(),
    }
}

fn unit(u: &Unit) -> PostureUnit {
    PostureUnit {
        key: u.key.clone(),
        action_type: u.action_type.clone(),
        observed: u.observed,
        risk_level: u.risk_level.into(),
        irreversible: u.irreversible,
        weight: u.weight,
        grade: u.grade,
        example_action_ids: u.example_action_ids.clone(),
    }
}

impl From<&PostureReport> for PostureBody {
    fn from(r: &PostureReport) -> Self {
        let p = &r.posture;
        Self {
            score: p.score,
            status: p.status.into(),
            capped_by: None,
            dimensions: vec![PostureDimension {
                dimension: "enforcement".into(),
                score: p.score,
                weight: 1,
            }],
            findings: p.findings.iter().map(finding).collect(),
            summary: PostureSummary {
                total_units: p.units.len(),
                covered_units: p.units.iter().filter(|u| u.grade >= 1.0).count(),
                points_recoverable: p.findings.iter().map(|f| u32::from(f.score_delta)).sum(),
                open_findings: p.findings.len(),
            },
            units: p.units.iter().map(unit).collect(),
            window_days: r.window_days,
            sample_size: r.sample_size,
            snapshots: r
                .snapshots
                .iter()
                .map(|(score, at)| PostureSnapshot {
                    score: *score,
                    created_at: ts(*at),
                })
                .collect(),
            snapshot_ts: ts(r.at),
        }
    }
}

/// `GET /api/analytics`.
#[derive(Debug, Serialize, SimpleObject, ToSchema)]
#[graphql(name = "Analytics")]
pub struct AnalyticsBody {
    pub window_days: i64,
    pub totals: AnalyticsTotals,
    pub enforcement: AnalyticsEnforcement,
    pub approvals: AnalyticsApprovals,
    /// Per (day, agent, action type).
    pub series: Vec<AnalyticsTotals>,
    pub by_agent: Vec<AnalyticsTotals>,
    pub by_action_type: Vec<AnalyticsTotals>,
    /// Where costs come from.
    pub pricing: String,
    pub generated_at: String,
}

/// Counts and costs of a group of actions; `day`, `agent_id` and `action_type` name the
/// group in series and breakdowns.
#[derive(Debug, Serialize, SimpleObject, ToSchema)]
pub struct AnalyticsTotals {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_type: Option<String>,
    pub actions: i64,
    pub completed: i64,
    pub failed: i64,
    pub blocked: i64,
    pub approvals_requested: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// USD, to the micro-dollar.
    pub cost_usd: f64,
    /// Tokens of actions that reported no cost and whose model has no known price.
    pub unpriced_tokens: i64,
}

#[derive(Debug, Serialize, SimpleObject, ToSchema)]
pub struct AnalyticsEnforcement {
    pub decisions: i64,
    pub allowed: i64,
    pub warnings: i64,
    pub approvals_required: i64,
    pub blocked: i64,
}

#[derive(Debug, Serialize, SimpleObject, ToSchema)]
pub struct AnalyticsApprovals {
    pub requested: i64,
    pub approved: i64,
    pub denied: i64,
    pub expired: i64,
    pub pending: i64,
    /// Of the decided ones; null when none was decided.
    pub approve_rate: Option<f64>,
    pub deny_rate: Option<f64>,
    pub expiry_rate: Option<f64>,
    pub time_to_decision_seconds: Percentiles,
}

#[derive(Debug, Serialize, SimpleObject, ToSchema)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
}

fn totals(
    t: &Totals,
    day: Option<String>,
    agent: Option<&str>,
    kind: Option<&str>,
) -> AnalyticsTotals {
    AnalyticsTotals {
        day,
        agent_id: agent.map(str::to_owned),
        action_type: kind.map(str::to_owned),
        actions: t.actions,
        completed: t.completed,
        failed: t.failed,
        blocked: t.blocked,
        approvals_requested: t.held,
        tokens_in: t.tokens_in,
        tokens_out: t.tokens_out,
        cost_usd: (t.cost_usd * 1e6).round() / 1e6,
        unpriced_tokens: t.unpriced_tokens,
    }
}

/// `part / whole` to four decimals; none when `whole` is 0.
fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole != 0).then(|| (part as f64 / whole as f64 * 1e4).round() / 1e4)
}

impl From<&AnalyticsReport> for AnalyticsBody {
    fn from(r: &AnalyticsReport) -> Self {
        let a = &r.approvals;
        let decided = a.approved + a.denied + a.expired;
        let e = &r.enforcement;
        let [p50, p90, p99] = a.time_to_decision;
        Self {
            window_days: r.window_days,
            totals: totals(&r.totals, None, None, None),
            enforcement: AnalyticsEnforcement {
                decisions: e.decisions,
                allowed: e.allowed,
                warnings: e.warnings,
                approvals_required: e.approvals_required,
                blocked: e.blocked,
            },
            approvals: AnalyticsApprovals {
                requested: a.requested,
                approved: a.approved,
                denied: a.denied,
                expired: a.expired,
                pending: a.requested - decided,
                approve_rate: rate(a.approved, decided),
                deny_rate: rate(a.denied, decided),
                expiry_rate: rate(a.expired, decided),
                time_to_decision_seconds: Percentiles { p50, p90, p99 },
            },
            series: r
                .series
                .iter()
                .map(|((day, agent, kind), t)| {
                    totals(t, Some(day.to_string()), Some(agent), Some(kind))
                })
                .collect(),
            by_agent: r
                .by_agent
                .iter()
                .map(|(agent, t)| totals(t, None, Some(agent), None))
                .collect(),
            by_action_type: r
                .by_action_type
                .iter()
                .map(|(kind, t)| totals(t, None, None, Some(kind)))
                .collect(),
            pricing: "USD list prices per model (domain/src/pricing.rs); actions that report cost_estimate keep it".into(),
            generated_at: ts(r.generated_at),
        }
    }
}

/// `POST /api/policies/simulate`.
#[derive(Debug, Serialize, SimpleObject, ToSchema)]
#[graphql(name = "Simulation")]
pub struct SimulationBody {
    pub summary: SimulationSummary,
    /// The first matches (at most 50), newest first.
    pub matches: Vec<SimulationMatch>,
    pub matches_truncated: bool,
    pub sample_size: usize,
    pub window_days: i64,
}

/// Simulated verdicts of the replayed requests; `matches` are those not allowed.
#[derive(Debug, Serialize, SimpleObject, ToSchema)]
pub struct SimulationSummary {
    pub total: usize,
    pub matches: usize,
    pub block: usize,
    pub warn: usize,
    pub require_approval: usize,
    pub allow: usize,
}

#[derive(Debug, Serialize, SimpleObject, ToSchema)]
pub struct SimulationMatch {
    pub action_id: String,
    pub goal: Option<String>,
    pub agent_name: Option<String>,
    pub timestamp: String,
    /// What the guard decided then.
    pub original_status: String,
    /// What the proposed policy would have decided.
    pub simulated_action: String,
    pub simulated_reason: String,
}

impl From<&SimulationReport> for SimulationBody {
    fn from(r: &SimulationReport) -> Self {
        let [allow, warn, require_approval, block] = r.counts;
        let matches = r.total - allow;
        Self {
            summary: SimulationSummary {
                total: r.total,
                matches,
                block,
                warn,
                require_approval,
                allow,
            },
            matches: r
                .matches
                .iter()
                .map(|m| SimulationMatch {
                    action_id: m.action_id.clone(),
                    goal: m.goal.clone(),
                    agent_name: m.agent_name.clone(),
                    timestamp: ts(m.at),
                    original_status: m.original.as_str().into(),
                    simulated_action: m.simulated.as_str().into(),
                    simulated_reason: m.reason.clone(),
                })
                .collect(),
            matches_truncated: matches > r.matches.len(),
            sample_size: r.total,
            window_days: r.window_days,
        }
    }
}

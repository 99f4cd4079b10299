//! The posture score: how much of an org's real traffic its current policies govern.
//!
//! Each observed action type is a unit, weighted by risk, irreversibility and volume. A unit
//! counts as governed only as far as replaying its recorded requests through the current
//! policies shows a policy firing (allow 0, warn 0.5, require_approval or block 1), so a
//! policy that would never fire on real traffic does not raise the score. Pure: the caller
//! supplies the recorded requests, the policies and the clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::guard::{evaluate, DecisionCounter, GuardContext, GuardRequest, Policy, Verdict};

/// One recorded request of the org's traffic.
pub struct Sample<'a> {
    pub request: &'a GuardRequest,
    /// The final risk score it was recorded with.
    pub risk_score: u8,
    /// The action it was recorded for, if any (shown as evidence).
    pub action_id: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    pub key: String,
    pub action_type: String,
    pub observed: usize,
    /// low | medium | high | critical, from the highest risk observed.
    pub risk_level: &'static str,
    pub irreversible: bool,
    pub weight: f64,
    /// 0..=1: how strongly the current policies govern the unit's real traffic.
    pub grade: f64,
    pub example_action_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Posture {
    /// 0..=100.
    pub score: u8,
    /// healthy (>= 85) | needs_attention (>= 60) | at_risk.
    pub status: &'static str,
    /// Worst first: the units not fully governed.
    pub findings: Vec<Finding>,
    pub units: Vec<Unit>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub key: String,
    pub severity: &'static str,
    pub title: String,
    pub observed: usize,
    pub example_action_ids: Vec<String>,
    /// Points the score would gain if the unit were fully governed.
    pub score_delta: u8,
    /// A policy that would govern it (a draft for an operator to review).
    pub fix: serde_json::Value,
}

struct NoHistory;

impl DecisionCounter for NoHistory {
    fn decisions_since(&self, _: &str, _: DateTime<Utc>) -> u32 {
        0
    }
}

fn risk_level(score: u8) -> (&'static str, f64) {
    match score {
        75.. => ("critical", 16.0),
        50..=74 => ("high", 8.0),
        25..=49 => ("medium", 3.0),
        _ => ("low", 1.0),
    }
}

fn verdict_grade(v: Verdict) -> f64 {
    match v {
        Verdict::Allow => 0.0,
        Verdict::Warn => 0.5,
        Verdict::RequireApproval | Verdict::Block => 1.0,
    }
}

/// Scores `samples` (the org's recent recorded requests) under `policies` as of `now`.
pub fn assess(samples: &[Sample<'_>], policies: &[Policy], now: DateTime<Utc>) -> Posture {
    let mut by_type: BTreeMap<&str, Vec<&Sample<'_>>> = BTreeMap::new();
    for s in samples {
        by_type.entry(&s.request.action_type).or_default().push(s);
    }
    let context = GuardContext {
        policies,
        halt: None,
        counter: &NoHistory,
        operator_grant: None,
        plan_step: None,
        now,
    };
    let mut units: Vec<Unit> = by_type
        .into_iter()
        .map(|(action_type, traffic)| {
            let max_risk = traffic.iter().map(|s| s.risk_score).max().unwrap_or(0);
            let (level, risk_weight) = risk_level(max_risk);
            let irreversible = traffic.iter().any(|s| s.request.reversible == Some(false));
            let observed = traffic.len();
            let weight = risk_weight
                * if irreversible { 2.0 } else { 1.0 }
                * (1.0 + (1.0 + observed as f64).log10());
            let grade = traffic
                .iter()
                .map(|s| verdict_grade(evaluate(s.request, &context).decision))
                .sum::<f64>()
                / observed.max(1) as f64;
            Unit {
                key: format!("action_type:{action_type}"),
                action_type: action_type.to_owned(),
                observed,
                risk_level: level,
                irreversible,
                weight,
                grade,
                example_action_ids: traffic
                    .iter()
                    .filter_map(|s| s.action_id.map(str::to_owned))
                    .take(3)
                    .collect(),
            }
        })
        .collect();
    let total: f64 = units.iter().map(|u| u.weight).sum();
    let covered: f64 = units.iter().map(|u| u.weight * u.grade).sum();
    let score = if total == 0.0 {
        100
    } else {
        (covered / total * 100.0).round().clamp(0.0, 100.0) as u8
    };
    let status = match score {
        85.. => "healthy",
        60..=84 => "needs_attention",
        _ => "at_risk",
    };
    let mut findings: Vec<(f64, Finding)> = units
        .iter()
        .filter(|u| u.grade < 1.0)
        .map(|u| {
            let missing = (1.0 - u.grade) * u.weight;
            let finding = Finding {
                key: u.key.clone(),
                severity: u.risk_level,
                title: format!(
                    "{} of {} observed \"{}\" actions pass without an approval or block",
                    if u.grade == 0.0 { "All" } else { "Some" },
                    u.observed,
                    u.action_type
                ),
                observed: u.observed,
                example_action_ids: u.example_action_ids.clone(),
                score_delta: (missing / total * 100.0).round().clamp(0.0, 100.0) as u8,
                fix: serde_json::json!({
                    "type": "create_policy_draft",
                    "policy_type": "require_approval",
                    "rules": {"action_types": [u.action_type]},
                }),
            };
            (missing, finding)
        })
        .collect();
    findings.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.key.cmp(&b.1.key)));
    units.sort_by(|a, b| {
        b.weight
            .total_cmp(&a.weight)
            .then_with(|| a.key.cmp(&b.key))
    });
    Posture {
        score,
        status,
        findings: findings.into_iter().map(|(_, f)| f).collect(),
        units,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap()
    }

    fn request(action_type: &str, reversible: bool) -> GuardRequest {
        GuardRequest {
            action_type: action_type.into(),
            reversible: Some(reversible),
            ..Default::default()
        }
    }

    fn policy(policy_type: &str, rules: serde_json::Value) -> Policy {
        Policy {
            id: "gp_1".into(),
            name: "p".into(),
            policy_type: policy_type.into(),
            rules,
            active: true,
            agent_ids: None,
        }
    }

    fn traffic(requests: &[GuardRequest]) -> Vec<Sample<'_>> {
        requests
            .iter()
            .map(|r| Sample {
                request: r,
                risk_score: if r.action_type == "deploy" { 85 } else { 10 },
                action_id: None,
            })
            .collect()
    }

    #[test]
    fn no_traffic_is_fully_governed() {
        assert_eq!(assess(&[], &[], now()).score, 100);
    }

    #[test]
    fn a_policy_that_never_fires_leaves_the_score_unchanged_and_one_that_fires_raises_it() {
        let requests: Vec<GuardRequest> = (0..10)
            .map(|i| request(if i % 2 == 0 { "deploy" } else { "research" }, i % 4 != 0))
            .collect();
        let samples = traffic(&requests);
        let bare = assess(&samples, &[], now());
        assert_eq!(bare.score, 0);
        assert_eq!(bare.findings[0].key, "action_type:deploy", "worst first");

        let never = policy(
            "block_action_type",
            json!({"action_types": ["launch_missiles"]}),
        );
        assert_eq!(assess(&samples, &[never], now()).score, bare.score);

        let fires = policy("require_approval", json!({"action_types": ["deploy"]}));
        let governed = assess(&samples, &[fires], now());
        assert!(governed.score > 80, "{}", governed.score);
        assert_eq!(governed.findings.len(), 1);
        assert_eq!(governed.findings[0].key, "action_type:research");

        let warns = policy("warn_action_type", json!({"action_types": ["deploy"]}));
        let half = assess(&samples, &[warns], now()).score;
        assert!(half > bare.score && half < governed.score, "{half}");
    }
}

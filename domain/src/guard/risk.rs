//! The server's risk heuristic (contract §2.2): a base score per action type plus additive
//! modifiers, folded with the client's self-reported score so the client can only raise risk.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{compile, GuardRequest};

/// Base scores by action type. Unknown types score like `other`.
const BASE_SCORES: &[(&str, u8)] = &[
    ("deploy", 75),
    ("security", 80),
    ("migrate", 70),
    ("apply", 60),
    ("sync", 40),
    ("api", 35),
    ("build", 25),
    ("fix", 20),
    ("refactor", 20),
    ("test", 15),
    ("config", 30),
    ("monitor", 10),
    ("alert", 10),
    ("cleanup", 30),
    ("post", 25),
    ("message", 15),
    ("calendar", 10),
    ("research", 10),
    ("review", 10),
    ("other", 20),
];
const UNKNOWN_TYPE_SCORE: u8 = 20;

const HIGH_RISK_SYSTEMS: &[&str] = &["production", "database", "postgres", "neon", "redis"];
const MODERATE_RISK_SYSTEMS: &[&str] = &["filesystem", "shell"];

/// Modifier factor names. The goal factors use the upstream server's spelling
/// (`goal:deployment-pattern`, `goal:secret-pattern`) so stored breakdowns compare equal.
pub const FACTOR_IRREVERSIBLE: &str = "irreversible";
pub const FACTOR_DESTRUCTIVE: &str = "goal:destructive-pattern";
pub const FACTOR_DEPLOYMENT: &str = "goal:deployment-pattern";
pub const FACTOR_SECRETS: &str = "goal:secret-pattern";

// Word-bounded on purpose: unanchored substrings scored "monkey" as a key (+15), "pushback" as
// a push (+10) and "formatting" as a disk wipe (+20), which made risk look random.
static DESTRUCTIVE_GOAL: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"\brm\s+-(?:rf|fr)\b|\bdrop\s+table\b|\bdelete\s+from\b|\btruncate\b|\bwipe\b|\bformat\s+(?:(?:the|a|an|this|that|my|our)\s+)?(?:[\w-]+\s+)?(?:disk|drive|partition|volume|filesystem|file\s+system|device)s?\b",
        true,
    )
});
static DEPLOYMENT_GOAL: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"\bpush(?:es|ed|ing)?\b|\bdeploy|\brelease|\bship|\bmigrat",
        true,
    )
});
static SECRET_GOAL: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"\bsecrets?\b|\bcredentials?\b|\bpasswords?\b|\btokens?\b|\bkeys?\b|\.env\b",
        true,
    )
});

/// The action-type term of the score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskBase {
    pub action_type: String,
    pub score: u8,
}

/// One additive term of the score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskModifier {
    pub factor: String,
    pub delta: i32,
}

/// The full derivation of a guard decision's risk score, persisted with the decision so any
/// score can be re-derived and explained after the fact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskBreakdown {
    pub base: RiskBase,
    pub modifiers: Vec<RiskModifier>,
    /// `clamp(base + Σ modifiers, 0, 100)`.
    pub server_total: u8,
    /// The request's `risk_score`, clamped to 100; `None` when the client sent none.
    pub client_reported: Option<u8>,
    /// `max(server_total, client_reported)`.
    pub effective: u8,
    /// The score policies are judged on. Equal to `effective`: there is no predictive layer.
    #[serde(rename = "final")]
    pub final_score: u8,
}

/// Scores a guard request. Pure and cheap: the patterns are compiled once per process.
pub fn score_risk(request: &GuardRequest) -> RiskBreakdown {
    let base_score = BASE_SCORES
        .iter()
        .find(|(t, _)| *t == request.action_type)
        .map_or(UNKNOWN_TYPE_SCORE, |(_, s)| *s);

    let mut modifiers = Vec::new();
    if request.reversible == Some(false) {
        modifiers.push(modifier(FACTOR_IRREVERSIBLE, 15));
    }
    let systems: Vec<String> = request
        .systems_touched
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    if let Some(hit) = systems
        .iter()
        .find(|s| HIGH_RISK_SYSTEMS.contains(&s.as_str()))
    {
        modifiers.push(modifier(&format!("systems:{hit}"), 10));
    }
    if let Some(hit) = systems
        .iter()
        .find(|s| MODERATE_RISK_SYSTEMS.contains(&s.as_str()))
    {
        modifiers.push(modifier(&format!("systems:{hit}"), 5));
    }
    if let Some(goal) = request.declared_goal.as_deref() {
        if DESTRUCTIVE_GOAL.is_match(goal) {
            modifiers.push(modifier(FACTOR_DESTRUCTIVE, 20));
        }
        if DEPLOYMENT_GOAL.is_match(goal) {
            modifiers.push(modifier(FACTOR_DEPLOYMENT, 10));
        }
        if SECRET_GOAL.is_match(goal) {
            modifiers.push(modifier(FACTOR_SECRETS, 15));
        }
    }

    let sum: i32 = i32::from(base_score) + modifiers.iter().map(|m| m.delta).sum::<i32>();
    let server_total = clamp_score(sum);
    let client_reported = request.risk_score.map(|s| s.min(100));
    let effective = server_total.max(client_reported.unwrap_or(0));
    RiskBreakdown {
        base: RiskBase {
            action_type: request.action_type.clone(),
            score: base_score,
        },
        modifiers,
        server_total,
        client_reported,
        effective,
        final_score: effective,
    }
}

fn modifier(factor: &str, delta: i32) -> RiskModifier {
    RiskModifier {
        factor: factor.to_owned(),
        delta,
    }
}

fn clamp_score(value: i32) -> u8 {
    // The clamp makes the conversion infallible; the fallback is unreachable.
    u8::try_from(value.clamp(0, 100)).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action_type: &str) -> GuardRequest {
        GuardRequest {
            action_type: action_type.into(),
            ..GuardRequest::default()
        }
    }

    fn with_goal(goal: &str) -> GuardRequest {
        GuardRequest {
            declared_goal: Some(goal.into()),
            ..request("research")
        }
    }

    fn factors(b: &RiskBreakdown) -> Vec<&str> {
        b.modifiers.iter().map(|m| m.factor.as_str()).collect()
    }

    #[test]
    fn every_base_score_matches_the_contract() {
        let expected = [
            ("deploy", 75),
            ("security", 80),
            ("migrate", 70),
            ("apply", 60),
            ("sync", 40),
            ("api", 35),
            ("build", 25),
            ("fix", 20),
            ("refactor", 20),
            ("test", 15),
            ("config", 30),
            ("monitor", 10),
            ("alert", 10),
            ("cleanup", 30),
            ("post", 25),
            ("message", 15),
            ("calendar", 10),
            ("research", 10),
            ("review", 10),
            ("other", 20),
            ("Bash", 20),
            ("mcp__github__create_issue", 20),
            ("DEPLOY", 20),
        ];
        for (t, score) in expected {
            let b = score_risk(&request(t));
            assert_eq!(b.base.score, score, "{t}");
            assert_eq!(b.base.action_type, t);
            assert!(b.modifiers.is_empty(), "{t}");
            assert_eq!(b.server_total, score, "{t}");
            assert_eq!(b.final_score, score, "{t}");
            assert_eq!(b.client_reported, None);
        }
    }

    #[test]
    fn irreversible_adds_fifteen_only_when_explicitly_false() {
        let mut r = request("fix");
        r.reversible = Some(false);
        let b = score_risk(&r);
        assert_eq!(b.modifiers, vec![modifier("irreversible", 15)]);
        assert_eq!(b.server_total, 35);
        r.reversible = Some(true);
        assert!(score_risk(&r).modifiers.is_empty());
        r.reversible = None;
        assert!(score_risk(&r).modifiers.is_empty());
    }

    #[test]
    fn systems_modifiers_apply_once_per_tier_with_the_first_match() {
        let mut r = request("fix");
        r.systems_touched = vec![
            "GitHub".into(),
            "Redis".into(),
            "production".into(),
            "Shell".into(),
            "filesystem".into(),
        ];
        let b = score_risk(&r);
        assert_eq!(
            b.modifiers,
            vec![modifier("systems:redis", 10), modifier("systems:shell", 5)]
        );
        assert_eq!(b.server_total, 35);

        // Exact match only: a substring is not a system.
        r.systems_touched = vec!["production-replica".into(), "shells".into()];
        assert!(score_risk(&r).modifiers.is_empty());

        for s in ["production", "database", "postgres", "neon", "redis"] {
            r.systems_touched = vec![s.into()];
            assert_eq!(factors(&score_risk(&r)), vec![format!("systems:{s}")]);
        }
        r.systems_touched = vec!["filesystem".into()];
        assert_eq!(
            score_risk(&r).modifiers,
            vec![modifier("systems:filesystem", 5)]
        );
    }

    #[test]
    fn destructive_goal_patterns() {
        for goal in [
            "rm -rf ./node_modules",
            "RM -RF /tmp/x",
            "DROP TABLE users",
            "delete from sessions where 1=1",
            "truncate the audit log",
            "wipe the staging bucket",
            "format the disk",
            "Format USB drive",
            "format partition 2",
            "format the external drive",
        ] {
            let b = score_risk(&with_goal(goal));
            assert!(factors(&b).contains(&FACTOR_DESTRUCTIVE), "{goal}");
        }
        for goal in [
            "fix formatting in README",
            "format the json output",
            "wiped out by the flu",
            "farm -rf",
            "delete old branches",
        ] {
            let b = score_risk(&with_goal(goal));
            assert!(!factors(&b).contains(&FACTOR_DESTRUCTIVE), "{goal}");
        }
        assert_eq!(
            score_risk(&with_goal("wipe it")).modifiers,
            vec![modifier(FACTOR_DESTRUCTIVE, 20)]
        );
    }

    #[test]
    fn deployment_goal_patterns() {
        for goal in [
            "push to main",
            "pushed the tag",
            "Pushing images",
            "deploy api",
            "Deployment of v2",
            "release 1.2",
            "ship it",
            "migrate the schema",
            "run migrations",
        ] {
            let b = score_risk(&with_goal(goal));
            assert_eq!(factors(&b), vec![FACTOR_DEPLOYMENT], "{goal}");
        }
        for goal in [
            "pushback on the spec",
            "read the docs",
            "premigration notes",
        ] {
            assert!(score_risk(&with_goal(goal)).modifiers.is_empty(), "{goal}");
        }
        assert_eq!(
            score_risk(&with_goal("deploy")).modifiers,
            vec![modifier(FACTOR_DEPLOYMENT, 10)]
        );
    }

    #[test]
    fn secret_goal_patterns() {
        for goal in [
            "rotate the secret",
            "list secrets",
            "update credentials",
            "reset password",
            "Passwords audit",
            "refresh token",
            "revoke tokens",
            "rotate API key",
            "rotate the keys",
            "read .env",
            "edit config/.env file",
        ] {
            let b = score_risk(&with_goal(goal));
            assert_eq!(factors(&b), vec![FACTOR_SECRETS], "{goal}");
        }
        for goal in [
            "feed the monkey",
            "keystone review",
            "tokenize input",
            ".environment",
        ] {
            assert!(score_risk(&with_goal(goal)).modifiers.is_empty(), "{goal}");
        }
        assert_eq!(
            score_risk(&with_goal("token")).modifiers,
            vec![modifier(FACTOR_SECRETS, 15)]
        );
    }

    #[test]
    fn modifiers_are_listed_in_a_fixed_order() {
        let mut r = request("deploy");
        r.reversible = Some(false);
        r.systems_touched = vec!["shell".into(), "database".into()];
        r.declared_goal = Some("deploy and then rm -rf the old secrets".into());
        let b = score_risk(&r);
        assert_eq!(
            factors(&b),
            vec![
                "irreversible",
                "systems:database",
                "systems:shell",
                FACTOR_DESTRUCTIVE,
                FACTOR_DEPLOYMENT,
                FACTOR_SECRETS
            ]
        );
    }

    #[test]
    fn server_total_is_clamped_at_100() {
        let mut r = request("security");
        r.reversible = Some(false);
        r.systems_touched = vec!["production".into(), "shell".into()];
        r.declared_goal = Some("push the secrets then wipe".into());
        let b = score_risk(&r);
        // 80 + 15 + 10 + 5 + 20 + 10 + 15 = 155
        assert_eq!(b.modifiers.iter().map(|m| m.delta).sum::<i32>(), 75);
        assert_eq!(b.server_total, 100);
        assert_eq!(b.effective, 100);
        assert_eq!(b.final_score, 100);
    }

    #[test]
    fn client_score_can_only_raise_risk() {
        let mut r = request("deploy");
        r.risk_score = Some(10);
        let b = score_risk(&r);
        assert_eq!(b.client_reported, Some(10));
        assert_eq!(b.server_total, 75);
        assert_eq!(b.effective, 75);
        assert_eq!(b.final_score, 75);

        r.risk_score = Some(90);
        let b = score_risk(&r);
        assert_eq!(b.client_reported, Some(90));
        assert_eq!(b.server_total, 75);
        assert_eq!((b.effective, b.final_score), (90, 90));

        // The HTTP layer rejects > 100; the engine clamps anyway.
        r.risk_score = Some(250);
        let b = score_risk(&r);
        assert_eq!(b.client_reported, Some(100));
        assert_eq!(b.final_score, 100);
    }

    #[test]
    fn breakdown_serializes_with_the_contract_field_names() {
        let mut r = request("deploy");
        r.reversible = Some(false);
        let json = serde_json::to_value(score_risk(&r)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "base": {"action_type": "deploy", "score": 75},
                "modifiers": [{"factor": "irreversible", "delta": 15}],
                "server_total": 90,
                "client_reported": null,
                "effective": 90,
                "final": 90
            })
        );
        let back: RiskBreakdown = serde_json::from_value(json).unwrap();
        assert_eq!(back, score_risk(&r));
    }
}

//! Behaviour tests of the whole evaluation: given a policy set and a request, the decision,
//! reasons, warnings and matched policies the contract (§2) prescribes.

use std::cell::RefCell;
use std::slice::from_ref;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 5, 12, 0, 0).unwrap()
}

/// Returns a fixed count and records every question it was asked.
#[derive(Default)]
struct FakeCounter {
    count: u32,
    asked: RefCell<Vec<(String, DateTime<Utc>)>>,
}

impl FakeCounter {
    fn returning(count: u32) -> Self {
        FakeCounter {
            count,
            ..FakeCounter::default()
        }
    }
}

impl DecisionCounter for FakeCounter {
    fn decisions_since(&self, agent_id: &str, since: DateTime<Utc>) -> u32 {
        self.asked.borrow_mut().push((agent_id.to_owned(), since));
        self.count
    }
}

fn policy(id: &str, name: &str, policy_type: &str, rules: Value) -> Policy {
    Policy {
        id: id.into(),
        name: name.into(),
        policy_type: policy_type.into(),
        rules,
        active: true,
        agent_ids: None,
    }
}

fn request(action_type: &str) -> GuardRequest {
    GuardRequest {
        action_type: action_type.into(),
        agent_id: Some("deploy-agent-1".into()),
        ..GuardRequest::default()
    }
}

fn eval_with(request: &GuardRequest, policies: &[Policy], counter: &FakeCounter) -> Evaluation {
    evaluate(
        request,
        &GuardContext {
            policies,
            halt: None,
            counter,
            operator_grant: None,
            plan_step: None,
            now: now(),
        },
    )
}

fn eval(request: &GuardRequest, policies: &[Policy]) -> Evaluation {
    eval_with(request, policies, &FakeCounter::default())
}

fn grant(id: &str, rules: Value) -> Policy {
    policy(id, &format!("Grant {id}"), "allow_grant", rules)
}

fn future() -> String {
    (now() + Duration::days(1)).to_rfc3339()
}

fn assert_allow_clean(e: &Evaluation) {
    assert_eq!(e.decision, Verdict::Allow);
    assert!(e.reasons.is_empty(), "{:?}", e.reasons);
    assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    assert!(e.matched_policies.is_empty(), "{:?}", e.matched_policies);
}

// ── basics ────────────────────────────────────────────────────────────────────────────────────

#[test]
fn no_active_policies_means_allow_regardless_of_risk() {
    let mut r = request("security");
    r.reversible = Some(false);
    r.systems_touched = vec!["production".into()];
    r.declared_goal = Some("wipe the prod secrets and push".into());
    r.risk_score = Some(100);
    let mut inactive = policy(
        "gp_1",
        "Prod gate",
        "risk_threshold",
        json!({"threshold": 10}),
    );
    inactive.active = false;
    for policies in [vec![], vec![inactive]] {
        let e = eval(&r, &policies);
        assert_allow_clean(&e);
        assert_eq!(e.risk_score, 100);
        assert_eq!(e.risk_breakdown.final_score, 100);
    }
}

#[test]
fn verdicts_are_ordered_and_serialize_in_snake_case() {
    assert!(Verdict::Allow < Verdict::Warn);
    assert!(Verdict::Warn < Verdict::RequireApproval);
    assert!(Verdict::RequireApproval < Verdict::Block);
    for (v, s) in [
        (Verdict::Allow, "allow"),
        (Verdict::Warn, "warn"),
        (Verdict::RequireApproval, "require_approval"),
        (Verdict::Block, "block"),
    ] {
        assert_eq!(v.as_str(), s);
        assert_eq!(v.to_string(), s);
        assert_eq!(serde_json::to_value(v).unwrap(), json!(s));
        assert_eq!(serde_json::from_value::<Verdict>(json!(s)).unwrap(), v);
    }
    assert!(serde_json::from_value::<Verdict>(json!("allow_contained")).is_err());
}

#[test]
fn guard_request_is_stored_compactly() {
    let r = GuardRequest {
        action_type: "deploy".into(),
        ..GuardRequest::default()
    };
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"action_type": "deploy"})
    );
    let back: GuardRequest = serde_json::from_value(json!({"action_type": "deploy"})).unwrap();
    assert_eq!(back, r);
    assert!(serde_json::from_value::<GuardRequest>(json!({})).is_err());

    let full = GuardRequest {
        action_type: "deploy".into(),
        declared_goal: Some("ship".into()),
        risk_score: Some(40),
        agent_id: Some("a".into()),
        agent_name: Some("A".into()),
        systems_touched: vec!["redis".into()],
        reversible: Some(false),
        target: Some("/srv".into()),
        write_paths: vec!["/srv/x".into()],
        client_capabilities: vec!["execution_claims".into()],
        act_hash: Some("ab".into()),
        verification: Some(Verification::Verified),
    };
    let json = serde_json::to_value(&full).unwrap();
    assert_eq!(json.as_object().unwrap().len(), 12);
    assert_eq!(serde_json::from_value::<GuardRequest>(json).unwrap(), full);
}

// ── each policy type ──────────────────────────────────────────────────────────────────────────

#[test]
fn risk_threshold_fires_at_or_above_the_threshold() {
    let p = policy(
        "gp_rt",
        "Prod gate",
        "risk_threshold",
        json!({"threshold": 80}),
    );
    let mut r = request("deploy"); // 75
    assert_allow_clean(&eval(&r, from_ref(&p)));

    r.risk_score = Some(80);
    let e = eval(&r, from_ref(&p));
    assert_eq!(e.decision, Verdict::Block, "default action is block");
    assert_eq!(e.reasons, vec!["Prod gate: Risk score 80 >= threshold 80"]);
    assert_eq!(e.matched_policies, vec!["gp_rt"]);
    assert_eq!(e.risk_score, 80);

    r.risk_score = Some(85);
    assert_eq!(
        eval(&r, &[p]).reasons,
        vec!["Prod gate: Risk score 85 >= threshold 80"]
    );
}

#[test]
fn risk_threshold_defaults_and_action_override() {
    let r = request("security"); // 80
    let default = policy("gp_d", "Default", "risk_threshold", json!({}));
    let e = eval(&r, &[default]);
    assert_eq!(e.decision, Verdict::Block);
    assert_eq!(e.reasons, vec!["Default: Risk score 80 >= threshold 80"]);

    let warn = policy(
        "gp_w",
        "Soft",
        "risk_threshold",
        json!({"threshold": 50, "action": "warn"}),
    );
    let e = eval(&r, &[warn]);
    assert_eq!(e.decision, Verdict::Warn);
    assert!(e.reasons.is_empty());
    assert_eq!(e.warnings, vec!["Soft: Risk score 80 >= threshold 50"]);
    assert_eq!(e.matched_policies, vec!["gp_w"]);

    let hold = policy(
        "gp_h",
        "Hold",
        "risk_threshold",
        json!({"threshold": 50, "action": "require_approval"}),
    );
    assert_eq!(eval(&r, &[hold]).decision, Verdict::RequireApproval);

    // An "allow" action fires (and is listed) without changing anything.
    let noop = policy(
        "gp_n",
        "Noop",
        "risk_threshold",
        json!({"threshold": 0, "action": "allow"}),
    );
    let e = eval(&r, &[noop]);
    assert_eq!(e.decision, Verdict::Allow);
    assert!(e.reasons.is_empty() && e.warnings.is_empty());
    assert_eq!(e.matched_policies, vec!["gp_n"]);
}

#[test]
fn risk_threshold_containment_band_interrupts() {
    let p = policy(
        "gp_c",
        "Band",
        "risk_threshold",
        json!({"threshold": 90, "contain_above": 60, "action": "require_approval"}),
    );
    let e = eval(&request("deploy"), from_ref(&p)); // 75, in [60, 90)
    assert_eq!(e.decision, Verdict::RequireApproval);
    assert_eq!(
        e.reasons,
        vec!["Band: Risk score 75 in containment band [60, 90) but containment is not negotiated (requires approval)"]
    );
    assert_allow_clean(&eval(&request("api"), &[p])); // 35, below the band
}

#[test]
fn require_approval_policy() {
    let p = policy(
        "gp_ra",
        "Deploys need a human",
        "require_approval",
        json!({"action_types": ["deploy", "migrate"]}),
    );
    let e = eval(&request("deploy"), from_ref(&p));
    assert_eq!(e.decision, Verdict::RequireApproval);
    assert_eq!(
        e.reasons,
        vec!["Deploys need a human: Action type \"deploy\" requires approval"]
    );
    assert_eq!(e.matched_policies, vec!["gp_ra"]);
    assert_allow_clean(&eval(&request("build"), &[p]));
}

#[test]
fn require_approval_target_prefix_narrows_the_rule() {
    let p = policy(
        "gp_ra",
        "Prod deploys",
        "require_approval",
        json!({"action_types": ["deploy"], "target_prefix": "/srv/prod"}),
    );
    let mut r = request("deploy");
    assert_allow_clean(&eval(&r, from_ref(&p)));
    r.target = Some("/srv/staging/app".into());
    assert_allow_clean(&eval(&r, from_ref(&p)));
    r.target = Some("/srv/prod/app".into());
    assert_eq!(eval(&r, from_ref(&p)).decision, Verdict::RequireApproval);
    r.target = None;
    r.write_paths = vec!["/srv/prod".into()];
    assert_eq!(eval(&r, &[p]).decision, Verdict::RequireApproval);
}

#[test]
fn block_action_type_policy() {
    let p = policy(
        "gp_b",
        "No security",
        "block_action_type",
        json!({"action_types": ["security"]}),
    );
    let e = eval(&request("security"), from_ref(&p));
    assert_eq!(e.decision, Verdict::Block);
    assert_eq!(
        e.reasons,
        vec!["No security: Action type \"security\" is blocked by policy"]
    );
    assert_allow_clean(&eval(&request("Security"), &[p]));
}

#[test]
fn warn_action_type_policy() {
    let p = policy(
        "gp_wa",
        "Posts",
        "warn_action_type",
        json!({"action_types": ["post"]}),
    );
    let e = eval(&request("post"), from_ref(&p));
    assert_eq!(e.decision, Verdict::Warn);
    assert!(e.reasons.is_empty());
    assert_eq!(
        e.warnings,
        vec!["Posts: Action type \"post\" recorded for review"]
    );
    assert_eq!(e.matched_policies, vec!["gp_wa"]);
    assert_allow_clean(&eval(&request("message"), &[p]));
}

#[test]
fn action_type_policies_ignore_rules_action() {
    // Their action is their type; rules.action only overrides where the contract has a default.
    let p = policy(
        "gp_wa",
        "Posts",
        "warn_action_type",
        json!({"action_types": ["post"], "action": "block"}),
    );
    assert_eq!(eval(&request("post"), &[p]).decision, Verdict::Warn);
}

#[test]
fn protected_path_policy() {
    let p = policy(
        "gp_pp",
        "Secrets",
        "protected_path",
        json!({"paths": ["**/.env", "src/auth/**"]}),
    );
    let mut r = request("apply");
    assert_allow_clean(&eval(&r, from_ref(&p)));

    r.target = Some("/home/me/app/.env".into());
    let e = eval(&r, from_ref(&p));
    assert_eq!(e.decision, Verdict::RequireApproval, "default action");
    assert_eq!(
        e.reasons,
        vec!["Secrets: Protected path touched: /home/me/app/.env"]
    );
    assert_eq!(e.matched_policies, vec!["gp_pp"]);

    r.target = Some("README.md".into());
    r.write_paths = vec!["docs/x.md".into(), "src/auth/session.rs".into()];
    let e = eval(&r, from_ref(&p));
    assert_eq!(
        e.reasons,
        vec!["Secrets: Protected path touched: src/auth/session.rs"]
    );

    r.write_paths = vec!["src/authz/session.rs".into()];
    assert_allow_clean(&eval(&r, &[p]));

    let block = policy(
        "gp_pb",
        "Hooks",
        "protected_path",
        json!({"paths": ["**/.claude/hooks/**"], "action": "block"}),
    );
    r.write_paths = vec!["/home/me/.claude/hooks/pre.py".into()];
    assert_eq!(eval(&r, &[block]).decision, Verdict::Block);
}

#[test]
fn agent_allowlist_policy() {
    let p = policy(
        "gp_al",
        "Envelope",
        "agent_allowlist",
        json!({"allowed_action_types": ["build", "test"]}),
    );
    assert_allow_clean(&eval(&request("build"), from_ref(&p)));
    let e = eval(&request("deploy"), &[p]);
    assert_eq!(e.decision, Verdict::Warn, "default action");
    assert_eq!(
        e.warnings,
        vec!["Envelope: Action type \"deploy\" is outside the agent's allowlist"]
    );
    assert_eq!(e.matched_policies, vec!["gp_al"]);

    let strict = policy(
        "gp_as",
        "Strict",
        "agent_allowlist",
        json!({"allowed_action_types": ["build"], "action": "require_approval"}),
    );
    let e = eval(&request("deploy"), &[strict]);
    assert_eq!(e.decision, Verdict::RequireApproval);
    assert_eq!(
        e.reasons,
        vec!["Strict: Action type \"deploy\" is outside the agent's allowlist"]
    );
}

#[test]
fn rate_limit_fires_when_the_count_reaches_the_limit() {
    let p = policy(
        "gp_rl",
        "Runaway valve",
        "rate_limit",
        json!({"max_actions": 5, "window_minutes": 10}),
    );
    let r = request("build");

    let below = FakeCounter::returning(4);
    assert_allow_clean(&eval_with(&r, from_ref(&p), &below));
    assert_eq!(
        below.asked.borrow().as_slice(),
        [("deploy-agent-1".to_owned(), now() - Duration::minutes(10))]
    );

    let at = FakeCounter::returning(5);
    let e = eval_with(&r, from_ref(&p), &at);
    assert_eq!(e.decision, Verdict::Warn);
    assert_eq!(
        e.warnings,
        vec!["Runaway valve: Agent made 5 guard evaluations in 10min (limit: 5)"]
    );
    assert_eq!(e.matched_policies, vec!["gp_rl"]);

    // Without an agent id there is nobody to count: the counter is not even asked.
    let mut anonymous = r.clone();
    anonymous.agent_id = None;
    let counter = FakeCounter::returning(1000);
    assert_allow_clean(&eval_with(&anonymous, &[p], &counter));
    assert!(counter.asked.borrow().is_empty());
}

#[test]
fn rate_limit_defaults_and_action_override() {
    let p = policy("gp_rl", "Valve", "rate_limit", json!({"action": "block"}));
    let r = request("build");
    let counter = FakeCounter::returning(49);
    assert_allow_clean(&eval_with(&r, from_ref(&p), &counter));
    assert_eq!(counter.asked.borrow()[0].1, now() - Duration::minutes(60));

    let e = eval_with(&r, &[p], &FakeCounter::returning(50));
    assert_eq!(e.decision, Verdict::Block);
    assert_eq!(
        e.reasons,
        vec!["Valve: Agent made 50 guard evaluations in 60min (limit: 50)"]
    );
}

#[test]
fn known_type_with_non_object_rules_cannot_enforce() {
    let p = policy("gp_x", "Broken", "block_action_type", json!("[\"deploy\"]"));
    let e = eval(&request("deploy"), &[p]);
    assert_eq!(e.decision, Verdict::Allow);
    assert_eq!(
        e.warnings,
        vec!["Policy \"Broken\" (gp_x) is ACTIVE but cannot enforce: rules is not a JSON object"]
    );
    assert!(e.matched_policies.is_empty());
}

// ── scoping, activity, unknown types ──────────────────────────────────────────────────────────

#[test]
fn agent_scoping_includes_the_base_id_of_composed_agents() {
    let mut p = policy(
        "gp_s",
        "Scoped",
        "block_action_type",
        json!({"action_types": ["deploy"]}),
    );
    p.agent_ids = Some(vec!["claude-code".into()]);
    let mut r = request("deploy");
    for (agent, blocked) in [
        (Some("claude-code"), true),
        (Some("claude-code:explore"), true),
        (Some("claude-coder"), false),
        (Some("deploy-agent-1"), false),
        (None, false),
    ] {
        r.agent_id = agent.map(str::to_owned);
        let expected = if blocked {
            Verdict::Block
        } else {
            Verdict::Allow
        };
        assert_eq!(eval(&r, from_ref(&p)).decision, expected, "{agent:?}");
    }
    p.agent_ids = Some(vec![]);
    r.agent_id = None;
    assert_eq!(
        eval(&r, &[p]).decision,
        Verdict::Block,
        "empty agent_ids is org-wide"
    );
}

#[test]
fn inactive_policies_are_ignored_entirely() {
    let mut policies = vec![
        policy(
            "gp_1",
            "Block",
            "block_action_type",
            json!({"action_types": ["deploy"]}),
        ),
        policy("gp_2", "Weird", "webhook_check", json!({})),
        policy(
            "gp_3",
            "Grant",
            "allow_grant",
            json!({"action_type": "deploy", "expires_at": future()}),
        ),
    ];
    for p in &mut policies {
        p.active = false;
    }
    assert_allow_clean(&eval(&request("deploy"), &policies));
}

#[test]
fn unknown_policy_types_are_inert_with_an_exact_warning() {
    let policies = vec![
        policy(
            "gp_wh",
            "Webhook gate",
            "webhook_check",
            json!({"url": "https://x"}),
        ),
        policy(
            "gp_ra",
            "Hold",
            "require_approval",
            json!({"action_types": ["deploy"]}),
        ),
    ];
    let e = eval(&request("deploy"), &policies);
    assert_eq!(e.decision, Verdict::RequireApproval);
    assert_eq!(
        e.warnings,
        vec!["Policy \"Webhook gate\" (gp_wh) is ACTIVE but cannot enforce: unknown policy_type \"webhook_check\""]
    );
    assert_eq!(
        e.matched_policies,
        vec!["gp_ra"],
        "an inert policy never matches"
    );

    let e = eval(&request("build"), &policies[..1]);
    assert_eq!(e.decision, Verdict::Allow);
    assert_eq!(e.warnings.len(), 1);

    // Scoped to another agent: it does not govern this one, so it says nothing.
    let mut scoped = policies[0].clone();
    scoped.agent_ids = Some(vec!["someone-else".into()]);
    assert_allow_clean(&eval(&request("build"), &[scoped]));
}

// ── halt ──────────────────────────────────────────────────────────────────────────────────────

#[test]
fn org_halt_blocks_everything_without_consulting_policies() {
    let policies = vec![
        policy(
            "gp_w",
            "Posts",
            "warn_action_type",
            json!({"action_types": ["build"]}),
        ),
        grant(
            "gp_g",
            json!({"action_type": "build", "expires_at": future()}),
        ),
    ];
    let mut r = request("build");
    r.client_capabilities = vec![EXECUTION_CLAIMS.into()];
    let counter = FakeCounter::default();
    let context = GuardContext {
        policies: &policies,
        halt: Some(Halt {
            actor: "ops@example.com",
            reason: "incident 42",
        }),
        counter: &counter,
        operator_grant: Some(OperatorGrant {
            action_id: "act_1",
            approved_by: "boss",
        }),
        plan_step: None,
        now: now(),
    };
    let e = evaluate(&r, &context);
    assert_eq!(e.decision, Verdict::Block);
    assert_eq!(
        e.reasons,
        vec!["Org halted by ops@example.com: incident 42"]
    );
    assert!(e.warnings.is_empty());
    assert_eq!(e.matched_policies, vec![MATCHED_ORG_HALT]);
    assert_eq!(e.risk_score, 25);

    let e = evaluate(
        &r,
        &GuardContext {
            halt: Some(Halt {
                actor: "",
                reason: " ",
            }),
            ..context
        },
    );
    assert_eq!(e.reasons, vec!["Org halted by admin: no reason given"]);
}

// ── combination ───────────────────────────────────────────────────────────────────────────────

#[test]
fn severity_is_the_maximum_and_every_fired_policy_is_listed_in_order() {
    let policies = vec![
        policy(
            "gp_w",
            "Watch",
            "warn_action_type",
            json!({"action_types": ["deploy"]}),
        ),
        policy(
            "gp_ra",
            "Hold",
            "require_approval",
            json!({"action_types": ["deploy"]}),
        ),
        policy("gp_b", "Stop", "risk_threshold", json!({"threshold": 70})),
        policy(
            "gp_quiet",
            "Quiet",
            "block_action_type",
            json!({"action_types": ["x"]}),
        ),
    ];
    let e = eval(&request("deploy"), &policies);
    assert_eq!(e.decision, Verdict::Block);
    assert_eq!(
        e.reasons,
        vec![
            "Hold: Action type \"deploy\" requires approval",
            "Stop: Risk score 75 >= threshold 70"
        ]
    );
    assert_eq!(
        e.warnings,
        vec!["Watch: Action type \"deploy\" recorded for review"]
    );
    assert_eq!(e.matched_policies, vec!["gp_w", "gp_ra", "gp_b"]);

    // Order of the slice does not change the verdict, only the listing order.
    let reversed: Vec<Policy> = policies.iter().rev().cloned().collect();
    let e2 = eval(&request("deploy"), &reversed);
    assert_eq!(e2.decision, Verdict::Block);
    assert_eq!(e2.matched_policies, vec!["gp_b", "gp_ra", "gp_w"]);

    let e3 = eval(&request("deploy"), &policies[..2]);
    assert_eq!(e3.decision, Verdict::RequireApproval);
    let e4 = eval(&request("deploy"), &policies[..1]);
    assert_eq!(e4.decision, Verdict::Warn);
}

// ── allow_grant ───────────────────────────────────────────────────────────────────────────────

fn hold() -> Policy {
    policy(
        "gp_ra",
        "Hold",
        "require_approval",
        json!({"action_types": ["deploy"]}),
    )
}

#[test]
fn allow_grant_downgrades_require_approval_and_keeps_the_reasons_visible() {
    let policies = vec![
        hold(),
        grant(
            "gp_g",
            json!({"action_type": "deploy", "expires_at": future()}),
        ),
    ];
    let e = eval(&request("deploy"), &policies);
    assert_eq!(e.decision, Verdict::Allow);
    assert!(e.reasons.is_empty());
    assert_eq!(
        e.warnings,
        vec![
            "Grant gp_g: grant downgraded require_approval to allow",
            "superseded by grant: Hold: Action type \"deploy\" requires approval"
        ]
    );
    assert_eq!(e.matched_policies, vec!["gp_ra", "gp_g"]);
}

#[test]
fn allow_grant_downgrades_warn_but_never_block() {
    let warn = policy(
        "gp_w",
        "Watch",
        "warn_action_type",
        json!({"action_types": ["deploy"]}),
    );
    let g = grant(
        "gp_g",
        json!({"action_type": "deploy", "expires_at": future()}),
    );
    let e = eval(&request("deploy"), &[warn.clone(), g.clone()]);
    assert_eq!(e.decision, Verdict::Allow);
    assert_eq!(
        e.warnings,
        vec![
            "Watch: Action type \"deploy\" recorded for review",
            "Grant gp_g: grant downgraded warn to allow"
        ]
    );

    let block = policy(
        "gp_b",
        "Stop",
        "block_action_type",
        json!({"action_types": ["deploy"]}),
    );
    let e = eval(&request("deploy"), &[warn, block, g]);
    assert_eq!(e.decision, Verdict::Block);
    assert_eq!(e.matched_policies, vec!["gp_w", "gp_b"]);
    assert_eq!(e.reasons.len(), 1);
    assert_eq!(e.warnings.len(), 1);
}

#[test]
fn allow_grant_does_nothing_when_nothing_is_held() {
    let g = grant(
        "gp_g",
        json!({"action_type": "deploy", "expires_at": future()}),
    );
    assert_allow_clean(&eval(&request("deploy"), &[g]));
}

#[test]
fn allow_grant_expiry() {
    let at_now = grant(
        "gp_g",
        json!({"action_type": "deploy", "expires_at": now().to_rfc3339()}),
    );
    let e = eval(&request("deploy"), &[hold(), at_now]);
    assert_eq!(
        e.decision,
        Verdict::RequireApproval,
        "expiring now is expired"
    );
    assert!(
        e.warnings.is_empty(),
        "expiry is a lifecycle state, not a warning"
    );

    let past = grant(
        "gp_g",
        json!({"action_type": "deploy", "expires_at": "2020-01-01T00:00:00Z"}),
    );
    assert_eq!(
        eval(&request("deploy"), &[hold(), past]).decision,
        Verdict::RequireApproval
    );

    let just_after = (now() + Duration::seconds(1)).to_rfc3339();
    let live = grant(
        "gp_g",
        json!({"action_type": "deploy", "expires_at": just_after}),
    );
    assert_eq!(
        eval(&request("deploy"), &[hold(), live]).decision,
        Verdict::Allow
    );

    let offset = grant(
        "gp_g",
        json!({"action_type": "deploy", "expires_at": "2026-09-05T13:30:00+02:00"}),
    );
    assert_eq!(
        eval(&request("deploy"), &[hold(), offset]).decision,
        Verdict::RequireApproval,
        "13:30+02:00 is 11:30Z, before now"
    );

    for bad in [json!(null), json!("soon"), json!(12)] {
        let g = grant("gp_g", json!({"action_type": "deploy", "expires_at": bad}));
        let e = eval(&request("deploy"), &[hold(), g]);
        assert_eq!(e.decision, Verdict::RequireApproval);
        assert_eq!(
            e.warnings,
            vec!["Policy \"Grant gp_g\" (gp_g) is ACTIVE but cannot enforce: allow_grant has no valid rules.expires_at"]
        );
    }
}

#[test]
fn allow_grant_target_prefix() {
    let g = grant(
        "gp_g",
        json!({"action_type": "deploy", "target_prefix": "/srv/app", "expires_at": future()}),
    );
    let mut r = request("deploy");
    assert_eq!(
        eval(&r, &[hold(), g.clone()]).decision,
        Verdict::RequireApproval,
        "no target"
    );
    r.target = Some("/srv/application".into());
    assert_eq!(
        eval(&r, &[hold(), g.clone()]).decision,
        Verdict::RequireApproval
    );
    r.target = Some("/srv/app/releases/1".into());
    assert_eq!(eval(&r, &[hold(), g.clone()]).decision, Verdict::Allow);

    let host = grant(
        "gp_h",
        json!({"action_type": "deploy", "target_prefix": "stripe.com", "expires_at": future()}),
    );
    r.target = Some("https://api.stripe.com/v1/charges".into());
    assert_eq!(eval(&r, &[hold(), host.clone()]).decision, Verdict::Allow);
    r.target = Some("https://notstripe.com/".into());
    assert_eq!(eval(&r, &[hold(), host]).decision, Verdict::RequireApproval);

    // A grant for another action type never applies.
    let other = grant(
        "gp_o",
        json!({"action_type": "build", "expires_at": future()}),
    );
    assert_eq!(
        eval(&request("deploy"), &[hold(), other]).decision,
        Verdict::RequireApproval
    );
}

#[test]
fn allow_grant_max_risk() {
    let mut r = request("deploy"); // 75
    let low = grant(
        "gp_low",
        json!({"action_type": "deploy", "max_risk": 60, "expires_at": future()}),
    );
    let e = eval(&r, &[hold(), low.clone()]);
    assert_eq!(e.decision, Verdict::RequireApproval);
    assert_eq!(
        e.warnings,
        vec!["Grant gp_low: grant does not cover risk 75 (ceiling 60)"]
    );
    assert_eq!(e.matched_policies, vec!["gp_ra"]);

    // A later grant still gets its chance.
    let high = grant(
        "gp_high",
        json!({"action_type": "deploy", "max_risk": 75, "expires_at": future()}),
    );
    let e = eval(&r, &[hold(), low, high.clone()]);
    assert_eq!(e.decision, Verdict::Allow);
    assert_eq!(e.matched_policies, vec!["gp_ra", "gp_high"]);
    assert_eq!(
        e.warnings[0],
        "Grant gp_low: grant does not cover risk 75 (ceiling 60)"
    );
    assert_eq!(
        e.warnings[1],
        "Grant gp_high: grant downgraded require_approval to allow"
    );

    // The ceiling is judged on the final score, client-raised included.
    r.risk_score = Some(90);
    assert_eq!(eval(&r, &[hold(), high]).decision, Verdict::RequireApproval);
}

#[test]
fn ungrantable_verdicts_survive_allow_grants() {
    let mut guarded = hold();
    guarded.rules = json!({"action_types": ["deploy"], "ungrantable": true});
    guarded.name = "Catastrophe line".into();
    let g = grant(
        "gp_g",
        json!({"action_type": "deploy", "expires_at": future()}),
    );
    let e = eval(&request("deploy"), &[guarded.clone(), g.clone()]);
    assert_eq!(e.decision, Verdict::RequireApproval);
    assert_eq!(
        e.reasons,
        vec!["Catastrophe line: Action type \"deploy\" requires approval"]
    );
    assert_eq!(
        e.warnings,
        vec![
            "Catastrophe line: marked ungrantable — allow_grant policies cannot clear this verdict"
        ]
    );
    assert_eq!(e.matched_policies, vec!["gp_ra"]);

    // One ungrantable line among several raisers is enough to refuse the grant.
    let warn = policy(
        "gp_w",
        "Watch",
        "warn_action_type",
        json!({"action_types": ["deploy"]}),
    );
    let e = eval(&request("deploy"), &[warn, guarded.clone(), g.clone()]);
    assert_eq!(e.decision, Verdict::RequireApproval);

    // Without a grant that would apply there is nothing to refuse, so nothing is said.
    let e = eval(&request("deploy"), from_ref(&guarded));
    assert!(e.warnings.is_empty());

    // An ungrantable policy that did not fire does not protect anything.
    let mut unfired = guarded;
    unfired.id = "gp_u".into();
    unfired.rules = json!({"action_types": ["migrate"], "ungrantable": true});
    assert_eq!(
        eval(&request("deploy"), &[hold(), unfired, g]).decision,
        Verdict::Allow
    );
}

// ── operator grant ────────────────────────────────────────────────────────────────────────────

/// Evaluates with an operator's approval or a plan step in the context (no halt, no history).
fn eval_granted(
    request: &GuardRequest,
    policies: &[Policy],
    operator_grant: Option<OperatorGrant<'_>>,
    plan_step: Option<PlanStepGrant<'_>>,
) -> Evaluation {
    let counter = FakeCounter::default();
    evaluate(
        request,
        &GuardContext {
            policies,
            halt: None,
            counter: &counter,
            operator_grant,
            plan_step,
            now: now(),
        },
    )
}

fn eval_with_operator(request: &GuardRequest, policies: &[Policy]) -> Evaluation {
    let grant = OperatorGrant {
        action_id: "act_7d5c",
        approved_by: "alice@example.com",
    };
    eval_granted(request, policies, Some(grant), None)
}

#[test]
fn operator_grant_downgrades_require_approval_for_execution_claims() {
    let mut r = request("deploy");
    r.client_capabilities = vec!["allow_contained".into(), EXECUTION_CLAIMS.into()];
    let e = eval_with_operator(&r, &[hold()]);
    assert_eq!(e.decision, Verdict::Allow);
    assert!(e.reasons.is_empty());
    assert_eq!(
        e.warnings,
        vec![
            "Covered by operator approval act_7d5c (approved by alice@example.com) — require_approval downgraded to allow",
            "superseded by grant: Hold: Action type \"deploy\" requires approval"
        ]
    );
    assert_eq!(e.matched_policies, vec!["gp_ra", MATCHED_OPERATOR_APPROVAL]);

    r.act_hash = Some("9f86d0".into());
    let e = eval_with_operator(&r, &[hold()]);
    assert_eq!(
        e.warnings[0],
        "Covered by operator approval act_7d5c (approved by alice@example.com, act-bound) — require_approval downgraded to allow"
    );
}

#[test]
fn operator_grant_needs_the_execution_claims_capability() {
    let mut r = request("deploy");
    let e = eval_with_operator(&r, &[hold()]);
    assert_eq!(e.decision, Verdict::RequireApproval);
    assert!(e.warnings.is_empty());
    r.client_capabilities = vec!["allow_contained".into()];
    assert_eq!(
        eval_with_operator(&r, &[hold()]).decision,
        Verdict::RequireApproval
    );
}

#[test]
fn operator_grant_only_touches_require_approval() {
    let mut r = request("deploy");
    r.client_capabilities = vec![EXECUTION_CLAIMS.into()];

    let block = policy(
        "gp_b",
        "Stop",
        "block_action_type",
        json!({"action_types": ["deploy"]}),
    );
    let e = eval_with_operator(&r, &[hold(), block]);
    assert_eq!(e.decision, Verdict::Block);
    assert_eq!(e.reasons.len(), 2);
    assert!(!e
        .matched_policies
        .iter()
        .any(|m| m == MATCHED_OPERATOR_APPROVAL));

    let warn = policy(
        "gp_w",
        "Watch",
        "warn_action_type",
        json!({"action_types": ["deploy"]}),
    );
    let e = eval_with_operator(&r, &[warn]);
    assert_eq!(e.decision, Verdict::Warn);
    assert_eq!(e.matched_policies, vec!["gp_w"]);

    let e = eval_with_operator(&r, &[]);
    assert_allow_clean(&e);
}

#[test]
fn operator_grant_covers_ungrantable_holds() {
    // An operator approving this exact action is the human review ungrantable asks for; if it
    // could not clear the hold, an approved action could never be claimed.
    let mut r = request("deploy");
    r.client_capabilities = vec![EXECUTION_CLAIMS.into()];
    let mut guarded = hold();
    guarded.rules = json!({"action_types": ["deploy"], "ungrantable": true});
    let e = eval_with_operator(&r, &[guarded]);
    assert_eq!(e.decision, Verdict::Allow);
    assert_eq!(e.matched_policies, vec!["gp_ra", MATCHED_OPERATOR_APPROVAL]);
}

#[test]
fn allow_grant_runs_before_the_operator_grant() {
    let mut r = request("deploy");
    r.client_capabilities = vec![EXECUTION_CLAIMS.into()];
    let g = grant(
        "gp_g",
        json!({"action_type": "deploy", "expires_at": future()}),
    );
    let e = eval_with_operator(&r, &[hold(), g]);
    assert_eq!(e.decision, Verdict::Allow);
    assert_eq!(
        e.matched_policies,
        vec!["gp_ra", "gp_g"],
        "the operator's approval is not spent"
    );
}

// ── replay and cost ───────────────────────────────────────────────────────────────────────────

fn busy_policy_set() -> Vec<Policy> {
    vec![
        policy(
            "gp_1",
            "Watch",
            "warn_action_type",
            json!({"action_types": ["deploy"]}),
        ),
        policy(
            "gp_2",
            "Hold",
            "require_approval",
            json!({"action_types": ["deploy"]}),
        ),
        policy("gp_3", "Gate", "risk_threshold", json!({"threshold": 95})),
        policy(
            "gp_4",
            "Paths",
            "protected_path",
            json!({"paths": ["**/prod/**"]}),
        ),
        policy("gp_5", "Valve", "rate_limit", json!({"max_actions": 3})),
        policy("gp_6", "Webhook", "webhook_check", json!({})),
        grant(
            "gp_7",
            json!({"action_type": "deploy", "max_risk": 50, "expires_at": future()}),
        ),
    ]
}

fn busy_request() -> GuardRequest {
    GuardRequest {
        action_type: "deploy".into(),
        declared_goal: Some("deploy the release and rotate the API keys".into()),
        risk_score: Some(30),
        agent_id: Some("claude-code:explore".into()),
        agent_name: Some("Explorer".into()),
        systems_touched: vec!["Production".into(), "shell".into()],
        reversible: Some(false),
        target: Some("/srv/prod/app".into()),
        write_paths: vec!["/srv/prod/app/.env".into()],
        client_capabilities: vec![EXECUTION_CLAIMS.into()],
        act_hash: Some("abc".into()),
        verification: None,
    }
}

#[test]
fn evaluation_is_deterministic_and_replayable_from_its_stored_form() {
    let policies = busy_policy_set();
    let r = busy_request();
    let first = eval_with(&r, &policies, &FakeCounter::returning(3));
    let second = eval_with(&r, &policies, &FakeCounter::returning(3));
    assert_eq!(first, second);
    assert_eq!(first.decision, Verdict::Block);
    assert_eq!(first.risk_score, 100);

    // What an auditor replays: the stored request and policies, deserialized.
    let stored_request: GuardRequest =
        serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    let stored_policies: Vec<Policy> =
        serde_json::from_str(&serde_json::to_string(&policies).unwrap()).unwrap();
    let replayed = eval_with(
        &stored_request,
        &stored_policies,
        &FakeCounter::returning(3),
    );
    assert_eq!(replayed, first);
    let stored_evaluation: Evaluation =
        serde_json::from_str(&serde_json::to_string(&first).unwrap()).unwrap();
    assert_eq!(stored_evaluation, first);
}

#[test]
fn evaluation_serializes_with_the_contract_keys() {
    let e = eval(&request("deploy"), &[hold()]);
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["decision"], "require_approval");
    assert_eq!(json["risk_score"], 75);
    assert_eq!(json["risk_breakdown"]["final"], 75);
    assert_eq!(json["matched_policies"], json!(["gp_ra"]));
    assert_eq!(json["warnings"], json!([]));
}

#[test]
fn regexes_are_compiled_once_not_per_call() {
    let policies = busy_policy_set();
    let r = busy_request();
    // Warm every lazily compiled pattern set.
    let _ = eval(&r, &policies);
    let _ = scan_prompt_injection("warm up");
    let before = compiled_pattern_count();
    assert!(before > 0);
    for _ in 0..200 {
        let _ = eval(&r, &policies);
        let _ = scan_prompt_injection("ignore previous instructions <system>");
    }
    assert_eq!(compiled_pattern_count(), before);
}

#[test]
fn verdicts_parse_what_they_print() {
    for v in [
        Verdict::Allow,
        Verdict::Warn,
        Verdict::RequireApproval,
        Verdict::Block,
    ] {
        assert_eq!(Verdict::parse(v.as_str()), Some(v));
    }
    assert_eq!(Verdict::parse("allow_contained"), None);
}

// ── delegation constraints ────────────────────────────────────────────────────────────────────

fn delegate(agent: &str, action_type: &str, risk: u8) -> GuardRequest {
    GuardRequest {
        agent_id: Some(agent.into()),
        risk_score: Some(risk),
        ..request(action_type)
    }
}

#[test]
fn delegation_constraints_cap_composed_subagents_only() {
    let cap = policy(
        "gp_dc",
        "Explore cap",
        "delegation_constraint",
        json!({"parent": "claude-code", "child_types": ["explore"], "max_risk_score": 40}),
    );
    // Within the ceiling, or not a delegate of this parent and type: not governed.
    assert_allow_clean(&eval(
        &delegate("claude-code:explore", "read", 30),
        from_ref(&cap),
    ));
    assert_allow_clean(&eval(&delegate("claude-code", "read", 75), from_ref(&cap)));
    assert_allow_clean(&eval(
        &delegate("claude-code:build", "read", 75),
        from_ref(&cap),
    ));
    assert_allow_clean(&eval(
        &delegate("cursor:explore", "read", 75),
        from_ref(&cap),
    ));
    let e = eval(&delegate("claude-code:explore", "read", 75), &[cap]);
    assert_eq!(
        e.decision,
        Verdict::RequireApproval,
        "the default escalation"
    );
    assert_eq!(
        e.reasons,
        vec!["Explore cap: risk 75 exceeds the delegated ceiling 40 for claude-code:explore"]
    );
    assert_eq!(e.matched_policies, vec!["gp_dc"]);
    assert!(
        e.warnings.is_empty(),
        "enforced, so not inert: {:?}",
        e.warnings
    );
}

#[test]
fn every_broken_delegation_limit_is_a_reason_and_block_escalates() {
    let strict = policy(
        "gp_ds",
        "Delegates",
        "delegation_constraint",
        json!({"allowed_action_types": ["read", "deploy"], "blocked_action_types": ["deploy"],
               "blocked_path_globs": ["/etc/**"], "max_depth": 1,
               "require_verified_parent": true, "escalate_action": "block"}),
    );
    let mut r = delegate("a:b:c", "deploy", 10);
    r.target = Some("/etc/passwd".into());
    let e = eval(&r, from_ref(&strict));
    assert_eq!(e.decision, Verdict::Block);
    assert_eq!(
        e.reasons,
        vec!["Delegates: delegation depth 2 exceeds max_depth 1; action type \"deploy\" is blocked for delegates; path /etc/passwd is blocked for delegates; the parent's identity is not verified for a:b:c"]
    );
    let mut ok = delegate("a:b", "read", 10);
    ok.verification = Some(Verification::Verified);
    assert_allow_clean(&eval(&ok, from_ref(&strict)));
    let e = eval(&delegate("a:b", "write", 10), &[strict]);
    assert_eq!(
        e.reasons,
        vec!["Delegates: action type \"write\" is not delegated; the parent's identity is not verified for a:b"]
    );
}

#[test]
fn delegation_constraints_are_validated_at_write_time() {
    let errors = |rules: Value| validate_policy("delegation_constraint", &rules).unwrap_err();
    assert_eq!(
        errors(json!({})),
        vec!["delegation_constraint policy requires at least one of rules.max_risk_score, rules.allowed_action_types, rules.blocked_action_types, rules.blocked_path_globs, rules.max_depth, rules.require_verified_parent"]
    );
    assert_eq!(
        errors(json!({"max_risk_score": 140, "max_depth": 9, "escalate_action": "warn"})),
        vec![
            "delegation_constraint rules.max_risk_score must be 0-100",
            "delegation_constraint rules.max_depth must be an integer 1-8",
            "delegation_constraint rules.escalate_action must be require_approval or block",
        ]
    );
    assert!(validate_policy("delegation_constraint", &json!({"max_risk_score": 40})).is_ok());
}

// ── plan steps ────────────────────────────────────────────────────────────────────────────────

fn eval_with_plan(request: &GuardRequest, policies: &[Policy], approved: bool) -> Evaluation {
    let step = PlanStepGrant {
        plan_id: "pa_1",
        step_id: "ps_1_2",
        seq: 2,
        approved,
        reviewed_by: "key_admin",
    };
    eval_granted(request, policies, None, Some(step))
}

#[test]
fn an_approved_plan_step_clears_a_hold_but_not_a_block() {
    let e = eval_with_plan(&request("deploy"), &[hold()], true);
    assert_eq!(e.decision, Verdict::Allow);
    assert_eq!(e.matched_policies.last().unwrap(), MATCHED_PLAN_GRANT);
    assert!(
        e.warnings[0].starts_with("Covered by plan pa_1 step 2 (approved by key_admin, act-bound)"),
        "{:?}",
        e.warnings
    );
    let block = policy(
        "gp_b",
        "No",
        "block_action_type",
        json!({"action_types": ["deploy"]}),
    );
    let e = eval_with_plan(&request("deploy"), &[block], true);
    assert_eq!(e.decision, Verdict::Block);
    assert!(!e.matched_policies.iter().any(|m| m == MATCHED_PLAN_GRANT));
}

#[test]
fn a_denied_plan_step_blocks_whatever_the_policies_say() {
    let e = eval_with_plan(&request("deploy"), &[], false);
    assert_eq!(e.decision, Verdict::Block);
    assert_eq!(
        e.reasons,
        vec!["Plan pa_1 step 2 was denied at review by key_admin"]
    );
    assert_eq!(e.matched_policies, vec![MATCHED_PLAN_DENY]);
}

//! The typed read functions (`dashclaw_projections::read`, `dashclaw_store::chain`) against
//! real PostgreSQL: data is made through the REST API, and each function must answer what the
//! endpoint answers for the same question (action filters with pages and totals, the guard
//! decision log, signals, assumptions), besides a few facts fixed by the data itself, so that
//! two readers agreeing on nothing cannot pass. A read-model row that does not decode is an
//! error, never left out.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use chrono::{Duration, Utc};
use dashclaw_domain::action::{ActionStatus, OutcomeStatus};
use dashclaw_domain::guard::Verdict;
use dashclaw_domain::ids::ActionId;
use dashclaw_events::OrgId;
use dashclaw_projections::read::actions::{self, ActionFilter};
use dashclaw_projections::read::assumptions::{self, AssumptionFilter};
use dashclaw_projections::read::decisions::{self, DecisionFilter};
use dashclaw_projections::read::{signals, Page};
use dashclaw_projections::ProjectionError;
use futures_util::TryStreamExt;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::Api;

fn org() -> OrgId {
    OrgId::new("org_default").unwrap()
}

async fn policy(api: &Api, policy_type: &str, rules: Value) {
    let (status, body) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": format!("{policy_type} policy"), "policy_type": policy_type, "rules": rules}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Records an action (`body` holds everything but the goal); returns its id.
async fn action(api: &Api, mut body: Value) -> String {
    body["declared_goal"] = json!("read model test");
    let (status, answer) = api.post("/api/actions", &api.member, body.clone()).await;
    assert!(
        status == StatusCode::CREATED
            || status == StatusCode::ACCEPTED
            || status == StatusCode::FORBIDDEN,
        "{body} -> {status} {answer}"
    );
    let id = answer["action_id"]
        .as_str()
        .or_else(|| answer["action"]["action_id"].as_str())
        .unwrap_or_else(|| panic!("{body} -> {answer}"));
    id.to_owned()
}

fn ago(d: Duration) -> String {
    (Utc::now() - d).to_rfc3339()
}

fn ids_of(list: &Value, key: &str, field: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|r| r[field].as_str().unwrap().to_owned())
        .collect()
}

/// A spread of actions over every filtered column: 3 agents, 2 swarms, 3 types, 4 risk
/// levels, several statuses and outcomes, costs, and starts from an hour to 20 days ago.
async fn spread_of_actions(api: &Api) -> Vec<String> {
    policy(
        api,
        "block_action_type",
        json!({"action_types": ["security"]}),
    )
    .await;
    let mut ids = Vec::new();
    let agents = ["a", "b", "c"];
    let types = ["build", "deploy", "fix"];
    let risks = [10, 50, 75, 95];
    let statuses = ["running", "completed", "failed", "cancelled", "pending"];
    let starts = [1, 30, 80, 500];
    for i in 0..24usize {
        let mut body = json!({
            "agent_id": agents[i % 3],
            "action_type": types[(i / 3) % 3],
            "risk_score": risks[i % 4],
            "status": statuses[i % 5],
            "timestamp_start": ago(Duration::hours(starts[(i / 2) % 4])),
        });
        if i % 2 == 0 {
            body["swarm_id"] = json!(if i % 4 == 0 { "s1" } else { "s2" });
        }
        if i % 3 != 2 {
            body["cost_estimate"] = json!(0.25 * i as f64);
        }
        ids.push(action(api, body).await);
    }
    // Blocked by the policy.
    for agent in ["a", "b"] {
        ids.push(
            action(
                api,
                json!({"agent_id": agent, "action_type": "security", "risk_score": 80}),
            )
            .await,
        );
    }
    // Outcomes on some running ones (ids 0, 5, 10, ...: status running).
    for (n, i) in [0usize, 10, 20].into_iter().enumerate() {
        let status = if n == 1 { "failed" } else { "completed" };
        let (s, b) = api
            .post(
                &format!("/api/actions/{}/outcome", ids[i]),
                &api.member,
                json!({"status": status, "summary": "done", "error_message": "boom"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    ids
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn action_filters_pages_and_totals_answer_as_the_list_endpoint(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let ids = spread_of_actions(&api).await;
    let org = org();
    let none = ActionFilter::default;
    let cases: Vec<(&str, ActionFilter)> = vec![
        ("", none()),
        (
            "agent_id=a",
            ActionFilter {
                agent_id: Some("a".into()),
                ..none()
            },
        ),
        (
            "swarm_id=s1",
            ActionFilter {
                swarm_id: Some("s1".into()),
                ..none()
            },
        ),
        (
            "status=running",
            ActionFilter {
                status: Some(ActionStatus::Running),
                ..none()
            },
        ),
        (
            "exclude_status=completed",
            ActionFilter {
                exclude_status: Some(ActionStatus::Completed),
                ..none()
            },
        ),
        // exclude_status is ignored when status is given.
        (
            "status=failed&exclude_status=failed",
            ActionFilter {
                status: Some(ActionStatus::Failed),
                exclude_status: Some(ActionStatus::Failed),
                ..none()
            },
        ),
        (
            "action_type=deploy&risk_min=50",
            ActionFilter {
                action_type: Some("deploy".into()),
                risk_min: Some(50),
                ..none()
            },
        ),
        (
            "outcome_status=completed",
            ActionFilter {
                outcome_status: Some(OutcomeStatus::Completed),
                ..none()
            },
        ),
        (
            "days=2",
            ActionFilter {
                days: Some(2),
                ..none()
            },
        ),
        (
            "agent_id=b&days=5&exclude_status=blocked&risk_min=40",
            ActionFilter {
                agent_id: Some("b".into()),
                days: Some(5),
                exclude_status: Some(ActionStatus::Blocked),
                risk_min: Some(40),
                ..none()
            },
        ),
        (
            "agent_id=nobody",
            ActionFilter {
                agent_id: Some("nobody".into()),
                ..none()
            },
        ),
    ];
    let pages = [(50, 0), (5, 0), (5, 5), (3, 7), (10, 100)];
    let mut totals = Vec::new();
    for (query, filter) in &cases {
        for (limit, offset) in pages {
            let uri = format!("/api/actions?{query}&limit={limit}&offset={offset}");
            let (status, rest) = api.get(&uri, &api.member).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {rest}");
            let page = actions::page(&pool, &org, filter, Page { limit, offset })
                .await
                .unwrap();
            let mine: Vec<String> = page.iter().map(|r| r.action_id.to_string()).collect();
            assert_eq!(mine, ids_of(&rest, "actions", "action_id"), "{uri}");
            let stats = actions::stats(&pool, &org, filter).await.unwrap();
            assert_eq!(json!(stats.total), rest["total"], "{uri}");
            let s = &rest["stats"];
            assert_eq!(
                json!([
                    stats.total,
                    stats.completed,
                    stats.failed,
                    stats.running,
                    stats.blocked,
                    stats.high_risk
                ]),
                json!([
                    s["total"],
                    s["completed"],
                    s["failed"],
                    s["running"],
                    s["blocked"],
                    s["high_risk"]
                ]),
                "{uri}"
            );
            let close = |a: f64, b: &Value| (a - b.as_f64().unwrap()).abs() < 1e-9;
            assert!(
                close(stats.avg_risk.unwrap_or(0.0), &s["avg_risk"]),
                "{uri}"
            );
            assert!(
                close(stats.total_cost.unwrap_or(0.0), &s["total_cost"]),
                "{uri}"
            );
            if (limit, offset) == (50, 0) {
                totals.push(stats.total);
            }
        }
    }
    // The data itself: every action, a third by agent, none for nobody, and the status
    // filter deciding alone.
    assert_eq!(totals[0], ids.len() as i64);
    assert_eq!(totals[1], 9, "agent a: 8 of the spread and one blocked");
    assert_eq!(totals[10], 0);
    let failed = actions::stats(
        &pool,
        &org,
        &ActionFilter {
            status: Some(ActionStatus::Failed),
            ..none()
        },
    )
    .await
    .unwrap();
    assert_eq!(totals[5], failed.total);
    assert!(failed.total > 0);
    assert!(
        totals.iter().collect::<BTreeSet<_>>().len() >= 6,
        "{totals:?}"
    );

    // The GraphQL filter's own fields (risk_max, since, until), against the records.
    let all = actions::page(&pool, &org, &none(), Page::first(1000))
        .await
        .unwrap();
    let (since, until) = (
        Utc::now() - Duration::hours(90),
        Utc::now() - Duration::hours(10),
    );
    let filter = ActionFilter {
        risk_max: Some(75),
        since: Some(since),
        until: Some(until),
        ..none()
    };
    let expected: Vec<_> = all
        .iter()
        .filter(|r| r.risk_score <= 75 && r.timestamp_start >= since && r.timestamp_start < until)
        .map(|r| r.action_id.clone())
        .collect();
    assert!(!expected.is_empty() && expected.len() < all.len());
    let got: Vec<_> = actions::page(&pool, &org, &filter, Page::first(1000))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action_id)
        .collect();
    assert_eq!(got, expected);
    let (status, gql) = api
        .post(
            "/graphql",
            &api.member,
            json!({
                "query": "query($f: DecisionFilter) { decisions(first: 100, filter: $f) { edges { node { actionId } } } }",
                "variables": {"f": {"riskMax": 75, "since": since.to_rfc3339(), "until": until.to_rfc3339()}},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{gql}");
    let graphql: Vec<String> = gql["data"]["decisions"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["actionId"].as_str().unwrap().to_owned())
        .collect();
    let got: Vec<String> = got.iter().map(ToString::to_string).collect();
    assert_eq!(graphql, got);

    // Neighbours and agents.
    let of_a = actions::of_agent(&pool, &org, "a", 200).await.unwrap();
    assert_eq!(of_a.len(), 9);
    assert!(of_a
        .windows(2)
        .all(|w| w[0].timestamp_start >= w[1].timestamp_start));
    let agents = actions::agents(&pool, &org, 500).await.unwrap();
    let counts: Vec<(String, i64)> = agents
        .iter()
        .map(|a| (a.agent_id.clone(), a.actions))
        .collect();
    assert_eq!(counts, [("a".into(), 9), ("b".into(), 9), ("c".into(), 8)]);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn the_decision_log_pages_totals_and_stats_answer_as_the_guard_endpoint(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    policy(
        &api,
        "block_action_type",
        json!({"action_types": ["security"]}),
    )
    .await;
    policy(&api, "warn_action_type", json!({"action_types": ["fix"]})).await;
    policy(
        &api,
        "require_approval",
        json!({"action_types": ["deploy"]}),
    )
    .await;
    let types = ["build", "security", "fix", "deploy"];
    for i in 0..22usize {
        let mut body = json!({"action_type": types[i % 4], "declared_goal": "x"});
        if i % 5 != 4 {
            body["agent_id"] = json!(["a", "b"][i % 2]);
        }
        let (status, answer) = api.post("/api/guard", &api.member, body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let org = org();
    let none = DecisionFilter::default;
    let cases: Vec<(&str, DecisionFilter)> = vec![
        ("", none()),
        (
            "agent_id=a",
            DecisionFilter {
                agent_id: Some("a".into()),
                ..none()
            },
        ),
        (
            "decision=block",
            DecisionFilter {
                decision: Some(Verdict::Block),
                ..none()
            },
        ),
        (
            "agent_id=b&decision=warn&days=1",
            DecisionFilter {
                agent_id: Some("b".into()),
                decision: Some(Verdict::Warn),
                days: Some(1),
            },
        ),
        (
            "decision=require_approval&days=90",
            DecisionFilter {
                decision: Some(Verdict::RequireApproval),
                days: Some(90),
                ..none()
            },
        ),
    ];
    let mut totals = Vec::new();
    for (query, filter) in &cases {
        for (limit, offset) in [(20, 0), (4, 0), (4, 4), (7, 3), (5, 50)] {
            let uri = format!("/api/guard?{query}&limit={limit}&offset={offset}");
            let (status, rest) = api.get(&uri, &api.member).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {rest}");
            let page = decisions::page(&pool, &org, filter, Page { limit, offset })
                .await
                .unwrap();
            let mine: Vec<String> = page.iter().map(|d| d.decision_id.to_string()).collect();
            assert_eq!(mine, ids_of(&rest, "decisions", "decision_id"), "{uri}");
            let total = decisions::total(&pool, &org, filter).await.unwrap();
            assert_eq!(json!(total), rest["total"], "{uri}");
            let s = decisions::stats_24h(&pool, &org).await.unwrap();
            assert_eq!(
                json!({"total_24h": s.total, "blocks_24h": s.blocks, "warns_24h": s.warns, "approvals_24h": s.approvals}),
                rest["stats"],
                "{uri}"
            );
            if (limit, offset) == (20, 0) {
                totals.push(total);
            }
        }
    }
    // 22 decisions of which 6 blocks (security: i = 1, 5, ..., 21), 9 of agent a.
    assert_eq!(totals[..3], [22, 9, 6]);
    let s = decisions::stats_24h(&pool, &org).await.unwrap();
    assert_eq!((s.total, s.blocks, s.warns, s.approvals), (22, 6, 5, 5));

    // The replay window finds the decision made under a key; posture samples the recorded
    // requests; the rate seed counts an agent's recent decisions.
    let (_, first) = api
        .post(
            "/api/guard",
            &api.member,
            json!({"action_type": "build", "agent_id": "a", "idempotency_key": "k1"}),
        )
        .await;
    // (The endpoints catch up before they read; so does a caller of these functions.)
    api.state
        .service
        .projections()
        .catch_up(&org)
        .await
        .unwrap();
    let found =
        decisions::by_idempotency_key(&pool, &org, "k1", Utc::now() - Duration::minutes(10))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(json!(found.decision_id), first["decision_id"]);
    assert!(
        decisions::by_idempotency_key(&pool, &org, "k2", Utc::now() - Duration::minutes(10))
            .await
            .unwrap()
            .is_none()
    );
    let (_, posture) = api.get("/api/posture", &api.member).await;
    let recorded = decisions::recorded_requests(&pool, &org, Utc::now() - Duration::days(30), 5000)
        .await
        .unwrap();
    assert_eq!(json!(recorded.len()), posture["sample_size"], "{posture}");
    assert_eq!(recorded.len(), 23);
    let few = decisions::recorded_requests(&pool, &org, Utc::now() - Duration::days(30), 3)
        .await
        .unwrap();
    assert_eq!(few, recorded[..3]);
    let seed = decisions::recent_of_agent(&pool, &org, "a", Utc::now() - Duration::hours(1), 100)
        .await
        .unwrap();
    assert_eq!(seed.len(), 10);
    assert!(seed.windows(2).all(|w| w[0].ledger_seq > w[1].ledger_seq));
}

/// (agent, action) pairs of the signals of one type in the endpoint's answer.
fn signalled(rest: &Value, kind: &str) -> BTreeSet<(String, Option<String>)> {
    rest["signals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == kind)
        .map(|s| {
            (
                s["agent_id"].as_str().unwrap().to_owned(),
                s["action_id"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn signals_and_assumptions_answer_as_their_endpoints(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    policy(
        &api,
        "require_approval",
        json!({"action_types": ["deploy"]}),
    )
    .await;
    // Repeated failures: f fails 4 times (amber), g 6 times (red), e only 3 (no signal).
    for (agent, n) in [("f", 4), ("g", 6), ("e", 3)] {
        for _ in 0..n {
            action(
                &api,
                json!({"agent_id": agent, "action_type": "build", "status": "failed"}),
            )
            .await;
        }
    }
    // Lost confirmations: running for 20 minutes, past the 15-minute default, then swept.
    for _ in 0..2 {
        action(
            &api,
            json!({"agent_id": "l", "action_type": "build",
                   "timestamp_start": ago(Duration::minutes(20))}),
        )
        .await;
    }
    api.state
        .service
        .projections()
        .catch_up_all()
        .await
        .unwrap();
    let effects = dashclaw::service::sweep_effects::LedgerEffects::new(api.state.service.clone());
    let clock = api.state.service.clock().clone();
    let sweeps = dashclaw_sweeps::Sweeps::new(
        pool.clone(),
        dashclaw_sweeps::Settings::default(),
        std::sync::Arc::new(effects),
        std::sync::Arc::new(move || clock.now()),
    );
    // The two of l (the failed ones are finished); what follows is recorded after the sweep.
    assert_eq!(sweeps.lost_confirmations().await.unwrap(), 2);
    // Stale running actions (5 h and 30 h), approvals waiting (2 h and 5 h), one too fresh
    // for either.
    for (agent, kind, hours) in [
        ("s", "build", 5),
        ("s", "build", 30),
        ("t", "deploy", 2),
        ("t", "deploy", 5),
        ("t", "build", 0),
    ] {
        action(
            &api,
            json!({"agent_id": agent, "action_type": kind,
                   "timestamp_start": ago(Duration::hours(hours) + Duration::minutes(1))}),
        )
        .await;
    }
    // High impact without oversight.
    let risky = action(
        &api,
        json!({"agent_id": "h", "action_type": "build", "risk_score": 95}),
    )
    .await;
    // Assumption drift: 4 of d's assumptions invalidated (red), one validated, one open.
    let held = action(&api, json!({"agent_id": "d", "action_type": "build"})).await;
    let mut assumption_ids = Vec::new();
    for i in 0..6 {
        let (status, body) = api
            .post(
                "/api/assumptions",
                &api.member,
                json!({"action_id": held, "assumption": format!("belief {i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assumption_ids.push(body["assumption_id"].as_str().unwrap().to_owned());
    }
    for (i, id) in assumption_ids.iter().enumerate().take(5) {
        let body = if i < 4 {
            json!({"validated": false, "invalidated_reason": "wrong"})
        } else {
            json!({"validated": true})
        };
        let (status, answer) = api
            .call(
                axum::http::Method::PATCH,
                &format!("/api/assumptions/{id}"),
                &api.member,
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    let org = org();
    for agent in [None, Some("g"), Some("s"), Some("nobody")] {
        let uri = match agent {
            None => "/api/signals".to_owned(),
            Some(a) => format!("/api/signals?agent_id={a}"),
        };
        let (status, rest) = api.get(&uri, &api.member).await;
        assert_eq!(status, StatusCode::OK, "{rest}");
        let counts = |rows: Vec<signals::AgentCount>| {
            rows.into_iter()
                .map(|r| (r.agent_id, None))
                .collect::<BTreeSet<_>>()
        };
        let failures = signals::repeated_failures(&pool, &org, agent)
            .await
            .unwrap();
        assert_eq!(
            counts(failures),
            signalled(&rest, "repeated_failures"),
            "{uri}"
        );
        let drift = signals::assumption_drift(&pool, &org, agent).await.unwrap();
        assert_eq!(counts(drift), signalled(&rest, "assumption_drift"), "{uri}");
        let flagged = |rows: Vec<(String, String)>| {
            rows.into_iter()
                .map(|(agent, action)| (agent, Some(action)))
                .collect::<BTreeSet<_>>()
        };
        let lost = signals::lost_confirmations(&pool, &org, agent)
            .await
            .unwrap();
        assert_eq!(
            flagged(
                lost.into_iter()
                    .map(|r| (r.agent_id, r.action_id))
                    .collect()
            ),
            signalled(&rest, "lost_confirmation"),
            "{uri}"
        );
        let stale = signals::stale_running(&pool, &org, agent).await.unwrap();
        assert!(stale.windows(2).all(|w| w[0].hours >= w[1].hours));
        assert_eq!(
            flagged(
                stale
                    .into_iter()
                    .map(|r| (r.agent_id, r.action_id))
                    .collect()
            ),
            signalled(&rest, "stale_running_action"),
            "{uri}"
        );
        let backlog = signals::approval_backlog(&pool, &org, agent).await.unwrap();
        assert_eq!(
            flagged(
                backlog
                    .into_iter()
                    .map(|r| (r.agent_id, r.action_id))
                    .collect()
            ),
            signalled(&rest, "approval_backlog"),
            "{uri}"
        );
        let risky_rows = signals::unsupervised_high_risk(&pool, &org, agent)
            .await
            .unwrap();
        assert_eq!(
            flagged(
                risky_rows
                    .into_iter()
                    .map(|r| (r.agent_id, r.action_id))
                    .collect()
            ),
            signalled(&rest, "high_impact_low_oversight"),
            "{uri}"
        );
    }
    // The data itself.
    let failures = signals::repeated_failures(&pool, &org, None).await.unwrap();
    let mut failures: Vec<(String, i64)> = failures
        .into_iter()
        .map(|r| (r.agent_id, r.count))
        .collect();
    failures.sort();
    assert_eq!(failures, [("f".into(), 4), ("g".into(), 6)]);
    let drift = signals::assumption_drift(&pool, &org, None).await.unwrap();
    assert_eq!(drift.len(), 1);
    assert_eq!((drift[0].agent_id.as_str(), drift[0].count), ("d", 4));
    let stale = signals::stale_running(&pool, &org, None).await.unwrap();
    assert_eq!(stale.len(), 2);
    assert!(
        stale[0].hours > 30.0 && (5.0..6.0).contains(&stale[1].hours),
        "{stale:?}"
    );
    assert_eq!(
        signals::lost_confirmations(&pool, &org, None)
            .await
            .unwrap()
            .len(),
        2
    );
    let backlog = signals::approval_backlog(&pool, &org, None).await.unwrap();
    assert_eq!(backlog.len(), 2);
    assert!(backlog[0].hours > backlog[1].hours, "oldest first");
    let unsupervised = signals::unsupervised_high_risk(&pool, &org, None)
        .await
        .unwrap();
    assert_eq!(unsupervised.len(), 1);
    assert_eq!(
        (
            unsupervised[0].action_id.as_str(),
            unsupervised[0].risk_score
        ),
        (risky.as_str(), 95)
    );

    // Assumptions: of the action (as its detail shows them), and the list's filters.
    let (_, detail) = api.get(&format!("/api/actions/{held}"), &api.member).await;
    let held_id = ActionId::parse(&held).unwrap();
    let of_action = assumptions::of_action(&pool, &org, &held_id).await.unwrap();
    let listed: Vec<String> = of_action
        .iter()
        .map(|a| a.assumption_id.to_string())
        .collect();
    assert_eq!(listed, ids_of(&detail, "assumptions", "assumption_id"));
    assert_eq!(
        listed.iter().collect::<BTreeSet<_>>(),
        assumption_ids.iter().collect::<BTreeSet<_>>()
    );
    let of_held = format!("action_id={held}&limit=2&offset=1");
    let all = Page::first(50);
    for (query, filter, page, expected) in [
        ("", AssumptionFilter::default(), all, 6),
        (
            "validated=true",
            AssumptionFilter {
                validated: Some(true),
                ..Default::default()
            },
            all,
            1,
        ),
        (
            "validated=false&agent_id=d",
            AssumptionFilter {
                validated: Some(false),
                agent_id: Some("d".into()),
                ..Default::default()
            },
            all,
            5,
        ),
        (
            of_held.as_str(),
            AssumptionFilter {
                action_id: Some(held.clone()),
                ..Default::default()
            },
            Page {
                limit: 2,
                offset: 1,
            },
            2,
        ),
        (
            "agent_id=nobody",
            AssumptionFilter {
                agent_id: Some("nobody".into()),
                ..Default::default()
            },
            all,
            0,
        ),
    ] {
        let (status, rest) = api
            .get(&format!("/api/assumptions?{query}"), &api.member)
            .await;
        assert_eq!(status, StatusCode::OK, "{rest}");
        let mine = assumptions::page(&pool, &org, &filter, page).await.unwrap();
        let mine: Vec<String> = mine.iter().map(|a| a.assumption_id.to_string()).collect();
        assert_eq!(
            mine,
            ids_of(&rest, "assumptions", "assumption_id"),
            "{query}"
        );
        assert_eq!(mine.len(), expected, "{query}");
    }
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_row_that_does_not_decode_is_an_error_not_left_out(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let id = action(&api, json!({"agent_id": "a", "action_type": "build"})).await;
    action(&api, json!({"agent_id": "a", "action_type": "build"})).await;
    let org = org();
    api.state
        .service
        .projections()
        .catch_up(&org)
        .await
        .unwrap();
    let all = ActionFilter::default();
    assert_eq!(
        actions::page(&pool, &org, &all, Page::first(10))
            .await
            .unwrap()
            .len(),
        2
    );
    // Written around the projection (read models are not append-only).
    sqlx::query("UPDATE action_records SET doc = '{\"not\": \"a record\"}' WHERE action_id = $1")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    let err = actions::page(&pool, &org, &all, Page::first(10))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProjectionError::UnreadableRow { table: "action_records", key, .. } if *key == id),
        "{err}"
    );
    assert!(actions::of_agent(&pool, &org, "a", 10).await.is_err());
    // The counts do not read documents.
    assert_eq!(actions::stats(&pool, &org, &all).await.unwrap().total, 2);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn the_ledger_readers_agree_with_the_chain(pool: PgPool) {
    use dashclaw_store::chain;
    let api = Api::start(pool.clone()).await;
    let id = action(&api, json!({"agent_id": "a", "action_type": "build"})).await;
    let (status, body) = api
        .post(
            &format!("/api/actions/{id}/outcome"),
            &api.member,
            json!({"status": "completed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let org = org();
    let envelopes: Vec<_> = chain::events(&pool, &org, 0).try_collect().await.unwrap();
    assert!(envelopes.len() > 4);

    // In pages, payloads as stored, and the full rows alike.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = chain::events_after(&pool, &org, after, 3).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.ledger_seq as u64;
        paged.extend(page);
    }
    assert_eq!(paged.len(), envelopes.len());
    for (p, e) in paged.iter().zip(&envelopes) {
        assert_eq!(
            (
                p.ledger_seq as u64,
                p.aggregate_type.as_str(),
                p.aggregate_id.as_str()
            ),
            (e.ledger_seq, e.stream_type.as_str(), e.stream_id.as_str())
        );
        assert_eq!(p.sequence as u64, e.stream_seq);
        assert_eq!(p.payload, e.payload.as_str());
    }
    let stored = chain::stored_events_after(&pool, &org, 2, 1000)
        .await
        .unwrap();
    assert_eq!(stored.len(), envelopes.len() - 2);
    assert_eq!(stored[0].hash, envelopes[2].hash.to_hex());
    assert_eq!(stored[0].metadata, envelopes[2].metadata.as_str());
    let at = chain::events_at(&pool, &org, &[3, 1, 10_000])
        .await
        .unwrap();
    assert_eq!(at, vec![paged[0].clone(), paged[2].clone()]);

    // One stream, in order.
    let history = chain::stream_events(&pool, &org, "Action", &id)
        .await
        .unwrap();
    assert!(history.len() >= 2, "recorded, then its outcome");
    assert_eq!(
        history.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=history.len() as i64).collect::<Vec<_>>()
    );
    assert!(history.iter().all(|e| e.aggregate_id == org.stream_id(&id)));

    // Heads, sizes, and what is unsigned.
    let heads = chain::heads(&pool).await.unwrap();
    let size = chain::head(&pool, &org).await.unwrap().size;
    assert!(heads.contains(&(org.clone(), size)));
    assert_eq!(heads.len(), 2, "org_default and org_other (its key)");
    let total: u64 = heads.iter().map(|(_, s)| s).sum();
    assert_eq!(chain::recorded_size(&pool, None).await.unwrap(), total);
    assert_eq!(chain::recorded_size(&pool, Some(&org)).await.unwrap(), size);
    let unsigned = chain::unsigned_chains(&pool).await.unwrap();
    assert_eq!(unsigned.len(), 2);
    let mine = unsigned.iter().find(|c| c.org_id == org).unwrap();
    assert_eq!((mine.size, mine.signed_size), (size, 0));
    assert!(mine.oldest_unsigned_at.is_some());
}

//! Evidence bundles and decision replay: an approved, claimed and completed action's bundle
//! verifies over REST, in-process and with the offline `dashclaw verify-bundle`; editing,
//! dropping, inserting or reordering any event, swapping a policy set, or a key outside the
//! JWKS each fail at the check that names it; every decision replays identically under the
//! policy set of its time, even after the policies changed.

use axum::http::StatusCode;
use dashclaw::service::evidence::verify_bundle;
use dashclaw_events::bundle::{self, Bundle, EvidenceFailure, LedgerEvidence, PolicySetText};
use dashclaw_events::{Jwks, LedgerKey};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::{assert_client_error, Api};
use crate::support::{dashclaw_async, stdout, url_of};

async fn policy(api: &Api, policy_type: &str, rules: Value) -> String {
    let (status, body) = api
        .post(
            "/api/policies",
            &api.admin,
            json!({"name": format!("{policy_type} policy"), "policy_type": policy_type, "rules": rules}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["policy_id"].as_str().unwrap().to_owned()
}

/// A deploy held for approval, approved, claimed, completed, with an assumption: its id.
async fn governed_action(api: &Api) -> String {
    policy(api, "require_approval", json!({"action_types": ["deploy"]})).await;
    let act = json!({"kind": "shell", "command": "deploy v2"});
    let (status, created) = api
        .post(
            "/api/actions",
            &api.member,
            json!({"agent_id": "a", "action_type": "deploy", "declared_goal": "ship v2",
                   "act": act, "cost_estimate": 0.125}),
        )
        .await;
    assert!(status.is_success(), "{status}: {created}");
    let id = created["action_id"].as_str().unwrap().to_owned();
    let (status, body) = api
        .post(
            "/api/assumptions",
            &api.member,
            json!({"action_id": id, "assumption": "the canary is healthy"}),
        )
        .await;
    assert!(status.is_success(), "{status}: {body}");
    let (status, body) = api
        .post(
            &format!("/api/actions/{id}/approve"),
            &api.admin,
            json!({"decision": "allow", "reasoning": "change window open"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claim = json!({"claim_execution": true, "attempt_id": "attempt-000000000001",
                       "agent_id": "a", "act": act});
    let (status, body) = api
        .call(
            axum::http::Method::PATCH,
            &format!("/api/actions/{id}"),
            &api.member,
            Some(claim),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = api
        .post(
            &format!("/api/actions/{id}/outcome"),
            &api.member,
            json!({"status": "completed"}),
        )
        .await;
    assert!(status.is_success(), "{status}: {body}");
    id
}

async fn bundle_of(api: &Api, id: &str) -> Bundle {
    let (status, body) = api
        .post(
            "/api/artifacts/evidence-bundle",
            &api.readonly,
            json!({"action_id": id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_value(body).unwrap()
}

async fn jwks(api: &Api) -> Jwks {
    let (status, body) = api.get("/.well-known/jwks.json", "").await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_value(body).unwrap()
}

fn evidence(bundle: &Bundle) -> LedgerEvidence {
    serde_json::from_value(bundle.payload["ledger"].clone()).unwrap()
}

/// `bundle` with its ledger evidence changed by `edit`, signed again by `key` (a forger who
/// holds the key: the deeper checks must still catch it).
fn forged(bundle: &Bundle, key: &LedgerKey, edit: impl FnOnce(&mut LedgerEvidence)) -> Bundle {
    let mut ledger = evidence(bundle);
    edit(&mut ledger);
    let mut payload = bundle.payload.clone();
    payload["ledger"] = serde_json::to_value(ledger).unwrap();
    Bundle::sign(
        key,
        bundle.issued_at.clone(),
        &bundle.engine_version,
        payload,
    )
    .unwrap()
}

#[track_caller]
fn assert_fails_at(bundle: &Bundle, keys: &Jwks, check: &str, detail_has: &str) {
    match verify_bundle(bundle, keys).outcome {
        Err(EvidenceFailure::Failed { check: c, detail }) => {
            assert_eq!(c, check, "{detail}");
            assert!(detail.contains(detail_has), "{c}: {detail}");
        }
        other => panic!("expected a failure at {check}, got {other:?}"),
    }
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_governed_actions_bundle_verifies_and_every_edit_is_caught(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let id = governed_action(&api).await;
    let bundle = bundle_of(&api, &id).await;
    let keys = jwks(&api).await;

    // What it holds: the action's 5 events (recorded, approved, claimed, outcome), its two
    // decisions (recording, claim), its assumption, and the policy set of both decisions.
    let ledger = evidence(&bundle);
    let types: Vec<String> = ledger
        .events
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.entry).unwrap()["event_type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        types,
        [
            "GuardDecisionRecorded",
            "ActionRecorded",
            "AssumptionRegistered",
            "ActionApprovalGranted",
            "GuardDecisionRecorded",
            "ActionExecutionClaimed",
            "ActionOutcomeReported"
        ],
        "{types:?}"
    );
    assert_eq!(ledger.policy_sets.len(), 1);
    assert_eq!(bundle.payload["action"]["status"], "completed");
    assert_eq!(bundle.payload["artifact_type"], "evidence_bundle");

    let report = verify_bundle(&bundle, &keys);
    assert!(report.outcome.is_ok(), "{:?}", report.outcome);
    let names: Vec<&str> = report.passed.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            bundle::PAYLOAD_HASH,
            bundle::SIGNATURE,
            bundle::TREE_HEAD,
            bundle::EVENT_HASHES,
            bundle::ORG,
            bundle::ORDER,
            bundle::CHAIN_LINKS,
            bundle::STREAMS,
            bundle::INCLUSION,
            bundle::SUBJECT,
            bundle::POLICY_SETS,
            bundle::REPLAY
        ]
    );

    // The public endpoint agrees, with DashClaw's answer shape.
    let (status, answer) = api
        .post("/api/integrity/verify", "", json!({"bundle": bundle}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["kid"], bundle.signature.kid.as_str());
    assert_eq!(answer["checks"].as_array().unwrap().len(), 12);

    // An edit without a new signature: the payload no longer has the signed digest.
    let mut edited = bundle.clone();
    edited.payload["action"]["status"] = json!("failed");
    assert_fails_at(&edited, &keys, bundle::PAYLOAD_HASH, "digests to");
    let (_, answer) = api
        .post("/api/integrity/verify", "", json!({"bundle": edited}))
        .await;
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["reason"], "payload_tampered");

    // Signed by a key that is not published.
    let stranger = LedgerKey::from_seed([42; 32]);
    let foreign = forged(&bundle, &stranger, |_| {});
    assert_fails_at(&foreign, &keys, bundle::SIGNATURE, &stranger.kid()[..8]);

    // Re-signed by the real key: the ledger checks still catch each edit.
    let key = dashclaw_store::keys::signing_key(&pool, None)
        .await
        .unwrap();
    let resigned = forged(&bundle, &key, |_| {});
    assert!(verify_bundle(&resigned, &keys).outcome.is_ok());

    // Editing an event's bytes (the approver's reasoning).
    let edit = forged(&bundle, &key, |l| {
        let approval = &mut l.events[3];
        approval.entry = approval.entry.replace("window open", "window shut");
    });
    assert_fails_at(&edit, &keys, bundle::EVENT_HASHES, "its bytes hash to");

    // Editing an event and restating its hash: the next event still links to the old one.
    let restated = forged(&bundle, &key, |l| {
        let approval = &mut l.events[3];
        let edited = approval.entry.replace("window open", "window shut");
        let (_, hashed) = dashclaw_events::entry_hash_input(&edited).unwrap();
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(hashed.as_bytes()));
        let old: Value = serde_json::from_str(&approval.entry).unwrap();
        approval.entry = edited.replace(old["hash"].as_str().unwrap(), &hash);
    });
    assert_fails_at(&restated, &keys, bundle::CHAIN_LINKS, "event 9 links to");
    // A proof that does not lead to the signed root.
    let bad_path = forged(&bundle, &key, |l| {
        let hash = &mut l.events[0].audit_path[0];
        *hash = format!(
            "{}{}",
            if hash.starts_with('0') { "1" } else { "0" },
            &hash[1..]
        );
    });
    assert_fails_at(&bad_path, &keys, bundle::INCLUSION, "is not leaf");

    // Dropping an event from the middle of the action's stream (the approval).
    let dropped = forged(&bundle, &key, |l| {
        l.events
            .retain(|e| !e.entry.contains("\"ActionApprovalGranted\""));
    });
    assert_fails_at(&dropped, &keys, bundle::STREAMS, "jumps from event 1 to 3");

    // Inserting an event twice, and reordering two.
    let inserted = forged(&bundle, &key, |l| {
        let copy = l.events[2].clone();
        l.events.insert(3, copy);
    });
    assert_fails_at(&inserted, &keys, bundle::ORDER, "comes after");
    let reordered = forged(&bundle, &key, |l| l.events.swap(1, 2));
    assert_fails_at(&reordered, &keys, bundle::ORDER, "comes after");

    // A different policy set in place of the one the decisions recorded.
    let swapped = forged(&bundle, &key, |l| {
        l.policy_sets[0].policies = "[]".into();
    });
    assert_fails_at(&swapped, &keys, bundle::POLICY_SETS, "hashes to");
    let renamed = forged(&bundle, &key, |l| {
        let text = l.policy_sets[0]
            .policies
            .replace("require_approval policy", "lenient");
        l.policy_sets[0] = PolicySetText {
            version: PolicySetText::version_of(&text),
            policies: text,
        };
    });
    assert_fails_at(&renamed, &keys, bundle::POLICY_SETS, "does not hold");

    // A tree head signed by a key outside the JWKS.
    let stranger_head = forged(&bundle, &key, |l| {
        let signer = dashclaw_events::LogSigner::new(stranger.clone(), "localhost").unwrap();
        let body = l.tree_head.split_once("\n\n").unwrap().0.to_owned() + "\n";
        l.tree_head = signer.sign(&dashclaw_events::TreeHead::parse(&body).unwrap());
    });
    assert_fails_at(&stranger_head, &keys, bundle::TREE_HEAD, "no key");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn verify_bundle_checks_a_saved_bundle_offline_and_names_the_failure(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let id = governed_action(&api).await;
    let bundle = bundle_of(&api, &id).await;
    let dir = std::env::temp_dir().join(format!("dashclaw-bundles-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: String| {
        let path = dir.join(format!("{id}-{name}"));
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let keys = file(
        "jwks.json",
        serde_json::to_string(&jwks(&api).await).unwrap(),
    );
    let good = file(
        "bundle.json",
        serde_json::to_string_pretty(&bundle).unwrap(),
    );
    // No database: an unreachable URL proves none is used.
    let url = "postgres://nobody@127.0.0.1:1/none";

    let out = dashclaw_async(url, &["verify-bundle", &good, "--jwks", &keys]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok ")).count(),
        12,
        "{text}"
    );
    assert!(text.contains("VERIFIED: 7 events of action"), "{text}");

    let mut edited = bundle.clone();
    edited.payload["steps"] = json!([{"action_id": "act_forged"}]);
    let bad = file("edited.json", serde_json::to_string(&edited).unwrap());
    let out = dashclaw_async(url, &["verify-bundle", &bad, "--jwks", &keys]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL   payload hash"), "{text}");
    assert!(text.contains("NOT VERIFIED: payload hash"), "{text}");

    let junk = file("junk.json", "{\"not\": \"a bundle\"}".into());
    let out = dashclaw_async(url, &["verify-bundle", &junk, "--jwks", &keys]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a signed bundle"));
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn bundle_and_verify_refuse_bad_input_and_change_nothing(pool: PgPool) {
    let api = Api::start(pool).await;
    let before = api.events().await;
    let (status, body) = api
        .post("/api/artifacts/evidence-bundle", &api.member, json!({}))
        .await;
    assert_client_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, body) = api
        .post(
            "/api/artifacts/evidence-bundle",
            &api.member,
            json!({"action_id": "act_00000000-0000-0000-0000-000000000000"}),
        )
        .await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "action_not_found");
    let (status, body) = api
        .post("/api/integrity/verify", "", json!({"nothing": true}))
        .await;
    assert_client_error(status, &body, StatusCode::BAD_REQUEST);
    let (status, body) = api
        .post(
            "/api/integrity/verify",
            "",
            json!({"bundle": {"version": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["reason"], "malformed");
    let (status, body) = api
        .post(
            "/api/integrity/verify",
            "",
            json!({"receipt": {"version": "dashclaw-receipt/v1", "signature": {"kid": "x", "sig": "y"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ok"], false);
    let (status, body) = api
        .get("/api/decisions/act_gd_0000000000000000/replay", &api.member)
        .await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND);
    assert_eq!(api.events().await, before);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn decisions_replay_under_the_policies_of_their_time(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let ask = json!({"action_type": "deploy", "declared_goal": "ship", "agent_id": "a"});
    let (_, allowed) = api.post("/api/guard", &api.member, ask.clone()).await;
    assert_eq!(allowed["decision"], "allow");
    let blocking = policy(
        &api,
        "block_action_type",
        json!({"action_types": ["deploy"]}),
    )
    .await;
    let limit = policy(
        &api,
        "rate_limit",
        json!({"max_actions": 3, "window_minutes": 60}),
    )
    .await;
    let (_, blocked) = api.post("/api/guard", &api.member, ask.clone()).await;
    assert_eq!(blocked["decision"], "block");
    for _ in 0..3 {
        api.post("/api/guard", &api.member, ask.clone()).await;
    }
    // Today's policies would block the first decision too; its replay uses the empty set.
    let (status, _) = api
        .call(
            axum::http::Method::DELETE,
            &format!("/api/policies?id={blocking}"),
            &api.admin,
            None,
        )
        .await;
    assert!(status.is_success());

    for decision in [&allowed, &blocked] {
        let id = decision["action_id"].as_str().unwrap();
        let (status, replay) = api
            .get(&format!("/api/decisions/{id}/replay"), &api.readonly)
            .await;
        assert_eq!(status, StatusCode::OK, "{replay}");
        assert_eq!(replay["identical"], true, "{replay}");
        assert_eq!(replay["policy_set"]["found"], true);
        assert_eq!(replay["recorded"], replay["replayed"]);
        assert_eq!(replay["replay_engine"], replay["recorded_engine"]);
    }
    let (_, first) = api
        .get(
            &format!(
                "/api/decisions/{}/replay",
                allowed["action_id"].as_str().unwrap()
            ),
            &api.member,
        )
        .await;
    assert_eq!(first["policy_set"]["policies"], json!([]));
    assert_eq!(first["replayed"]["decision"], "allow");

    // GraphQL answers the same.
    let query = format!(
        "{{ decisionReplay(id: \"{}\") {{ identical policySetFound policySetAsOf recorded replayed differences }} }}",
        blocked["action_id"].as_str().unwrap()
    );
    let (status, answer) = api
        .post("/graphql", &api.readonly, json!({"query": query}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let replay = &answer["data"]["decisionReplay"];
    assert_eq!(replay["identical"], true, "{answer}");
    assert_eq!(replay["recorded"]["decision"], "block");
    assert_eq!(replay["recorded"], replay["replayed"]);
    assert_eq!(replay["differences"], json!([]));
    assert!(replay["policySetAsOf"].as_i64().unwrap() > 0);

    // Every decision of the org, rate-limited ones (whose counts were recorded) included.
    let out = dashclaw_async(
        &url_of(&pool).await,
        &["replay-decision", "--org", "org_default"],
    )
    .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("identical: 5 decisions of org_default"),
        "{text}"
    );
    let _ = limit;
}

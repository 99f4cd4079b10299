//! Evidence about the ledger: the Merkle tree stored beside each chain (integrated in steps,
//! proofs for every small (leaf, size) and (first, second) pair and random pairs on a larger
//! tree, checked with RFC 9162's verifiers against roots computed here from the events'
//! hashes), signed tree heads and the proof endpoints over REST and GraphQL.

use axum::http::StatusCode;
use dashclaw_events::merkle::{self, Hash};
use dashclaw_events::note::NoteVerifier;
use dashclaw_events::{Jwks, OrgId, TreeHead};
use dashclaw_store::{tree, Appender};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::api::{assert_client_error, Api};
use crate::support::{event, org};

/// Appends `n` events to `org` in appends of up to 100 events (one stream each).
async fn grow(appender: &Appender, org: &OrgId, from: usize, n: usize) {
    let mut at = from;
    while at < from + n {
        let k = 100.min(from + n - at);
        let stream = org.stream_id(&format!("batch_{at}"));
        appender
            .append("Thing", &stream, 1, (at..at + k).map(event).collect())
            .await
            .unwrap();
        at += k;
    }
}

/// The leaf hashes of the org's chain, from the stored event hashes.
async fn leaves(pool: &PgPool, org: &OrgId) -> Vec<Hash> {
    let hashes: Vec<String> =
        sqlx::query_scalar("SELECT hash FROM events WHERE org_id = $1 ORDER BY ledger_seq")
            .bind(org.as_str())
            .fetch_all(pool)
            .await
            .unwrap();
    hashes
        .iter()
        .map(|h| merkle::leaf_hash(&hex::decode(h).unwrap().try_into().unwrap()))
        .collect()
}

/// RFC 9162's MTH, recursively, as the RFC defines it.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => merkle::empty_root(),
        1 => leaves[0],
        n => {
            let k = 1 << (63 - (n as u64 - 1).leading_zeros());
            merkle::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn every_small_proof_from_the_stored_tree_verifies(pool: PgPool) {
    let org = org("org_a");
    let appender = Appender::new(pool.clone());
    // Integrated in uneven steps, so the frontier is restored from storage each time.
    let mut size = 0;
    for step in [1, 4, 11, 16, 1, 31] {
        grow(&appender, &org, size, step).await;
        size += step;
        let integrated = tree::integrate(&pool, &org, &|_| {}).await.unwrap();
        assert_eq!(integrated.size, size as u64);
    }
    let leaves = leaves(&pool, &org).await;
    assert_eq!(leaves.len(), 64);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM merkle_subtrees")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 4 + 2 + 1, "levels 4, 5 and 6 of 64 leaves");
    for n in 1..=64u64 {
        let root = mth(&leaves[..n as usize]);
        assert_eq!(
            tree::root_at(&pool, &org, n).await.unwrap(),
            root,
            "size {n}"
        );
        for i in 0..n {
            let proof = tree::inclusion(&pool, &org, i, n).await.unwrap().unwrap();
            assert_eq!(proof.leaf_hash, leaves[i as usize]);
            assert!(
                merkle::verify_inclusion(i, n, &proof.leaf_hash, &proof.hashes, &root),
                "leaf {i} of {n}"
            );
        }
        for m in 1..=n {
            let proof = tree::consistency(&pool, &org, m, n).await.unwrap().unwrap();
            let first = mth(&leaves[..m as usize]);
            assert!(
                merkle::verify_consistency(m, n, &first, &root, &proof),
                "{m} to {n}"
            );
        }
    }
    assert!(tree::inclusion(&pool, &org, 64, 64)
        .await
        .unwrap()
        .is_none());
    assert!(tree::consistency(&pool, &org, 0, 3)
        .await
        .unwrap()
        .is_none());
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn random_proofs_on_a_larger_tree_verify_and_catch_up_on_demand(pool: PgPool) {
    let org = org("org_a");
    let appender = Appender::new(pool.clone());
    grow(&appender, &org, 0, 3_001).await;
    tree::integrate(&pool, &org, &|_| {}).await.unwrap();
    // Not yet integrated: a proof integrates first.
    grow(&appender, &org, 3_001, 1_110).await;
    let leaves = leaves(&pool, &org).await;
    let n = leaves.len() as u64;
    let root = mth(&leaves);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    for _ in 0..100 {
        let size = 1 + next(n);
        let leaf = next(size);
        let proof = tree::inclusion(&pool, &org, leaf, size)
            .await
            .unwrap()
            .unwrap();
        let at = mth(&leaves[..size as usize]);
        assert!(merkle::verify_inclusion(
            leaf,
            size,
            &proof.leaf_hash,
            &proof.hashes,
            &at
        ));
        let first = 1 + next(size);
        let proof = tree::consistency(&pool, &org, first, n)
            .await
            .unwrap()
            .unwrap();
        let old = mth(&leaves[..first as usize]);
        assert!(merkle::verify_consistency(first, n, &old, &root, &proof));
        // A proof does not verify against another tree.
        assert!(!merkle::verify_consistency(first, n, &old, &at, &proof) || at == root);
    }
    assert_eq!(tree::integrated(&pool, &org).await.unwrap().root, root);
}

/// An org with `n` guard decisions (each one event), its tree head signed.
async fn decided(api: &Api, n: usize) {
    for i in 0..n {
        let (status, _) = api
            .post(
                "/api/guard",
                &api.admin,
                json!({"action_type": "deploy", "agent_id": format!("agent-{i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
}

/// Signs a tree head of the harness's org (org_default) at its chain's head.
async fn sign_head(api: &Api) -> dashclaw_store::checkpoints::StoredCheckpoint {
    let org = org("org_default");
    api.state
        .service
        .sign_tree_head(&org)
        .await
        .unwrap()
        .unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

fn hash(v: &Value) -> Hash {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn signed_tree_heads_and_proofs_over_rest(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    let (status, body) = api.get("/api/integrity/checkpoint", &api.readonly).await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND);

    decided(&api, 5).await;
    let org = org("org_default");
    let first = sign_head(&api).await;
    decided(&api, 4).await;
    sign_head(&api).await;

    // The latest head: a signed note that opens with the published keys.
    let (status, head) = api.get("/api/integrity/checkpoint", &api.readonly).await;
    assert_eq!(status, StatusCode::OK, "{head}");
    let (_, jwks) = api.get("/api/integrity/jwks", "").await;
    let jwks: Jwks = serde_json::from_value(jwks).unwrap();
    let note = head["checkpoint"].as_str().unwrap();
    let (opened, _) = TreeHead::open(note, &jwks).unwrap();
    let size = opened.size;
    assert_eq!(head["tree_size"], size);
    assert_eq!(head["org_id"], "org_default");
    assert_eq!(opened.origin, "localhost/org_default");
    assert_eq!(hash(&head["root_hash"]), opened.root);
    assert_eq!(
        opened.root,
        mth(&leaves(&pool, &org).await[..size as usize])
    );

    // The note key (public) opens it too.
    let (status, key) = api.get("/api/integrity/note-key", "").await;
    assert_eq!(status, StatusCode::OK);
    let verifier = NoteVerifier::parse(key["verifier_key"].as_str().unwrap()).unwrap();
    assert_eq!(verifier.open(note).unwrap(), opened.body());
    assert_eq!(key["name"], "localhost");

    // Every event's inclusion proof in that head verifies (readonly keys may read them).
    for seq in 1..=size {
        let (status, proof) = api
            .get(
                &format!("/api/integrity/proof/inclusion?ledger_seq={seq}"),
                &api.readonly,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{proof}");
        assert_eq!(proof["leaf_index"], seq - 1);
        assert_eq!(proof["tree_size"], size);
        assert!(merkle::verify_inclusion(
            seq - 1,
            size,
            &hash(&proof["leaf_hash"]),
            &hashes(&proof["hashes"]),
            &opened.root
        ));
    }

    // The older head by size, and the consistency proof between them.
    let old_size = first.size();
    let (status, old) = api
        .get(
            &format!("/api/integrity/checkpoint?size={old_size}"),
            &api.member,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (old_head, _) = TreeHead::open(old["checkpoint"].as_str().unwrap(), &jwks).unwrap();
    let (status, proof) = api
        .get(
            &format!("/api/integrity/proof/consistency?from={old_size}&to={size}"),
            &api.readonly,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(merkle::verify_consistency(
        old_size,
        size,
        &old_head.root,
        &opened.root,
        &hashes(&proof["hashes"])
    ));

    // Refusals, each naming the problem and writing nothing.
    let events = api.events().await;
    for uri in [
        "/api/integrity/proof/inclusion?ledger_seq=0".to_owned(),
        format!("/api/integrity/proof/inclusion?ledger_seq={}", size + 1),
        format!(
            "/api/integrity/proof/inclusion?ledger_seq=1&tree_size={}",
            size + 100
        ),
        "/api/integrity/proof/inclusion?ledger_seq=abc".to_owned(),
        "/api/integrity/proof/inclusion".to_owned(),
        "/api/integrity/proof/consistency?from=0&to=3".to_owned(),
        "/api/integrity/proof/consistency?from=4&to=3".to_owned(),
        format!("/api/integrity/proof/consistency?from=1&to={}", size + 100),
        "/api/integrity/checkpoint?size=-1".to_owned(),
    ] {
        let (status, body) = api.get(&uri, &api.readonly).await;
        assert_client_error(status, &body, StatusCode::BAD_REQUEST);
        assert_eq!(body["code"], "VALIDATION_FAILED", "{uri}: {body}");
    }
    let (status, body) = api
        .get("/api/integrity/checkpoint?size=3", &api.readonly)
        .await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND);
    assert_eq!(api.events().await, events);

    // Org-scoped: another org has no tree head, and proofs are of its own (one-event) chain.
    let (status, body) = api.get("/api/integrity/checkpoint", &api.other_org).await;
    assert_client_error(status, &body, StatusCode::NOT_FOUND);
    let (status, theirs) = api
        .get(
            "/api/integrity/proof/inclusion?ledger_seq=1&tree_size=1",
            &api.other_org,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(hash(&theirs["leaf_hash"]), leaves(&pool, &org).await[0]);
    let (status, body) = api
        .get(
            "/api/integrity/proof/inclusion?ledger_seq=1&tree_size=2",
            &api.other_org,
        )
        .await;
    assert_client_error(status, &body, StatusCode::BAD_REQUEST);
    // Without a key, only the note key is public.
    let (status, body) = api.get("/api/integrity/checkpoint", "").await;
    assert_client_error(status, &body, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn graphql_serves_the_same_proofs(pool: PgPool) {
    let api = Api::start(pool.clone()).await;
    decided(&api, 3).await;
    let org = org("org_default");
    let signed = sign_head(&api).await;
    let size = signed.size();
    let query = format!(
        "{{ treeHead {{ treeSize rootHash checkpoint }}
            consistencyProof(from: 1, to: {size}) {{ first second hashes }}
            checkpoints {{ size rootHash note }}
            ledgerEvents(after: 0, first: {size}) {{ ledgerSeq inclusionProof {{ leafIndex treeSize leafHash hashes }} }} }}"
    );
    let (status, body) = api
        .post("/graphql", &api.readonly, json!({ "query": query }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let data = &body["data"];
    assert!(body.get("errors").is_none(), "{body}");
    let root = hash(&data["treeHead"]["rootHash"]);
    assert_eq!(data["treeHead"]["treeSize"], size);
    assert_eq!(
        data["checkpoints"][0]["note"],
        data["treeHead"]["checkpoint"]
    );
    let proof = &data["consistencyProof"];
    let first = mth(&leaves(&pool, &org).await[..1]);
    assert!(merkle::verify_consistency(
        1,
        size,
        &first,
        &root,
        &hashes(&proof["hashes"])
    ));
    let events = data["ledgerEvents"].as_array().unwrap();
    assert_eq!(events.len() as u64, size);
    for e in events {
        let seq = e["ledgerSeq"].as_u64().unwrap();
        let p = &e["inclusionProof"];
        assert!(merkle::verify_inclusion(
            seq - 1,
            size,
            &hash(&p["leafHash"]),
            &hashes(&p["hashes"]),
            &root
        ));
    }
    let (_, body) = api
        .post(
            "/graphql",
            &api.readonly,
            json!({"query": "{ consistencyProof(from: -1, to: 2) { first } }"}),
        )
        .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "VALIDATION_FAILED",
        "{body}"
    );
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn verify_recomputes_every_tree_head_in_order_and_in_ranges(pool: PgPool) {
    use dashclaw_store::verify::{verify_scope, Scope, Verdict};
    let org = org("org_a");
    let appender = Appender::new(pool.clone());
    let signer = crate::support::signer(&pool).await;
    let mut size = 0;
    for step in [1, 15, 84, 157, 43, 1] {
        grow(&appender, &org, size, step).await;
        size += step;
        dashclaw_store::checkpoints::sign(&pool, &signer, &org)
            .await
            .unwrap()
            .unwrap();
    }
    let keys = dashclaw_store::keys::published(&pool).await.unwrap();
    let leaves = leaves(&pool, &org).await;
    for ranged_from in [1, 1_000_000] {
        let scope = Scope {
            ranged_from,
            ..Scope::default()
        };
        match verify_scope(&pool, &keys, &scope, &|_| {}).await.unwrap() {
            Verdict::Intact(orgs) => assert_eq!(orgs[0].tree_heads, 6, "ranged from {ranged_from}"),
            Verdict::Tampered(b) => panic!("ranged from {ranged_from}: {b}"),
        }
        // A kept head whose chain head matches but whose root does not.
        let chain_head: String = sqlx::query_scalar(
            "SELECT hash FROM events WHERE org_id = 'org_a' AND ledger_seq = 200",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        let good = TreeHead {
            origin: "localhost/org_a".into(),
            size: 200,
            root: mth(&leaves[..200]),
            chain_head: chain_head.parse().unwrap(),
            signed_at: "2026-12-03T00:00:00.000Z".into(),
        };
        let mut bad = good.clone();
        bad.root[0] ^= 1;
        for (head, intact) in [(good, true), (bad, false)] {
            let kept = [head];
            let scope = Scope {
                kept: &kept,
                ranged_from,
                ..Scope::default()
            };
            match verify_scope(&pool, &keys, &scope, &|_| {}).await.unwrap() {
                Verdict::Intact(orgs) => {
                    assert!(intact, "ranged from {ranged_from}: a wrong root passed");
                    assert_eq!(orgs[0].kept_heads, 1);
                }
                Verdict::Tampered(b) => {
                    assert!(!intact, "ranged from {ranged_from}: {b}");
                    assert_eq!(b.ledger_seq, 200);
                    assert!(
                        b.detail.contains("the Merkle root of the first 200 events"),
                        "{b}"
                    );
                }
            }
        }
    }
}

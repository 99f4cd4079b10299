//! `dashclaw verify` (the real binary) against ledgers tampered with superuser rights: every
//! kind of tampering is caught and the first bad (org, ledger_seq) is named.

use dashclaw_events::{CanonicalJson, Envelope};
use dashclaw_store::{chain, checkpoints, Appender};
use futures_util::TryStreamExt;
use serde_json::json;
use sqlx::PgPool;

use crate::support::{dashclaw, org, seed, stdout, url_of};

/// org_a: 20 events with a signed checkpoint at 12; org_b: 5 events. Returns the DB URL.
async fn ledger(pool: &PgPool) -> String {
    let appender = Appender::new(pool.clone());
    let signer = crate::support::signer(pool).await;
    seed(&appender, &org("org_a"), 12).await;
    checkpoints::sign(pool, &signer, &org("org_a"))
        .await
        .unwrap()
        .unwrap();
    for n in 12..20 {
        let stream = org("org_a").stream_id(&format!("more_{n}"));
        appender
            .append("Thing", &stream, 1, vec![crate::support::event(n)])
            .await
            .unwrap();
    }
    seed(&appender, &org("org_b"), 5).await;
    url_of(pool).await
}

/// Runs SQL as the superuser with the append-only trigger switched off, as an attacker would.
async fn tamper(pool: &PgPool, sql: &str) {
    let script = format!(
        "ALTER TABLE events DISABLE TRIGGER events_append_only;
         ALTER TABLE checkpoints DISABLE TRIGGER checkpoints_append_only;
         {sql};
         ALTER TABLE events ENABLE ALWAYS TRIGGER events_append_only;
         ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER checkpoints_append_only;"
    );
    sqlx::raw_sql(&script).execute(pool).await.unwrap();
}

async fn insert(pool: &PgPool, e: &Envelope) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload,
                             metadata, org_id, ledger_seq, prev_hash, hash, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6::json, $7::json, $8, $9, $10, $11, now())",
    )
    .bind(&e.stream_type)
    .bind(&e.stream_id)
    .bind(e.stream_seq as i64)
    .bind(&e.event_type)
    .bind(&e.event_version)
    .bind(e.payload.as_str())
    .bind(e.metadata.as_str())
    .bind(e.org_id.as_str())
    .bind(e.ledger_seq as i64)
    .bind(e.prev_hash.to_hex())
    .bind(e.hash.to_hex())
    .execute(pool)
    .await
    .unwrap();
}

async fn envelopes(pool: &PgPool, name: &str) -> Vec<Envelope> {
    let o = org(name);
    chain::events(pool, &o, 0).try_collect().await.unwrap()
}

/// Asserts `dashclaw verify` exits 1 naming `(org, seq)` and the kind of tampering.
/// Both ways of walking a chain (in order; in parallel ranges first) must give the verdict.
fn assert_caught(url: &str, org: &str, seq: u64, kind: &str) {
    assert_caught_with(url, &[], org, seq, kind);
}

/// [`assert_caught`] for `dashclaw verify ARGS`; returns the in-order run's output.
fn assert_caught_with(url: &str, args: &[&str], org: &str, seq: u64, kind: &str) -> String {
    let mut first = String::new();
    for ranged_from in ["1000000", "1"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dashclaw"))
            .arg("verify")
            .args(args)
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .env("DASHCLAW_VERIFY_RANGED_FROM", ranged_from)
            .output()
            .unwrap();
        let text = stdout(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "verify (ranged from {ranged_from}) should fail: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = format!("TAMPERED at ({org}, {seq}): {kind}");
        assert!(
            text.contains(&expected),
            "ranged from {ranged_from}: expected {expected:?} in {text:?}"
        );
        if first.is_empty() {
            first = text;
        }
    }
    first
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn an_untouched_ledger_verifies(pool: PgPool) {
    let url = ledger(&pool).await;
    let ranged = std::process::Command::new(env!("CARGO_BIN_EXE_dashclaw"))
        .arg("verify")
        .env("DATABASE_URL", &url)
        .env("DASHCLAW_VERIFY_RANGED_FROM", "1")
        .output()
        .unwrap();
    assert!(
        stdout(&ranged).contains("ok  org_a: 20 events, 1 signed checkpoint(s)"),
        "{}",
        stdout(&ranged)
    );
    let out = dashclaw(&url, &["verify"]);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ok  org_a: 20 events, 1 signed checkpoint(s)"),
        "{text}"
    );
    assert!(text.contains("intact: 25 events in 2 org(s)"), "{text}");
    let only_b = stdout(&dashclaw(&url, &["verify", "--org", "org_b"]));
    assert!(only_b.contains("intact: 5 events in 1 org(s)"), "{only_b}");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn an_edited_event_is_caught(pool: PgPool) {
    let url = ledger(&pool).await;
    tamper(&pool, r#"UPDATE events SET payload = '{"n":6,"forged":true}' WHERE org_id = 'org_a' AND ledger_seq = 7"#).await;
    assert_caught(&url, "org_a", 7, "edited");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_whitespace_only_edit_is_caught(pool: PgPool) {
    let url = ledger(&pool).await;
    tamper(&pool, "UPDATE events SET metadata = (metadata::text || ' ')::json WHERE org_id = 'org_b' AND ledger_seq = 2").await;
    assert_caught(&url, "org_b", 2, "edited");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_deleted_event_is_caught(pool: PgPool) {
    let url = ledger(&pool).await;
    tamper(
        &pool,
        "DELETE FROM events WHERE org_id = 'org_a' AND ledger_seq = 5",
    )
    .await;
    assert_caught(&url, "org_a", 5, "missing");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_deleted_last_event_is_caught(pool: PgPool) {
    let url = ledger(&pool).await;
    tamper(
        &pool,
        "DELETE FROM events WHERE org_id = 'org_b' AND ledger_seq = 5",
    )
    .await;
    assert_caught(&url, "org_b", 5, "missing");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn an_inserted_event_is_caught_even_with_a_valid_hash(pool: PgPool) {
    let url = ledger(&pool).await;
    let rows = envelopes(&pool, "org_a").await;
    // A forged event, correctly hashed and linked to event 7, slid in at 8.
    let mut forged = rows[7].clone();
    forged.stream_id = org("org_a").stream_id("forged");
    forged.payload = CanonicalJson::encode(&json!({"approved_by": "nobody"})).unwrap();
    forged.prev_hash = rows[6].hash;
    let forged = forged.seal();
    tamper(
        &pool,
        "UPDATE events SET ledger_seq = ledger_seq + 1000000 WHERE org_id = 'org_a' AND ledger_seq >= 8;
         UPDATE events SET ledger_seq = ledger_seq - 999999 WHERE org_id = 'org_a' AND ledger_seq > 1000000",
    )
    .await;
    insert(&pool, &forged).await;
    assert_caught(&url, "org_a", 8, "inserted");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn an_event_appended_around_the_store_is_caught(pool: PgPool) {
    let url = ledger(&pool).await;
    let rows = envelopes(&pool, "org_b").await;
    let mut extra = rows[4].clone();
    extra.ledger_seq = 6;
    extra.stream_id = org("org_b").stream_id("sneaky");
    extra.prev_hash = rows[4].hash;
    insert(&pool, &extra.seal()).await;
    assert_caught(&url, "org_b", 6, "inserted");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn swapped_events_are_caught(pool: PgPool) {
    let url = ledger(&pool).await;
    tamper(
        &pool,
        "UPDATE events SET ledger_seq = 1000 WHERE org_id = 'org_a' AND ledger_seq = 3;
         UPDATE events SET ledger_seq = 3 WHERE org_id = 'org_a' AND ledger_seq = 4;
         UPDATE events SET ledger_seq = 4 WHERE org_id = 'org_a' AND ledger_seq = 1000",
    )
    .await;
    assert_caught(&url, "org_a", 3, "reordered");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_consistent_rewrite_is_caught_by_the_signed_checkpoint(pool: PgPool) {
    let url = ledger(&pool).await;
    // Rewrite event 3 and recompute every later hash and the head: internally consistent.
    let mut rows = envelopes(&pool, "org_a").await;
    rows[2].payload = CanonicalJson::encode(&json!({"rewritten": true})).unwrap();
    for i in 2..rows.len() {
        rows[i].prev_hash = rows[i - 1].hash;
        rows[i] = rows[i].clone().seal();
    }
    tamper(&pool, "DELETE FROM events WHERE org_id = 'org_a'").await;
    for row in &rows {
        insert(&pool, row).await;
    }
    let head = rows.last().unwrap().hash.to_hex();
    sqlx::query("UPDATE ledger_heads SET head_hash = $1 WHERE org_id = 'org_a'")
        .bind(head)
        .execute(&pool)
        .await
        .unwrap();
    assert_caught(&url, "org_a", 12, "rewritten");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_forged_checkpoint_is_caught(pool: PgPool) {
    let url = ledger(&pool).await;
    tamper(
        &pool,
        "UPDATE checkpoints SET size = 11 WHERE org_id = 'org_a'",
    )
    .await;
    assert_caught(&url, "org_a", 11, "bad checkpoint");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_wholly_deleted_org_is_caught_through_its_checkpoint(pool: PgPool) {
    let url = ledger(&pool).await;
    tamper(&pool, "DELETE FROM events WHERE org_id = 'org_a'; DELETE FROM ledger_heads WHERE org_id = 'org_a'").await;
    assert_caught(&url, "org_a", 1, "missing");
}

/// Signs a tree head of org_a at its current size and saves the note to a file.
async fn kept_head(pool: &PgPool, name: &str) -> (std::path::PathBuf, String) {
    let signer = crate::support::signer(pool).await;
    let head = checkpoints::sign(pool, &signer, &org("org_a"))
        .await
        .unwrap()
        .unwrap();
    let dir = scratch_dir();
    let path = dir.join(name);
    std::fs::write(&path, head.note.unwrap()).unwrap();
    (dir, path.to_str().unwrap().to_owned())
}

/// A fresh directory for this test process's files.
fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dashclaw-tamper-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_removed_tail_is_caught_against_a_kept_tree_head(pool: PgPool) {
    let url = ledger(&pool).await;
    let (_dir, head) = kept_head(&pool, "head-20.note").await;
    let kept = dashclaw(&url, &["verify", "--against", &head]);
    assert_eq!(kept.status.code(), Some(0), "{}", stdout(&kept));
    assert!(
        stdout(&kept).contains("ok  org_a: 20 events, 2 signed checkpoint(s) (2 tree head(s), roots recomputed), contains 1 kept tree head(s)"),
        "{}",
        stdout(&kept)
    );
    // A superuser removes the last 8 events, their tree head, and moves the head back: the
    // stored evidence alone now agrees with the shortened chain...
    tamper(
        &pool,
        "DELETE FROM events WHERE org_id = 'org_a' AND ledger_seq > 12;
         DELETE FROM checkpoints WHERE org_id = 'org_a' AND size > 12;
         UPDATE ledger_heads SET size = 12, head_hash = (SELECT hash FROM events
           WHERE org_id = 'org_a' AND ledger_seq = 12) WHERE org_id = 'org_a'",
    )
    .await;
    let alone = dashclaw(&url, &["verify"]);
    assert_eq!(alone.status.code(), Some(0), "{}", stdout(&alone));
    // ...but not with the head someone kept.
    let text = assert_caught_with(&url, &["--against", &head], "org_a", 13, "missing");
    assert!(
        text.contains("covers 20 events but the chain has 12: events 13..20 are missing"),
        "{text}"
    );
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_rewrite_with_every_checkpoint_removed_is_caught_against_a_kept_tree_head(pool: PgPool) {
    let url = ledger(&pool).await;
    let (_dir, head) = kept_head(&pool, "head.note").await;
    // Event 15 rewritten, every later hash recomputed, the checkpoints and head replaced.
    let mut rows = envelopes(&pool, "org_a").await;
    rows[14].payload = CanonicalJson::encode(&json!({"rewritten": true})).unwrap();
    for i in 14..rows.len() {
        rows[i].prev_hash = rows[i - 1].hash;
        rows[i] = rows[i].clone().seal();
    }
    tamper(
        &pool,
        "DELETE FROM events WHERE org_id = 'org_a' AND ledger_seq > 14;
         DELETE FROM checkpoints WHERE org_id = 'org_a'",
    )
    .await;
    for e in &rows[14..] {
        insert(&pool, e).await;
    }
    tamper(
        &pool,
        &format!(
            "UPDATE ledger_heads SET head_hash = '{}' WHERE org_id = 'org_a'",
            rows[19].hash.to_hex()
        ),
    )
    .await;
    assert_eq!(dashclaw(&url, &["verify"]).status.code(), Some(0));
    let text = assert_caught_with(&url, &["--against", &head], "org_a", 20, "rewritten");
    assert!(text.contains("the kept tree head signed at"), "{text}");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_tree_head_row_that_disagrees_with_its_note_is_caught(pool: PgPool) {
    let url = ledger(&pool).await;
    tamper(
        &pool,
        &format!(
            "UPDATE checkpoints SET root_hash = '{}' WHERE org_id = 'org_a'",
            "ab".repeat(32)
        ),
    )
    .await;
    assert_caught(&url, "org_a", 12, "bad checkpoint");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_kept_head_no_published_key_signed_or_unreadable_is_refused(pool: PgPool) {
    let url = ledger(&pool).await;
    let dir = scratch_dir();
    let stranger = dashclaw_events::LogSigner::new(
        dashclaw_events::LedgerKey::from_seed([7; 32]),
        "localhost",
    )
    .unwrap();
    let forged = stranger.sign(&dashclaw_events::TreeHead {
        origin: "localhost/org_a".into(),
        size: 40,
        root: [0; 32],
        chain_head: dashclaw_events::EventHash([0; 32]),
        signed_at: "2026-12-03T00:00:00.000Z".into(),
    });
    let path = dir.join("forged.note");
    std::fs::write(&path, forged).unwrap();
    let out = dashclaw(&url, &["verify", "--against", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("NOT VERIFIED: the tree head in")
            && stdout(&out).contains("which no key in the key set verifies"),
        "{}",
        stdout(&out)
    );
    let missing = dir.join("absent.note");
    let out = dashclaw(&url, &["verify", "--against", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the tree head"));
}

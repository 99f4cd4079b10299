//! The event store on real PostgreSQL: cqrs-es round trips, optimistic concurrency, gap-free
//! chains under concurrency, org isolation, append-only enforcement, NOTIFY.

use std::collections::HashMap;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, DomainEvent, EventStore};
use dashclaw_store::verify::{verify, Verdict};
use dashclaw_store::{chain, Appender, LedgerRepository, StoreError, LEDGER_CHANNEL};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::support::{event, org, seed};

/// A minimal aggregate: proves the repository works under cqrs-es's own lifecycle.
#[derive(Default, Serialize, Deserialize)]
struct Counter {
    value: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CounterEvent {
    Added { by: u64 },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> String {
        "Added".into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

impl Aggregate for Counter {
    const TYPE: &'static str = "Counter";
    type Command = u64;
    type Event = CounterEvent;
    type Error = std::io::Error;
    type Services = ();

    async fn handle(&mut self, by: u64, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        sink.write(CounterEvent::Added { by }, self).await;
        Ok(())
    }

    fn apply(&mut self, CounterEvent::Added { by }: CounterEvent) {
        self.value += by;
    }
}

fn cqrs(pool: &PgPool) -> CqrsFramework<Counter, PersistedEventStore<LedgerRepository, Counter>> {
    let store = PersistedEventStore::new_event_store(LedgerRepository::new(pool.clone()));
    CqrsFramework::new(store, vec![], ())
}

async fn intact(pool: &PgPool) -> Vec<(String, u64)> {
    let keys = dashclaw_store::keys::published(pool).await.unwrap();
    match verify(pool, &keys, None, &|_| {}).await.unwrap() {
        Verdict::Intact(orgs) => orgs
            .into_iter()
            .map(|o| (o.org_id.to_string(), o.events))
            .collect(),
        Verdict::Tampered(b) => panic!("expected an intact ledger, got {b}"),
    }
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn aggregates_persist_through_cqrs_es_onto_the_chain(pool: PgPool) {
    let cqrs = cqrs(&pool);
    let (a, b) = (org("org_a"), org("org_b"));
    let metadata = HashMap::from([("actor".to_string(), "alice".to_string())]);
    for by in [1, 2, 3] {
        cqrs.execute_with_metadata(&a.stream_id("counter"), by, metadata.clone())
            .await
            .unwrap();
    }
    // Same entity id in another org: a different stream, no collision.
    cqrs.execute(&b.stream_id("counter"), 10).await.unwrap();

    let store =
        PersistedEventStore::<_, Counter>::new_event_store(LedgerRepository::new(pool.clone()));
    let loaded = store.load_aggregate(&a.stream_id("counter")).await.unwrap();
    assert_eq!(loaded.aggregate.value, 6);

    let rows: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT ledger_seq, sequence, metadata::text FROM events WHERE org_id = 'org_a' ORDER BY ledger_seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        vec![(1, 1), (2, 2), (3, 3)]
    );
    assert!(
        rows[0].2.starts_with(r#"{"actor":"alice","recorded_at":""#),
        "{}",
        rows[0].2
    );
    assert_eq!(
        intact(&pool).await,
        vec![("org_a".into(), 3), ("org_b".into(), 1)]
    );
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_stale_writer_gets_a_conflict_and_writes_nothing(pool: PgPool) {
    let appender = Appender::new(pool.clone());
    let stream = org("org_a").stream_id("s");
    appender
        .append("Thing", &stream, 1, vec![event(0)])
        .await
        .unwrap();
    let stale = appender.append("Thing", &stream, 1, vec![event(1)]).await;
    assert!(
        matches!(
            stale,
            Err(StoreError::Conflict {
                expected: 0,
                found: 1,
                ..
            })
        ),
        "{stale:?}"
    );
    // cqrs-es sees the conflict as AggregateConflict (-> HTTP 409 or a retry).
    let persisted: cqrs_es::persist::PersistenceError = StoreError::Conflict {
        stream_id: stream.clone(),
        expected: 0,
        found: 1,
    }
    .into();
    assert!(matches!(
        AggregateError::<std::io::Error>::from(persisted),
        AggregateError::AggregateConflict
    ));
    assert_eq!(intact(&pool).await, vec![("org_a".into(), 1)]);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn unscoped_or_empty_appends_are_refused(pool: PgPool) {
    let appender = Appender::new(pool.clone());
    for (stream, events) in [("no-org-prefix", vec![event(0)]), ("org_a/x", vec![])] {
        let result = appender.append("Thing", stream, 1, events).await;
        assert!(
            matches!(result, Err(StoreError::InvalidAppend(_))),
            "{result:?}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn concurrent_appends_to_one_org_are_gap_free_and_verifiable(pool: PgPool) {
    let appender = Appender::new(pool.clone());
    let (tasks, per_task) = (32, 25);
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let appender = appender.clone();
            tokio::spawn(async move {
                let stream = org("org_busy").stream_id(&format!("task_{t}"));
                for i in 0..per_task {
                    // Each task extends its own stream, so streams interleave on the chain.
                    appender
                        .append("Thing", &stream, i + 1, vec![event(i as usize)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let (count, min, max, distinct): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), min(ledger_seq), max(ledger_seq), count(DISTINCT ledger_seq) FROM events WHERE org_id = 'org_busy'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let n = (tasks * per_task) as i64;
    assert_eq!((count, min, max, distinct), (n, 1, n, n));
    let head = chain::head(&pool, &org("org_busy")).await.unwrap();
    assert_eq!(head.size, n as u64);
    assert_eq!(intact(&pool).await, vec![("org_busy".into(), n as u64)]);
}

/// Two appenders on one database behave like two nodes: each one's remembered head goes
/// stale whenever the other writes, so appends fall back to the careful path; the chains of
/// several orgs, written by both at once, stay gap-free and verifiable.
#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn two_nodes_appending_to_the_same_orgs_stay_gap_free(pool: PgPool) {
    let nodes = [Appender::new(pool.clone()), Appender::new(pool.clone())];
    let orgs = ["org_shared_a", "org_shared_b", "org_shared_c"];
    let handles: Vec<_> = (0..12)
        .map(|t| {
            let appender = nodes[t % 2].clone();
            let org_name = orgs[t % 3];
            tokio::spawn(async move {
                let stream = org(org_name).stream_id(&format!("node_task_{t}"));
                for i in 0..20 {
                    appender
                        .append("Thing", &stream, i + 1, vec![event(i as usize)])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let mut verified = intact(&pool).await;
    verified.sort();
    assert_eq!(
        verified,
        orgs.iter().map(|o| (o.to_string(), 80)).collect::<Vec<_>>()
    );
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn racing_writers_on_one_stream_exactly_one_wins(pool: PgPool) {
    let appender = Appender::new(pool.clone());
    let handles: Vec<_> = (0..24)
        .map(|i| {
            let appender = appender.clone();
            tokio::spawn(async move {
                appender
                    .append(
                        "Thing",
                        &org("org_a").stream_id("contested"),
                        1,
                        vec![event(i)],
                    )
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(intact(&pool).await, vec![("org_a".into(), 1)]);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn orgs_do_not_block_each_other(pool: PgPool) {
    let appender = Appender::new(pool.clone());
    seed(&appender, &org("org_a"), 1).await;

    // Another session holds org_a's chain head, as a long append on another node would.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM ledger_heads WHERE org_id = 'org_a' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .unwrap();

    // org_b is not held up (the timeout only bounds a failing test).
    let b = tokio::time::timeout(Duration::from_secs(20), seed(&appender, &org("org_b"), 3)).await;
    assert!(b.is_ok(), "an append to org_b waited for org_a's lock");

    // org_a's next append waits for the lock...
    let waiting = tokio::spawn({
        let appender = appender.clone();
        async move {
            appender
                .append("Thing", &org("org_a").stream_id("late"), 1, vec![event(9)])
                .await
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let blocked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%ledger_heads%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if blocked > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "org_a's append never queued on the lock"
        );
        assert!(
            !waiting.is_finished(),
            "org_a's append did not wait for the held lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...and proceeds once it is released.
    holder.rollback().await.unwrap();
    let appended = waiting.await.unwrap().unwrap();
    assert_eq!(appended.first_ledger_seq, 2);
    assert_eq!(
        intact(&pool).await,
        vec![("org_a".into(), 2), ("org_b".into(), 3)]
    );
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn the_database_refuses_update_delete_and_truncate(pool: PgPool) {
    seed(&Appender::new(pool.clone()), &org("org_a"), 2).await;
    let signer = crate::support::signer(&pool).await;
    dashclaw_store::checkpoints::sign(&pool, &signer, &org("org_a"))
        .await
        .unwrap();
    for sql in [
        "UPDATE events SET payload = '{}' WHERE ledger_seq = 1",
        "DELETE FROM events WHERE ledger_seq = 2",
        "TRUNCATE events",
        "UPDATE checkpoints SET kid = 'x'",
        "TRUNCATE checkpoints",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // Not even with triggers switched off for replication.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    let err = sqlx::query("DELETE FROM events")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    drop(conn);
    assert_eq!(intact(&pool).await, vec![("org_a".into(), 2)]);
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn commits_are_announced_with_notify(pool: PgPool) {
    let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .unwrap();
    listener.listen(LEDGER_CHANNEL).await.unwrap();
    seed(&Appender::new(pool.clone()), &org("org_a"), 1).await;
    let note = tokio::time::timeout(Duration::from_secs(20), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note.payload(), "org_a:1");
}

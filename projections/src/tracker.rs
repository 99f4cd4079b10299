//! The tracking engine every projection shares: a checkpoint per (projection, org), folded
//! forward over a window of the org's ledger in one transaction with the read model's writes.
//!
//! A window ends at the org's head as read before the events (an appender moves the head in
//! the transaction that inserts the events, so every event up to it is committed and
//! visible): a projection that reads only some aggregate types still knows how far it has
//! looked, and its checkpoint can pass events it does not care about.

use std::sync::Arc;

use dashclaw_domain::OrgId;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

/// Ledger events (of the types a projection reads) per transaction, at most.
const WINDOW: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The database failed: the caller retries later; nothing was half-applied.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored event does not decode into its aggregate's event type. The projection stops
    /// at it rather than skip it: fix the code (an upcaster) and restart.
    #[error("event ({org}, {ledger_seq}) of {aggregate_type} does not decode: {detail}")]
    Undecodable {
        org: String,
        ledger_seq: u64,
        aggregate_type: String,
        detail: String,
    },
}

/// One ledger event as a projection sees it (borrowed from the fetched row).
#[derive(Clone, Copy)]
pub struct Event<'a> {
    pub ledger_seq: i64,
    pub aggregate_type: &'a str,
    /// The entity id inside the org (the stream id without its `org/` prefix).
    pub entity: &'a str,
    /// The event's position in its entity's stream (1 for the event that created it).
    pub sequence: i64,
    /// The stored payload, JSON text.
    pub payload: &'a str,
}

impl Event<'_> {
    /// Decodes the payload into the aggregate's event type.
    pub fn decode<T: DeserializeOwned>(&self, org: &OrgId) -> Result<T, ProjectionError> {
        serde_json::from_str(self.payload).map_err(|e| ProjectionError::Undecodable {
            org: org.to_string(),
            ledger_seq: self.ledger_seq as u64,
            aggregate_type: self.aggregate_type.to_owned(),
            detail: e.to_string(),
        })
    }
}

/// What a projection does with a window of events; the engine owns transactions and
/// checkpoints.
pub trait Fold: Send + Sync + 'static {
    /// The checkpoint name, also `dashclaw replay --projection NAME`.
    fn name(&self) -> &'static str;
    /// The aggregate types it reads (events of other types only move its checkpoint).
    fn aggregate_types(&self) -> &'static [&'static str];
    /// The tables it owns (emptied by a rebuild from zero).
    fn tables(&self) -> &'static [&'static str];
    /// Everything a window needs before its transaction: decoding, folding, encoding rows.
    /// Reads only committed rows (through `pool`). `previous` is what the window just before
    /// this one prepared: its rows may not be committed yet (the engine prepares window k+1
    /// while it writes window k), so what it touched must be taken from there.
    fn prepare<'a>(
        &'a self,
        pool: &'a PgPool,
        org: &'a OrgId,
        events: &'a [Event<'a>],
        previous: Option<&'a Prepared>,
    ) -> BoxFuture<'a, Result<Prepared, ProjectionError>>;
    /// Writes a prepared window inside the engine's transaction.
    fn write<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        org: &'a OrgId,
        prepared: &'a Prepared,
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;
}

/// A window as a [`Fold`] prepared it (each fold knows its own type).
pub type Prepared = Box<dyn std::any::Any + Send + Sync>;

/// Runs one [`Fold`] with its checkpoints.
#[derive(Clone)]
pub struct Tracker {
    pool: PgPool,
    fold: Arc<dyn Fold>,
    window: i64,
}

impl Tracker {
    pub fn new(pool: PgPool, fold: impl Fold) -> Self {
        Self {
            pool,
            fold: Arc::new(fold),
            window: WINDOW,
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn fold(&self) -> &dyn Fold {
        self.fold.as_ref()
    }

    pub(crate) fn window(&self) -> i64 {
        self.window
    }

    /// Moves this projection's checkpoint of `org` to `to` (inside the caller's transaction).
    pub(crate) async fn advance(
        &self,
        conn: &mut PgConnection,
        org: &OrgId,
        to: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE projection_checkpoints SET ledger_seq = $3
              WHERE projection = $1 AND org_id = $2",
        )
        .bind(self.name())
        .bind(org.as_str())
        .bind(to)
        .execute(conn)
        .await
        .map(drop)
    }

    /// The projection's name: its checkpoints' and `dashclaw replay --projection NAME`.
    pub fn name(&self) -> &'static str {
        self.fold.name()
    }

    /// Folds at most `events` ledger events per transaction (tests use small windows to
    /// stop mid-stream).
    pub fn with_window(mut self, events: i64) -> Self {
        self.window = events.max(1);
        self
    }

    /// Folds every event of `org` after the checkpoint; returns the new checkpoint. Safe to
    /// call from many tasks and nodes at once: windows serialize on the checkpoint row.
    pub async fn catch_up(&self, org: &OrgId) -> Result<u64, ProjectionError> {
        self.catch_up_with(org, &|_| {}).await
    }

    /// [`Self::catch_up`], calling `progress` with the ledger events each window passed.
    ///
    /// A pipeline: while window k is written (in its transaction), window k+1 is read and
    /// prepared beside it, and window k+2 read ahead on another connection (events never
    /// change). What was prepared is used only if the checkpoint is still where it was
    /// expected when its own transaction locks it.
    pub async fn catch_up_with(
        &self,
        org: &OrgId,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, ProjectionError> {
        let types = self.fold.aggregate_types();
        let mut ahead: Option<tokio::task::JoinHandle<Result<Window, sqlx::Error>>> = None;
        // The next window, prepared while the previous one was written.
        let mut ready: Option<(i64, i64, Prepared)> = None;
        loop {
            let mut tx = self.pool.begin().await?;
            let (position, head) = self.lock(&mut tx, org).await?;
            let (from, to, prepared) = match ready.take() {
                Some((from, to, prepared)) if from == position => (from, to, prepared),
                _ => {
                    if head <= position {
                        tx.commit().await?;
                        return Ok(position as u64);
                    }
                    let to = head.min(position + self.window);
                    let rows = read(&mut tx, org, types, position, to).await?;
                    let events = rows.iter().map(event).collect::<Result<Vec<_>, _>>()?;
                    let prepared = self.fold.prepare(&self.pool, org, &events, None).await?;
                    (position, to, prepared)
                }
            };
            let next = (to < head).then(|| (to, head.min(to + self.window)));
            let write = async {
                self.fold.write(&mut tx, org, &prepared).await?;
                self.advance(&mut tx, org, to).await?;
                Ok::<_, ProjectionError>(())
            };
            let prepare_next = async {
                let Some((next_from, next_to)) = next else {
                    return Ok(None);
                };
                let rows = match ahead.take() {
                    Some(task) => match task
                        .await
                        .map_err(|e| sqlx::Error::Protocol(e.to_string()))??
                    {
                        w if w.from == next_from && w.to == next_to => w.rows,
                        _ => self.read_pooled(org, next_from, next_to).await?,
                    },
                    None => self.read_pooled(org, next_from, next_to).await?,
                };
                if next_to < head {
                    let (pool, org, from) = (self.pool.clone(), org.clone(), next_to);
                    let to = head.min(next_to + self.window);
                    ahead = Some(tokio::spawn(async move {
                        let mut conn = pool.acquire().await?;
                        let rows = read(&mut conn, &org, types, from, to).await?;
                        Ok(Window { from, to, rows })
                    }));
                }
                let events = rows.iter().map(event).collect::<Result<Vec<_>, _>>()?;
                let prepared = self
                    .fold
                    .prepare(&self.pool, org, &events, Some(&prepared))
                    .await?;
                Ok::<_, ProjectionError>(Some((next_from, next_to, prepared)))
            };
            let (written, next) = futures_util::future::join(write, prepare_next).await;
            written?;
            tx.commit().await?;
            progress((to - from) as u64);
            if to >= head {
                // At the head this transaction saw: done (a later event has its own wake-up).
                return Ok(to as u64);
            }
            ready = next?;
        }
    }

    async fn read_pooled(
        &self,
        org: &OrgId,
        from: i64,
        to: i64,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        read(&mut conn, org, self.fold.aggregate_types(), from, to).await
    }

    /// Catches every org up; returns how many ledger events were passed.
    pub async fn catch_up_all_with(
        &self,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, ProjectionError> {
        let before = self.total_position().await?;
        let orgs: Vec<String> = sqlx::query_scalar("SELECT org_id FROM ledger_heads ORDER BY 1")
            .fetch_all(&self.pool)
            .await?;
        for org in orgs.into_iter().filter_map(|o| OrgId::new(o).ok()) {
            self.catch_up_with(&org, progress).await?;
        }
        Ok(self.total_position().await?.saturating_sub(before))
    }

    /// Ledger events not yet passed (for a progress bar).
    pub async fn behind(&self) -> Result<u64, ProjectionError> {
        let behind: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(h.size - COALESCE(c.ledger_seq, 0)), 0)::int8
               FROM ledger_heads h LEFT JOIN projection_checkpoints c
                 ON c.org_id = h.org_id AND c.projection = $1",
        )
        .bind(self.name())
        .fetch_one(&self.pool)
        .await?;
        Ok(behind.max(0) as u64)
    }

    /// Forgets everything this projection built, so that the next catch-up rebuilds it from
    /// the first event.
    pub async fn reset(&self) -> Result<(), ProjectionError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("TRUNCATE {}", self.fold.tables().join(", ")))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
            .bind(self.name())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn total_position(&self) -> Result<u64, ProjectionError> {
        let sum: Option<i64> = sqlx::query_scalar(
            "SELECT sum(ledger_seq)::bigint FROM projection_checkpoints WHERE projection = $1",
        )
        .bind(self.name())
        .fetch_one(&self.pool)
        .await?;
        Ok(sum.unwrap_or(0) as u64)
    }

    /// Creates the checkpoint row if needed, locks it (windows of one org serialize here,
    /// across nodes too) and reads it, with the org's head.
    pub(crate) async fn lock(
        &self,
        conn: &mut PgConnection,
        org: &OrgId,
    ) -> Result<(i64, i64), sqlx::Error> {
        // Read models can always be rebuilt from the ledger, so their commits need not wait
        // for a WAL flush (which the ledger's own commits then do not have to share). A crash
        // can lose a recent fold and its checkpoint together, never one without the other.
        // One statement (one round trip): the checkpoint, and the head as of its snapshot.
        let (position, head): (i64, i64) = sqlx::query_as(
            "WITH quick AS (SELECT set_config('synchronous_commit', 'off', true)),
                  checkpoint AS (
                    INSERT INTO projection_checkpoints (projection, org_id, ledger_seq)
                    SELECT $1, $2, 0 FROM quick
                    ON CONFLICT (projection, org_id)
                      DO UPDATE SET ledger_seq = projection_checkpoints.ledger_seq
                    RETURNING ledger_seq)
             SELECT checkpoint.ledger_seq,
                    (SELECT COALESCE(max(size), 0) FROM ledger_heads WHERE org_id = $2)
               FROM checkpoint",
        )
        .bind(self.name())
        .bind(org.as_str())
        .fetch_one(&mut *conn)
        .await?;
        Ok((position, head))
    }
}

/// Events `(from, to]` of an org's ledger, of the given types, in order.
struct Window {
    from: i64,
    to: i64,
    rows: Vec<PgRow>,
}

pub(crate) async fn read(
    conn: &mut PgConnection,
    org: &OrgId,
    types: &[&str],
    from: i64,
    to: i64,
) -> Result<Vec<PgRow>, sqlx::Error> {
    sqlx::query(
        "SELECT ledger_seq, aggregate_type, aggregate_id, payload, sequence FROM events
          WHERE org_id = $1 AND ledger_seq > $2 AND ledger_seq <= $3 AND aggregate_type = ANY($4)
          ORDER BY ledger_seq",
    )
    .bind(org.as_str())
    .bind(from)
    .bind(to)
    .bind(types)
    .fetch_all(conn)
    .await
}
/// Borrows an event from its row. The payload column is `json`, whose wire form (text and
/// binary alike) is the JSON text itself, so it is read without a cast or a copy.
pub(crate) fn event(row: &PgRow) -> Result<Event<'_>, ProjectionError> {
    let aggregate_id: &str = row.try_get(2)?;
    Ok(Event {
        ledger_seq: row.try_get(0)?,
        aggregate_type: row.try_get(1)?,
        entity: aggregate_id
            .split_once('/')
            .map_or(aggregate_id, |(_, entity)| entity),
        payload: row.try_get_unchecked(3)?,
        sequence: row.try_get(4)?,
    })
}

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
    /// A read-model row does not decode into its type, or the ledger event it points at is
    /// not there (a row written around the projection, or by code this version cannot
    /// read). A read stops at it rather than leave the row out of its answer: fix the code,
    /// or rebuild the read model (`dashclaw replay`).
    #[error("{table} row ({org}, {key}) cannot be read: {detail}")]
    UnreadableRow {
        table: &'static str,
        org: String,
        key: String,
        detail: String,
    },
    /// The ledger could not be read for a reason other than the database failing (the store
    /// found stored data it cannot read): see the store's error.
    #[error("ledger read failed: {0}")]
    Store(dashclaw_store::StoreError),
    /// Catching every org up, these orgs failed (each with its error); the others were
    /// caught up.
    #[error("{} org(s) could not be caught up: {}", .0.len(), .0.iter().map(|(org, e)| format!("{org}: {e}")).collect::<Vec<_>>().join("; "))]
    OrgsFailed(Vec<(String, String)>),
}

impl From<dashclaw_store::StoreError> for ProjectionError {
    /// A database failure stays one (the caller retries), whoever met it.
    fn from(e: dashclaw_store::StoreError) -> Self {
        match e {
            dashclaw_store::StoreError::Database(e) => Self::Database(e),
            other => Self::Store(other),
        }
    }
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
    /// Decodes the payload into the aggregate's event type (a NUL in it, which no read model
    /// can hold, replaced: see [`crate::storable`]).
    pub fn decode<T: DeserializeOwned>(&self, org: &OrgId) -> Result<T, ProjectionError> {
        crate::storable::decode(self.payload).map_err(|e| ProjectionError::Undecodable {
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
    gate: Gate,
}

/// The pool's connections that catch-ups may hold, as permits. A catch-up takes a permit for
/// every connection it may need (its transaction's, one to prepare, one to read ahead) before it
/// takes any. Without this, callers piling up behind a checkpoint lock (each holding its
/// transaction's connection) could take the last connections the fold holding the lock needs
/// to finish, and wait for it forever.
#[derive(Clone)]
pub(crate) struct Gate {
    permits: Arc<tokio::sync::Semaphore>,
    size: u32,
}

impl Gate {
    pub(crate) fn of(pool: &PgPool) -> Self {
        let size = pool.options().get_max_connections().max(1);
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(size as usize)),
            size,
        }
    }

    /// Waits for permits for `connections` connections (at most the pool's size).
    pub(crate) async fn enter(
        &self,
        connections: usize,
    ) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let wanted = u32::try_from(connections)
            .unwrap_or(u32::MAX)
            .min(self.size);
        // Never closed, so this is never `None`.
        self.permits.acquire_many(wanted).await.ok()
    }
}

impl Tracker {
    pub fn new(pool: PgPool, fold: impl Fold) -> Self {
        Self {
            gate: Gate::of(&pool),
            pool,
            fold: Arc::new(fold),
            window: WINDOW,
        }
    }

    /// Shares `gate` (trackers of one pool must share one).
    pub(crate) fn gated_by(mut self, gate: Gate) -> Self {
        self.gate = gate;
        self
    }

    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
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
    pub async fn catch_up_with(
        &self,
        org: &OrgId,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, ProjectionError> {
        // Its transaction, preparing, reading ahead.
        let _permits = self.gate.enter(3).await;
        loop {
            let (position, head) = self.peek(org).await?;
            if head <= position {
                return Ok(position as u64);
            }
            let mut feeds = read_ahead(
                &self.pool,
                org,
                self.fold.aggregate_types().to_vec(),
                (position, head),
                self.window,
                1,
            );
            let reached = self.fold_feed(org, &mut feeds[0], progress).await?;
            if reached >= head {
                // At the head seen above: done (a later event has its own wake-up).
                return Ok(head as u64);
            }
            if reached == position {
                // Nothing moved: the reader failed. Read the window here, to return the error
                // (or, if it was passing, to go round again).
                let mut conn = self.pool.acquire().await?;
                let to = head.min(position + self.window);
                Window::read(&mut conn, org, self.fold.aggregate_types(), position, to).await?;
            }
            // Otherwise another task or node moved the checkpoint meanwhile: look again.
        }
    }

    /// Folds the windows `feed` brings, one transaction each; returns the checkpoint reached,
    /// which is short of the feed's end if another task or node moved the checkpoint.
    ///
    /// A pipeline: while window k is written (in its transaction), window k+1 is decoded,
    /// folded and encoded beside it, while the reader fetches the windows after it (events
    /// never change). What was prepared is used only if the checkpoint is still where it was
    /// expected when its own transaction locks it.
    async fn fold_feed(
        &self,
        org: &OrgId,
        feed: &mut Feed,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<i64, ProjectionError> {
        let mine = self.fold.aggregate_types();
        // The next window, prepared while the previous one was written.
        let mut ready: Option<(i64, i64, Prepared)> = None;
        loop {
            let mut tx = self.pool.begin().await?;
            let (position, _) = self.lock(&mut tx, org).await?;
            let (from, to, prepared) = match ready.take() {
                Some(ready) if ready.0 == position => ready,
                Some(_) => {
                    tx.commit().await?;
                    return Ok(position);
                }
                // The first window: the one holding the event after the checkpoint.
                None => loop {
                    let Some(window) = feed.recv().await else {
                        tx.commit().await?;
                        return Ok(position);
                    };
                    if window.to <= position {
                        continue;
                    }
                    if window.from > position {
                        tx.commit().await?;
                        return Ok(position);
                    }
                    let events = window.events(mine, position)?;
                    let prepared = self.fold.prepare(&self.pool, org, &events, None).await?;
                    break (position, window.to, prepared);
                },
            };
            let write = async {
                self.fold.write(&mut tx, org, &prepared).await?;
                self.advance(&mut tx, org, to).await?;
                Ok::<_, ProjectionError>(())
            };
            let prepare_next = async {
                match feed.recv().await {
                    Some(window) if window.from == to => {
                        let events = window.events(mine, to)?;
                        let next = self
                            .fold
                            .prepare(&self.pool, org, &events, Some(&prepared))
                            .await?;
                        Ok::<_, ProjectionError>(Some((to, window.to, next)))
                    }
                    _ => Ok(None),
                }
            };
            let (written, next) = futures_util::future::join(write, prepare_next).await;
            written?;
            tx.commit().await?;
            progress((to - from) as u64);
            match next? {
                Some(next) => ready = Some(next),
                None => return Ok(to),
            }
        }
    }

    /// The checkpoint of `org` (0 before the first fold) and the org's head, not locked.
    async fn peek(&self, org: &OrgId) -> Result<(i64, i64), sqlx::Error> {
        sqlx::query_as(
            "SELECT COALESCE((SELECT ledger_seq FROM projection_checkpoints
                               WHERE projection = $1 AND org_id = $2), 0),
                    (SELECT COALESCE(max(size), 0) FROM ledger_heads WHERE org_id = $2)",
        )
        .bind(self.name())
        .bind(org.as_str())
        .fetch_one(&self.pool)
        .await
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
        // Checkpoints first, then tables: the order every catch-up takes them in (checkpoint
        // row locked, then its tables written), so a running server's catch-up waits for the
        // reset instead of deadlocking with it.
        sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
            .bind(self.name())
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("TRUNCATE {}", self.fold.tables().join(", ")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
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

/// Catches every org of every one of `trackers` up, side by side (`dashclaw replay`): each
/// window of the ledger is read once and folded by all of them, each in its own transactions.
pub async fn catch_up_together(
    trackers: &[Tracker],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), ProjectionError> {
    let Some(first) = trackers.first() else {
        return Ok(());
    };
    let types: Vec<&'static str> = trackers
        .iter()
        .flat_map(|t| t.fold.aggregate_types().iter().copied())
        .collect();
    let orgs: Vec<String> = sqlx::query_scalar("SELECT org_id FROM ledger_heads ORDER BY 1")
        .fetch_all(&first.pool)
        .await?;
    // One org that cannot be folded must not leave the others without read models: each is
    // caught up on its own, and the failures are reported together at the end.
    let mut failed = Vec::new();
    for org in orgs.into_iter().filter_map(|o| OrgId::new(o).ok()) {
        if let Err(e) = catch_up_org(trackers, &types, &org, progress).await {
            tracing::error!(%org, error = %e, "cannot catch this org's read models up");
            failed.push((org.to_string(), e.to_string()));
        }
    }
    match failed.len() {
        0 => Ok(()),
        _ => Err(ProjectionError::OrgsFailed(failed)),
    }
}

/// [`catch_up_together`] for one org.
async fn catch_up_org(
    trackers: &[Tracker],
    types: &[&'static str],
    org: &OrgId,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), ProjectionError> {
    let Some(first) = trackers.first() else {
        return Ok(());
    };
    let mut lowest = i64::MAX;
    let mut head = 0;
    for tracker in trackers {
        let (position, h) = tracker.peek(org).await?;
        (lowest, head) = (lowest.min(position), h);
    }
    if head > lowest {
        // Each fold's transaction and preparing, and the reader.
        let _permits = first.gate.enter(2 * trackers.len() + 1).await;
        let span = (lowest, head);
        let feeds = read_ahead(
            &first.pool,
            org,
            types.to_vec(),
            span,
            first.window,
            trackers.len(),
        );
        futures_util::future::try_join_all(trackers.iter().zip(feeds).map(
            |(tracker, mut feed)| async move { tracker.fold_feed(org, &mut feed, progress).await },
        ))
        .await?;
    }
    // Whatever the shared read did not cover (later events, a checkpoint moved by someone
    // else), each catches up on its own.
    futures_util::future::try_join_all(trackers.iter().map(|t| t.catch_up_with(org, progress)))
        .await?;
    Ok(())
}

/// Events `(from, to]` of an org's ledger, of the types its reader was asked for, in order.
pub(crate) struct Window {
    from: i64,
    to: i64,
    rows: Vec<PgRow>,
}

impl Window {
    /// Reads the events `(from, to]` of `org`'s ledger of the given types.
    pub(crate) async fn read(
        conn: &mut PgConnection,
        org: &OrgId,
        types: &[&str],
        from: i64,
        to: i64,
    ) -> Result<Self, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT ledger_seq, aggregate_type, aggregate_id, payload, sequence FROM events
              WHERE org_id = $1 AND ledger_seq > $2 AND ledger_seq <= $3
                AND aggregate_type = ANY($4)
              ORDER BY ledger_seq",
        )
        .bind(org.as_str())
        .bind(from)
        .bind(to)
        .bind(types)
        .fetch_all(conn)
        .await?;
        Ok(Self { from, to, rows })
    }

    /// The events after `after` of the given types.
    pub(crate) fn events(
        &self,
        types: &[&str],
        after: i64,
    ) -> Result<Vec<Event<'_>>, ProjectionError> {
        let mut events = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            let event = event(row)?;
            if event.ledger_seq > after && types.contains(&event.aggregate_type) {
                events.push(event);
            }
        }
        Ok(events)
    }
}

/// The windows a reader sends one projection, in order; the channel closes at the end.
type Feed = tokio::sync::mpsc::Receiver<Arc<Window>>;

/// Windows a reader keeps ready in each feed beyond the one being prepared.
const READ_AHEAD: usize = 2;

/// Starts a task reading `org`'s events `(from, head]` of `types`, window by window, into `n`
/// feeds (events never change, so they are read outside the folds' transactions; each window
/// once however many projections fold it). A failed read ends the feeds early: the folds
/// then stop short, and the caller catches up on its own, meeting the error itself.
fn read_ahead(
    pool: &PgPool,
    org: &OrgId,
    types: Vec<&'static str>,
    (from, head): (i64, i64),
    window: i64,
    n: usize,
) -> Vec<Feed> {
    let (senders, feeds): (Vec<_>, Vec<_>) = (0..n)
        .map(|_| tokio::sync::mpsc::channel(READ_AHEAD))
        .unzip();
    let (pool, org) = (pool.clone(), org.clone());
    tokio::spawn(async move {
        let mut senders = senders;
        let mut from = from;
        while from < head && !senders.is_empty() {
            let to = head.min(from + window);
            let read = match pool.acquire().await {
                Ok(mut conn) => Window::read(&mut conn, &org, &types, from, to).await,
                Err(e) => Err(e),
            };
            let window = match read {
                Ok(window) => Arc::new(window),
                Err(e) => {
                    tracing::warn!(%org, from, to, error = %e, "reading ahead failed");
                    return;
                }
            };
            let mut open = Vec::with_capacity(senders.len());
            for sender in senders {
                if sender.send(window.clone()).await.is_ok() {
                    open.push(sender);
                }
            }
            senders = open;
            from = to;
        }
    });
    feeds
}

/// Borrows an event from its row. The payload column is `json`, whose wire form (text and
/// binary alike) is the JSON text itself, so it is read without a cast or a copy.
fn event(row: &PgRow) -> Result<Event<'_>, ProjectionError> {
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

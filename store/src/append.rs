//! Appending to the ledger, with per-org and cross-org group commit.
//!
//! Each org has one committer task. An append is a request to that task; the task takes every
//! request waiting for it and writes them together. Two ways:
//!
//! - **fast** (the committer knows where its org's head is, the usual case): the committer
//!   chains the batch from that head and hands it to the one *combiner*, which writes the
//!   batches of every org that has one ready in a single statement: lock the heads that are
//!   free and unmoved (`FOR UPDATE SKIP LOCKED`), move them, insert exactly those orgs'
//!   events. One round trip and one WAL flush for many orgs; an org whose head is locked or
//!   moved (another node) is skipped, never waited for;
//! - **careful** (first append, after a skip or a conflict): one transaction locks the org's
//!   head `FOR UPDATE`, checks each stream's expected sequence (optimistic concurrency),
//!   inserts the chained events and moves the head.
//!
//! Either way one org's appends are serialized (across nodes too, by the head row) and there
//! is no moment at which a committed event is not chained. Commits are announced with
//! `NOTIFY` right after they are made (see [`Announcer`]).
//!
//! Every append has a deadline, the pool's acquire timeout after it was asked for: an append
//! still unsent at its deadline (the database unreachable, the queue stalled behind a hung
//! write) is refused with [`StoreError::Unavailable`] at its deadline and is never written
//! later; its caller can say "not written" for certain. (A [`Claim`] settles the race between
//! the caller giving up and the committer sending.) Once a write is sent, only the database's answer settles it: a connection
//! lost before that answer (or no answer within [`WRITE_TIMEOUT`]) is
//! [`StoreError::CommitUnknown`], never reported as a failure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use chrono::{DateTime, SubsecRound, Utc};
use dashclaw_events::{genesis_hash, CanonicalJson, Envelope, EventHash, OrgId};
use serde_json::{Map, Value};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::{StoreError, LEDGER_CHANNEL};

/// Most appends one transaction takes; bounds transaction size and latency under load.
const MAX_BATCH: usize = 512;
/// A committer with nothing to do for this long retires (its org's next append starts another).
const IDLE_RETIREMENT: Duration = Duration::from_secs(30);
/// Longest a sent write may go unanswered before its outcome is reported unknown.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// An event to append, already serialized by its aggregate.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub event_type: String,
    pub event_version: String,
    pub payload: CanonicalJson,
    /// Caller metadata (actor, agent_id, request_id, ...); the store adds `recorded_at`.
    pub metadata: Map<String, Value>,
}

/// Where an append landed in its org's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub org_id: OrgId,
    pub first_ledger_seq: u64,
    pub last_ledger_seq: u64,
}

struct Request {
    stream_type: String,
    stream_id: String,
    /// Stream sequence of the first event; the stream must currently end at `first_seq - 1`.
    first_seq: u64,
    events: Vec<NewEvent>,
    /// Unsent by then, the append is refused as unavailable.
    deadline: Instant,
    claim: Claim,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

impl Request {
    /// Whether the append is already given up (so it is not worth chaining).
    fn abandoned(&self) -> bool {
        self.reply.is_closed() || self.claim.is_abandoned()
    }
}

/// Who decides an append's fate: its caller may abandon it (at its deadline, or by going
/// away) only while it is queued; once the committer has taken it for sending, only the
/// database's answer settles it. One atomic, so exactly one side wins.
#[derive(Clone, Default)]
struct Claim(Arc<std::sync::atomic::AtomicU8>);

const QUEUED: u8 = 0;
const SENDING: u8 = 1;
const ABANDONED: u8 = 2;

impl Claim {
    fn swap(&self, from: u8, to: u8) -> Result<u8, u8> {
        use std::sync::atomic::Ordering::SeqCst;
        self.0.compare_exchange(from, to, SeqCst, SeqCst)
    }

    /// The committer takes the append for sending: false if it was abandoned (by its caller,
    /// or here because its deadline has passed), and then it must not be sent.
    fn take(&self, deadline: Instant) -> bool {
        if Instant::now() >= deadline {
            let _ = self.swap(QUEUED, ABANDONED);
        }
        matches!(self.swap(QUEUED, SENDING), Ok(_) | Err(SENDING))
    }

    /// The caller gives up: true if the append will never be sent.
    fn abandon(&self) -> bool {
        matches!(self.swap(QUEUED, ABANDONED), Ok(_) | Err(ABANDONED))
    }

    fn is_abandoned(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst) == ABANDONED
    }
}

/// Abandons a queued append when its caller goes away (the request future dropped).
struct AbandonOnDrop(Claim);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

/// The refusal of an append whose deadline passed before it could be sent.
fn too_late() -> StoreError {
    StoreError::Unavailable("no database connection within the append's deadline".into())
}

/// A copy of an error that settles a whole batch alike.
fn settle_all(error: &StoreError) -> Option<StoreError> {
    match error {
        StoreError::Unavailable(m) => Some(StoreError::Unavailable(m.clone())),
        StoreError::CommitUnknown(m) => Some(StoreError::CommitUnknown(m.clone())),
        _ => None,
    }
}

/// Answers every request of a batch with the same unavailable or unknown outcome.
fn fail_all(org: &OrgId, batch: Vec<Request>, error: &StoreError) {
    tracing::warn!(%org, %error, size = batch.len(), "ledger append failed");
    for request in batch {
        let _ = request
            .reply
            .send(Err(settle_all(error).unwrap_or_else(too_late)));
    }
}

/// An error of a statement not yet committed: the database's refusal stays one (nothing was
/// written, and the request may be retried alone); a lost connection means nothing was written
/// either (an open transaction dies with its connection), but the database is unavailable.
fn before_commit(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(_) => StoreError::Database(e),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// An error of the statement that commits: the database's refusal means nothing was written;
/// anything else leaves the outcome unknown.
fn at_commit(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(_) => StoreError::Database(e),
        other => StoreError::CommitUnknown(other.to_string()),
    }
}

struct Committer {
    generation: u64,
    sender: mpsc::Sender<Request>,
}

struct Inner {
    pool: PgPool,
    /// How long an append may wait to be sent (the pool's acquire timeout).
    bound: Duration,
    committers: Mutex<HashMap<OrgId, Committer>>,
    generations: std::sync::atomic::AtomicU64,
    announcer: Announcer,
    combiner: std::sync::OnceLock<mpsc::Sender<Job>>,
}

/// Announces commits (`NOTIFY dashclaw_ledger, '<org>:<size>'`) right after they are made,
/// many orgs per statement. The NOTIFY is deliberately not part of the appending
/// transaction: PostgreSQL serializes the commits of all notifying transactions on one
/// global lock, which would stop commits of different orgs from sharing a WAL flush.
/// Listeners also re-scan the chain heads, so a notice lost in a crash delays, never loses.
struct Announcer {
    pending: Arc<Mutex<HashMap<OrgId, u64>>>,
    wake: Arc<tokio::sync::Notify>,
    started: std::sync::atomic::AtomicBool,
}

impl Announcer {
    fn new() -> Self {
        Self {
            pending: Arc::default(),
            wake: Arc::default(),
            started: Default::default(),
        }
    }

    fn announce(&self, pool: &PgPool, org: &OrgId, size: u64) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let known = pending.entry(org.clone()).or_default();
            *known = (*known).max(size);
        }
        if !self.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            tokio::spawn(announce(
                pool.clone(),
                Arc::downgrade(&self.pending),
                self.wake.clone(),
            ));
        }
        self.wake.notify_one();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Lets the announcer see that its appender is gone.
        self.announcer.wake.notify_one();
    }
}

async fn announce(
    pool: PgPool,
    pending: std::sync::Weak<Mutex<HashMap<OrgId, u64>>>,
    wake: Arc<tokio::sync::Notify>,
) {
    loop {
        wake.notified().await;
        let Some(pending) = pending.upgrade() else {
            return;
        };
        let notices: Vec<String> =
            std::mem::take(&mut *pending.lock().unwrap_or_else(PoisonError::into_inner))
                .into_iter()
                .map(|(org, size)| format!("{org}:{size}"))
                .collect();
        drop(pending);
        if notices.is_empty() {
            continue;
        }
        // A notice needs no durability of its own (the events already have it): its
        // transaction does not wait for a WAL flush.
        let sql = "SELECT pg_notify($1, n)
                     FROM (SELECT set_config('synchronous_commit', 'off', true)) AS quick,
                          UNNEST($2::text[]) AS n";
        if let Err(error) = sqlx::query(sql)
            .bind(LEDGER_CHANNEL)
            .bind(&notices)
            .execute(&pool)
            .await
        {
            tracing::warn!(%error, "cannot announce ledger commits; listeners will find them by re-scanning");
        }
    }
}

/// The one writer of events. Cheap to clone; all clones share the committers.
#[derive(Clone)]
pub struct Appender {
    inner: Arc<Inner>,
}

impl Appender {
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: Arc::new(Inner {
                bound: pool.options().get_acquire_timeout(),
                pool,
                committers: Mutex::new(HashMap::new()),
                generations: Default::default(),
                announcer: Announcer::new(),
                combiner: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Appends `events` to the stream `stream_id` (`<org_id>/<id>`), whose first event must get
    /// stream sequence `first_seq`. Fails with [`StoreError::Conflict`] if the stream has moved.
    pub async fn append(
        &self,
        stream_type: &str,
        stream_id: &str,
        first_seq: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let org =
            OrgId::of_stream(stream_id).map_err(|e| StoreError::InvalidAppend(e.to_string()))?;
        if events.is_empty() || first_seq == 0 {
            return Err(StoreError::InvalidAppend(
                "an append needs at least one event and a first sequence >= 1".into(),
            ));
        }
        let (reply, mut answer) = oneshot::channel();
        let deadline = Instant::now() + self.inner.bound;
        let claim = Claim::default();
        let _gone = AbandonOnDrop(claim.clone());
        let mut request = Request {
            stream_type: stream_type.to_owned(),
            stream_id: stream_id.to_owned(),
            first_seq,
            events,
            deadline,
            claim: claim.clone(),
            reply,
        };
        // A committer may retire between our lookup and our send; then start a fresh one.
        for _ in 0..3 {
            let (generation, sender) = self.committer(&org);
            match sender.send(request).await {
                Ok(()) => {
                    return match tokio::time::timeout_at(deadline, &mut answer).await {
                        Ok(answered) => answered.map_err(|_| StoreError::ShuttingDown)?,
                        // Still queued: refused for good. Already being sent: the database
                        // decides, within the write timeout.
                        Err(_) if claim.abandon() => Err(too_late()),
                        Err(_) => answer.await.map_err(|_| StoreError::ShuttingDown)?,
                    };
                }
                Err(mpsc::error::SendError(returned)) => {
                    self.inner.retire(&org, generation);
                    request = returned;
                }
            }
        }
        Err(StoreError::ShuttingDown)
    }

    fn committer(&self, org: &OrgId) -> (u64, mpsc::Sender<Request>) {
        let mut committers = self
            .inner
            .committers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = committers.get(org).filter(|c| !c.sender.is_closed()) {
            return (c.generation, c.sender.clone());
        }
        let generation = self
            .inner
            .generations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(4 * MAX_BATCH);
        committers.insert(
            org.clone(),
            Committer {
                generation,
                sender: sender.clone(),
            },
        );
        tokio::spawn(run_committer(
            self.inner.clone(),
            org.clone(),
            generation,
            receiver,
        ));
        (generation, sender)
    }
}

impl Inner {
    /// Removes the org's committer if it is still the given generation.
    fn retire(&self, org: &OrgId, generation: u64) {
        let mut committers = self
            .committers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if committers
            .get(org)
            .is_some_and(|c| c.generation == generation)
        {
            committers.remove(org);
        }
    }
}

async fn run_committer(
    inner: Arc<Inner>,
    org: OrgId,
    generation: u64,
    mut requests: mpsc::Receiver<Request>,
) {
    // The chain head as of this committer's last commit: lets the next batch be written in
    // one round trip (checked in the same statement; see `write_fast`).
    let mut head = None;
    loop {
        let first = match tokio::time::timeout(IDLE_RETIREMENT, requests.recv()).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(_idle) => {
                inner.retire(&org, generation);
                // Nothing new can arrive after close(); what raced in before it is still served.
                requests.close();
                while let Some(request) = requests.recv().await {
                    commit(&inner, &org, vec![request], &mut head).await;
                }
                return;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit(&inner, &org, batch, &mut head).await;
    }
}

/// The chain position after the last commit: (size, head hash).
type Head = (u64, EventHash);

/// Writes a batch and answers every request in it: first in one round trip from the known
/// head, else carefully (head locked, every stream position checked). If the careful batch
/// is refused by the database as a whole, each request is retried alone, so one bad request
/// cannot fail its neighbours. Requests past their deadline are refused, never sent.
async fn commit(inner: &Inner, org: &OrgId, batch: Vec<Request>, head: &mut Option<Head>) {
    let pool = &inner.pool;
    let now = Instant::now();
    let (expired, batch): (Vec<Request>, Vec<Request>) = batch
        .into_iter()
        .partition(|r| r.abandoned() || now >= r.deadline);
    for request in expired {
        let _ = request.reply.send(Err(too_late()));
    }
    if batch.is_empty() {
        return;
    }
    if let Some(known) = *head {
        match write_fast(inner, org, &batch, known).await {
            Ok(Some((outcomes, moved))) => {
                *head = Some(moved);
                inner.announcer.announce(pool, org, moved.0);
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = request.reply.send(outcome);
                }
                return;
            }
            // Another node moved the head, or a stream conflicted: take the careful path.
            Ok(None) => {}
            Err(error) => {
                if settle_all(&error).is_some() {
                    // Unreachable, or sent without an answer: where the head is, is unknown.
                    *head = None;
                    fail_all(org, batch, &error);
                    return;
                }
                tracing::debug!(%org, %error, "fast append refused; retrying carefully");
            }
        }
    }
    *head = None;
    match write_batch(pool, org, &batch).await {
        Ok((outcomes, moved)) => {
            *head = moved;
            if let Some((size, _)) = moved {
                inner.announcer.announce(pool, org, size);
            }
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                let _ = request.reply.send(outcome);
            }
        }
        Err(error) if settle_all(&error).is_some() => fail_all(org, batch, &error),
        Err(error) if batch.len() == 1 => {
            tracing::warn!(%org, %error, "ledger append failed");
            if let Some(request) = batch.into_iter().next() {
                let _ = request.reply.send(Err(error));
            }
        }
        Err(error) => {
            tracing::warn!(%org, %error, size = batch.len(), "batched ledger append failed; retrying one by one");
            for request in batch {
                let outcome = match write_batch(pool, org, std::slice::from_ref(&request)).await {
                    Ok((mut outcomes, _)) => {
                        outcomes.pop().unwrap_or(Err(StoreError::ShuttingDown))
                    }
                    Err(error) => Err(error),
                };
                let _ = request.reply.send(outcome);
            }
        }
    }
}

/// The events of one transaction, column by column (bound as arrays to a single INSERT).
#[derive(Default)]
struct Columns {
    aggregate_type: Vec<String>,
    aggregate_id: Vec<String>,
    sequence: Vec<i64>,
    event_type: Vec<String>,
    event_version: Vec<String>,
    payload: Vec<String>,
    metadata: Vec<String>,
    ledger_seq: Vec<i64>,
    prev_hash: Vec<String>,
    hash: Vec<String>,
}

impl Columns {
    fn extend(&mut self, other: &Columns) {
        self.aggregate_type.extend_from_slice(&other.aggregate_type);
        self.aggregate_id.extend_from_slice(&other.aggregate_id);
        self.sequence.extend_from_slice(&other.sequence);
        self.event_type.extend_from_slice(&other.event_type);
        self.event_version.extend_from_slice(&other.event_version);
        self.payload.extend_from_slice(&other.payload);
        self.metadata.extend_from_slice(&other.metadata);
        self.ledger_seq.extend_from_slice(&other.ledger_seq);
        self.prev_hash.extend_from_slice(&other.prev_hash);
        self.hash.extend_from_slice(&other.hash);
    }

    fn push(&mut self, e: Envelope) {
        self.aggregate_type.push(e.stream_type);
        self.aggregate_id.push(e.stream_id);
        self.sequence.push(e.stream_seq as i64);
        self.event_type.push(e.event_type);
        self.event_version.push(e.event_version);
        self.payload.push(e.payload.into_string());
        self.metadata.push(e.metadata.into_string());
        self.ledger_seq.push(e.ledger_seq as i64);
        self.prev_hash.push(e.prev_hash.to_hex());
        self.hash.push(e.hash.to_hex());
    }
}

const INSERT_AND_MOVE_HEAD: &str = "
WITH inserted AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload, metadata, org_id, ledger_seq, prev_hash, hash, recorded_at)
    SELECT t.aggregate_type, t.aggregate_id, t.sequence, t.event_type, t.event_version,
           t.payload::json, t.metadata::json, $1, t.ledger_seq, t.prev_hash, t.hash, $2
      FROM UNNEST($3::text[], $4::text[], $5::int8[], $6::text[], $7::text[],
                  $8::text[], $9::text[], $10::int8[], $11::text[], $12::text[])
        AS t(aggregate_type, aggregate_id, sequence, event_type, event_version,
             payload, metadata, ledger_seq, prev_hash, hash)
)
UPDATE ledger_heads SET size = $13, head_hash = $14, updated_at = $2 WHERE org_id = $1";

/// One org's batch, chained from the head its committer knows, waiting to be written
/// together with other orgs' batches.
struct Job {
    org: OrgId,
    from: Head,
    to: Head,
    columns: Columns,
    recorded_at: DateTime<Utc>,
    /// Its appends' claims and deadlines: it is sent only if every one can be taken.
    claims: Vec<(Claim, Instant)>,
    /// Whether the head was still at `from` (and so the batch is written).
    reply: oneshot::Sender<Result<bool, StoreError>>,
}

/// Chains the batch from the known head and has the combiner write it with whatever other
/// orgs have ready, in one statement. `Ok(None)` when the head had moved elsewhere (or was
/// locked), so the caller takes the careful path.
async fn write_fast(
    inner: &Inner,
    org: &OrgId,
    batch: &[Request],
    (size, head): Head,
) -> Result<Option<(Vec<Result<Appended, StoreError>>, Head)>, StoreError> {
    let recorded_at = Utc::now().trunc_subsecs(3);
    let recorded_text = timestamp(recorded_at);
    let mut columns = Columns::default();
    let mut outcomes = Vec::with_capacity(batch.len());
    let (mut end, mut last) = (size, head);
    for request in batch {
        let chained = chain(org, request, end, last, &recorded_text)?;
        let first_ledger_seq = end + 1;
        end += chained.len() as u64;
        last = chained.last().map_or(last, |e| e.hash);
        chained.into_iter().for_each(|e| columns.push(e));
        outcomes.push(Ok(Appended {
            org_id: org.clone(),
            first_ledger_seq,
            last_ledger_seq: end,
        }));
    }
    let (reply, answer) = oneshot::channel();
    let job = Job {
        org: org.clone(),
        from: (size, head),
        to: (end, last),
        columns,
        recorded_at,
        claims: batch
            .iter()
            .map(|r| (r.claim.clone(), r.deadline))
            .collect(),
        reply,
    };
    let combiner = inner.combiner.get_or_init(|| {
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(combine(inner.pool.clone(), receiver));
        sender
    });
    combiner
        .send(job)
        .await
        .map_err(|_| StoreError::ShuttingDown)?;
    let moved = answer.await.map_err(|_| StoreError::ShuttingDown)??;
    Ok(moved.then_some((outcomes, (end, last))))
}

/// Statements the combiner may have in flight at once: with one, a lone org would wait for
/// its own previous statement's round trip twice; more would only split batches.
const COMBINED_IN_FLIGHT: usize = 2;

/// Writes the fast batches of many orgs, each statement taking every batch that is waiting:
/// one round trip and one WAL flush for all of them.
async fn combine(pool: PgPool, mut jobs: mpsc::Receiver<Job>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(COMBINED_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = jobs.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let mut events = batch[0].columns.hash.len();
        while events < 4 * MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => {
                    events += job.columns.hash.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut conn = match pool.acquire().await {
                Ok(conn) => conn,
                Err(e) => {
                    drop(slot);
                    for job in batch {
                        let _ = job.reply.send(Err(StoreError::Unavailable(e.to_string())));
                    }
                    return;
                }
            };
            // A job is chained as a whole: if one of its appends was given up meanwhile, the
            // org re-chains what is left on its careful path.
            let (batch, broken): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|job| {
                job.claims
                    .iter()
                    .all(|(claim, deadline)| claim.take(*deadline))
            });
            for job in broken {
                let _ = job.reply.send(Ok(false));
            }
            let written = match tokio::time::timeout(
                WRITE_TIMEOUT,
                write_combined(&mut conn, &batch),
            )
            .await
            {
                Ok(written) => written,
                Err(_) => Err(StoreError::CommitUnknown(format!(
                    "no answer from the database within {WRITE_TIMEOUT:?}"
                ))),
            };
            drop(slot);
            match written {
                Ok(moved) => {
                    for job in batch {
                        let _ = job.reply.send(Ok(moved.contains(job.org.as_str())));
                    }
                }
                Err(error) if settle_all(&error).is_some() => {
                    for job in batch {
                        let _ = job
                            .reply
                            .send(Err(settle_all(&error).unwrap_or_else(too_late)));
                    }
                }
                Err(error) => {
                    // A stream position was taken meanwhile (primary key), or the database
                    // refused the statement: nothing was written; every org retries on its
                    // careful path.
                    tracing::debug!(%error, orgs = batch.len(), "combined append refused");
                    for job in batch {
                        let _ = job.reply.send(Ok(false));
                    }
                }
            }
        });
    }
}

/// One statement, no explicit transaction: lock the heads that are free and still where
/// their committers left them (`SKIP LOCKED`, so an org whose head another transaction holds
/// never delays the others), move them, and insert the events of exactly those orgs. The
/// events' primary key refuses a stream position taken meanwhile (the statement then fails
/// and nothing is written). Returns the orgs written.
async fn write_combined(
    conn: &mut sqlx::PgConnection,
    batch: &[Job],
) -> Result<std::collections::HashSet<String>, StoreError> {
    if batch.is_empty() {
        return Ok(Default::default());
    }
    let mut heads = HeadColumns::default();
    let mut events = Columns::default();
    let mut orgs = Vec::new();
    let mut recorded = Vec::new();
    for job in batch {
        heads.org.push(job.org.to_string());
        heads.from_size.push(job.from.0 as i64);
        heads.from_hash.push(job.from.1.to_hex());
        heads.to_size.push(job.to.0 as i64);
        heads.to_hash.push(job.to.1.to_hex());
        heads.at.push(job.recorded_at);
        for _ in 0..job.columns.hash.len() {
            orgs.push(job.org.to_string());
            recorded.push(job.recorded_at);
        }
        events.extend(&job.columns);
    }
    let moved: Vec<String> = sqlx::query_scalar(COMBINED_APPEND)
        .bind(&heads.org)
        .bind(&heads.from_size)
        .bind(&heads.from_hash)
        .bind(&heads.to_size)
        .bind(&heads.to_hash)
        .bind(&heads.at)
        .bind(&events.aggregate_type)
        .bind(&events.aggregate_id)
        .bind(&events.sequence)
        .bind(&events.event_type)
        .bind(&events.event_version)
        .bind(&events.payload)
        .bind(&events.metadata)
        .bind(&orgs)
        .bind(&events.ledger_seq)
        .bind(&events.prev_hash)
        .bind(&events.hash)
        .bind(&recorded)
        .fetch_all(conn)
        .await
        // One statement is its own transaction: it is the commit.
        .map_err(at_commit)?;
    Ok(moved.into_iter().collect())
}

#[derive(Default)]
struct HeadColumns {
    org: Vec<String>,
    from_size: Vec<i64>,
    from_hash: Vec<String>,
    to_size: Vec<i64>,
    to_hash: Vec<String>,
    at: Vec<DateTime<Utc>>,
}

const COMBINED_APPEND: &str = "
WITH want AS (
    SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int8[], $5::text[],
                         $6::timestamptz[])
        AS w(org_id, from_size, from_hash, to_size, to_hash, at)
), locked AS (
    SELECT h.org_id FROM ledger_heads h JOIN want w ON w.org_id = h.org_id
     WHERE h.size = w.from_size AND h.head_hash = w.from_hash
     ORDER BY h.org_id
       FOR UPDATE OF h SKIP LOCKED
), moved AS (
    UPDATE ledger_heads h SET size = w.to_size, head_hash = w.to_hash, updated_at = w.at
      FROM want w
     WHERE h.org_id = w.org_id AND h.org_id IN (SELECT org_id FROM locked)
    RETURNING h.org_id
), inserted AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload, metadata, org_id, ledger_seq, prev_hash, hash, recorded_at)
    SELECT t.aggregate_type, t.aggregate_id, t.sequence, t.event_type, t.event_version,
           t.payload::json, t.metadata::json, t.org_id, t.ledger_seq, t.prev_hash, t.hash,
           t.recorded_at
      FROM UNNEST($7::text[], $8::text[], $9::int8[], $10::text[], $11::text[],
                  $12::text[], $13::text[], $14::text[], $15::int8[], $16::text[], $17::text[],
                  $18::timestamptz[])
        AS t(aggregate_type, aggregate_id, sequence, event_type, event_version,
             payload, metadata, org_id, ledger_seq, prev_hash, hash, recorded_at)
     WHERE t.org_id IN (SELECT org_id FROM moved)
    RETURNING 1
)
SELECT org_id FROM moved";

/// Each request's outcome, and the head after the batch (`None` when nothing is written).
type Staged = (Vec<Result<Appended, StoreError>>, Option<Head>);

/// The careful path: one transaction, the head locked, every stream position checked.
async fn write_batch(pool: &PgPool, org: &OrgId, batch: &[Request]) -> Result<Staged, StoreError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let staged = match tokio::time::timeout(WRITE_TIMEOUT, stage(&mut tx, org, batch)).await {
        Ok(staged) => staged?,
        // Not committed: the transaction dies with its connection.
        Err(_) => {
            return Err(StoreError::Unavailable(format!(
                "no answer from the database within {WRITE_TIMEOUT:?}"
            )))
        }
    };
    if staged.1.is_none() {
        tx.rollback().await.map_err(before_commit)?;
        return Ok(staged);
    }
    match tokio::time::timeout(WRITE_TIMEOUT, tx.commit()).await {
        Ok(committed) => committed.map_err(at_commit)?,
        Err(_) => {
            return Err(StoreError::CommitUnknown(format!(
                "no answer to the commit within {WRITE_TIMEOUT:?}"
            )))
        }
    }
    Ok(staged)
}

/// Locks the head, chains what may still be sent and inserts it, uncommitted.
async fn stage(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
    batch: &[Request],
) -> Result<Staged, StoreError> {
    let (size, head) = lock_head(tx, org).await?;

    let (types, ids): (Vec<&str>, Vec<&str>) = batch
        .iter()
        .map(|r| (r.stream_type.as_str(), r.stream_id.as_str()))
        .unzip();
    let current: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, max(sequence) FROM events
          WHERE (aggregate_type, aggregate_id) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))
          GROUP BY 1, 2",
    )
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await
    .map_err(before_commit)?;
    let mut positions: HashMap<(String, String), u64> = current
        .into_iter()
        .map(|(t, id, seq)| ((t, id), seq as u64))
        .collect();

    let recorded_at = Utc::now().trunc_subsecs(3);
    let recorded_text = timestamp(recorded_at);
    let mut columns = Columns::default();
    let mut outcomes = Vec::with_capacity(batch.len());
    let (mut size, mut head) = (size, head);
    for request in batch {
        if !request.claim.take(request.deadline) {
            outcomes.push(Err(too_late()));
            continue;
        }
        let key = (request.stream_type.clone(), request.stream_id.clone());
        let position = positions.get(&key).copied().unwrap_or(0);
        if request.first_seq != position + 1 {
            outcomes.push(Err(StoreError::Conflict {
                stream_id: request.stream_id.clone(),
                expected: request.first_seq - 1,
                found: position,
            }));
            continue;
        }
        let chained = match chain(org, request, size, head, &recorded_text) {
            Ok(chained) => chained,
            Err(e) => {
                outcomes.push(Err(e));
                continue;
            }
        };
        let first_ledger_seq = size + 1;
        size += chained.len() as u64;
        head = chained.last().map_or(head, |e| e.hash);
        positions.insert(key, position + chained.len() as u64);
        chained.into_iter().for_each(|e| columns.push(e));
        outcomes.push(Ok(Appended {
            org_id: org.clone(),
            first_ledger_seq,
            last_ledger_seq: size,
        }));
    }
    if columns.hash.is_empty() {
        return Ok((outcomes, None));
    }
    sqlx::query(INSERT_AND_MOVE_HEAD)
        .bind(org.as_str())
        .bind(recorded_at)
        .bind(&columns.aggregate_type)
        .bind(&columns.aggregate_id)
        .bind(&columns.sequence)
        .bind(&columns.event_type)
        .bind(&columns.event_version)
        .bind(&columns.payload)
        .bind(&columns.metadata)
        .bind(&columns.ledger_seq)
        .bind(&columns.prev_hash)
        .bind(&columns.hash)
        .bind(size as i64)
        .bind(head.to_hex())
        .execute(&mut **tx)
        .await
        .map_err(before_commit)?;
    Ok((outcomes, Some((size, head))))
}

/// Seals one request's events onto the chain after `(size, head)`.
fn chain(
    org: &OrgId,
    request: &Request,
    size: u64,
    head: EventHash,
    recorded_at: &str,
) -> Result<Vec<Envelope>, StoreError> {
    let mut prev = head;
    let mut out = Vec::with_capacity(request.events.len());
    for (i, event) in request.events.iter().enumerate() {
        let mut metadata = event.metadata.clone();
        metadata.insert("recorded_at".into(), Value::String(recorded_at.to_owned()));
        let envelope = Envelope {
            org_id: org.clone(),
            ledger_seq: size + 1 + i as u64,
            stream_type: request.stream_type.clone(),
            stream_id: request.stream_id.clone(),
            stream_seq: request.first_seq + i as u64,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            payload: event.payload.clone(),
            metadata: CanonicalJson::encode(&metadata)
                .map_err(|e| StoreError::InvalidAppend(e.to_string()))?,
            prev_hash: prev,
            hash: EventHash([0; 32]),
        }
        .seal();
        prev = envelope.hash;
        out.push(envelope);
    }
    Ok(out)
}

/// Locks the org's chain head (creating it at genesis on the org's first append).
async fn lock_head(
    tx: &mut Transaction<'_, Postgres>,
    org: &OrgId,
) -> Result<(u64, EventHash), StoreError> {
    const SELECT: &str = "SELECT size, head_hash FROM ledger_heads WHERE org_id = $1 FOR UPDATE";
    let mut row: Option<(i64, String)> = sqlx::query_as(SELECT)
        .bind(org.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(before_commit)?;
    if row.is_none() {
        sqlx::query(
            "INSERT INTO ledger_heads (org_id, size, head_hash) VALUES ($1, 0, $2)
             ON CONFLICT (org_id) DO NOTHING",
        )
        .bind(org.as_str())
        .bind(genesis_hash(org).to_hex())
        .execute(&mut **tx)
        .await
        .map_err(before_commit)?;
        row = sqlx::query_as(SELECT)
            .bind(org.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(before_commit)?;
    }
    let (size, hash) =
        row.ok_or_else(|| StoreError::Corrupt(format!("no chain head for {org}")))?;
    let hash = hash
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("chain head of {org} is not a hash")))?;
    Ok((size as u64, hash))
}

/// RFC 3339 UTC with milliseconds, the ledger's one time format: `2026-11-21T09:30:00.000Z`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

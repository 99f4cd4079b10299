//! Reading chains back: heads, events in `ledger_seq` order, and where a hash is stored; and
//! every other read of the ledger tables outside the writer and verification (the ledger
//! tail, listings of stored events, the events a read model points at, the chains a
//! checkpoint is due for), so that their SQL has one owner.

use dashclaw_events::{genesis_hash, CanonicalJson, Envelope, EnvelopeRef, EventHash, OrgId};
use futures_util::{Stream, StreamExt};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::StoreError;

/// An org's chain head as recorded by the last append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub org_id: OrgId,
    pub size: u64,
    pub head_hash: EventHash,
}

/// Every org that has a head, a checkpoint or any event, sorted (an org whose events and head
/// were all deleted is still found through its checkpoints). An org id that does not parse (a row
/// written around the store) is reported as corrupt.
pub async fn orgs(pool: &PgPool) -> Result<Vec<OrgId>, StoreError> {
    // The recursive CTE is a skip scan over the (org_id, ledger_seq) index: one probe per org
    // instead of reading every event.
    let names: Vec<(String,)> = sqlx::query_as(
        "WITH RECURSIVE o(org_id) AS (
             SELECT min(org_id) FROM events
             UNION ALL
             SELECT (SELECT min(org_id) FROM events WHERE org_id > o.org_id)
               FROM o WHERE o.org_id IS NOT NULL)
         SELECT org_id FROM o WHERE org_id IS NOT NULL
         UNION SELECT org_id FROM ledger_heads
         UNION SELECT org_id FROM checkpoints
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    names
        .into_iter()
        .map(|(name,)| {
            OrgId::new(name.clone()).map_err(|_| {
                StoreError::Corrupt(format!("events carry an invalid org id {name:?}"))
            })
        })
        .collect()
}

/// The org's head; an org with no events is at size 0, its genesis value.
pub async fn head(pool: &PgPool, org: &OrgId) -> Result<Head, StoreError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT size, head_hash FROM ledger_heads WHERE org_id = $1")
            .bind(org.as_str())
            .fetch_optional(pool)
            .await?;
    let (size, head_hash) = match row {
        None => (0, genesis_hash(org)),
        Some((size, hash)) => (
            size as u64,
            hash.parse()
                .map_err(|_| StoreError::Corrupt(format!("chain head of {org} is not a hash")))?,
        ),
    };
    Ok(Head {
        org_id: org.clone(),
        size,
        head_hash,
    })
}

/// ledger_seq, aggregate_type, sequence, aggregate_id, event_type, event_version, payload,
/// metadata, prev_hash, hash.
type EventRow = (
    i64,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

/// The org's events with `ledger_seq > after`, in `ledger_seq` order, exactly as stored.
pub fn events<'a>(
    pool: &'a PgPool,
    org: &'a OrgId,
    after: u64,
) -> impl Stream<Item = Result<Envelope, StoreError>> + Send + 'a {
    events_between(pool, org, after, u64::MAX)
}

/// The org's events with `after < ledger_seq <= upto`, in `ledger_seq` order, as stored.
pub fn events_between<'a>(
    pool: &'a PgPool,
    org: &'a OrgId,
    after: u64,
    upto: u64,
) -> impl Stream<Item = Result<Envelope, StoreError>> + Send + 'a {
    sqlx::query_as::<_, EventRow>(
        "SELECT ledger_seq, aggregate_type, sequence, aggregate_id, event_type,
                event_version, payload::text, metadata::text, prev_hash, hash
           FROM events WHERE org_id = $1 AND ledger_seq > $2 AND ledger_seq <= $3
          ORDER BY ledger_seq",
    )
    .bind(org.as_str())
    .bind(after as i64)
    .bind(upto.min(i64::MAX as u64) as i64)
    .fetch(pool)
    .map(move |row| {
        let (
            ledger_seq,
            stream_type,
            stream_seq,
            stream_id,
            event_type,
            event_version,
            payload,
            metadata,
            prev,
            hash,
        ) = row?;
        Ok(Envelope {
            // Selected by org: a row whose org_id was altered leaves this chain (and is then
            // reported missing from it).
            org_id: org.clone(),
            ledger_seq: ledger_seq as u64,
            stream_type,
            stream_id,
            stream_seq: stream_seq as u64,
            event_type,
            event_version,
            payload: CanonicalJson::from_stored(payload),
            metadata: CanonicalJson::from_stored(metadata),
            // A stored hash that is not even hex cannot match anything: all zeros says so.
            prev_hash: prev.parse().unwrap_or(EventHash([0; 32])),
            hash: hash.parse().unwrap_or(EventHash([0; 32])),
        })
    })
}

const ROWS_BETWEEN: &str = "SELECT ledger_seq, aggregate_type, sequence, aggregate_id, event_type,
        event_version, payload::text, metadata::text, prev_hash, hash
   FROM events WHERE org_id = $1 AND ledger_seq > $2 AND ledger_seq <= $3
  ORDER BY ledger_seq";

/// The org's stored rows with `after < ledger_seq <= upto`, in order, undecoded: read them
/// with [`envelope_ref`] to borrow instead of copying (verification's hot loop).
pub fn rows_between<'a>(
    pool: &'a PgPool,
    org: &'a OrgId,
    after: u64,
    upto: u64,
) -> impl Stream<Item = Result<PgRow, StoreError>> + Send + 'a {
    sqlx::query(ROWS_BETWEEN)
        .bind(org.as_str())
        .bind(after as i64)
        .bind(upto.min(i64::MAX as u64) as i64)
        .fetch(pool)
        .map(|row| row.map_err(StoreError::from))
}

/// A row of [`rows_between`] as a borrowed envelope of `org` (selected by org, so a row whose
/// `org_id` was altered leaves this chain). A stored hash that is not even hex cannot match
/// anything: all zeros says so.
///
/// The column types are fixed by [`rows_between`]'s query (two `int8`, the rest `text`), so
/// per-row type checks are skipped.
pub fn envelope_ref<'r>(org: &'r OrgId, row: &'r PgRow) -> Result<EnvelopeRef<'r>, StoreError> {
    let text = |i: usize| -> Result<&'r str, StoreError> { Ok(row.try_get_unchecked(i)?) };
    let int =
        |i: usize| -> Result<u64, StoreError> { Ok(row.try_get_unchecked::<i64, _>(i)? as u64) };
    let hash = |i: usize| -> Result<EventHash, StoreError> {
        Ok(text(i)?.parse().unwrap_or(EventHash([0; 32])))
    };
    Ok(EnvelopeRef {
        org_id: org,
        ledger_seq: int(0)?,
        stream_type: text(1)?,
        stream_seq: int(2)?,
        stream_id: text(3)?,
        event_type: text(4)?,
        event_version: text(5)?,
        payload: text(6)?,
        metadata: text(7)?,
        prev_hash: hash(8)?,
        hash: hash(9)?,
    })
}

/// At which `ledger_seq` of the org an event with this stored hash sits, if any.
pub async fn locate(
    pool: &PgPool,
    org: &OrgId,
    hash: &EventHash,
) -> Result<Option<u64>, StoreError> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT ledger_seq FROM events WHERE org_id = $1 AND hash = $2 ORDER BY ledger_seq LIMIT 1",
    )
    .bind(org.as_str())
    .bind(hash.to_hex())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(seq,)| seq as u64))
}

/// The org whose ledger holds the entity `entity` of `aggregate_type` (its stream is
/// `<org>/<entity>`), if any: how a command line that names only an id finds its org.
pub async fn org_of_entity(
    pool: &PgPool,
    aggregate_type: &str,
    entity: &str,
) -> Result<Option<OrgId>, StoreError> {
    let stream: Option<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events
          WHERE aggregate_type = $1 AND sequence = 1
            AND right(aggregate_id, length($2) + 1) = '/' || $2
          LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(entity)
    .fetch_optional(pool)
    .await?;
    Ok(stream.and_then(|s| OrgId::of_stream(&s).ok()))
}

/// Every org's chain size as its head records it, in no particular order: what the ledger
/// tail starts its cursors from and re-scans for missed notifications. A head whose org id
/// does not parse (a row written around the store) names no chain anyone can follow, so it
/// is left out with a warning rather than stop the scan of every other org; `verify`
/// reports it.
pub async fn heads(pool: &PgPool) -> Result<Vec<(OrgId, u64)>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT org_id, size FROM ledger_heads")
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(org, size)| match OrgId::new(org) {
            Ok(org) => Some((org, size as u64)),
            Err(e) => {
                tracing::warn!(error = %e, "a ledger head names an invalid org id; skipped");
                None
            }
        })
        .collect())
}

/// How many events the heads of `org` (or of every org) record: the size of what a
/// verification will walk, read from the heads alone.
pub async fn recorded_size(pool: &PgPool, org: Option<&OrgId>) -> Result<u64, StoreError> {
    let total: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(size), 0)::int8 FROM ledger_heads WHERE $1::text IS NULL OR org_id = $1",
    )
    .bind(org.map(OrgId::as_str))
    .fetch_one(pool)
    .await?;
    Ok(total.max(0) as u64)
}

/// One event as a reader of payloads needs it (the ledger tail, the guard decisions read back
/// from their events): where it sits and its payload, stored JSON text.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct EventPayload {
    pub ledger_seq: i64,
    pub aggregate_type: String,
    /// The stream id, `<org>/<entity>`.
    pub aggregate_id: String,
    /// The event's position in its stream (1 for the event that created the entity).
    pub sequence: i64,
    /// JSON text exactly as stored (`payload::text`: never cast to `jsonb`, which cannot hold
    /// a NUL an old server stored).
    pub payload: String,
}

/// Up to `limit` events of `org` with `ledger_seq > after`, in `ledger_seq` order, payloads
/// only (the ledger tail and the SSE replay render these; [`events`] has every column).
pub async fn events_after(
    pool: &PgPool,
    org: &OrgId,
    after: u64,
    limit: i64,
) -> Result<Vec<EventPayload>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT ledger_seq, aggregate_type, aggregate_id, sequence, payload::text AS payload
           FROM events WHERE org_id = $1 AND ledger_seq > $2 ORDER BY ledger_seq LIMIT $3",
    )
    .bind(org.as_str())
    .bind(after.min(i64::MAX as u64) as i64)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The events of `org` at these `ledger_seq`s, in `ledger_seq` order (a position with no
/// event is simply absent, so the caller can tell). How a read model that points at events
/// (the guard decision log) reads their payloads.
pub async fn events_at(
    pool: &PgPool,
    org: &OrgId,
    ledger_seqs: &[i64],
) -> Result<Vec<EventPayload>, StoreError> {
    if ledger_seqs.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_as(
        "SELECT ledger_seq, aggregate_type, aggregate_id, sequence, payload::text AS payload
           FROM events WHERE org_id = $1 AND ledger_seq = ANY($2) ORDER BY ledger_seq",
    )
    .bind(org.as_str())
    .bind(ledger_seqs)
    .fetch_all(pool)
    .await?)
}

/// One event with every stored column, as text where it is text: what an auditor-facing
/// listing shows (GraphQL `ledgerEvents`, an action's `history`). Unlike [`Envelope`], a
/// stored hash that is not even hex is shown as it is, and `recorded_at` is included.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredEvent {
    pub ledger_seq: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// JSON text exactly as stored.
    pub payload: String,
    /// JSON text exactly as stored.
    pub metadata: String,
    pub prev_hash: String,
    pub hash: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
}

impl StoredEvent {
    /// The event as an entry of `org`: its envelope with its hash, RFC 8785 JSON, byte for
    /// byte what a bundle and an export carry ([`EnvelopeRef::write_entry`]). A stored hash
    /// that is not even hex is written as all zeros, so the entry fails to verify.
    pub fn entry(&self, org: &OrgId) -> String {
        let hash = |text: &str| text.parse().unwrap_or(EventHash([0; 32]));
        let envelope = EnvelopeRef {
            org_id: org,
            ledger_seq: self.ledger_seq as u64,
            stream_type: &self.aggregate_type,
            stream_id: &self.aggregate_id,
            stream_seq: self.sequence as u64,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
            prev_hash: hash(&self.prev_hash),
            hash: hash(&self.hash),
        };
        let mut out = Vec::new();
        envelope.write_entry(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The columns of a [`StoredEvent`] (a macro, so that the queries stay `&'static str`).
macro_rules! stored_columns {
    () => {
        "SELECT ledger_seq, aggregate_type, aggregate_id, sequence, event_type, event_version,
                payload::text AS payload, metadata::text AS metadata, prev_hash, hash, recorded_at
           FROM events"
    };
}

/// Up to `limit` events of `org` with `ledger_seq > after`, in `ledger_seq` order, every
/// column.
pub async fn stored_events_after(
    pool: &PgPool,
    org: &OrgId,
    after: u64,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    Ok(sqlx::query_as(concat!(
        stored_columns!(),
        " WHERE org_id = $1 AND ledger_seq > $2 ORDER BY ledger_seq LIMIT $3"
    ))
    .bind(org.as_str())
    .bind(after.min(i64::MAX as u64) as i64)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Up to `limit` events of `org` of one aggregate type with `ledger_seq > after`, in
/// `ledger_seq` order, every column (how every guard decision of an org is replayed).
pub async fn stored_events_of_type_after(
    pool: &PgPool,
    org: &OrgId,
    aggregate_type: &str,
    after: u64,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    Ok(sqlx::query_as(concat!(
        stored_columns!(),
        " WHERE org_id = $1 AND aggregate_type = $2 AND ledger_seq > $3
          ORDER BY ledger_seq LIMIT $4"
    ))
    .bind(org.as_str())
    .bind(aggregate_type)
    .bind(after.min(i64::MAX as u64) as i64)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Which events an activity listing shows; `None` matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActivityFilter {
    /// Events whose metadata names this agent.
    pub agent_id: Option<String>,
    /// Events of this aggregate type (`Action`, `GuardDecision`, ...) or of this event type.
    pub kind: Option<String>,
}

/// The org's events matching `filter`, newest first, one page of them.
pub async fn activity(
    pool: &PgPool,
    org: &OrgId,
    filter: &ActivityFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    Ok(sqlx::query_as(concat!(
        stored_columns!(),
        " WHERE org_id = $1 AND ($2::text IS NULL OR metadata->>'agent_id' = $2)
            AND ($3::text IS NULL OR aggregate_type = $3 OR event_type = $3)
          ORDER BY ledger_seq DESC LIMIT $4 OFFSET $5"
    ))
    .bind(org.as_str())
    .bind(filter.agent_id.as_deref())
    .bind(filter.kind.as_deref())
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

/// Totals of [`activity`]: events matching `filter`, those recorded since `since`, and the
/// distinct actors among them.
pub async fn activity_stats(
    pool: &PgPool,
    org: &OrgId,
    filter: &ActivityFilter,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<(u64, u64, u64), StoreError> {
    let (total, today, actors): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE recorded_at >= $4),
                count(DISTINCT metadata->>'actor')
           FROM events
          WHERE org_id = $1 AND ($2::text IS NULL OR metadata->>'agent_id' = $2)
            AND ($3::text IS NULL OR aggregate_type = $3 OR event_type = $3)",
    )
    .bind(org.as_str())
    .bind(filter.agent_id.as_deref())
    .bind(filter.kind.as_deref())
    .bind(since)
    .fetch_one(pool)
    .await?;
    Ok((total as u64, today as u64, actors as u64))
}

/// Every event of the entity `entity` of `aggregate_type` in `org` (the stream
/// `<org>/<entity>`), in stream order, every column.
pub async fn stream_events(
    pool: &PgPool,
    org: &OrgId,
    aggregate_type: &str,
    entity: &str,
) -> Result<Vec<StoredEvent>, StoreError> {
    Ok(sqlx::query_as(concat!(
        stored_columns!(),
        " WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
    ))
    .bind(aggregate_type)
    .bind(org.stream_id(entity))
    .fetch_all(pool)
    .await?)
}

/// An org's chain with events no checkpoint covers yet: what the checkpoint sweep decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsignedChain {
    pub org_id: OrgId,
    /// The chain's size (its head).
    pub size: u64,
    /// The size of its latest checkpoint (0 when it has none).
    pub signed_size: u64,
    /// When the first event after that checkpoint was recorded (`None` if it is missing).
    pub oldest_unsigned_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every org whose head is past its latest checkpoint, by org id. A head whose org id does
/// not parse is left out with a warning (nothing could sign it; `verify` reports it).
pub async fn unsigned_chains(pool: &PgPool) -> Result<Vec<UnsignedChain>, StoreError> {
    type Row = (String, i64, i64, Option<chrono::DateTime<chrono::Utc>>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT h.org_id, h.size, COALESCE(c.size, 0),
                (SELECT e.recorded_at FROM events e
                  WHERE e.org_id = h.org_id AND e.ledger_seq = COALESCE(c.size, 0) + 1)
           FROM ledger_heads h
           LEFT JOIN LATERAL (SELECT max(size) AS size FROM checkpoints
                               WHERE org_id = h.org_id) c ON true
          WHERE h.size > COALESCE(c.size, 0)
          ORDER BY h.org_id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(
            |(org, size, signed_size, oldest_unsigned_at)| match OrgId::new(org) {
                Ok(org_id) => Some(UnsignedChain {
                    org_id,
                    size: size as u64,
                    signed_size: signed_size as u64,
                    oldest_unsigned_at,
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "a ledger head names an invalid org id; skipped");
                    None
                }
            },
        )
        .collect())
}

//! The cqrs-es repository: postgres-es for reads, the chain-aware [`Appender`] for writes.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use dashclaw_events::CanonicalJson;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;

use crate::append::{Appender, NewEvent};
use crate::StoreError;

/// A [`PersistedEventRepository`] whose `persist` chains events into their org's ledger.
///
/// Use it with `PersistedEventStore::new_event_store`: aggregates here are short streams, and
/// snapshots (which would be mutable state beside an immutable ledger) are not supported.
/// Aggregate ids must be org-scoped: `OrgId::stream_id(entity_id)`.
pub struct LedgerRepository {
    pool: PgPool,
    reads: PostgresEventRepository,
    appender: Appender,
}

impl LedgerRepository {
    pub fn new(pool: PgPool) -> Self {
        let appender = Appender::new(pool.clone());
        Self::with_appender(pool, appender)
    }

    /// A repository sharing `appender`'s committers (one appender per process).
    pub fn with_appender(pool: PgPool, appender: Appender) -> Self {
        Self {
            reads: PostgresEventRepository::new(pool.clone()),
            pool,
            appender,
        }
    }

    pub fn appender(&self) -> &Appender {
        &self.appender
    }
}

impl Clone for LedgerRepository {
    fn clone(&self) -> Self {
        Self::with_appender(self.pool.clone(), self.appender.clone())
    }
}

impl PersistedEventRepository for LedgerRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if snapshot_update.is_some() {
            return Err(StoreError::InvalidAppend(
                "snapshots are not supported: use PersistedEventStore::new_event_store".into(),
            )
            .into());
        }
        let Some(first) = events.first() else {
            return Ok(());
        };
        if events.iter().any(|e| e.aggregate_id != first.aggregate_id) {
            return Err(StoreError::InvalidAppend("one append, one stream".into()).into());
        }
        let new_events = events
            .iter()
            .map(|e| {
                let payload = CanonicalJson::encode(&e.payload)
                    .map_err(|err| StoreError::InvalidAppend(err.to_string()))?;
                let metadata = match &e.metadata {
                    Value::Object(map) => map.clone(),
                    other => {
                        return Err(StoreError::InvalidAppend(format!(
                            "event metadata must be a JSON object, not {other}"
                        )))
                    }
                };
                Ok(NewEvent {
                    event_type: e.event_type.clone(),
                    event_version: e.event_version.clone(),
                    payload,
                    metadata,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.appender
            .append(
                A::TYPE,
                &first.aggregate_id,
                first.sequence as u64,
                new_events,
            )
            .await?;
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
}

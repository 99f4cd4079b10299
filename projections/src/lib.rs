//! Tracking projections: fold each org's ledger, in `ledger_seq` order, into read models
//! (PostgreSQL tables), each window in one transaction with the projection's checkpoint, so a
//! crash can neither skip nor double-count an event.
//!
//! Projections only read the ledger and write their own tables; they never write events.
//! Each has its own checkpoints, so they fold (and rebuild) side by side.
//!
//! [`read`] is how everyone else reads (and, for the few tables not folded from the ledger,
//! writes) those tables: the one owner of their SQL outside the folds.

pub mod analytics;
pub mod decisions;
pub mod entities;
pub mod governance;
pub mod read;
pub mod storable;
pub mod tracker;
pub mod webhooks;

use std::sync::Arc;

use dashclaw_domain::OrgId;
use sqlx::PgPool;

pub use decisions::Decisions;
pub use governance::Governance;
pub use tracker::{catch_up_together, Event, Fold, Prepared, ProjectionError, Tracker};
pub use webhooks::Outbox;

/// Every projection of the server.
#[derive(Clone)]
pub struct Projections {
    trackers: Arc<[Tracker]>,
}

impl Projections {
    pub fn new(pool: PgPool) -> Self {
        let gate = tracker::Gate::of(&pool);
        Self {
            trackers: Arc::new([
                Tracker::new(pool.clone(), Governance).gated_by(gate.clone()),
                Tracker::new(pool, Decisions).gated_by(gate),
            ]),
        }
    }

    pub fn trackers(&self) -> &[Tracker] {
        &self.trackers
    }

    /// Folds every projection of `org` up to the ledger's head (a client that wrote and then
    /// reads calls this first, so it sees its write; the ledger tail calls it as events come).
    ///
    /// When the projections stand at the same checkpoint (the usual case), each window is read
    /// once and folded into all of them in one transaction; otherwise each catches up on its
    /// own, side by side. (`dashclaw replay` folds them side by side on purpose, for speed.)
    pub async fn catch_up(&self, org: &OrgId) -> Result<(), ProjectionError> {
        let Some(first) = self.trackers.first() else {
            return Ok(());
        };
        let types: Vec<&str> = self
            .trackers
            .iter()
            .flat_map(|t| t.fold().aggregate_types().iter().copied())
            .collect();
        loop {
            // The transaction, and preparing.
            let permits = first.gate().enter(2).await;
            let mut tx = first.pool().begin().await?;
            let mut positions = Vec::with_capacity(self.trackers.len());
            let mut head = 0;
            // Always in the same order, so that two nodes doing this never deadlock.
            for tracker in self.trackers.iter() {
                let (position, h) = tracker.lock(&mut tx, org).await?;
                positions.push(position);
                head = h;
            }
            let from = positions[0];
            if positions.iter().any(|p| *p != from) {
                tx.commit().await?;
                drop(permits);
                return futures_util::future::try_join_all(
                    self.trackers.iter().map(|t| t.catch_up(org)),
                )
                .await
                .map(drop);
            }
            if head <= from {
                tx.commit().await?;
                return Ok(());
            }
            let to = head.min(from + first.window());
            let window = tracker::Window::read(&mut tx, org, &types, from, to).await?;
            for t in self.trackers.iter() {
                let mine = window.events(t.fold().aggregate_types(), from)?;
                if !mine.is_empty() {
                    // Every earlier window is committed (we hold the checkpoints).
                    let prepared = t.fold().prepare(first.pool(), org, &mine, None).await?;
                    t.fold().write(&mut tx, org, &prepared).await?;
                }
                t.advance(&mut tx, org, to).await?;
            }
            tx.commit().await?;
            if to >= head {
                return Ok(());
            }
        }
    }

    /// Forgets every read model, so that the next catch-up rebuilds them from the first event.
    pub async fn reset(&self) -> Result<(), ProjectionError> {
        for tracker in self.trackers.iter() {
            tracker.reset().await?;
        }
        Ok(())
    }

    /// Catches every org of every projection up, side by side.
    pub async fn catch_up_all(&self) -> Result<(), ProjectionError> {
        tracker::catch_up_together(&self.trackers, &|_| {}).await
    }
}

/// An action's record right after its event number `sequence` (stream id `aggregate_id`),
/// folded from the ledger: what a change looked like when it happened (SSE frames, webhook
/// payloads).
pub async fn action_at<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    aggregate_id: &str,
    sequence: i64,
) -> Result<Option<dashclaw_domain::action::ActionRecord>, sqlx::Error> {
    use cqrs_es::Aggregate;
    let payloads: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence <= $3 ORDER BY sequence",
    )
    .bind(dashclaw_domain::action::Action::TYPE)
    .bind(aggregate_id)
    .bind(sequence)
    .fetch_all(executor)
    .await?;
    let mut action = dashclaw_domain::action::Action::default();
    for p in payloads {
        if let Ok(e) = storable::decode(&p) {
            action.apply(e);
        }
    }
    Ok(action.record)
}

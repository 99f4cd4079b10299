//! Reading the ledger itself, as an operator or auditor browses it: an org's events in
//! order, the events of one entity's stream, and the activity log (every event is an
//! activity, newest first).

use cqrs_es::Aggregate;
use dashclaw_domain::action::Action;
use dashclaw_store::chain::{self, ActivityFilter, StoredEvent};

use super::{Caller, Error, Permission, Service};

/// One page of the activity log and its totals.
#[derive(Debug, Clone)]
pub struct Activity {
    pub events: Vec<StoredEvent>,
    /// Events matching the filter.
    pub total: u64,
    /// Of those, recorded since midnight UTC.
    pub today: u64,
    /// Distinct actors (keys, the bootstrap operator, the server's sweeps) among them.
    pub unique_actors: u64,
}

impl Service {
    /// Up to `limit` events of the caller's org after `after` (a `ledger_seq`), in order.
    pub async fn ledger_events(
        &self,
        caller: &Caller,
        after: u64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, Error> {
        Ok(chain::stored_events_after(self.pool(), &caller.org, after, limit).await?)
    }

    /// The caller's org's activity log: its events matching `filter`, newest first.
    pub async fn activity(
        &self,
        caller: &Caller,
        filter: &ActivityFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Activity, Error> {
        caller.require(Permission::Read)?;
        let midnight = self
            .clock()
            .now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .ok_or_else(|| Error::internal("midnight"))?;
        let events = chain::activity(self.pool(), &caller.org, filter, limit, offset).await?;
        let (total, today, unique_actors) =
            chain::activity_stats(self.pool(), &caller.org, filter, midnight).await?;
        Ok(Activity {
            events,
            total,
            today,
            unique_actors,
        })
    }

    /// Every event of the caller's org's action `action_id`, in order.
    pub async fn action_history(
        &self,
        caller: &Caller,
        action_id: &str,
    ) -> Result<Vec<StoredEvent>, Error> {
        Ok(chain::stream_events(self.pool(), &caller.org, Action::TYPE, action_id).await?)
    }
}

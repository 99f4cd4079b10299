//! Reading the ledger itself, as an operator or auditor browses it: an org's events in
//! order, and the events of one entity's stream.

use cqrs_es::Aggregate;
use dashclaw_domain::action::Action;
use dashclaw_store::chain::{self, StoredEvent};

use super::{Caller, Error, Service};

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

    /// Every event of the caller's org's action `action_id`, in order.
    pub async fn action_history(
        &self,
        caller: &Caller,
        action_id: &str,
    ) -> Result<Vec<StoredEvent>, Error> {
        Ok(chain::stream_events(self.pool(), &caller.org, Action::TYPE, action_id).await?)
    }
}

//! The sweeps' effects on this server: commands on the Action aggregate through the same
//! [`Aggregates`] as the REST handlers (so a sweep racing an agent's report is settled by the
//! aggregate), tree-head signing with the server's key, each org's overrides, and posture
//! snapshots computed by the same [`Service`] operation the REST handler's score comes from.

use chrono::{DateTime, Utc};
use dashclaw_domain::action::{Action, ActionCommand};
use dashclaw_domain::ids::ActionId;
use dashclaw_domain::org_settings::{OrgSettings, SweepOverrides, ORG_SETTINGS_ID};
use dashclaw_domain::OrgId;
use dashclaw_sweeps::{Effects, SweepError};
use futures_util::future::BoxFuture;

use super::aggregates::{Actor, Aggregates, CommandError};
use super::Service;

/// The principal recorded on a sweep's events.
pub const SWEEPER: &str = "system:sweeper";

/// [`Effects`] on this server's ledger and read models.
pub struct LedgerEffects {
    // The whole service, not just its aggregates and pool: a posture snapshot needs the
    // projections caught up, the org's policy view and the clock, exactly as the score of
    // `GET /api/posture` does, so both come from one operation.
    service: Service,
}

impl LedgerEffects {
    /// The effects of `service`'s sweeps (signing with its key).
    pub fn new(service: Service) -> Self {
        Self { service }
    }

    fn aggregates(&self) -> &Aggregates {
        self.service.aggregates()
    }

    async fn command(
        &self,
        org: &OrgId,
        action: &ActionId,
        command: ActionCommand,
    ) -> Result<bool, SweepError> {
        match self
            .aggregates()
            .execute::<Action>(org, action.as_str(), command, &Actor::of(SWEEPER, None))
            .await
        {
            Ok(_) => Ok(true),
            // The agent (or another node) settled the action first.
            Err(CommandError::Rejected(_)) => Ok(false),
            Err(CommandError::Failed(e)) => Err(SweepError(e.error)),
        }
    }
}

impl Effects for LedgerEffects {
    fn overrides<'a>(
        &'a self,
        org: &'a OrgId,
    ) -> BoxFuture<'a, Result<SweepOverrides, SweepError>> {
        Box::pin(async move {
            let settings: OrgSettings = self
                .aggregates()
                .load(org, ORG_SETTINGS_ID)
                .await
                .map_err(|e| SweepError(e.error))?;
            Ok(settings.sweeps)
        })
    }

    fn mark_confirmation_lost<'a>(
        &'a self,
        org: &'a OrgId,
        action: &'a ActionId,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, SweepError>> {
        Box::pin(self.command(org, action, ActionCommand::MarkConfirmationLost { now }))
    }

    fn expire_approval<'a>(
        &'a self,
        org: &'a OrgId,
        action: &'a ActionId,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<bool, SweepError>> {
        Box::pin(self.command(org, action, ActionCommand::Expire { now }))
    }

    fn sign_checkpoint<'a>(&'a self, org: &'a OrgId) -> BoxFuture<'a, Result<bool, SweepError>> {
        Box::pin(async move {
            self.service
                .sign_tree_head(org)
                .await
                .map(|signed| signed.is_some())
                .map_err(|e| SweepError(e.error))
        })
    }

    fn expire_plans<'a>(&'a self, org: &'a OrgId) -> BoxFuture<'a, Result<usize, SweepError>> {
        Box::pin(async move {
            self.service
                .expire_plans(org)
                .await
                .map_err(|e| SweepError(e.error))
        })
    }

    fn record_posture<'a>(&'a self, org: &'a OrgId) -> BoxFuture<'a, Result<bool, SweepError>> {
        Box::pin(async move {
            self.service
                .record_posture_snapshot(org)
                .await
                .map(|_| true)
                .map_err(|e| SweepError(e.error))
        })
    }
}

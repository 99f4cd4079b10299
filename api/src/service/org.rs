//! Org-wide settings: the halt switch (every guard call blocks while an org is halted) and
//! the org's overrides of the sweeps' timeouts. Every change is an `OrgSettings` event; every
//! node applies it when its ledger tail sees it, this one at once.

use dashclaw_domain::org_settings::{
    HaltState, OrgSettings, OrgSettingsCommand, OrgSettingsError, SweepOverrides, ORG_SETTINGS_ID,
};
use dashclaw_domain::OrgId;
use dashclaw_sweeps::settings::OrgSweeps;

use super::aggregates::{Actor, CommandError};
use super::{Caller, Error, ErrorCode, Service};

/// The longest halt reason.
pub const HALT_REASON_MAX: usize = 1000;

/// An org's sweep settings: its overrides and what is in effect.
#[derive(Clone, Debug)]
pub struct SweepSettings {
    pub overrides: SweepOverrides,
    pub effective: OrgSweeps,
    /// How often every sweep runs (server-wide).
    pub cadence: std::time::Duration,
}

impl Service {
    /// The org's halt, if it has ever been set (admin).
    pub async fn halt(&self, caller: &Caller) -> Result<Option<HaltState>, Error> {
        caller.require_admin("Admin access required")?;
        let settings: OrgSettings = self.aggregates().load(&caller.org, ORG_SETTINGS_ID).await?;
        Ok(settings.halt)
    }

    /// Halts or resumes the caller's org (admin).
    pub async fn set_halt(
        &self,
        caller: &Caller,
        halted: bool,
        reason: Option<String>,
    ) -> Result<Option<HaltState>, Error> {
        caller.require_admin("Admin access required")?;
        if reason
            .as_deref()
            .is_some_and(|r| r.chars().count() > HALT_REASON_MAX)
        {
            return Err(Error::validation(vec![format!(
                "reason exceeds max length of {HALT_REASON_MAX}"
            )]));
        }
        let command = OrgSettingsCommand::SetHalt {
            halted,
            actor: caller.principal.clone(),
            reason,
            now: self.clock().now(),
        };
        Ok(self
            .change_settings(caller, &caller.org, command)
            .await?
            .halt)
    }

    /// The org's sweep overrides and the settings in effect (admin).
    pub async fn sweep_settings(&self, caller: &Caller) -> Result<SweepSettings, Error> {
        caller.require_admin("Admin access required")?;
        let settings: OrgSettings = self.aggregates().load(&caller.org, ORG_SETTINGS_ID).await?;
        Ok(self.sweep_settings_of(settings.sweeps))
    }

    /// Replaces the org's sweep overrides (admin); an absent one falls back to the server's.
    pub async fn set_sweep_overrides(
        &self,
        caller: &Caller,
        overrides: SweepOverrides,
    ) -> Result<SweepSettings, Error> {
        caller.require_admin("Admin access required")?;
        let command = OrgSettingsCommand::SetSweeps {
            overrides,
            actor: caller.principal.clone(),
            now: self.clock().now(),
        };
        let settings = self.change_settings(caller, &caller.org, command).await?;
        Ok(self.sweep_settings_of(settings.sweeps))
    }

    fn sweep_settings_of(&self, overrides: SweepOverrides) -> SweepSettings {
        let server = &self.config().sweeps;
        SweepSettings {
            effective: server.for_org(&overrides),
            cadence: server.cadence,
            overrides,
        }
    }

    /// Runs `command` on `org`'s settings as `caller` (the org of a new org is not the
    /// caller's).
    pub(super) async fn change_settings(
        &self,
        caller: &Caller,
        org: &OrgId,
        command: OrgSettingsCommand,
    ) -> Result<OrgSettings, Error> {
        let actor = Actor::of(&caller.principal, None);
        let result = self
            .aggregates()
            .execute::<OrgSettings>(org, ORG_SETTINGS_ID, command, &actor)
            .await;
        self.tail().views().invalidate(org);
        match result {
            Ok(settings) => Ok(settings),
            Err(CommandError::Failed(e)) => Err(e),
            Err(CommandError::Rejected(e @ OrgSettingsError::AlreadyExists)) => {
                Err(Error::new(ErrorCode::Conflict, e.to_string()))
            }
        }
    }
}

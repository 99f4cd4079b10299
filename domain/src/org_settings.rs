//! The OrgSettings aggregate: per-org settings: the org's profile (name and slug, recorded
//! when the org is created), the halt (kill switch) and the timeouts and cadences of the
//! sweeps (overriding the server's defaults).

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// The entity id of an org's settings stream.
pub const ORG_SETTINGS_ID: &str = "settings";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaltState {
    pub halted: bool,
    pub actor: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// Per-org overrides of the sweeps' settings, in seconds / events (absent: server default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepOverrides {
    /// Running actions without an outcome after this long are reconciled as lost.
    pub lost_confirmation_timeout_secs: Option<u64>,
    /// Added to an approval's wait before it expires.
    pub approval_grace_secs: Option<u64>,
    /// Sign a checkpoint once this many events are unsigned...
    pub checkpoint_every_events: Option<u64>,
    /// ...or once the newest unsigned event is this old.
    pub checkpoint_interval_secs: Option<u64>,
}

/// An org's name and slug. Orgs that existed before profiles (the default org) have none
/// until an admin names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgProfile {
    pub name: String,
    pub slug: String,
    /// Who created or last renamed the org.
    pub changed_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrgSettings {
    #[serde(default)]
    pub profile: Option<OrgProfile>,
    /// The last halt change, if any (`halted: false` after a resume).
    pub halt: Option<HaltState>,
    #[serde(default)]
    pub sweeps: SweepOverrides,
}

impl OrgSettings {
    pub fn halted(&self) -> Option<&HaltState> {
        self.halt.as_ref().filter(|h| h.halted)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum OrgSettingsCommand {
    SetHalt {
        halted: bool,
        actor: String,
        reason: Option<String>,
        now: DateTime<Utc>,
    },
    SetSweeps {
        overrides: SweepOverrides,
        actor: String,
        now: DateTime<Utc>,
    },
    /// Records a new org's profile: refused if the org already has one.
    Create {
        name: String,
        slug: String,
        actor: String,
        now: DateTime<Utc>,
    },
    /// Renames the org (giving a profile to an org that had none, its slug its id).
    Rename {
        name: String,
        slug_if_new: String,
        actor: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrgSettingsEvent {
    ProfileChanged(OrgProfile),
    HaltChanged(HaltState),
    SweepsChanged {
        overrides: SweepOverrides,
        actor: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for OrgSettingsEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ProfileChanged(_) => "OrgProfileChanged",
            Self::HaltChanged(_) => "OrgHaltChanged",
            Self::SweepsChanged { .. } => "OrgSweepsChanged",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgSettingsError {
    /// 409: an org with this id (from its slug) exists.
    #[error("An organization with that slug already exists")]
    AlreadyExists,
}

impl Aggregate for OrgSettings {
    const TYPE: &'static str = "OrgSettings";
    type Command = OrgSettingsCommand;
    type Event = OrgSettingsEvent;
    type Error = OrgSettingsError;
    type Services = ();

    async fn handle(
        &mut self,
        command: OrgSettingsCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), OrgSettingsError> {
        let event = match command {
            OrgSettingsCommand::SetHalt {
                halted,
                actor,
                reason,
                now,
            } => OrgSettingsEvent::HaltChanged(HaltState {
                halted,
                actor,
                reason,
                at: now,
            }),
            OrgSettingsCommand::SetSweeps {
                overrides,
                actor,
                now,
            } => OrgSettingsEvent::SweepsChanged {
                overrides,
                actor,
                at: now,
            },
            OrgSettingsCommand::Create {
                name,
                slug,
                actor,
                now,
            } => {
                if self.profile.is_some() {
                    return Err(OrgSettingsError::AlreadyExists);
                }
                OrgSettingsEvent::ProfileChanged(OrgProfile {
                    name,
                    slug,
                    changed_by: actor,
                    created_at: now,
                    updated_at: now,
                })
            }
            OrgSettingsCommand::Rename {
                name,
                slug_if_new,
                actor,
                now,
            } => OrgSettingsEvent::ProfileChanged(match &self.profile {
                Some(p) => OrgProfile {
                    name,
                    changed_by: actor,
                    updated_at: now,
                    ..p.clone()
                },
                None => OrgProfile {
                    name,
                    slug: slug_if_new,
                    changed_by: actor,
                    created_at: now,
                    updated_at: now,
                },
            }),
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: OrgSettingsEvent) {
        match event {
            OrgSettingsEvent::ProfileChanged(profile) => self.profile = Some(profile),
            OrgSettingsEvent::HaltChanged(state) => self.halt = Some(state),
            OrgSettingsEvent::SweepsChanged { overrides, .. } => self.sweeps = overrides,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;

    #[test]
    fn halt_and_resume() {
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap();
        let halted = HaltState {
            halted: true,
            actor: "operator".into(),
            reason: Some("incident".into()),
            at,
        };
        TestFramework::<OrgSettings>::with(())
            .given_no_previous_events()
            .when(OrgSettingsCommand::SetHalt {
                halted: true,
                actor: "operator".into(),
                reason: Some("incident".into()),
                now: at,
            })
            .then_expect_events(vec![OrgSettingsEvent::HaltChanged(halted.clone())]);
        let mut settings = OrgSettings::default();
        settings.apply(OrgSettingsEvent::HaltChanged(halted));
        assert!(settings.halted().is_some());
        settings.apply(OrgSettingsEvent::HaltChanged(HaltState {
            halted: false,
            actor: "operator".into(),
            reason: None,
            at,
        }));
        assert!(settings.halted().is_none());
    }

    #[test]
    fn an_org_is_created_once_and_renamed_keeping_its_slug() {
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 0).unwrap();
        let created = OrgSettingsEvent::ProfileChanged(OrgProfile {
            name: "Acme".into(),
            slug: "acme".into(),
            changed_by: "operator".into(),
            created_at: at,
            updated_at: at,
        });
        TestFramework::<OrgSettings>::with(())
            .given_no_previous_events()
            .when(OrgSettingsCommand::Create {
                name: "Acme".into(),
                slug: "acme".into(),
                actor: "operator".into(),
                now: at,
            })
            .then_expect_events(vec![created.clone()]);
        TestFramework::<OrgSettings>::with(())
            .given(vec![created.clone()])
            .when(OrgSettingsCommand::Create {
                name: "Acme again".into(),
                slug: "acme".into(),
                actor: "operator".into(),
                now: at,
            })
            .then_expect_error(OrgSettingsError::AlreadyExists);
        let later = at + chrono::Duration::hours(1);
        TestFramework::<OrgSettings>::with(())
            .given(vec![created])
            .when(OrgSettingsCommand::Rename {
                name: "Acme Corp".into(),
                slug_if_new: "ignored".into(),
                actor: "key_admin".into(),
                now: later,
            })
            .then_expect_events(vec![OrgSettingsEvent::ProfileChanged(OrgProfile {
                name: "Acme Corp".into(),
                slug: "acme".into(),
                changed_by: "key_admin".into(),
                created_at: at,
                updated_at: later,
            })]);
    }

    #[test]
    fn renaming_an_org_without_a_profile_gives_it_one() {
        let at = Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 0).unwrap();
        TestFramework::<OrgSettings>::with(())
            .given_no_previous_events()
            .when(OrgSettingsCommand::Rename {
                name: "Default".into(),
                slug_if_new: "org_default".into(),
                actor: "key_admin".into(),
                now: at,
            })
            .then_expect_events(vec![OrgSettingsEvent::ProfileChanged(OrgProfile {
                name: "Default".into(),
                slug: "org_default".into(),
                changed_by: "key_admin".into(),
                created_at: at,
                updated_at: at,
            })]);
    }
}

//! The sweeps' timeouts and cadences: server defaults from the environment (human-readable
//! durations such as `15m` or `500ms`), overridden per org by its settings.

use std::time::Duration;

use dashclaw_domain::org_settings::SweepOverrides;

/// Server-wide defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How often each sweep runs (and a follower tries to become its leader).
    pub cadence: Duration,
    /// Running actions without an outcome after this long are reconciled as lost.
    pub lost_confirmation_timeout: Duration,
    /// Added to an approval's declared wait before it expires.
    pub approval_grace: Duration,
    /// Sign a checkpoint (a tree head) once this many events of an org are unsigned...
    pub checkpoint_every_events: u64,
    /// ...or once its oldest unsigned event has waited this long for a signature. The
    /// checkpoint sweep runs four times as often as this (or as the cadence, if more often),
    /// so a head is signed within about this long of any change of the chain.
    pub checkpoint_interval: Duration,
    /// An org's posture snapshot of the day is recomputed once it is this old (the first of
    /// a day is always taken). Server-wide: orgs do not override it.
    pub posture_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cadence: Duration::from_secs(5),
            lost_confirmation_timeout: Duration::from_secs(15 * 60),
            approval_grace: Duration::from_secs(15 * 60),
            checkpoint_every_events: 10_000,
            checkpoint_interval: Duration::from_secs(1),
            posture_interval: Duration::from_secs(60 * 60),
        }
    }
}

/// A setting that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?}: {reason}")]
pub struct BadSetting {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

impl Settings {
    /// How often the sweep `name` runs: the cadence, and for `checkpoints` a quarter of the
    /// checkpoint interval when that is shorter (at least every 50 ms).
    pub fn period(&self, name: &str) -> Duration {
        match name {
            "checkpoints" => self
                .cadence
                .min(self.checkpoint_interval / 4)
                .max(Duration::from_millis(50)),
            _ => self.cadence,
        }
    }

    /// The defaults, changed by `DASHCLAW_SWEEP_CADENCE`, `DASHCLAW_LOST_CONFIRMATION_TIMEOUT`,
    /// `DASHCLAW_APPROVAL_GRACE`, `DASHCLAW_CHECKPOINT_EVERY_EVENTS`,
    /// `DASHCLAW_CHECKPOINT_INTERVAL` and `DASHCLAW_POSTURE_INTERVAL` when set.
    pub fn from_env() -> Result<Self, BadSetting> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any source of variables (tests).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, BadSetting> {
        let mut s = Self::default();
        let duration = |name: &'static str, into: &mut Duration| -> Result<(), BadSetting> {
            if let Some(value) = var(name) {
                *into = parse_duration(&value).map_err(|reason| BadSetting {
                    name,
                    value,
                    reason,
                })?;
            }
            Ok(())
        };
        duration("DASHCLAW_SWEEP_CADENCE", &mut s.cadence)?;
        duration(
            "DASHCLAW_LOST_CONFIRMATION_TIMEOUT",
            &mut s.lost_confirmation_timeout,
        )?;
        duration("DASHCLAW_APPROVAL_GRACE", &mut s.approval_grace)?;
        duration("DASHCLAW_CHECKPOINT_INTERVAL", &mut s.checkpoint_interval)?;
        duration("DASHCLAW_POSTURE_INTERVAL", &mut s.posture_interval)?;
        if let Some(value) = var("DASHCLAW_CHECKPOINT_EVERY_EVENTS") {
            s.checkpoint_every_events = match value.trim().parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(BadSetting {
                        name: "DASHCLAW_CHECKPOINT_EVERY_EVENTS",
                        value,
                        reason: "expected a positive number of events".into(),
                    })
                }
            };
        }
        if s.cadence.is_zero() {
            return Err(BadSetting {
                name: "DASHCLAW_SWEEP_CADENCE",
                value: "0".into(),
                reason: "must be longer than zero".into(),
            });
        }
        Ok(s)
    }

    /// The settings of an org: its overrides over these defaults.
    pub fn for_org(&self, o: &SweepOverrides) -> OrgSweeps {
        let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
        OrgSweeps {
            lost_confirmation_timeout: secs(
                o.lost_confirmation_timeout_secs,
                self.lost_confirmation_timeout,
            ),
            approval_grace: secs(o.approval_grace_secs, self.approval_grace),
            checkpoint_every_events: o
                .checkpoint_every_events
                .unwrap_or(self.checkpoint_every_events),
            checkpoint_interval: secs(o.checkpoint_interval_secs, self.checkpoint_interval),
        }
    }
}

/// One org's effective settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgSweeps {
    pub lost_confirmation_timeout: Duration,
    pub approval_grace: Duration,
    pub checkpoint_every_events: u64,
    pub checkpoint_interval: Duration,
}

/// Parses a human-readable duration (`15m`, `1h 30m`, `500ms`, `2s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{e} (expected a duration such as \"15m\", \"90s\" or \"500ms\")"))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Settings, BadSetting> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_and_environment() {
        assert_eq!(from(&[]).unwrap(), Settings::default());
        let s = from(&[
            ("DASHCLAW_SWEEP_CADENCE", "200ms"),
            ("DASHCLAW_LOST_CONFIRMATION_TIMEOUT", "1h 30m"),
            ("DASHCLAW_CHECKPOINT_EVERY_EVENTS", "50"),
            ("DASHCLAW_POSTURE_INTERVAL", "30m"),
        ])
        .unwrap();
        assert_eq!(s.cadence, Duration::from_millis(200));
        assert_eq!(s.lost_confirmation_timeout, Duration::from_secs(5400));
        assert_eq!(s.checkpoint_every_events, 50);
        assert_eq!(s.posture_interval, Duration::from_secs(1800));
        assert_eq!(
            Settings::default().posture_interval,
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = from(&[("DASHCLAW_APPROVAL_GRACE", "soon")]).unwrap_err();
        assert_eq!(e.name, "DASHCLAW_APPROVAL_GRACE");
        assert!(e.to_string().contains("15m"), "{e}");
        assert!(from(&[("DASHCLAW_CHECKPOINT_EVERY_EVENTS", "0")]).is_err());
        assert!(from(&[("DASHCLAW_SWEEP_CADENCE", "0s")]).is_err());
        let e = from(&[("DASHCLAW_POSTURE_INTERVAL", "hourly")]).unwrap_err();
        assert_eq!(e.name, "DASHCLAW_POSTURE_INTERVAL");
    }

    #[test]
    fn org_overrides_win() {
        let s = Settings::default();
        let o = SweepOverrides {
            lost_confirmation_timeout_secs: Some(60),
            ..Default::default()
        };
        let org = s.for_org(&o);
        assert_eq!(org.lost_confirmation_timeout, Duration::from_secs(60));
        assert_eq!(org.approval_grace, s.approval_grace);
    }
}

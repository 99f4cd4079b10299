//! Org settings bodies: the sweeps' per-org overrides (`PUT /api/settings/sweeps`).

use dashclaw_domain::org_settings::SweepOverrides;
use dashclaw_sweeps::settings::parse_duration;
use serde_json::{Map, Value};

use crate::service::Error;

/// The overrides: human-readable durations from 1 s to 30 days, an event count from 1 to a
/// million; null or absent is the server's setting; unknown fields are refused.
pub fn sweep_overrides(body: &Map<String, Value>) -> Result<SweepOverrides, Error> {
    let mut errors = Vec::new();
    let mut duration = |name: &str| -> Option<u64> {
        match body.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => match parse_duration(text) {
                Ok(d) if d.as_secs() >= 1 && d.as_secs() <= 30 * 86_400 => Some(d.as_secs()),
                Ok(_) => {
                    errors.push(format!("{name} must be between 1s and 30 days"));
                    None
                }
                Err(e) => {
                    errors.push(format!("{name}: {e}"));
                    None
                }
            },
            Some(_) => {
                errors.push(format!("{name} must be a duration string such as \"15m\""));
                None
            }
        }
    };
    let overrides = SweepOverrides {
        lost_confirmation_timeout_secs: duration("lost_confirmation_timeout"),
        approval_grace_secs: duration("approval_grace"),
        checkpoint_interval_secs: duration("checkpoint_interval"),
        checkpoint_every_events: None,
    };
    let every = match body.get("checkpoint_every_events") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=1_000_000).contains(&n) => Some(n),
            _ => {
                errors.push("checkpoint_every_events must be an integer from 1 to 1000000".into());
                None
            }
        },
    };
    const KNOWN: [&str; 4] = [
        "lost_confirmation_timeout",
        "approval_grace",
        "checkpoint_every_events",
        "checkpoint_interval",
    ];
    for key in body.keys().filter(|k| !KNOWN.contains(&k.as_str())) {
        errors.push(format!("unknown field {key} (known: {})", KNOWN.join(", ")));
    }
    if !errors.is_empty() {
        return Err(Error::validation(errors));
    }
    Ok(SweepOverrides {
        checkpoint_every_events: every,
        ..overrides
    })
}

//! The HTTP routes, one module per resource, each with its own `router()`.

pub mod actions;
pub mod activity;
pub mod analytics;
pub mod assumptions;
pub mod auth;

pub mod compliance;
pub mod evidence;
pub mod guard;
pub mod health;
pub mod identities;
pub mod integrity;
pub mod jwks;
pub mod keys;
pub mod org;
pub mod orgs;
pub mod plans;
pub mod policies;
pub mod policy_packs;
pub mod policy_tools;
pub mod posture;
pub mod requests;
pub mod sessions;
pub mod stream;
pub mod webhooks;

use crate::service::Error;

/// A numeric query parameter: absent -> `default`; not a number -> 400; else clamped.
pub fn clamp_param(
    raw: Option<&str>,
    default: i64,
    min: i64,
    max: i64,
    name: &str,
) -> Result<i64, Error> {
    match raw {
        None | Some("") => Ok(default),
        Some(s) => s
            .parse::<i64>()
            .map(|n| n.clamp(min, max))
            .map_err(|_| Error::validation(vec![format!("{name} must be an integer")])),
    }
}

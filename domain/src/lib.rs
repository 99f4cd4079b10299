//! The governance domain: aggregates (cqrs-es) and pure guard/policy evaluation.
//!
//! This crate is pure: no tokio, no sqlx, no axum, no async-graphql (a test reads the
//! `Cargo.toml`s to keep it so). Commands carry the time they happen at; ids are minted by
//! the caller from randomness it supplies. Every aggregate's stream id is org-scoped
//! (`OrgId::stream_id`).

pub mod action;
pub mod api_key;
pub mod assumption;
#[cfg(test)]
mod golden_events;
pub mod guard;
pub mod guard_decision;
pub mod identity;
pub mod ids;
pub mod org_settings;
pub mod plan;
pub mod policy_set;
pub mod posture;
pub mod pricing;
pub mod session;
pub mod webhook;

pub use dashclaw_events::OrgId;

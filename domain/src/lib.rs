//! The governance domain: aggregates (cqrs-es) and pure guard/policy evaluation.
//!
//! This crate is pure: no tokio, no sqlx, no axum, no async-graphql (a test reads the
//! `Cargo.toml`s to keep it so). Its aggregates (GuardDecision, Action, Assumption, PolicySet,
//! WorkOrder, org settings, API keys) arrive with the governance-loop work; today it only
//! re-exports the ledger identifiers every aggregate is scoped by.

pub use dashclaw_events::OrgId;

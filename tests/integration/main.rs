//! The one integration-test binary: real PostgreSQL (a fresh database per test via
//! `#[sqlx::test]`), the real `dashclaw` binary, no mocks. Run by `tests/run`.

// Test helpers may panic on failure: a panic is how a test fails.
#![allow(clippy::unwrap_used)]

mod action_routes;
mod activity;
mod api;
mod architecture;
mod bad_input;
mod bundles;
mod delegation;
mod evidence;
mod exports;
mod governance;
mod graphql;
mod hardening;
mod identities;
mod ledger;
mod nodes;
mod openapi;
mod operator;
mod orgs;
mod parity;
mod plans;
mod policy_packs;
mod projections;
mod read_models;
mod server;
mod sessions;
mod support;
mod sweeps;
mod tamper;
mod webhooks;

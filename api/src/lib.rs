//! The composition root: the `dashclaw` CLI, configuration, start-up, and the HTTP edge.
//!
//! Everything that touches the outside world is wired here; the ledger itself lives in
//! `dashclaw-store` and the pure formats in `dashclaw-events`.

pub mod auth;
pub mod bench;
pub mod bench_guard;
pub mod bench_replay;
pub mod cli;
pub mod commands;
pub mod database;
pub mod error;
pub mod extract;
pub mod governance;
pub mod graphql;
pub mod http_client;
pub mod live;
pub mod local_pg;
pub mod operator;
pub mod routes;
pub mod server;
pub mod sweeping;
pub mod validate;
pub mod webhooks;
pub mod wire;

//! The composition root: the application layer (`service`), the adapters in front of it
//! (REST, GraphQL, the CLI), the shared wire shapes and input rules, configuration and
//! start-up.
//!
//! The ledger itself lives in `dashclaw-store`, the rules in `dashclaw-domain`, the read
//! models in `dashclaw-projections` and the pure formats in `dashclaw-events`.

pub mod bench;
pub mod cli;
pub mod extract;
pub mod graphql;
pub mod http_error;
pub mod input;
pub mod openapi;
pub mod provision;
pub mod rest;
pub mod server;
pub mod service;
pub mod state;
pub mod wire;

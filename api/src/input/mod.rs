//! Turning what a client sent into the application's typed requests, with DashClaw's rules
//! and messages: JSON bodies (REST, and MCP's tool arguments), field by field. Type errors
//! are found here; limits on values are the application's (`service`), called from here too
//! so that one answer lists every problem.

pub mod actions;
pub mod fields;
pub mod guard;
pub mod org;
pub mod policies;

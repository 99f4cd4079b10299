//! The one integration-test binary: real PostgreSQL (a fresh database per test via
//! `#[sqlx::test]`), the real `dashclaw` binary, no mocks. Run by `tests/run`.

mod architecture;
mod ledger;
mod server;
mod support;
mod tamper;

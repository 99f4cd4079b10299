//! Tracking projections: fold each org's ledger, in `ledger_seq` order, into read models
//! (decisions ledger, approvals queue, posture, analytics), each with its own checkpoint.
//!
//! Empty until the projections work lands; the crate exists so the dependency direction
//! (`api -> projections -> domain -> events`) is fixed and tested from the start.

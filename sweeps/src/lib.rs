//! Background sweeps (lost confirmation, approval expiry, work-order leases, checkpoint
//! signing), each a pure decision function plus a loop that acts only by sending commands.
//!
//! Empty until the sweeps work lands; today checkpoints are signed on demand by
//! `dashclaw checkpoint` and by the server's periodic signer in `api`.

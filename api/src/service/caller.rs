//! Who is calling, and what they may do. Decided here once for every transport: readonly
//! keys run no mutating operation, admin operations need an admin key.

pub use dashclaw_domain::api_key::Role;
use dashclaw_domain::OrgId;

use super::Error;

/// The principal of the bootstrap key (exempt from separation of duties).
pub use dashclaw_domain::action::OPERATOR;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub org: OrgId,
    pub role: Role,
    /// `operator` for the bootstrap key, else `key_<id>`: who recorded or approved something.
    pub principal: String,
}

/// What an operation needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Reads: every key.
    Read,
    /// Changes the ledger: member and admin keys.
    Write,
    /// Governs the org (approvals, policies, halts, keys, webhooks): admin keys.
    Admin,
}

impl Caller {
    /// `Ok` when the caller's role grants `permission`; otherwise 403 with the message every
    /// transport shows for it.
    pub fn require(&self, permission: Permission) -> Result<(), Error> {
        match (permission, self.role) {
            (Permission::Read, _) | (Permission::Write, Role::Admin | Role::Member) => Ok(()),
            (Permission::Admin, Role::Admin) => Ok(()),
            (Permission::Write, Role::Readonly) => {
                Err(Error::forbidden("Forbidden - readonly API key"))
            }
            (Permission::Admin, _) => Err(Error::forbidden("Forbidden - admin API key required")),
        }
    }

    /// Like [`Self::require`] for [`Permission::Admin`], refusing with the operation's own
    /// message (DashClaw's wording differs per route).
    pub fn require_admin(&self, message: &str) -> Result<(), Error> {
        self.require(Permission::Write)?;
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(Error::forbidden(message))
        }
    }
}

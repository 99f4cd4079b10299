//! Typed access to the read models for the application layer: one function per question a
//! caller asks, each the only SQL for it, so that every read-model table has its SQL here
//! (or in the projection that folds it) and nowhere else.
//!
//! Rows come back typed: documents are decoded with [`crate::storable::decode`], and a row
//! that does not decode is an error ([`ProjectionError::UnreadableRow`]), never left out of
//! the answer. Nothing here catches up: callers that need to see their own writes call
//! `Projections::catch_up` first, as before.
//!
//! A few functions write: the tables that are not folded from the ledger (webhook secrets,
//! the delivery bookkeeping of the outbox, posture snapshots) have their one owner here too.
//!
//! One file per table family: [`actions`], [`assumptions`], [`decisions`], [`signals`],
//! [`analytics`], [`posture`], [`webhooks`], [`keys`], [`entities`] (the smaller aggregates),
//! [`sessions`].

pub mod actions;
pub mod analytics;
pub mod assumptions;
pub mod decisions;
pub mod entities;
pub mod keys;
pub mod posture;
pub mod sessions;
pub mod signals;
pub mod webhooks;

use dashclaw_domain::OrgId;
use serde::de::DeserializeOwned;

use crate::ProjectionError;

/// A page of a list: at most `limit` rows, after skipping `offset` (both as the caller
/// validated them; they are passed to SQL as they are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    /// The first `limit` rows.
    pub fn first(limit: i64) -> Self {
        Self { limit, offset: 0 }
    }
}

/// Decodes the stored document of the `table` row keyed `key` (a NUL an old server stored
/// replaced, as everywhere), or says which row could not be read.
pub(crate) fn decode_row<T: DeserializeOwned>(
    table: &'static str,
    org: &str,
    key: &str,
    doc: &str,
) -> Result<T, ProjectionError> {
    crate::storable::decode(doc).map_err(|e| unreadable(table, org, key, e))
}

/// The error for the `table` row keyed `key` of `org` that cannot be read.
pub(crate) fn unreadable(
    table: &'static str,
    org: &str,
    key: &str,
    detail: impl std::fmt::Display,
) -> ProjectionError {
    ProjectionError::UnreadableRow {
        table,
        org: org.to_owned(),
        key: key.to_owned(),
        detail: detail.to_string(),
    }
}

/// An org id read back from a row (written from an [`OrgId`], so one that does not parse
/// was written around the projection).
pub(crate) fn org_of_row(
    table: &'static str,
    org: String,
    key: &str,
) -> Result<OrgId, ProjectionError> {
    OrgId::new(org.clone()).map_err(|e| unreadable(table, &org, key, e))
}

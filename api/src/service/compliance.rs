//! Compliance export (`docs/evidence-format.md`, `docs/compliance.md`): a contiguous range of
//! an org's chain streamed as JSON Lines (each line the exact entry of one event), then a
//! signed manifest with the counts, a tree head covering the range and the last event's
//! inclusion proof, and a consistency proof from the org's previous export. Memory stays
//! constant whatever the range: rows are streamed and written in chunks.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dashclaw_events::bundle::BundleSignature;
use dashclaw_events::export::{Manifest, PreviousExport, EXPORT_FORMAT};
use dashclaw_events::{LogSigner, OrgId};
use dashclaw_store::chain::{envelope_ref, rows_between};
use dashclaw_store::exports::{self, ExportRecord};
use dashclaw_store::{checkpoints, timestamp, tree};
use futures_util::StreamExt;
use sqlx::PgPool;
use tokio::sync::mpsc::Sender;

use super::integrity::hex;
use super::{Caller, Error, Permission, Service};

/// How many bytes of lines are sent at a time.
const CHUNK: usize = 256 * 1024;

/// Which events to export: those recorded in `[from, to)`, either bound open.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Exports `org`'s events in `range`: sends the lines (newline-terminated) to `lines` in
/// chunks, calls `progress` with the events written, records the export and returns its
/// signed manifest. Stops early (with an error) if the receiver goes away.
pub async fn export(
    pool: &PgPool,
    signer: &LogSigner,
    org: &OrgId,
    range: ExportRange,
    lines: &Sender<Vec<u8>>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Manifest, Error> {
    let (first, last) = exports::seq_range(pool, org, range.from, range.to)
        .await?
        .unwrap_or((0, 0));
    let previous = exports::latest(pool, org).await?;
    // A head covering the range (signed now if none does) and at least the previous export's.
    let needed = last
        .max(previous.as_ref().map_or(0, |p| p.tree_size))
        .max(1);
    let head = match checkpoints::latest_tree_head(pool, org).await? {
        Some(head) if head.size() >= needed => Some(head),
        _ => checkpoints::sign(pool, signer, org).await?,
    };
    let head = head.filter(|h| h.note.is_some());

    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut written = 0u64;
    if last > 0 {
        let mut rows = rows_between(pool, org, first - 1, last);
        let mut buffer = Vec::with_capacity(CHUNK + 4096);
        while let Some(row) = rows.next().await {
            let row = row?;
            let envelope = envelope_ref(org, &row)?;
            envelope.write_entry(&mut buffer);
            buffer.push(b'\n');
            match counts.get_mut(envelope.event_type) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(envelope.event_type.to_owned(), 1);
                }
            }
            written += 1;
            if buffer.len() >= CHUNK {
                send(lines, &mut buffer).await?;
                progress(written);
            }
        }
        send(lines, &mut buffer).await?;
        progress(written);
    }

    let (tree_head, tree_size) = match &head {
        Some(head) => (head.note.clone().unwrap_or_default(), head.size()),
        None => (String::new(), 0),
    };
    let last_event_proof = if last > 0 {
        tree::inclusion(pool, org, last - 1, tree_size)
            .await?
            .map(|p| p.hashes.iter().map(hex).collect())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let previous = match previous {
        Some(p) if p.tree_size > 0 => {
            let before = checkpoints::at(pool, org, p.tree_size).await?;
            let consistency = tree::consistency(pool, org, p.tree_size, tree_size).await?;
            match (before.and_then(|b| b.note), consistency) {
                (Some(note), Some(hashes)) => Some(PreviousExport {
                    tree_head: note,
                    consistency: hashes.iter().map(hex).collect(),
                }),
                _ => None,
            }
        }
        _ => None,
    };
    let now = Utc::now();
    let manifest = Manifest {
        format: EXPORT_FORMAT.to_owned(),
        org_id: org.to_string(),
        from: range.from.map(timestamp),
        to: range.to.map(timestamp),
        first_ledger_seq: first,
        last_ledger_seq: last,
        events: written,
        counts,
        tree_head,
        last_event_proof,
        previous,
        exported_at: timestamp(now),
        signature: BundleSignature {
            alg: String::new(),
            kid: String::new(),
            sig: String::new(),
        },
    }
    .sign(signer.key())
    .map_err(|e| Error::internal(format!("signing a manifest: {e}")))?;
    exports::record(
        pool,
        org,
        &ExportRecord {
            exported_at: now,
            first_ledger_seq: first,
            last_ledger_seq: last,
            tree_size,
            kid: signer.key().kid().to_owned(),
        },
    )
    .await?;
    Ok(manifest)
}

async fn send(lines: &Sender<Vec<u8>>, buffer: &mut Vec<u8>) -> Result<(), Error> {
    if buffer.is_empty() {
        return Ok(());
    }
    let chunk = std::mem::replace(buffer, Vec::with_capacity(CHUNK + 4096));
    lines
        .send(chunk)
        .await
        .map_err(|_| Error::internal("the export's reader went away"))
}

impl Service {
    /// [`export`] of the caller's org (any key that may read; auditors' readonly keys too).
    pub async fn compliance_export(
        &self,
        caller: &Caller,
        range: ExportRange,
        lines: &Sender<Vec<u8>>,
    ) -> Result<Manifest, Error> {
        caller.require(Permission::Read)?;
        export(
            self.pool(),
            self.signer(),
            &caller.org,
            range,
            lines,
            &|_| {},
        )
        .await
    }
}

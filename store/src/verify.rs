//! Whole-ledger verification: every hash, every link, every checkpoint signature, every head.

use dashclaw_events::{ChainBreak, ChainVerifier, Jwks, OrgId, TamperKind};
use futures_util::{stream, StreamExt};
use sqlx::PgPool;

use crate::{chain, checkpoints, StoreError};

/// What one org's verification covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgVerified {
    pub org_id: OrgId,
    pub events: u64,
    pub checkpoints: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every org checked out.
    Intact(Vec<OrgVerified>),
    /// The first bad `(org, ledger_seq)` found, and why.
    Tampered(ChainBreak),
}

/// Verifies the given orgs (all when `None`) against the published keys. `progress` is called
/// with the number of events verified since its last call, every few thousand events.
///
/// Orgs are verified concurrently, each over its own connection, so that PostgreSQL's work of
/// reading chains spreads over several backends; results are taken in org order, so the
/// verdict names the same first break on every run.
pub async fn verify(
    pool: &PgPool,
    keys: &Jwks,
    only: Option<&OrgId>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Verdict, StoreError> {
    let orgs = match only {
        Some(org) => vec![org.clone()],
        None => chain::orgs(pool).await?,
    };
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let mut results = std::pin::pin!(stream::iter(&orgs)
        .map(|org| verify_org(pool, keys, org, progress))
        .buffered(parallel));
    let mut verified = Vec::with_capacity(orgs.len());
    while let Some(result) = results.next().await {
        match result? {
            Ok(report) => verified.push(report),
            Err(tampered) => return Ok(Verdict::Tampered(tampered)),
        }
    }
    Ok(Verdict::Intact(verified))
}

async fn verify_org(
    pool: &PgPool,
    keys: &Jwks,
    org: &OrgId,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Result<OrgVerified, ChainBreak>, StoreError> {
    const PROGRESS_EVERY: u64 = 4096;
    let head = chain::head(pool, org).await?;
    let checkpoints = checkpoints::list(pool, org).await?;
    for c in &checkpoints {
        if let Err(e) = c.verify(keys) {
            return Ok(Err(ChainBreak {
                org_id: org.clone(),
                ledger_seq: c.checkpoint.size,
                kind: TamperKind::BadCheckpoint,
                detail: format!("checkpoint at size {}: {e}", c.checkpoint.size),
            }));
        }
    }
    let mut pending = checkpoints.iter().peekable();
    let mut verifier = ChainVerifier::new(org.clone());
    let mut unreported = 0;
    let mut events = std::pin::pin!(chain::events(pool, org, 0));
    loop {
        while let Some(c) = pending.next_if(|c| c.checkpoint.size == verifier.len()) {
            if let Err(b) = verifier.check_checkpoint(&c.checkpoint) {
                return Ok(Err(b));
            }
        }
        let Some(event) = events.next().await else {
            break;
        };
        if let Err(anomaly) = verifier.push(&event?) {
            let found = chain::locate(pool, org, &anomaly.stored_prev).await?;
            return Ok(Err(anomaly.diagnose(|_| found)));
        }
        unreported += 1;
        if unreported == PROGRESS_EVERY {
            progress(unreported);
            unreported = 0;
        }
    }
    progress(unreported);
    if let Some(c) = pending.next() {
        return Ok(Err(ChainBreak {
            org_id: org.clone(),
            ledger_seq: verifier.len() + 1,
            kind: TamperKind::Missing,
            detail: format!(
                "a checkpoint signed at {} covers {} events but the chain has {}",
                c.checkpoint.signed_at,
                c.checkpoint.size,
                verifier.len()
            ),
        }));
    }
    if let Err(b) = verifier.finish(head.size, head.head_hash) {
        return Ok(Err(b));
    }
    Ok(Ok(OrgVerified {
        org_id: org.clone(),
        events: verifier.len(),
        checkpoints: checkpoints.len(),
    }))
}

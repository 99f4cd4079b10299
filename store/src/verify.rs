//! Whole-ledger verification: every hash, every link, every checkpoint signature, every head.

use std::collections::HashMap;

use dashclaw_events::{
    genesis_hash, ChainBreak, ChainVerifier, EventHash, Jwks, OrgId, TamperKind,
};
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
    verify_ranged_from(pool, keys, only, progress, RANGED_FROM).await
}

/// [`verify`], checking chains of at least `ranged_from` events in parallel ranges first (a
/// tamper found there is then diagnosed by an in-order walk). Tests set it low to exercise
/// both paths on small ledgers.
pub async fn verify_ranged_from(
    pool: &PgPool,
    keys: &Jwks,
    only: Option<&OrgId>,
    progress: &(dyn Fn(u64) + Sync),
    ranged_from: u64,
) -> Result<Verdict, StoreError> {
    let orgs = match only {
        Some(org) => vec![org.clone()],
        None => chain::orgs(pool).await?,
    };
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let mut results = std::pin::pin!(stream::iter(&orgs)
        .map(|org| verify_org(pool, keys, org, progress, ranged_from))
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

/// Chains at least this long are checked in parallel ranges first.
pub const RANGED_FROM: u64 = 20_000;
const PROGRESS_EVERY: u64 = 4096;

async fn verify_org(
    pool: &PgPool,
    keys: &Jwks,
    org: &OrgId,
    progress: &(dyn Fn(u64) + Sync),
    ranged_from: u64,
) -> Result<Result<OrgVerified, ChainBreak>, StoreError> {
    let head = chain::head(pool, org).await?;
    if head.size >= ranged_from.max(1) {
        if let Some(report) = verify_ranges(pool, keys, org, &head, progress).await? {
            return Ok(Ok(report));
        }
        // Something is off: walk the chain in order to name the first bad position exactly.
    }
    verify_in_order(pool, keys, org, &head, progress).await
}

/// One range's walk: where it started (the stored `prev_hash` of its first event), where it
/// ended, and the chain hash at every checkpoint size inside it.
struct RangeWalk {
    start_prev: EventHash,
    end: EventHash,
    len: u64,
    at_checkpoints: HashMap<u64, EventHash>,
}

/// Checks a long chain as `parallel` ranges over separate connections (each range's hashes
/// and links, then that consecutive ranges meet, that the first starts at genesis, and every
/// checkpoint and the head). `Ok(None)` when anything does not hold: the caller then walks
/// the chain in order to diagnose.
async fn verify_ranges(
    pool: &PgPool,
    keys: &Jwks,
    org: &OrgId,
    head: &chain::Head,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Option<OrgVerified>, StoreError> {
    let checkpoints = checkpoints::list(pool, org).await?;
    if checkpoints.iter().any(|c| c.verify(keys).is_err()) {
        return Ok(None);
    }
    let sizes: Vec<u64> = checkpoints.iter().map(|c| c.checkpoint.size).collect();
    let parts = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)) as u64;
    let step = head.size.div_ceil(parts);
    // The last range is open-ended, so that events beyond the head are seen too.
    let walks = futures_util::future::try_join_all((0..parts).map(|k| {
        let after = k * step;
        let upto = (k + 1 < parts).then(|| ((k + 1) * step).min(head.size));
        walk_range(pool, org, after, upto, &sizes, progress)
    }))
    .await?;
    let mut expected = genesis_hash(org);
    let mut len = 0;
    let mut at: HashMap<u64, EventHash> = HashMap::from([(0, expected)]);
    for walk in walks {
        let Some(walk) = walk else {
            return Ok(None);
        };
        if walk.start_prev != expected {
            return Ok(None);
        }
        expected = walk.end;
        len += walk.len;
        at.extend(walk.at_checkpoints);
    }
    let checkpoints_hold = checkpoints
        .iter()
        .all(|c| at.get(&c.checkpoint.size) == Some(&c.checkpoint.head_hash));
    if len != head.size || expected != head.head_hash || !checkpoints_hold {
        return Ok(None);
    }
    Ok(Some(OrgVerified {
        org_id: org.clone(),
        events: len,
        checkpoints: checkpoints.len(),
    }))
}

/// Walks `after < ledger_seq <= upto` (no upper bound if `None`); `None` if any event there
/// is out of place or altered.
async fn walk_range(
    pool: &PgPool,
    org: &OrgId,
    after: u64,
    upto: Option<u64>,
    checkpoint_sizes: &[u64],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Option<RangeWalk>, StoreError> {
    let mut rows = std::pin::pin!(chain::rows_between(
        pool,
        org,
        after,
        upto.unwrap_or(u64::MAX)
    ));
    let Some(first) = rows.next().await else {
        return Ok(None);
    };
    let first = first?;
    let start_prev = chain::envelope_ref(org, &first)?.prev_hash;
    let mut verifier = ChainVerifier::resume(org.clone(), after, start_prev);
    let mut at_checkpoints = HashMap::new();
    let mut next = Some(first);
    let mut unreported = 0;
    while let Some(row) = next.take() {
        if verifier.push_ref(&chain::envelope_ref(org, &row)?).is_err() {
            return Ok(None);
        }
        if checkpoint_sizes.contains(&verifier.len()) {
            at_checkpoints.insert(verifier.len(), verifier.head());
        }
        unreported += 1;
        if unreported == PROGRESS_EVERY {
            progress(unreported);
            unreported = 0;
        }
        next = rows.next().await.transpose()?;
    }
    progress(unreported);
    if upto.is_some_and(|upto| verifier.len() != upto) {
        return Ok(None);
    }
    Ok(Some(RangeWalk {
        start_prev,
        end: verifier.head(),
        len: verifier.len() - after,
        at_checkpoints,
    }))
}

async fn verify_in_order(
    pool: &PgPool,
    keys: &Jwks,
    org: &OrgId,
    head: &chain::Head,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Result<OrgVerified, ChainBreak>, StoreError> {
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
    let mut rows = std::pin::pin!(chain::rows_between(pool, org, 0, u64::MAX));
    loop {
        while let Some(c) = pending.next_if(|c| c.checkpoint.size == verifier.len()) {
            if let Err(b) = verifier.check_checkpoint(&c.checkpoint) {
                return Ok(Err(b));
            }
        }
        let Some(row) = rows.next().await else {
            break;
        };
        let row = row?;
        if let Err(anomaly) = verifier.push_ref(&chain::envelope_ref(org, &row)?) {
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

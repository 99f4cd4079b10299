//! Whole-ledger verification: every hash, every link, every checkpoint signature and signed
//! tree head (its Merkle root recomputed from the chain), every head, and any tree heads the
//! caller kept from earlier (so that a rewrite after them is caught even if the stored
//! checkpoints were removed too).

use std::collections::HashMap;

use dashclaw_events::merkle::{Frontier, Hash};
use dashclaw_events::{
    genesis_hash, ChainBreak, ChainVerifier, EventHash, Jwks, OrgId, TamperKind, TreeHead,
};
use futures_util::{stream, StreamExt};
use sqlx::PgPool;

use crate::checkpoints::StoredCheckpoint;
use crate::{chain, checkpoints, StoreError};

/// What one org's verification covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgVerified {
    pub org_id: OrgId,
    pub events: u64,
    pub checkpoints: usize,
    /// Of those, the signed tree heads (whose roots were recomputed).
    pub tree_heads: usize,
    /// Tree heads the caller kept that this org's chain still contains.
    pub kept_heads: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every org checked out.
    Intact(Vec<OrgVerified>),
    /// The first bad `(org, ledger_seq)` found, and why.
    Tampered(ChainBreak),
}

/// What to verify.
#[derive(Clone, Debug)]
pub struct Scope<'a> {
    /// One org, or every org with a chain.
    pub only: Option<&'a OrgId>,
    /// Signed tree heads kept from earlier (already opened with the published keys): each
    /// org's chain must still contain each of its heads' trees.
    pub kept: &'a [TreeHead],
    /// Chains of at least this many events are checked in parallel ranges first (a tamper
    /// found there is then diagnosed by an in-order walk). Tests set it low.
    pub ranged_from: u64,
}

impl Default for Scope<'_> {
    fn default() -> Self {
        Self {
            only: None,
            kept: &[],
            ranged_from: RANGED_FROM,
        }
    }
}

/// Verifies the given orgs (all when `None`) against the published keys. `progress` is called
/// with the number of events verified since its last call, every few thousand events.
pub async fn verify(
    pool: &PgPool,
    keys: &Jwks,
    only: Option<&OrgId>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Verdict, StoreError> {
    let scope = Scope {
        only,
        ..Scope::default()
    };
    verify_scope(pool, keys, &scope, progress).await
}

/// Verifies `scope`. Orgs are verified concurrently, each over its own connection, so that
/// PostgreSQL's work of reading chains spreads over several backends; results are taken in
/// org order, so the verdict names the same first break on every run. An org that only a
/// kept head names (its chain is gone) is verified too, and fails.
pub async fn verify_scope(
    pool: &PgPool,
    keys: &Jwks,
    scope: &Scope<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Verdict, StoreError> {
    let mut orgs = match scope.only {
        Some(org) => vec![org.clone()],
        None => chain::orgs(pool).await?,
    };
    for org in scope.kept.iter().filter_map(TreeHead::org) {
        if scope.only.is_none() && !orgs.contains(&org) {
            orgs.push(org);
        }
    }
    orgs.sort();
    let parallel = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let mut results = std::pin::pin!(stream::iter(&orgs)
        .map(|org| verify_org(pool, keys, org, scope, progress))
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
/// Ranges are cut at multiples of 2^CHUNK_LEVEL leaves at most, so that each range's Merkle
/// subtrees are subtrees of the whole tree.
const CHUNK_LEVEL: u32 = 16;

/// What the chain must look like at `size`: a stored checkpoint's claims, or a kept head's.
#[derive(Clone, Debug)]
struct Pin {
    size: u64,
    head_hash: EventHash,
    /// The Merkle root, for tree heads.
    root: Option<Hash>,
    /// What makes the claim, for messages ("the checkpoint signed at ...").
    what: String,
}

/// The org's pins, smallest first: every stored checkpoint (each signature checked, and
/// each tree head's note against its row) and the kept heads of this org.
fn pins(
    org: &OrgId,
    stored: &[StoredCheckpoint],
    kept: &[TreeHead],
    keys: &Jwks,
) -> Result<Vec<Pin>, ChainBreak> {
    let mut pins = Vec::with_capacity(stored.len() + kept.len());
    for c in stored {
        let bad = |detail: String| ChainBreak {
            org_id: org.clone(),
            ledger_seq: c.size(),
            kind: TamperKind::BadCheckpoint,
            detail: format!("checkpoint at size {}: {detail}", c.size()),
        };
        c.signed.verify(keys).map_err(|e| bad(e.to_string()))?;
        let root = match (&c.note, &c.root_hash) {
            (None, None) => None,
            (Some(note), Some(root)) => {
                let (head, _) = TreeHead::open(note, keys).map_err(|e| bad(e.to_string()))?;
                let root: EventHash = root
                    .parse()
                    .map_err(|_| bad("its root hash is not 64 lowercase hex".into()))?;
                let agrees = head.org().as_ref() == Some(org)
                    && head.size == c.size()
                    && head.chain_head == c.signed.checkpoint.head_hash
                    && head.root == root.0
                    && head.signed_at == c.signed.checkpoint.signed_at;
                if !agrees {
                    return Err(bad(
                        "its signed tree head states other values than the row".into()
                    ));
                }
                Some(root.0)
            }
            _ => {
                return Err(bad(
                    "it has a root hash or a tree head without the other".into()
                ))
            }
        };
        pins.push(Pin {
            size: c.size(),
            head_hash: c.signed.checkpoint.head_hash,
            root,
            what: format!(
                "the {} signed at {}",
                if root.is_some() {
                    "tree head"
                } else {
                    "checkpoint"
                },
                c.signed.checkpoint.signed_at
            ),
        });
    }
    for head in kept.iter().filter(|h| h.org().as_ref() == Some(org)) {
        pins.push(Pin {
            size: head.size,
            head_hash: head.chain_head,
            root: Some(head.root),
            what: format!("the kept tree head signed at {}", head.signed_at),
        });
    }
    pins.sort_by_key(|p| p.size);
    Ok(pins)
}

/// The verdict on a pin, given the chain's hash and Merkle root at its size.
fn check_pin(org: &OrgId, pin: &Pin, head: EventHash, root: Hash) -> Result<(), ChainBreak> {
    let rewritten = |detail: String| ChainBreak {
        org_id: org.clone(),
        ledger_seq: pin.size,
        kind: TamperKind::Rewritten,
        detail,
    };
    if pin.head_hash != head {
        return Err(rewritten(format!(
            "the chain up to {} hashes to {head} but {} says {}",
            pin.size, pin.what, pin.head_hash
        )));
    }
    match pin.root {
        Some(claimed) if claimed != root => Err(rewritten(format!(
            "the Merkle root of the first {} events is {} but {} says {}",
            pin.size,
            EventHash(root),
            pin.what,
            EventHash(claimed)
        ))),
        _ => Ok(()),
    }
}

fn missing(org: &OrgId, pin: &Pin, len: u64) -> ChainBreak {
    ChainBreak {
        org_id: org.clone(),
        ledger_seq: len + 1,
        kind: TamperKind::Missing,
        detail: format!(
            "{} covers {} events but the chain has {len}: events {}..{} are missing",
            pin.what,
            pin.size,
            len + 1,
            pin.size
        ),
    }
}

fn report(org: &OrgId, events: u64, stored: &[StoredCheckpoint], pins: &[Pin]) -> OrgVerified {
    OrgVerified {
        org_id: org.clone(),
        events,
        checkpoints: stored.len(),
        tree_heads: stored.iter().filter(|c| c.note.is_some()).count(),
        kept_heads: pins.len() - stored.len(),
    }
}

async fn verify_org(
    pool: &PgPool,
    keys: &Jwks,
    org: &OrgId,
    scope: &Scope<'_>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Result<OrgVerified, ChainBreak>, StoreError> {
    let head = chain::head(pool, org).await?;
    let stored = checkpoints::list(pool, org).await?;
    let pins = match pins(org, &stored, scope.kept, keys) {
        Ok(pins) => pins,
        Err(bad) => return Ok(Err(bad)),
    };
    if head.size >= scope.ranged_from.max(1) {
        if let Some(events) = verify_ranges(pool, org, &head, &pins, progress).await? {
            return Ok(Ok(report(org, events, &stored, &pins)));
        }
        // Something is off: walk the chain in order to name the first bad position exactly.
    }
    Ok(verify_in_order(pool, org, &head, &pins, progress)
        .await?
        .map(|events| report(org, events, &stored, &pins)))
}

/// What a range's walk saw at a pin inside it: the chain hash, how many whole chunks come
/// before the pin's chunk (in the whole chain), and the Merkle frontier inside that chunk.
struct AtPin {
    head: EventHash,
    chunks_before: u64,
    local: Frontier,
}

/// One range's walk: where it started (the stored `prev_hash` of its first event), where it
/// ended, the roots of its whole chunks and what it saw at each pin inside it.
struct RangeWalk {
    start_prev: EventHash,
    end: EventHash,
    len: u64,
    chunk_roots: Vec<Hash>,
    at_pins: HashMap<u64, AtPin>,
}

/// Checks a long chain as ranges over separate connections (each range's hashes, links and
/// Merkle subtrees, then that consecutive ranges meet, that the first starts at genesis, and
/// every pin and the head). Ranges start at multiples of a power of two, so the subtrees of
/// each are subtrees of the whole tree. `Ok(None)` when anything does not hold: the caller
/// then walks the chain in order to diagnose.
async fn verify_ranges(
    pool: &PgPool,
    org: &OrgId,
    head: &chain::Head,
    pins: &[Pin],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Option<u64>, StoreError> {
    // Sorted (pins are), for the walks' binary searches.
    let sizes: Vec<u64> = pins.iter().map(|p| p.size).collect();
    let parts = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)) as u64;
    let share = head.size.div_ceil(parts).max(1);
    let chunk_level = (63 - share.leading_zeros()).min(CHUNK_LEVEL);
    let chunk = 1u64 << chunk_level;
    let step = share.div_ceil(chunk) * chunk;
    let ranges = head.size.div_ceil(step).max(1);
    // The last range is open-ended, so that events beyond the head are seen too.
    let walks = futures_util::future::try_join_all((0..ranges).map(|k| {
        let after = k * step;
        let upto = (k + 1 < ranges).then(|| ((k + 1) * step).min(head.size));
        walk_range(pool, org, after, upto, chunk_level, &sizes, progress)
    }))
    .await?;
    let mut expected = genesis_hash(org);
    let mut len = 0;
    let mut chunk_roots = Vec::new();
    let mut at_pins = HashMap::new();
    for walk in walks {
        let Some(walk) = walk else {
            return Ok(None);
        };
        if walk.start_prev != expected {
            return Ok(None);
        }
        expected = walk.end;
        len += walk.len;
        chunk_roots.extend(walk.chunk_roots);
        at_pins.extend(walk.at_pins);
    }
    if len != head.size || expected != head.head_hash {
        return Ok(None);
    }
    // The root at each pin: the whole chunks before it, then its chunk's frontier.
    let mut prefix = Frontier::default();
    let mut appended = 0u64;
    let genesis = AtPin {
        head: genesis_hash(org),
        chunks_before: 0,
        local: Frontier::default(),
    };
    for pin in pins {
        let at = match (pin.size, at_pins.get(&pin.size)) {
            (0, _) => &genesis,
            (_, Some(at)) => at,
            (_, None) => return Ok(None),
        };
        while appended < at.chunks_before {
            let Some(root) = chunk_roots.get(appended as usize) else {
                return Ok(None);
            };
            prefix.append(chunk_level, *root);
            appended += 1;
        }
        let mut whole = prefix.clone();
        for (subtree, hash) in at.local.parts() {
            whole.append(subtree.level, *hash);
        }
        if whole.size() != pin.size || check_pin(org, pin, at.head, whole.root()).is_err() {
            return Ok(None);
        }
    }
    Ok(Some(len))
}

/// Walks `after < ledger_seq <= upto` (no upper bound if `None`); `None` if any event there
/// is out of place or altered. `after` is a multiple of `2^chunk_level`.
async fn walk_range(
    pool: &PgPool,
    org: &OrgId,
    after: u64,
    upto: Option<u64>,
    chunk_level: u32,
    pin_sizes: &[u64],
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
    let chunk = 1u64 << chunk_level;
    let mut local = Frontier::default();
    let mut chunk_roots = Vec::new();
    let mut at_pins = HashMap::new();
    let mut next = Some(first);
    let mut unreported = 0;
    while let Some(row) = next.take() {
        if verifier.push_ref(&chain::envelope_ref(org, &row)?).is_err() {
            return Ok(None);
        }
        local.push(&verifier.head().0);
        if local.size() == chunk {
            chunk_roots.push(local.root());
            local = Frontier::default();
        }
        if pin_sizes.binary_search(&verifier.len()).is_ok() {
            at_pins.insert(
                verifier.len(),
                AtPin {
                    head: verifier.head(),
                    chunks_before: after / chunk + chunk_roots.len() as u64,
                    local: local.clone(),
                },
            );
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
        chunk_roots,
        at_pins,
    }))
}

/// Walks the whole chain in order; the number of events, or the first break.
async fn verify_in_order(
    pool: &PgPool,
    org: &OrgId,
    head: &chain::Head,
    pins: &[Pin],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Result<u64, ChainBreak>, StoreError> {
    let mut pending = pins.iter().peekable();
    let mut verifier = ChainVerifier::new(org.clone());
    let mut tree = Frontier::default();
    let mut unreported = 0;
    let mut rows = std::pin::pin!(chain::rows_between(pool, org, 0, u64::MAX));
    loop {
        while let Some(pin) = pending.next_if(|p| p.size == verifier.len()) {
            if let Err(b) = check_pin(org, pin, verifier.head(), tree.root()) {
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
        tree.push(&verifier.head().0);
        unreported += 1;
        if unreported == PROGRESS_EVERY {
            progress(unreported);
            unreported = 0;
        }
    }
    progress(unreported);
    if let Some(pin) = pending.next() {
        return Ok(Err(missing(org, pin, verifier.len())));
    }
    if let Err(b) = verifier.finish(head.size, head.head_hash) {
        return Ok(Err(b));
    }
    Ok(Ok(verifier.len()))
}

//! The Merkle tree over each org's chain, stored beside it (`merkle_subtrees`,
//! `merkle_trees`): [`integrate`] follows the chain with its own position, off the request
//! path, and never rebuilds what it stored; [`root_at`], [`inclusion`] and [`consistency`]
//! answer from O(log n) stored subtrees in two reads, whatever the size.
//!
//! Subtrees of 16 leaves and more are stored; smaller ones are hashed from the events' own
//! hashes when needed (at most 15 leaves per proof edge), which keeps the table to about one
//! row per 8 events. The algorithms are in [`dashclaw_events::merkle`].

use std::collections::{HashMap, HashSet};

use dashclaw_events::merkle::{self, Frontier, Hash, Subtree};
use dashclaw_events::{genesis_hash, EventHash, OrgId};
use sqlx::{PgConnection, PgPool};

use crate::StoreError;

/// The smallest stored subtree level (2^4 = 16 leaves).
pub const STORED_FROM_LEVEL: u32 = 4;
/// Events integrated per transaction, at most.
const WINDOW: u64 = 50_000;

/// An org's tree as far as it is integrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    pub size: u64,
    pub root: Hash,
    /// The chain hash of event `size` (the org's genesis value at size 0).
    pub head_hash: EventHash,
}

impl Tree {
    fn empty(org: &OrgId) -> Self {
        Self {
            size: 0,
            root: merkle::empty_root(),
            head_hash: genesis_hash(org),
        }
    }
}

/// The org's tree as integrated so far (the empty tree before the first integration).
pub async fn integrated(pool: &PgPool, org: &OrgId) -> Result<Tree, StoreError> {
    let row: Option<(i64, Vec<u8>, String)> =
        sqlx::query_as("SELECT size, root, head_hash FROM merkle_trees WHERE org_id = $1")
            .bind(org.as_str())
            .fetch_optional(pool)
            .await?;
    row.map_or(Ok(Tree::empty(org)), |row| tree_of(org, row))
}

fn tree_of(
    org: &OrgId,
    (size, root, head_hash): (i64, Vec<u8>, String),
) -> Result<Tree, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("merkle_trees row of {org}: {what}"));
    Ok(Tree {
        size: u64::try_from(size).map_err(|_| corrupt("negative size"))?,
        root: root
            .try_into()
            .map_err(|_| corrupt("root is not 32 bytes"))?,
        head_hash: head_hash.parse().map_err(|_| corrupt("bad head hash"))?,
    })
}

/// Integrates the org's chain into its tree up to the chain's head (in windows of at most
/// 50,000 events, each one transaction under the tree's row lock, so that nodes doing this at
/// once take turns); returns the tree at the head. `progress` is told each window's size.
pub async fn integrate(
    pool: &PgPool,
    org: &OrgId,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Tree, StoreError> {
    loop {
        let mut tx = pool.begin().await?;
        relaxed_commit(&mut tx).await?;
        let empty = Tree::empty(org);
        sqlx::query(
            "INSERT INTO merkle_trees (org_id, size, root, head_hash) VALUES ($1, 0, $2, $3)
             ON CONFLICT (org_id) DO NOTHING",
        )
        .bind(org.as_str())
        .bind(empty.root.as_slice())
        .bind(empty.head_hash.to_hex())
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query_as(
            "SELECT size, root, head_hash FROM merkle_trees WHERE org_id = $1 FOR UPDATE",
        )
        .bind(org.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let tree = tree_of(org, row)?;
        let head: Option<i64> =
            sqlx::query_scalar("SELECT size FROM ledger_heads WHERE org_id = $1")
                .bind(org.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let head = head.unwrap_or(0).max(0) as u64;
        if head <= tree.size {
            tx.commit().await?;
            return Ok(tree);
        }
        let (from, to) = (tree.size, head.min(tree.size + WINDOW));
        let tree = extend(&mut tx, org, tree, to).await?;
        tx.commit().await?;
        progress(to - from);
        if to == head {
            return Ok(tree);
        }
    }
}

/// Lets this transaction commit without waiting for its WAL flush. The tree and the signed
/// heads are derived from the chain, whose events were durable before they were integrated: a
/// crash can lose only the last moments of integration, which the next `integrate` redoes,
/// and a head signed then, which is signed again (the same size and root). Waiting would add
/// a flush of its own every time the checkpoint sweep runs, and on a disk with a long fsync
/// tail the guard's commits queue behind it (BENCHMARKS.md, tree maintenance on vs off).
pub(crate) async fn relaxed_commit(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(conn)
        .await?;
    Ok(())
}

/// Extends `tree` (locked) to `to` leaves: stores the subtrees completed on the way.
async fn extend(
    conn: &mut PgConnection,
    org: &OrgId,
    tree: Tree,
    to: u64,
) -> Result<Tree, StoreError> {
    let wanted = Frontier::subtrees_of(tree.size);
    let known = hashes(conn, org, &wanted).await?;
    let parts = wanted.iter().map(|s| (*s, known[s])).collect();
    let mut frontier = Frontier::from_parts(tree.size, parts)
        .ok_or_else(|| StoreError::Corrupt(format!("the frontier of {org} does not restore")))?;
    let events = event_hashes(conn, org, tree.size + 1, to).await?;
    let (mut levels, mut indexes, mut nodes) = (Vec::new(), Vec::new(), Vec::new());
    let mut head_hash = tree.head_hash;
    for (seq, hash) in events {
        if seq != frontier.size() + 1 {
            return Err(StoreError::Corrupt(format!(
                "{org}'s chain has no event {} below its head",
                frontier.size() + 1
            )));
        }
        for (subtree, node) in frontier.push(&hash.0) {
            if subtree.level >= STORED_FROM_LEVEL {
                levels.push(subtree.level as i16);
                indexes.push(subtree.index as i64);
                nodes.push(node.to_vec());
            }
        }
        head_hash = hash;
    }
    if frontier.size() != to {
        return Err(StoreError::Corrupt(format!(
            "{org}'s chain ends at {} below its head {to}",
            frontier.size()
        )));
    }
    sqlx::query(
        "INSERT INTO merkle_subtrees (org_id, level, idx, hash)
         SELECT $1, * FROM UNNEST($2::smallint[], $3::bigint[], $4::bytea[])
         ON CONFLICT DO NOTHING",
    )
    .bind(org.as_str())
    .bind(&levels)
    .bind(&indexes)
    .bind(&nodes)
    .execute(&mut *conn)
    .await?;
    let tree = Tree {
        size: to,
        root: frontier.root(),
        head_hash,
    };
    sqlx::query("UPDATE merkle_trees SET size = $2, root = $3, head_hash = $4 WHERE org_id = $1")
        .bind(org.as_str())
        .bind(tree.size as i64)
        .bind(tree.root.as_slice())
        .bind(tree.head_hash.to_hex())
        .execute(&mut *conn)
        .await?;
    Ok(tree)
}

/// `(ledger_seq, hash)` of the org's events `from..=to`, in order.
async fn event_hashes(
    conn: &mut PgConnection,
    org: &OrgId,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, EventHash)>, StoreError> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT ledger_seq, hash FROM events
          WHERE org_id = $1 AND ledger_seq BETWEEN $2 AND $3 ORDER BY ledger_seq",
    )
    .bind(org.as_str())
    .bind(from as i64)
    .bind(to as i64)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|(seq, hash)| {
            let hash = hash.parse().map_err(|_| {
                StoreError::Corrupt(format!("event ({org}, {seq}) has a malformed hash"))
            })?;
            Ok((seq as u64, hash))
        })
        .collect()
}

/// The hashes of `wanted` complete subtrees: stored ones in one read, smaller ones hashed
/// from their leaves (the events' hashes) read in another. A subtree the tree does not hold
/// (beyond what is integrated) is an error.
async fn hashes(
    conn: &mut PgConnection,
    org: &OrgId,
    wanted: &[Subtree],
) -> Result<HashMap<Subtree, Hash>, StoreError> {
    let (stored, small): (Vec<Subtree>, Vec<Subtree>) =
        wanted.iter().partition(|s| s.level >= STORED_FROM_LEVEL);
    let mut out = HashMap::with_capacity(wanted.len());
    if !stored.is_empty() {
        let levels: Vec<i16> = stored.iter().map(|s| s.level as i16).collect();
        let indexes: Vec<i64> = stored.iter().map(|s| s.index as i64).collect();
        let rows: Vec<(i16, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT s.level, s.idx, s.hash FROM merkle_subtrees s
               JOIN UNNEST($2::smallint[], $3::bigint[]) AS w(level, idx)
                 ON s.level = w.level AND s.idx = w.idx
              WHERE s.org_id = $1",
        )
        .bind(org.as_str())
        .bind(&levels)
        .bind(&indexes)
        .fetch_all(&mut *conn)
        .await?;
        for (level, index, hash) in rows {
            let hash: Hash = hash.try_into().map_err(|_| {
                StoreError::Corrupt(format!("a stored subtree of {org} is not 32 bytes"))
            })?;
            out.insert(
                Subtree {
                    level: level as u32,
                    index: index as u64,
                },
                hash,
            );
        }
    }
    if !small.is_empty() {
        let seqs: Vec<i64> = small
            .iter()
            .flat_map(|s| s.start()..s.end())
            .collect::<HashSet<u64>>()
            .into_iter()
            .map(|leaf| leaf as i64 + 1)
            .collect();
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT ledger_seq, hash FROM events WHERE org_id = $1 AND ledger_seq = ANY($2)",
        )
        .bind(org.as_str())
        .bind(&seqs)
        .fetch_all(&mut *conn)
        .await?;
        let mut leaves = HashMap::with_capacity(rows.len());
        for (seq, hash) in rows {
            let hash: EventHash = hash.parse().map_err(|_| {
                StoreError::Corrupt(format!("event ({org}, {seq}) has a malformed hash"))
            })?;
            leaves.insert(seq as u64 - 1, merkle::leaf_hash(&hash.0));
        }
        for s in small {
            if let Some(hash) = complete_hash(s, &leaves) {
                out.insert(s, hash);
            }
        }
    }
    match wanted.iter().find(|s| !out.contains_key(s)) {
        Some(s) => Err(StoreError::Corrupt(format!(
            "the Merkle tree of {org} has no subtree at level {} index {}",
            s.level, s.index
        ))),
        None => Ok(out),
    }
}

/// A complete subtree's hash from its leaf hashes, if all are there.
fn complete_hash(s: Subtree, leaves: &HashMap<u64, Hash>) -> Option<Hash> {
    let mut level: Vec<Hash> = (s.start()..s.end())
        .map(|i| leaves.get(&i).copied())
        .collect::<Option<_>>()?;
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| merkle::node_hash(&pair[0], &pair[1]))
            .collect();
    }
    level.first().copied()
}

/// The tree of `org`, integrated up to at least `size` leaves (integrating if it is behind).
/// `size` must not exceed the chain's.
async fn at_least(pool: &PgPool, org: &OrgId, size: u64) -> Result<(), StoreError> {
    if integrated(pool, org).await?.size < size && integrate(pool, org, &|_| {}).await?.size < size
    {
        return Err(StoreError::Corrupt(format!(
            "{org}'s chain is shorter than {size} events"
        )));
    }
    Ok(())
}

/// The hashes of `ranges`, each a leaf range of the tree, in one or two reads.
async fn range_hashes(
    pool: &PgPool,
    org: &OrgId,
    ranges: &[merkle::Range],
    extra: &[Subtree],
) -> Result<(Vec<Hash>, HashMap<Subtree, Hash>), StoreError> {
    let mut wanted: Vec<Subtree> = ranges.iter().flat_map(|r| r.subtrees()).collect();
    wanted.extend_from_slice(extra);
    wanted.sort();
    wanted.dedup();
    let mut conn = pool.acquire().await?;
    let known = hashes(&mut conn, org, &wanted).await?;
    let hashes = ranges.iter().map(|r| r.hash(|s| known[&s])).collect();
    Ok((hashes, known))
}

/// The root of the org's tree of `size` leaves (`size` at most the chain's).
pub async fn root_at(pool: &PgPool, org: &OrgId, size: u64) -> Result<Hash, StoreError> {
    if size == 0 {
        return Ok(merkle::empty_root());
    }
    at_least(pool, org, size).await?;
    let whole = [merkle::Range {
        start: 0,
        end: size,
    }];
    Ok(range_hashes(pool, org, &whole, &[]).await?.0[0])
}

/// An inclusion proof: leaf `leaf_index`'s hash and its audit path in the tree of `tree_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    pub hashes: Vec<Hash>,
}

/// The inclusion proof of leaf `index` (the event `ledger_seq = index + 1`) in the org's
/// tree of `size` leaves (RFC 9162 section 2.1.3); `None` unless `index < size`. `size` must
/// not exceed the chain's.
pub async fn inclusion(
    pool: &PgPool,
    org: &OrgId,
    index: u64,
    size: u64,
) -> Result<Option<InclusionProof>, StoreError> {
    let Some(ranges) = merkle::inclusion_ranges(index, size) else {
        return Ok(None);
    };
    at_least(pool, org, size).await?;
    let leaf = Subtree { level: 0, index };
    let (hashes, known) = range_hashes(pool, org, &ranges, &[leaf]).await?;
    Ok(Some(InclusionProof {
        leaf_index: index,
        tree_size: size,
        leaf_hash: known[&leaf],
        hashes,
    }))
}

/// The consistency proof from the org's tree of `first` leaves to that of `second` (RFC
/// 9162 section 2.1.4); `None` unless `0 < first <= second`. `second` must not exceed the
/// chain's size.
pub async fn consistency(
    pool: &PgPool,
    org: &OrgId,
    first: u64,
    second: u64,
) -> Result<Option<Vec<Hash>>, StoreError> {
    let Some(ranges) = merkle::consistency_ranges(first, second) else {
        return Ok(None);
    };
    at_least(pool, org, second).await?;
    Ok(Some(range_hashes(pool, org, &ranges, &[]).await?.0))
}

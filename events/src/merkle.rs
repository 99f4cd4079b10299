//! The Merkle tree over an org's chain (RFC 9162 section 2.1, the same as RFC 6962): hashing,
//! the incremental frontier that appends maintain, and inclusion and consistency proofs,
//! built from stored complete subtrees and checked with the RFC's verification algorithms.
//!
//! Leaf `i` (0-based) is the event with `ledger_seq = i + 1`; its leaf hash is
//! `SHA-256(0x00 || the 32 raw bytes of the event's hash)`, an interior node is
//! `SHA-256(0x01 || left || right)`, and the root of a tree of size `n` is MTH over the first
//! `n` leaves. The tree is stored as its **complete subtrees**: the node at `(level, index)`
//! covers leaves `[index * 2^level, (index + 1) * 2^level)` and exists once all of them do.
//! Every hash a proof needs is the MTH of a leaf range, and every such range is the
//! concatenation of O(log n) complete subtrees ([`Range::subtrees`]), so a proof is planned
//! ([`inclusion_ranges`], [`consistency_ranges`]), its subtrees fetched in one read, and
//! assembled ([`Range::hash`]). `docs/proofs.md` specifies the bytes.

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || event_hash)`: the leaf of the event whose chain hash is `event_hash`.
pub fn leaf_hash(event_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(event_hash);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two smaller than `n` (`n >= 2`): where RFC 9162 splits a tree.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// A complete subtree: `2^level` leaves from `index * 2^level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subtree {
    pub level: u32,
    pub index: u64,
}

impl Subtree {
    /// The first leaf it covers.
    pub fn start(self) -> u64 {
        self.index << self.level
    }

    /// One past the last leaf it covers.
    pub fn end(self) -> u64 {
        (self.index + 1) << self.level
    }
}

/// The leaves `[start, end)`: a range whose MTH is one hash of a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    /// The complete subtrees the range's MTH is made of, left to right. A range that RFC
    /// 9162's recursion produces starts at a multiple of the largest power of two that fits
    /// in it, so it is its greedy decomposition: the largest aligned power of two at each step.
    pub fn subtrees(self) -> Vec<Subtree> {
        let mut out = Vec::new();
        let mut at = self.start;
        while at < self.end {
            let left = self.end - at;
            // The largest power of two that is <= left and divides `at` (any, at 0).
            let mut level = 63 - left.leading_zeros();
            if at != 0 {
                level = level.min(at.trailing_zeros());
            }
            out.push(Subtree {
                level,
                index: at >> level,
            });
            at += 1 << level;
        }
        out
    }

    /// The range's MTH from its subtrees' hashes, folded as RFC 9162 does: the right-most
    /// subtrees first (`hash_of` is asked for each of [`Range::subtrees`]).
    pub fn hash(self, mut hash_of: impl FnMut(Subtree) -> Hash) -> Hash {
        let parts = self.subtrees();
        let mut iter = parts.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(hash_of(*last), |right, left| {
            node_hash(&hash_of(*left), &right)
        })
    }
}

/// The ranges whose MTHs form the inclusion proof (audit path) of leaf `index` in the tree of
/// `size` leaves, in proof order (RFC 9162 section 2.1.3.1). `None` unless `index < size`.
pub fn inclusion_ranges(index: u64, size: u64) -> Option<Vec<Range>> {
    if index >= size {
        return None;
    }
    let mut out = Vec::new();
    let (mut lo, mut hi, mut m) = (0u64, size, index);
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m < k {
            out.push(Range {
                start: lo + k,
                end: hi,
            });
            hi = lo + k;
        } else {
            out.push(Range {
                start: lo,
                end: lo + k,
            });
            lo += k;
            m -= k;
        }
    }
    out.reverse();
    Some(out)
}

/// The ranges whose MTHs form the consistency proof from the tree of `first` leaves to the
/// tree of `second` (RFC 9162 section 2.1.4.1), in proof order. Empty when `first == second`;
/// `None` unless `0 < first <= second`.
pub fn consistency_ranges(first: u64, second: u64) -> Option<Vec<Range>> {
    if first == 0 || first > second {
        return None;
    }
    let mut out = Vec::new();
    let (mut lo, mut hi, mut m, mut whole) = (0u64, second, first, true);
    while m != hi - lo {
        let k = split(hi - lo);
        if m <= k {
            out.push(Range {
                start: lo + k,
                end: hi,
            });
            hi = lo + k;
        } else {
            out.push(Range {
                start: lo,
                end: lo + k,
            });
            lo += k;
            m -= k;
            whole = false;
        }
    }
    if !whole {
        out.push(Range { start: lo, end: hi });
    }
    out.reverse();
    Some(out)
}

/// Checks an inclusion proof (RFC 9162 section 2.1.3.2): that the leaf hash `leaf` is leaf
/// `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Checks a consistency proof (RFC 9162 section 2.1.4.2): that the tree of `first` leaves
/// with root `first_root` is a prefix of the tree of `second` leaves with root `second_root`.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> bool {
    if first == 0 || first > second {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    // A first tree that is a complete subtree of the second is not repeated in the proof.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((head, rest)) = path.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && fr == *first_root && sr == *second_root
}

/// The right edge of a growing tree: the complete subtrees covering `[0, size)`, largest
/// first. Appending a leaf completes at most `log2(size)` new subtrees, which it returns for
/// storage; the root is the fold of the frontier. Restored from storage with
/// [`Frontier::subtrees_of`] and [`Frontier::from_parts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(subtree, hash)`, left to right (strictly decreasing levels).
    parts: Vec<(Subtree, Hash)>,
}

impl Frontier {
    /// The subtrees a frontier of `size` leaves holds (what to read to restore it).
    pub fn subtrees_of(size: u64) -> Vec<Subtree> {
        if size == 0 {
            return Vec::new();
        }
        Range {
            start: 0,
            end: size,
        }
        .subtrees()
    }

    /// A frontier from its stored parts (in [`Frontier::subtrees_of`] order); `None` when
    /// they are not the frontier of `size`.
    pub fn from_parts(size: u64, parts: Vec<(Subtree, Hash)>) -> Option<Self> {
        let want = Self::subtrees_of(size);
        (parts.len() == want.len() && parts.iter().zip(&want).all(|((s, _), w)| s == w))
            .then_some(Self { size, parts })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree of `size()` leaves.
    pub fn root(&self) -> Hash {
        let mut iter = self.parts.iter().rev();
        let Some((_, last)) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |right, (_, left)| node_hash(left, &right))
    }

    /// Appends the leaf of the event whose chain hash is `event_hash`; returns every complete
    /// subtree this append made (the leaf itself first, then its new ancestors).
    pub fn push(&mut self, event_hash: &Hash) -> Vec<(Subtree, Hash)> {
        self.append(0, leaf_hash(event_hash)).unwrap_or_default()
    }

    /// Appends a complete subtree of `2^level` leaves whose hash is `hash` (one computed
    /// elsewhere, say by a parallel walk); returns every complete subtree this made, that one
    /// first. `None` (and nothing changes) unless the size is a multiple of `2^level`.
    pub fn append(&mut self, level: u32, hash: Hash) -> Option<Vec<(Subtree, Hash)>> {
        if level >= 64 || self.size % (1u64 << level) != 0 {
            return None;
        }
        let mut node = (
            Subtree {
                level,
                index: self.size >> level,
            },
            hash,
        );
        let mut made = vec![node];
        while let Some(&(left, left_hash)) = self.parts.last() {
            if left.level != node.0.level {
                break;
            }
            self.parts.pop();
            node = (
                Subtree {
                    level: left.level + 1,
                    index: left.index >> 1,
                },
                node_hash(&left_hash, &node.1),
            );
            made.push(node);
        }
        self.parts.push(node);
        self.size += 1 << level;
        Some(made)
    }

    /// The frontier's subtrees and their hashes, left to right.
    pub fn parts(&self) -> &[(Subtree, Hash)] {
        &self.parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// RFC 9162's MTH, written as the RFC states it.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    /// RFC 9162's PATH(m, D[n]), as the RFC states it.
    fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
        let n = leaves.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = split(n as u64) as usize;
        if m < k {
            let mut p = path(m, &leaves[..k]);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = path(m - k, &leaves[k..]);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    /// RFC 9162's SUBPROOF(m, D[n], b).
    fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole { Vec::new() } else { vec![mth(leaves)] };
        }
        let k = split(n as u64) as usize;
        if m <= k {
            let mut p = subproof(m, &leaves[..k], whole);
            p.push(mth(&leaves[k..]));
            p
        } else {
            let mut p = subproof(m - k, &leaves[k..], false);
            p.push(mth(&leaves[..k]));
            p
        }
    }

    fn event_hash(i: u64) -> Hash {
        Sha256::digest(i.to_be_bytes()).into()
    }

    /// A tree of `n` leaves grown through the frontier, with every subtree it stored.
    fn grow(n: u64) -> (Vec<Hash>, HashMap<Subtree, Hash>, Vec<Hash>) {
        let mut frontier = Frontier::default();
        let mut stored = HashMap::new();
        let mut leaves = Vec::new();
        let mut roots = vec![frontier.root()];
        for i in 0..n {
            for (s, h) in frontier.push(&event_hash(i)) {
                assert!(stored.insert(s, h).is_none(), "{s:?} stored twice");
            }
            leaves.push(leaf_hash(&event_hash(i)));
            roots.push(frontier.root());
        }
        (leaves, stored, roots)
    }

    fn assemble(ranges: &[Range], stored: &HashMap<Subtree, Hash>) -> Vec<Hash> {
        ranges.iter().map(|r| r.hash(|s| stored[&s])).collect()
    }

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        assert_eq!(
            [2, 3, 4, 5, 8, 9, 1025].map(split),
            [1, 2, 2, 4, 4, 8, 1024]
        );
    }

    #[test]
    fn the_frontier_root_is_mth_at_every_size() {
        let (leaves, _, roots) = grow(64);
        for (n, root) in roots.iter().enumerate() {
            assert_eq!(*root, mth(&leaves[..n]), "size {n}");
        }
    }

    #[test]
    fn every_inclusion_proof_of_small_trees_matches_the_rfc_and_verifies() {
        let (leaves, stored, roots) = grow(64);
        for n in 1..=64u64 {
            for m in 0..n {
                let ranges = inclusion_ranges(m, n).unwrap();
                let proof = assemble(&ranges, &stored);
                assert_eq!(proof, path(m as usize, &leaves[..n as usize]), "({m}, {n})");
                let root = &roots[n as usize];
                assert!(verify_inclusion(m, n, &leaves[m as usize], &proof, root));
                // Any other leaf or root fails. (A different size may not: for leaf 0 the
                // paths of sizes 3 and 4 have the same shape. The size a root belongs to is
                // what the signed tree head binds.)
                let other = leaves[((m + 1) % n) as usize];
                assert!(n == 1 || !verify_inclusion(m, n, &other, &proof, root));
                assert!(!verify_inclusion(
                    m,
                    n,
                    &leaves[m as usize],
                    &proof,
                    &roots[0]
                ));
                if let Some((first, rest)) = proof.split_first() {
                    let mut bad = vec![node_hash(first, first)];
                    bad.extend_from_slice(rest);
                    assert!(!verify_inclusion(m, n, &leaves[m as usize], &bad, root));
                    assert!(!verify_inclusion(m, n, &leaves[m as usize], rest, root));
                }
            }
            assert!(inclusion_ranges(n, n).is_none());
        }
    }

    #[test]
    fn every_consistency_proof_of_small_trees_matches_the_rfc_and_verifies() {
        let (leaves, stored, roots) = grow(64);
        for n in 1..=64u64 {
            for m in 1..=n {
                let ranges = consistency_ranges(m, n).unwrap();
                let proof = assemble(&ranges, &stored);
                assert_eq!(
                    proof,
                    subproof(m as usize, &leaves[..n as usize], true),
                    "({m}, {n})"
                );
                let (r1, r2) = (&roots[m as usize], &roots[n as usize]);
                assert!(verify_consistency(m, n, r1, r2, &proof), "({m}, {n})");
                if m < n {
                    // A rewritten first tree, or a second that does not extend it, fails.
                    assert!(!verify_consistency(
                        m,
                        n,
                        &roots[m as usize - 1],
                        r2,
                        &proof
                    ));
                    assert!(!verify_consistency(
                        m,
                        n,
                        r1,
                        &roots[n as usize - 1],
                        &proof
                    ));
                    assert!(!verify_consistency(m, n, r1, r2, &proof[1..]));
                }
            }
            assert!(consistency_ranges(0, n).is_none());
            assert!(consistency_ranges(n + 1, n).is_none());
        }
    }

    #[test]
    fn proofs_on_a_large_tree_need_few_subtrees_and_verify() {
        let n = 100_003u64;
        let (leaves, stored, roots) = grow(n);
        let root = roots[n as usize];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2_000 {
            let size = 1 + next() % n;
            let m = next() % size;
            let ranges = inclusion_ranges(m, size).unwrap();
            let reads: usize = ranges.iter().map(|r| r.subtrees().len()).sum();
            assert!(reads <= 2 * 17 + 1, "{reads} subtrees for ({m}, {size})");
            let proof = assemble(&ranges, &stored);
            let r = &roots[size as usize];
            assert!(verify_inclusion(m, size, &leaves[m as usize], &proof, r));
            let first = 1 + next() % size;
            let proof = assemble(&consistency_ranges(first, size).unwrap(), &stored);
            assert!(verify_consistency(
                first,
                size,
                &roots[first as usize],
                r,
                &proof
            ));
        }
        assert_eq!(root, mth(&leaves));
    }

    #[test]
    fn a_frontier_restores_from_its_stored_subtrees() {
        let (_, stored, roots) = grow(300);
        for size in [0u64, 1, 2, 3, 7, 8, 255, 256, 257, 300] {
            let parts = Frontier::subtrees_of(size)
                .into_iter()
                .map(|s| (s, stored[&s]))
                .collect();
            let restored = Frontier::from_parts(size, parts).unwrap();
            assert_eq!(restored.root(), roots[size as usize]);
        }
        assert!(Frontier::from_parts(3, Vec::new()).is_none());
    }

    #[test]
    fn appending_whole_subtrees_equals_pushing_their_leaves() {
        let (leaves, stored, roots) = grow(300);
        // Chunks of 16 leaves appended as level-4 subtrees, then the rest leaf by leaf.
        let mut frontier = Frontier::default();
        for chunk in 0..17u64 {
            frontier
                .append(
                    4,
                    stored[&Subtree {
                        level: 4,
                        index: chunk,
                    }],
                )
                .unwrap();
        }
        assert_eq!(frontier.root(), roots[272]);
        assert!(
            frontier.append(5, [0; 32]).is_none(),
            "272 is not a multiple of 32"
        );
        for leaf in &leaves[272..] {
            frontier.append(0, *leaf).unwrap();
        }
        assert_eq!(frontier.root(), roots[300]);
        assert_eq!(frontier.parts().len(), Frontier::subtrees_of(300).len());
    }
}

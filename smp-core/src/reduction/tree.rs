//! k-ary spanning trees over PEs (broadcasts, creation, QD) and over the members of a
//! collection (reductions).

use crate::pe::PeId;

/// A k-ary tree over ranks `0..n`, rank 0 the root: the children of rank `r` are
/// `r*k + 1 ..= r*k + k`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tree {
    n: u32,
    k: u32,
}

impl Tree {
    /// A tree over `n` ranks with fan-out `k` (at least 2).
    pub(crate) fn new(n: u32, k: u32) -> Tree {
        Tree { n, k: k.max(2) }
    }

    /// Fan-out.
    pub(crate) fn arity(&self) -> u32 {
        self.k
    }

    /// Children of rank `r`.
    pub(crate) fn child_ranks(&self, r: u32) -> impl Iterator<Item = u32> {
        let n = self.n;
        let first = r as u64 * self.k as u64 + 1;
        let last = (first + self.k as u64).min(n as u64);
        (first..last).map(|c| c as u32)
    }

    /// Parent of rank `r` (none for the root).
    pub(crate) fn parent_rank(&self, r: u32) -> Option<u32> {
        (r > 0).then(|| (r - 1) / self.k)
    }

    /// Children of PE `me` in the tree over all PEs rooted at `root` (ranks are PE
    /// numbers rotated so that `root` is rank 0).
    pub(crate) fn children(&self, root: PeId, me: PeId) -> impl Iterator<Item = PeId> {
        let n = self.n;
        let r = (me.0 + n - root.0) % n;
        self.child_ranks(r).map(move |c| PeId((c + root.0) % n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every PE is reached exactly once from any root, and parent/child agree.
        #[test]
        fn tree_covers_each_pe_once(n in 1u32..200, k in 2u32..9, root in 0u32..200) {
            let root = PeId(root % n);
            let t = Tree::new(n, k);
            let mut seen = vec![0u32; n as usize];
            let mut stack = vec![root];
            while let Some(p) = stack.pop() {
                seen[p.0 as usize] += 1;
                for c in t.children(root, p) {
                    let rc = (c.0 + n - root.0) % n;
                    let rp = (p.0 + n - root.0) % n;
                    prop_assert_eq!(t.parent_rank(rc), Some(rp));
                    stack.push(c);
                }
            }
            prop_assert!(seen.iter().all(|&s| s == 1));
        }
    }
}

//! Spanning trees: k-ary trees over ranks ([`Tree`]), and the hierarchical trees that
//! broadcasts, creation, quiescence detection and reductions travel ([`Span`]).
//!
//! A [`Span`] over a set of PEs follows the job's topology in three levels: a k-ary tree
//! over the hosts, then over the processes of each host, then over the PEs of each
//! process. A host (process) is entered through one PE: the root's own for the root's
//! host (process), its first member PE otherwise. So a message crosses from host to
//! host once per host, and from process to process once per process: one message per
//! process per level, the rest moves inside processes by pointer.

use rustc_hash::FxHashMap as HashMap;

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
    #[cfg(test)]
    pub(crate) fn children(&self, root: PeId, me: PeId) -> impl Iterator<Item = PeId> {
        let n = self.n;
        let r = (me.0 + n - root.0) % n;
        self.child_ranks(r).map(move |c| PeId((c + root.0) % n))
    }
}

/// Rank of `x` in a ring of `n` rotated so that `root` is rank 0, and back.
#[inline]
fn rot(x: u32, root: u32, n: u32) -> u32 {
    (x + n - root) % n
}

#[inline]
fn unrot(r: u32, root: u32, n: u32) -> u32 {
    (r + root) % n
}

/// A PE's place in a [`Span`] rooted somewhere: the root's (host, process, PE)
/// position, its own, its process's PEs and host's processes, and the index of the PE
/// through which its process is entered.
struct Loc<'a> {
    r: (u32, u32, u32),
    h: u32,
    p: u32,
    i: u32,
    procs: &'a [Vec<PeId>],
    pes: &'a [PeId],
    entry_pe: u32,
}

/// A hierarchical spanning tree over a set of PEs (see the module doc).
#[derive(Clone, Debug)]
pub(crate) struct Span {
    k: u32,
    /// Hosts, each a list of processes, each a list of member PEs, all in order.
    hosts: Vec<Vec<Vec<PeId>>>,
    /// Where each member sits: (host, process, PE) positions in `hosts`.
    pos: HashMap<PeId, (u32, u32, u32)>,
}

impl Span {
    /// The tree over `pes` (in increasing order), grouped by `host_of` and `proc_of`,
    /// with fan-out `k` at every level.
    pub(crate) fn new(
        pes: impl IntoIterator<Item = PeId>,
        host_of: impl Fn(PeId) -> u32,
        proc_of: impl Fn(PeId) -> u32,
        k: u32,
    ) -> Span {
        let mut hosts: Vec<Vec<Vec<PeId>>> = Vec::new();
        let mut host_ids: HashMap<u32, u32> = HashMap::default();
        let mut proc_ids: HashMap<u32, u32> = HashMap::default();
        let mut pos = HashMap::default();
        for pe in pes {
            let h = *host_ids.entry(host_of(pe)).or_insert_with(|| {
                hosts.push(Vec::new());
                hosts.len() as u32 - 1
            });
            let procs = &mut hosts[h as usize];
            let p = *proc_ids.entry(proc_of(pe)).or_insert_with(|| {
                procs.push(Vec::new());
                procs.len() as u32 - 1
            });
            let list = &mut procs[p as usize];
            pos.insert(pe, (h, p, list.len() as u32));
            list.push(pe);
        }
        Span { k: k.max(2), hosts, pos }
    }

    fn at(&self, pe: PeId) -> (u32, u32, u32) {
        *self.pos.get(&pe).unwrap_or_else(|| panic!("PE {pe} is not in this spanning tree"))
    }

    /// The PE through which process `p` of host `h` is entered from a tree rooted at
    /// position `r`.
    fn proc_entry(&self, r: (u32, u32, u32), h: u32, p: u32) -> u32 {
        if (h, p) == (r.0, r.1) {
            r.2
        } else {
            0
        }
    }

    /// The process through which host `h` is entered.
    fn host_entry(&self, r: (u32, u32, u32), h: u32) -> u32 {
        if h == r.0 {
            r.1
        } else {
            0
        }
    }

    /// Where `me` sits in the tree rooted at `root`.
    fn locate(&self, root: PeId, me: PeId) -> Loc<'_> {
        let r = self.at(root);
        let (h, p, i) = self.at(me);
        let procs = &self.hosts[h as usize];
        Loc { r, h, p, i, procs, pes: &procs[p as usize], entry_pe: self.proc_entry(r, h, p) }
    }

    /// Children of `me` in the tree rooted at `root`.
    pub(crate) fn children(&self, root: PeId, me: PeId) -> Vec<PeId> {
        let Loc { r, h, p, i, procs, pes, entry_pe } = self.locate(root, me);
        let t = |n: usize| Tree::new(n as u32, self.k);
        let entry_proc = self.host_entry(r, h);
        let mut out = Vec::new();
        if i == entry_pe {
            if p == entry_proc {
                let nh = self.hosts.len() as u32;
                for c in t(self.hosts.len()).child_ranks(rot(h, r.0, nh)) {
                    let hh = unrot(c, r.0, nh);
                    out.push(self.hosts[hh as usize][0][0]);
                }
            }
            let np = procs.len() as u32;
            for c in t(procs.len()).child_ranks(rot(p, entry_proc, np)) {
                out.push(procs[unrot(c, entry_proc, np) as usize][0]);
            }
        }
        let n = pes.len() as u32;
        for c in t(pes.len()).child_ranks(rot(i, entry_pe, n)) {
            out.push(pes[unrot(c, entry_pe, n) as usize]);
        }
        out
    }

    /// Parent of `me` in the tree rooted at `root` (none for the root).
    pub(crate) fn parent(&self, root: PeId, me: PeId) -> Option<PeId> {
        let Loc { r, h, p, i, procs, pes, entry_pe } = self.locate(root, me);
        let t = |n: usize| Tree::new(n as u32, self.k);
        if i != entry_pe {
            let n = pes.len() as u32;
            let up = t(pes.len()).parent_rank(rot(i, entry_pe, n)).expect("not the entry");
            return Some(pes[unrot(up, entry_pe, n) as usize]);
        }
        let entry_proc = self.host_entry(r, h);
        if p != entry_proc {
            let np = procs.len() as u32;
            let up = unrot(
                t(procs.len()).parent_rank(rot(p, entry_proc, np)).expect("not the entry"),
                entry_proc,
                np,
            );
            return Some(procs[up as usize][self.proc_entry(r, h, up) as usize]);
        }
        if h != r.0 {
            let nh = self.hosts.len() as u32;
            let up =
                unrot(t(self.hosts.len()).parent_rank(rot(h, r.0, nh)).expect("not the root host"), r.0, nh);
            let ep = self.host_entry(r, up);
            return Some(self.hosts[up as usize][ep as usize][self.proc_entry(r, up, ep) as usize]);
        }
        None
    }

    /// Number of children of `me` in the tree rooted at `root`.
    pub(crate) fn num_children(&self, root: PeId, me: PeId) -> usize {
        self.children(root, me).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every member is reached exactly once from any root, parent and children agree,
        /// and each process (host) is entered by exactly one edge from outside it.
        #[test]
        fn span_covers_each_pe_once_and_enters_each_process_once(
            procs in proptest::collection::vec((1u32..5, 0u32..4), 1..12),
            k in 2u32..5,
            root_pick in 0u32..1000,
            drop_mask in proptest::collection::vec(any::<bool>(), 60),
        ) {
            // Process r has procs[r].0 PEs on host procs[r].1.
            let mut owner = Vec::new();
            let mut host = Vec::new();
            for (r, &(n, h)) in procs.iter().enumerate() {
                for _ in 0..n {
                    owner.push(r as u32);
                    host.push(h);
                }
            }
            // A subset of the PEs (a collection's members), never empty.
            let mut members: Vec<PeId> =
                (0..owner.len() as u32).filter(|&p| !drop_mask[p as usize % 60]).map(PeId).collect();
            if members.is_empty() {
                members.push(PeId(0));
            }
            let span = Span::new(members.iter().copied(), |p| host[p.0 as usize], |p| owner[p.0 as usize], k);
            let root = members[root_pick as usize % members.len()];
            let mut seen: HashMap<PeId, u32> = HashMap::default();
            let mut stack = vec![root];
            let mut entered_proc: HashMap<u32, u32> = HashMap::default();
            let mut entered_host: HashMap<u32, u32> = HashMap::default();
            while let Some(p) = stack.pop() {
                *seen.entry(p).or_default() += 1;
                for c in span.children(root, p) {
                    prop_assert_eq!(span.parent(root, c), Some(p));
                    if owner[c.0 as usize] != owner[p.0 as usize] {
                        *entered_proc.entry(owner[c.0 as usize]).or_default() += 1;
                    }
                    if host[c.0 as usize] != host[p.0 as usize] {
                        *entered_host.entry(host[c.0 as usize]).or_default() += 1;
                    }
                    stack.push(c);
                }
            }
            prop_assert_eq!(span.parent(root, root), None);
            prop_assert_eq!(seen.len(), members.len());
            prop_assert!(seen.values().all(|&n| n == 1));
            prop_assert!(entered_proc.values().all(|&n| n == 1));
            prop_assert!(entered_host.values().all(|&n| n == 1));
            prop_assert!(!entered_proc.contains_key(&owner[root.0 as usize]));
        }
    }

    #[test]
    fn one_process_span_is_the_rotated_kary_tree() {
        let span = Span::new((0..10).map(PeId), |_| 0, |_| 0, 3);
        let t = Tree::new(10, 3);
        for root in 0..10 {
            for me in 0..10 {
                let a: Vec<PeId> = span.children(PeId(root), PeId(me));
                let b: Vec<PeId> = t.children(PeId(root), PeId(me)).collect();
                assert_eq!(a, b);
            }
        }
    }

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

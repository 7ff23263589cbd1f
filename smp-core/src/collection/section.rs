//! Sections: sets of elements of one or more collections (Charm4py's `charm.split`,
//! `charm.combine` and proxy slicing), with multicasts and reductions over a spanning
//! tree of the PEs that hold their members.
//!
//! A section has an id from the collection id space (the creator PE and a counter,
//! with [`SECTION_BIT`] set), so that reductions, held messages and the tables of a PE
//! treat it as one more collection whose local elements are its local members.
//!
//! Building sections takes three steps, all messages:
//! 1. **Build**: the creator sends the description (which collections, which
//!    elements) down the spanning tree of all PEs. Every PE works out which of its
//!    elements belong to which section, keeps the lists, and tells the creator which
//!    sections have members there (`Have`). A PE that does not know a collection yet
//!    holds the build until the collection's creation arrives.
//! 2. **Install**: once every PE answered, the creator knows the member PEs of each
//!    section; it sends each member PE the member PE list of its sections. The PE
//!    builds its place in the section's tree (rooted at the first member PE) and acks.
//! 3. Once every member PE acked, the creator's future completes with one proxy per
//!    section. Anything done with a section proxy is therefore causally after every
//!    member PE installed it. Multicasts that still reach a PE first (a message
//!    passing another route) are held until the install, as for collections.
//!
//! A multicast goes to the root PE, which forwards it down the tree; each PE delivers
//! it to its local members. Reductions over a section run over the same tree.

use std::rc::Rc;
use std::sync::OnceLock;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::{Deserialize, Serialize};

use crate::chare::proxy::{Home, RawProxy};
use crate::chare::Proxy;
use crate::collection::{CollId, CollInfo, ElemKey, Index, Kind};
use crate::error::{Error, Result};
use crate::future::Future;
use crate::msg::Envelope;
use crate::pe::{with_pe, PeId, PeLocal, SysMsg};

/// Set in [`CollId::seq`] for the id of a section.
pub(crate) const SECTION_BIT: u32 = 1 << 31;

/// Which elements of the split collections form each section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Members {
    /// Every element (one section: what [`combine`] builds).
    All,
    /// For each section, the indexes of its elements. With several collections (a
    /// combined section), an index names the element of that index in each of them.
    Elems(Vec<Vec<Index>>),
    /// One section: the elements whose index lies in every dimension's range (Charm4py's
    /// proxy slicing, `proxy[0:4, ::2]`); an index of another number of dimensions is
    /// not in it.
    Slice(Vec<SliceDim>),
    /// Evaluated on each element's PE by the language binding's section function (see
    /// `__private::set_section_eval`); the bytes are the binding's.
    #[doc(hidden)]
    Custom(Vec<u8>),
}

/// One dimension of a [`Members::Slice`]: `start <= i < stop`, every `step`-th (a
/// positive step), as in Python's `start:stop:step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceDim {
    /// First index.
    pub start: i32,
    /// Past the last index.
    pub stop: i32,
    /// Stride (at least 1).
    pub step: i32,
}

impl SliceDim {
    /// `start..stop` with stride `step`.
    pub fn new(start: i32, stop: i32, step: i32) -> SliceDim {
        SliceDim { start, stop, step }
    }

    fn holds(&self, i: i32) -> bool {
        i >= self.start && i < self.stop && (i - self.start) % self.step == 0
    }
}

/// The section function of a language binding: given its bytes and an element, the
/// sections the element belongs to (negative numbers: none).
pub type SectionEval = fn(&[u8], RawProxy) -> std::result::Result<Vec<i64>, String>;

static SECTION_EVAL: OnceLock<SectionEval> = OnceLock::new();

/// Sets the evaluator of [`Members::Custom`] (once per process; later calls are
/// ignored). Not a public API: the Python package sets it.
#[doc(hidden)]
pub fn set_section_eval(f: SectionEval) {
    let _ = SECTION_EVAL.set(f);
}

/// The messages that build sections (see the module documentation).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum SecMsg {
    /// Work out the local members; travels the tree of all PEs rooted at the creator.
    Build {
        /// Id of section 0; section `s` is `base.seq + s`.
        base: CollId,
        /// Number of sections.
        n: u32,
        /// The collections and sections split.
        parts: Vec<CollId>,
        /// Which of their elements.
        members: Members,
        /// Whether this PE still forwards it (false when it replays a held copy).
        fwd: bool,
    },
    /// To the creator: the sections with members on `pe` (or why evaluating failed).
    Have { base: CollId, pe: PeId, secs: std::result::Result<Vec<u32>, String> },
    /// To a member PE: the member PEs of its sections.
    Install { base: CollId, secs: Vec<(u32, Vec<PeId>)> },
    /// To the creator: installed.
    Ack { base: CollId },
}

/// A build in progress, on its creator.
struct Build {
    n: u32,
    replies: u32,
    pes: Vec<Vec<PeId>>,
    acks_due: u32,
    error: Option<String>,
    done: Future<Vec<Option<PeId>>>,
}

/// Per-PE section state.
#[derive(Default)]
pub(crate) struct SecState {
    next: std::cell::Cell<u32>,
    /// Local members worked out by a build, until its install.
    staged: std::cell::RefCell<HashMap<CollId, Vec<ElemKey>>>,
    /// Builds this PE started.
    builds: std::cell::RefCell<HashMap<CollId, Build>>,
    /// Contributions of each local member to each section's reductions.
    seq: std::cell::RefCell<HashMap<(CollId, ElemKey), u32>>,
}

impl CollId {
    /// Whether this is the id of a section.
    #[inline]
    pub(crate) fn is_section(&self) -> bool {
        self.seq & SECTION_BIT != 0
    }
}

impl SecState {
    /// The next sequence number of `elem`'s contributions to section `sec`.
    pub(crate) fn next_seq(&self, sec: CollId, elem: ElemKey) -> u32 {
        let mut m = self.seq.borrow_mut();
        let s = m.entry((sec, elem)).or_insert(0);
        *s += 1;
        *s - 1
    }
}

/// Starts building `n` sections of `parts`: the id of section 0 and the future of the
/// root PE of each section (`None`: no members), set once every member PE is ready.
fn build(parts: Vec<CollId>, n: u32, members: Members) -> Result<(CollId, Future<Vec<Option<PeId>>>)> {
    with_pe(|pe| {
        let first = pe.sections.next.get();
        let Some(next) = first.checked_add(n).filter(|&x| x < SECTION_BIT) else {
            return Err(Error::Usage("too many sections created on this PE".into()));
        };
        pe.sections.next.set(next);
        let done = Future::<Vec<Option<PeId>>>::new();
        let base = CollId { pe: pe.id.0, seq: first | SECTION_BIT };
        pe.sections.builds.borrow_mut().insert(
            base,
            Build {
                n,
                replies: 0,
                pes: vec![Vec::new(); n as usize],
                acks_due: 0,
                error: None,
                done: done.clone(),
            },
        );
        let msg = SecMsg::Build { base, n, parts, members, fwd: true };
        pe.send(pe.id, Envelope::Sys(SysMsg::Section(msg)), 0);
        Ok((base, done))
    })
}

/// The collection or section a proxy names, for splitting.
fn part_of<P: Proxy>(proxy: &P) -> Result<CollId> {
    let raw = proxy.__raw();
    match (raw.home, raw.elem) {
        (Home::Section(_), _) | (Home::Single(_), _) | (_, None) => Ok(raw.coll),
        (_, Some(i)) => Err(Error::Usage(format!(
            "element {i} was given where a collection or section proxy is expected"
        ))),
    }
}

/// Waits for a build and makes its section proxies.
async fn finish<P: Proxy>(started: Result<(CollId, Future<Vec<Option<PeId>>>)>) -> Result<Vec<P>> {
    let (base, done) = started?;
    let roots = done.get().await?;
    Ok(roots
        .into_iter()
        .enumerate()
        .map(|(s, root)| {
            let coll = CollId { pe: base.pe, seq: base.seq + s as u32 };
            P::__from_raw(RawProxy { coll, home: Home::Section(root), elem: None })
        })
        .collect())
}

/// Splits the collection or section `proxy` names into `n` sections (Charm4py's
/// `charm.split`): `members` says which elements go where. Resolves once every PE
/// holding members is ready; store and reuse the sections, creating one costs a few
/// rounds of messages over all PEs.
///
/// Calling a method on a section proxy multicasts it to the members; elements take
/// part in its reductions with [`crate::Ctx::section_contribute`]. A section proxy
/// does not name single elements: call those through their collection's proxy.
///
/// ```
/// use charmrs::prelude::*;
/// use charmrs::{split, Members};
///
/// pub struct Cell;
/// #[chare]
/// impl Cell {
///     fn new() -> Self { Cell }
///     fn row(&self, ctx: &Ctx<Self>) -> i32 { ctx.this_index()[0] }
/// }
///
/// fn main() {
///     charmrs::start(|_| async {
///         let a = Array::<Cell>::new([4, 4], ()).await.unwrap();
///         let rows: Vec<Vec<Index>> =
///             (0..4).map(|r| (0..4).map(|c| Index::from([r, c])).collect()).collect();
///         let secs = split(&a, 4, Members::Elems(rows)).await.unwrap();
///         assert_eq!(secs[2].row().ret_all().await.unwrap(), vec![2; 4]);
///         charmrs::exit(0);
///     })
/// }
/// ```
pub fn split<P: Proxy + 'static>(
    proxy: &P,
    n: u32,
    members: Members,
) -> impl std::future::Future<Output = Result<Vec<P>>> + 'static {
    let started = part_of(proxy).and_then(|part| {
        if n == 0 {
            return Err(Error::Usage("split into 0 sections".into()));
        }
        if matches!(members, Members::All | Members::Slice(_)) && n != 1 {
            return Err(Error::Usage("Members::All and Members::Slice describe one section".into()));
        }
        if let Members::Slice(dims) = &members {
            if dims.iter().any(|d| d.step < 1) {
                return Err(Error::Usage("a section slice has a step of at least 1".into()));
            }
        }
        if let Members::Elems(l) = &members {
            if l.len() != n as usize {
                return Err(Error::Usage(format!("{} element lists for {n} sections", l.len())));
            }
        }
        build(vec![part], n, members)
    });
    finish(started)
}

/// One section of the collection or section `proxy` names: [`split`] into one.
pub fn section<P: Proxy + 'static>(
    proxy: &P,
    members: Members,
) -> impl std::future::Future<Output = Result<P>> + 'static {
    let s = split(proxy, 1, members);
    async move { Ok(s.await?.remove(0)) }
}

/// One section made of every element of `proxies` (collections or sections; Charm4py's
/// `charm.combine`): a multicast reaches each of them, a reduction combines all.
pub fn combine<P: Proxy + 'static>(proxies: &[P]) -> impl std::future::Future<Output = Result<P>> + 'static {
    let started = proxies.iter().map(part_of).collect::<Result<Vec<_>>>().and_then(|parts| {
        if parts.is_empty() {
            Err(Error::Usage("combine of no proxies".into()))
        } else {
            build(parts, 1, Members::All)
        }
    });
    let f = finish::<P>(started);
    async move { Ok(f.await?.remove(0)) }
}

/// Handles a section message on this PE.
pub(crate) fn handle(pe: &Rc<PeLocal>, msg: SecMsg) {
    match msg {
        SecMsg::Build { base, n, parts, members, fwd } => on_build(pe, base, n, parts, members, fwd),
        SecMsg::Have { base, pe: from, secs } => on_have(pe, base, from, secs),
        SecMsg::Install { base, secs } => on_install(pe, base, secs),
        SecMsg::Ack { base } => on_ack(pe, base),
    }
}

fn on_build(pe: &Rc<PeLocal>, base: CollId, n: u32, parts: Vec<CollId>, members: Members, fwd: bool) {
    let creator = PeId(base.pe);
    if fwd {
        for child in pe.shared.span.children(creator, pe.id) {
            let copy = SecMsg::Build { base, n, parts: parts.clone(), members: members.clone(), fwd: true };
            pe.send(child, Envelope::Sys(SysMsg::Section(copy)), 0);
        }
    }
    // The candidates: the local elements of each part, once.
    let mut seen = HashSet::default();
    let mut cands: Vec<ElemKey> = Vec::new();
    for &part in &parts {
        match pe.coll(part) {
            Some(info) => {
                let keys: Box<dyn Iterator<Item = ElemKey>> = if part.is_section() {
                    Box::new(info.members.iter().copied())
                } else {
                    Box::new(info.local.iter().map(|&index| ElemKey { coll: part, index }))
                };
                cands.extend(keys.filter(|k| seen.insert(*k)));
            }
            // A section this PE holds no member of.
            None if part.is_section() => {}
            // A collection whose creation has not arrived: wait for it.
            None => {
                let again = SecMsg::Build { base, n, parts, members, fwd: false };
                pe.hold_for_coll(part, Envelope::Sys(SysMsg::Section(again)));
                return;
            }
        }
    }
    let secs = local_members(pe, n, &members, &cands).map(|lists| {
        let mut have = Vec::new();
        let mut staged = pe.sections.staged.borrow_mut();
        for (s, list) in lists.into_iter().enumerate() {
            if !list.is_empty() {
                have.push(s as u32);
                staged.insert(CollId { pe: base.pe, seq: base.seq + s as u32 }, list);
            }
        }
        have
    });
    pe.send(creator, Envelope::Sys(SysMsg::Section(SecMsg::Have { base, pe: pe.id, secs })), 0);
}

/// The members of each section among `cands`.
fn local_members(
    pe: &Rc<PeLocal>,
    n: u32,
    members: &Members,
    cands: &[ElemKey],
) -> std::result::Result<Vec<Vec<ElemKey>>, String> {
    // A migrated element is not where its home's lists say (sections follow the homes,
    // and members do not migrate): refused rather than silently left out.
    if let Some(k) = cands.iter().find(|k| pe.elem(k).is_none()) {
        return Err(format!(
            "element {} has migrated away from PE {}: sections of migrated elements are not supported",
            k.index, pe.id
        ));
    }
    let Members::Custom(bytes) = members else { return Ok(select(n, members, cands)) };
    let Some(eval) = SECTION_EVAL.get() else {
        return Err("no section function evaluator in this process".into());
    };
    let mut lists = vec![Vec::new(); n as usize];
    for k in cands {
        let Some(elem) = pe.elem(k) else { continue };
        let raw = RawProxy { coll: k.coll, home: elem.meta().home, elem: Some(k.index) };
        let mut ss = eval(bytes, raw)?;
        ss.sort_unstable();
        ss.dedup();
        for s in ss.into_iter().filter(|&s| s >= 0) {
            let Some(list) = lists.get_mut(s as usize) else {
                return Err(format!("element {} was put in section {s} of {n}", k.index));
            };
            list.push(*k);
        }
    }
    Ok(lists)
}

/// The members of each of `n` sections among `cands`, for the descriptions that need no
/// evaluator (`Custom` selects nothing here).
fn select(n: u32, members: &Members, cands: &[ElemKey]) -> Vec<Vec<ElemKey>> {
    let mut lists = vec![Vec::new(); n as usize];
    match members {
        Members::All => lists[0] = cands.to_vec(),
        Members::Slice(dims) => {
            lists[0] = cands
                .iter()
                .filter(|k| {
                    let i = k.index.as_slice();
                    i.len() == dims.len() && i.iter().zip(dims).all(|(&x, d)| d.holds(x))
                })
                .copied()
                .collect()
        }
        Members::Elems(per_sec) => {
            let mut where_: HashMap<Index, Vec<usize>> = HashMap::default();
            for (s, l) in per_sec.iter().enumerate() {
                for &i in l {
                    where_.entry(i).or_default().push(s);
                }
            }
            for k in cands {
                if let Some(ss) = where_.get(&k.index) {
                    for &s in ss {
                        if lists[s].last() != Some(k) {
                            lists[s].push(*k);
                        }
                    }
                }
            }
        }
        Members::Custom(_) => {}
    }
    lists
}

fn on_have(pe: &Rc<PeLocal>, base: CollId, from: PeId, secs: std::result::Result<Vec<u32>, String>) {
    let mut builds = pe.sections.builds.borrow_mut();
    let Some(b) = builds.get_mut(&base) else {
        crate::chare::invoke::fatal("a reply to an unknown section build")
    };
    b.replies += 1;
    match secs {
        Ok(secs) => {
            for s in secs {
                b.pes[s as usize].push(from);
            }
        }
        Err(e) => {
            b.error.get_or_insert(format!("section function on PE {from}: {e}"));
        }
    }
    if b.replies < pe.num_pes() {
        return;
    }
    if let Some(e) = b.error.take() {
        let b = builds.remove(&base).expect("present");
        b.done.fail(Error::Usage(e));
        return;
    }
    let mut per_pe: HashMap<PeId, Vec<(u32, Vec<PeId>)>> = HashMap::default();
    for (s, pes) in b.pes.iter_mut().enumerate() {
        pes.sort_unstable();
        for &p in pes.iter() {
            per_pe.entry(p).or_default().push((s as u32, pes.clone()));
        }
    }
    b.acks_due = per_pe.len() as u32;
    if per_pe.is_empty() {
        let b = builds.remove(&base).expect("present");
        b.done.send(vec![None; b.n as usize]);
        return;
    }
    drop(builds);
    for (p, secs) in per_pe {
        pe.send(p, Envelope::Sys(SysMsg::Section(SecMsg::Install { base, secs })), 0);
    }
}

fn on_install(pe: &Rc<PeLocal>, base: CollId, secs: Vec<(u32, Vec<PeId>)>) {
    for (s, pes) in secs {
        let sid = CollId { pe: base.pe, seq: base.seq + s };
        let Some(members) = pe.sections.staged.borrow_mut().remove(&sid) else {
            crate::chare::invoke::fatal(&format!("section {sid} installed on PE {} without members", pe.id))
        };
        let red = crate::collection::red_place(pe, &pes);
        let info = CollInfo {
            kind: Kind::Section,
            local: Vec::new(),
            members,
            red: Some(red),
            sparse: None,
            ctor: None,
            locs: Default::default(),
        };
        pe.colls.borrow_mut().insert(sid, Rc::new(info));
        let held = pe.pending_in.borrow_mut().remove(&sid).unwrap_or_default();
        for env in held {
            crate::pe::worker::handle(pe, env);
        }
    }
    pe.send(PeId(base.pe), Envelope::Sys(SysMsg::Section(SecMsg::Ack { base })), 0);
}

fn on_ack(pe: &Rc<PeLocal>, base: CollId) {
    let mut builds = pe.sections.builds.borrow_mut();
    let Some(b) = builds.get_mut(&base) else {
        crate::chare::invoke::fatal("an ack of an unknown section build")
    };
    b.acks_due -= 1;
    if b.acks_due == 0 {
        let b = builds.remove(&base).expect("present");
        b.done.send(b.pes.iter().map(|p| p.first().copied()).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_hold_what_python_slices_hold() {
        let d = SliceDim::new(1, 8, 3);
        let held: Vec<i32> = (0..10).filter(|&i| d.holds(i)).collect();
        assert_eq!(held, (1..8).step_by(3).collect::<Vec<_>>());
    }

    fn keys(shape: &Index, coll: CollId) -> Vec<ElemKey> {
        (0..shape.volume()).map(|l| ElemKey { coll, index: Index::delinearize(l, shape) }).collect()
    }

    proptest::proptest! {
        #[test]
        fn elems_select_exactly_the_listed_elements(
            rows in 1i32..6, cols in 1i32..6, n in 1u32..4,
            picks in proptest::collection::vec((0u32..4, 0i32..6, 0i32..6), 0..40),
        ) {
            let shape = Index::from([rows, cols]);
            let coll = CollId { pe: 0, seq: 0 };
            let cands = keys(&shape, coll);
            let mut lists = vec![Vec::new(); n as usize];
            for &(s, r, c) in &picks {
                lists[(s % n) as usize].push(Index::from([r, c]));
            }
            let got = select(n, &Members::Elems(lists.clone()), &cands);
            for s in 0..n as usize {
                let want: Vec<ElemKey> = cands.iter().filter(|k| lists[s].contains(&k.index)).copied().collect();
                proptest::prop_assert_eq!(&got[s], &want);
            }
        }

        #[test]
        fn slices_select_what_python_slicing_selects(
            rows in 1i32..7, cols in 1i32..7,
            (r0, r1, rs) in (0i32..7, 0i32..8, 1i32..4), (c0, c1, cs) in (0i32..7, 0i32..8, 1i32..4),
        ) {
            let shape = Index::from([rows, cols]);
            let cands = keys(&shape, CollId { pe: 1, seq: 2 });
            let dims = vec![SliceDim::new(r0, r1, rs), SliceDim::new(c0, c1, cs)];
            let got = select(1, &Members::Slice(dims), &cands);
            let want: Vec<ElemKey> = cands
                .iter()
                .filter(|k| (r0..r1).step_by(rs as usize).any(|r| r == k.index[0])
                    && (c0..c1).step_by(cs as usize).any(|c| c == k.index[1]))
                .copied()
                .collect();
            proptest::prop_assert_eq!(&got[0], &want);
        }
    }

    #[test]
    fn section_ids_are_apart_from_collection_ids() {
        assert!(CollId { pe: 0, seq: SECTION_BIT | 3 }.is_section());
        assert!(!CollId { pe: 0, seq: 3 }.is_section());
    }
}

//! Sparse arrays: created empty, filled by dynamic insertion (Charm4py's `Array(C,
//! ndims=k)`, `ckInsert`, `ckDoneInserting`).
//!
//! **Where an element is.** Every index has a *home* PE, given by the array's map
//! (evaluated with an all-zero shape: a sparse array has no bounds; the default map
//! hashes the index). An element is inserted on its home PE, or on a PE the inserter
//! chooses; then its PE tells the home (`Located`). A call goes to the home, which runs
//! it, forwards it to the element's PE, or keeps it until the element is inserted; a
//! PE also keeps calls for elements whose insertion has not reached it yet. Calls from
//! one PE to one element stay in order: a PE forwards what it kept, in order, before
//! anything that arrives later.
//!
//! An element may migrate afterwards: the PE it was inserted on is its home for
//! migration (see `collection::migrate`), which the index's hash home forwards to.
//!
//! **Broadcasts** made before `done_inserting` reach the elements inserted later
//! too: each PE keeps the broadcasts it received until the freeze and delivers them,
//! in order, to each element inserted there after its constructor (as Charm++ brings
//! late elements up to date). So every element sees the same broadcasts, and
//! reductions started by broadcasts include every element, whenever it was inserted.
//!
//! Reductions also need to know which PEs hold elements. `done_inserting` (Charm4py's
//! `ckDoneInserting`) freezes the membership: it asks every PE for its counts of
//! insertions sent and elements created (`Count` / `Counted`), again until the sums
//! agree (no insertion in flight), then tells every PE the member PEs (`Freeze`);
//! its future completes once every PE has its place in the reduction tree
//! (`Frozen`). Contributions made before that wait on their PE and go up the tree
//! then. Inserting after `done_inserting` is refused.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};

use crate::chare::invoke::{fatal, Invoke, Target};
use crate::chare::proxy::Home;
use crate::chare::registry::{EntryDesc, EpId};
use crate::chare::ElemMeta;
use crate::collection::{ArrayMap, CollId, CollInfo, ElemKey, Index, RedPlace};
use crate::error::Error;
use crate::future::Future;
use crate::msg::{Args, Envelope, Payload, Reply};
use crate::pe::{PeId, PeLocal, SysMsg};
use crate::reduction::{PartialMsg, RedKey};

/// The default placement of a sparse array: a hash of the index, spread over the PEs.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct HashMapping;

impl ArrayMap for HashMapping {
    fn pe_of(&self, index: &Index, _shape: &Index, num_pes: u32) -> PeId {
        // FNV-1a over the coordinates: the same on every PE and process.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &c in index.as_slice() {
            for b in c.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        PeId((h % num_pes.max(1) as u64) as u32)
    }
}

/// The messages of sparse arrays (insertions themselves are [`SysMsg::Insert`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum SparseMsg {
    /// To an element's home: the element lives on `pe`.
    Located { coll: CollId, index: Index, pe: PeId },
    /// Down the tree of all PEs from `root`: report your counts.
    Count { coll: CollId, root: PeId, round: u32 },
    /// To the root: this PE's counts.
    Counted { coll: CollId, round: u32, pe: PeId, has: bool, sent: u64, created: u64 },
    /// Down the tree from `root`: the PEs that hold elements.
    Freeze { coll: CollId, root: PeId, members: Vec<PeId> },
    /// To the root: frozen here.
    Frozen { coll: CollId },
    /// To the creator: the (empty) array exists on this PE; `done` is the creation's
    /// future, completed once every PE has it.
    Ready { coll: CollId, done: crate::future::FutureId },
}

/// A `done_inserting` in progress, on the PE that called it.
struct Closing {
    round: u32,
    replies: u32,
    has: Vec<PeId>,
    sent: u64,
    created: u64,
    acks: u32,
    done: Future<()>,
}

/// A broadcast kept for elements inserted later.
struct PastBcast {
    ep: EpId,
    reply: Reply,
    args: Arc<dyn std::any::Any + Send + Sync>,
}

/// What a PE keeps of a sparse array.
pub(crate) struct SparseLocal {
    /// Number of dimensions of the indexes.
    pub(crate) dims: usize,
    /// The elements created on this PE, in order.
    pub(crate) local: RefCell<Vec<Index>>,
    /// The broadcasts received before the freeze, for elements inserted later.
    past: RefCell<Vec<PastBcast>>,
    /// Of the indexes this PE is home of: where their elements live.
    located: RefCell<HashMap<Index, PeId>>,
    /// Calls for elements not inserted (or not located) yet, in arrival order.
    waiting: RefCell<HashMap<Index, Vec<Envelope>>>,
    /// Insertions sent from this PE, elements created on it.
    sent: Cell<u64>,
    created: Cell<u64>,
    /// The reduction tree place, once frozen (`None` inside: no element here).
    pub(crate) frozen: RefCell<Option<Option<Rc<RedPlace>>>>,
    /// Contributions made before the freeze: `(key, partial, from a child)`.
    held: RefCell<Vec<(RedKey, PartialMsg, bool)>>,
    closing: RefCell<Option<Closing>>,
    /// On the creator: PEs that have the array.
    ready: Cell<u32>,
}

impl SparseLocal {
    /// The state of a new, empty sparse array of `dims`-d indexes.
    pub(crate) fn new(dims: usize) -> SparseLocal {
        SparseLocal {
            dims,
            local: RefCell::new(Vec::new()),
            past: RefCell::new(Vec::new()),
            located: RefCell::new(HashMap::default()),
            waiting: RefCell::new(HashMap::default()),
            sent: Cell::new(0),
            created: Cell::new(0),
            frozen: RefCell::new(None),
            held: RefCell::new(Vec::new()),
            closing: RefCell::new(None),
            ready: Cell::new(0),
        }
    }

    /// Notes a broadcast received before the freeze (for elements inserted later).
    pub(crate) fn keep_bcast(&self, ep: EpId, reply: Reply, args: &Arc<dyn std::any::Any + Send + Sync>) {
        if self.frozen.borrow().is_none() {
            self.past.borrow_mut().push(PastBcast { ep, reply, args: Arc::clone(args) });
        }
    }

    /// Keeps a contribution until the freeze; `None` if kept, the contribution back if
    /// frozen (go on). Notes that a local element began reduction `key`.
    pub(crate) fn hold(
        &self,
        key: RedKey,
        partial: PartialMsg,
        from_child: bool,
    ) -> Option<(PartialMsg, bool)> {
        if self.frozen.borrow().is_some() {
            return Some((partial, from_child));
        }
        self.held.borrow_mut().push((key, partial, from_child));
        None
    }
}

/// The home PE of `index` in array `info` (its map at an all-zero shape).
pub(crate) fn home_of(info: &CollInfo, index: &Index, n: u32) -> Option<PeId> {
    let (crate::collection::Kind::Sparse { map, .. }, Some(s)) = (&info.kind, &info.sparse) else {
        return None;
    };
    if index.dims() != s.dims {
        return None;
    }
    let zeros = Index::new(&vec![0; s.dims]);
    Some(map.pe_of(index, &zeros, n))
}

/// Inserts element `index` of sparse array `coll` on PE `on` (its home if `None`),
/// built by constructor `ctor` with `args`.
pub(crate) fn insert(
    pe: &Rc<PeLocal>,
    coll: CollId,
    index: Index,
    on: Option<PeId>,
    ctor: &'static EntryDesc,
    args: Arc<dyn std::any::Any + Send + Sync>,
) -> Result<(), Error> {
    let Some(info) = pe.coll(coll) else {
        // The array's creation has not reached this PE: insert once it has.
        pe.hold_for_coll(coll, Envelope::Sys(SysMsg::InsertLater { coll, index, on, ctor, args }));
        return Ok(());
    };
    let Some(s) = &info.sparse else {
        return Err(Error::Usage(
            "insert into an array created with bounds: only sparse arrays take insertions".into(),
        ));
    };
    if s.frozen.borrow().is_some() || s.closing.borrow().is_some() {
        return Err(Error::Usage(format!("insert of element {index} after done_inserting")));
    }
    let n = pe.num_pes();
    let Some(home) = home_of(&info, &index, n) else {
        return Err(Error::Usage(format!("element {index} of a sparse array of {}-d indexes", s.dims)));
    };
    let to = on.unwrap_or(home);
    if to.0 >= n {
        return Err(Error::Usage(format!("insert on PE {to}: the job has {n} PEs")));
    }
    s.sent.set(s.sent.get() + 1);
    pe.send(to, Envelope::Sys(SysMsg::Insert { coll, index, ctor, args, home }), 0);
    Ok(())
}

/// An insertion arrives: make the element, tell its home, run what waited for it.
pub(crate) fn on_insert(
    pe: &Rc<PeLocal>,
    coll: CollId,
    index: Index,
    ctor: &'static EntryDesc,
    args: Arc<dyn std::any::Any + Send + Sync>,
    home: PeId,
) {
    let Some(info) = pe.coll(coll) else {
        pe.hold_for_coll(coll, Envelope::Sys(SysMsg::Insert { coll, index, ctor, args, home }));
        return;
    };
    let Some(s) = &info.sparse else { fatal("an insertion into an array with bounds") };
    let key = ElemKey { coll, index };
    if pe.elem(&key).is_some() {
        fatal(&format!("element {index} of a {} array was inserted twice", ctor.chare()));
    }
    let meta = ElemMeta::new(key, Home::Array);
    ctor.invoke(Invoke {
        pe,
        target: Target::New(meta),
        desc: ctor,
        args: Args::Shared(args),
        reply: Reply::None,
    });
    s.local.borrow_mut().push(index);
    // The broadcasts it missed, in order.
    let past: Vec<(EpId, Reply, Arc<dyn std::any::Any + Send + Sync>)> =
        s.past.borrow().iter().map(|b| (b.ep, b.reply, Arc::clone(&b.args))).collect();
    if let Some(elem) = pe.elem(&key) {
        for (ep, reply, args) in past {
            let Some(desc) = crate::chare::registry::entry(ep) else {
                fatal("a kept broadcast of an unknown method")
            };
            let env = Envelope::Call { coll, index, ep, reply, args: Args::Shared(args) };
            crate::chare::invoke::deliver(pe, &elem, desc, env);
        }
    }
    s.created.set(s.created.get() + 1);
    if home == pe.id {
        s.located.borrow_mut().insert(index, pe.id);
    } else {
        let msg = SparseMsg::Located { coll, index, pe: pe.id };
        pe.send(home, Envelope::Sys(SysMsg::Sparse(msg)), 0);
    }
    let waiting = s.waiting.borrow_mut().remove(&index).unwrap_or_default();
    for env in waiting {
        crate::pe::worker::handle(pe, env);
    }
}

/// A call for an element of a sparse array that is not on this PE: forward it to
/// where the element lives, or keep it until the element is inserted or located.
pub(crate) fn route(pe: &Rc<PeLocal>, info: &CollInfo, env: Envelope) {
    let Envelope::Call { index, .. } = &env else { unreachable!("calls only") };
    let index = *index;
    let s = info.sparse.as_ref().expect("a sparse array");
    // Inserted here, then migrated: forwarded like an element of a dense array.
    let Err(env) = crate::collection::migrate::try_route(info, pe, env) else { return };
    let n = pe.num_pes();
    let home = home_of(info, &index, n);
    if home == Some(pe.id) {
        let at = s.located.borrow().get(&index).copied();
        if let Some(to) = at.filter(|&p| p != pe.id) {
            pe.send(to, env, 0);
            return;
        }
    }
    if home.is_none() {
        fatal(&format!("a call to element {index} of a sparse array of {}-d indexes", s.dims));
    }
    s.waiting.borrow_mut().entry(index).or_default().push(env);
}

/// Starts `done_inserting` from this PE.
pub(crate) fn done_inserting(pe: &Rc<PeLocal>, coll: CollId) -> Future<()> {
    let done = Future::<()>::new();
    if pe.coll(coll).is_none() {
        // After the insertions made here, which wait for the creation too.
        let later = done.clone();
        let run = move || crate::pe::with_pe(|pe| start_closing(pe, coll, later));
        pe.hold_for_coll(coll, Envelope::Sys(SysMsg::Run(Box::new(run))));
        return done;
    }
    start_closing(pe, coll, done.clone());
    done
}

/// Starts counting insertions for `done_inserting` (the array is known here).
fn start_closing(pe: &Rc<PeLocal>, coll: CollId, done: Future<()>) {
    let Some(info) = pe.coll(coll) else { fatal("done_inserting on an unknown array") };
    let Some(s) = &info.sparse else {
        done.fail(Error::Usage("done_inserting on an array created with bounds".into()));
        return;
    };
    if s.closing.borrow().is_some() || s.frozen.borrow().is_some() {
        done.fail(Error::Usage("done_inserting called twice on one array".into()));
        return;
    }
    *s.closing.borrow_mut() = Some(Closing {
        round: 0,
        replies: 0,
        has: Vec::new(),
        sent: 0,
        created: 0,
        acks: 0,
        done: done.clone(),
    });
    let msg = SparseMsg::Count { coll, root: pe.id, round: 0 };
    pe.send(pe.id, Envelope::Sys(SysMsg::Sparse(msg)), 0);
}

fn sparse_of(pe: &Rc<PeLocal>, coll: CollId) -> Rc<CollInfo> {
    match pe.coll(coll) {
        Some(info) if info.sparse.is_some() => info,
        _ => fatal("a sparse-array message for an unknown array"),
    }
}

/// Handles a sparse-array message.
pub(crate) fn handle(pe: &Rc<PeLocal>, msg: SparseMsg) {
    let coll = match &msg {
        SparseMsg::Located { coll, .. }
        | SparseMsg::Count { coll, .. }
        | SparseMsg::Counted { coll, .. }
        | SparseMsg::Freeze { coll, .. }
        | SparseMsg::Frozen { coll }
        | SparseMsg::Ready { coll, .. } => *coll,
    };
    if pe.coll(coll).is_none() {
        pe.hold_for_coll(coll, Envelope::Sys(SysMsg::Sparse(msg)));
        return;
    }
    let info = sparse_of(pe, coll);
    let s = info.sparse.as_ref().expect("sparse");
    match msg {
        SparseMsg::Located { index, pe: at, .. } => {
            if s.located.borrow_mut().insert(index, at).is_some() {
                fatal(&format!("element {index} of a sparse array was inserted twice"));
            }
            let waiting = s.waiting.borrow_mut().remove(&index).unwrap_or_default();
            for env in waiting {
                pe.send(at, env, 0);
            }
        }
        SparseMsg::Count { root, round, .. } => {
            for child in pe.shared.span.children(root, pe.id) {
                let m = SparseMsg::Count { coll, root, round };
                pe.send(child, Envelope::Sys(SysMsg::Sparse(m)), 0);
            }
            let has = !s.local.borrow().is_empty();
            let m = SparseMsg::Counted {
                coll,
                round,
                pe: pe.id,
                has,
                sent: s.sent.get(),
                created: s.created.get(),
            };
            pe.send(root, Envelope::Sys(SysMsg::Sparse(m)), 0);
        }
        SparseMsg::Counted { round, pe: from, has, sent, created, .. } => {
            let mut closing = s.closing.borrow_mut();
            let Some(c) = closing.as_mut().filter(|c| c.round == round) else { return };
            c.replies += 1;
            c.sent += sent;
            c.created += created;
            if has {
                c.has.push(from);
            }
            if c.replies < pe.num_pes() {
                return;
            }
            if c.sent != c.created {
                // Insertions still in flight: count again.
                c.round += 1;
                let m = SparseMsg::Count { coll, root: pe.id, round: c.round };
                *c = Closing {
                    round: c.round,
                    replies: 0,
                    has: Vec::new(),
                    sent: 0,
                    created: 0,
                    acks: 0,
                    done: c.done.clone(),
                };
                pe.send(pe.id, Envelope::Sys(SysMsg::Sparse(m)), 0);
                return;
            }
            c.has.sort_unstable();
            let members = c.has.clone();
            drop(closing);
            let m = SparseMsg::Freeze { coll, root: pe.id, members };
            pe.send(pe.id, Envelope::Sys(SysMsg::Sparse(m)), 0);
        }
        SparseMsg::Freeze { root, members, .. } => {
            for child in pe.shared.span.children(root, pe.id) {
                let m = SparseMsg::Freeze { coll, root, members: members.clone() };
                pe.send(child, Envelope::Sys(SysMsg::Sparse(m)), 0);
            }
            let place =
                members.binary_search(&pe.id).is_ok().then(|| crate::collection::red_place(pe, &members));
            *s.frozen.borrow_mut() = Some(place);
            s.past.borrow_mut().clear();
            let held = std::mem::take(&mut *s.held.borrow_mut());
            for (key, partial, from_child) in held {
                crate::reduction::replay(pe, key, partial, from_child);
            }
            pe.send(root, Envelope::Sys(SysMsg::Sparse(SparseMsg::Frozen { coll })), 0);
        }
        SparseMsg::Ready { done, .. } => {
            s.ready.set(s.ready.get() + 1);
            if s.ready.get() == pe.num_pes() {
                Future::<()>::from_id(done).complete(Ok(()));
            }
        }
        SparseMsg::Frozen { .. } => {
            let mut closing = s.closing.borrow_mut();
            let Some(c) = closing.as_mut() else { fatal("an unexpected Frozen message") };
            c.acks += 1;
            if c.acks == pe.num_pes() {
                let c = closing.take().expect("closing");
                c.done.send(());
            }
        }
    }
}

/// Inserts with a typed constructor (used by [`crate::Proxy::insert`]).
pub(crate) fn insert_typed<A: Payload>(
    coll: CollId,
    index: Index,
    on: Option<PeId>,
    ctor: &'static EntryDesc,
    args: A,
) -> Result<(), Error> {
    crate::pe::with_pe(|pe| insert(pe, coll, index, on, ctor, Arc::new(args)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_mapping_spreads_and_stays_in_range() {
        let zeros = Index::from([0, 0]);
        let mut per = [0u32; 4];
        for i in 0..40 {
            for j in 0..10 {
                let p = HashMapping.pe_of(&Index::from([i, j]), &zeros, 4);
                per[p.0 as usize] += 1;
            }
        }
        assert!(per.iter().all(|&c| c > 50), "{per:?}");
        assert_eq!(HashMapping.pe_of(&Index::from(7), &Index::from(0), 1), PeId(0));
    }
}

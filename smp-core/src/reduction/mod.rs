//! Reductions: contributions are combined on each PE first, then one message per PE
//! goes up a k-ary tree over the PEs that hold elements of the collection; the root
//! delivers the result to a future, an entry method, or (allreduce) every element.
//! Reductions are told apart by (collection, sequence number): every element counts its
//! contributions, so several reductions in flight never mix, and the root delivers
//! them in order.

mod reducer;
mod tree;

pub use reducer::{Bitwise, Logical, Numeric, Reducer};
pub(crate) use tree::Span;

use std::any::Any;
use std::cell::RefCell;
use std::collections::BTreeMap;

// Fx: the keys are the runtime's own ids, never attacker-controlled, and SipHash
// would cost more than the rest of a local message dispatch.
use rustc_hash::FxHashMap as HashMap;
use std::rc::Rc;
use std::sync::Arc;

use reducer::Acc;

use std::any::type_name;

use crate::msg::wire::Encoded;

use crate::chare::invoke::fatal;
use crate::chare::{Call, ElemMeta, Proxy};
use crate::collection::CollId;
use crate::error::Error;
use crate::future::{Future, FutureId};
use crate::msg::{Envelope, Payload};
use crate::pe::{with_pe, PeId, PeLocal, SysMsg};

/// Which reduction of a collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub(crate) enum Stream {
    /// The n-th reduction the elements started (`contribute`, `allreduce`).
    User(u32),
    /// Completion of a broadcast awaited (or with return values) through this future;
    /// also the creation of the collection.
    Bcast(FutureId),
    /// The n-th load-balancing sync of an array's elements (`at_sync`).
    Sync(u32),
}

/// Identifies a reduction in the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub(crate) struct RedKey {
    /// Collection.
    pub(crate) coll: CollId,
    /// Which of its reductions.
    pub(crate) stream: Stream,
}

/// Where a reduction's result goes.
pub struct RedTarget<R> {
    kind: TargetKind<R>,
}

enum TargetKind<R> {
    Future(FutureId),
    Call(Arc<dyn Fn(R) + Send + Sync>),
    All,
}

impl<R> Clone for TargetKind<R> {
    fn clone(&self) -> Self {
        match self {
            TargetKind::Future(f) => TargetKind::Future(*f),
            TargetKind::Call(c) => TargetKind::Call(Arc::clone(c)),
            TargetKind::All => TargetKind::All,
        }
    }
}

impl<R: Payload> RedTarget<R> {
    /// Send the result to an entry method taking it as its one argument: on one element
    /// or broadcast, e.g. `RedTarget::call(proxy.elem(0), WorkerProxy::collect)`.
    pub fn call<P: Proxy, X: 'static>(proxy: P, method: fn(&P, R) -> Call<X>) -> RedTarget<R> {
        RedTarget {
            kind: TargetKind::Call(Arc::new(move |r| {
                let _fire_and_forget = method(&proxy, r);
            })),
        }
    }

    /// Send the result to a closure, run on the PE where the reduction ends (for
    /// targets only known at run time, such as a language binding's callbacks).
    pub fn from_fn(f: impl Fn(R) + Send + Sync + 'static) -> RedTarget<R> {
        RedTarget { kind: TargetKind::Call(Arc::new(f)) }
    }

    pub(crate) fn from_id(id: FutureId) -> RedTarget<R> {
        RedTarget { kind: TargetKind::Future(id) }
    }

    /// Delivers a result outside a reduction (quiescence detection).
    pub(crate) fn deliver(self, result: crate::Result<R>) {
        match self.kind {
            TargetKind::Future(id) => Future::<R>::from_id(id).complete(result),
            TargetKind::Call(f) => match result {
                Ok(r) => f(r),
                Err(e) => fatal(&format!("callback failed: {e}")),
            },
            TargetKind::All => fatal("an allreduce target outside a reduction"),
        }
    }

    /// Every element gets the result in its own future (allreduce).
    pub(crate) fn all(fut: Future<R>) -> RedTarget<R> {
        with_pe(|pe| pe.reds.pending_all.borrow_mut().push(fut.id()));
        RedTarget { kind: TargetKind::All }
    }
}

impl<R: Payload> From<Future<R>> for RedTarget<R> {
    fn from(f: Future<R>) -> Self {
        RedTarget::from_id(f.id())
    }
}

impl<R: Payload> From<&Future<R>> for RedTarget<R> {
    fn from(f: &Future<R>) -> Self {
        RedTarget::from_id(f.id())
    }
}

/// A partial result on its way up the tree (type-erased).
pub(crate) type RedUp = Box<dyn Partial>;
/// An allreduce result on its way down: a [`TypedResult`] in the process that computed
/// it, [`Encoded`] after it crossed processes.
pub(crate) type RedResult = Arc<dyn AnyResult>;

/// A type-erased allreduce result that can serialize itself: a PE that forwards a
/// result it has no use for (all its elements migrated away) does not know its type.
pub(crate) trait AnyResult: Any + Send + Sync {
    /// The bytes for a PE of another process.
    fn encode(&self) -> Result<Encoded, String>;
    /// For downcasting.
    fn as_any(&self) -> &dyn Any;
}

/// An allreduce result of type `R`, in the process that computed or decoded it.
pub(crate) struct TypedResult<R>(pub(crate) Result<R, Error>);

impl<R: Payload> AnyResult for TypedResult<R> {
    fn encode(&self) -> Result<Encoded, String> {
        let mut bytes = Vec::new();
        crate::msg::wire::encode(&self.0, &mut bytes)?;
        Ok(Encoded(bytes.into()))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl AnyResult for Encoded {
    fn encode(&self) -> Result<Encoded, String> {
        Ok(Encoded(self.0.clone()))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Where a partial result comes from, besides its bytes.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct RedFrom {
    /// From an element that migrated away from this PE (its home): the PE it runs on,
    /// and whether it waits for an allreduce result. `None`: from a child PE.
    pub(crate) away: Option<(PeId, bool)>,
    /// PEs keeping a typed template of this reduction (they sent contributions from
    /// another process): whoever finishes it tells them to forget it, and a root
    /// left with bytes only asks the first of them to finish it.
    pub(crate) origins: Vec<PeId>,
}

/// Reduction messages besides partials and results.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) enum RedSys {
    /// From the root, which has no typed partial to decode them: finish the
    /// reduction with these serialized partials (see [`RedFrom::origins`]).
    Finish { key: RedKey, root: PeId, parts: Vec<Vec<u8>> },
    /// The reduction is finished: drop its template.
    Forget { key: RedKey },
}

/// A partial result in a message: typed when it comes from this process, bytes when it
/// comes from another (decoded by the typed partial it is merged into).
pub(crate) enum PartialMsg {
    /// From a PE of this process.
    Typed(RedUp),
    /// From another process: the serialized accumulator.
    Encoded(Box<[u8]>),
    /// From another process: several serialized accumulators that a PE could not
    /// decode (it had no typed partial of this reduction).
    Raw(Vec<Box<[u8]>>),
}

impl PartialMsg {
    /// Serializes the partial for a parent in another process.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            PartialMsg::Typed(p) => p.encode(out),
            PartialMsg::Encoded(b) => {
                out.extend_from_slice(b);
                Ok(())
            }
            PartialMsg::Raw(parts) => {
                for p in parts {
                    out.extend_from_slice(p);
                }
                Ok(())
            }
        }
    }

    /// The lengths of the parts of a [`PartialMsg::Raw`] (empty otherwise).
    pub(crate) fn part_lens(&self) -> Vec<u64> {
        match self {
            PartialMsg::Raw(parts) => parts.iter().map(|p| p.len() as u64).collect(),
            _ => Vec::new(),
        }
    }
}

/// Operations on a type-erased partial result.
pub(crate) trait Partial: Send {
    /// Folds another partial of the same reduction into this one.
    fn merge(&mut self, other: RedUp);
    /// Folds a partial that came from another process (its serialized accumulator).
    fn merge_encoded(&mut self, bytes: &[u8]) -> Result<(), String>;
    /// Serializes the accumulator for a parent in another process.
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), String>;
    /// Computes the result at the root and delivers it.
    fn finish(self: Box<Self>, pe: &Rc<PeLocal>, key: RedKey);
    /// Computes the result for root `root`, which could not (see [`RedSys::Finish`]):
    /// an allreduce result goes back to the root, to go down its tree.
    fn finish_for(self: Box<Self>, pe: &Rc<PeLocal>, key: RedKey, root: PeId);
    /// An empty partial of the same reduction (reducer and target, no value).
    fn template(&self) -> RedUp;
    /// For downcasting.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    /// For folding a contribution of a known type in place.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

struct Typed<T, R> {
    acc: Result<Acc<T>, Error>,
    reducer: Reducer<T, R>,
    target: TargetKind<R>,
}

// SAFETY-free Send: Acc<T>, Reducer (fn pointers) and the target (Send + Sync closure)
// are Send when T and R are (Payload implies Send).
impl<T: Payload, R: Payload> Partial for Typed<T, R> {
    fn merge(&mut self, other: RedUp) {
        let other = match other.into_any().downcast::<Typed<T, R>>() {
            Ok(o) => *o,
            Err(_) => fatal("elements of one collection contributed different types to one reduction"),
        };
        self.fold(other.acc);
    }

    fn merge_encoded(&mut self, bytes: &[u8]) -> Result<(), String> {
        let acc: Result<Acc<T>, Error> = crate::msg::wire::decode(bytes).map_err(|e| {
            format!(
                "a partial {} reduction from another process is not made of {}: {e}",
                self.reducer.name,
                std::any::type_name::<T>()
            )
        })?;
        let mine = std::mem::replace(&mut self.acc, Ok(Acc::Nothing));
        self.acc = match (mine, acc) {
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok(a), Ok(b)) => self.reducer.merge(a, b).map_err(Error::Reduction),
        };
        Ok(())
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), String> {
        crate::msg::wire::encode(&self.acc, out)
    }

    fn finish(self: Box<Self>, pe: &Rc<PeLocal>, key: RedKey) {
        let result = self.acc.and_then(|a| (self.reducer.finish)(a).map_err(Error::Reduction));
        match self.target {
            TargetKind::Future(id) => Future::<R>::from_id(id).complete(result),
            TargetKind::Call(f) => match result {
                Ok(r) => f(r),
                Err(e) => fatal(&format!("reduction to an entry method failed: {e}")),
            },
            TargetKind::All => {
                let result: RedResult = Arc::new(TypedResult(result));
                on_allreduce::<R>(pe, key, pe.id, result, true);
            }
        }
    }

    fn finish_for(self: Box<Self>, pe: &Rc<PeLocal>, key: RedKey, root: PeId) {
        if !matches!(self.target, TargetKind::All) {
            return self.finish(pe, key);
        }
        let result = self.acc.and_then(|a| (self.reducer.finish)(a).map_err(Error::Reduction));
        let result: RedResult = Arc::new(TypedResult(result));
        pe.send(root, Envelope::Sys(SysMsg::AllReduce { key, root, result, down: true }), 0);
    }

    fn template(&self) -> RedUp {
        Box::new(Typed { acc: Ok(Acc::Nothing), reducer: self.reducer, target: self.target.clone() })
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl<T: Payload, R: Payload> Typed<T, R> {
    /// Folds accumulator `other` (of this reduction) into this one.
    fn fold(&mut self, other: Result<Acc<T>, Error>) {
        let acc = std::mem::replace(&mut self.acc, Ok(Acc::Nothing));
        self.acc = match (acc, other) {
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok(a), Ok(b)) => self.reducer.merge(a, b).map_err(Error::Reduction),
        };
    }
}

/// Delivers an allreduce result to this PE's elements and, if `down`, forwards it down
/// the tree and to the PEs of migrated elements that wait for it.
fn on_allreduce<R: Payload>(pe: &Rc<PeLocal>, key: RedKey, root: PeId, result: RedResult, down: bool) {
    pe.reds.all_handlers.borrow_mut().remove(&key);
    let result: RedResult = match result.as_any().downcast_ref::<Encoded>() {
        Some(enc) => Arc::new(TypedResult(enc.decode::<Result<R, Error>>().unwrap_or_else(|e| {
            fatal(&format!("an allreduce result from another process is not a {}: {e}", type_name::<R>()))
        }))),
        None => result,
    };
    if down {
        pass_on(pe, key, root, &result);
    }
    let waiters = pe.reds.waiters.borrow_mut().remove(&key).unwrap_or_default();
    let r = &result.as_any().downcast_ref::<TypedResult<R>>().expect("allreduce result type").0;
    for w in waiters {
        Future::<R>::from_id(w).complete(r.clone());
    }
}

/// Sends an allreduce result down the tree, and to the PEs of this PE's migrated
/// elements that wait for it (which do not pass it on).
fn pass_on(pe: &Rc<PeLocal>, key: RedKey, root: PeId, result: &RedResult) {
    let Some(info) = pe.coll(key.coll) else { fatal("allreduce result for an unknown collection") };
    let away = pe.reds.remote_all.borrow_mut().remove(&key).unwrap_or_default();
    let down = info.place().map(|p| p.children.clone()).unwrap_or_default();
    // Serialized once, for the PEs in other processes only.
    let mut wire: Option<RedResult> = None;
    let sends = down.iter().map(|&p| (p, true)).chain(away.iter().map(|&p| (p, false)));
    for (to, down) in sends {
        let result = if pe.shared.is_local(to) {
            Arc::clone(result)
        } else {
            let w = wire.get_or_insert_with(|| match result.encode() {
                Ok(e) => Arc::new(e),
                Err(e) => fatal(&format!("an allreduce result does not serialize: {e}")),
            });
            Arc::clone(w)
        };
        pe.send(to, Envelope::Sys(SysMsg::AllReduce { key, root, result, down }), 0);
    }
}

/// Type-erased handler of an allreduce message: the closure knows `R`. A PE with no
/// waiting element (they all migrated away) passes the result on without decoding it.
pub(crate) fn handle_allreduce(pe: &Rc<PeLocal>, key: RedKey, root: PeId, result: RedResult, down: bool) {
    let deliver = pe.reds.all_handlers.borrow().get(&key).copied();
    match deliver {
        Some(f) => f(pe, key, root, result, down),
        None if down => pass_on(pe, key, root, &result),
        // A migrated element's copy, already delivered with the tree's.
        None => {}
    }
}

/// Delivers an allreduce result on one PE (knows the result type).
type AllReduceFn = fn(&Rc<PeLocal>, RedKey, PeId, RedResult, bool);

/// Per-PE reduction state.
pub(crate) struct ReductionTable {
    states: RefCell<HashMap<RedKey, State>>,
    /// Finished user reductions waiting for earlier ones (root only).
    finished: RefCell<BTreeMap<RedKey, (Done, Vec<PeId>)>>,
    next_user: RefCell<HashMap<CollId, u32>>,
    /// Futures of local elements waiting for an allreduce result.
    waiters: RefCell<HashMap<RedKey, Vec<FutureId>>>,
    /// The typed delivery function of each allreduce in progress here.
    all_handlers: RefCell<HashMap<RedKey, AllReduceFn>>,
    /// Set by `RedTarget::all` for the contribution being made.
    pending_all: RefCell<Vec<FutureId>>,
    /// Of allreduces in progress: the PEs of migrated elements (of this PE's home) that
    /// wait for the result.
    remote_all: RefCell<HashMap<RedKey, Vec<PeId>>>,
    /// Typed templates of reductions this PE sent contributions of migrated elements to
    /// another process for (see [`RedFrom::origins`]).
    templates: RefCell<HashMap<RedKey, RedUp>>,
}

struct State {
    acc: Option<RedUp>,
    /// Partials from other processes not decoded yet.
    raw: Vec<Box<[u8]>>,
    local: u32,
    children: u32,
    /// See [`RedFrom::origins`].
    origins: Vec<PeId>,
}

impl ReductionTable {
    /// Empty.
    pub(crate) fn new() -> ReductionTable {
        ReductionTable {
            states: RefCell::new(HashMap::default()),
            finished: RefCell::new(BTreeMap::new()),
            next_user: RefCell::new(HashMap::default()),
            waiters: RefCell::new(HashMap::default()),
            all_handlers: RefCell::new(HashMap::default()),
            pending_all: RefCell::new(Vec::new()),
            remote_all: RefCell::new(HashMap::default()),
            templates: RefCell::new(HashMap::default()),
        }
    }
}

/// An element contributes.
pub(crate) fn contribute<T: Payload, R: Payload>(
    meta: &ElemMeta,
    stream: Stream,
    value: Result<T, Error>,
    reducer: Reducer<T, R>,
    target: RedTarget<R>,
) {
    let key = RedKey { coll: meta.key.coll, stream };
    match meta.away.get() {
        None => contribute_to(key, meta.key.index, value, reducer, target),
        Some(home) => contribute_away(key, meta.key.index, home, value, reducer, target),
    }
}

/// An element that migrated away from its home PE contributes: through its home, so
/// that the reduction's membership (the tree over the home PEs) does not change.
fn contribute_away<T: Payload, R: Payload>(
    key: RedKey,
    index: crate::Index,
    home: PeId,
    value: Result<T, Error>,
    reducer: Reducer<T, R>,
    target: RedTarget<R>,
) {
    with_pe(|pe| {
        let all = matches!(target.kind, TargetKind::All);
        if all {
            let futs = std::mem::take(&mut *pe.reds.pending_all.borrow_mut());
            pe.reds.waiters.borrow_mut().entry(key).or_default().extend(futs);
            pe.reds.all_handlers.borrow_mut().insert(key, on_allreduce::<R>);
        }
        let acc = value.map(|v| reducer.lift(index, v));
        let partial: RedUp = Box::new(Typed { acc, reducer, target: target.kind });
        if !pe.shared.is_local(home) {
            pe.reds.templates.borrow_mut().entry(key).or_insert_with(|| partial.template());
        }
        let from = RedFrom { away: Some((pe.id, all)), origins: Vec::new() };
        pe.send(home, Envelope::Sys(SysMsg::Reduce { key, partial: PartialMsg::Typed(partial), from }), 0);
    })
}

/// An element of index `index` contributes to reduction `key` (of its collection or of
/// a section it belongs to).
pub(crate) fn contribute_to<T: Payload, R: Payload>(
    key: RedKey,
    index: crate::Index,
    value: Result<T, Error>,
    reducer: Reducer<T, R>,
    target: RedTarget<R>,
) {
    with_pe(|pe| {
        if matches!(target.kind, TargetKind::All) {
            let futs = std::mem::take(&mut *pe.reds.pending_all.borrow_mut());
            pe.reds.waiters.borrow_mut().entry(key).or_default().extend(futs);
            pe.reds.all_handlers.borrow_mut().insert(key, on_allreduce::<R>);
        }
        let acc = value.map(|v| reducer.lift(index, v));
        let Some(info) = pe.coll(key.coll) else { fatal("contribution to a collection unknown on this PE") };
        if info.sparse.is_some() {
            let partial: RedUp = Box::new(Typed { acc, reducer, target: target.kind });
            return add(pe, key, PartialMsg::Typed(partial), false, Vec::new());
        }
        // Folded in place into this PE's partial of the reduction when there is one (no
        // box per contribution: a broadcast's elements contribute one after another).
        fold(pe, &info, key, false, Vec::new(), |st| {
            match &mut st.acc {
                Some(p) => match p.as_any_mut().downcast_mut::<Typed<T, R>>() {
                    Some(t) => t.fold(acc),
                    None => p.merge(Box::new(Typed { acc, reducer, target: target.kind })),
                },
                None => st.acc = Some(Box::new(Typed { acc, reducer, target: target.kind })),
            }
            st.decode_raw();
        });
    })
}

/// A partial from a child PE, or from a migrated element of this PE's home, arrives
/// (the collection is known here).
pub(crate) fn on_child(pe: &Rc<PeLocal>, key: RedKey, partial: PartialMsg, from: RedFrom) {
    let mut origins = from.origins;
    match from.away {
        None => add(pe, key, partial, true, origins),
        Some((at, all)) => {
            if all {
                pe.reds.remote_all.borrow_mut().entry(key).or_default().push(at);
            }
            if !matches!(partial, PartialMsg::Typed(_)) {
                origins.push(at);
            }
            add(pe, key, partial, false, origins)
        }
    }
}

/// Handles [`RedSys`] messages.
pub(crate) fn handle_sys(pe: &Rc<PeLocal>, m: RedSys) {
    match m {
        RedSys::Forget { key } => {
            pe.reds.templates.borrow_mut().remove(&key);
        }
        RedSys::Finish { key, root, parts } => {
            let Some(mut acc) = pe.reds.templates.borrow_mut().remove(&key) else {
                fatal("asked to finish a reduction this PE kept no template of")
            };
            for p in parts {
                if let Err(e) = acc.merge_encoded(&p) {
                    fatal(&e);
                }
            }
            acc.finish_for(pe, key, root);
        }
    }
}

/// A contribution held until a sparse array's membership was frozen goes on.
pub(crate) fn replay(pe: &Rc<PeLocal>, key: RedKey, partial: PartialMsg, from_child: bool) {
    add(pe, key, partial, from_child, Vec::new())
}

fn add(pe: &Rc<PeLocal>, key: RedKey, partial: PartialMsg, from_child: bool, origins: Vec<PeId>) {
    let Some(info) = pe.coll(key.coll) else { fatal("contribution to a collection unknown on this PE") };
    let (partial, from_child) = match &info.sparse {
        Some(s) => match s.hold(key, partial, from_child) {
            Some(go_on) => go_on,
            None => return,
        },
        None => (partial, from_child),
    };
    fold(pe, &info, key, from_child, origins, |st| {
        match (&mut st.acc, partial) {
            (Some(acc), PartialMsg::Typed(p)) => acc.merge(p),
            (None, PartialMsg::Typed(p)) => st.acc = Some(p),
            // Bytes from another process wait for a typed partial to decode them. One
            // comes unless every element of this PE's home migrated to other processes:
            // then the bytes go up as they are (see `RedFrom::origins`).
            (_, PartialMsg::Encoded(b)) => st.raw.push(b),
            (_, PartialMsg::Raw(parts)) => st.raw.extend(parts),
        }
        st.decode_raw();
    })
}

impl State {
    /// Decodes the partials from other processes into the typed one, once there is one.
    fn decode_raw(&mut self) {
        if let Some(acc) = &mut self.acc {
            for b in self.raw.drain(..) {
                if let Err(e) = acc.merge_encoded(&b) {
                    fatal(&e);
                }
            }
        }
    }
}

/// Counts one more contribution (`from_child`: a child PE's partial) to reduction `key`
/// on this PE, folded into its state by `merge`; once every local element and child
/// has contributed, sends the partial up the tree (or finishes it at the root).
fn fold(
    pe: &Rc<PeLocal>,
    info: &crate::collection::CollInfo,
    key: RedKey,
    from_child: bool,
    origins: Vec<PeId>,
    merge: impl FnOnce(&mut State),
) {
    let Some(place) = info.place() else {
        fatal("contribution on a PE that holds no element of the collection")
    };
    let done = {
        let mut states = pe.reds.states.borrow_mut();
        let st = states.entry(key).or_insert(State {
            acc: None,
            raw: Vec::new(),
            local: 0,
            children: 0,
            origins: Vec::new(),
        });
        st.origins.extend(origins);
        merge(st);
        if from_child {
            st.children += 1;
        } else {
            st.local += 1;
        }
        let complete =
            st.local as usize == info.local_count(key.stream) && st.children as usize == place.children.len();
        if complete {
            states.remove(&key)
        } else {
            None
        }
    };
    let Some(st) = done else { return };
    let (partial, origins) = match st.acc {
        Some(acc) => (Done::Typed(acc), st.origins),
        None => (Done::Raw(st.raw), st.origins),
    };
    match place.parent {
        Some(p) => {
            let partial = match partial {
                Done::Typed(acc) => PartialMsg::Typed(acc),
                Done::Raw(parts) => PartialMsg::Raw(parts),
            };
            let from = RedFrom { away: None, origins };
            pe.send(p, Envelope::Sys(SysMsg::Reduce { key, partial, from }), 0)
        }
        None => at_root(pe, key, (partial, origins)),
    }
}

/// A reduction complete at its root: typed, or bytes only (see [`RedFrom::origins`]).
pub(crate) enum Done {
    Typed(RedUp),
    Raw(Vec<Box<[u8]>>),
}

/// Delivers user reductions in the order they were started.
fn at_root(pe: &Rc<PeLocal>, key: RedKey, done: (Done, Vec<PeId>)) {
    let Stream::User(seq) = key.stream else { return finish(pe, key, done) };
    let next = *pe.reds.next_user.borrow().get(&key.coll).unwrap_or(&0);
    if seq != next {
        pe.reds.finished.borrow_mut().insert(key, done);
        return;
    }
    finish(pe, key, done);
    let mut n = next + 1;
    loop {
        let k = RedKey { coll: key.coll, stream: Stream::User(n) };
        let Some(d) = pe.reds.finished.borrow_mut().remove(&k) else { break };
        finish(pe, k, d);
        n += 1;
    }
    pe.reds.next_user.borrow_mut().insert(key.coll, n);
}

/// Finishes a reduction at its root, or has the first PE that keeps a template of it
/// finish it; the others forget theirs.
fn finish(pe: &Rc<PeLocal>, key: RedKey, (done, mut origins): (Done, Vec<PeId>)) {
    origins.sort_unstable();
    origins.dedup();
    let mut forget = origins.as_slice();
    match done {
        Done::Typed(acc) => acc.finish(pe, key),
        Done::Raw(parts) => {
            let Some((&first, rest)) = origins.split_first() else {
                fatal("a reduction's root has only serialized partials and nobody to decode them")
            };
            let parts = parts.into_iter().map(Vec::from).collect();
            pe.send(first, Envelope::Sys(SysMsg::Red(RedSys::Finish { key, root: pe.id, parts })), 0);
            forget = rest;
        }
    }
    for &o in forget {
        pe.send(o, Envelope::Sys(SysMsg::Red(RedSys::Forget { key })), 0);
    }
}

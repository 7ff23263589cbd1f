//! Collections: groups (one element per PE), dense N-d arrays placed by a map, and
//! single chares; their creation on every PE.

mod index;
mod map;
pub(crate) mod migrate;
pub(crate) mod section;
pub(crate) mod sparse;

pub(crate) use index::CollId;
pub use index::{Index, MAX_DIMS};
pub(crate) use map::MapWire;
pub use map::{ArrayMap, BlockMap, BlockSlot, MapDesc, MAPS};
pub use section::{combine, section, split, Members, SliceDim};
pub use sparse::HashMapping;

use std::any::Any;
use std::future::{Future as StdFuture, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use crate::chare::invoke::{fatal, Invoke, Target};
use crate::chare::proxy::{Home, RawProxy};
use crate::chare::registry::EntryDesc;
use crate::chare::{Chare, ElemMeta, Proxy, Slot};
use crate::error::Result;
use crate::future::{Future, FutureId};
use crate::msg::{Args, Envelope, Reply};
use crate::pe::{with_pe, PeId, PeLocal, SysMsg};
use crate::reduction::Span;

/// An element's identity: collection and index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ElemKey {
    /// Collection.
    pub(crate) coll: CollId,
    /// Index in it.
    pub(crate) index: Index,
}

/// A chare element, type-erased, as the PE's element table holds it.
pub(crate) trait AnyElem {
    /// The runtime's bookkeeping of the element.
    fn meta(&self) -> &ElemMeta;
    /// For downcasting to `Slot<C>`.
    fn as_any(&self) -> &dyn Any;
    /// For downcasting an `Rc` to `Rc<Slot<C>>`.
    fn into_any_rc(self: Rc<Self>) -> Rc<dyn Any>;
    /// The constructor of its chare type (which says how it migrates).
    fn ctor(&self) -> &'static EntryDesc;
}

/// An entry of a PE's element table: the element itself, hashed and compared by its
/// key, which it already holds (so the table does not store the 36-byte key twice).
pub(crate) struct ElemEntry(pub(crate) Rc<dyn AnyElem>);

impl std::hash::Hash for ElemEntry {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.meta().key.hash(h)
    }
}

impl PartialEq for ElemEntry {
    fn eq(&self, other: &Self) -> bool {
        self.0.meta().key == other.0.meta().key
    }
}

impl Eq for ElemEntry {}

impl std::borrow::Borrow<ElemKey> for ElemEntry {
    #[inline]
    fn borrow(&self) -> &ElemKey {
        &self.0.meta().key
    }
}

impl<C: Chare> AnyElem for Slot<C> {
    fn meta(&self) -> &ElemMeta {
        &self.ctx.meta
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any_rc(self: Rc<Self>) -> Rc<dyn Any> {
        self
    }
    fn ctor(&self) -> &'static EntryDesc {
        C::__ctor()
    }
}

/// The shape of a collection.
#[derive(Clone)]
pub(crate) enum Kind {
    /// One element per PE.
    Group,
    /// One element on each of these PEs (sorted, no duplicates): a constrained group.
    GroupOn(Arc<[PeId]>),
    /// Dense N-d array.
    Array {
        /// Extent in each dimension.
        shape: Index,
        /// Initial placement.
        map: Arc<dyn ArrayMap>,
        /// The same, for other processes.
        wire: MapWire,
    },
    /// One chare on one PE.
    Single(PeId),
    /// A section of other collections (see [`section`]).
    Section,
    /// A sparse array, filled by insertion (see [`sparse`]).
    Sparse {
        /// Dimensions of its indexes.
        dims: usize,
        /// Home placement (evaluated with an all-zero shape).
        map: Arc<dyn ArrayMap>,
        /// The same, for other processes.
        wire: MapWire,
    },
}

/// What the creation message of a collection carries.
pub(crate) struct CreateSpec {
    pub(crate) kind: Kind,
    pub(crate) home: Home,
    pub(crate) ctor: &'static EntryDesc,
    pub(crate) args: Arc<dyn Any + Send + Sync>,
    pub(crate) done: FutureId,
}

/// What a PE knows of a collection once its creation reached it.
pub(crate) struct CollInfo {
    pub(crate) kind: Kind,
    /// Indexes of the elements created on this PE, in order (none for a section).
    pub(crate) local: Vec<Index>,
    /// A section's members on this PE (of any collection); empty for a collection.
    pub(crate) members: Vec<ElemKey>,
    /// This PE's place in the reduction tree over the PEs that hold elements, if it
    /// holds any (for a sparse array: see `sparse`).
    pub(crate) red: Option<Rc<RedPlace>>,
    /// A sparse array's state on this PE.
    pub(crate) sparse: Option<sparse::SparseLocal>,
    /// The constructor of its elements (none for a section).
    pub(crate) ctor: Option<&'static EntryDesc>,
    /// Of the elements whose home is this PE: where those that migrated away are.
    pub(crate) locs: std::cell::RefCell<rustc_hash::FxHashMap<Index, migrate::Loc>>,
}

/// A PE's place in the reduction tree of a collection (a [`Span`] over the PEs that
/// hold elements, rooted at the first of them).
pub(crate) struct RedPlace {
    /// Where this PE's partial goes (none at the root).
    pub(crate) parent: Option<PeId>,
    /// Whose partials this PE waits for (and to whom an allreduce result goes down).
    pub(crate) children: Vec<PeId>,
}

impl CollInfo {
    /// The PE element `index` was created on, or `None` if there is no such element.
    pub(crate) fn pe_of(&self, index: &Index, n: u32) -> Option<PeId> {
        match &self.kind {
            Kind::GroupOn(pes) => {
                (index.dims() == 1 && index[0] >= 0 && pes.binary_search(&PeId(index[0] as u32)).is_ok())
                    .then(|| PeId(index[0] as u32))
            }
            Kind::Group => {
                (index.dims() == 1 && index[0] >= 0 && (index[0] as u32) < n).then(|| PeId(index[0] as u32))
            }
            Kind::Single(pe) => (*index == Index::from(0)).then_some(*pe),
            Kind::Array { shape, map, .. } => {
                index.linearize(shape)?;
                Some(map.pe_of(index, shape, n))
            }
            Kind::Section => None,
            Kind::Sparse { .. } => sparse::home_of(self, index, n),
        }
    }

    /// How many contributions of this PE's elements reduction `stream` waits for.
    #[inline]
    pub(crate) fn local_count(&self, stream: crate::reduction::Stream) -> usize {
        match &self.sparse {
            None => self.local.len() + self.members.len(),
            Some(s) => {
                let _ = stream;
                s.local.borrow().len()
            }
        }
    }

    /// This PE's place in the reduction tree (a sparse array has one once frozen).
    #[inline]
    pub(crate) fn place(&self) -> Option<Rc<RedPlace>> {
        match &self.sparse {
            None => self.red.clone(),
            Some(s) => s.frozen.borrow().clone().flatten(),
        }
    }
}

/// This PE's place in the reduction (and multicast) tree over `members` (sorted, this
/// PE among them), rooted at the first: the job's own tree when every PE is a member.
pub(crate) fn red_place(pe: &PeLocal, members: &[PeId]) -> Rc<RedPlace> {
    let root = members[0];
    let place = |span: &Span| {
        Rc::new(RedPlace { parent: span.parent(root, pe.id), children: span.children(root, pe.id) })
    };
    if members.len() == pe.num_pes() as usize {
        place(&pe.shared.span)
    } else {
        let l = &pe.shared.layout;
        place(&Span::new(
            members.iter().copied(),
            |p| l.host_of(p),
            |p| l.proc_of(p),
            pe.shared.config.tree_arity,
        ))
    }
}

/// Handles the creation message of a collection on this PE: forward it down the tree,
/// construct the local elements, then release what waited for the collection.
pub(crate) fn on_create(pe: &Rc<PeLocal>, coll: CollId, root: PeId, spec: Arc<CreateSpec>) {
    for child in pe.shared.span.children(root, pe.id) {
        let env = Envelope::Sys(SysMsg::Create { coll, root, spec: Arc::clone(&spec) });
        pe.send(child, env, 0);
    }
    let n = pe.num_pes();
    let (members, local): (Vec<PeId>, Vec<Index>) = match &spec.kind {
        Kind::Group => ((0..n).map(PeId).collect(), vec![Index::of_pe(pe.id)]),
        Kind::GroupOn(pes) => {
            let local = if pes.binary_search(&pe.id).is_ok() { vec![Index::of_pe(pe.id)] } else { vec![] };
            (pes.to_vec(), local)
        }
        Kind::Single(p) => (vec![*p], if *p == pe.id { vec![Index::from(0)] } else { vec![] }),
        Kind::Array { shape, map, .. } => {
            let mut has = vec![false; n as usize];
            let mut local = Vec::new();
            for lin in 0..shape.volume() {
                let idx = Index::delinearize(lin, shape);
                let p = map.pe_of(&idx, shape, n);
                if p.0 >= n {
                    fatal(&format!(
                        "the ArrayMap of a {} array put element {idx} on PE {p}, but there are {n} PEs",
                        spec.ctor.chare()
                    ));
                }
                has[p.0 as usize] = true;
                if p == pe.id {
                    local.push(idx);
                }
            }
            ((0..n).filter(|&p| has[p as usize]).map(PeId).collect(), local)
        }
        Kind::Section => fatal("a section is not created as a collection"),
        Kind::Sparse { .. } => (Vec::new(), Vec::new()),
    };
    let red = (!local.is_empty()).then(|| red_place(pe, &members));
    tracing::debug!(coll = %coll, chare = spec.ctor.chare(), local = local.len(), "creating elements");
    let sparse = match &spec.kind {
        Kind::Sparse { dims, .. } => Some(sparse::SparseLocal::new(*dims)),
        _ => None,
    };
    let info = Rc::new(CollInfo {
        kind: spec.kind.clone(),
        local,
        members: Vec::new(),
        red,
        sparse,
        ctor: Some(spec.ctor),
        locs: Default::default(),
    });
    pe.colls.borrow_mut().insert(coll, Rc::clone(&info));
    for &index in &info.local {
        let meta = ElemMeta::new(ElemKey { coll, index }, spec.home);
        spec.ctor.invoke(Invoke {
            pe,
            target: Target::New(meta),
            desc: spec.ctor,
            args: Args::Shared(Arc::clone(&spec.args)),
            reply: Reply::Bcast { fut: spec.done, gather: false },
        });
    }
    if let Kind::Sparse { .. } = &spec.kind {
        // Created empty: done once every PE has it (then any PE may insert).
        let m = sparse::SparseMsg::Ready { coll, done: spec.done };
        pe.send(root, Envelope::Sys(SysMsg::Sparse(m)), 0);
    }
    let out = pe.pending_out.borrow_mut().remove(&coll).unwrap_or_default();
    for env in out {
        let index = match &env {
            Envelope::Call { index, .. } => *index,
            // A broadcast held behind element calls: from this PE, as it was sent.
            _ => {
                pe.send(pe.id, env, 0);
                continue;
            }
        };
        match info.pe_of(&index, n) {
            Some(dest) => pe.send(dest, env, 0),
            None => fatal(&format!(
                "a call to element {index} of a {} array, outside its shape",
                spec.ctor.chare()
            )),
        }
    }
    let held = pe.pending_in.borrow_mut().remove(&coll).unwrap_or_default();
    for env in held {
        crate::pe::worker::handle(pe, env);
    }
}

/// A collection being created: [`Creation::proxy`] gives its proxy at once (calls are
/// delivered once elements exist), `.await` waits until every element is constructed
/// (Charm4py's `awaitCreation`) and fails if a constructor panicked.
pub struct Creation<P> {
    proxy: Option<P>,
    done: Future<()>,
}

impl<P: Proxy> Creation<P> {
    /// The proxy, without waiting. A constructor that panics then ends the job.
    pub fn proxy(mut self) -> P {
        self.done.detach();
        self.proxy.take().expect("proxy taken once")
    }

    /// The proxy, and the future of the creation's end (every element constructed, or
    /// an error). Await the future, or [`Future::detach`] it: an error nobody awaits is
    /// kept until then.
    pub fn into_parts(mut self) -> (P, Future<()>) {
        (self.proxy.take().expect("proxy taken once"), self.done.clone())
    }
}

impl<P> Drop for Creation<P> {
    fn drop(&mut self) {
        if self.proxy.is_some() {
            let done: Future<()> = self.done.clone();
            crate::pe::local::try_with_pe(|_| done.detach());
        }
    }
}

impl<P: Proxy + 'static> IntoFuture for Creation<P> {
    type Output = Result<P>;
    type IntoFuture = Pin<Box<dyn StdFuture<Output = Result<P>>>>;
    fn into_future(mut self) -> Self::IntoFuture {
        let proxy = self.proxy.take().expect("awaited once");
        let done = self.done.clone();
        Box::pin(async move {
            done.get().await?;
            Ok(proxy)
        })
    }
}

fn create<C: Chare>(
    kind: Kind,
    home_of: impl FnOnce(CollId) -> RawProxy,
    args: C::Args,
) -> Creation<C::Proxy> {
    create_erased::<C>(kind, home_of, Arc::new(args))
}

/// [`create`] with the constructor arguments type-erased (a sparse array has none at
/// creation: each insertion brings its own).
fn create_erased<C: Chare>(
    kind: Kind,
    home_of: impl FnOnce(CollId) -> RawProxy,
    args: Arc<dyn Any + Send + Sync>,
) -> Creation<C::Proxy> {
    with_pe(|pe| {
        let coll = pe.new_coll_id();
        let raw = home_of(coll);
        let done = Future::<()>::new();
        match &kind {
            Kind::Array { shape, .. } if shape.volume() == 0 => done.send(()),
            _ => {}
        }
        let spec = Arc::new(CreateSpec { kind, home: raw.home, ctor: C::__ctor(), args, done: done.id() });
        pe.send(pe.id, Envelope::Sys(SysMsg::Create { coll, root: pe.id, spec }), 0);
        Creation { proxy: Some(C::Proxy::__from_raw(raw)), done }
    })
}

/// A group: one element of chare type `C` on every PE; element `i` is on PE `i`.
pub struct Group<C>(PhantomData<C>);

impl<C: Chare> Group<C> {
    /// Creates a group; every element's constructor gets a clone of `args`.
    #[allow(clippy::new_ret_no_self)] // Charm4py's `Group(C)`: creation returns a proxy
    pub fn new(args: C::Args) -> Creation<C::Proxy> {
        create::<C>(Kind::Group, |coll| RawProxy { coll, home: Home::Group, elem: None }, args)
    }

    /// Creates a group with elements on `pes` only (Charm4py's `Group(C,
    /// onPEs=[...])`): broadcasts and reductions over it involve those PEs only;
    /// element `i` is on PE `i`.
    ///
    /// # Panics
    /// If `pes` is empty or names a PE that does not exist.
    pub fn on_pes(pes: impl IntoIterator<Item = PeId>, args: C::Args) -> Creation<C::Proxy> {
        let mut pes: Vec<PeId> = pes.into_iter().collect();
        pes.sort_unstable();
        pes.dedup();
        let n = crate::num_pes();
        assert!(!pes.is_empty(), "a group on no PE");
        assert!(pes.iter().all(|p| p.0 < n), "a group on PEs {pes:?}: the job has {n} PEs");
        create::<C>(Kind::GroupOn(pes.into()), |coll| RawProxy { coll, home: Home::Group, elem: None }, args)
    }
}

/// A dense N-d array (1-d to 6-d) of chares of type `C`.
///
/// ```
/// use charmrs::prelude::*;
///
/// pub struct Cell { v: i64 }
///
/// #[chare]
/// impl Cell {
///     fn new(ctx: &Ctx<Self>, scale: i64) -> Self {
///         let i = ctx.this_index();
///         Cell { v: scale * (i[0] as i64 * 10 + i[1] as i64) }
///     }
///     fn total(&self, ctx: &Ctx<Self>, done: Future<i64>) {
///         ctx.contribute(self.v, Reducer::sum(), done);
///     }
/// }
///
/// fn main() {
///     charmrs::start(|_| async {
///         let grid = Array::<Cell>::new([2, 3], (1,)).await.unwrap();
///         let done = Future::new();
///         grid.total(done.clone()); // broadcast: every element contributes
///         assert_eq!(done.await.unwrap(), 0 + 1 + 2 + 10 + 11 + 12);
///         charmrs::exit(0);
///     })
/// }
/// ```
pub struct Array<C>(PhantomData<C>);

impl<C: Chare> Array<C> {
    /// Creates an array of shape `shape` placed by the default [`BlockMap`]; every
    /// element's constructor gets a clone of `args`.
    #[allow(clippy::new_ret_no_self)] // Charm4py's `Array(C, shape)`: creation returns a proxy
    pub fn new(shape: impl Into<Index>, args: C::Args) -> Creation<C::Proxy> {
        Self::with_map(shape, BlockMap, args)
    }

    /// Creates an array placed by `map`.
    ///
    /// # Panics
    /// In a job of several processes, if the map's type was not registered with
    /// [`register_map!`](crate::register_map).
    pub fn with_map<M: ArrayMap + crate::Payload>(
        shape: impl Into<Index>,
        map: M,
        args: C::Args,
    ) -> Creation<C::Proxy> {
        let shape = shape.into();
        assert!(shape.as_slice().iter().all(|&d| d >= 0), "array shape {shape} has a negative extent");
        let wire = MapWire::of(&map);
        if with_pe(|pe| pe.shared.num_processes() > 1) {
            if let Err(e) = wire.check() {
                panic!("{e}");
            }
        }
        create::<C>(
            Kind::Array { shape, map: Arc::new(map), wire },
            |coll| RawProxy { coll, home: Home::Array, elem: None },
            args,
        )
    }
}

impl<C: Chare> Array<C> {
    /// Creates an empty sparse array of `dims`-d indexes (Charm4py's `Array(C,
    /// ndims=dims)`): elements are added with [`Proxy::insert`], then
    /// [`Proxy::done_inserting`] makes reductions over them possible. Elements are
    /// placed by [`HashMapping`] unless inserted on a chosen PE.
    ///
    /// ```
    /// use charmrs::prelude::*;
    ///
    /// pub struct Cell { v: i64 }
    /// #[chare]
    /// impl Cell {
    ///     fn new(v: i64) -> Self { Cell { v } }
    ///     fn total(&self, ctx: &Ctx<Self>, done: Future<i64>) {
    ///         ctx.contribute(self.v, Reducer::sum(), done);
    ///     }
    /// }
    ///
    /// fn main() {
    ///     charmrs::start(|_| async {
    ///         let a = Array::<Cell>::sparse(2).await.unwrap();
    ///         for (i, j) in [(0, 7), (100, -3), (5, 5)] {
    ///             a.insert([i, j], (i as i64,), None).unwrap();
    ///         }
    ///         a.done_inserting().await.unwrap();
    ///         let done = Future::new();
    ///         a.total(done.clone());
    ///         assert_eq!(done.await.unwrap(), 105);
    ///         charmrs::exit(0);
    ///     })
    /// }
    /// ```
    pub fn sparse(dims: usize) -> Creation<C::Proxy> {
        Self::sparse_with_map(dims, HashMapping)
    }

    /// Creates an empty sparse array whose elements' home PEs come from `map`
    /// (evaluated with an all-zero shape).
    ///
    /// # Panics
    /// If `dims` is not 1 to [`MAX_DIMS`]; in a job of several processes, if the map's
    /// type was not registered with [`register_map!`](crate::register_map).
    pub fn sparse_with_map<M: ArrayMap + crate::Payload>(dims: usize, map: M) -> Creation<C::Proxy> {
        assert!((1..=MAX_DIMS).contains(&dims), "a sparse array has 1 to {MAX_DIMS} dimensions, not {dims}");
        let wire = MapWire::of(&map);
        if with_pe(|pe| pe.shared.num_processes() > 1) {
            if let Err(e) = wire.check() {
                panic!("{e}");
            }
        }
        create_erased::<C>(
            Kind::Sparse { dims, map: Arc::new(map), wire },
            |coll| RawProxy { coll, home: Home::Array, elem: None },
            Arc::new(()),
        )
    }
}

/// A single chare of type `C` (Charm4py's `Chare(C, onPE=...)`).
pub struct Single<C>(PhantomData<C>);

impl<C: Chare> Single<C> {
    /// Creates the chare on PE `pe`.
    ///
    /// # Panics
    /// If `pe` does not exist.
    pub fn on_pe(pe: PeId, args: C::Args) -> Creation<C::Proxy> {
        let n = crate::num_pes();
        assert!(pe.0 < n, "PE {pe} does not exist ({n} PEs)");
        create::<C>(
            Kind::Single(pe),
            |coll| RawProxy { coll, home: Home::Single(pe), elem: Some(Index::from(0)) },
            args,
        )
    }

    /// Creates the chare on a PE chosen round-robin by the creating PE.
    #[allow(clippy::new_ret_no_self)] // Charm4py's `Chare(C)`: creation returns a proxy
    pub fn new(args: C::Args) -> Creation<C::Proxy> {
        let pe = with_pe(|pe| PeId((pe.id.0 + pe.next_coll.get()) % pe.num_pes()));
        Self::on_pe(pe, args)
    }
}

//! What an entry method sees of the runtime: [`Ctx`] (synchronous methods) and
//! [`Handle`] (async methods, which must not borrow the chare across an await).

use std::cell::{Cell, RefCell};
use std::future::Future as StdFuture;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::chare::proxy::{Home, RawProxy};
use crate::chare::{Chare, Proxy};
use crate::collection::ElemKey;
use crate::future::Future;
use crate::msg::{Envelope, Payload};
use crate::pe::PeId;
use crate::reduction::{self, RedTarget, Reducer, Stream};
use crate::Index;

/// Per-element bookkeeping of the runtime. Kept small: it is paid by every chare.
pub(crate) struct ElemMeta {
    /// Collection and index.
    pub(crate) key: ElemKey,
    /// How proxies reach the collection.
    pub(crate) home: Home,
    /// Number of reductions this element contributed to.
    pub(crate) red_seq: Cell<u32>,
    /// Its home PE, while it lives elsewhere (it migrated: see `collection::migrate`).
    pub(crate) away: Cell<Option<PeId>>,
    /// Nanoseconds spent in its entry methods since the last load-balancing step
    /// (measured for migratable chare types only).
    pub(crate) load: Cell<u64>,
    /// Load-balancing syncs it reached (`at_sync` calls).
    pub(crate) sync_epoch: Cell<u32>,
    /// Whether the load balancer may move it (`set_migratable`).
    pub(crate) migratable: Cell<bool>,
    /// Messages and tasks waiting for a condition on this element; allocated only
    /// when something waits.
    parked: RefCell<Option<Box<Parked>>>,
}

/// What waits for a condition on an element.
#[derive(Default)]
struct Parked {
    /// Messages whose `when` condition did not hold yet.
    when_buf: Vec<Envelope>,
    /// Tasks waiting in `Handle::wait`.
    waiters: Vec<Waker>,
}

impl ElemMeta {
    /// Metadata of a new element.
    pub(crate) fn new(key: ElemKey, home: Home) -> ElemMeta {
        ElemMeta {
            key,
            home,
            red_seq: Cell::new(0),
            away: Cell::new(None),
            load: Cell::new(0),
            sync_epoch: Cell::new(0),
            migratable: Cell::new(true),
            parked: RefCell::new(None),
        }
    }

    /// Whether messages wait for their `when` condition.
    #[inline]
    pub(crate) fn has_buffered(&self) -> bool {
        self.parked.borrow().as_ref().is_some_and(|p| !p.when_buf.is_empty())
    }

    /// Keeps a message until its `when` condition holds.
    pub(crate) fn buffer(&self, env: Envelope) {
        self.parked.borrow_mut().get_or_insert_with(Default::default).when_buf.push(env);
    }

    /// Takes the buffered messages.
    pub(crate) fn take_buffered(&self) -> Vec<Envelope> {
        self.parked.borrow_mut().as_mut().map(|p| std::mem::take(&mut p.when_buf)).unwrap_or_default()
    }

    /// Registers a task waiting for a condition.
    pub(crate) fn add_waiter(&self, w: Waker) {
        self.parked.borrow_mut().get_or_insert_with(Default::default).waiters.push(w);
    }

    /// Takes the waiting tasks.
    #[inline]
    pub(crate) fn take_waiters(&self) -> Vec<Waker> {
        match self.parked.borrow_mut().as_mut() {
            Some(p) if !p.waiters.is_empty() => std::mem::take(&mut p.waiters),
            _ => Vec::new(),
        }
    }
}

/// The context of an entry method: who and where this element is, its proxies, and
/// the collective operations it takes part in.
pub struct Ctx<C> {
    pub(crate) meta: ElemMeta,
    _chare: PhantomData<fn() -> C>,
}

impl<C: Chare> Ctx<C> {
    pub(crate) fn new(meta: ElemMeta) -> Ctx<C> {
        Ctx { meta, _chare: PhantomData }
    }

    /// This element's index in its collection (`thisIndex`): the PE for a group element,
    /// `0` for a single chare.
    pub fn this_index(&self) -> Index {
        self.meta.key.index
    }

    /// A proxy to the whole collection (`thisProxy`): calling a method on it broadcasts.
    /// For a single chare, a proxy to the chare.
    pub fn this_proxy(&self) -> C::Proxy {
        let elem = match self.meta.home {
            Home::Single(_) => Some(self.meta.key.index),
            _ => None,
        };
        C::Proxy::__from_raw(RawProxy { coll: self.meta.key.coll, home: self.meta.home, elem })
    }

    /// A proxy to this element only (`thisProxy[thisIndex]`).
    pub fn this_elem(&self) -> C::Proxy {
        C::Proxy::__from_raw(RawProxy {
            coll: self.meta.key.coll,
            home: self.meta.home,
            elem: Some(self.meta.key.index),
        })
    }

    /// The PE this element runs on (it changes when the element migrates).
    pub fn my_pe(&self) -> PeId {
        crate::my_pe()
    }

    /// Migrates this element to PE `to` once the running entry method returns (Charm4py's
    /// `migrate(toPe)`); to its own PE, nothing happens. Calls to the element made
    /// before, during and after the move all reach it, once each and in order per
    /// sender; its reductions and broadcasts are unaffected. The chare type's `migrated`
    /// entry method, if it has one, runs on the new PE after the move.
    ///
    /// # Panics
    /// If the element cannot migrate ([`Ctx::can_migrate`]) or `to` does not exist. Later, when the move starts, the job ends
    /// with a message if an `async` method of the element is suspended then, or the
    /// element is a member of a section.
    pub fn migrate(&self, to: PeId) {
        if let Err(why) = self.can_migrate() {
            panic!("migrate: {why}");
        }
        let key = self.meta.key;
        crate::pe::with_pe(|pe| {
            if to.0 >= pe.num_pes() {
                panic!("migrate to PE {to}: the job has {} PEs", pe.num_pes());
            }
            pe.send(pe.id, Envelope::Sys(crate::pe::SysMsg::Migrate { key, to }), 0);
        });
    }

    /// Whether this element can migrate (and take part in load balancing), or why
    /// not: its chare type must be `#[chare(migratable)]` and it must be an element of
    /// an array (dense or sparse).
    pub fn can_migrate(&self) -> Result<(), String> {
        if C::__ctor().migrate().is_none() {
            return Err(format!(
                "{} is not migratable (declare it with #[chare(migratable)])",
                C::__ctor().chare()
            ));
        }
        if self.meta.home != Home::Array {
            return Err("only elements of arrays migrate (not groups or single chares)".into());
        }
        Ok(())
    }

    /// Number of PEs of the job.
    pub fn num_pes(&self) -> u32 {
        crate::num_pes()
    }

    /// Tells the runtime this element is ready for load balancing (Charm4py's
    /// `AtSync`). Once every element of the array has called it, the balancer chosen
    /// with `+balancer` runs: it may move elements, measured by the time they spent in
    /// their entry methods since the last step. Then every element's
    /// `resume_from_sync` entry method runs (declare one: it is how elements learn the
    /// step is over). Without `+balancer`, nothing moves and `resume_from_sync` runs.
    /// `+LBDebug 1` prints what each step did.
    ///
    /// ```
    /// use charmrs::prelude::*;
    /// use serde::{Deserialize, Serialize};
    ///
    /// // Migratable: the state travels serialized.
    /// #[derive(Serialize, Deserialize)]
    /// pub struct Worker { step: u32, done: Option<Future<u32>> }
    ///
    /// #[chare(migratable)]
    /// impl Worker {
    ///     fn new() -> Self { Worker { step: 0, done: None } }
    ///     fn run(&mut self, ctx: &Ctx<Self>, done: Future<u32>) {
    ///         self.done = Some(done);
    ///         self.work(ctx);
    ///     }
    ///     fn work(&mut self, ctx: &Ctx<Self>) {
    ///         self.step += 1; // ... a step of work ...
    ///         if self.step < 3 {
    ///             ctx.at_sync(); // the balancer may move this element now
    ///         } else {
    ///             ctx.contribute(self.step, Reducer::sum(), self.done.clone().unwrap());
    ///         }
    ///     }
    ///     /// Runs on every element after each balancing step (on its new PE).
    ///     fn resume_from_sync(&mut self, ctx: &Ctx<Self>) {
    ///         self.work(ctx);
    ///     }
    /// }
    ///
    /// fn main() {
    ///     charmrs::start(|_| async {
    ///         let a = Array::<Worker>::new([8], ()).await.unwrap();
    ///         let done = Future::new();
    ///         a.run(done.clone());
    ///         assert_eq!(done.await.unwrap(), 8 * 3);
    ///         charmrs::exit(0);
    ///     })
    /// }
    /// ```
    ///
    /// # Panics
    /// If the element cannot migrate ([`Ctx::can_migrate`]).
    pub fn at_sync(&self) {
        if let Err(why) = self.can_migrate() {
            panic!("at_sync: load balancing moves elements, and {why}");
        }
        let epoch = self.meta.sync_epoch.get();
        self.meta.sync_epoch.set(epoch + 1);
        let coll = self.meta.key.coll;
        let target = RedTarget::from_fn(move |()| crate::pe::with_pe(|pe| crate::lb::start(pe, coll, epoch)));
        reduction::contribute(&self.meta, Stream::Sync(epoch), Ok(()), Reducer::<(), ()>::nop(), target);
    }

    /// Whether the load balancer may move this element (Charm4py's `setMigratable`;
    /// elements of migratable types may, by default). [`Ctx::migrate`] still moves it.
    pub fn set_migratable(&self, migratable: bool) {
        self.meta.migratable.set(migratable);
    }

    /// Contributes `value` to the next reduction of this element's collection (every
    /// element must contribute to reductions in the same order). Contributions are
    /// combined on each PE first, then one message per PE goes up the spanning tree; the
    /// result goes to `target`: a [`Future`], or an entry method (see [`RedTarget`]).
    pub fn contribute<T: Payload, R: Payload>(
        &self,
        value: T,
        reducer: Reducer<T, R>,
        target: impl Into<RedTarget<R>>,
    ) {
        let seq = self.next_seq();
        reduction::contribute(&self.meta, Stream::User(seq), Ok(value), reducer, target.into());
    }

    /// Alias of [`Ctx::contribute`] (Charm4py's `reduce`).
    pub fn reduce<T: Payload, R: Payload>(
        &self,
        target: impl Into<RedTarget<R>>,
        value: T,
        reducer: Reducer<T, R>,
    ) {
        self.contribute(value, reducer, target)
    }

    /// Contributes `value` to a reduction whose result every element gets: await the
    /// returned future (Charm4py's `allreduce`).
    pub fn allreduce<T: Payload, R: Payload>(&self, value: T, reducer: Reducer<T, R>) -> Future<R> {
        let seq = self.next_seq();
        let fut = Future::<R>::new();
        reduction::contribute(&self.meta, Stream::User(seq), Ok(value), reducer, RedTarget::all(fut.clone()));
        fut
    }

    /// Contributes `value` to the next reduction of `section` (a section proxy from
    /// [`crate::split`] or [`crate::combine`] that this element belongs to; Charm4py's
    /// `contribute(..., section)`). Every member contributes to the section's
    /// reductions in the same order; the result goes to `target`.
    ///
    /// # Panics
    /// If `section` is not a section proxy, or this element is not one of its members.
    pub fn section_contribute<P: Proxy, T: Payload, R: Payload>(
        &self,
        section: &P,
        value: T,
        reducer: Reducer<T, R>,
        target: impl Into<RedTarget<R>>,
    ) {
        let key = self.section_key(section.__raw());
        reduction::contribute_to(key, self.meta.key.index, Ok(value), reducer, target.into());
    }

    /// Contributes `value` to a reduction over `section` whose result every member gets
    /// (an allreduce over a section).
    ///
    /// # Panics
    /// As [`Ctx::section_contribute`].
    pub fn section_allreduce<P: Proxy, T: Payload, R: Payload>(
        &self,
        section: &P,
        value: T,
        reducer: Reducer<T, R>,
    ) -> Future<R> {
        let key = self.section_key(section.__raw());
        let fut = Future::<R>::new();
        reduction::contribute_to(key, self.meta.key.index, Ok(value), reducer, RedTarget::all(fut.clone()));
        fut
    }

    /// The key of this element's next reduction over a section.
    fn section_key(&self, raw: &RawProxy) -> reduction::RedKey {
        if !raw.coll.is_section() {
            panic!("a section reduction takes a section proxy (from split, combine or slicing)");
        }
        let me = self.meta.key;
        crate::pe::with_pe(|pe| {
            let member = pe.coll(raw.coll).is_some_and(|info| info.members.contains(&me));
            if !member {
                panic!("element {} is not a member of the section it contributes to", me.index);
            }
            reduction::RedKey { coll: raw.coll, stream: Stream::User(pe.sections.next_seq(raw.coll, me)) }
        })
    }

    fn next_seq(&self) -> u32 {
        let s = self.meta.red_seq.get();
        self.meta.red_seq.set(s + 1);
        s
    }
}

/// Storage of one element: its context and its state.
pub(crate) struct Slot<C> {
    /// Context handed to methods.
    pub(crate) ctx: Ctx<C>,
    /// The user's chare.
    pub(crate) state: RefCell<C>,
}

/// What an `async` entry method gets instead of `&mut self`: a handle through which it
/// borrows the chare briefly ([`Handle::with`]), never across an `.await`, so that other
/// methods of the same chare run while it is suspended (Charm4py semantics).
/// It also dereferences to the element's [`Ctx`].
///
/// ```
/// use charmrs::prelude::*;
///
/// pub struct Stage { step: u32, log: Vec<u32> }
///
/// #[chare]
/// impl Stage {
///     fn new() -> Self { Stage { step: 0, log: Vec::new() } }
///
///     /// Runs only when the chare has reached `step` (messages may arrive early).
///     #[when(self.step == *step)]
///     fn advance(&mut self, step: u32) {
///         self.log.push(step);
///         self.step += 1;
///     }
///
///     /// Suspends until three steps happened; other methods run meanwhile.
///     async fn done(this: Handle<Self>) -> Vec<u32> {
///         this.wait(|s| s.step == 3).await;
///         this.with(|s| s.log.clone())
///     }
/// }
///
/// fn main() {
///     charmrs::start(|_| async {
///         let s = Single::<Stage>::on_pe(PeId(0), ()).await.unwrap();
///         let log = s.done().ret();
///         for step in [2, 0, 1] { s.advance(step); } // out of order on purpose
///         assert_eq!(log.await.unwrap(), vec![0, 1, 2]);
///         charmrs::exit(0);
///     })
/// }
/// ```
pub struct Handle<C: Chare>(pub(crate) Rc<Slot<C>>);

impl<C: Chare> Clone for Handle<C> {
    fn clone(&self) -> Self {
        Handle(Rc::clone(&self.0))
    }
}

impl<C: Chare> Handle<C> {
    /// The handle of the element `proxy` names, if it lives on the calling PE: for code
    /// outside an entry method's own arguments that acts for the element (a language
    /// binding's callbacks). `None` for a collection proxy, an element of another PE,
    /// or off a PE.
    pub fn of(proxy: &C::Proxy) -> Option<Handle<C>> {
        let raw = proxy.__raw();
        let key = ElemKey { coll: raw.coll, index: raw.elem? };
        let elem = crate::pe::local::try_with_pe(|pe| {
            // Most often the element whose method runs, acting for itself.
            let current = pe.current.borrow().as_ref().filter(|e| e.meta().key == key).cloned();
            current.or_else(|| pe.elem(&key))
        })??;
        elem.into_any_rc().downcast::<Slot<C>>().ok().map(Handle)
    }

    /// Runs `f` with the chare borrowed mutably.
    ///
    /// # Panics
    /// If called from inside another `with` of the same chare.
    pub fn with<R>(&self, f: impl FnOnce(&mut C) -> R) -> R {
        let r = f(&mut self.0.state.borrow_mut());
        crate::chare::invoke::after_state_change(&self.0.ctx.meta);
        r
    }

    /// Suspends until `cond` holds on the chare (Charm4py's `charm.wait(condition)`):
    /// re-checked each time a method of this element has run.
    pub fn wait(&self, cond: impl Fn(&C) -> bool + 'static) -> impl StdFuture<Output = ()> + 'static {
        WaitFor { slot: Rc::clone(&self.0), cond }
    }
}

impl<C: Chare> Deref for Handle<C> {
    type Target = Ctx<C>;
    fn deref(&self) -> &Ctx<C> {
        &self.0.ctx
    }
}

struct WaitFor<C, F> {
    slot: Rc<Slot<C>>,
    cond: F,
}

impl<C: Chare, F: Fn(&C) -> bool> StdFuture for WaitFor<C, F> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if (self.cond)(&self.slot.state.borrow()) {
            Poll::Ready(())
        } else {
            self.slot.ctx.meta.add_waiter(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// The PE a proxy's element lives on, if it can be known without the collection's map.
pub(crate) fn fixed_home(home: Home, index: &Index) -> Option<PeId> {
    match home {
        Home::Group => Some(PeId(index[0] as u32)),
        Home::Single(pe) => Some(pe),
        Home::Array | Home::Section(_) => None,
    }
}

//! The state of one PE, owned by its thread: local queue, chare elements, collections
//! known here, futures, tasks, timers, reductions and counters. Nothing here is shared:
//! other threads reach a PE only through its inbox.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

// Fx: the keys are the runtime's own ids, never attacker-controlled, and SipHash
// would cost more than the rest of a local message dispatch.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use crate::collection::{AnyElem, CollId, CollInfo, ElemEntry, ElemKey};
use crate::future::FutureTable;
use crate::msg::Envelope;
use crate::pe::executor::Executor;
use crate::pe::stats::{PeStats, Stats};
use crate::pe::{PeId, Shared};
use crate::qd::QdState;
use crate::reduction::ReductionTable;
use crate::timer::Timers;

thread_local! {
    static CURRENT: RefCell<Option<Rc<PeLocal>>> = const { RefCell::new(None) };
}

/// Makes `pe` the PE of this thread (or none).
pub(crate) fn set_current(pe: Option<Rc<PeLocal>>) {
    CURRENT.with(|c| *c.borrow_mut() = pe);
}

/// Runs `f` with this thread's PE.
///
/// # Panics
/// When called outside a PE thread of a running job, with a message that says so.
#[inline]
pub(crate) fn with_pe<R>(f: impl FnOnce(&Rc<PeLocal>) -> R) -> R {
    match try_with_pe(f) {
        Some(r) => r,
        None => panic!("{}", crate::error::Error::NotOnPe),
    }
}

/// Runs `f` with this thread's PE, or returns `None` off a PE.
#[inline]
pub(crate) fn try_with_pe<R>(f: impl FnOnce(&Rc<PeLocal>) -> R) -> Option<R> {
    let pe = CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()?;
    Some(f(&pe))
}

/// Everything one PE owns.
pub(crate) struct PeLocal {
    /// This PE.
    pub(crate) id: PeId,
    /// The job.
    pub(crate) shared: Arc<Shared>,
    /// Messages this PE sent to itself.
    pub(crate) local: RefCell<VecDeque<Envelope>>,
    /// Chare elements living here.
    pub(crate) elems: RefCell<HashSet<ElemEntry>>,
    /// The element whose entry method runs now (synchronously, from a delivery), so that
    /// what it calls on its own behalf finds it without a lookup ([`Handle::of`]).
    ///
    /// [`Handle::of`]: crate::Handle::of
    pub(crate) current: RefCell<Option<Rc<dyn AnyElem>>>,
    /// Collections whose creation reached this PE.
    pub(crate) colls: RefCell<HashMap<CollId, Rc<CollInfo>>>,
    /// Messages that arrived for a collection before its creation did.
    pub(crate) pending_in: RefCell<HashMap<CollId, Vec<Envelope>>>,
    /// Calls to array elements sent before this PE knew where the array's elements live:
    /// sent, in order, once the creation arrives.
    pub(crate) pending_out: RefCell<HashMap<CollId, Vec<Envelope>>>,
    /// Counter for the ids of collections created here.
    pub(crate) next_coll: Cell<u32>,
    /// Futures created here.
    pub(crate) futures: FutureTable,
    /// Tasks (async entry methods, main, spawned).
    pub(crate) exec: Executor,
    /// Timers.
    pub(crate) timers: Timers,
    /// Reductions in progress here.
    pub(crate) reds: ReductionTable,
    /// Quiescence detection.
    pub(crate) qd: QdState,
    /// Sections: builds, members waiting for their install, contribution counts.
    pub(crate) sections: crate::collection::section::SecState,
    /// This PE's task-pool deque and stealing state.
    pub(crate) pool: crate::pool::PoolLocal,
    /// Migrations in progress.
    pub(crate) mig: crate::collection::migrate::MigState,
    /// Load-balancing steps in progress.
    pub(crate) lb: crate::lb::LbState,
    /// Elements whose constructor failed here (for the error of a later call to one).
    pub(crate) failed_ctors: RefCell<rustc_hash::FxHashSet<ElemKey>>,
    /// Counters.
    pub(crate) stats: Stats,
}

impl PeLocal {
    /// A fresh PE.
    pub(crate) fn new(id: PeId, shared: Arc<Shared>) -> PeLocal {
        let rank = (id.0 - shared.layout.first_pe()) as usize;
        PeLocal {
            pool: crate::pool::PoolLocal::new(&shared.pool, id, rank),
            id,
            stats: Stats::new(shared.config.stats),
            shared,
            local: RefCell::new(VecDeque::new()),
            elems: RefCell::new(HashSet::default()),
            current: RefCell::new(None),
            colls: RefCell::new(HashMap::default()),
            pending_in: RefCell::new(HashMap::default()),
            pending_out: RefCell::new(HashMap::default()),
            next_coll: Cell::new(0),
            futures: FutureTable::new(),
            exec: Executor::new(),
            timers: Timers::new(),
            reds: ReductionTable::new(),
            qd: QdState::new(),
            sections: Default::default(),
            mig: Default::default(),
            lb: Default::default(),
            failed_ctors: Default::default(),
        }
    }

    /// Sends a message to PE `to`: the local queue if it is this PE, its inbox otherwise.
    #[inline]
    pub(crate) fn send(&self, to: PeId, env: Envelope, bytes: u64) {
        if env.counts_for_qd() {
            self.qd.sent();
        }
        self.stats.sent(bytes);
        if to == self.id {
            self.local.borrow_mut().push_back(env);
        } else if self.shared.is_local(to) {
            self.shared.push(to, env);
        } else {
            self.shared.send_remote(to, env);
        }
    }

    /// Number of PEs.
    #[inline]
    pub(crate) fn num_pes(&self) -> u32 {
        self.shared.num_pes()
    }

    /// A new collection id.
    pub(crate) fn new_coll_id(&self) -> CollId {
        let seq = self.next_coll.get();
        self.next_coll.set(seq + 1);
        CollId { pe: self.id.0, seq }
    }

    /// The collection, if its creation reached this PE.
    #[inline]
    pub(crate) fn coll(&self, id: CollId) -> Option<Rc<CollInfo>> {
        self.colls.borrow().get(&id).cloned()
    }

    /// The element, if it lives here.
    #[inline]
    pub(crate) fn elem(&self, key: &ElemKey) -> Option<Rc<dyn AnyElem>> {
        self.elems.borrow().get(key).map(|e| Rc::clone(&e.0))
    }

    /// Spawns a task on this PE.
    pub(crate) fn spawn_task(&self, fut: Pin<Box<dyn Future<Output = ()>>>, elem: Option<ElemKey>) {
        self.exec.spawn(self.id, &self.shared, fut, elem);
    }

    /// Moves the counters out at the end of the job.
    pub(crate) fn take_stats(&self) -> PeStats {
        let mut s = self.stats.snapshot(self.id);
        let (fatal, lenient) = self.futures.unobserved_errors();
        for e in lenient {
            eprintln!("charmrs: warning on PE {}: an error was never awaited: {e}", self.id);
        }
        s.unobserved_errors = fatal;
        s
    }

    /// Keeps a message for a collection this PE does not know yet.
    pub(crate) fn hold_for_coll(&self, coll: CollId, env: Envelope) {
        self.pending_in.borrow_mut().entry(coll).or_default().push(env);
    }
}

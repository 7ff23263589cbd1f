//! Runtime-internal messages.

use std::sync::Arc;

use crate::collection::{CollId, CreateSpec};
use crate::msg::Envelope;
use crate::pe::{PeId, TaskId};
use crate::qd::QdMsg;
use crate::reduction::{PartialMsg, RedKey, RedResult};

/// A message of the runtime itself, carried by [`crate::msg::Envelope::Sys`].
pub(crate) enum SysMsg {
    /// Create the local elements of a collection, and forward down the tree.
    Create {
        /// The new collection.
        coll: CollId,
        /// Root of the broadcast tree.
        root: PeId,
        /// What to create.
        spec: Arc<CreateSpec>,
    },
    /// A partial reduction from a child PE.
    Reduce {
        /// Which reduction.
        key: RedKey,
        /// The child's combined contributions.
        partial: PartialMsg,
        /// From a child or a migrated element.
        from: crate::reduction::RedFrom,
    },
    /// The result of an allreduce, broadcast down the tree of the collection.
    AllReduce {
        /// Which reduction.
        key: RedKey,
        /// Root of the broadcast.
        root: PeId,
        /// The result.
        result: RedResult,
        /// Pass it on down the tree (not for a migrated element's copy).
        down: bool,
    },
    /// Finishing or forgetting reductions (see `reduction::RedFrom::origins`).
    Red(crate::reduction::RedSys),
    /// Migrate element `key` of this PE to PE `to` (a local request).
    Migrate {
        /// The element.
        key: crate::collection::ElemKey,
        /// Where to.
        to: PeId,
    },
    /// The migration protocol.
    Mig(crate::collection::migrate::MigMsg),
    /// A migrating element.
    Migrant(Box<crate::collection::migrate::Migrant>),
    /// Load balancing.
    Lb(crate::lb::LbMsg),
    /// A call forwarded by a migrated element's home to where the element lives:
    /// delivered there, never routed again.
    Forwarded(Box<Envelope>),
    /// Poll a task of this PE (a waker fired on another thread).
    Wake(TaskId),
    /// Run this closure on the PE (work injected from outside the job: [`crate::Job::run`]).
    Run(Box<dyn FnOnce() + Send>),
    /// Quiescence detection.
    Qd(QdMsg),
    /// Building sections.
    Section(crate::collection::section::SecMsg),
    /// The task pool.
    Pool(crate::pool::PoolMsg),
    /// Sparse arrays: locations and `done_inserting`.
    Sparse(crate::collection::sparse::SparseMsg),
    /// An insertion made on this PE before the array's creation reached it (kept until
    /// then; never leaves the process).
    InsertLater {
        /// The array.
        coll: CollId,
        /// The new element.
        index: crate::Index,
        /// Where to insert it (its home if `None`).
        on: Option<PeId>,
        /// Its constructor.
        ctor: &'static crate::chare::registry::EntryDesc,
        /// The constructor's arguments.
        args: Arc<dyn std::any::Any + Send + Sync>,
    },
    /// Insert element `index` of sparse array `coll` here.
    Insert {
        /// The array.
        coll: CollId,
        /// The new element.
        index: crate::Index,
        /// Its constructor.
        ctor: &'static crate::chare::registry::EntryDesc,
        /// The constructor's arguments.
        args: Arc<dyn std::any::Any + Send + Sync>,
        /// The element's home PE (told where it lives).
        home: PeId,
    },
    /// Leave the scheduler loop.
    Exit,
}

impl SysMsg {
    /// Whether quiescence detection counts this message.
    #[inline]
    pub(crate) fn counts_for_qd(&self) -> bool {
        match self {
            SysMsg::Wake(_) | SysMsg::Run(_) | SysMsg::Qd(_) | SysMsg::Exit => false,
            SysMsg::Pool(m) => m.counts_for_qd(),
            _ => true,
        }
    }
}

//! Messages: the one envelope type that every PE-to-PE message travels in, and the
//! [`Payload`] bound on everything a message carries.
//!
//! A message to a PE of this process is *moved*: the payload box changes hands through
//! the target's inbox (or the local queue when the target is the sender's own PE); it is
//! never serialized or copied. The `Payload` bound already asks for serde so that the
//! same programs work unchanged once messages cross processes (the `comm` layer).

pub(crate) mod oob;
pub(crate) mod wire;

use std::any::Any;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::chare::registry::EpId;
use crate::collection::{CollId, Index};
use crate::error::Error;
use crate::future::FutureId;
use crate::pe::PeId;

/// What entry-method arguments, return values, future values and reduction data must be:
/// sendable to another thread, shareable by a broadcast, clonable for every element of a
/// broadcast, and serializable for other processes.
pub trait Payload: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {}
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Payload for T {}

/// A type-erased value, as it sits in a message: up to 16 bytes inline, larger ones
/// boxed.
pub(crate) type AnyBox = smallbox::SmallBox<dyn Any + Send, smallbox::space::S2>;

/// Owned arguments: up to 16 bytes (most argument tuples: a few numbers, a future, a
/// proxy index) are stored inline and cost no allocation; larger ones are boxed.
pub(crate) type ArgBox = AnyBox;

/// Arguments of an entry-method call: owned by a point-to-point message, shared by the
/// copies of a broadcast (each element gets its own clone on delivery).
pub(crate) enum Args {
    /// Moved from the sender, taken by the callee.
    Owned(ArgBox),
    /// Shared among the PEs a broadcast reaches.
    Shared(Arc<dyn Any + Send + Sync>),
}

/// Where the completion of an entry-method call goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// Fire and forget.
    None,
    /// Set this future with the return value.
    Future(FutureId),
    /// Set this `Future<()>` when the method has run, whatever it returns (an
    /// awaitable call on one element).
    Done(FutureId),
    /// A broadcast awaited or with return values: every element contributes to an
    /// internal reduction keyed by this future, whose result sets the future.
    Bcast {
        /// The future the reduction result sets.
        fut: FutureId,
        /// Gather the return values (`ret`) or only count completions (`awaitable`).
        gather: bool,
    },
    /// A multicast to a section, awaited or with return values: as `Bcast`, over the
    /// section's tree (the members' PEs set this from `Bcast` on delivery).
    SecBcast {
        /// The section.
        sec: CollId,
        /// The future the reduction result sets.
        fut: FutureId,
        /// Gather the return values or only count completions.
        gather: bool,
    },
}

/// The one envelope type. Its variant is the kind of destination; each carries the
/// entry-method id, reply flags and payload it needs.
pub(crate) enum Envelope {
    /// Entry method on one element of a collection (a single chare is a one-element
    /// collection).
    Call {
        /// Collection.
        coll: CollId,
        /// Element.
        index: Index,
        /// Entry method.
        ep: EpId,
        /// Where the completion goes.
        reply: Reply,
        /// The arguments tuple.
        args: Args,
    },
    /// Entry method on every element of a collection: delivered to the local elements of
    /// each PE, forwarded down the spanning tree rooted at `root`.
    Bcast {
        /// Collection.
        coll: CollId,
        /// Entry method.
        ep: EpId,
        /// Root of the spanning tree this broadcast travels.
        root: PeId,
        /// Whether this PE still has to forward it to its children (false when it
        /// replays a copy it held for a collection it did not know yet).
        fwd: bool,
        /// Where the completions go.
        reply: Reply,
        /// The arguments tuple, shared by all copies.
        args: Arc<dyn Any + Send + Sync>,
    },
    /// A value (or error) for a future owned by the receiving PE.
    SetFuture {
        /// The future.
        fut: FutureId,
        /// Its value (the error boxed: it is large and rare).
        value: Result<AnyBox, Box<Error>>,
    },
    /// A runtime-internal message (creation, reductions, QD, wake-ups, exit).
    Sys(crate::pe::SysMsg),
}

impl Envelope {
    /// True for messages that quiescence detection counts (all but its own waves and
    /// the runtime's wake-ups).
    #[inline]
    pub(crate) fn counts_for_qd(&self) -> bool {
        match self {
            Envelope::Sys(m) => m.counts_for_qd(),
            _ => true,
        }
    }
}

/// Shallow size of a payload type, for the byte counters: in-process messages move a
/// box and copy nothing, so this is the size of what moved.
#[inline]
pub(crate) fn shallow_size<T>() -> u64 {
    std::mem::size_of::<T>() as u64
}

/// Sizes of the runtime's per-message and per-chare structures, for the memory figures
/// of the benchmarks.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// One envelope (what every message costs besides its payload box).
    pub envelope: usize,
    /// One inbox node (envelope plus the link), for messages between PEs.
    pub inbox_node: usize,
    /// Per idle chare, beyond the user's struct: the runtime's bookkeeping in the
    /// element's allocation, the `Rc` header and the element table's entry.
    pub chare_overhead: usize,
}

/// The sizes on this build.
pub fn sizes() -> Sizes {
    use crate::chare::ElemMeta;

    let envelope = std::mem::size_of::<Envelope>();
    let rc_header = 2 * std::mem::size_of::<usize>();
    let table_entry = std::mem::size_of::<crate::collection::ElemEntry>() + 1; // +1 control byte
    Sizes {
        envelope,
        inbox_node: envelope + std::mem::size_of::<usize>(),
        chare_overhead: std::mem::size_of::<ElemMeta>()
            + std::mem::size_of::<std::cell::Cell<isize>>()
            + rc_header
            + table_entry,
    }
}

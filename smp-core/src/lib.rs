//! # charmrs: the node runtime and its native Rust API
//!
//! charmrs is a message-driven parallel runtime with the programming model of Charm++
//! and Charm4py. A program is a set of *chares* (distributed objects) that call each
//! other's *entry methods* asynchronously; the runtime decides where they run.
//!
//! ```
//! use charmrs::prelude::*;
//!
//! pub struct Hello;
//!
//! #[chare]
//! impl Hello {
//!     fn new() -> Self { Hello }
//!     fn greet(&self, ctx: &Ctx<Self>, from: u32) -> String {
//!         format!("PE {} greets PE {from}", ctx.my_pe())
//!     }
//! }
//!
//! fn main() {
//!     // `./app +p4` runs 4 PEs; without options, 1.
//!     charmrs::start(|_main| async move {
//!         let group = Group::<Hello>::new(()).await.expect("group created");
//!         // A broadcast with a return value: every element's answer, by index.
//!         let lines = group.greet(0).ret_all().await.expect("every PE answered");
//!         for line in lines { println!("{line}"); }
//!         charmrs::exit(0);
//!     })
//! }
//! ```
//!
//! ## Nomenclature
//! - **PE** (processing element): one OS thread pinned to one core, running one
//!   scheduler loop. `+pN` on the command line asks for N of them. A chare is touched
//!   only by the thread of the PE it lives on, so its state needs no lock.
//! - **node**: one OS process holding one or more PEs (this crate runs one node;
//!   several processes and hosts come with the `comm` layer).
//! - **host**: one machine. [`num_hosts`], [`my_host`] and [`get_host_pes`] report hosts.
//! - **chare**: an object whose type has a `#[chare]` impl block; its methods are
//!   *entry methods*, called through a *proxy*.
//! - **group**: a collection with one element per PE ([`Group`]).
//! - **array**: an N-d collection (1-d to 6-d) of elements indexed by [`Index`],
//!   placed on PEs by a map ([`Array`], [`ArrayMap`]).
//! - **section**: a subset of a collection's elements, itself addressable like a
//!   collection ([`split`], [`section`], [`combine`]).
//! - **migration**: an array element of a `#[chare(migratable)]` type moves to another
//!   PE or process ([`Ctx::migrate`]); calls follow it through its *home* PE, in order.
//! - **load balancing**: at [`Ctx::at_sync`], the balancer chosen with `+balancer`
//!   (see [`Balancer`]) moves elements by their measured load.
//! - **proxy**: a handle naming a chare, one element of a collection, or a whole
//!   collection; calling a method on a collection proxy is a *broadcast*.
//! - **entry method**: a method called by message. Calls are *one-sided* (fire and
//!   forget), *awaitable* (a future completes when the method has run) or *with return*
//!   (a future of the value).
//! - **collective vs one-sided**: reductions, broadcasts and quiescence detection
//!   involve every element (collective); entry-method calls involve only the callee.
//! - **future**: a placeholder for a value, created on one PE, sendable anywhere, set
//!   once ([`Future`]).
#![deny(unsafe_code)]

mod chare;
mod collection;
pub mod config;
mod error;
mod future;
mod lb;
mod msg;
mod pe;
pub mod pool;
mod qd;
mod queue;
mod reduction;
mod sched;
mod sync;
mod timer;
mod topo;

pub use chare::{Call, Chare, Ctx, Handle, Proxy};
pub use collection::{
    combine, section, split, Array, ArrayMap, BlockMap, BlockSlot, Creation, Group, HashMapping, Index,
    Members, Single, SliceDim, MAX_DIMS,
};
pub use config::{Balancer, Config};
pub use error::{Error, Result};
pub use future::{iwait, wait_all, wait_any, Future, Iwait};
pub use msg::oob::{serialize_oob, OobBytes, PodVec};
pub use msg::Payload;
pub use pe::{
    abort, exit, get_host_first_pe, get_host_num_pes, get_host_pes, get_node_first_pe, get_pe_host,
    get_pe_host_rank, get_topo_subtrees, get_topo_tree_edges, my_host, my_node, my_pe, num_hosts, num_nodes,
    num_pes, run_with, spawn, start, start_with, Job, MainCtx, PeId,
};
pub use qd::{start_qd, wait_qd};
pub use reduction::{Bitwise, Logical, Numeric, RedTarget, Reducer};
pub use sched::IdlePolicy;
pub use timer::{call_after, sleep};

/// The `#[chare]` attribute: put it on the `impl` block of a chare type. Every method in
/// that block becomes an entry method, `fn new` the constructor, and a proxy type named
/// `<Type>Proxy` is generated with one method per entry method.
pub use charmrs_macros::chare;

/// Everything a charmrs program usually needs.
pub mod prelude {
    pub use crate::{
        chare, Array, ArrayMap, Call, Chare, Ctx, Future, Group, Handle, Index, MainCtx, PeId, Proxy,
        RedTarget, Reducer, Single,
    };
}

/// Items used by the code that `#[chare]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::chare::invoke::{
        invoke_async, invoke_ctor, invoke_mut, invoke_ref, when_check, Invoke, Raised,
    };
    pub use crate::chare::proxy::{call, delivered_in_process, is_group, is_section_multicast, RawProxy};
    pub use crate::chare::registry::{EntryDesc, WhenFn, ENTRIES};
    pub use crate::collection::migrate::MigrateFns;
    pub use crate::collection::section::{set_section_eval, SectionEval};
    pub use crate::collection::{MapDesc, MAPS};
    pub use crate::msg::wire::ArgCodec;
    pub use crate::msg::{sizes, Sizes};
    pub use crate::pe::{set_pe_thread_wrapper, set_pe_turn_wrapper};
    pub use crate::pool::{TaskDesc, TASKS};
    /// Whether the calling thread is a running PE.
    pub fn on_pe() -> bool {
        crate::pe::local::try_with_pe(|_| ()).is_some()
    }
    pub use linkme;
    pub use serde;
}

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

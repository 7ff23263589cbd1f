//! PEs: the job's shared state, the per-PE thread-local state, the scheduler loop and
//! the local executor of async entry methods.

mod executor;
pub(crate) mod local;
pub(crate) mod net;
mod runtime;
mod stats;
mod sys;
pub(crate) mod worker;

pub(crate) use executor::TaskId;
pub(crate) use local::{with_pe, PeLocal};
pub(crate) use runtime::Shared;
pub use runtime::{
    abort, exit, get_host_first_pe, get_host_num_pes, get_host_pes, get_node_first_pe, get_pe_host,
    get_pe_host_rank, get_topo_subtrees, get_topo_tree_edges, my_host, my_node, my_pe, num_hosts, num_nodes,
    num_pes, run_with, spawn, start, start_with, Job, MainCtx, PeId,
};
pub use runtime::{set_pe_thread_wrapper, set_pe_turn_wrapper};
pub(crate) use sys::SysMsg;

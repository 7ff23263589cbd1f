//! PEs: the job's shared state, the per-PE thread-local state, the scheduler loop and
//! the local executor of async entry methods.

mod executor;
pub(crate) mod local;
mod runtime;
mod stats;
mod sys;
pub(crate) mod worker;

pub(crate) use executor::TaskId;
pub(crate) use local::{with_pe, PeLocal};
pub(crate) use runtime::Shared;
pub use runtime::{
    abort, exit, get_host_pes, my_host, my_pe, num_hosts, num_pes, spawn, start, start_with, Job, MainCtx,
    PeId,
};
pub(crate) use sys::SysMsg;

//! The launcher's library (`charmrs-run` and `python -m charmrs.run` share it). So far:
//! its command line ([`options`]), Charm++ nodelist files ([`nodelist`]) and running a
//! job's processes on this host or others ([`local`]), also through the cluster's MPI
//! launcher (`++mpiexec`).

pub mod local;
mod mpiexec;
pub mod nodelist;
pub mod options;

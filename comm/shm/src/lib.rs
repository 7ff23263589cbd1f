//! Shared-memory transport building blocks for the charmrs runtime.
//!
//! * [`segment`]: `/dev/shm` segments with an unlink-after-open lifecycle, so that no file can
//!   outlive a crash once both sides have mapped it.
//! * [`ring`]: a lock-free single-producer single-consumer ring of variable-length byte records
//!   that lives inside a segment, with a sleep/doorbell handshake for idle consumers.
//! * [`bulk`]: a reusable buffer per pair: the rendezvous for messages too large for a ring.
//! * [`region`]: the [`SharedRegion`](region::SharedRegion) abstraction a ring lives in (a
//!   [`Segment`](segment::Segment) or, for threads and tests, a [`HeapRegion`](region::HeapRegion)).
//!
//! Built with `RUSTFLAGS="--cfg loom"`, all atomics are [loom](https://docs.rs/loom)'s and the
//! ring's data accesses are tracked, so the protocol can be model-checked.
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!("charmrs-shm relies on Linux /dev/shm semantics");

pub mod bulk;
pub mod region;
pub mod ring;
pub mod segment;
mod sync;

//! Synchronization shim.
//!
//! Everything in this crate that touches shared memory goes through these re-exports so that the
//! same code runs on `std` atomics normally and on [loom](https://docs.rs/loom)'s model-checked
//! atomics when built with `RUSTFLAGS="--cfg loom"`.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64};

pub(crate) use std::sync::atomic::Ordering;

/// Per-8-byte-word access tracker for the ring's data area (loom only).
///
/// Loom cannot see plain reads and writes through raw pointers, so under `cfg(loom)` every data
/// access is additionally announced to one of these cells; loom then reports a causality
/// violation if a read and a write of the same word are not ordered by happens-before.
#[cfg(loom)]
pub(crate) type Tracker = loom::cell::UnsafeCell<()>;

/// `fence(SeqCst)`, except that loom negative-control tests can switch it off (see
/// [`SKIP_SEQCST_FENCE`]) to show that the model catches the resulting lost wakeup.
#[inline]
pub(crate) fn seqcst_fence() {
    #[cfg(loom)]
    if SKIP_SEQCST_FENCE.with(|skip| skip.get()) {
        return;
    }
    fence(Ordering::SeqCst);
}

#[cfg(loom)]
thread_local! {
    /// Loom runs all model threads as coroutines on the test's OS thread, so a thread-local knob
    /// affects exactly one model (and not other tests running in parallel).
    pub(crate) static SKIP_SEQCST_FENCE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

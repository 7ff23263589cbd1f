//! The loom switch: every atomic, `Arc`, `Mutex`, `Condvar` and thread primitive that a
//! lock-free protocol of this crate relies on comes from here, so that `--cfg loom`
//! model-checks the very code that ships (as tokio's `src/loom/` and crossbeam's
//! `primitive` do).

#[cfg(not(loom))]
pub(crate) use std::sync::atomic;
#[cfg(not(loom))]
#[allow(unused_imports)] // used by the tests and loom models of the protocols
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::thread;

#[cfg(loom)]
pub(crate) use loom::sync::atomic;
#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::thread;

/// Parks the current thread until unparked or until `timeout` elapses (loom has no
/// timed park: there the timeout is ignored, which only removes spurious wake-ups from
/// the model, never adds lost ones).
#[inline]
pub(crate) fn park_timeout(timeout: Option<std::time::Duration>) {
    #[cfg(not(loom))]
    match timeout {
        Some(t) => std::thread::park_timeout(t),
        None => std::thread::park(),
    }
    #[cfg(loom)]
    {
        let _ = timeout;
        loom::thread::park();
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `std::cell::UnsafeCell` behind loom's closure API (`with` / `with_mut`), so that
/// non-atomic fields shared through an atomic protocol are race-checked under
/// `--cfg loom` (every access is then recorded and checked against happens-before)
/// and compile to plain pointer accesses otherwise. Same shape as tokio's
/// `loom::std::unsafe_cell`.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `data`.
    #[inline]
    pub(crate) const fn new(data: T) -> Self {
        Self(std::cell::UnsafeCell::new(data))
    }

    /// Runs `f` with a shared raw pointer to the contents (a read under loom).
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with a mutable raw pointer to the contents (a write under loom).
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

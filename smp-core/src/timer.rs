//! Timers: callbacks after a delay (Charm4py's `scheduleCallableAfter`) and async sleep.
//! Each PE keeps a heap of deadlines; the scheduler fires due ones every loop turn and
//! parks no longer than the next deadline.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

// Fx: the keys are the runtime's own ids, never attacker-controlled, and SipHash
// would cost more than the rest of a local message dispatch.
use rustc_hash::FxHashMap as HashMap;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::pe::with_pe;

/// The timers of one PE.
pub(crate) struct Timers {
    heap: RefCell<BinaryHeap<Reverse<(Instant, u64)>>>,
    callbacks: RefCell<HashMap<u64, Box<dyn FnOnce()>>>,
    next: Cell<u64>,
}

impl Timers {
    /// No timers.
    pub(crate) fn new() -> Timers {
        Timers {
            heap: RefCell::new(BinaryHeap::new()),
            callbacks: RefCell::new(HashMap::default()),
            next: Cell::new(0),
        }
    }

    /// Runs `f` on this PE at `at` or later.
    pub(crate) fn add(&self, at: Instant, f: Box<dyn FnOnce()>) {
        let id = self.next.get();
        self.next.set(id + 1);
        self.callbacks.borrow_mut().insert(id, f);
        self.heap.borrow_mut().push(Reverse((at, id)));
    }

    /// The earliest deadline.
    #[inline]
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.borrow().peek().map(|Reverse((t, _))| *t)
    }

    /// Runs the callbacks that are due; returns whether any ran.
    pub(crate) fn fire_due(&self) -> bool {
        if self.heap.borrow().is_empty() {
            return false;
        }
        let now = Instant::now();
        let mut fired = false;
        loop {
            let id = {
                let mut heap = self.heap.borrow_mut();
                match heap.peek() {
                    Some(Reverse((t, id))) if *t <= now => {
                        let id = *id;
                        heap.pop();
                        id
                    }
                    _ => break,
                }
            };
            let cb = self.callbacks.borrow_mut().remove(&id);
            if let Some(cb) = cb {
                fired = true;
                cb();
            }
        }
        fired
    }
}

/// Calls `f` on the current PE after `delay` (Charm4py's `scheduleCallableAfter`).
pub fn call_after(delay: Duration, f: impl FnOnce() + 'static) {
    with_pe(|pe| pe.timers.add(Instant::now() + delay, Box::new(f)));
}

/// Suspends the calling task for `delay`; the PE runs other messages meanwhile
/// (Charm4py's `charm.sleep`).
pub fn sleep(delay: Duration) -> impl StdFuture<Output = ()> {
    Sleep { until: Instant::now() + delay, armed: false }
}

struct Sleep {
    until: Instant,
    armed: bool,
}

impl StdFuture for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.until {
            return Poll::Ready(());
        }
        if !self.armed {
            self.armed = true;
            let w = cx.waker().clone();
            with_pe(|pe| pe.timers.add(self.until, Box::new(move || w.wake())));
        }
        Poll::Pending
    }
}

//! The executor of one PE: runs the `!Send` futures of async entry methods, of the main
//! function and of [`crate::spawn`] on the PE's own thread.
//!
//! Written here rather than taken from a crate because its wake path is part of the
//! PE's message protocol: a waker fired on the PE itself pushes the task on a plain
//! local ready list (no atomics); fired on another thread, it sends a `Wake` message
//! through the target PE's inbox, which also wakes the PE if it sleeps. Tokio's
//! `LocalSet` and `async-executor` would add a second queue and a second wake-up path.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

// Fx: the keys are the runtime's own ids, never attacker-controlled, and SipHash
// would cost more than the rest of a local message dispatch.
use rustc_hash::FxHashMap as HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use crate::collection::ElemKey;
use crate::msg::Envelope;
use crate::pe::{PeId, Shared, SysMsg};

/// Identifies a task on its PE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TaskId(pub(crate) u64);

/// A spawned future and the chare element it runs for (to re-check `when` conditions
/// and `wait` predicates of that element after it ran).
struct Task {
    fut: Pin<Box<dyn Future<Output = ()>>>,
    elem: Option<ElemKey>,
    waker: Waker,
}

/// The per-PE task table and ready list.
pub(crate) struct Executor {
    tasks: RefCell<HashMap<TaskId, Task>>,
    ready: RefCell<VecDeque<TaskId>>,
    next: Cell<u64>,
}

/// Wakes a task: locally through the ready list, remotely through a message.
struct TaskWaker {
    pe: PeId,
    task: TaskId,
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let on_target = crate::pe::local::try_with_pe(|pe| {
            if pe.id == self.pe {
                pe.exec.ready.borrow_mut().push_back(self.task);
                true
            } else {
                false
            }
        })
        .unwrap_or(false);
        if !on_target {
            self.shared.push(self.pe, Envelope::Sys(SysMsg::Wake(self.task)));
        }
    }
}

impl Executor {
    /// An empty executor.
    pub(crate) fn new() -> Executor {
        Executor {
            tasks: RefCell::new(HashMap::default()),
            ready: RefCell::new(VecDeque::new()),
            next: Cell::new(0),
        }
    }

    /// Adds a task, ready to be polled.
    pub(crate) fn spawn(
        &self,
        pe: PeId,
        shared: &Arc<Shared>,
        fut: Pin<Box<dyn Future<Output = ()>>>,
        elem: Option<ElemKey>,
    ) {
        let id = TaskId(self.next.get());
        self.next.set(id.0 + 1);
        let waker = Waker::from(Arc::new(TaskWaker { pe, task: id, shared: Arc::clone(shared) }));
        self.tasks.borrow_mut().insert(id, Task { fut, elem, waker });
        self.ready.borrow_mut().push_back(id);
    }

    /// Marks a task ready (a `Wake` message arrived).
    pub(crate) fn wake(&self, id: TaskId) {
        self.ready.borrow_mut().push_back(id);
    }

    /// True if a task is ready.
    #[inline]
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.borrow().is_empty()
    }

    /// Polls the tasks that are ready now (not those made ready meanwhile). Returns the
    /// elements whose tasks ran, so that their `when` buffers are re-checked, and
    /// whether any task ran.
    pub(crate) fn run_ready(&self, ran_for: &mut Vec<ElemKey>) -> bool {
        let n = self.ready.borrow().len();
        let mut ran = false;
        for _ in 0..n {
            let Some(id) = self.ready.borrow_mut().pop_front() else { break };
            // Take the task out while it runs: it may spawn or wake others.
            let Some(mut task) = self.tasks.borrow_mut().remove(&id) else {
                continue; // finished already: a stale wake-up
            };
            ran = true;
            let waker = task.waker.clone();
            let mut cx = Context::from_waker(&waker);
            // Panics inside entry-method futures are caught by the future's wrapper
            // (chare::invoke); the main task catches its own.
            let done = task.fut.as_mut().poll(&mut cx).is_ready();
            if let Some(e) = task.elem {
                ran_for.push(e);
            }
            if !done {
                self.tasks.borrow_mut().insert(id, task);
            }
        }
        ran
    }
}

//! The executor of one PE: runs the `!Send` futures of async entry methods, of the main
//! function and of [`crate::spawn`] on the PE's own thread.
//!
//! Written here rather than taken from a crate because its wake path is part of the
//! PE's message protocol: a waker fired on the PE itself pushes the task on a plain
//! local ready list (no atomics); fired on another thread, it sends a `Wake` message
//! through the target PE's inbox, which also wakes the PE if it sleeps. Tokio's
//! `LocalSet` and `async-executor` would add a second queue and a second wake-up path.
//!
//! Tasks live in a slab: a task id is its slot. A wake-up that arrives after its task
//! finished and the slot was reused polls the new task once for nothing, which the
//! `Future` contract allows (spurious polls).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use slab::Slab;

use crate::collection::ElemKey;
use crate::msg::Envelope;
use crate::pe::{PeId, Shared, SysMsg};

/// Identifies a task on its PE (its slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TaskId(pub(crate) usize);

/// A spawned future and the chare element it runs for (to re-check `when` conditions
/// and `wait` predicates of that element after it ran).
struct Task {
    /// `None` while the task is being polled.
    fut: Option<Pin<Box<dyn Future<Output = ()>>>>,
    elem: Option<ElemKey>,
    waker: Waker,
}

/// The per-PE task table and ready list.
pub(crate) struct Executor {
    tasks: RefCell<Slab<Task>>,
    ready: RefCell<VecDeque<TaskId>>,
    /// Shared by the wakers of this PE's tasks (one reference count per PE, touched by
    /// this PE's thread, instead of one on the job's shared state from every PE).
    target: RefCell<Option<Arc<WakeTarget>>>,
}

/// Where a waker sends its wake-up.
struct WakeTarget {
    pe: PeId,
    shared: Arc<Shared>,
}

/// Wakes a task: locally through the ready list, remotely through a message.
struct TaskWaker {
    target: Arc<WakeTarget>,
    task: TaskId,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let pe = self.target.pe;
        let on_target = crate::pe::local::try_with_pe(|local| {
            if local.id == pe {
                local.exec.ready.borrow_mut().push_back(self.task);
                true
            } else {
                false
            }
        })
        .unwrap_or(false);
        if !on_target {
            self.target.shared.push(pe, Envelope::Sys(SysMsg::Wake(self.task)));
        }
    }
}

impl Executor {
    /// An empty executor.
    pub(crate) fn new() -> Executor {
        Executor {
            tasks: RefCell::new(Slab::new()),
            ready: RefCell::new(VecDeque::new()),
            target: RefCell::new(None),
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
        let target = Arc::clone(
            self.target
                .borrow_mut()
                .get_or_insert_with(|| Arc::new(WakeTarget { pe, shared: Arc::clone(shared) })),
        );
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let id = TaskId(entry.key());
        let waker = Waker::from(Arc::new(TaskWaker { target, task: id }));
        entry.insert(Task { fut: Some(fut), elem, waker });
        drop(tasks);
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

    /// Polls the tasks that are ready now (not those made ready meanwhile). Pushes the
    /// elements whose tasks ran on `ran_for`, so that their `when` buffers are
    /// re-checked, and returns whether any task ran.
    pub(crate) fn run_ready(&self, ran_for: &mut Vec<ElemKey>) -> bool {
        let n = self.ready.borrow().len();
        let mut ran = false;
        for _ in 0..n {
            let Some(id) = self.ready.borrow_mut().pop_front() else { break };
            // Take the future out while it runs: it may spawn or wake other tasks.
            let taken = {
                let mut tasks = self.tasks.borrow_mut();
                tasks.get_mut(id.0).and_then(|t| t.fut.take().map(|f| (f, t.waker.clone(), t.elem)))
            };
            // Finished already, or being polled (a wake-up from inside its own poll).
            let Some((mut fut, waker, elem)) = taken else { continue };
            ran = true;
            let mut cx = Context::from_waker(&waker);
            // Panics inside entry-method futures are caught by the future's wrapper
            // (chare::invoke); the main task catches its own.
            let done = fut.as_mut().poll(&mut cx).is_ready();
            if let Some(e) = elem {
                ran_for.push(e);
            }
            let mut tasks = self.tasks.borrow_mut();
            if done {
                tasks.remove(id.0);
            } else if let Some(t) = tasks.get_mut(id.0) {
                t.fut = Some(fut);
            }
        }
        ran
    }
}

//! The distributed task pool (Charm4py's `charm.pool`): tasks are values of a type
//! implementing [`Task`], run on whichever PE is free, scheduled by work stealing.
//!
//! # Scheduling
//! Each PE owns a [`crossbeam_deque::Worker`]; a task submitted on a PE goes to the
//! back of that PE's deque (LIFO for its owner: a recursive computation runs depth
//! first where it started, with hot caches). A PE runs a task only when it has no
//! message to handle, no ready coroutine and no due timer: a task is spawned as a
//! coroutine of the PE, so a task that waits (for the tasks it created, say) lets the
//! PE run others meanwhile: nested parallelism cannot deadlock.
//!
//! - **Within a process**, an idle PE takes from its own deque, then steals from the
//!   front of the others' (the oldest, largest pieces of a recursion). Submitting wakes
//!   one parked PE of the process; spinning PEs see the queued count.
//! - **Between processes**, an idle PE whose own process has no queued task asks a
//!   random PE of another process (`StealReq`); that PE steals one task from its own
//!   process's deques and sends it (`Job`), or answers `NoWork`. A PE has at most one
//!   request in flight, and after each `NoWork` waits twice as long before the next
//!   (from [`MIN_BACKOFF`] up to [`MAX_BACKOFF`]).
//!
//! # Termination of the stealing protocol
//! Idle PEs must not ask forever (a parked PE costs no CPU, and quiescence detection
//! must see the job go quiet). A PE asks other processes only while it is *active*:
//! for [`WINDOW`] after it last ran or received a task, or received a `Wake`. A PE that
//! submits a task sends a `Wake` to one PE of every other process, at most once per
//! [`WAKE_EVERY`]. Every request gets exactly one answer. So once no task is submitted
//! any more, each PE sends at most `log2(MAX_BACKOFF / MIN_BACKOFF)` plus
//! `WINDOW / MAX_BACKOFF` more requests and then parks; the protocol's own messages
//! (`Wake`, `StealReq`, `NoWork`) are not counted by quiescence detection, tasks
//! (queued or in flight) are.
//!
//! Tasks cross processes serialized: their type must be registered with
//! [`register_task!`](crate::register_task). An unregistered task type works within a
//! process and is never sent to another.

use std::cell::Cell;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_deque::{Steal, Stealer, Worker};
use serde::{Deserialize, Serialize};

use crate::chare::invoke::{fatal, task_failure, CatchUnwind};
use crate::error::Result;
use crate::future::{Future, FutureId};
use crate::msg::{Envelope, Payload};
use crate::pe::{with_pe, PeId, PeLocal, SysMsg};
use crate::sched::idle::Sleeper;
use crate::sync::atomic::{AtomicUsize, Ordering};

/// First wait after a steal request that found nothing.
pub const MIN_BACKOFF: Duration = Duration::from_micros(20);
/// Longest wait between steal requests.
pub const MAX_BACKOFF: Duration = Duration::from_millis(2);
/// How long a PE keeps asking other processes after its last task or wake-up.
pub const WINDOW: Duration = Duration::from_millis(50);
/// How often a submitting PE wakes the other processes, at most.
pub const WAKE_EVERY: Duration = Duration::from_millis(5);

/// A unit of work for the pool: a serializable value whose `run` computes the result.
/// `run` may await (for other tasks, say): the PE runs other work meanwhile.
///
/// ```
/// use charmrs::pool::{self, Task};
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Fib(u64);
/// charmrs::register_task!(Fib);
///
/// impl Task for Fib {
///     type Output = u64;
///     async fn run(self) -> u64 {
///         if self.0 < 2 {
///             return self.0;
///         }
///         let (a, b) = (pool::submit(Fib(self.0 - 1)), pool::submit(Fib(self.0 - 2)));
///         a.await.unwrap() + b.await.unwrap()
///     }
/// }
///
/// fn main() {
///     charmrs::start(|_| async {
///         assert_eq!(pool::submit(Fib(15)).await.unwrap(), 610);
///         let squares = pool::map((0..10).map(Fib)).await.unwrap();
///         assert_eq!(squares[9], 34);
///         charmrs::exit(0);
///     })
/// }
/// ```
pub trait Task: Payload {
    /// What the task gives back.
    type Output: Payload;
    /// Runs the task (on any PE).
    fn run(self) -> impl StdFuture<Output = Self::Output> + 'static;
}

/// A task in a deque: type-erased, with where its result goes.
pub(crate) struct Job {
    task: Box<dyn AnyTask>,
    reply: Option<FutureId>,
}

/// A task, type-erased.
trait AnyTask: Send {
    /// Its type's name (the registration key).
    fn name(&self) -> &'static str;
    /// Runs it, sending the result (or the failure) to `reply`.
    fn start(self: Box<Self>, reply: Option<FutureId>) -> Pin<Box<dyn StdFuture<Output = ()>>>;
    /// Serializes it, for another process.
    fn encode(&self, out: &mut Vec<u8>) -> std::result::Result<(), String>;
}

impl<T: Task> AnyTask for T {
    fn name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn start(self: Box<Self>, reply: Option<FutureId>) -> Pin<Box<dyn StdFuture<Output = ()>>> {
        let name = self.name();
        Box::pin(async move {
            let r = CatchUnwind::new(async move { (*self).run().await }).await;
            let r = r.map_err(|m| task_failure(name, m));
            match (reply, r) {
                (Some(f), r) => Future::<T::Output>::from_id(f).complete(r),
                (None, Ok(_)) => {}
                (None, Err(e)) => fatal(&format!("unhandled {e}")),
            }
        })
    }

    fn encode(&self, out: &mut Vec<u8>) -> std::result::Result<(), String> {
        crate::msg::wire::encode(self, out)
    }
}

/// A registered task type (made by [`register_task!`](crate::register_task)).
pub struct TaskDesc {
    name: fn() -> &'static str,
    decode: fn(&[u8], Option<FutureId>) -> std::result::Result<Job, String>,
}

impl TaskDesc {
    /// The descriptor of task type `T`.
    pub const fn of<T: Task>() -> TaskDesc {
        TaskDesc { name: std::any::type_name::<T>, decode: decode_task::<T> }
    }
}

fn decode_task<T: Task>(bytes: &[u8], reply: Option<FutureId>) -> std::result::Result<Job, String> {
    Ok(Job { task: Box::new(crate::msg::wire::decode::<T>(bytes)?), reply })
}

/// Every registered task type.
#[linkme::distributed_slice]
pub static TASKS: [TaskDesc];

/// Registers a [`Task`] type so that its tasks can run in other processes:
/// `charmrs::register_task!(MyTask);` at module level.
#[macro_export]
macro_rules! register_task {
    ($t:ty) => {
        const _: () = {
            #[$crate::__private::linkme::distributed_slice($crate::__private::TASKS)]
            #[linkme(crate = $crate::__private::linkme)]
            static __CHARMRS_TASK: $crate::__private::TaskDesc = $crate::__private::TaskDesc::of::<$t>();
        };
    };
}

/// The messages of the stealing protocol, and tasks moving between processes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum PoolMsg {
    /// Tasks were submitted: ask for work for a while.
    Wake,
    /// An idle PE asks for a task.
    StealReq { thief: PeId },
    /// Nothing to give.
    NoWork,
    /// A task for the PE that asked: its type, its bytes, where its result goes.
    Job { name: String, bytes: Vec<u8>, reply: Option<FutureId> },
}

impl PoolMsg {
    /// Whether quiescence detection counts it (tasks only).
    pub(crate) fn counts_for_qd(&self) -> bool {
        matches!(self, PoolMsg::Job { .. })
    }
}

/// The pool state every PE of a process shares.
pub(crate) struct PoolShared {
    /// One per PE of the process, in PE order.
    stealers: Vec<Stealer<Job>>,
    /// The deques, until each PE takes its own.
    workers: Mutex<Vec<Option<Worker<Job>>>>,
    /// Tasks queued in this process's deques.
    queued: Queued,
    /// Until when (nanoseconds after `epoch`) the idle PEs of this process ask other
    /// processes for tasks: one window for the whole process, so that every idle PE
    /// of it helps once one of them learnt that there is work.
    active_until: std::sync::atomic::AtomicU64,
    epoch: Instant,
}

/// The number of tasks queued in a process, and the handshake that keeps an idle PE
/// from parking while one waits: the queueing PE counts the task (SeqCst), then wakes
/// one sleeping PE; a PE going to park publishes `SLEEPING` (SeqCst), then re-checks the
/// count (the same Dekker pattern as the inbox: `sched/README.md`). Model-checked by
/// loom below.
pub(crate) struct Queued(AtomicUsize);

impl Queued {
    fn new() -> Queued {
        Queued(AtomicUsize::new(0))
    }

    /// A task was queued: count it, then wake one of `sleepers` that sleeps.
    fn added<'a>(&self, sleepers: impl IntoIterator<Item = &'a Sleeper>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        if let Some(s) = sleepers.into_iter().find(|s| s.is_sleeping()) {
            s.notify();
        }
    }

    /// A task was taken.
    fn taken(&self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether a task seems queued (a load: for spinning PEs and quick checks).
    #[inline]
    fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }

    /// Whether a task is queued, as the sleep handshake's re-check: a zero is
    /// confirmed by a read-modify-write, ordered against every `added` in the counter's
    /// modification order (so the handshake holds under acquire/release reasoning
    /// alone, as loom models it; the inbox does the same).
    #[inline]
    fn confirm(&self) -> bool {
        self.any() || self.0.fetch_add(0, Ordering::SeqCst) > 0
    }
}

impl PoolShared {
    /// The deques of a process of `n` PEs.
    pub(crate) fn new(n: usize) -> PoolShared {
        let workers: Vec<Worker<Job>> = (0..n).map(|_| Worker::new_lifo()).collect();
        PoolShared {
            stealers: workers.iter().map(Worker::stealer).collect(),
            workers: Mutex::new(workers.into_iter().map(Some).collect()),
            queued: Queued::new(),
            active_until: std::sync::atomic::AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Opens (or extends) the window in which idle PEs ask other processes for tasks.
    fn activate(&self, now: Instant) {
        // Relaxed: a hint; a PE that misses it parks and is woken by the next task.
        self.active_until.fetch_max(self.now_ns(now + WINDOW), std::sync::atomic::Ordering::Relaxed);
    }

    fn active(&self, now: Instant) -> bool {
        self.now_ns(now) < self.active_until.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a task seems to wait in a deque of this process (a hint).
    #[inline]
    pub(crate) fn has_queued(&self) -> bool {
        self.queued.any()
    }

    /// Whether a task waits in a deque of this process: the idle handshake's re-check.
    #[inline]
    pub(crate) fn confirm_queued(&self) -> bool {
        self.queued.confirm()
    }
}

/// One PE's pool state.
pub(crate) struct PoolLocal {
    worker: Worker<Job>,
    /// Rank of this PE in its process (its own deque among the stealers).
    rank: usize,
    /// A steal request is in flight.
    asking: Cell<bool>,
    backoff: Cell<Duration>,
    next_ask: Cell<Option<Instant>>,
    last_wake: Cell<Option<Instant>>,
    rng: Cell<u64>,
}

impl PoolLocal {
    /// The state of PE `pe`, rank `rank` in its process: takes its deque.
    pub(crate) fn new(shared: &PoolShared, pe: PeId, rank: usize) -> PoolLocal {
        let worker =
            shared.workers.lock().expect("pool deques")[rank].take().expect("each PE takes its deque once");
        PoolLocal {
            worker,
            rank,
            asking: Cell::new(false),
            backoff: Cell::new(MIN_BACKOFF),
            next_ask: Cell::new(None),
            last_wake: Cell::new(None),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (pe.0 as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9)),
        }
    }

    fn random(&self, n: u32) -> u32 {
        // xorshift64*: victim choice only.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as u32 % n.max(1)
    }

    /// When the PE's idle wait must end to ask another process again.
    pub(crate) fn deadline(&self, shared: &PoolShared) -> Option<Instant> {
        if self.asking.get() {
            return None;
        }
        let now = Instant::now();
        if shared.active(now) {
            self.next_ask.get().or(Some(Instant::now()))
        } else {
            None
        }
    }
}

/// Queues a job on this PE.
fn push(pe: &Rc<PeLocal>, job: Job, from_here: bool) {
    let shared = &pe.shared;
    pe.qd.sent();
    pe.pool.worker.push(job);
    let me = pe.pool.rank;
    shared
        .pool
        .queued
        .added(shared.pes.iter().enumerate().filter(|(i, _)| *i != me).map(|(_, p)| &p.sleeper));
    let now = Instant::now();
    shared.pool.activate(now);
    if from_here && shared.num_processes() > 1 {
        let due = pe.pool.last_wake.get().is_none_or(|t| now.duration_since(t) >= WAKE_EVERY);
        if due {
            pe.pool.last_wake.set(Some(now));
            let me = shared.layout.rank;
            for p in 0..shared.num_processes() {
                if p != me {
                    let to = PeId(shared.layout.first_pe_of(p));
                    pe.send(to, Envelope::Sys(SysMsg::Pool(PoolMsg::Wake)), 0);
                }
            }
        }
    }
}

/// One job from the front of another PE's deque, if it has one.
fn steal_from(s: &Stealer<Job>) -> Option<Job> {
    loop {
        match s.steal() {
            Steal::Success(j) => return Some(j),
            Steal::Empty => return None,
            Steal::Retry => continue,
        }
    }
}

/// Takes a job from this process's deques: this PE's own first, then the others'.
fn take(pe: &PeLocal) -> Option<Job> {
    let pool = &pe.shared.pool;
    if !pool.has_queued() {
        return None;
    }
    let job = pe.pool.worker.pop().or_else(|| {
        let n = pool.stealers.len();
        (1..n).find_map(|k| steal_from(&pool.stealers[(pe.pool.rank + k) % n]))
    })?;
    pool.queued.taken();
    Some(job)
}

/// Steals the oldest job of this process (for another process).
fn steal_oldest(pe: &PeLocal) -> Option<Job> {
    let pool = &pe.shared.pool;
    if !pool.has_queued() {
        return None;
    }
    let job = pool.stealers.iter().find_map(steal_from)?;
    pool.queued.taken();
    Some(job)
}

/// Called by an idle PE: starts one task if there is one in the process; otherwise,
/// while active, asks another process. Returns whether a task started.
pub(crate) fn run_one(pe: &Rc<PeLocal>) -> bool {
    if let Some(job) = take(pe) {
        pe.qd.processed();
        pe.shared.pool.activate(Instant::now());
        pe.spawn_task(job.task.start(job.reply), None);
        return true;
    }
    let shared = &pe.shared;
    if shared.num_processes() < 2 || pe.pool.asking.get() {
        return false;
    }
    let now = Instant::now();
    if !shared.pool.active(now) || pe.pool.next_ask.get().is_some_and(|t| now < t) {
        return false;
    }
    let me = shared.layout.rank;
    let mut p = pe.pool.random(shared.num_processes() - 1);
    if p >= me {
        p += 1;
    }
    let first = shared.layout.first_pe_of(p);
    let victim = PeId(first + pe.pool.random(shared.layout.pes_of(p)));
    pe.pool.asking.set(true);
    pe.send(victim, Envelope::Sys(SysMsg::Pool(PoolMsg::StealReq { thief: pe.id })), 0);
    false
}

/// Handles a pool message on this PE.
pub(crate) fn handle(pe: &Rc<PeLocal>, msg: PoolMsg) {
    match msg {
        PoolMsg::Wake => {
            // Every idle PE of this process starts asking.
            pe.shared.pool.activate(Instant::now());
            for p in pe.shared.pes.iter() {
                p.sleeper.notify();
            }
        }
        PoolMsg::StealReq { thief } => {
            let answer = match steal_oldest(pe) {
                Some(job) => {
                    let mut bytes = Vec::new();
                    match job.task.encode(&mut bytes) {
                        Ok(()) => {
                            pe.qd.processed();
                            PoolMsg::Job { name: job.task.name().to_string(), bytes, reply: job.reply }
                        }
                        // Not registered (or not serializable): it stays in this process.
                        Err(_) => {
                            pe.pool.worker.push(job);
                            pe.shared.pool.queued.added([]);
                            PoolMsg::NoWork
                        }
                    }
                }
                None => PoolMsg::NoWork,
            };
            pe.send(thief, Envelope::Sys(SysMsg::Pool(answer)), 0);
        }
        PoolMsg::NoWork => {
            pe.pool.asking.set(false);
            let b = pe.pool.backoff.get();
            pe.pool.next_ask.set(Some(Instant::now() + b));
            pe.pool.backoff.set((b * 2).min(MAX_BACKOFF));
        }
        PoolMsg::Job { name, bytes, reply } => {
            pe.pool.asking.set(false);
            pe.pool.backoff.set(MIN_BACKOFF);
            pe.pool.next_ask.set(None);
            let Some(desc) = TASKS.iter().find(|d| (d.name)() == name) else {
                fatal(&format!(
                    "a task of type {name} came from another process, where it is registered, but not here"
                ))
            };
            let job = (desc.decode)(&bytes, reply)
                .unwrap_or_else(|e| fatal(&format!("a task of type {name} does not decode: {e}")));
            push(pe, job, false);
        }
    }
}

/// Submits `task` to the pool; the future gives its result (or the panic that ended
/// it). Charm4py's `charm.pool.Task(f, args, ret=True)`.
pub fn submit<T: Task>(task: T) -> Future<T::Output> {
    let fut = Future::<T::Output>::new();
    let reply = Some(fut.id());
    with_pe(|pe| push(pe, Job { task: Box::new(task), reply }, true));
    fut
}

/// Submits `task` with nobody waiting for it (a panic in it ends the job).
pub fn spawn<T: Task>(task: T) {
    with_pe(|pe| push(pe, Job { task: Box::new(task), reply: None }, true));
}

/// Runs every task of `tasks` in the pool; resolves to their results in order, or to
/// the first failure (in order). Submits at once (Charm4py's `charm.pool.map_async`;
/// `.await` it for `map`).
pub fn map<T: Task>(
    tasks: impl IntoIterator<Item = T>,
) -> impl StdFuture<Output = Result<Vec<T::Output>>> + 'static {
    let futs: Vec<Future<T::Output>> = tasks.into_iter().map(submit).collect();
    async move {
        let mut out = Vec::with_capacity(futs.len());
        let mut rest = futs.into_iter();
        for f in rest.by_ref() {
            match f.await {
                Ok(v) => out.push(v),
                Err(e) => {
                    // The map failed: the other tasks' results have nowhere to go.
                    rest.for_each(|f| f.discard());
                    return Err(e);
                }
            }
        }
        Ok(out)
    }
}

/// Like [`map`], with at most `ncores` tasks queued or running at once (Charm4py's
/// `ncores`); more are submitted as earlier ones finish.
pub fn map_limited<T: Task>(
    tasks: impl IntoIterator<Item = T>,
    ncores: usize,
) -> impl StdFuture<Output = Result<Vec<T::Output>>> + 'static {
    let tasks: Vec<T> = tasks.into_iter().collect();
    async move {
        let n = tasks.len();
        let mut pending = tasks.into_iter();
        let mut slots: Vec<Option<T::Output>> = (0..n).map(|_| None).collect();
        let mut running: Vec<(usize, Future<T::Output>)> = Vec::new();
        let mut next = 0;
        loop {
            while running.len() < ncores.max(1) {
                let Some(t) = pending.next() else { break };
                running.push((next, submit(t)));
                next += 1;
            }
            if running.is_empty() {
                break;
            }
            let futs: Vec<Future<T::Output>> = running.iter().map(|(_, f)| f.clone()).collect();
            let (i, r) = crate::future::iwait(futs).next().await.expect("a future in flight");
            let (at, _) = running.swap_remove(i);
            match r {
                Ok(v) => slots[at] = Some(v),
                Err(e) => {
                    running.iter().for_each(|(_, f)| f.discard());
                    return Err(e);
                }
            }
        }
        Ok(slots.into_iter().map(|v| v.expect("every task finished")).collect())
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::Queued;
    use crate::sched::idle::Sleeper;
    use crate::sched::IdlePolicy;
    use crate::sync::{thread, Arc};
    use std::time::Duration;

    /// `producers` threads each queue one task while the owner takes tasks and idles
    /// (parks) whenever none is queued: the owner must never sleep through a task.
    fn model(policy: IdlePolicy, producers: usize) {
        loom::model(move || {
            let queued = Arc::new(Queued::new());
            let sleeper = Arc::new(Sleeper::new());
            let handles: Vec<_> = (0..producers)
                .map(|_| {
                    let (q, s) = (Arc::clone(&queued), Arc::clone(&sleeper));
                    thread::spawn(move || q.added([&*s]))
                })
                .collect();
            sleeper.register_current_thread();
            let mut got = 0;
            while got < producers {
                if queued.any() {
                    queued.taken();
                    got += 1;
                } else {
                    sleeper.idle(policy, Duration::ZERO, false, None, || queued.confirm());
                }
            }
            handles.into_iter().for_each(|h| h.join().unwrap());
        });
    }

    #[test]
    fn loom_pool_no_lost_wakeup() {
        model(IdlePolicy::Park, 1);
    }

    #[test]
    fn loom_pool_no_lost_wakeup_two_producers() {
        model(IdlePolicy::Park, 2);
    }

    #[test]
    fn loom_pool_no_lost_wakeup_adaptive() {
        model(IdlePolicy::Adaptive, 1);
    }
}

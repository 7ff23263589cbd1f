//! The idle protocol of one PE: spin a little, then publish `SLEEPING`, re-check for
//! work, and park until a producer's [`Sleeper::notify`] (or a timer deadline) wakes
//! the PE. States, transitions, the lost-wake-up proof and the spin policies are in
//! [`README.md`](./README.md).

use core::sync::atomic as stats_atomic;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{AtomicU32, Ordering};
use crate::sync::thread::{self, Thread};

/// How the idle protocol asks whether work arrived.
pub(crate) trait WorkCheck {
    /// The authoritative check, part of the sleep handshake (README "Why no wake-up is
    /// lost"): must be ordered as `Inbox::is_empty` is.
    fn has_work(&self) -> bool;

    /// A cheap hint polled while spinning: no read-modify-write, so a spinning PE does
    /// not take the inbox's cache line away from its producers. A false "no" only
    /// delays the answer until the next poll or the handshake.
    #[inline]
    fn looks_busy(&self) -> bool {
        self.has_work()
    }

    /// Called once right before the sleep handshake (the PE is about to park): e.g. so
    /// that the transport's threads take over receiving.
    #[inline]
    fn before_park(&self) {}
}

impl<F: Fn() -> bool> WorkCheck for F {
    #[inline]
    fn has_work(&self) -> bool {
        self()
    }
}

/// `SPIN_BATCH` polls of `looks_busy` with spin hints between them: whether work came.
#[inline]
fn spin_batch(has_work: &impl WorkCheck) -> bool {
    for _ in 0..SPIN_BATCH {
        if has_work.looks_busy() {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// How an idle PE waits. Parsed by the config module from `+idle spin|park|adaptive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Spin until work arrives or the next timer deadline; never park. Lowest
    /// latency, burns its core: for dedicated machines with one PE per core.
    Spin,
    /// Park as soon as there is no work (after the lost-wake-up handshake).
    Park,
    /// Spin for an adaptive window (starting at the configured spin time), then park.
    /// README "Adaptive spinning" gives the rule.
    Adaptive,
}

/// The PE is running or spinning; [`Sleeper::notify`] does nothing (one load).
const AWAKE: u32 = 0;
/// The PE published that it is about to park, or is parked; a notifier must move the
/// state back to [`AWAKE`] with a CAS and, if it won the CAS, unpark the PE.
const SLEEPING: u32 = 1;

/// Smallest adaptive spin window (README "Adaptive spinning").
const MIN_WINDOW: Duration = Duration::from_micros(1);
/// Largest adaptive spin window, as a multiple of the configured spin time.
const MAX_WINDOW_FACTOR: u32 = 8;
/// The adaptive window never shrinks below the configured spin time divided by this.
const MIN_WINDOW_DIVISOR: u32 = 4;

/// `has_work` checks between two clock reads while spinning (a clock read costs tens
/// of nanoseconds, a check a few).
const SPIN_BATCH: u32 = 64;
/// Under loom, spinning is modelled by this many checks, each followed by a yield.
const LOOM_SPINS: u32 = 1;

/// What one [`Sleeper::idle`] call did, for the PE's idle-time counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdleOutcome {
    /// The thread actually parked (it did not find work while spinning or at the
    /// re-check after publishing `SLEEPING`).
    pub(crate) parked: bool,
    /// A notifier woke the thread (it won the `SLEEPING -> AWAKE` CAS). `false` after
    /// a park means a timeout or a spurious wake-up.
    pub(crate) notified: bool,
    /// How long the call lasted, zero when work arrived during the first spin batch
    /// (that batch reads no clock: it is the latency-critical case).
    pub(crate) idle: Duration,
}

impl IdleOutcome {
    /// Returned when the PE did not park.
    const NOT_PARKED: Self = Self { parked: false, notified: false, idle: Duration::ZERO };
}

/// Counters of one [`Sleeper`], read with [`Sleeper::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SleeperStats {
    /// Times the PE parked.
    pub(crate) parks: u64,
    /// Times a notifier unparked the PE (one `unpark` syscall each).
    pub(crate) wakes: u64,
}

/// Statistics and the adaptive window. Not part of the wake-up protocol, so they
/// are plain `core` atomics even under loom (each loom atomic access would add
/// scheduling points for nothing), all `Relaxed`, and kept off `state`'s cache line.
#[derive(Debug, Default)]
struct Counters {
    /// Current adaptive spin window in nanoseconds; 0 = not yet initialised.
    /// Written and read by the owner only.
    window_ns: stats_atomic::AtomicU64,
    /// See [`SleeperStats::parks`]. Written by the owner only.
    parks: stats_atomic::AtomicU64,
    /// See [`SleeperStats::wakes`]. Written by the notifier that won the CAS.
    wakes: stats_atomic::AtomicU64,
}

/// The idle/park/wake state of one PE, shared between the PE (the owner, which calls
/// [`idle`](Self::idle)) and every thread that sends it work (which calls
/// [`notify`](Self::notify) after pushing to the PE's inbox).
#[derive(Debug)]
pub(crate) struct Sleeper {
    /// [`AWAKE`] or [`SLEEPING`]; read by every notifier, so on its own cache line.
    state: CachePadded<AtomicU32>,
    /// The owner's thread handle, set once before the owner first publishes
    /// `SLEEPING` (that SeqCst store orders it before any notifier's `get`).
    thread: OnceLock<Thread>,
    /// Statistics and the adaptive window.
    counters: CachePadded<Counters>,
}

impl Default for Sleeper {
    fn default() -> Self {
        Self::new()
    }
}

impl Sleeper {
    /// Creates the sleeper of a PE that is awake and has no registered thread yet.
    pub(crate) fn new() -> Self {
        Self {
            state: CachePadded::new(AtomicU32::new(AWAKE)),
            thread: OnceLock::new(),
            counters: CachePadded::new(Counters::default()),
        }
    }

    /// Called once by the owning PE thread before its loop starts (stores
    /// `thread::current()`). [`idle`](Self::idle) registers the caller itself if this
    /// was not done; calling it from another thread is a bug (debug-asserted).
    pub(crate) fn register_current_thread(&self) {
        let me = thread::current();
        let owner = self.thread.get_or_init(|| me.clone());
        debug_assert_eq!(owner.id(), me.id(), "Sleeper registered by two threads");
    }

    /// Wakes the PE if it sleeps. Any thread, after it pushed work for this PE.
    ///
    /// Hot path: one SeqCst load when the PE is awake (no syscall, no lock, no RMW).
    /// Only when the PE is `SLEEPING` does it CAS the state back to `AWAKE` and, if it
    /// won, unpark the PE (README "Who writes what").
    #[inline]
    pub(crate) fn notify(&self) {
        // SeqCst: the producer half of the Dekker handshake; together with the SeqCst
        // push CAS before it on this thread, it prevents the store-buffering outcome
        // "we read AWAKE and the PE's re-check reads the inbox as empty" (README
        // "Why no wake-up is lost"). Its Acquire half also pairs with the PE's SeqCst
        // `SLEEPING` store (so the thread handle is visible to `wake`).
        if self.state.load(Ordering::SeqCst) == SLEEPING {
            self.wake();
        }
    }

    /// Whether the PE is parked (or about to park): for waking one idle PE of several.
    #[inline]
    pub(crate) fn is_sleeping(&self) -> bool {
        // SeqCst: as in `notify`, the producer half of the handshake.
        self.state.load(Ordering::SeqCst) == SLEEPING
    }

    /// Slow half of [`notify`](Self::notify): take the PE out of `SLEEPING` and unpark.
    #[cold]
    fn wake(&self) {
        // Relaxed: the CAS only elects the one notifier that unparks (atomicity alone
        // gives that); our push is handed over by the inbox's own Release/Acquire and
        // `unpark` itself synchronizes with `park`.
        if self.state.compare_exchange(SLEEPING, AWAKE, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            if let Some(owner) = self.thread.get() {
                // Relaxed: a statistic.
                self.counters.wakes.fetch_add(1, stats_atomic::Ordering::Relaxed);
                owner.unpark();
            } else {
                debug_assert!(false, "SLEEPING published without a registered thread");
            }
        }
    }

    /// Owner only: called when the PE found no work. Spins according to `policy`,
    /// then parks until notified or until `deadline` (the next timer). Never loses a
    /// wake-up: publishes `SLEEPING` with SeqCst, re-checks `has_work`, and only then
    /// parks; sets the state back to `AWAKE` after waking. Spurious wake-ups return
    /// normally (the caller loops).
    ///
    /// `has_work` must report pending inbox items with [`Inbox::is_empty`] (or another
    /// check with the same ordering guarantee; README "Requirements on has_work"); it
    /// may also report due timers or shutdown. `spin` is the configured spin time
    /// (the initial adaptive window). `oversubscribed` (more PEs than cores): never
    /// spin; yield once, then park.
    ///
    /// [`Inbox::is_empty`]: crate::queue::inbox::Inbox::is_empty
    pub(crate) fn idle(
        &self,
        policy: IdlePolicy,
        spin: Duration,
        oversubscribed: bool,
        deadline: Option<Instant>,
        has_work: impl WorkCheck,
    ) -> IdleOutcome {
        if !oversubscribed && policy != IdlePolicy::Park && !cfg!(loom) {
            // A first batch with no clock read: a message that arrives within it, as in
            // a ping-pong, costs neither the window's deadline nor the idle-time clock.
            if spin_batch(&has_work) {
                return IdleOutcome::NOT_PARKED;
            }
        }
        let t0 = if cfg!(loom) { None } else { Some(Instant::now()) };
        let mut out = self.idle_slow(policy, spin, oversubscribed, deadline, has_work);
        if let Some(t0) = t0 {
            out.idle = t0.elapsed();
        }
        out
    }

    /// The rest of [`idle`](Self::idle), after the clock-free first batch.
    fn idle_slow(
        &self,
        policy: IdlePolicy,
        spin: Duration,
        oversubscribed: bool,
        deadline: Option<Instant>,
        has_work: impl WorkCheck,
    ) -> IdleOutcome {
        if oversubscribed {
            thread::yield_now();
            if has_work.has_work() {
                return IdleOutcome::NOT_PARKED;
            }
            return self.sleep(deadline, &has_work).0;
        }
        match policy {
            IdlePolicy::Spin => {
                self.spin_while_idle(None, deadline, &has_work);
                IdleOutcome::NOT_PARKED
            }
            IdlePolicy::Park => self.sleep(deadline, &has_work).0,
            IdlePolicy::Adaptive => {
                let window = self.window(spin);
                if self.spin_while_idle(Some(window), deadline, &has_work) {
                    return IdleOutcome::NOT_PARKED;
                }
                let (outcome, slept) = self.sleep(deadline, &has_work);
                if let Some(slept) = slept {
                    self.adapt(window, spin, outcome.notified, slept);
                }
                outcome
            }
        }
    }

    /// Snapshot of the counters (Relaxed loads: statistics, possibly slightly stale).
    pub(crate) fn stats(&self) -> SleeperStats {
        SleeperStats {
            parks: self.counters.parks.load(stats_atomic::Ordering::Relaxed),
            wakes: self.counters.wakes.load(stats_atomic::Ordering::Relaxed),
        }
    }

    /// Spins, checking `has_work` with `spin_loop` hints in between, until it returns
    /// true (-> `true`), or `window` (if any) or `deadline` (if any) elapsed
    /// (-> `false`). `window == None` and `deadline == None` spins until work.
    /// Under loom: a bounded number of checks separated by `yield_now`, no clock.
    #[inline]
    fn spin_while_idle(
        &self,
        window: Option<Duration>,
        deadline: Option<Instant>,
        has_work: &impl WorkCheck,
    ) -> bool {
        if cfg!(loom) {
            for _ in 0..LOOM_SPINS {
                if has_work.looks_busy() {
                    return true;
                }
                thread::yield_now();
            }
            return false;
        }
        let end = match (window, deadline) {
            (Some(w), Some(d)) => Some(d.min(Instant::now() + w)),
            (Some(w), None) => Some(Instant::now() + w),
            (None, d) => d,
        };
        loop {
            if spin_batch(has_work) {
                return true;
            }
            if end.is_some_and(|end| Instant::now() >= end) {
                return false;
            }
        }
    }

    /// The sleep handshake: publish `SLEEPING`, re-check, park, back to `AWAKE`.
    /// Returns the outcome and, if it parked, how long (not measured under loom).
    #[cold]
    fn sleep(&self, deadline: Option<Instant>, has_work: &impl WorkCheck) -> (IdleOutcome, Option<Duration>) {
        let timeout = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(t) if !t.is_zero() => Some(t),
                // The timer is due: the caller has work, do not park.
                _ => return (IdleOutcome::NOT_PARKED, None),
            },
            None => None,
        };
        if self.thread.get().is_none() {
            self.register_current_thread();
        }
        debug_assert_eq!(
            self.thread.get().map(Thread::id),
            Some(thread::current().id()),
            "Sleeper::idle called by a thread other than its owner"
        );
        // SeqCst: the PE half of the Dekker handshake. With the SeqCst re-check below
        // (in `Inbox::is_empty`) it prevents "we read the inbox as empty and the
        // notifier reads AWAKE" (README "Why no wake-up is lost"). Its Release half
        // also publishes the thread handle to the notifier that reads SLEEPING.
        has_work.before_park();
        self.state.store(SLEEPING, Ordering::SeqCst);
        if has_work.has_work() {
            // Relaxed: the state only gates `unpark`; the work is handed over by the
            // inbox's own Release/Acquire. If a notifier already moved us to AWAKE
            // its `unpark` leaves a token: the next park returns at once (spurious).
            self.state.swap(AWAKE, Ordering::Relaxed);
            return (IdleOutcome::NOT_PARKED, None);
        }
        // Relaxed: a statistic.
        self.counters.parks.fetch_add(1, stats_atomic::Ordering::Relaxed);
        let start = if cfg!(loom) { None } else { Some(Instant::now()) };
        crate::sync::park_timeout(timeout);
        // Relaxed: as above. Reading AWAKE means a notifier won the CAS and unparked
        // us; SLEEPING means a timeout or a spurious wake-up.
        let notified = self.state.swap(AWAKE, Ordering::Relaxed) == AWAKE;
        let outcome = IdleOutcome { parked: true, notified, idle: Duration::ZERO };
        (outcome, start.map(|s| s.elapsed()))
    }

    /// The current adaptive window, initialised to `spin` on first use.
    #[inline]
    fn window(&self, spin: Duration) -> Duration {
        // Relaxed: owner-only value.
        match self.counters.window_ns.load(stats_atomic::Ordering::Relaxed) {
            0 => spin,
            ns => Duration::from_nanos(ns),
        }
    }

    /// Adaptive rule (README "Adaptive spinning"): a notified wake that came within
    /// `spin * 8` of parking means spinning that long would have caught the message
    /// and saved the wake-up (~20 µs here, which `slept` includes): the window grows to
    /// at least twice itself and at least `slept`, up to `spin * 8`. A timeout, or a
    /// wake after longer than that, means the PE really was idle: the window halves,
    /// down to `spin / 4`.
    #[cold]
    fn adapt(&self, window: Duration, spin: Duration, notified: bool, slept: Duration) {
        let max = spin.saturating_mul(MAX_WINDOW_FACTOR).max(MIN_WINDOW);
        let floor = (spin / MIN_WINDOW_DIVISOR).max(MIN_WINDOW).min(max);
        let next = if notified && slept <= max {
            window.saturating_mul(2).max(slept).min(max)
        } else {
            (window / 2).max(floor)
        };
        let ns = u64::try_from(next.as_nanos()).unwrap_or(u64::MAX).max(1);
        // Relaxed: owner-only value.
        self.counters.window_ns.store(ns, stats_atomic::Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{IdlePolicy, Sleeper, SleeperStats};
    use crate::queue::inbox::Inbox;
    use crate::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::thread;
    use std::time::{Duration, Instant};

    /// A park that reaches this deadline without work arriving counts as lost.
    const WATCHDOG: Duration = Duration::from_secs(2);

    /// Runs the owner side until `n` items were taken; returns how many parks ran
    /// into the watchdog (a lost wake-up) and acknowledges each item in `acked`.
    fn consume(
        inbox: &Inbox<u64>,
        sleeper: &Sleeper,
        (policy, spin, oversubscribed): (IdlePolicy, Duration, bool),
        n: u64,
        acked: &AtomicU64,
    ) -> u64 {
        sleeper.register_current_thread();
        let (mut got, mut lost) = (0, 0);
        while got < n {
            for _ in inbox.take_all() {
                got += 1;
                acked.store(got, Ordering::Release);
            }
            if got == n {
                break;
            }
            let start = Instant::now();
            let out =
                sleeper.idle(policy, spin, oversubscribed, Some(start + WATCHDOG), || !inbox.is_empty());
            if out.parked && !out.notified && start.elapsed() >= WATCHDOG {
                lost += 1;
            }
        }
        lost
    }

    #[test]
    fn notify_is_noop_when_awake() {
        let sleeper = Sleeper::new();
        sleeper.notify();
        sleeper.notify();
        assert_eq!(sleeper.stats(), SleeperStats::default());
    }

    #[test]
    fn notify_wakes_parked_thread() {
        let inbox = Arc::new(Inbox::new());
        let sleeper = Arc::new(Sleeper::new());
        let pe = {
            let (inbox, sleeper) = (Arc::clone(&inbox), Arc::clone(&sleeper));
            thread::spawn(move || {
                sleeper.register_current_thread();
                loop {
                    if let Some(v) = inbox.take_all().next() {
                        return v;
                    }
                    sleeper.idle(IdlePolicy::Park, Duration::ZERO, false, None, || !inbox.is_empty());
                }
            })
        };
        while !sleeper.is_sleeping() {
            thread::yield_now();
        }
        inbox.push(7u32);
        sleeper.notify();
        assert_eq!(pe.join().unwrap(), 7);
        let stats = sleeper.stats();
        assert!(stats.parks >= 1);
        assert_eq!(stats.wakes, 1);
    }

    #[test]
    fn deadline_bounds_the_park() {
        let sleeper = Sleeper::new();
        sleeper.register_current_thread();
        let start = Instant::now();
        let out = sleeper.idle(
            IdlePolicy::Park,
            Duration::ZERO,
            false,
            Some(start + Duration::from_millis(20)),
            || false,
        );
        assert!(out.parked);
        assert!(!out.notified);
        // A past deadline means a timer is due: no park at all.
        let out = sleeper.idle(IdlePolicy::Park, Duration::ZERO, false, Some(start), || false);
        assert!(!out.parked && !out.notified, "{out:?}");
        // Spin stops at the deadline too.
        let out = sleeper.idle(
            IdlePolicy::Spin,
            Duration::ZERO,
            false,
            Some(Instant::now() + Duration::from_millis(5)),
            || false,
        );
        assert!(!out.parked && !out.notified, "{out:?}");
        assert!(start.elapsed() >= Duration::from_millis(5));
    }

    #[test]
    fn work_found_by_recheck_does_not_park() {
        let sleeper = Sleeper::new();
        for (policy, oversubscribed) in [
            (IdlePolicy::Park, false),
            (IdlePolicy::Adaptive, false),
            (IdlePolicy::Spin, false),
            (IdlePolicy::Park, true),
        ] {
            let out = sleeper.idle(policy, Duration::from_micros(5), oversubscribed, None, || true);
            assert!(!out.parked && !out.notified, "{out:?}");
        }
        assert_eq!(sleeper.stats().parks, 0);
    }

    #[test]
    fn adaptive_window_rule() {
        let s = Sleeper::new();
        let spin = Duration::from_micros(10);
        let us = Duration::from_micros;
        assert_eq!(s.window(spin), spin);
        s.adapt(spin, spin, true, us(3));
        assert_eq!(s.window(spin), us(20), "woken soon after parking: double");
        s.adapt(us(20), spin, true, us(50));
        assert_eq!(s.window(spin), us(50), "grow to the time it would have taken");
        for _ in 0..10 {
            s.adapt(s.window(spin), spin, true, us(25));
        }
        assert_eq!(s.window(spin), us(80), "capped at spin * 8");
        s.adapt(us(80), spin, true, us(100));
        assert_eq!(s.window(spin), us(40), "woken after more than the cap: halve");
        s.adapt(us(40), spin, false, us(400));
        assert_eq!(s.window(spin), us(20), "timeout: halve");
        for _ in 0..20 {
            s.adapt(s.window(spin), spin, false, Duration::from_millis(1));
        }
        assert_eq!(s.window(spin), us(2) + Duration::from_nanos(500), "floor spin / 4");
    }

    /// Ping-pong: the producer pushes one item, notifies, and waits for the ack, so
    /// the owner goes idle between every two items and races the next push.
    /// Returns how many times the owner parked.
    fn ping_pong(mode: (IdlePolicy, Duration, bool), rounds: u64) -> u64 {
        let inbox = Arc::new(Inbox::new());
        let sleeper = Arc::new(Sleeper::new());
        let acked = Arc::new(AtomicU64::new(0));
        let pe = {
            let (inbox, sleeper, acked) = (Arc::clone(&inbox), Arc::clone(&sleeper), Arc::clone(&acked));
            thread::spawn(move || consume(&inbox, &sleeper, mode, rounds, &acked))
        };
        for i in 0..rounds {
            inbox.push(i);
            sleeper.notify();
            while acked.load(Ordering::Acquire) <= i {
                thread::yield_now();
            }
        }
        assert_eq!(pe.join().unwrap(), 0, "{mode:?}: lost wake-ups");
        sleeper.stats().parks
    }

    /// Runs `ping_pong` until the owner parked at least once (a machine busy with other
    /// tests can make the next item arrive before every park, a few times in a row).
    fn ping_pong_parking(mode: (IdlePolicy, Duration, bool), rounds: u64) {
        for _ in 0..5 {
            if ping_pong(mode, rounds) > 0 {
                return;
            }
        }
        panic!("{mode:?}: the owner never parked in 5 attempts");
    }

    #[test]
    fn no_lost_wakeup_stress() {
        let rounds = if cfg!(miri) { 50 } else { 5_000 };
        ping_pong_parking((IdlePolicy::Park, Duration::ZERO, false), rounds);
        // Adaptive may legitimately catch every item while spinning.
        ping_pong((IdlePolicy::Adaptive, Duration::from_micros(2), false), rounds);
        ping_pong_parking((IdlePolicy::Park, Duration::ZERO, true), rounds);
    }

    /// Two producers stream items with a notify after each push (no waiting).
    #[test]
    fn no_lost_wakeup_two_producers() {
        let per: u64 = if cfg!(miri) { 100 } else { 20_000 };
        let inbox = Arc::new(Inbox::new());
        let sleeper = Arc::new(Sleeper::new());
        let acked = AtomicU64::new(0);
        let producers: Vec<_> = (0..2)
            .map(|_| {
                let (inbox, sleeper) = (Arc::clone(&inbox), Arc::clone(&sleeper));
                thread::spawn(move || {
                    for i in 0..per {
                        inbox.push(i);
                        sleeper.notify();
                        if i % 64 == 0 {
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mode = (IdlePolicy::Park, Duration::ZERO, false);
        assert_eq!(consume(&inbox, &sleeper, mode, 2 * per, &acked), 0);
        producers.into_iter().for_each(|h| h.join().unwrap());
    }
}

#[cfg(all(loom, not(debug_assertions)))]
compile_error!("loom tests need debug assertions: run with RUSTFLAGS=\"--cfg loom -C debug_assertions\"");

/// Loom models of the lost-wake-up race (run by `ci/loom.sh`). Loom reports a
/// deadlock if the owner parks while nobody is left to unpark it.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::{IdlePolicy, Sleeper};
    use crate::queue::inbox::Inbox;
    use crate::sync::{thread, Arc};
    use std::time::Duration;

    /// Owner loop: take, else idle, until `n` items arrived.
    fn owner(inbox: &Inbox<u8>, sleeper: &Sleeper, policy: IdlePolicy, oversub: bool, n: usize) {
        sleeper.register_current_thread();
        let mut got = 0;
        while got < n {
            got += inbox.take_all().count();
            if got < n {
                sleeper.idle(policy, Duration::ZERO, oversub, None, || !inbox.is_empty());
            }
        }
    }

    /// Runs `producers` threads that each push `per` items with a notify after each,
    /// against the owner on the model's main thread.
    fn model(policy: IdlePolicy, oversub: bool, producers: usize, per: usize) {
        loom::model(move || {
            let inbox = Arc::new(Inbox::new());
            let sleeper = Arc::new(Sleeper::new());
            let handles: Vec<_> = (0..producers)
                .map(|_| {
                    let (inbox, sleeper) = (Arc::clone(&inbox), Arc::clone(&sleeper));
                    thread::spawn(move || {
                        for i in 0..per {
                            inbox.push(i as u8);
                            sleeper.notify();
                        }
                    })
                })
                .collect();
            owner(&inbox, &sleeper, policy, oversub, producers * per);
            handles.into_iter().for_each(|h| h.join().unwrap());
        });
    }

    #[test]
    fn loom_lost_wakeup_park() {
        model(IdlePolicy::Park, false, 1, 1);
    }

    #[test]
    fn loom_lost_wakeup_park_two_rounds() {
        model(IdlePolicy::Park, false, 1, 2);
    }

    #[test]
    fn loom_lost_wakeup_two_producers() {
        model(IdlePolicy::Park, false, 2, 1);
    }

    #[test]
    fn loom_lost_wakeup_adaptive() {
        model(IdlePolicy::Adaptive, false, 1, 1);
    }

    #[test]
    fn loom_lost_wakeup_oversubscribed() {
        model(IdlePolicy::Park, true, 1, 1);
    }
}

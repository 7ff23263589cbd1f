//! The per-PE inbox: a lock-free multi-producer, single-consumer queue built as an
//! intrusive singly linked list behind one atomic head pointer.
//!
//! Producers push with a Treiber-style CAS loop; the consumer takes the whole list at
//! once with `swap(null)` and reverses it, so items come out in push order. The design,
//! the ABA argument and the ordering proof are in [`README.md`](./README.md).
#![allow(unsafe_code)]

use core::marker::PhantomData;
use core::ptr;

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{AtomicPtr, Ordering};
use crate::sync::UnsafeCell;

/// One queued item. Allocated by [`Inbox::push`], owned by the list until a
/// [`Drain`] turns it back into a `Box` and moves the value out.
struct Node<T> {
    /// The message.
    value: T,
    /// While on the shared list: the node pushed just before this one (older).
    /// After `take_all` reversed the list: the node pushed just after it (newer).
    /// In a cell so that loom checks every access against happens-before.
    next: UnsafeCell<*mut Node<T>>,
}

/// Lock-free MPSC queue: any thread pushes, the owning PE takes everything at once.
///
/// Designed for a single consumer (the PE that owns the inbox), but memory-safe with
/// any number of consumers: [`take_all`](Inbox::take_all) detaches the list with one
/// atomic `swap`, so each node is handed to exactly one caller, and no one ever CASes
/// on, or dereferences, a node pointer that another thread could free. With several
/// consumers only the cross-consumer order of items is lost (README "Single consumer").
pub(crate) struct Inbox<T> {
    /// Newest node of the shared list (a LIFO stack), or null when empty.
    head: CachePadded<AtomicPtr<Node<T>>>,
    /// The inbox owns `Box<Node<T>>`s (for drop check and auto traits).
    _owns: PhantomData<Box<Node<T>>>,
}

// SAFETY: an `Inbox<T>` owns the queued `T`s (moving the inbox moves them), exactly
// like a `Vec<T>`; the raw pointers are only its private ownership links. `T: Send`
// is therefore all that is needed to send it.
unsafe impl<T: Send> Send for Inbox<T> {}

// SAFETY: through `&Inbox<T>` a thread can only move a `T` in (`push`) or move `T`s
// out (`take_all`), never obtain a `&T` that another thread could also see; the list
// itself is only touched through the atomic head (see README "Ordering"). As for
// `Mutex<T>`, `T: Send` suffices and `T: Sync` is not required.
unsafe impl<T: Send> Sync for Inbox<T> {}

impl<T> Inbox<T> {
    /// Creates an empty inbox.
    pub(crate) fn new() -> Self {
        Self { head: CachePadded::new(AtomicPtr::new(ptr::null_mut())), _owns: PhantomData }
    }

    /// Pushes `value`. Any thread; lock-free (one allocation, one successful CAS).
    ///
    /// Returns `true` if the inbox was empty just before this push (the push made it
    /// non-empty; see README "Empty to non-empty" for what a caller may do with that).
    #[inline]
    pub(crate) fn push(&self, value: T) -> bool {
        let node = Box::into_raw(Box::new(Node { value, next: UnsafeCell::new(ptr::null_mut()) }));
        // Relaxed: `head` is only the expected value of the CAS below, never
        // dereferenced; a stale value just makes the CAS fail and retry.
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `node` comes from `Box::into_raw` above and is not published yet
            // (the CAS below has not succeeded), so this thread has exclusive access.
            unsafe { (*node).next.with_mut(|next| *next = head) };
            // Success SeqCst: it is a Release (pairs with the Acquire of the swap in
            // `take_all`, publishing `value` and `next`), and it is the producer half
            // of the Dekker handshake with the idle protocol: this CAS and the SeqCst
            // state load in `Sleeper::notify` that follows it on this thread are both
            // in the single total order with the PE's SeqCst `SLEEPING` store and its
            // `is_empty` re-check, which is what rules out a lost wake-up (sched
            // README "Why no wake-up is lost"). Its Acquire half also lets the PE's
            // `is_empty` RMW synchronize with this push (the loom-checkable form of
            // the same argument).
            // Failure Relaxed: the observed head is again only the next expected value.
            match self.head.compare_exchange_weak(head, node, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(prev) => return prev.is_null(),
                Err(actual) => head = actual,
            }
        }
    }

    /// Takes every item pushed so far and returns them in push order (FIFO per
    /// producer, and in the CAS order, i.e. the linearization order, across producers).
    ///
    /// Meant for the owning PE only; safe (but unordered across callers) if misused.
    /// Dropping the returned [`Drain`] early drops the items it still holds.
    #[inline]
    pub(crate) fn take_all(&self) -> Drain<T> {
        // Acquire: pairs with the SeqCst (Release) success of the push CAS. Every push
        // is an RMW on `head`, so the value read here heads a release sequence that
        // contains every push of the taken list: all their `value`/`next` writes
        // happen-before the reads below. No Release is needed: we publish nothing
        // through `head` (we store null, and producers never dereference what they
        // read), and SeqCst is not needed: the idle handshake goes through `is_empty`,
        // which this thread runs after this swap (coherence keeps it from reading an
        // older non-null head).
        let mut taken = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        if taken.is_null() {
            return Drain::empty();
        }
        // Reverse the detached stack (newest first) into push order (oldest first).
        let mut reversed: *mut Node<T> = ptr::null_mut();
        while !taken.is_null() {
            let node = taken;
            // SAFETY: `node` is on the list detached by the swap above: the swap gave
            // this call exclusive ownership of every node on it (no producer
            // dereferences `head`, no other consumer can reach them), the Acquire
            // makes the producers' initialisation visible, and the node stays
            // allocated until a `Drain` frees it.
            unsafe {
                taken = (*node).next.with(|next| *next);
                (*node).next.with_mut(|next| *next = reversed);
            }
            reversed = node;
        }
        Drain { next: reversed, _owns: PhantomData }
    }

    /// Whether nothing is queued. Used by the idle protocol's re-check after the PE
    /// published `SLEEPING`, so it must not miss a push that the notifier's state
    /// load could in turn miss (sched README "Why no wake-up is lost").
    ///
    /// A SeqCst load answers; a non-null head is conclusive. A null head is confirmed
    /// with a SeqCst `compare_exchange(null, null)`, an RMW that writes nothing new
    /// but orders this check against every push in `head`'s modification order, so
    /// the handshake holds even under acquire/release reasoning only (which is how
    /// loom models SeqCst accesses, see README "Ordering").
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        // SeqCst: the consumer half of the Dekker handshake (the PE stored SLEEPING
        // with SeqCst just before); pairs with the SeqCst push CAS.
        if !self.head.load(Ordering::SeqCst).is_null() {
            return false;
        }
        self.confirm_empty()
    }

    /// A hint for spinning consumers: whether something seems queued (a Relaxed load,
    /// no read-modify-write; it may lag behind a concurrent push). Never use it to
    /// decide to park: that is [`is_empty`](Self::is_empty)'s job.
    #[inline]
    pub(crate) fn looks_nonempty(&self) -> bool {
        // Relaxed: only a hint; the work itself is taken by `take_all`'s Acquire swap.
        !self.head.load(Ordering::Relaxed).is_null()
    }

    /// Slow half of [`is_empty`](Self::is_empty): the RMW confirmation of a null head.
    #[cold]
    fn confirm_empty(&self) -> bool {
        // SeqCst success: Release makes the caller's earlier SeqCst `SLEEPING` store
        // happen-before any push whose CAS reads from (the release sequence of) this
        // RMW, i.e. any push ordered after it, so that push's notifier sees SLEEPING.
        // It also keeps the RMW in the SeqCst total order of the Dekker argument.
        // Failure SeqCst: a failure reads a non-null head pushed after our swap, which
        // is conclusive; SeqCst keeps it in the same total order.
        self.head
            .compare_exchange(ptr::null_mut(), ptr::null_mut(), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

impl<T> Default for Inbox<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        // `&mut self`: no push or take can run concurrently; frees leftovers.
        drop(self.take_all());
    }
}

impl<T> core::fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

/// The items taken by one [`Inbox::take_all`], oldest first. Owns them: dropping the
/// drain drops (and frees) every item not yet yielded.
pub(crate) struct Drain<T> {
    /// Oldest remaining node (list linked oldest to newest), or null when exhausted.
    next: *mut Node<T>,
    /// The drain owns the remaining `Box<Node<T>>`s.
    _owns: PhantomData<Box<Node<T>>>,
}

// SAFETY: a `Drain<T>` exclusively owns its remaining nodes (detached from the inbox
// by the swap in `take_all`), like a `vec::IntoIter<T>`; sending it sends those `T`s.
unsafe impl<T: Send> Send for Drain<T> {}

impl<T> Drain<T> {
    /// A drain holding nothing.
    #[inline]
    fn empty() -> Self {
        Self { next: ptr::null_mut(), _owns: PhantomData }
    }
}

impl<T> Iterator for Drain<T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.next.is_null() {
            return None;
        }
        // SAFETY: `self.next` is non-null, so it is the first node of the list this
        // drain exclusively owns: created by `Box::into_raw` in `push`, detached and
        // relinked by `take_all`, and yielded at most once since we advance past it
        // right here before anything else can observe it.
        let node = unsafe { Box::from_raw(self.next) };
        // SAFETY: `node` is exclusively owned (just re-boxed above), so reading its
        // `next` link cannot race.
        self.next = node.next.with(|next| unsafe { *next });
        Some(node.value)
    }
}

impl<T> Drop for Drain<T> {
    fn drop(&mut self) {
        // Frees the remaining nodes and drops their values. If a value's destructor
        // panics, the nodes after it leak (memory-safe).
        for value in self.by_ref() {
            drop(value);
        }
    }
}

impl<T> core::fmt::Debug for Drain<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Drain").finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::Inbox;
    use crate::sync::Arc;
    use proptest::prelude::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    #[test]
    fn smoke() {
        let inbox = Inbox::new();
        assert!(inbox.is_empty());
        assert_eq!(inbox.take_all().next(), None);
        assert!(inbox.push(1));
        assert!(!inbox.push(2));
        assert!(!inbox.push(3));
        assert!(!inbox.is_empty());
        assert_eq!(inbox.take_all().collect::<Vec<_>>(), [1, 2, 3]);
        assert!(inbox.is_empty());
        assert!(inbox.push(4), "empty again after take_all");
        assert_eq!(inbox.take_all().collect::<Vec<_>>(), [4]);
    }

    #[test]
    fn fifo_per_producer() {
        const PRODUCERS: u64 = 4;
        let per: u64 = if cfg!(miri) { 200 } else { 10_000 };
        let inbox = Arc::new(Inbox::new());
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let inbox = Arc::clone(&inbox);
                thread::spawn(move || (0..per).for_each(|i| _ = inbox.push((p, i))))
            })
            .collect();
        let mut next = [0u64; PRODUCERS as usize];
        let mut got = 0;
        while got < PRODUCERS * per {
            for (p, i) in inbox.take_all() {
                assert_eq!(i, next[p as usize], "producer {p} out of order");
                next[p as usize] += 1;
                got += 1;
            }
            thread::yield_now();
        }
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert!(inbox.is_empty());
    }

    #[test]
    fn stress() {
        const PRODUCERS: usize = 4;
        let per: usize = if cfg!(miri) { 500 } else { 50_000 };
        let inbox = Arc::new(Inbox::new());
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let inbox = Arc::clone(&inbox);
                thread::spawn(move || (0..per).for_each(|i| _ = inbox.push(p * per + i)))
            })
            .collect();
        let mut seen = vec![false; PRODUCERS * per];
        let mut got = 0;
        let mut empty_to_full = 0usize;
        while got < PRODUCERS * per {
            let mut drained = false;
            for v in inbox.take_all() {
                assert!(!std::mem::replace(&mut seen[v], true), "{v} twice");
                got += 1;
                drained = true;
            }
            empty_to_full += usize::from(drained);
        }
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert!(seen.iter().all(|&s| s));
        assert!(inbox.take_all().next().is_none());
        assert!(empty_to_full >= 1);
    }

    /// Counts its drops.
    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn destructors() {
        let drops = Arc::new(AtomicUsize::new(0));
        let count = || drops.load(Ordering::Relaxed);
        let inbox = Inbox::new();
        for _ in 0..10 {
            inbox.push(Counted(Arc::clone(&drops)));
        }
        let mut drain = inbox.take_all();
        drop(drain.next());
        drop(drain.next());
        assert_eq!(count(), 2);
        drop(drain);
        assert_eq!(count(), 10, "a dropped Drain drops the rest");
        for _ in 0..5 {
            inbox.push(Counted(Arc::clone(&drops)));
        }
        assert_eq!(count(), 10);
        drop(inbox);
        assert_eq!(count(), 15, "a dropped Inbox drops its leftovers");
    }

    #[test]
    fn send_to_owner_thread() {
        let inbox = Arc::new(Inbox::new());
        inbox.push(String::from("a"));
        let drain = inbox.take_all();
        let v: Vec<String> = thread::spawn(move || drain.collect()).join().unwrap();
        assert_eq!(v, ["a"]);
    }

    proptest! {
        /// Single-threaded model check against a VecDeque: `Some(v)` pushes, `None`
        /// takes everything (also checks push's "was empty" and `is_empty`).
        #[test]
        fn matches_vecdeque(ops in proptest::collection::vec(proptest::option::of(any::<u16>()), 0..200)) {
            let inbox = Inbox::new();
            let mut model = VecDeque::new();
            for op in ops {
                match op {
                    Some(v) => {
                        prop_assert_eq!(inbox.push(v), model.is_empty());
                        model.push_back(v);
                    }
                    None => {
                        let got: Vec<_> = inbox.take_all().collect();
                        let want: Vec<_> = model.drain(..).collect();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(inbox.is_empty(), model.is_empty());
            }
        }
    }
}

#[cfg(all(loom, not(debug_assertions)))]
compile_error!("loom tests need debug assertions: run with RUSTFLAGS=\"--cfg loom -C debug_assertions\"");

/// Loom models (run by `ci/loom.sh`).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::Inbox;
    use crate::sync::{thread, Arc};

    /// Takes until `n` items arrived, yielding between attempts.
    fn take_n<T>(inbox: &Inbox<T>, n: usize) -> Vec<T> {
        let mut got = Vec::new();
        while got.len() < n {
            got.extend(inbox.take_all());
            if got.len() < n {
                thread::yield_now();
            }
        }
        got
    }

    /// Two producers push two items each while the consumer takes: every item is
    /// received exactly once and each producer's items in push order.
    #[test]
    fn loom_push_take_race() {
        loom::model(|| {
            let inbox = Arc::new(Inbox::new());
            let producers: Vec<_> = (0..2u8)
                .map(|p| {
                    let inbox = Arc::clone(&inbox);
                    thread::spawn(move || {
                        inbox.push((p, 0u8));
                        inbox.push((p, 1u8));
                    })
                })
                .collect();
            let got = take_n(&inbox, 4);
            for p in 0..2u8 {
                let mine: Vec<u8> = got.iter().filter(|x| x.0 == p).map(|x| x.1).collect();
                assert_eq!(mine, [0, 1]);
            }
            producers.into_iter().for_each(|h| h.join().unwrap());
            assert!(inbox.is_empty());
        });
    }

    /// Empty <-> non-empty transitions: the number of pushes that reported "was
    /// empty" equals the number of non-empty `take_all`s, and `is_empty` agrees.
    #[test]
    fn loom_empty_nonempty_transitions() {
        loom::model(|| {
            let inbox = Arc::new(Inbox::new());
            let producers: Vec<_> = (0..2u8)
                .map(|p| {
                    let inbox = Arc::clone(&inbox);
                    thread::spawn(move || {
                        let was_empty = inbox.push(p);
                        // Our own item is queued or already taken; either way the
                        // check must not crash or tear.
                        let _ = inbox.is_empty();
                        usize::from(was_empty)
                    })
                })
                .collect();
            let mut nonempty_takes = 0;
            let mut got = 0;
            let n = inbox.take_all().count();
            nonempty_takes += usize::from(n > 0);
            got += n;
            let trues: usize = producers.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(inbox.is_empty(), got == 2);
            let n = inbox.take_all().count();
            nonempty_takes += usize::from(n > 0);
            got += n;
            assert_eq!(got, 2);
            assert_eq!(trues, nonempty_takes);
            assert!(inbox.is_empty());
        });
    }

    /// Misuse: two threads take concurrently; still each item exactly once.
    #[test]
    fn loom_two_consumers_exactly_once() {
        loom::model(|| {
            let inbox = Arc::new(Inbox::new());
            inbox.push(0u8);
            let other = {
                let inbox = Arc::clone(&inbox);
                thread::spawn(move || {
                    inbox.push(1);
                    inbox.take_all().collect::<Vec<_>>()
                })
            };
            let mut got: Vec<u8> = inbox.take_all().collect();
            got.extend(other.join().unwrap());
            got.extend(inbox.take_all());
            got.sort_unstable();
            assert_eq!(got, [0, 1]);
        });
    }
}

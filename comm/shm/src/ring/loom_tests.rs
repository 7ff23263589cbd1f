//! Loom models of the ring protocol. Run with
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib loom`.
//!
//! The ring's data-area bytes are tracked per 8-byte word (see `crate::sync::Tracker`), so a
//! missing happens-before edge between a producer write and a consumer read (or a consumer read
//! and a producer overwrite) is reported by loom as a causality violation.

use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::thread;

use super::*;
use crate::region::HeapRegion;

type P = Producer<Arc<HeapRegion>>;
type C = Consumer<Arc<HeapRegion>>;

fn ring(capacity: usize) -> (P, C) {
    let region = Arc::new(HeapRegion::new(region_len(capacity)));
    assert_eq!(initialize(&*region).unwrap(), capacity);
    (Producer::attach(region.clone()).unwrap(), Consumer::attach(region).unwrap())
}

/// Runs `f` under loom (preemption bound 3 unless `LOOM_MAX_PREEMPTIONS` says otherwise) and
/// reports how many executions were explored.
fn check<F: Fn() + Sync + Send + 'static>(name: &str, f: F) {
    let mut b = loom::model::Builder::new();
    // Spin loops (with yield_now) make the full state space unbounded; a preemption bound of 3
    // covers every interleaving with up to 3 forced context switches.
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = runs.clone();
    b.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    eprintln!("loom {name}: {} executions explored", runs.load(std::sync::atomic::Ordering::Relaxed));
}

fn payload(i: u8, len: usize) -> Vec<u8> {
    (0..len as u8).map(|j| i.wrapping_mul(16).wrapping_add(j)).collect()
}

/// Records that wrap around a 32-byte ring: 16 bytes at 0, 8 bytes at 16, then a 24-byte record
/// that needs PAD(8) at 24 and goes to offset 0 once both earlier records were consumed, then a
/// 16-byte record that needs PAD(8) at 24 again and goes to offset 0: two wraps, two PADs, and
/// every data word is written, read and overwritten.
const WRAP_RECORDS: [(u32, usize); 4] = [(1, 5), (2, 0), (3, 9), (4, 1)];

#[test]
fn loom_wrap_with_pad() {
    check("wrap_with_pad", || {
        let (mut p, mut c) = ring(32);
        let producer = thread::spawn(move || {
            for (i, &(kind, len)) in WRAP_RECORDS.iter().enumerate() {
                let data = payload(i as u8, len);
                let (a, b) = data.split_at(len / 2);
                while !p.try_push(kind, &[a, b]).unwrap() {
                    thread::yield_now();
                }
            }
            p
        });
        for (i, &(kind, len)) in WRAP_RECORDS.iter().enumerate() {
            let expected = payload(i as u8, len);
            while !c.try_pop(|k, bytes| {
                assert_eq!(k, kind);
                assert_eq!(bytes, &expected[..]);
            }) {
                thread::yield_now();
            }
        }
        let p = producer.join().unwrap();
        assert!(c.is_empty());
        assert_eq!(p.tail, c.head);
        assert!(p.tail > 32, "the model must wrap around");
    });
}

/// Producer pushes `records`, calling `needs_doorbell` after every attempt and ringing a buffered
/// doorbell (a token counter, like an eventfd) when asked. The consumer pops, and when the ring
/// is empty announces sleep and "blocks" until a token arrives. If the producer has finished and
/// no token is pending while the consumer is blocked with records outstanding, the consumer would
/// sleep forever: a lost wakeup.
fn doorbell_model(name: &str, capacity: usize, records: &'static [(u32, usize)]) {
    check(name, move || {
        let (mut p, mut c) = ring(capacity);
        let tokens = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let producer = {
            let (tokens, done) = (tokens.clone(), done.clone());
            thread::spawn(move || {
                for (i, &(kind, len)) in records.iter().enumerate() {
                    let data = payload(i as u8, len);
                    loop {
                        let pushed = p.try_push(kind, &[&data]).unwrap();
                        if p.needs_doorbell() {
                            // Release/Acquire on the token stands for the syscall pair
                            // write(eventfd) / read(eventfd), which synchronizes the processes.
                            tokens.fetch_add(1, Ordering::Release);
                        }
                        if pushed {
                            break;
                        }
                        thread::yield_now();
                    }
                }
                done.store(true, Ordering::Release);
            })
        };
        for (i, &(kind, len)) in records.iter().enumerate() {
            let expected = payload(i as u8, len);
            loop {
                let popped = c.try_pop(|k, bytes| {
                    assert_eq!(k, kind);
                    assert_eq!(bytes, &expected[..]);
                });
                if popped {
                    break;
                }
                if !c.prepare_sleep() {
                    continue;
                }
                // Blocked on the doorbell.
                loop {
                    if tokens.load(Ordering::Acquire) > 0 {
                        tokens.fetch_sub(1, Ordering::Acquire);
                        break;
                    }
                    if done.load(Ordering::Acquire) && tokens.load(Ordering::Acquire) == 0 {
                        panic!("lost wakeup: consumer asleep with record {i} outstanding");
                    }
                    thread::yield_now();
                }
                c.end_sleep();
            }
        }
        producer.join().unwrap();
    });
}

/// One record, one sleep announcement.
#[test]
fn loom_doorbell_one_record() {
    doorbell_model("doorbell_one_record", 64, &[(1, 3)]);
}

/// Two records in a 32-byte ring: the second (24 bytes at offset 16) needs PAD(16) + 24 > 32,
/// so the first attempt publishes only the PAD and returns `false`. A consumer that sleeps on the
/// empty ring must still be woken to skip it. Also covers two sleep episodes and the
/// one-doorbell-per-announcement swap.
#[test]
fn loom_doorbell_pad_only_publication() {
    doorbell_model("doorbell_pad_only_publication", 32, &[(1, 8), (2, 16)]);
}

/// Negative control: without the two SeqCst fences, loom finds the lost wakeup (store buffering).
#[test]
#[should_panic(expected = "lost wakeup")]
fn loom_doorbell_without_fences_is_caught() {
    crate::sync::SKIP_SEQCST_FENCE.with(|skip| skip.set(true));
    doorbell_model("doorbell_without_fences", 64, &[(1, 3)]);
}

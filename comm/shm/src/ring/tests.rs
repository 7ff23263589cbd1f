//! Unit tests and property tests of the ring (std atomics).

use std::collections::VecDeque;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::region::HeapRegion;

type P = Producer<Arc<HeapRegion>>;
type C = Consumer<Arc<HeapRegion>>;

fn ring(capacity: usize) -> (P, C) {
    let region = Arc::new(HeapRegion::new(region_len(capacity)));
    assert_eq!(initialize(&*region).unwrap(), capacity);
    (Producer::attach(region.clone()).unwrap(), Consumer::attach(region).unwrap())
}

fn pop_vec(c: &mut C) -> Option<(u32, Vec<u8>)> {
    let mut out = None;
    c.try_pop(|k, b| out = Some((k, b.to_vec())));
    out
}

/// Deterministic payload byte `j` of record `seq`.
fn byte(seq: u64, j: usize) -> u8 {
    (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 ^ (j as u8).wrapping_mul(31)
}

fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| byte(seq, j)).collect()
}

#[test]
fn header_layout() {
    assert_eq!(DATA_OFFSET, 512);
    assert_eq!(std::mem::offset_of!(Header, tail), 128);
    assert_eq!(std::mem::offset_of!(Header, head), 256);
    assert_eq!(std::mem::offset_of!(Header, consumer_sleeping), 384);
    assert_eq!(record_size(0), 8);
    assert_eq!(record_size(1), 16);
    assert_eq!(record_size(8), 16);
    assert_eq!(record_size(9), 24);
}

#[test]
fn initialize_picks_largest_power_of_two() {
    let region = HeapRegion::new(DATA_OFFSET + 1000);
    assert_eq!(initialize(&region), Ok(512));
    assert_eq!(initialize(&region), Err(RingError::AlreadyInitialized));
    let p = Producer::attach(&region).unwrap();
    assert_eq!(p.capacity(), 512);
    assert_eq!(p.max_record(), 504);
}

#[test]
fn rejects_bad_regions() {
    let small = HeapRegion::new(DATA_OFFSET + 8);
    assert!(matches!(initialize(&small), Err(RingError::RegionTooSmall { .. })));
    assert!(matches!(Producer::attach(&small), Err(RingError::RegionTooSmall { .. })));

    struct Offset(HeapRegion);
    // SAFETY: the pointer stays inside the wrapped allocation and is only used to observe the
    // alignment check failing (the length is reduced accordingly).
    unsafe impl SharedRegion for Offset {
        fn as_ptr(&self) -> *mut u8 {
            self.0.as_ptr().wrapping_add(8)
        }
        fn len(&self) -> usize {
            self.0.len() - 8
        }
    }
    let off = Offset(HeapRegion::new(4096));
    assert!(matches!(initialize(&off), Err(RingError::Misaligned { .. })));

    let fresh = HeapRegion::new(4096);
    assert_eq!(Consumer::attach(&fresh).unwrap_err(), RingError::NotInitialized);
    // SAFETY: nobody else uses this region; we scribble a wrong magic into the header.
    unsafe { fresh.as_ptr().cast::<u64>().write(0x1234) };
    assert!(matches!(Consumer::attach(&fresh), Err(RingError::Incompatible { field: "magic", .. })));
}

// SAFETY: forwards to `T`, which upholds the contract; the reference keeps it alive.
unsafe impl<T: SharedRegion + ?Sized> SharedRegion for &T {
    fn as_ptr(&self) -> *mut u8 {
        (**self).as_ptr()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
}

#[test]
fn single_producer_and_consumer_enforced() {
    let region = HeapRegion::new(region_len(64));
    initialize(&region).unwrap();
    let mut p = Producer::attach(&region).unwrap();
    assert_eq!(Producer::attach(&region).unwrap_err(), RingError::AlreadyAttached(Role::Producer));
    let c = Consumer::attach(&region).unwrap();
    assert_eq!(Consumer::attach(&region).unwrap_err(), RingError::AlreadyAttached(Role::Consumer));
    assert!(p.try_push(1, &[b"abc"]).unwrap());
    drop(p);
    drop(c);
    // Re-attaching continues where the previous holders left off.
    let mut p = Producer::attach(&region).unwrap();
    let mut c = Consumer::attach(&region).unwrap();
    assert!(p.try_push(2, &[b"de"]).unwrap());
    let mut got = vec![];
    while c.try_pop(|k, b| got.push((k, b.to_vec()))) {}
    assert_eq!(got, vec![(1, b"abc".to_vec()), (2, b"de".to_vec())]);
}

#[test]
fn push_pop_gather_and_kinds() {
    let (mut p, mut c) = ring(256);
    assert!(c.is_empty());
    assert!(!c.try_pop(|_, _| panic!("empty ring delivered a record")));
    assert!(p.try_push(0, &[]).unwrap());
    assert!(p.try_push(42, &[b"ab", b"", b"cde"]).unwrap());
    assert!(p.try_push(PAD_KIND - 1, &[&[7u8; 9]]).unwrap());
    assert!(!c.is_empty());
    assert_eq!(pop_vec(&mut c), Some((0, vec![])));
    assert_eq!(pop_vec(&mut c), Some((42, b"abcde".to_vec())));
    assert_eq!(pop_vec(&mut c), Some((PAD_KIND - 1, vec![7; 9])));
    assert_eq!(pop_vec(&mut c), None);
    assert!(c.is_empty());
}

#[test]
fn rejects_reserved_kind_and_oversized() {
    let (mut p, mut c) = ring(64);
    assert_eq!(p.try_push(PAD_KIND, &[b"x"]), Err(PushError::ReservedKind));
    assert_eq!(p.max_record(), 56);
    assert_eq!(p.try_push(1, &[&[0; 57]]), Err(PushError::TooLarge { len: 57, max: 56 }));
    assert_eq!(p.try_push(1, &[&[0; 50], &[0; 7]]), Err(PushError::TooLarge { len: 57, max: 56 }));
    let msg = p.try_push(1, &[&[0; 100]]).unwrap_err().to_string();
    assert!(msg.contains("rendezvous"), "{msg}");
    assert!(c.is_empty(), "rejected pushes must not write anything");
    // Exactly max_record fits in an empty ring.
    assert!(p.try_push(1, &[&[9; 56]]).unwrap());
    assert!(!p.try_push(1, &[]).unwrap(), "ring is full");
    assert_eq!(pop_vec(&mut c), Some((1, vec![9; 56])));
}

#[test]
fn wraps_with_pad() {
    let (mut p, mut c) = ring(64);
    assert!(p.try_push(1, &[&[1; 20]]).unwrap()); // 32 bytes at 0
    assert!(p.try_push(2, &[&[2; 8]]).unwrap()); // 16 bytes at 32
    assert_eq!(pop_vec(&mut c), Some((1, vec![1; 20])));
    // 24 bytes do not fit in the 16 before the end: PAD(16) + record at 0.
    assert!(p.try_push(3, &[&[3; 16]]).unwrap());
    assert_eq!(p.tail, 48 + 16 + 24);
    assert_eq!(pop_vec(&mut c), Some((2, vec![2; 8])));
    assert_eq!(pop_vec(&mut c), Some((3, vec![3; 16])), "PAD is skipped transparently");
    assert_eq!(c.head, p.tail);
    assert_eq!(pop_vec(&mut c), None);
}

#[test]
fn pad_published_when_record_does_not_fit_yet() {
    // Empty ring at position 32 of 64: a 48-byte record fits neither before the end (32) nor
    // in PAD + record (32 + 48 > 64). The PAD must be published so the record can go next time.
    let (mut p, mut c) = ring(64);
    assert!(p.try_push(1, &[&[1; 24]]).unwrap());
    assert_eq!(pop_vec(&mut c), Some((1, vec![1; 24])));
    assert!(c.is_empty());
    assert!(!p.try_push(2, &[&[2; 40]]).unwrap());
    assert!(!c.is_empty(), "PAD is visible");
    assert!(!c.try_pop(|_, _| panic!("PAD delivered")), "only a PAD was there");
    assert!(c.is_empty());
    assert!(p.try_push(2, &[&[2; 40]]).unwrap());
    assert_eq!(pop_vec(&mut c), Some((2, vec![2; 40])));
}

#[test]
fn full_ring_returns_false_then_recovers() {
    let (mut p, mut c) = ring(128);
    let mut n = 0u64;
    while p.try_push(5, &[&payload(n, 8)]).unwrap() {
        n += 1;
    }
    assert_eq!(n, 8, "8 records of 16 bytes fill 128 bytes");
    assert_eq!(pop_vec(&mut c), Some((5, payload(0, 8))));
    assert!(p.try_push(5, &[&payload(n, 8)]).unwrap());
    for i in 1..=n {
        assert_eq!(pop_vec(&mut c), Some((5, payload(i, 8))));
    }
    assert!(c.is_empty());
}

#[test]
fn panicking_callback_does_not_consume() {
    let (mut p, mut c) = ring(64);
    assert!(p.try_push(1, &[b"x"]).unwrap());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.try_pop(|_, _| panic!("boom"))));
    assert!(r.is_err());
    assert_eq!(pop_vec(&mut c), Some((1, b"x".to_vec())));
}

#[test]
fn doorbell_handshake_single_thread() {
    let (mut p, mut c) = ring(64);
    assert!(!p.needs_doorbell(), "consumer is awake");
    assert!(c.prepare_sleep(), "empty ring: may sleep");
    assert!(p.try_push(1, &[b"a"]).unwrap());
    assert!(p.needs_doorbell(), "sleeping consumer must be rung");
    assert!(p.try_push(1, &[b"b"]).unwrap());
    assert!(!p.needs_doorbell(), "only one doorbell per announcement");
    c.end_sleep();
    assert!(!c.prepare_sleep(), "records pending: must not sleep");
    assert!(!p.needs_doorbell(), "withdrawn announcement");
    assert!(c.try_pop(|_, _| {}) && c.try_pop(|_, _| {}));
    assert!(c.prepare_sleep());
    c.end_sleep();
    assert!(p.try_push(1, &[b"c"]).unwrap());
    assert!(!p.needs_doorbell(), "end_sleep withdraws the announcement");
}

#[test]
fn pad_only_publication_rings_doorbell() {
    // Regression: a push that only publishes a PAD returns false, but a sleeping consumer must
    // still be woken to skip it, or the producer can never place the record.
    let (mut p, mut c) = ring(32);
    assert!(p.try_push(1, &[&[1; 8]]).unwrap()); // 16 bytes at 0
    let _ = p.needs_doorbell();
    assert!(c.try_pop(|_, _| ()));
    assert!(c.prepare_sleep());
    assert!(!p.try_push(2, &[&[2; 16]]).unwrap(), "PAD(16) + 24 > 32: only the PAD goes");
    assert!(p.needs_doorbell(), "PAD publication must ring");
    c.end_sleep();
    assert!(!c.try_pop(|_, _| ()));
    assert!(p.try_push(2, &[&[2; 16]]).unwrap());
    assert!(!p.needs_doorbell());
    assert_eq!(pop_vec(&mut c), Some((2, vec![2; 16])));
}

#[test]
#[should_panic(expected = "protocol violated")]
fn corrupt_tail_is_detected() {
    let region = Arc::new(HeapRegion::new(region_len(64)));
    initialize(&*region).unwrap();
    let mut c = Consumer::attach(region.clone()).unwrap();
    // SAFETY: test-only; the header is at the region base and `tail` is an atomic.
    let hdr = unsafe { header(&*region) };
    hdr.tail.0.store(1000, Ordering::Release);
    c.try_pop(|_, _| {});
}

/// Small deterministic PRNG for the stress tests.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn record_len(rng: &mut XorShift, max: usize) -> usize {
    match rng.next() % 16 {
        0 => max,
        1..=3 => (rng.next() % (max as u64 + 1)) as usize,
        _ => (rng.next() % 64) as usize,
    }
}

/// Two threads, 300k records, consumer sleeping on a channel "doorbell" whenever it runs dry.
/// A lost wakeup shows up as a `recv_timeout` failure.
#[test]
fn threaded_stress_with_doorbell() {
    const N: u64 = 300_000;
    let (mut p, mut c) = ring(4096);
    let (bell_tx, bell_rx) = mpsc::channel::<()>();
    let producer = std::thread::spawn(move || {
        let mut rng = XorShift(0x1234_5678);
        let max = p.max_record();
        let deadline = Instant::now() + Duration::from_secs(60);
        for seq in 0..N {
            let data = payload(seq, record_len(&mut rng, max));
            let (a, b) = data.split_at(data.len() / 3);
            loop {
                let pushed = p.try_push((seq % 1000) as u32, &[a, b]).unwrap();
                if p.needs_doorbell() {
                    bell_tx.send(()).unwrap();
                }
                if pushed {
                    break;
                }
                assert!(Instant::now() < deadline, "producer stuck");
                std::thread::yield_now();
            }
        }
    });
    let mut rng = XorShift(0x1234_5678);
    let max = c.capacity() - RECORD_HEADER;
    let (mut seq, mut sleeps) = (0u64, 0u64);
    while seq < N {
        let expect_len = record_len(&mut rng, max);
        loop {
            let ok = c.try_pop(|kind, bytes| {
                assert_eq!(kind, (seq % 1000) as u32);
                assert_eq!(bytes.len(), expect_len, "record {seq}");
                assert!(bytes.iter().enumerate().all(|(j, &b)| b == byte(seq, j)), "record {seq}");
            });
            if ok {
                break;
            }
            if c.prepare_sleep() {
                sleeps += 1;
                bell_rx.recv_timeout(Duration::from_secs(20)).expect("lost wakeup: no doorbell");
                c.end_sleep();
            }
        }
        seq += 1;
    }
    producer.join().unwrap();
    assert!(c.is_empty());
    eprintln!("threaded stress: {N} records, {sleeps} sleeps");
}

#[derive(Debug, Clone)]
enum Op {
    /// Push a record with this payload length, gathered from this many parts.
    Push(usize, usize),
    Pop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..=120, 1usize..4).prop_map(|(l, k)| Op::Push(l, k)),
        2 => Just(Op::Pop),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random lengths (up to max_record of a 128-byte ring), random gathers, interleaved pops:
    /// content is FIFO, a push fails only if the ring is genuinely short of space, and an
    /// empty ring always accepts any legal record (after at most one PAD skip).
    #[test]
    fn fifo_matches_model(ops in prop::collection::vec(op(), 1..300)) {
        let (mut p, mut c) = ring(128);
        let max = p.max_record();
        let mut model: VecDeque<(u32, Vec<u8>)> = VecDeque::new();
        let mut seq = 0u64;
        for op in ops {
            match op {
                Op::Push(len, nparts) => {
                    let len = len.min(max);
                    let data = payload(seq, len);
                    let cut1 = len / nparts;
                    let cut2 = (2 * len / nparts).max(cut1);
                    let parts: Vec<&[u8]> = if nparts == 1 {
                        vec![&data]
                    } else {
                        vec![&data[..cut1], &data[cut1..cut2], &data[cut2..]]
                    };
                    let kind = (seq % 7) as u32;
                    // Exact model of the space rules.
                    let (tail, used) = (p.tail, p.tail - c.head);
                    let (free, to_end, rec) = (128 - used, 128 - tail % 128, record_size(len as u64));
                    let (expect_ok, expect_pad) = if rec <= to_end {
                        (free >= rec, false)
                    } else {
                        (free >= to_end + rec, free >= to_end)
                    };
                    let ok = p.try_push(kind, &parts).unwrap();
                    prop_assert_eq!(ok, expect_ok, "len {} used {} tail {}", len, used, tail);
                    if ok {
                        model.push_back((kind, data));
                        seq += 1;
                    } else {
                        prop_assert_eq!(p.tail, if expect_pad { tail + to_end } else { tail });
                        if model.is_empty() {
                            // Liveness: only a PAD can be in the way; once the consumer skips
                            // it, any legal record fits.
                            let popped = c.try_pop(|_, _| ());
                            prop_assert!(!popped, "only a PAD was left");
                            prop_assert!(c.is_empty());
                            prop_assert!(p.try_push(kind, &parts).unwrap(), "empty ring refused a record");
                            model.push_back((kind, data));
                            seq += 1;
                        }
                    }
                }
                Op::Pop => {
                    let got = pop_vec(&mut c);
                    prop_assert_eq!(got, model.pop_front());
                }
            }
            prop_assert!(p.tail - c.head <= 128);
        }
        while let Some(expected) = model.pop_front() {
            prop_assert_eq!(pop_vec(&mut c), Some(expected));
        }
        prop_assert_eq!(pop_vec(&mut c), None);
        prop_assert!(c.is_empty());
    }
}

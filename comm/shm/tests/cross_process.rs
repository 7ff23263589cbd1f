//! Cross-process tests through real `/dev/shm` segments.
//!
//! A test that needs a second process re-runs this test binary (`std::process::Command` on
//! `current_exe()`, not `fork`) filtered to one `child_*` test, with `SHMRING_CHILD` set; the
//! `child_*` tests do nothing when it is not set. Every spawned process is waited for with a
//! timeout and killed if it exceeds it.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use charmrs_shm::ring::{self, Consumer, Producer};
use charmrs_shm::segment::{Segment, ShmName, SHM_DIR};

const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

/// Unique job id per test process and test.
fn job(test: &str) -> String {
    format!("t{}{}", std::process::id(), test)
}

/// Removes the job's leftover files even if the test panics.
struct JobGuard(String);
impl Drop for JobGuard {
    fn drop(&mut self) {
        let _ = Segment::remove_job(&self.0);
    }
}

fn job_files(job: &str) -> Vec<String> {
    let prefix = format!("charmrs-{job}-");
    std::fs::read_dir(SHM_DIR)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

fn spawn_child(test: &str, role: &str, job: &str, name: &str, stdin: Stdio) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("SHMRING_CHILD", role)
        .env("SHMRING_JOB", job)
        .env("SHMRING_NAME", name)
        .stdin(stdin)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child test process")
}

/// Waits for `child` to exit within `timeout`; kills it and panics otherwise.
fn wait_ok(child: &mut Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "child failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Spins until `cond` holds, panicking after `timeout` or if `child` exits early.
fn wait_for(child: &mut Child, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child exited ({status}) while waiting for {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(100));
    }
}

fn child_env() -> Option<(String, ShmName)> {
    let role = std::env::var("SHMRING_CHILD").ok()?;
    let job = std::env::var("SHMRING_JOB").unwrap();
    let name = std::env::var("SHMRING_NAME").unwrap();
    Some((role, ShmName::new(&job, &name).unwrap()))
}

/// The control word at offset 0 of the handshake segment.
fn state(seg: &Segment) -> &AtomicU64 {
    // SAFETY: the mapping is page-aligned, at least 8 bytes long and outlives the reference; it
    // is accessed by both processes only through this atomic (and disjoint plain bytes below).
    unsafe { &*seg.as_ptr().cast::<AtomicU64>() }
}

fn bytes(seg: &Segment, range: std::ops::Range<usize>) -> Vec<u8> {
    assert!(range.end <= seg.len());
    // SAFETY: in bounds (checked); the range is not written concurrently by the protocol of the
    // test (writes happen before the Release store of `state` that the reader Acquires).
    unsafe { std::slice::from_raw_parts(seg.as_ptr().add(range.start), range.len()).to_vec() }
}

fn fill(seg: &Segment, range: std::ops::Range<usize>, value: u8) {
    assert!(range.end <= seg.len());
    // SAFETY: in bounds (checked); nobody reads the range until the following Release store.
    unsafe { std::ptr::write_bytes(seg.as_ptr().add(range.start), value, range.len()) }
}

#[test]
fn names_are_validated() {
    let n = ShmName::new("job1", "ring-0.1_x").unwrap();
    assert_eq!(n.path(), Path::new("/dev/shm/charmrs-job1-ring-0.1_x"));
    for (job, name) in [("", "a"), ("a", ""), ("a-b", "c"), ("a/b", "c"), ("a", "b/c"), ("a", "..x/y")] {
        assert!(ShmName::new(job, name).is_err(), "{job:?} {name:?}");
    }
    assert!(ShmName::new("a", &"x".repeat(300)).is_err());
}

#[test]
fn create_is_exclusive_and_unlink_removes_name() {
    let job = job("excl");
    let _g = JobGuard(job.clone());
    let name = ShmName::new(&job, "seg").unwrap();
    assert!(Segment::create(&name, 0).is_err());
    assert!(!name.path().exists(), "failed create leaves no file");
    let a = Segment::create(&name, 4096).unwrap();
    assert_eq!(a.len(), 4096);
    assert_eq!(Segment::create(&name, 4096).unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
    let b = Segment::open_and_unlink(&name).unwrap();
    assert!(!name.path().exists());
    assert_eq!(Segment::open(&name).unwrap_err().kind(), std::io::ErrorKind::NotFound);
    // Both mappings still alias the same memory.
    fill(&a, 100..200, 0xee);
    assert_eq!(bytes(&b, 100..200), vec![0xee; 100]);
    // A zero-filled segment is a valid place for a ring.
    let seg = Segment::create(&ShmName::new(&job, "ring").unwrap(), ring::region_len(1024)).unwrap();
    let mut p = Producer::create(seg).unwrap();
    let mut c =
        Consumer::attach(Segment::open_and_unlink(&ShmName::new(&job, "ring").unwrap()).unwrap()).unwrap();
    assert!(p.try_push(3, &[b"via two mappings"]).unwrap());
    assert!(c.try_pop(|k, b| assert_eq!((k, b), (3, &b"via two mappings"[..]))));
    assert!(job_files(&job).is_empty());
}

#[test]
fn remove_job_sweeps_leftovers_only_of_that_job() {
    let job_a = job("sweepa");
    let job_b = format!("{job_a}x");
    let (_ga, _gb) = (JobGuard(job_a.clone()), JobGuard(job_b.clone()));
    for n in ["x", "y-1", "z"] {
        drop(Segment::create(&ShmName::new(&job_a, n).unwrap(), 64).unwrap());
    }
    drop(Segment::create(&ShmName::new(&job_b, "x").unwrap(), 64).unwrap());
    assert_eq!(Segment::remove_job(&job_a).unwrap(), 3);
    assert!(job_files(&job_a).is_empty());
    assert_eq!(job_files(&job_b).len(), 1, "prefix of another job must not match");
    assert!(Segment::remove_job("bad-job").is_err());
}

/// Creator makes the segment, a peer process opens and unlinks it at once; afterwards no file
/// remains and the mapping still works in both directions.
#[test]
fn unlink_after_open_across_processes() {
    let job = job("unlink");
    let _g = JobGuard(job.clone());
    let name = ShmName::new(&job, "seg").unwrap();
    let seg = Segment::create(&name, 4096).unwrap();
    fill(&seg, 64..128, 0xa5);
    let mut child = spawn_child("child_unlink_peer", "unlink", &job, "seg", Stdio::null());
    wait_for(&mut child, CHILD_TIMEOUT, "peer to open and unlink", || {
        state(&seg).load(Ordering::Acquire) == 1
    });
    assert!(!name.path().exists(), "no file may remain after the peer opened it");
    assert!(job_files(&job).is_empty());
    assert_eq!(bytes(&seg, 128..192), vec![0x5a; 64], "peer's write is visible");
    fill(&seg, 192..256, 0x77);
    state(&seg).store(2, Ordering::Release);
    wait_ok(&mut child, CHILD_TIMEOUT);
    assert!(job_files(&job).is_empty());
}

#[test]
fn child_unlink_peer() {
    let Some((role, name)) = child_env() else { return };
    assert_eq!(role, "unlink");
    let seg = Segment::open_and_unlink(&name).unwrap();
    assert!(!name.path().exists());
    assert_eq!(bytes(&seg, 64..128), vec![0xa5; 64], "creator's write is visible");
    fill(&seg, 128..192, 0x5a);
    state(&seg).store(1, Ordering::Release);
    let deadline = Instant::now() + CHILD_TIMEOUT;
    while state(&seg).load(Ordering::Acquire) != 2 {
        assert!(Instant::now() < deadline, "creator never answered");
        std::thread::sleep(Duration::from_micros(100));
    }
    assert_eq!(bytes(&seg, 192..256), vec![0x77; 64]);
}

/// A peer killed with SIGKILL after unlink-after-open leaks nothing, and the creator's mapping
/// keeps working.
#[test]
fn kill_9_after_open_leaks_nothing() {
    let job = job("kill");
    let _g = JobGuard(job.clone());
    let name = ShmName::new(&job, "seg").unwrap();
    let seg = Segment::create(&name, 1 << 20).unwrap();
    let mut child = spawn_child("child_open_and_hang", "hang", &job, "seg", Stdio::null());
    wait_for(&mut child, CHILD_TIMEOUT, "peer to open", || state(&seg).load(Ordering::Acquire) == 1);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(job_files(&job).is_empty(), "nothing leaked in /dev/shm");
    fill(&seg, 0..(1 << 20), 1);
    assert_eq!(bytes(&seg, 4096..4100), vec![1; 4]);
}

#[test]
fn child_open_and_hang() {
    let Some((role, name)) = child_env() else { return };
    assert_eq!(role, "hang");
    let seg = Segment::open_and_unlink(&name).unwrap();
    state(&seg).store(1, Ordering::Release);
    // Wait to be killed; exit on our own after the timeout so that nothing can hang forever.
    std::thread::sleep(CHILD_TIMEOUT);
    panic!("was not killed");
}

const RECORDS: u64 = 100_000;

fn record_len(seq: u64, max: usize) -> usize {
    let h = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    match h % 64 {
        0 => max,
        1..=4 => (h >> 8) as usize % (max + 1),
        _ => (h >> 8) as usize % 256,
    }
}

fn record_byte(seq: u64, j: usize) -> u8 {
    (seq as u8).wrapping_mul(7) ^ (j as u8) ^ ((j >> 8) as u8)
}

/// One process produces 100k records of varying length (up to `max_record`, gathered from two
/// slices); another consumes and verifies them byte by byte through a real `/dev/shm` segment,
/// sleeping whenever the ring is empty. Doorbells are bytes on the child's stdin pipe, so a lost
/// wakeup would hang the child and trip the timeout.
#[test]
fn hundred_thousand_records_across_processes() {
    let job = job("ring");
    let _g = JobGuard(job.clone());
    let name = ShmName::new(&job, "ring").unwrap();
    let seg = Segment::create(&name, ring::region_len(64 * 1024)).unwrap();
    let mut tx = Producer::create(seg).unwrap();
    let mut child = spawn_child("child_ring_consumer", "consumer", &job, "ring", Stdio::piped());
    let mut doorbell = child.stdin.take().unwrap();
    let max = tx.max_record();
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let mut data = Vec::new();
    let mut rings = 0u64;
    for seq in 0..RECORDS {
        data.clear();
        data.extend((0..record_len(seq, max)).map(|j| record_byte(seq, j)));
        let (a, b) = data.split_at(data.len() / 2);
        let mut spins = 0u64;
        loop {
            let pushed = tx.try_push(seq as u32, &[a, b]).unwrap();
            if tx.needs_doorbell() {
                doorbell.write_all(&[1]).expect("ring doorbell");
                rings += 1;
            }
            if pushed {
                break;
            }
            spins += 1;
            if spins % 1024 == 0 {
                assert!(Instant::now() < deadline, "producer timed out (consumer stuck?)");
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("consumer exited early: {status}");
                }
            }
            std::thread::yield_now();
        }
    }
    eprintln!("producer: {RECORDS} records pushed, {rings} doorbells rung");
    drop(doorbell);
    wait_ok(&mut child, CHILD_TIMEOUT);
    assert!(job_files(&job).is_empty(), "segment was unlinked by the consumer");
}

#[test]
fn child_ring_consumer() {
    let Some((role, name)) = child_env() else { return };
    assert_eq!(role, "consumer");
    let mut rx = Consumer::attach(Segment::open_and_unlink(&name).unwrap()).unwrap();
    let max = rx.capacity() - ring::RECORD_HEADER;
    let mut stdin = std::io::stdin().lock();
    let mut sleeps = 0u64;
    for seq in 0..RECORDS {
        let len = record_len(seq, max);
        loop {
            let popped = rx.try_pop(|kind, bytes| {
                assert_eq!(kind, seq as u32, "record order");
                assert_eq!(bytes.len(), len, "length of record {seq}");
                if let Some(j) = (0..len).find(|&j| bytes[j] != record_byte(seq, j)) {
                    panic!("record {seq}: byte {j} corrupted");
                }
            });
            if popped {
                break;
            }
            if rx.prepare_sleep() {
                sleeps += 1;
                // Block until the producer rings (a lost wakeup blocks here until the parent's
                // timeout kills us; EOF means the parent died).
                let mut b = [0u8; 1];
                stdin.read_exact(&mut b).expect("doorbell pipe closed while records outstanding");
                rx.end_sleep();
            }
        }
    }
    assert!(rx.is_empty());
    eprintln!("consumer: {RECORDS} records verified, slept {sleeps} times");
}

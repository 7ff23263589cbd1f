//! A reusable buffer for large messages between two processes: the rendezvous for
//! messages too large for a ring, without a new segment (and its page faults) per
//! message.
//!
//! The sender owns a segment per receiver: a 128-byte header with a `released`
//! counter, a `written` counter and the sender's process id, then the payload area. To
//! send message number `seq` (1, 2, ...) it waits until `released == seq - 1` (the
//! receiver is done with the previous one), writes the first part of the payload (the
//! message's header) and sets `written` to its length ([`BulkOut::begin`]), passes
//! `(name, len, seq)` through the ring, so the message keeps its place in the order,
//! and then writes the rest in chunks, raising `written` after each
//! ([`BulkOut::stream`]). The receiver maps the segment the first time it sees its name
//! (and unlinks it: unlink-after-open), reads the written prefix in place
//! ([`BulkIn::bytes`]), copies the rest out as it arrives ([`BulkIn::copy_out`]: its
//! copy runs while the sender's goes on, so a large message costs about one copy's
//! time instead of two), and stores `released = seq` with Release
//! ([`BulkIn::release`]). Orderings: the sender's Release store of `written` after a
//! chunk and the receiver's Acquire load before reading it order the writes before the
//! reads; the receiver's Release store of `released` and the sender's Acquire load
//! order the receiver's reads before the sender's next writes. A message larger than
//! the segment makes the sender replace it by a larger one (a new name; the receiver
//! drops its old mapping when it sees the new one).
//!
//! A receiver waiting for bytes whose sender died would wait forever: it checks now and
//! then that the sender's process still exists (`kill(pid, 0)`; the processes of one
//! host share a process-id namespace in every launcher charmrs supports; if the
//! sender's id is not visible from the receiver, the check is off).

use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::segment::{Segment, ShmName};

/// Header size: `released` on its own pair of cache lines, then `written` and the
/// sender's process id on theirs.
const HEADER: usize = 128;
/// Offset of `written` in the header.
const WRITTEN: usize = 64;
/// Offset of the sender's process id.
const PID: usize = 72;
/// The sender makes its bytes readable at least this often.
const CHUNK: usize = 64 << 10;

fn released(seg: &Segment) -> &AtomicU64 {
    // SAFETY: the segment is at least HEADER bytes, page-aligned (so aligned for
    // AtomicU64), and its first 8 bytes are only ever accessed as this atomic, by the
    // two processes that map it; the reference lives no longer than `seg`.
    unsafe { &*(seg.as_ptr() as *const AtomicU64) }
}

fn written(seg: &Segment) -> &AtomicU64 {
    // SAFETY: as for `released`, at offset WRITTEN (8-aligned, within HEADER).
    unsafe { &*(seg.as_ptr().add(WRITTEN) as *const AtomicU64) }
}

fn sender_pid(seg: &Segment) -> &AtomicU32 {
    // SAFETY: as for `released`, at offset PID (4-aligned, within HEADER).
    unsafe { &*(seg.as_ptr().add(PID) as *const AtomicU32) }
}

/// The sending end: a segment this process created for one receiver.
#[derive(Debug)]
pub struct BulkOut {
    seg: Segment,
    seq: u64,
    /// Where the next byte of the current payload goes (an offset in the segment).
    at: usize,
    /// Where the current payload ends.
    end: usize,
}

impl BulkOut {
    /// A new buffer named `name` for payloads of up to `cap` bytes.
    ///
    /// # Errors
    /// The segment cannot be created.
    pub fn create(name: &ShmName, cap: usize) -> io::Result<BulkOut> {
        let seg = Segment::create(name, HEADER + cap.max(1))?;
        sender_pid(&seg).store(std::process::id(), Ordering::Relaxed);
        Ok(BulkOut { seg, seq: 0, at: HEADER, end: HEADER })
    }

    /// Largest payload.
    pub fn capacity(&self) -> usize {
        self.seg.len() - HEADER
    }

    /// The segment's name.
    pub fn name(&self) -> &ShmName {
        self.seg.name()
    }

    /// Waits until the receiver released the previous payload (`gone()` is asked now and
    /// then whether to give up: the receiver died), then writes `head`, the first bytes
    /// of a payload of `len`, makes them readable, and returns the sequence number to
    /// send along. The other `len - head.len()` bytes follow with [`BulkOut::stream`].
    ///
    /// # Errors
    /// The payload is larger than the capacity, or `gone()` said to give up.
    pub fn begin(&mut self, len: usize, head: &[u8], mut gone: impl FnMut() -> bool) -> io::Result<u64> {
        if len > self.capacity() || head.len() > len {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "payload larger than the bulk buffer"));
        }
        let t0 = Instant::now();
        // Acquire: the receiver's reads of the previous payload happen before our writes.
        while released(&self.seg).load(Ordering::Acquire) != self.seq {
            if t0.elapsed() < Duration::from_micros(50) {
                std::hint::spin_loop();
            } else {
                if gone() {
                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the receiver is gone"));
                }
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        self.seq += 1;
        self.at = HEADER;
        self.end = HEADER + len;
        self.put(head);
        // Release: the head is written before the receiver, told of it through the ring
        // afterwards (which orders this store too), reads it.
        written(&self.seg).store(head.len() as u64, Ordering::Release);
        Ok(self.seq)
    }

    /// Writes the rest of the payload [`BulkOut::begin`] started, making each chunk
    /// readable as soon as it is written.
    ///
    /// # Panics
    /// `parts` hold more bytes than `begin` was told.
    pub fn stream(&mut self, parts: &[&[u8]]) {
        for p in parts {
            for c in p.chunks(CHUNK) {
                self.put(c);
                // Release: the chunk is written before the receiver reads it.
                written(&self.seg).store((self.at - HEADER) as u64, Ordering::Release);
            }
        }
    }

    /// Writes `bytes` at the current position.
    fn put(&mut self, bytes: &[u8]) {
        assert!(self.at + bytes.len() <= self.end, "more bytes than the payload announced");
        // SAFETY: `at + len <= end <= seg.len()` (`begin` checked `end` against the
        // capacity). The receiver reads only bytes below `written`, which is at most
        // `at - HEADER` (these bytes are above it), or, before `begin`, bytes of a
        // payload it has released: nobody reads or writes these bytes meanwhile.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.seg.as_ptr().add(self.at), bytes.len()) };
        self.at += bytes.len();
    }

    /// [`BulkOut::begin`] and [`BulkOut::stream`] in one: writes `parts` and returns the
    /// sequence number to send along.
    ///
    /// # Errors
    /// As for `begin`.
    pub fn write(&mut self, parts: &[&[u8]], gone: impl FnMut() -> bool) -> io::Result<u64> {
        let len = parts.iter().map(|p| p.len()).sum();
        let seq = self.begin(len, &[], gone)?;
        self.stream(parts);
        Ok(seq)
    }
}

/// The receiving end: the sender's segment, mapped here.
#[derive(Debug)]
pub struct BulkIn {
    seg: Segment,
    /// The sender's process id, if this process can see it.
    pid: Option<u32>,
}

impl BulkIn {
    /// Maps the sender's buffer `name` and removes its file.
    ///
    /// # Errors
    /// It does not exist or is too small to be a bulk buffer.
    pub fn open(name: &ShmName) -> io::Result<BulkIn> {
        let seg = Segment::open_and_unlink(name)?;
        if seg.len() <= HEADER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bulk buffer {name} is too small"),
            ));
        }
        let pid = sender_pid(&seg).load(Ordering::Relaxed);
        // The sender is alive now (it is writing to us): if its id is not a process
        // here, the processes do not share an id namespace and the check is off.
        let pid = Some(pid).filter(|&p| p != 0 && alive(p));
        Ok(BulkIn { seg, pid })
    }

    /// The segment's name.
    pub fn name(&self) -> &ShmName {
        self.seg.name()
    }

    /// The first `len` bytes of the payload, which must be written (as the ring record
    /// announcing the payload says, or as [`BulkIn::wait_written`] returned).
    ///
    /// # Errors
    /// `len` exceeds the buffer.
    pub fn bytes(&self, len: usize) -> io::Result<&[u8]> {
        if len > self.seg.len() - HEADER {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bulk payload larger than its buffer"));
        }
        // SAFETY: in bounds (checked). The sender wrote these bytes before it raised
        // `written` past them (Release, and our Acquire load or the ring's), and writes
        // them again only after `release` (below): nobody writes them while this borrow
        // lives, which ends before `release` can be called (it takes `&self` too, but the
        // caller drops the slice first: the runtime decodes, then releases).
        Ok(unsafe { std::slice::from_raw_parts(self.seg.as_ptr().add(HEADER), len) })
    }

    /// Waits until at least the first `n` bytes of the payload are written; returns how
    /// many are, or `None` if the sender's process is gone before it wrote them.
    pub fn wait_written(&self, n: usize) -> Option<usize> {
        let t0 = Instant::now();
        let mut checked = t0;
        let mut spins = 0u32;
        loop {
            // Acquire: the bytes below it were written before it was raised.
            let w = written(&self.seg).load(Ordering::Acquire) as usize;
            if w >= n {
                return Some(w);
            }
            // The sender is usually a chunk ahead at most: spin, reading the clock only
            // now and then.
            spins += 1;
            if spins % 64 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let now = Instant::now();
            if now - t0 < Duration::from_millis(1) {
                continue;
            }
            if now - checked > Duration::from_millis(100) {
                checked = now;
                if self.pid.is_some_and(|p| !alive(p)) {
                    return None;
                }
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// Copies payload bytes `from..from + dst.len()` into `dst` as the sender writes
    /// them (chunk by chunk, while it goes on writing the next).
    ///
    /// # Errors
    /// The range exceeds the buffer, or the sender died before it wrote them.
    pub fn copy_out(&self, from: usize, dst: &mut [MaybeUninit<u8>]) -> io::Result<()> {
        let end = from.checked_add(dst.len()).filter(|&e| e <= self.seg.len() - HEADER);
        let Some(end) = end else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bulk payload larger than its buffer"));
        };
        let mut at = from;
        while at < end {
            let w = self.wait_written(at + 1).ok_or_else(|| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the sender died while it wrote a large message")
            })?;
            let upto = w.min(end);
            // SAFETY: `from..end` is within the payload area (checked); the sender wrote
            // `at..upto` before raising `written` to `w >= upto` (our Acquire load in
            // `wait_written`) and does not write it again before `release`; `dst` is
            // ours and cannot overlap the mapping's bytes the sender writes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.seg.as_ptr().add(HEADER + at),
                    dst.as_mut_ptr().add(at - from).cast::<u8>(),
                    upto - at,
                );
            }
            at = upto;
        }
        Ok(())
    }

    /// Tells the sender that payload `seq` was read and the buffer may be reused.
    pub fn release(&self, seq: u64) {
        // Release: our reads of the payload happen before the sender's next writes.
        released(&self.seg).store(seq, Ordering::Release);
    }
}

/// Whether process `pid` exists (or exists but is not ours to signal).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 sends nothing: it only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_after_release_and_refuses_oversize() {
        let name = ShmName::new(&format!("bulktest{}", std::process::id()), "b1").expect("name");
        let mut out = BulkOut::create(&name, 64).expect("create");
        let s1 = out.write(&[b"first"], || false).expect("write");
        let inn = BulkIn::open(&name).expect("open");
        assert!(!name.path().exists(), "opened: unlinked");
        assert_eq!(inn.bytes(5).expect("bytes"), b"first");
        inn.release(s1);
        let s2 = out.write(&[b"sec", b"ond"], || false).expect("write");
        assert_eq!(s2, 2);
        assert_eq!(inn.bytes(6).expect("bytes"), b"second");
        assert!(out.write(&[&[0u8; 65]], || false).is_err(), "larger than the buffer");
        // Not released: a writer that is told the receiver is gone gives up.
        assert!(out.write(&[b"x"], || true).is_err());
        assert!(inn.bytes(1000).is_err());
    }

    #[test]
    fn a_streamed_payload_is_copied_out_while_it_is_written() {
        let name = ShmName::new(&format!("bulktest{}", std::process::id()), "b2").expect("name");
        let len = 5 * CHUNK + 123;
        let mut out = BulkOut::create(&name, len).expect("create");
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let inn = BulkIn::open(&name).expect("open");
        for round in 0..3u64 {
            let seq = out.begin(len, &data[..10], || false).expect("begin");
            assert_eq!(seq, round + 1);
            assert_eq!(inn.bytes(10).expect("the head is there"), &data[..10]);
            std::thread::scope(|s| {
                s.spawn(|| out.stream(&[&data[10..1000], &data[1000..]]));
                let mut got = vec![MaybeUninit::new(0u8); len - 10];
                inn.copy_out(10, &mut got).expect("copied");
                // SAFETY: `copy_out` returned Ok: it initialized every byte.
                assert!(got.iter().zip(&data[10..]).all(|(g, d)| unsafe { g.assume_init() } == *d));
            });
            assert_eq!(inn.wait_written(len), Some(len));
            inn.release(seq);
        }
        let mut past = [MaybeUninit::new(0u8); 8];
        assert!(inn.copy_out(out.capacity() - 4, &mut past).is_err(), "beyond the buffer");
    }

    #[test]
    fn a_receiver_stops_waiting_for_a_dead_sender() {
        let name = ShmName::new(&format!("bulktest{}", std::process::id()), "b3").expect("name");
        let mut out = BulkOut::create(&name, 1000).expect("create");
        let mut child = std::process::Command::new("true").spawn().expect("true runs");
        let dead = child.id();
        child.wait().expect("it ends");
        let inn = BulkIn::open(&name).expect("open");
        assert!(inn.pid.is_some(), "this process is visible");
        sender_pid(&out.seg).store(dead, Ordering::Relaxed);
        let inn = BulkIn { seg: inn.seg, pid: Some(dead) };
        out.begin(1000, b"head", || false).expect("begin");
        let mut rest = [MaybeUninit::new(0u8); 996];
        let e = inn.copy_out(4, &mut rest).expect_err("the sender is gone");
        assert!(e.to_string().contains("died"), "{e}");
    }
}

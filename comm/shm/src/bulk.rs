//! A reusable buffer for large messages between two processes: the rendezvous for
//! messages too large for a ring, without a new segment (and its page faults) per
//! message.
//!
//! The sender owns a segment per receiver: a 128-byte header with a `released`
//! counter, then the payload area. To send message number `seq` (1, 2, ...) it waits
//! until `released == seq - 1` (the receiver is done with the previous one), copies the
//! payload in ([`BulkOut::write`]) and passes `(name, len, seq)` through the ring, so
//! the message keeps its place in the order. The receiver maps the segment the first
//! time it sees its name (and unlinks it: unlink-after-open), reads the payload in place
//! ([`BulkIn::bytes`]) and stores `released = seq` with Release ([`BulkIn::release`]).
//! The sender's Acquire load of `released` orders the receiver's reads before the
//! sender's next writes; the ring's Release/Acquire orders the sender's writes before
//! the receiver's reads. A message larger than the segment makes the sender replace it
//! by a larger one (a new name; the receiver drops its old mapping when it sees the new
//! one).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::segment::{Segment, ShmName};

/// Header size (the counter on its own pair of cache lines).
const HEADER: usize = 128;

fn released(seg: &Segment) -> &AtomicU64 {
    // SAFETY: the segment is at least HEADER bytes, page-aligned (so aligned for
    // AtomicU64), and its first 8 bytes are only ever accessed as this atomic, by the
    // two processes that map it; the reference lives no longer than `seg`.
    unsafe { &*(seg.as_ptr() as *const AtomicU64) }
}

/// The sending end: a segment this process created for one receiver.
#[derive(Debug)]
pub struct BulkOut {
    seg: Segment,
    seq: u64,
}

impl BulkOut {
    /// A new buffer named `name` for payloads of up to `cap` bytes.
    ///
    /// # Errors
    /// The segment cannot be created.
    pub fn create(name: &ShmName, cap: usize) -> io::Result<BulkOut> {
        Ok(BulkOut { seg: Segment::create(name, HEADER + cap.max(1))?, seq: 0 })
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
    /// then whether to give up: the receiver died), then writes `parts` and returns the
    /// sequence number to send along.
    ///
    /// # Errors
    /// The payload is larger than the capacity, or `gone()` said to give up.
    ///
    /// # Panics
    /// Never for a payload within the capacity.
    pub fn write(&mut self, parts: &[&[u8]], mut gone: impl FnMut() -> bool) -> io::Result<u64> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.capacity() {
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
        let mut at = HEADER;
        for p in parts {
            // SAFETY: `at + p.len() <= HEADER + len <= seg.len()`. The receiver released
            // the previous payload (Acquire above) and reads the area again only after
            // the ring hands it the next sequence number: nobody reads or writes these
            // bytes meanwhile.
            unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), self.seg.as_ptr().add(at), p.len()) };
            at += p.len();
        }
        self.seq += 1;
        Ok(self.seq)
    }
}

/// The receiving end: the sender's segment, mapped here.
#[derive(Debug)]
pub struct BulkIn {
    seg: Segment,
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
        Ok(BulkIn { seg })
    }

    /// The segment's name.
    pub fn name(&self) -> &ShmName {
        self.seg.name()
    }

    /// The payload of `len` bytes (as announced with its sequence number).
    ///
    /// # Errors
    /// `len` exceeds the buffer.
    pub fn bytes(&self, len: usize) -> io::Result<&[u8]> {
        if len > self.seg.len() - HEADER {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bulk payload larger than its buffer"));
        }
        // SAFETY: in bounds (checked). The sender wrote these bytes before it pushed the
        // record that told us about them (ring Release/Acquire), and writes again only
        // after `release` (below): nobody writes them while this borrow lives, which
        // ends before `release` can be called (it takes `&self` too, but the caller
        // drops the slice first: the runtime decodes, then releases).
        Ok(unsafe { std::slice::from_raw_parts(self.seg.as_ptr().add(HEADER), len) })
    }

    /// Tells the sender that payload `seq` was read and the buffer may be reused.
    pub fn release(&self, seq: u64) {
        // Release: our reads of the payload happen before the sender's next writes.
        released(&self.seg).store(seq, Ordering::Release);
    }
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
}

//! One-shot payloads between processes: the rendezvous for messages too large for a
//! ring. The sender writes the payload once into a fresh segment ([`put`]) and passes
//! its name through the ring (so the payload keeps its place in the message order);
//! the receiver maps it, unlinks it at once ([`Taken::take`]) and reads it in place:
//! one copy in (the sender's), none out (the receiver decodes from the mapping).
//!
//! A payload whose receiver dies before taking it stays in `/dev/shm` until the job's
//! launcher removes the job's files ([`Segment::remove_job`]).

use std::io;

use crate::segment::{Segment, ShmName};

/// Writes `parts` (concatenated) into a new segment named `name`, and unmaps it: the file
/// holds the payload until the receiver takes it.
///
/// # Errors
/// The segment cannot be created (it exists, `/dev/shm` is full or missing).
pub fn put(name: &ShmName, parts: &[&[u8]]) -> io::Result<usize> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let seg = Segment::create(name, len.max(1))?;
    let mut at = 0;
    for p in parts {
        // SAFETY: `seg` maps `len.max(1)` bytes, and `at + p.len() <= len`. The segment
        // was just created with O_EXCL and mode 0600, its name is not published yet: no
        // other mapping of it can exist, so nothing else reads or writes these bytes.
        unsafe { std::ptr::copy_nonoverlapping(p.as_ptr(), seg.as_ptr().add(at), p.len()) };
        at += p.len();
    }
    Ok(len)
}

/// A payload taken from another process: mapped, and already unlinked.
#[derive(Debug)]
pub struct Taken {
    seg: Segment,
    len: usize,
}

impl Taken {
    /// Maps the payload `name` of `len` bytes and removes its file.
    ///
    /// # Errors
    /// It does not exist, or is shorter than `len`.
    pub fn take(name: &ShmName, len: usize) -> io::Result<Taken> {
        let seg = Segment::open_and_unlink(name)?;
        if seg.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("shm payload {name} has {} bytes, {len} expected", seg.len()),
            ));
        }
        Ok(Taken { seg, len })
    }

    /// The payload.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping covers at least `len` bytes (checked in `take`) and lives as
        // long as `self`. Its writer finished before it published the name (the name
        // reached us through the ring, Release/Acquire) and never maps it again: nobody
        // writes these bytes while this shared borrow lives.
        unsafe { std::slice::from_raw_parts(self.seg.as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_taken_once_and_leaves_no_file() {
        let name = ShmName::new(&format!("blobtest{}", std::process::id()), "x1").expect("name");
        assert_eq!(put(&name, &[b"hello ", b"world"]).expect("put"), 11);
        assert!(name.path().exists());
        let t = Taken::take(&name, 11).expect("take");
        assert_eq!(t.bytes(), b"hello world");
        assert!(!name.path().exists(), "taking unlinks");
        assert!(Taken::take(&name, 11).is_err(), "a payload is taken once");
    }

    #[test]
    fn a_short_payload_is_refused() {
        let name = ShmName::new(&format!("blobtest{}", std::process::id()), "x2").expect("name");
        put(&name, &[b"abc"]).expect("put");
        assert!(Taken::take(&name, 10).is_err());
        assert!(!name.path().exists());
    }
}

//! Length-prefixed frames: the unit a byte-stream transport carries.
//!
//! ```text
//! offset  size  field
//!      0     4  magic      b"CHRS": rejects a peer that is not a charmrs process
//!      4     2  version    wire version, little-endian; another version is refused
//!      6     1  kind       what the payload is (handshake, message, ...)
//!      7     1  flags      kind-specific bits
//!      8     4  src        sender's rank in the job, little-endian
//!     12     4  len        payload length in bytes, little-endian
//!     16   len  payload
//! ```
//!
//! The header is checked before anything is allocated for the payload: a bad magic,
//! another version or a length above the receiver's limit is an error as soon as the
//! 16 header bytes are in, so a hostile or corrupted stream cannot make the receiver
//! allocate (FAULT-MATRIX rows 9 and 10). A stream that ends inside a frame is
//! [`FrameError::Truncated`]. Decoding never panics, whatever the input (property-tested).
//!
//! Written by hand: the format is ours, and a framing crate (tokio-util's codecs) would
//! bring an async runtime the PEs do not use.

use std::fmt;

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"CHRS";
/// The wire version this build speaks.
pub const WIRE_VERSION: u16 = 1;
/// Size of the header in bytes.
pub const HEADER_LEN: usize = 16;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameKind(pub u8);

impl FrameKind {
    /// Connection set-up (authentication, version, ranks).
    pub const HANDSHAKE: FrameKind = FrameKind(1);
    /// A runtime message (an encoded envelope).
    pub const MESSAGE: FrameKind = FrameKind(2);
    /// Job control (exit, abort, heartbeats).
    pub const CONTROL: FrameKind = FrameKind(3);
}

/// The fixed part of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the payload is.
    pub kind: FrameKind,
    /// Kind-specific bits.
    pub flags: u8,
    /// Sender's rank in the job.
    pub src: u32,
    /// Payload length in bytes.
    pub len: u32,
}

/// A whole frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Its header.
    pub header: FrameHeader,
    /// Its payload (`header.len` bytes).
    pub payload: Vec<u8>,
}

/// Why bytes are not a valid frame. Each names what was found, for the log line that
/// reports the peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream does not start a frame where one must start.
    #[error("bad magic {found:02x?}: not a charmrs peer, or a corrupted stream")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The peer speaks another wire version.
    #[error("wire version {found} from the peer, this build speaks {expected}")]
    Version {
        /// The peer's version.
        found: u16,
        /// Ours.
        expected: u16,
    },
    /// The announced payload is larger than this receiver accepts.
    #[error("frame of {len} bytes announced, the limit is {max}")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The receiver's limit.
        max: u32,
    },
    /// The stream ended inside a frame.
    #[error("truncated frame: the stream ended after {have} of {need} bytes")]
    Truncated {
        /// Bytes of the frame received.
        have: usize,
        /// Bytes the frame needed (header only, while the header is incomplete).
        need: usize,
    },
}

/// Appends one frame to `out`.
///
/// # Errors
/// [`FrameError::TooLarge`] if the payload does not fit the 32-bit length field.
pub fn encode(
    kind: FrameKind,
    flags: u8,
    src: u32,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let len = u32::try_from(payload.len())
        .map_err(|_| FrameError::TooLarge { len: payload.len() as u64, max: u32::MAX })?;
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&WIRE_VERSION.to_le_bytes());
    out.push(kind.0);
    out.push(flags);
    out.extend_from_slice(&src.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// A buffer for one frame whose payload is written after it: [`HEADER_LEN`] bytes of
/// room for the header, which [`seal`] fills in once the payload is complete (so a large
/// payload is serialized straight into the frame, never copied behind a header).
pub fn open_frame() -> Vec<u8> {
    let mut v = Vec::with_capacity(256);
    v.resize(HEADER_LEN, 0);
    v
}

/// Writes the header of a frame made by [`open_frame`]: its payload is the rest of `buf`.
///
/// # Errors
/// [`FrameError::TooLarge`] if the payload does not fit the 32-bit length field.
///
/// # Panics
/// If `buf` is shorter than a header (it was not made by [`open_frame`]).
pub fn seal(buf: &mut [u8], kind: FrameKind, flags: u8, src: u32) -> Result<(), FrameError> {
    seal_with_tail(buf, kind, flags, src, 0)
}

/// Writes the header of a frame made by [`open_frame`] whose payload is the rest of
/// `buf` followed by `tail` more bytes, sent after it.
///
/// # Errors
/// [`FrameError::TooLarge`] if the payload does not fit the 32-bit length field.
///
/// # Panics
/// If `buf` is shorter than a header (it was not made by [`open_frame`]).
pub fn seal_with_tail(
    buf: &mut [u8],
    kind: FrameKind,
    flags: u8,
    src: u32,
    tail: usize,
) -> Result<(), FrameError> {
    let payload = (buf.len() - HEADER_LEN).saturating_add(tail);
    let len =
        u32::try_from(payload).map_err(|_| FrameError::TooLarge { len: payload as u64, max: u32::MAX })?;
    buf[0..4].copy_from_slice(&MAGIC);
    buf[4..6].copy_from_slice(&WIRE_VERSION.to_le_bytes());
    buf[6] = kind.0;
    buf[7] = flags;
    buf[8..12].copy_from_slice(&src.to_le_bytes());
    buf[12..16].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Parses and checks a header.
///
/// # Errors
/// Bad magic, another version, or a length above `max_payload`.
pub fn parse_header(bytes: &[u8; HEADER_LEN], max_payload: u32) -> Result<FrameHeader, FrameError> {
    let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != MAGIC {
        return Err(FrameError::BadMagic { found: magic });
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != WIRE_VERSION {
        return Err(FrameError::Version { found: version, expected: WIRE_VERSION });
    }
    let len = word(12);
    if len > max_payload {
        return Err(FrameError::TooLarge { len: len as u64, max: max_payload });
    }
    Ok(FrameHeader { kind: FrameKind(bytes[6]), flags: bytes[7], src: word(8), len })
}

/// Incremental decoder for a byte stream: [`Decoder::feed`] what the socket gave,
/// take whole frames with [`Decoder::next_frame`], and call [`Decoder::finish`] at the
/// end of the stream. After an error the stream is unusable (the caller closes it).
pub struct Decoder {
    max_payload: u32,
    buf: Vec<u8>,
    /// Start of the unparsed bytes in `buf`.
    at: usize,
    /// Header of the frame whose payload is still coming in.
    pending: Option<FrameHeader>,
    failed: Option<FrameError>,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("max_payload", &self.max_payload)
            .field("buffered", &(self.buf.len() - self.at))
            .field("pending", &self.pending)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Decoder {
    /// A decoder that refuses payloads larger than `max_payload` bytes.
    pub fn new(max_payload: u32) -> Decoder {
        Decoder { max_payload, buf: Vec::new(), at: 0, pending: None, failed: None }
    }

    /// Adds bytes received from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.at > 0 && self.at >= self.buf.len() / 2 {
            self.buf.drain(..self.at);
            self.at = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// The first invalid header; every later call returns the same error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let header = match self.pending {
            Some(h) => h,
            None => {
                let Some(raw) = self.buf.get(self.at..self.at + HEADER_LEN) else { return Ok(None) };
                let raw: &[u8; HEADER_LEN] = raw.try_into().expect("slice of HEADER_LEN bytes");
                match parse_header(raw, self.max_payload) {
                    Ok(h) => {
                        self.at += HEADER_LEN;
                        self.pending = Some(h);
                        h
                    }
                    Err(e) => {
                        self.failed = Some(e.clone());
                        return Err(e);
                    }
                }
            }
        };
        let len = header.len as usize;
        let Some(payload) = self.buf.get(self.at..self.at + len) else { return Ok(None) };
        let payload = payload.to_vec();
        self.at += len;
        self.pending = None;
        Ok(Some(Frame { header, payload }))
    }

    /// Checks the end of the stream: an error if it stopped inside a frame.
    ///
    /// # Errors
    /// [`FrameError::Truncated`] with how much of the frame arrived, or the decoding
    /// error the stream already had.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let left = self.buf.len() - self.at;
        match self.pending {
            Some(h) => {
                Err(FrameError::Truncated { have: HEADER_LEN + left, need: HEADER_LEN + h.len as usize })
            }
            None if left > 0 => Err(FrameError::Truncated { have: left, need: HEADER_LEN }),
            None => Ok(()),
        }
    }

    /// Bytes held that do not form a whole frame yet.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_sealed_frame_is_the_encoded_frame() {
        let mut buf = open_frame();
        buf.extend_from_slice(b"payload");
        seal(&mut buf, FrameKind::MESSAGE, 3, 7).expect("fits");
        let mut want = Vec::new();
        encode(FrameKind::MESSAGE, 3, 7, b"payload", &mut want).expect("fits");
        assert_eq!(buf, want);
    }

    fn frame(kind: u8, src: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(FrameKind(kind), 0, src, payload, &mut out).expect("encodes");
        out
    }

    #[test]
    fn smoke() {
        let mut d = Decoder::new(1 << 20);
        d.feed(&frame(2, 7, b"hello"));
        let f = d.next_frame().expect("valid").expect("whole");
        assert_eq!(f.header, FrameHeader { kind: FrameKind::MESSAGE, flags: 0, src: 7, len: 5 });
        assert_eq!(f.payload, b"hello");
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn garbage_is_refused_at_the_header() {
        let mut d = Decoder::new(1024);
        d.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(d.next_frame(), Err(FrameError::BadMagic { found: *b"GET " }));
        assert!(d.next_frame().is_err(), "the error sticks");
    }

    #[test]
    fn another_version_is_refused() {
        let mut bytes = frame(1, 0, b"");
        bytes[4] = 9;
        let mut d = Decoder::new(1024);
        d.feed(&bytes);
        assert_eq!(d.next_frame(), Err(FrameError::Version { found: 9, expected: WIRE_VERSION }));
    }

    #[test]
    fn huge_length_is_refused_before_allocating() {
        let mut bytes = frame(2, 0, b"");
        bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut d = Decoder::new(64 << 20);
        d.feed(&bytes);
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge { len: u32::MAX as u64, max: 64 << 20 }));
        assert!(d.buf.capacity() < 1024, "nothing was reserved for the announced payload");
    }

    #[test]
    fn truncated_frames_are_reported_at_the_end() {
        let bytes = frame(2, 1, &[5; 100]);
        let mut d = Decoder::new(1024);
        d.feed(&bytes[..60]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated { have: 60, need: 116 }));
        let mut d = Decoder::new(1024);
        d.feed(&bytes[..10]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated { have: 10, need: HEADER_LEN }));
    }

    proptest! {
        /// Frames split at arbitrary points come out whole, in order, unchanged.
        #[test]
        fn round_trip_in_any_chunking(
            frames in proptest::collection::vec((any::<u8>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20),
            cuts in proptest::collection::vec(1usize..64, 1..50),
        ) {
            let mut stream = Vec::new();
            for (kind, src, payload) in &frames {
                encode(FrameKind(*kind), 3, *src, payload, &mut stream).unwrap();
            }
            let mut d = Decoder::new(1 << 16);
            let mut got = Vec::new();
            let mut at = 0;
            let mut i = 0;
            while at < stream.len() {
                let n = cuts[i % cuts.len()].min(stream.len() - at);
                d.feed(&stream[at..at + n]);
                at += n;
                i += 1;
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(d.finish(), Ok(()));
            prop_assert_eq!(got.len(), frames.len());
            for (f, (kind, src, payload)) in got.iter().zip(&frames) {
                prop_assert_eq!(f.header.kind, FrameKind(*kind));
                prop_assert_eq!(f.header.flags, 3);
                prop_assert_eq!(f.header.src, *src);
                prop_assert_eq!(&f.payload, payload);
            }
        }

        /// Any strict prefix of a valid stream that ends inside a frame is an error at
        /// the end, never a panic and never a frame that was not sent.
        #[test]
        fn truncation_is_an_error(payload in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..216) {
            let bytes = frame(2, 9, &payload);
            let cut = cut.min(bytes.len());
            let mut d = Decoder::new(1 << 16);
            d.feed(&bytes[..cut]);
            let f = d.next_frame().unwrap();
            if cut == bytes.len() {
                prop_assert_eq!(f.map(|f| f.payload), Some(payload));
                prop_assert_eq!(d.finish(), Ok(()));
            } else {
                prop_assert!(f.is_none());
                let truncated = matches!(d.finish(), Err(FrameError::Truncated { .. }));
                prop_assert!(cut == 0 || truncated);
            }
        }

        /// Random bytes never panic the decoder and never make it hold more than it was fed.
        #[test]
        fn garbage_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20)) {
            let mut d = Decoder::new(1024);
            let mut fed = 0;
            for c in &chunks {
                d.feed(c);
                fed += c.len();
                while let Ok(Some(_)) = d.next_frame() {}
                prop_assert!(d.buffered() <= fed);
            }
            let _ = d.finish();
        }
    }
}

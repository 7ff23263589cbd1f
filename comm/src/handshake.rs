//! The handshake every connection of a job starts with: both sides prove they hold the
//! job's secret without sending it, and agree on the wire version and the job.
//!
//! ```text
//! acceptor                                  connector (rank r)
//!   Hello { job, nonce_a }        ------>
//!                                 <------   Auth { rank r, nonce_c, mac_c }
//!   checks mac_c
//!   Ack { mac_a }                 ------>   checks mac_a
//!
//! mac_c = HMAC-SHA256(secret, "charmrs connector" | job | nonce_a | nonce_c | r)
//! mac_a = HMAC-SHA256(secret, "charmrs acceptor"  | job | nonce_c | nonce_a | r)
//! ```
//!
//! Each message is one frame of kind [`FrameKind::HANDSHAKE`] (the frame header
//! carries the wire version, checked first). Fresh random nonces on both sides make
//! a recorded handshake useless on another connection, the job id in both MACs makes
//! frames of another job useless here (FAULT-MATRIX rows 11 and 12), and the MACs are
//! compared in constant time. Anything else — garbage, a truncated frame, a wrong
//! secret, another job, another version, silence past the deadline — is a
//! [`HandshakeError`] naming what was wrong; the caller drops the connection and the
//! job goes on.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::frame::{encode, Decoder, FrameError, FrameKind};

type HmacSha256 = hmac::Hmac<Sha256>;

/// Largest handshake frame accepted (they are tens of bytes).
const MAX_HANDSHAKE: u32 = 256;
/// `flags` of the three handshake frames.
const HELLO: u8 = 1;
/// See [`HELLO`].
const AUTH: u8 = 2;
/// See [`HELLO`].
const ACK: u8 = 3;

/// The job's secret: 32 random bytes made by the launcher, handed to every process
/// (never sent on a connection).
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh random secret.
    ///
    /// # Errors
    /// When the operating system gives no randomness.
    pub fn random() -> Result<Secret, HandshakeError> {
        let mut b = [0; 32];
        getrandom::fill(&mut b).map_err(|e| HandshakeError::Random(e.to_string()))?;
        Ok(Secret(b))
    }

    /// The secret as 64 hex digits (how the launcher passes it in the environment).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// Anything but 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Secret, HandshakeError> {
        let bad = || HandshakeError::BadSecret;
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut b = [0; 32];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Secret(b))
    }

    fn mac(&self, label: &[u8], job: u64, first: &[u8; 32], second: &[u8; 32], rank: u32) -> HmacSha256 {
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(label);
        m.update(&job.to_le_bytes());
        m.update(first);
        m.update(second);
        m.update(&rank.to_le_bytes());
        m
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The bytes were not valid frames (garbage, another wire version, truncated).
    #[error("handshake refused: {0}")]
    Frame(#[from] FrameError),
    /// A frame of another kind or step, or of the wrong size.
    #[error("handshake refused: unexpected {what}")]
    Unexpected {
        /// What came.
        what: String,
    },
    /// The peer does not hold the job's secret.
    #[error("handshake refused: authentication failed (the peer does not hold this job's secret)")]
    BadMac,
    /// The peer belongs to another job.
    #[error("handshake refused: the peer is in job {found:#x}, this is job {expected:#x}")]
    OtherJob {
        /// The peer's job.
        found: u64,
        /// Ours.
        expected: u64,
    },
    /// The peer did not finish in time.
    #[error("handshake refused: no complete answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed or closed.
    #[error("handshake refused: {0}")]
    Io(#[from] std::io::Error),
    /// A secret that is not 64 hex digits.
    #[error("the job secret must be 64 hex digits")]
    BadSecret,
    /// No randomness for nonces.
    #[error("no randomness available: {0}")]
    Random(String),
}

/// What the acceptor learns about its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The connector's rank in the job.
    pub rank: u32,
}

/// A stream that can be given a read deadline (TCP sockets, Unix sockets).
pub trait Deadline: Read + Write {
    /// Sets the read timeout (`None`: block).
    fn set_read_deadline(&mut self, timeout: Option<Duration>) -> std::io::Result<()>;
}

impl Deadline for std::net::TcpStream {
    fn set_read_deadline(&mut self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(timeout)
    }
}

fn nonce() -> Result<[u8; 32], HandshakeError> {
    let mut n = [0; 32];
    getrandom::fill(&mut n).map_err(|e| HandshakeError::Random(e.to_string()))?;
    Ok(n)
}

fn send(s: &mut impl Write, flags: u8, src: u32, payload: &[u8]) -> Result<(), HandshakeError> {
    let mut out = Vec::with_capacity(16 + payload.len());
    encode(FrameKind::HANDSHAKE, flags, src, payload, &mut out)?;
    s.write_all(&out)?;
    s.flush()?;
    Ok(())
}

/// Reads one handshake frame of step `flags` and `len` bytes before `deadline`.
fn recv(
    s: &mut impl Deadline,
    dec: &mut Decoder,
    flags: u8,
    len: usize,
    deadline: Instant,
    budget: Duration,
) -> Result<Vec<u8>, HandshakeError> {
    let mut buf = [0u8; 256];
    loop {
        if let Some(f) = dec.next_frame()? {
            if f.header.kind != FrameKind::HANDSHAKE || f.header.flags != flags || f.payload.len() != len {
                return Err(HandshakeError::Unexpected {
                    what: format!(
                        "frame kind {} step {} of {} bytes",
                        f.header.kind.0,
                        f.header.flags,
                        f.payload.len()
                    ),
                });
            }
            return Ok(f.payload);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandshakeError::Timeout(budget));
        }
        s.set_read_deadline(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => {
                dec.finish()?;
                return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(n) => dec.feed(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(HandshakeError::Timeout(budget));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // A reset after part of a frame is a truncated frame: say so.
                dec.finish()?;
                return Err(e.into());
            }
        }
    }
}

/// The acceptor's side: run on each accepted connection before anything else.
///
/// # Errors
/// See [`HandshakeError`]; the caller logs it and drops the connection.
pub fn accept(
    s: &mut impl Deadline,
    secret: &Secret,
    job: u64,
    timeout: Duration,
) -> Result<Peer, HandshakeError> {
    let deadline = Instant::now() + timeout;
    let mut dec = Decoder::new(MAX_HANDSHAKE);
    let na = nonce()?;
    let mut hello = Vec::with_capacity(40);
    hello.extend_from_slice(&job.to_le_bytes());
    hello.extend_from_slice(&na);
    send(s, HELLO, u32::MAX, &hello)?;
    let auth = recv(s, &mut dec, AUTH, 4 + 32 + 32, deadline, timeout)?;
    let rank = u32::from_le_bytes([auth[0], auth[1], auth[2], auth[3]]);
    let nc: [u8; 32] = auth[4..36].try_into().expect("32 bytes");
    secret
        .mac(b"charmrs connector", job, &na, &nc, rank)
        .verify_slice(&auth[36..68])
        .map_err(|_| HandshakeError::BadMac)?;
    let ack = secret.mac(b"charmrs acceptor", job, &nc, &na, rank).finalize().into_bytes();
    send(s, ACK, u32::MAX, &ack)?;
    s.set_read_deadline(None)?;
    Ok(Peer { rank })
}

/// The connector's side: run right after connecting, as rank `rank`.
///
/// # Errors
/// See [`HandshakeError`].
pub fn connect(
    s: &mut impl Deadline,
    secret: &Secret,
    job: u64,
    rank: u32,
    timeout: Duration,
) -> Result<(), HandshakeError> {
    let deadline = Instant::now() + timeout;
    let mut dec = Decoder::new(MAX_HANDSHAKE);
    let hello = recv(s, &mut dec, HELLO, 8 + 32, deadline, timeout)?;
    let their_job = u64::from_le_bytes(hello[..8].try_into().expect("8 bytes"));
    if their_job != job {
        return Err(HandshakeError::OtherJob { found: their_job, expected: job });
    }
    let na: [u8; 32] = hello[8..40].try_into().expect("32 bytes");
    let nc = nonce()?;
    let mac = secret.mac(b"charmrs connector", job, &na, &nc, rank).finalize().into_bytes();
    let mut auth = Vec::with_capacity(68);
    auth.extend_from_slice(&rank.to_le_bytes());
    auth.extend_from_slice(&nc);
    auth.extend_from_slice(&mac);
    send(s, AUTH, rank, &auth)?;
    let ack = recv(s, &mut dec, ACK, 32, deadline, timeout)?;
    secret
        .mac(b"charmrs acceptor", job, &nc, &na, rank)
        .verify_slice(&ack)
        .map_err(|_| HandshakeError::BadMac)?;
    s.set_read_deadline(None)?;
    Ok(())
}

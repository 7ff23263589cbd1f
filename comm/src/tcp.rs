//! The TCP transport: one connection per pair of processes, opened at start-up by the
//! bootstrap ([`crate::bootstrap`]) and authenticated there, `TCP_NODELAY` on.
//!
//! Sending: the calling PE thread writes the frame itself, under the connection's
//! lock (one `write_all` of header and payload, which sit in one buffer). A full socket
//! buffer blocks the sender: that is the back-pressure, and nothing is queued without
//! bound in this layer.
//!
//! Receiving: one thread per connection reads a frame header, checks it
//! ([`crate::frame::parse_header`]), allocates exactly the payload and reads it in, and
//! hands it to the [`Receiver`]. A blocked reader costs no CPU. Receivers never wait on
//! senders, so two processes writing to each other with full buffers cannot deadlock:
//! each one's reader keeps draining.
//!
//! This version uses blocking sockets and a reader thread per peer: simple, and right
//! for jobs of tens of processes; a poll-based progress engine (one thread, or the idle
//! PEs, for all connections) replaces it when jobs grow.
//!
//! Order: a connection is a byte stream and each frame is written whole under the
//! lock, so frames from one thread to one peer arrive in order.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::frame::{parse_header, seal, FrameError, FrameKind, HEADER_LEN};
use crate::transport::{Closed, Receiver, SendError, Transport};

/// `flags` of the control frame that says goodbye.
const BYE: u8 = 1;

/// The largest message accepted from a peer (a corrupted length must not make the
/// reader allocate gigabytes).
pub const MAX_MESSAGE: u32 = u32::MAX;

struct Conn {
    /// The write half (a clone of the socket), under the send lock.
    out: Mutex<Option<TcpStream>>,
}

/// The TCP transport of one process.
pub struct Tcp {
    rank: u32,
    conns: Vec<Option<Conn>>,
}

impl std::fmt::Debug for Tcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tcp").field("rank", &self.rank).field("peers", &self.conns.len()).finish()
    }
}

impl Tcp {
    /// Starts the transport of process `rank` of `size` over connections already made
    /// and authenticated (`(peer rank, stream)`), with a reader thread per connection
    /// delivering to `receiver`.
    ///
    /// # Errors
    /// A socket that cannot be cloned or configured.
    pub fn start(
        rank: u32,
        size: u32,
        streams: Vec<(u32, TcpStream)>,
        receiver: Arc<dyn Receiver>,
    ) -> std::io::Result<Tcp> {
        let mut conns: Vec<Option<Conn>> = (0..size).map(|_| None).collect();
        for (peer, s) in streams {
            s.set_nodelay(true)?;
            let reader = s.try_clone()?;
            let recv = Arc::clone(&receiver);
            thread::Builder::new()
                .name(format!("tcp-from-{peer}"))
                .spawn(move || read_loop(peer, reader, &*recv))?;
            conns[peer as usize] = Some(Conn { out: Mutex::new(Some(s)) });
        }
        Ok(Tcp { rank, conns })
    }
}

/// Reads frames from `peer` until the connection ends.
fn read_loop(peer: u32, mut s: TcpStream, recv: &dyn Receiver) {
    let how = loop {
        let mut head = [0u8; HEADER_LEN];
        match read_full(&mut s, &mut head) {
            Ok(0) => break Closed::Lost("the connection closed without a goodbye".into()),
            Ok(n) if n < HEADER_LEN => {
                break Closed::Lost(FrameError::Truncated { have: n, need: HEADER_LEN }.to_string())
            }
            Ok(_) => {}
            Err(e) => break Closed::Lost(format!("the connection failed: {e}")),
        }
        let h = match parse_header(&head, MAX_MESSAGE) {
            Ok(h) => h,
            Err(e) => break Closed::Lost(format!("bad frame: {e}")),
        };
        if h.kind == FrameKind::CONTROL && h.flags == BYE {
            break Closed::Goodbye;
        }
        if h.kind != FrameKind::MESSAGE {
            break Closed::Lost(format!("unexpected frame of kind {}", h.kind.0));
        }
        let mut payload = vec![0u8; h.len as usize];
        match read_full(&mut s, &mut payload) {
            Ok(n) if n == payload.len() => recv.deliver(peer, &payload),
            Ok(n) => {
                break Closed::Lost(
                    FrameError::Truncated { have: HEADER_LEN + n, need: HEADER_LEN + h.len as usize }
                        .to_string(),
                )
            }
            Err(e) => break Closed::Lost(format!("the connection failed: {e}")),
        }
    };
    recv.closed(peer, how);
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn read_full(s: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl Transport for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn send(&self, to: u32, mut msg: Vec<u8>) -> Result<(), SendError> {
        let conn = self.conns.get(to as usize).and_then(Option::as_ref).ok_or(SendError::NoPeer(to))?;
        seal(&mut msg, FrameKind::MESSAGE, 0, self.rank)?;
        let mut out = conn.out.lock().unwrap_or_else(|e| e.into_inner());
        let s = out.as_mut().ok_or(SendError::NoPeer(to))?;
        s.write_all(&msg).map_err(|err| SendError::Io { to, err })
    }

    fn goodbye(&self) {
        for c in self.conns.iter().flatten() {
            let mut out = c.out.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(mut s) = out.take() {
                let mut bye = crate::frame::open_frame();
                if seal(&mut bye, FrameKind::CONTROL, BYE, self.rank).is_ok() {
                    let _ = s.write_all(&bye);
                }
                let _ = s.shutdown(Shutdown::Write);
            }
        }
    }
}

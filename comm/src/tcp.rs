//! The TCP transport: one connection per pair of processes, opened at start-up by the
//! bootstrap ([`crate::bootstrap`]) and authenticated there, `TCP_NODELAY` on,
//! non-blocking.
//!
//! Sending: the calling PE thread writes the frame itself, under the connection's
//! lock (header and payload sit in one buffer). When the socket buffer is full it waits
//! for the socket to become writable (`poll`): that is the back-pressure, and nothing is
//! queued without bound in this layer.
//!
//! Receiving is a small state machine per connection (header, then exactly the payload,
//! checked by [`crate::frame::parse_header`] before anything is allocated) that whoever
//! holds the connection's read lock advances with non-blocking reads. Idle PEs do it
//! ([`Transport::poll`]: one `poll(2)` over all connections, then a try-lock on the
//! ready ones), so a message that arrives while a PE spins is taken by that PE, with no
//! thread hand-off. One progress thread per process covers the time when the PEs sleep
//! ([`Transport::pes_sleeping`]): it waits in `poll(2)` on all connections (re-arming at
//! least every 20 ms in case a hint was missed) and delivers what comes, which wakes the
//! PEs. While the PEs poll, the thread waits on a condition variable and costs nothing.
//!
//! Order: a connection is a byte stream, each frame is written whole under the send
//! lock and read whole under the read lock, so frames from one thread to one peer
//! arrive in order. Receivers never wait on senders, so two processes writing to each
//! other with full buffers cannot deadlock: each one's PEs or progress thread keep
//! draining.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use crate::frame::{parse_header, seal, seal_with_tail, FrameError, FrameHeader, FrameKind, HEADER_LEN};
use crate::transport::{Closed, Quiet, Receiver, SendError, Transport};

/// `flags` of the control frame that says goodbye.
const BYE: u8 = 1;

/// The largest message accepted from a peer.
pub const MAX_MESSAGE: u32 = u32::MAX;

/// The receiving state of one connection.
struct Reader {
    s: TcpStream,
    head: [u8; HEADER_LEN],
    hgot: usize,
    /// The header of the frame whose payload is coming in.
    frame: Option<FrameHeader>,
    payload: Vec<u8>,
    pgot: usize,
}

/// What one turn of a reader did.
enum Pump {
    /// Nothing more to read now; whether a message was delivered.
    Drained(bool),
    /// The connection ended.
    End(Closed),
}

impl Reader {
    fn new(s: TcpStream) -> Reader {
        Reader { s, head: [0; HEADER_LEN], hgot: 0, frame: None, payload: Vec::new(), pgot: 0 }
    }

    /// Reads what the socket holds, delivering every whole frame.
    fn pump(&mut self, peer: u32, recv: &dyn Receiver) -> Pump {
        let mut any = false;
        loop {
            let buf = match self.frame {
                None => &mut self.head[self.hgot..],
                Some(_) => &mut self.payload[self.pgot..],
            };
            let n = if buf.is_empty() {
                0
            } else {
                match self.s.read(buf) {
                    Ok(0) => return Pump::End(self.eof()),
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Pump::Drained(any),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Pump::End(Closed::Lost(format!("the connection failed: {e}"))),
                }
            };
            match self.frame {
                None => {
                    self.hgot += n;
                    if self.hgot < HEADER_LEN {
                        continue;
                    }
                    self.hgot = 0;
                    let h = match parse_header(&self.head, MAX_MESSAGE) {
                        Ok(h) => h,
                        Err(e) => return Pump::End(Closed::Lost(format!("bad frame: {e}"))),
                    };
                    if h.kind == FrameKind::CONTROL && h.flags == BYE {
                        return Pump::End(Closed::Goodbye);
                    }
                    if h.kind != FrameKind::MESSAGE {
                        return Pump::End(Closed::Lost(format!("unexpected frame of kind {}", h.kind.0)));
                    }
                    self.payload = vec![0u8; h.len as usize];
                    self.pgot = 0;
                    self.frame = Some(h);
                }
                Some(_) => self.pgot += n,
            }
            if self.frame.is_some() && self.pgot == self.payload.len() {
                self.frame = None;
                let msg = std::mem::take(&mut self.payload);
                recv.deliver(peer, &msg);
                any = true;
            }
        }
    }

    /// The stream ended: in the middle of a frame, or between frames without a goodbye.
    fn eof(&self) -> Closed {
        match self.frame {
            Some(h) => Closed::Lost(
                FrameError::Truncated { have: HEADER_LEN + self.pgot, need: HEADER_LEN + h.len as usize }
                    .to_string(),
            ),
            None if self.hgot > 0 => {
                Closed::Lost(FrameError::Truncated { have: self.hgot, need: HEADER_LEN }.to_string())
            }
            None => Closed::Lost("the connection closed without a goodbye".into()),
        }
    }
}

struct Conn {
    peer: u32,
    /// The write half (a clone of the socket), under the send lock; `None` after goodbye.
    out: Mutex<Option<TcpStream>>,
    /// The read state, under the read lock.
    inp: Mutex<Reader>,
    /// A handle for `poll(2)` (another clone of the socket).
    ready: TcpStream,
    /// The connection ended (reported once).
    done: AtomicBool,
}

struct Inner {
    conns: Vec<Conn>,
    receiver: Arc<dyn Receiver>,
    quiet: Quiet,
}

/// The TCP transport of one process.
pub struct Tcp {
    rank: u32,
    /// Index of each peer's connection in `inner.conns`.
    index: Vec<Option<usize>>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tcp").field("rank", &self.rank).field("peers", &self.inner.conns.len()).finish()
    }
}

impl Tcp {
    /// Starts the transport of process `rank` of `size` over connections already made
    /// and authenticated (`(peer rank, stream)`), with a progress thread delivering to
    /// `receiver` while no PE polls.
    ///
    /// # Errors
    /// A socket that cannot be cloned or configured.
    pub fn start(
        rank: u32,
        size: u32,
        streams: Vec<(u32, TcpStream)>,
        receiver: Arc<dyn Receiver>,
    ) -> std::io::Result<Tcp> {
        let mut index: Vec<Option<usize>> = (0..size).map(|_| None).collect();
        let mut conns = Vec::with_capacity(streams.len());
        for (peer, s) in streams {
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            index[peer as usize] = Some(conns.len());
            conns.push(Conn {
                peer,
                inp: Mutex::new(Reader::new(s.try_clone()?)),
                ready: s.try_clone()?,
                out: Mutex::new(Some(s)),
                done: AtomicBool::new(false),
            });
        }
        let inner = Arc::new(Inner { conns, receiver, quiet: Quiet::new() });
        if !inner.conns.is_empty() {
            let i2 = Arc::clone(&inner);
            thread::Builder::new().name("tcp-progress".into()).spawn(move || progress(&i2))?;
        }
        Ok(Tcp { rank, index, inner })
    }
}

impl Inner {
    /// Advances the readers of the connections that `poll(2)` finds readable within
    /// `timeout`; `wait` takes each read lock (the thread), or only tries it (PEs).
    /// Returns whether anything was delivered, and whether any connection is open.
    fn turn(&self, timeout: Option<Duration>, wait: bool) -> (bool, bool) {
        if self.conns.is_empty() {
            return (false, false);
        }
        let open: Vec<&Conn> = self.conns.iter().filter(|c| !c.done.load(Ordering::Acquire)).collect();
        if open.is_empty() {
            return (false, false);
        }
        let mut fds: Vec<PollFd<'_>> = open.iter().map(|c| PollFd::new(&c.ready, PollFlags::IN)).collect();
        let ts = timeout.map(|t| Timespec { tv_sec: t.as_secs() as _, tv_nsec: t.subsec_nanos() as _ });
        match poll(&mut fds, Some(&ts.unwrap_or(Timespec { tv_sec: 0, tv_nsec: 0 }))) {
            Ok(0) | Err(_) => return (false, true),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut any = false;
        for (c, _) in open.iter().zip(ready).filter(|(_, r)| *r) {
            let guard = if wait {
                Some(c.inp.lock().unwrap_or_else(|e| e.into_inner()))
            } else {
                c.inp.try_lock().ok()
            };
            let Some(mut r) = guard else { continue };
            if c.done.load(Ordering::Acquire) {
                continue;
            }
            match r.pump(c.peer, &*self.receiver) {
                Pump::Drained(got) => any |= got,
                Pump::End(how) => {
                    c.done.store(true, Ordering::Release);
                    drop(r);
                    self.receiver.closed(c.peer, how);
                }
            }
        }
        (any, true)
    }
}

/// The progress thread: receives while the PEs sleep, until every connection ended.
fn progress(inner: &Inner) {
    loop {
        inner.quiet.wait();
        let (_, open) = inner.turn(Some(Quiet::REARM), true);
        if !open {
            return;
        }
    }
}

/// Writes all of `buf` to a non-blocking socket, waiting for it to become writable
/// when its buffer is full.
fn write_all(s: &mut TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let mut fds = [PollFd::new(&*s, PollFlags::OUT)];
                poll(&mut fds, None).map_err(std::io::Error::from)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Transport for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn send(&self, to: u32, msg: Vec<u8>) -> Result<(), SendError> {
        self.send_parts(to, msg, &[])
    }

    fn send_parts(&self, to: u32, mut msg: Vec<u8>, tail: &[&[u8]]) -> Result<(), SendError> {
        let i = self.index.get(to as usize).copied().flatten().ok_or(SendError::NoPeer(to))?;
        let tail_len = tail.iter().map(|t| t.len()).sum();
        seal_with_tail(&mut msg, FrameKind::MESSAGE, 0, self.rank, tail_len)?;
        let mut out = self.inner.conns[i].out.lock().unwrap_or_else(|e| e.into_inner());
        let s = out.as_mut().ok_or(SendError::NoPeer(to))?;
        // Under the lock: the frame's parts go out back to back.
        write_all(s, &msg).map_err(|err| SendError::Io { to, err })?;
        for t in tail {
            write_all(s, t).map_err(|err| SendError::Io { to, err })?;
        }
        Ok(())
    }

    fn goodbye(&self) {
        for c in &self.inner.conns {
            let mut out = c.out.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(mut s) = out.take() {
                let mut bye = crate::frame::open_frame();
                if seal(&mut bye, FrameKind::CONTROL, BYE, self.rank).is_ok() {
                    let _ = write_all(&mut s, &bye);
                }
                let _ = s.shutdown(Shutdown::Write);
            }
        }
    }

    fn poll(&self) -> bool {
        self.inner.turn(None, false).0
    }

    fn pes_active(&self) {
        self.inner.quiet.active();
    }

    fn pes_sleeping(&self) {
        self.inner.quiet.sleeping();
    }
}

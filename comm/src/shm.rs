//! The shared-memory transport between processes of one host, with TCP for the others
//! ([`Hybrid`]).
//!
//! Each pair of processes on one host gets two single-producer single-consumer rings
//! (one per direction, `charmrs_shm::ring`), each in its own `/dev/shm` segment. The
//! lower rank creates both and offers them over the pair's TCP connection (already
//! authenticated by the bootstrap); the higher rank maps them and unlinks the files at
//! once (unlink-after-open), then acknowledges: from then on no file of the pair exists,
//! and a crash or `kill -9` cannot leak one. Pairs are set up in increasing (low, high)
//! rank order in every process, so the setup cannot deadlock. If the higher rank cannot
//! map the segments, the pair stays on TCP (with a warning).
//!
//! Sending: under the pair's lock, the message is pushed into the ring as one record;
//! if the consumer announced that it sleeps, a doorbell frame goes over the pair's TCP
//! connection. A full ring makes the sender wait (back-pressure, nothing buffered
//! beside the ring). A message larger than a quarter of the ring goes through a
//! rendezvous instead (`charmrs_shm::bulk`): the sender copies it once into a buffer
//! segment it keeps for that receiver (reused from message to message, so its pages are
//! faulted in once; replaced by a larger one when a message does not fit). It writes the
//! message's header first and pushes `(length, sequence, header length, buffer name)` as
//! a record, so the message keeps its place in the order, then writes the rest (the
//! large byte runs) chunk by chunk. The receiver maps the buffer the first time (and
//! unlinks it), decodes the header in place and copies the byte runs out as they
//! arrive ([`Receiver::deliver_streamed`]): the two copies overlap, so a large message
//! costs about one copy's time. Then it releases the buffer for the next one.
//!
//! Receiving: whoever holds a ring's consumer end drains it. While PEs are idle and
//! spinning they poll the rings ([`Transport::poll`], try-lock, never blocking): a
//! message costs no thread hand-off and no wake-up. One thread per peer covers the
//! time when the PEs sleep: when a PE is about to park ([`Transport::pes_sleeping`]),
//! the threads drain their rings, announce that they sleep and block on the pair's TCP
//! connection, which carries only doorbells and the goodbye; a doorbell wakes a thread
//! to drain again (and the message it delivers wakes the PE). Once the PEs poll again
//! ([`Transport::pes_active`]) the threads wait on a condition variable (re-arming at
//! least every 20 ms in case a hint was missed). So a doorbell (a syscall) is paid only
//! when the receiving process had gone to sleep, and no thread spins beside the PEs
//! (which matters where processes share few cores). The end
//! of that connection without a goodbye is a lost peer, as with TCP. The ring is
//! drained once more after a goodbye or a loss, so nothing sent before it is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use charmrs_shm::bulk::{BulkIn, BulkOut};
use charmrs_shm::ring::{self, Consumer, Producer, PushError};
use charmrs_shm::segment::{Segment, ShmName};

use crate::bootstrap::Mesh;
use crate::frame::{encode, parse_header, seal, FrameKind, HEADER_LEN};
use crate::transport::{Closed, Quiet, Receiver, SendError, Transport};

/// Default ring capacity (bytes of records) per direction of a pair.
pub const DEFAULT_RING: usize = 1 << 20;
/// `flags` of the control frames of this transport.
const OFFER: u8 = 20;
/// See [`OFFER`].
const ACCEPT: u8 = 21;
/// See [`OFFER`].
const REFUSE: u8 = 22;
/// See [`OFFER`]: the consumer sleeps and there is something to read.
const DOORBELL: u8 = 23;
/// See [`OFFER`]: this process is ending with the job.
const BYE: u8 = 24;
/// Record kinds.
const MSG: u32 = 1;
/// A rendezvous: `len: u64`, `seq: u64`, `head: u64` (how many bytes are written
/// already; the rest streams in), then the bulk buffer's name.
const BIG: u32 = 2;
/// Smallest bulk buffer.
const MIN_BULK: usize = 1 << 20;

type Ring = Arc<Segment>;

/// One direction of a pair: the sending end, with the TCP connection for doorbells.
struct Out {
    producer: Producer<Ring>,
    tcp: TcpStream,
    /// Closed by `goodbye`.
    open: bool,
    /// The rendezvous buffer for this receiver, once a large message needed one.
    bulk: Option<BulkOut>,
    /// How many bulk buffers were made (their names differ).
    bulk_gen: u32,
    /// Set when the receiver is gone (its connection ended).
    lost: Arc<std::sync::atomic::AtomicBool>,
}

/// A pair of processes on one host, as set up by [`setup`].
pub struct ShmLink {
    peer: u32,
    producer: Producer<Ring>,
    consumer: Consumer<Ring>,
    tcp: TcpStream,
}

impl std::fmt::Debug for ShmLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmLink").field("peer", &self.peer).finish()
    }
}

fn ring_name(job: u64, from: u32, to: u32) -> std::io::Result<ShmName> {
    ShmName::new(&format!("{job:016x}"), &format!("r{from}to{to}"))
}

fn write_control(s: &mut TcpStream, flags: u8, src: u32, payload: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::new();
    encode(FrameKind::CONTROL, flags, src, payload, &mut out).map_err(std::io::Error::other)?;
    s.write_all(&out)
}

/// Whether `s` has something to read (or its end) within `d`, without reading it.
fn readable_within(s: &TcpStream, d: Duration) -> std::io::Result<bool> {
    s.set_read_timeout(Some(d))?;
    let r = s.peek(&mut [0u8; 1]);
    s.set_read_timeout(None)?;
    match r {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn read_control(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head)?;
    let h = parse_header(&head, 1 << 16).map_err(std::io::Error::other)?;
    let mut payload = vec![0u8; h.len as usize];
    s.read_exact(&mut payload)?;
    if h.kind != FrameKind::CONTROL {
        return Err(std::io::Error::other(format!("unexpected frame of kind {}", h.kind.0)));
    }
    Ok((h.flags, payload))
}

fn make_ring(name: &ShmName, cap: usize) -> std::io::Result<Ring> {
    let seg = Arc::new(Segment::create(name, ring::region_len(cap))?);
    if let Err(e) = ring::initialize(&*seg) {
        let _ = Segment::unlink(name);
        return Err(std::io::Error::other(e.to_string()));
    }
    Ok(seg)
}

/// Sets up the rings with every other process of this host, over the mesh's TCP
/// connections (see the module doc). Returns the links, and leaves in `mesh.streams`
/// the connections of the pairs that stay on TCP.
///
/// # Errors
/// A connection failed during the setup.
pub fn setup(mesh: &mut Mesh, job: u64, cap: usize) -> Result<Vec<ShmLink>, String> {
    let me = mesh.rank;
    let my_host = mesh.procs[me as usize].host;
    let mut peers: Vec<(u32, TcpStream)> = Vec::new();
    let mut others = Vec::new();
    for (peer, s) in mesh.streams.drain(..) {
        if mesh.procs[peer as usize].host == my_host {
            peers.push((peer, s));
        } else {
            others.push((peer, s));
        }
    }
    mesh.streams = others;
    peers.sort_by_key(|p| p.0);
    let mut links = Vec::new();
    for (peer, mut tcp) in peers {
        let fail = |e: std::io::Error| format!("shared memory with process {peer}: {e}");
        let link = if me < peer {
            let (out, inn) =
                (ring_name(job, me, peer).map_err(fail)?, ring_name(job, peer, me).map_err(fail)?);
            let made = make_ring(&out, cap).and_then(|a| match make_ring(&inn, cap) {
                Ok(b) => Ok((a, b)),
                Err(e) => {
                    let _ = Segment::unlink(&out);
                    Err(e)
                }
            });
            match made {
                Ok((a, b)) => {
                    write_control(&mut tcp, OFFER, me, &(cap as u64).to_le_bytes()).map_err(fail)?;
                    let (flags, why) = read_control(&mut tcp).map_err(fail)?;
                    // The peer unlinked the files (or refused: then they go here).
                    let _ = Segment::unlink(&out);
                    let _ = Segment::unlink(&inn);
                    if flags == ACCEPT {
                        Some((a, b))
                    } else {
                        eprintln!(
                            "charmrs: warning: process {me}: process {peer} cannot map shared memory ({}); using TCP between them",
                            String::from_utf8_lossy(&why)
                        );
                        None
                    }
                }
                Err(e) => {
                    eprintln!("charmrs: warning: process {me}: no shared memory ({e}); using TCP to process {peer}");
                    write_control(&mut tcp, REFUSE, me, e.to_string().as_bytes()).map_err(fail)?;
                    None
                }
            }
            .map(|(a, b)| (Producer::attach(a), Consumer::attach(b)))
        } else {
            let (flags, _) = read_control(&mut tcp).map_err(fail)?;
            if flags == OFFER {
                let (inn, out) =
                    (ring_name(job, peer, me).map_err(fail)?, ring_name(job, me, peer).map_err(fail)?);
                match Segment::open_and_unlink(&inn).and_then(|a| Ok((a, Segment::open_and_unlink(&out)?))) {
                    Ok((a, b)) => {
                        write_control(&mut tcp, ACCEPT, me, &[]).map_err(fail)?;
                        Some((Producer::attach(Arc::new(b)), Consumer::attach(Arc::new(a))))
                    }
                    Err(e) => {
                        write_control(&mut tcp, REFUSE, me, e.to_string().as_bytes()).map_err(fail)?;
                        None
                    }
                }
            } else {
                None
            }
        };
        match link {
            Some((Ok(producer), Ok(consumer))) => links.push(ShmLink { peer, producer, consumer, tcp }),
            Some((p, c)) => {
                return Err(format!(
                    "shared memory with process {peer}: cannot attach the rings ({:?} / {:?})",
                    p.err(),
                    c.err()
                ))
            }
            None => mesh.streams.push((peer, tcp)),
        }
    }
    Ok(links)
}

/// What the receiving end of a pair holds.
struct Recv {
    ring: Consumer<Ring>,
    /// The sender's bulk buffer, mapped here.
    bulk: Option<BulkIn>,
}

/// The receiving end of a pair, shared by the polling PEs and the pair's thread.
struct In {
    peer: u32,
    consumer: Mutex<Recv>,
    /// Shared with the sending end of the pair: the peer is gone.
    lost: Arc<std::sync::atomic::AtomicBool>,
    /// Set by the thread when the peer said goodbye or was lost: nothing to poll.
    done: std::sync::atomic::AtomicBool,
}

/// Shared memory to the processes of this host, TCP to the others.
pub struct Hybrid {
    rank: u32,
    job: u64,
    shm: Vec<Option<Mutex<Out>>>,
    ins: Vec<Arc<In>>,
    receiver: Arc<dyn Receiver>,
    /// The PEs sleep: the pairs' threads receive.
    quiet: Arc<Quiet>,
    tcp: crate::tcp::Tcp,
}

impl std::fmt::Debug for Hybrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hybrid").field("rank", &self.rank).finish()
    }
}

impl Hybrid {
    /// Starts the transport: a receiver thread per shared-memory link, TCP (with its
    /// reader threads) for `tcp_streams`.
    ///
    /// # Errors
    /// A socket that cannot be cloned or configured.
    pub fn start(
        rank: u32,
        size: u32,
        job: u64,
        links: Vec<ShmLink>,
        tcp_streams: Vec<(u32, TcpStream)>,
        receiver: Arc<dyn Receiver>,
    ) -> std::io::Result<Hybrid> {
        let mut shm: Vec<Option<Mutex<Out>>> = (0..size).map(|_| None).collect();
        let mut ins = Vec::new();
        let quiet = Arc::new(Quiet::new());
        for l in links {
            l.tcp.set_nodelay(true)?;
            let reader = l.tcp.try_clone()?;
            let recv = Arc::clone(&receiver);
            let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let inn = Arc::new(In {
                peer: l.peer,
                consumer: Mutex::new(Recv { ring: l.consumer, bulk: None }),
                lost: Arc::clone(&lost),
                done: std::sync::atomic::AtomicBool::new(false),
            });
            let (i2, q) = (Arc::clone(&inn), Arc::clone(&quiet));
            thread::Builder::new()
                .name(format!("shm-from-{}", l.peer))
                .spawn(move || consume(&i2, job, reader, &*recv, &q))?;
            ins.push(inn);
            shm[l.peer as usize] = Some(Mutex::new(Out {
                producer: l.producer,
                tcp: l.tcp,
                open: true,
                bulk: None,
                bulk_gen: 0,
                lost,
            }));
        }
        let tcp = crate::tcp::Tcp::start(rank, size, tcp_streams, Arc::clone(&receiver))?;
        Ok(Hybrid { rank, job, shm, ins, receiver, quiet, tcp })
    }
}

/// Delivers every record in the ring; returns whether there was any, or what was wrong.
fn drain(peer: u32, job: u64, r: &mut Recv, recv: &dyn Receiver) -> Result<bool, String> {
    drain_until(peer, job, r, recv, || false)
}

/// [`drain`], stopping early once `stop()` says so (checked before each record).
fn drain_until(
    peer: u32,
    job: u64,
    r: &mut Recv,
    recv: &dyn Receiver,
    stop: impl Fn() -> bool,
) -> Result<bool, String> {
    let mut bad: Option<String> = None;
    let mut any = false;
    let Recv { ring, bulk } = r;
    while bad.is_none()
        && !stop()
        && ring.try_pop(|kind, bytes| match kind {
            MSG => recv.deliver(peer, bytes),
            BIG => {
                if let Err(e) = take_big(peer, job, bytes, bulk, recv) {
                    bad = Some(e);
                }
            }
            k => bad = Some(format!("a record of unknown kind {k}")),
        })
    {
        any = true;
    }
    match bad {
        Some(b) => Err(b),
        None => Ok(any),
    }
}

/// The pair's thread: receives from the peer's ring while the PEs sleep, until the
/// peer says goodbye or is lost.
fn consume(inn: &In, job: u64, mut tcp: TcpStream, recv: &dyn Receiver, quiet: &Quiet) {
    let peer = inn.peer;
    let lock = || inn.consumer.lock().unwrap_or_else(|e| e.into_inner());
    let how = 'outer: loop {
        // The PEs poll: wait until one goes to sleep (or the re-arm period passes).
        quiet.wait();
        let mut c = lock();
        // Until the PEs poll again: a sender that keeps the ring full would otherwise
        // keep this thread receiving for busy PEs (a hand-off per message).
        let seen = quiet.polls();
        match drain_until(peer, job, &mut c, recv, || quiet.polled_since(seen)) {
            Err(b) => break Closed::Lost(b),
            Ok(true) => continue,
            Ok(false) => {}
        }
        if !c.ring.prepare_sleep() {
            continue;
        }
        drop(c);
        // Asleep: the next push rings the doorbell (PEs may drain meanwhile: harmless).
        // Woken by it, or after `Quiet::REARM` anyway: a wake-up that goes missing costs
        // that long, never a hang (a sender waiting for room or for its rendezvous
        // buffer may be waiting for this very drain).
        let r = match readable_within(&tcp, Quiet::REARM) {
            Ok(true) => read_control(&mut tcp).map(Some),
            Ok(false) => Ok(None),
            Err(e) => Err(e),
        };
        let mut c = lock();
        c.ring.end_sleep();
        let left = drain(peer, job, &mut c, recv);
        match (r, left) {
            (_, Err(b)) => break 'outer Closed::Lost(b),
            (Ok(None), _) | (Ok(Some((DOORBELL, _))), _) => {}
            (Ok(Some((BYE, _))), _) => break 'outer Closed::Goodbye,
            (Ok(Some((f, _))), _) => break 'outer Closed::Lost(format!("unexpected control frame {f}")),
            (Err(e), _) => {
                let why = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    "the connection closed without a goodbye".to_string()
                } else {
                    format!("the connection failed: {e}")
                };
                break 'outer Closed::Lost(why);
            }
        }
    };
    inn.done.store(true, Ordering::Release);
    inn.lost.store(true, Ordering::Release);
    recv.closed(peer, how);
}

/// Hands a rendezvous message to the receiver: its first part (the header) read in
/// place in the sender's bulk buffer (mapped on first use), the rest copied out as the
/// sender writes it; then releases the buffer.
fn take_big(
    peer: u32,
    job: u64,
    rec: &[u8],
    bulk: &mut Option<BulkIn>,
    recv: &dyn Receiver,
) -> Result<(), String> {
    let bad = "a truncated rendezvous record";
    let (len, rest) = rec.split_first_chunk::<8>().ok_or(bad)?;
    let (seq, rest) = rest.split_first_chunk::<8>().ok_or(bad)?;
    let (head, name) = rest.split_first_chunk::<8>().ok_or(bad)?;
    let (len, seq, head) = (u64::from_le_bytes(*len), u64::from_le_bytes(*seq), u64::from_le_bytes(*head));
    let (Ok(len), Ok(head)) = (usize::try_from(len), usize::try_from(head)) else {
        return Err("a rendezvous larger than memory".into());
    };
    if head > len {
        return Err(format!("a rendezvous of {len} bytes whose header is {head}"));
    }
    let name = std::str::from_utf8(name).map_err(|_| "a rendezvous name that is not UTF-8")?;
    let name = ShmName::new(&format!("{job:016x}"), name).map_err(|e| e.to_string())?;
    if bulk.as_ref().is_none_or(|b| b.name().name() != name.name()) {
        // A new buffer (the first, or a larger one): the old mapping goes.
        *bulk = Some(BulkIn::open(&name).map_err(|e| format!("rendezvous buffer {name}: {e}"))?);
    }
    let b = bulk.as_ref().expect("mapped above");
    let gone = || format!("process {peer} died while it sent a message of {len} bytes");
    let ready = b.wait_written(head).ok_or_else(gone)?;
    let first = b.bytes(head.min(ready)).map_err(|e| format!("rendezvous buffer {name}: {e}"))?;
    if head == len {
        recv.deliver(peer, first);
    } else {
        recv.deliver_streamed(peer, first, &BulkTail { bulk: b, from: head, len: len - head });
    }
    // The receiver may not have read all of it (a message it refused): the sender
    // finishes before the buffer can be reused.
    b.wait_written(len).ok_or_else(gone)?;
    b.release(seq);
    Ok(())
}

/// The part of a rendezvous message the sender is still writing.
struct BulkTail<'a> {
    bulk: &'a BulkIn,
    /// Where it starts in the payload.
    from: usize,
    len: usize,
}

impl crate::transport::Tail for BulkTail<'_> {
    fn len(&self) -> usize {
        self.len
    }

    fn copy_to(&self, at: usize, dst: &mut [std::mem::MaybeUninit<u8>]) -> Result<(), String> {
        if at.checked_add(dst.len()).is_none_or(|e| e > self.len) {
            return Err(format!("bytes {at}..+{} of a {}-byte tail", dst.len(), self.len));
        }
        self.bulk.copy_out(self.from + at, dst).map_err(|e| e.to_string())
    }
}

impl Transport for Hybrid {
    fn name(&self) -> &'static str {
        "shm+tcp"
    }

    fn send(&self, to: u32, msg: Vec<u8>) -> Result<(), SendError> {
        self.send_parts(to, msg, &[])
    }

    fn send_parts(&self, to: u32, msg: Vec<u8>, tail: &[&[u8]]) -> Result<(), SendError> {
        let Some(link) = self.shm.get(to as usize).and_then(Option::as_ref) else {
            return self.tcp.send_parts(to, msg, tail);
        };
        let mut out = link.lock().unwrap_or_else(|e| e.into_inner());
        if !out.open {
            return Err(SendError::NoPeer(to));
        }
        if out.lost.load(Ordering::Acquire) {
            return Err(SendError::Io {
                to,
                err: std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the receiver is gone"),
            });
        }
        // The record: the message after its frame header, then the tail.
        let head = &msg[HEADER_LEN..];
        let many: Vec<&[u8]>;
        let parts: &[&[u8]] = if tail.is_empty() {
            std::slice::from_ref(&head)
        } else {
            many = std::iter::once(head).chain(tail.iter().copied()).collect();
            &many
        };
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut big_rec = Vec::new();
        let big_ref: &[u8];
        let mut streamed: &[&[u8]] = &[];
        let (kind, parts): (u32, &[&[u8]]) = if len > out.producer.capacity() / 4 {
            let out = &mut *out;
            if out.bulk.as_ref().is_none_or(|b| b.capacity() < len) {
                out.bulk_gen += 1;
                let name = ShmName::new(
                    &format!("{:016x}", self.job),
                    &format!("k{}to{to}g{}", self.rank, out.bulk_gen),
                )
                .map_err(|err| SendError::Io { to, err })?;
                let cap = len.next_power_of_two().max(MIN_BULK);
                out.bulk = Some(BulkOut::create(&name, cap).map_err(|err| SendError::Io { to, err })?);
            }
            let bulk = out.bulk.as_mut().expect("made above");
            let lost = Arc::clone(&out.lost);
            // The first part (the message's header, small) now; the others, the
            // large byte runs, stream in once the receiver knows of the message.
            let (first, rest) = parts.split_first().expect("one part at least");
            let seq = bulk
                .begin(len, first, || lost.load(Ordering::Acquire))
                .map_err(|err| SendError::Io { to, err })?;
            big_rec.extend_from_slice(&(len as u64).to_le_bytes());
            big_rec.extend_from_slice(&seq.to_le_bytes());
            big_rec.extend_from_slice(&(first.len() as u64).to_le_bytes());
            big_rec.extend_from_slice(bulk.name().name().as_bytes());
            big_ref = &big_rec;
            streamed = rest;
            (BIG, std::slice::from_ref(&big_ref))
        } else {
            (MSG, parts)
        };
        // Read the clock only once the ring is full (a clock read is ~3% of a send).
        let mut full_since: Option<Instant> = None;
        loop {
            match out.producer.try_push(kind, parts) {
                Ok(true) => break,
                Ok(false) => {
                    // Full: the consumer drains whatever its process does; wake it if it
                    // sleeps, and wait, unless it is gone (ended with the job, or died):
                    // then nothing will ever drain the ring.
                    if out.lost.load(Ordering::Acquire) {
                        return Err(SendError::Io {
                            to,
                            err: std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the receiver is gone"),
                        });
                    }
                    ring_doorbell(&mut out, self.rank, to)?;
                    if full_since.is_none() {
                        // This PE waits and does not poll: the transport's threads
                        // receive for this process meanwhile (the receiver may be
                        // waiting for room in a ring of ours).
                        self.quiet.sleeping();
                    }
                    if full_since.get_or_insert_with(Instant::now).elapsed() > Duration::from_millis(1) {
                        thread::sleep(Duration::from_micros(50));
                    } else {
                        thread::yield_now();
                    }
                }
                Err(PushError::TooLarge { .. }) | Err(_) => {
                    // Cannot happen: records are at most a quarter of the ring.
                    return Err(SendError::Io {
                        to,
                        err: std::io::Error::other("a record does not fit the ring"),
                    });
                }
            }
        }
        ring_doorbell(&mut out, self.rank, to)?;
        if !streamed.is_empty() {
            out.bulk.as_mut().expect("the rendezvous buffer written above").stream(streamed);
        }
        Ok(())
    }

    fn pes_active(&self) {
        self.quiet.active();
        self.tcp.pes_active();
    }

    fn pes_sleeping(&self) {
        self.quiet.sleeping();
        self.tcp.pes_sleeping();
    }

    fn poll(&self) -> bool {
        let mut any = self.tcp.poll();
        for inn in &self.ins {
            if inn.done.load(Ordering::Acquire) {
                continue;
            }
            let Ok(mut c) = inn.consumer.try_lock() else { continue };
            if c.ring.is_empty() {
                continue;
            }
            match drain(inn.peer, self.job, &mut c, &*self.receiver) {
                Ok(got) => any |= got,
                Err(b) => {
                    // The pair's thread reports it when it next looks; say it now too.
                    drop(c);
                    inn.done.store(true, Ordering::Release);
                    self.receiver.closed(inn.peer, Closed::Lost(b));
                }
            }
        }
        any
    }

    fn goodbye(&self) {
        for link in self.shm.iter().flatten() {
            let mut out = link.lock().unwrap_or_else(|e| e.into_inner());
            if std::mem::replace(&mut out.open, false) {
                let mut bye = crate::frame::open_frame();
                if seal(&mut bye, FrameKind::CONTROL, BYE, self.rank).is_ok() {
                    let _ = out.tcp.write_all(&bye);
                }
                let _ = out.tcp.shutdown(Shutdown::Write);
            }
        }
        self.tcp.goodbye();
    }
}

/// Rings `to`'s doorbell if its consumer sleeps.
fn ring_doorbell(out: &mut Out, rank: u32, to: u32) -> Result<(), SendError> {
    if out.producer.needs_doorbell() {
        let mut bell = crate::frame::open_frame();
        seal(&mut bell, FrameKind::CONTROL, DOORBELL, rank)?;
        out.tcp.write_all(&bell).map_err(|err| SendError::Io { to, err })?;
    }
    Ok(())
}

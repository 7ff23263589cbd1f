//! The transport suite, over real loopback sockets: processes of a job (threads here)
//! join through the real bootstrap (rendezvous, handshakes) and exchange messages:
//! point-to-point in order, all-to-all, 64 MiB messages, messages sent in parts, goodbye vs a lost peer, and
//! bytes that are not frames. Rogue clients at the rendezvous are refused while the job
//! forms. Run on every compiled-in transport (TCP today): each test takes a maker.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver as Rx, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use charmrs_comm::bootstrap::{join, rendezvous, JobEnv, Mesh};
use charmrs_comm::frame::{encode, open_frame, FrameKind};
use charmrs_comm::handshake::{self, Secret};
use charmrs_comm::tcp::Tcp;
use charmrs_comm::transport::{Closed, Receiver, Transport};

const T: Duration = Duration::from_secs(30);

/// What a receiver saw.
#[derive(Debug)]
enum Event {
    Msg(u32, Vec<u8>),
    Closed(u32, Closed),
}

struct ToChannel(Sender<Event>);

impl Receiver for ToChannel {
    fn deliver(&self, from: u32, msg: &[u8]) {
        let _ = self.0.send(Event::Msg(from, msg.to_vec()));
    }
    fn closed(&self, from: u32, how: Closed) {
        let _ = self.0.send(Event::Closed(from, how));
    }
}

fn env(rank: u32, size: u32, job: u64, secret: &Secret, rendezvous: &str) -> JobEnv {
    JobEnv {
        rank,
        size,
        pes: 1,
        first_pe: rank,
        total_pes: size,
        job,
        secret: secret.clone(),
        rendezvous: rendezvous.to_string(),
        host_key: "here".into(),
        timeout: T,
        signature: 42,
        launcher: true,
    }
}

/// Forms a job of `n` processes (threads) through the real bootstrap; `before` runs
/// against the rendezvous address before the processes join (rogue clients).
fn form(n: u32, before: impl FnOnce(std::net::SocketAddr, u64)) -> (Vec<Mesh>, u64) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let secret = Secret::random().expect("secret");
    // A job id of its own per job: tests run in parallel, and shared-memory names
    // carry the job id.
    let job = (u64::from(std::process::id()) << 20) | NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let s2 = secret.clone();
    let server = thread::spawn(move || rendezvous(&[listener], &s2, job, n, Instant::now() + T));
    before(addr, job);
    let joins: Vec<_> = (0..n)
        .map(|r| {
            let e = env(r, n, job, &secret, &addr.to_string());
            thread::spawn(move || join(&e).expect("joins"))
        })
        .collect();
    let mut meshes: Vec<Mesh> = joins.into_iter().map(|j| j.join().expect("join thread")).collect();
    let (conns, table) = server.join().expect("server").expect("rendezvous");
    assert_eq!(conns.len(), n as usize);
    assert_eq!(table.len(), n as usize);
    // Keep the launcher's side open as long as the meshes live (tests end before).
    std::mem::forget(conns);
    meshes.sort_by_key(|m| m.rank);
    for m in &meshes {
        assert_eq!(m.procs, table);
        assert_eq!(m.streams.len(), n as usize - 1);
        assert_eq!(m.num_hosts(), 1);
    }
    (meshes, job)
}

type Node = (Box<dyn Transport>, Rx<Event>);

/// The TCP transport over a job of `n`.
fn tcp(n: u32) -> Vec<Node> {
    form(n, |_, _| {})
        .0
        .into_iter()
        .map(|m| {
            let (tx, rx) = channel();
            let t = Tcp::start(m.rank, n, m.streams, Arc::new(ToChannel(tx))).expect("starts");
            (Box::new(t) as Box<dyn Transport>, rx)
        })
        .collect()
}

/// Shared memory between all `n` (one host), with a small ring (4 KiB) so that
/// records wrap, rings fill up and messages above 1 KiB take the rendezvous.
#[cfg(target_os = "linux")]
fn shm(n: u32) -> Vec<Node> {
    use charmrs_comm::shm::{setup, Hybrid};
    let (meshes, job) = form(n, |_, _| {});
    let setups: Vec<_> = meshes
        .into_iter()
        .map(|mut m| {
            thread::spawn(move || {
                let links = setup(&mut m, job, 4096).expect("shm setup");
                assert_eq!(links.len(), n as usize - 1, "every pair on shared memory");
                (m, links)
            })
        })
        .collect();
    setups
        .into_iter()
        .map(|t| {
            let (mut m, links) = t.join().expect("setup thread");
            let (tx, rx) = channel();
            let streams = std::mem::take(&mut m.streams);
            let t = Hybrid::start(m.rank, n, job, links, streams, Arc::new(ToChannel(tx))).expect("starts");
            (Box::new(t) as Box<dyn Transport>, rx)
        })
        .collect()
}

/// Every compiled-in transport.
#[cfg(target_os = "linux")]
const MAKERS: [(&str, Maker); 2] = [("tcp", tcp), ("shm", shm)];
#[cfg(not(target_os = "linux"))]
const MAKERS: [(&str, Maker); 1] = [("tcp", tcp)];

/// Makes the transports of a job of `n` processes.
type Maker = fn(u32) -> Vec<Node>;

fn msg(body: &[u8]) -> Vec<u8> {
    let mut m = open_frame();
    m.extend_from_slice(body);
    m
}

fn next(rx: &Rx<Event>) -> Event {
    rx.recv_timeout(T).expect("an event within the timeout")
}

#[test]
fn point_to_point_messages_arrive_in_order() {
    for (name, make) in MAKERS {
        let nodes = make(2);
        for i in 0u32..20_000 {
            nodes[0].0.send(1, msg(&i.to_le_bytes())).expect("sends");
        }
        for i in 0u32..20_000 {
            match next(&nodes[1].1) {
                Event::Msg(0, m) => assert_eq!(m, i.to_le_bytes(), "{name}: message {i} out of order"),
                e => panic!("{name}: unexpected {e:?}"),
            }
        }
    }
}

#[test]
fn all_to_all_from_every_thread() {
    for (name, make) in MAKERS {
        let n = 4;
        let (ts, rxs): (Vec<_>, Vec<_>) = make(n).into_iter().unzip();
        let ts: Vec<Arc<Box<dyn Transport>>> = ts.into_iter().map(Arc::new).collect();
        let per = 500u32;
        let senders: Vec<_> = (0..n)
            .map(|me| {
                let node = Arc::clone(&ts[me as usize]);
                thread::spawn(move || {
                    for i in 0..per {
                        for to in (0..n).filter(|&t| t != me) {
                            let mut body = me.to_le_bytes().to_vec();
                            body.extend_from_slice(&i.to_le_bytes());
                            node.send(to, msg(&body)).expect("sends");
                        }
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().expect("sender");
        }
        for me in 0..n {
            let mut seen = vec![0u32; n as usize];
            for _ in 0..per * (n - 1) {
                match next(&rxs[me as usize]) {
                    Event::Msg(from, m) => {
                        let src = u32::from_le_bytes(m[..4].try_into().unwrap());
                        let i = u32::from_le_bytes(m[4..8].try_into().unwrap());
                        assert_eq!(src, from, "{name}: sender");
                        assert_eq!(i, seen[from as usize], "{name}: order from {from}");
                        seen[from as usize] += 1;
                    }
                    e => panic!("{name}: unexpected {e:?}"),
                }
            }
        }
    }
}

#[test]
fn sixty_four_mib_messages_arrive_whole() {
    for (name, make) in MAKERS {
        let (ts, rxs): (Vec<_>, Vec<_>) = make(2).into_iter().unzip();
        let big: Vec<u8> = (0..64u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let t0 = Arc::new(ts);
        let t1 = Arc::clone(&t0);
        let b2 = big.clone();
        // Both ways at once: each side's reader drains while its writer blocks.
        let t = thread::spawn(move || t1[1].send(0, msg(&b2)).expect("sends"));
        t0[0].send(1, msg(&big)).expect("sends");
        t.join().expect("sender");
        for rx in &rxs {
            match next(rx) {
                Event::Msg(_, m) => assert!(m == big, "{name}: 64 MiB message corrupted"),
                e => panic!("{name}: unexpected {e:?}"),
            }
        }
    }
}

#[test]
fn a_message_sent_in_parts_arrives_as_one_in_order() {
    // `send_parts`: the head and tails of every size (empty, small: through the ring,
    // large: through the rendezvous buffer / several socket writes) arrive contiguous
    // and in order with plain sends.
    for (name, make) in MAKERS {
        let nodes = make(2);
        let sizes = [0usize, 1, 100, 1024, 5000, 1 << 20];
        let mut expected = Vec::new();
        for (i, &a) in sizes.iter().enumerate() {
            for &b in &sizes[i..] {
                let head = [i as u8; 3];
                let t1: Vec<u8> = (0..a).map(|k| (k % 251) as u8).collect();
                let t2: Vec<u8> = (0..b).map(|k| (k % 241) as u8).collect();
                nodes[0].0.send_parts(1, msg(&head), &[&t1, &t2]).expect("sends in parts");
                nodes[0].0.send(1, msg(&[0xEE])).expect("sends");
                expected.push([&head[..], &t1, &t2].concat());
                expected.push(vec![0xEE]);
            }
        }
        for (k, want) in expected.iter().enumerate() {
            match next(&nodes[1].1) {
                Event::Msg(0, m) => {
                    assert!(m == *want, "{name}: message {k} differs ({} vs {} bytes)", m.len(), want.len())
                }
                e => panic!("{name}: unexpected {e:?}"),
            }
        }
    }
}

#[test]
fn goodbye_is_told_apart_from_a_lost_peer() {
    for (name, make) in MAKERS {
        let mut nodes = make(3);
        nodes[0].0.goodbye();
        assert!(matches!(next(&nodes[1].1), Event::Closed(0, Closed::Goodbye)), "{name}");
        assert!(matches!(next(&nodes[2].1), Event::Closed(0, Closed::Goodbye)), "{name}");
        assert!(nodes[0].0.send(1, msg(b"late")).is_err(), "{name}: send after goodbye");
        // The others' goodbyes end every remaining connection in order too.
        nodes[1].0.goodbye();
        assert!(matches!(next(&nodes[2].1), Event::Closed(1, Closed::Goodbye)), "{name}");
        nodes.truncate(2);
    }
}

/// A transport of rank 0 whose peer 1 is a raw socket the test controls.
fn with_raw_peer() -> (Tcp, Rx<Event>, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let raw = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (s, _) = l.accept().expect("accept");
    let (tx, rx) = channel();
    let t = Tcp::start(0, 2, vec![(1, s)], Arc::new(ToChannel(tx))).expect("starts");
    (t, rx, raw)
}

#[test]
fn garbage_from_a_peer_is_a_lost_peer_with_the_reason() {
    let (_t, rx, mut raw) = with_raw_peer();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("writes");
    match next(&rx) {
        Event::Closed(1, Closed::Lost(why)) => assert!(why.contains("bad frame"), "{why}"),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn a_truncated_frame_is_a_lost_peer_with_the_reason() {
    let (_t, rx, mut raw) = with_raw_peer();
    let mut f = Vec::new();
    encode(FrameKind::MESSAGE, 0, 1, &[7u8; 100], &mut f).expect("encodes");
    raw.write_all(&f[..16 + 40]).expect("writes");
    drop(raw);
    match next(&rx) {
        Event::Closed(1, Closed::Lost(why)) => assert!(why.contains("truncated frame"), "{why}"),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn a_peer_that_vanishes_mid_stream_is_lost() {
    let (_t, rx, mut raw) = with_raw_peer();
    let mut f = Vec::new();
    encode(FrameKind::MESSAGE, 0, 1, b"whole", &mut f).expect("encodes");
    raw.write_all(&f).expect("writes");
    drop(raw);
    assert!(matches!(next(&rx), Event::Msg(1, m) if m == b"whole"));
    match next(&rx) {
        Event::Closed(1, Closed::Lost(why)) => assert!(why.contains("without a goodbye"), "{why}"),
        e => panic!("unexpected {e:?}"),
    }
}

#[test]
fn rogue_clients_at_the_rendezvous_are_refused_and_the_job_forms() {
    let (meshes, _) = form(3, |addr, job| {
        // A wrong secret.
        let mut s = TcpStream::connect(addr).expect("connect");
        let wrong = Secret::random().expect("secret");
        let r = handshake::connect(&mut s, &wrong, job, 0, Duration::from_secs(5));
        assert!(r.is_err(), "a wrong secret got in");
        // Garbage, and a truncated frame: the rendezvous must not stall on them.
        let mut g = TcpStream::connect(addr).expect("connect");
        g.write_all(b"\x00\x01garbage garbage garbage").expect("writes");
        drop(g);
        let mut t = TcpStream::connect(addr).expect("connect");
        t.write_all(b"CHRS\x01\x00").expect("writes");
        drop(t);
    });
    assert_eq!(meshes.len(), 3);
}

#[test]
fn the_rendezvous_listens_on_several_addresses_and_each_process_dials_its_own() {
    // As for hosts reached through different local addresses: one listener each.
    let secret = Secret::random().expect("secret");
    let ls =
        [TcpListener::bind("127.0.0.1:0").expect("bind"), TcpListener::bind("127.0.0.2:0").expect("bind")];
    let addrs: Vec<String> = ls.iter().map(|l| l.local_addr().expect("addr").to_string()).collect();
    let s2 = secret.clone();
    let server = thread::spawn(move || rendezvous(&ls, &s2, 6, 2, Instant::now() + T));
    let joins: Vec<_> = (0..2u32)
        .map(|r| {
            let e = env(r, 2, 6, &secret, &addrs[r as usize]);
            thread::spawn(move || join(&e).expect("joins"))
        })
        .collect();
    for j in joins {
        assert_eq!(j.join().expect("join thread").streams.len(), 1);
    }
    let (conns, table) = server.join().expect("server").expect("rendezvous");
    assert_eq!((conns.len(), table.len()), (2, 2));
}

#[test]
fn processes_running_different_programs_do_not_form_a_job() {
    let secret = Secret::random().expect("secret");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let s2 = secret.clone();
    let server = thread::spawn(move || rendezvous(&[listener], &s2, 5, 2, Instant::now() + T));
    let joins: Vec<_> = (0..2u32)
        .map(|r| {
            let mut e = env(r, 2, 5, &secret, &addr);
            e.signature = 100 + u64::from(r);
            e.timeout = Duration::from_secs(5);
            thread::spawn(move || join(&e).is_err())
        })
        .collect();
    let why = server.join().expect("server").expect_err("different programs");
    assert!(why.contains("process 1 runs a different program than process 0"), "{why}");
    for j in joins {
        assert!(j.join().expect("join thread"), "a process joined a job of another program");
    }
}

#[test]
fn a_missing_process_is_named_when_the_rendezvous_times_out() {
    let secret = Secret::random().expect("secret");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let s2 = secret.clone();
    let server =
        thread::spawn(move || rendezvous(&[listener], &s2, 9, 2, Instant::now() + Duration::from_secs(2)));
    let mut e = env(0, 2, 9, &secret, &addr.to_string());
    e.timeout = Duration::from_secs(2);
    let t0 = Instant::now();
    let r = join(&e);
    assert!(r.is_err());
    assert!(t0.elapsed() < Duration::from_secs(10));
    let why = server.join().expect("server").expect_err("one process never came");
    assert!(why.contains("processes 1 did not join"), "{why}");
}

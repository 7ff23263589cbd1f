//! The TCP transport against raw TCP loopback with `TCP_NODELAY`, in the same run.
//!
//! - `tcp_pingpong_one_way`: half a round trip of an 8-byte message between two
//!   processes' transports (here two threads of one process, each with its own
//!   bootstrapped `Tcp` and reader threads; the echo is sent from the receiver
//!   callback, as the runtime's reader thread hands a message on), against two threads
//!   echoing 8 bytes over a raw loopback socket pair.
//! - `tcp_bandwidth_8mib`: one 8 MiB message from one side to the other and a 1-byte
//!   acknowledgement, against the same over raw sockets (`write_all` / `read_exact`).
//! - `runtime_pingpong_one_way` (not criterion: a whole job): the `pingpong` example as
//!   two processes of one PE (`charmrs-run +p2 ++ppn 1`) talking TCP (`CHARMRS_SHM=0`),
//!   which prints its one-way latency, against the raw loopback figure of this run.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc::{sync_channel, Receiver as Rx, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use charmrs_comm::bootstrap::{join, rendezvous, JobEnv};
use charmrs_comm::frame::open_frame;
use charmrs_comm::handshake::Secret;
use charmrs_comm::tcp::Tcp;
use charmrs_comm::transport::{Closed, Receiver, Transport};
use common::{Goal, Samples, Summary};
use criterion::Criterion;

const MIB8: usize = 8 << 20;

/// Two connected loopback sockets with `TCP_NODELAY`.
fn socket_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (b, _) = l.accept().expect("accept");
    a.set_nodelay(true).expect("nodelay");
    b.set_nodelay(true).expect("nodelay");
    (a, b)
}

/// A job of two processes' transports (threads of this process).
fn tcp_pair(r0: Arc<dyn Receiver>, r1: Arc<dyn Receiver>) -> (Arc<Tcp>, Arc<Tcp>) {
    let secret = Secret::random().expect("secret");
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    let s2 = secret.clone();
    let server = thread::spawn(move || rendezvous(&[l], &s2, 7, 2, Instant::now() + Duration::from_secs(30)));
    let joins: Vec<_> = (0..2u32)
        .map(|rank| {
            let env = JobEnv {
                rank,
                size: 2,
                pes: 1,
                first_pe: rank,
                total_pes: 2,
                job: 7,
                secret: secret.clone(),
                rendezvous: addr.clone(),
                host_key: "here".into(),
                timeout: Duration::from_secs(30),
                signature: 0,
                launcher: true,
            };
            thread::spawn(move || join(&env).expect("joins"))
        })
        .collect();
    let mut meshes: Vec<_> = joins.into_iter().map(|j| j.join().expect("join")).collect();
    let (conns, _) = server.join().expect("server").expect("rendezvous");
    std::mem::forget(conns);
    meshes.sort_by_key(|m| m.rank);
    let m1 = meshes.pop().expect("rank 1");
    let m0 = meshes.pop().expect("rank 0");
    let t0 = Tcp::start(0, 2, m0.streams, r0).expect("tcp 0");
    let t1 = Tcp::start(1, 2, m1.streams, r1).expect("tcp 1");
    (Arc::new(t0), Arc::new(t1))
}

fn msg(body: &[u8]) -> Vec<u8> {
    let mut m = open_frame();
    m.extend_from_slice(body);
    m
}

/// Echoes every message back to its sender through the transport set later.
struct Echo(OnceLock<Arc<Tcp>>);

impl Receiver for Echo {
    fn deliver(&self, from: u32, m: &[u8]) {
        if let Some(t) = self.0.get() {
            let _ = t.send(from, msg(m));
        }
    }
    fn closed(&self, _: u32, _: Closed) {}
}

/// Counts down round trips, echoing until zero, then reports.
struct Countdown {
    left: Mutex<u64>,
    tcp: OnceLock<Arc<Tcp>>,
    done: SyncSender<()>,
}

impl Receiver for Countdown {
    fn deliver(&self, from: u32, m: &[u8]) {
        let mut left = self.left.lock().expect("lock");
        *left -= 1;
        if *left == 0 {
            let _ = self.done.send(());
        } else if let Some(t) = self.tcp.get() {
            let _ = t.send(from, msg(m));
        }
    }
    fn closed(&self, _: u32, _: Closed) {}
}

/// Signals each whole message.
struct Signal(SyncSender<usize>);

impl Receiver for Signal {
    fn deliver(&self, _: u32, m: &[u8]) {
        let _ = self.0.send(m.len());
    }
    fn closed(&self, _: u32, _: Closed) {}
}

fn pingpong(c: &mut Criterion, summary: &mut Summary) -> (Samples, Samples) {
    let mut g = c.benchmark_group("tcp_pingpong_one_way");
    // Raw: an echo thread, the timed loop on the bench thread.
    let raw = Samples::default();
    {
        let (mut a, mut b) = socket_pair();
        let echo = thread::spawn(move || {
            let mut buf = [0u8; 8];
            while b.read_exact(&mut buf).is_ok() {
                if b.write_all(&buf).is_err() {
                    break;
                }
            }
        });
        g.bench_function("raw_tcp_loopback", |bch| {
            bch.iter_custom(|iters| {
                let mut buf = [0u8; 8];
                let t = Instant::now();
                for i in 0..iters {
                    a.write_all(&i.to_le_bytes()).expect("write");
                    a.read_exact(&mut buf).expect("read");
                }
                raw.record(iters * 2, t.elapsed())
            })
        });
        drop(a);
        echo.join().expect("echo");
    }
    // The transport: the two reader threads echo from their receivers.
    let ours = Samples::default();
    {
        let (done_tx, done_rx) = sync_channel(1);
        let count = Arc::new(Countdown { left: Mutex::new(0), tcp: OnceLock::new(), done: done_tx });
        let echo = Arc::new(Echo(OnceLock::new()));
        let (t0, t1) =
            tcp_pair(Arc::clone(&count) as Arc<dyn Receiver>, Arc::clone(&echo) as Arc<dyn Receiver>);
        let _ = count.tcp.set(Arc::clone(&t0));
        let _ = echo.0.set(Arc::clone(&t1));
        g.bench_function("charmrs_tcp_transport", |bch| {
            bch.iter_custom(|iters| {
                *count.left.lock().expect("lock") = iters;
                let t = Instant::now();
                t0.send(1, msg(&0u64.to_le_bytes())).expect("send");
                done_rx.recv().expect("done");
                ours.record(iters * 2, t.elapsed())
            })
        });
        t0.goodbye();
        t1.goodbye();
    }
    g.finish();
    summary.ratio("tcp_pingpong_one_way", &ours, "raw TCP loopback", &raw, Goal::RatioAtMost(1.3));
    (ours, raw)
}

fn bandwidth(c: &mut Criterion, summary: &mut Summary) {
    let mut g = c.benchmark_group("tcp_bandwidth_8mib");
    g.sample_size(10);
    let payload = vec![0x5au8; MIB8];
    let raw = Samples::default();
    {
        let (mut a, mut b) = socket_pair();
        let sink = thread::spawn(move || {
            let mut buf = vec![0u8; MIB8];
            while b.read_exact(&mut buf).is_ok() {
                if b.write_all(&[1]).is_err() {
                    break;
                }
            }
        });
        g.bench_function("raw_tcp_loopback", |bch| {
            bch.iter_custom(|iters| {
                let mut ack = [0u8; 1];
                let t = Instant::now();
                for _ in 0..iters {
                    a.write_all(&payload).expect("write");
                    a.read_exact(&mut ack).expect("ack");
                }
                raw.record(iters, t.elapsed())
            })
        });
        drop(a);
        sink.join().expect("sink");
    }
    let ours = Samples::default();
    {
        let (tx, rx): (SyncSender<usize>, Rx<usize>) = sync_channel(4);
        let (t0, t1) = tcp_pair(Arc::new(Echo(OnceLock::new())), Arc::new(Signal(tx)));
        g.bench_function("charmrs_tcp_transport", |bch| {
            bch.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    // The runtime serializes into a fresh frame buffer: so does this.
                    let mut m = open_frame();
                    m.extend_from_slice(&payload);
                    t0.send(1, m).expect("send");
                    assert_eq!(rx.recv().expect("delivered"), MIB8);
                }
                ours.record(iters, t.elapsed())
            })
        });
        t0.goodbye();
        t1.goodbye();
    }
    g.finish();
    if let (Some(o), Some(r)) = (ours.median_ns(), raw.median_ns()) {
        let gbs = |ns: f64| MIB8 as f64 / ns;
        summary.line(format!(
            "RATE tcp_bandwidth_8mib: charmrs transport {:.2} GB/s, raw TCP loopback {:.2} GB/s, ratio {:.2}x (goal >= 0.8x: {})",
            gbs(o),
            gbs(r),
            r / o,
            if r / o >= 0.8 { "met" } else { "NOT met" }
        ));
    }
}

/// The pingpong example as a job of two processes; its one-way latency in ns.
fn runtime_pingpong() -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?.to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--release", "-p", "charmrs-examples", "--example", "pingpong", "-p", "charmrs-comm"])
        .status()
        .ok()?;
    if !built.success() {
        return None;
    }
    let mut runs = Vec::new();
    for _ in 0..5 {
        let out = Command::new(dir.join("charmrs-run"))
            .args(["+p2", "++ppn", "1", "++timeout", "120"])
            .arg(dir.join("examples").join("pingpong"))
            .arg("20000")
            .env("CHARMRS_SHM", "0")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let us: f64 = text.rsplit(": ").next()?.split(" us one-way").next()?.trim().parse().ok()?;
        runs.push(us * 1e3);
    }
    runs.sort_by(f64::total_cmp);
    Some(runs[runs.len() / 2])
}

fn main() {
    let mut c = common::criterion();
    let mut summary = Summary::default();
    let (_, raw) = pingpong(&mut c, &mut summary);
    bandwidth(&mut c, &mut summary);
    if let (Some(job), Some(r)) = (runtime_pingpong(), raw.median_ns()) {
        summary.line(format!(
            "RATIO runtime_pingpong_one_way (+p2 ++ppn 1, median of 5 jobs): charmrs {}, raw TCP loopback {}, ratio {:.1}x (goal <= 1.3x: {})",
            common::fmt_ns(job),
            common::fmt_ns(r),
            job / r,
            if job / r <= 1.3 { "met" } else { "NOT met" }
        ));
    }
    c.final_summary();
    summary.print();
}

//! The job across processes: which PEs live in which process and on which host
//! ([`Layout`]), and the runtime's end of the transport ([`Net`] to send, [`Inbound`]
//! to receive).
//!
//! A message to a PE of this process never comes here. A message to a PE of another
//! process is serialized by [`crate::msg::wire::to_wire`] into one frame for the
//! destination process, which decodes it on its transport thread and pushes it into the
//! destination PE's inbox, waking the PE if it sleeps: from there on it is an ordinary
//! message.

use std::io::Write;
use std::sync::Arc;

use charmrs_comm::bootstrap::{Mesh, ProcInfo};
use charmrs_comm::transport::{Closed, Receiver, Tail, Transport};

use crate::msg::wire::{self, Arrived};
use crate::msg::Envelope;
use crate::pe::{PeId, Shared};

/// Where every PE of the job lives.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    /// This process's rank.
    pub(crate) rank: u32,
    /// First PE of each process, and the number of PEs of the job at the end.
    starts: Vec<u32>,
    /// Host of each process.
    hosts: Vec<u32>,
    /// Number of hosts.
    num_hosts: u32,
}

impl Layout {
    /// A job of one process of `n` PEs on one host.
    pub(crate) fn single(n: u32) -> Layout {
        Layout { rank: 0, starts: vec![0, n], hosts: vec![0], num_hosts: 1 }
    }

    /// The layout a bootstrap agreed on.
    pub(crate) fn from_procs(rank: u32, procs: &[ProcInfo]) -> Result<Layout, String> {
        let mut starts = Vec::with_capacity(procs.len() + 1);
        let mut next = 0;
        for (r, p) in procs.iter().enumerate() {
            if p.first_pe != next || p.pes == 0 {
                return Err(format!(
                    "process {r} has PEs {}..{}, expected to start at {next}",
                    p.first_pe,
                    p.first_pe + p.pes
                ));
            }
            starts.push(p.first_pe);
            next = p.first_pe + p.pes;
        }
        starts.push(next);
        let hosts: Vec<u32> = procs.iter().map(|p| p.host).collect();
        let num_hosts = hosts.iter().map(|h| h + 1).max().unwrap_or(1);
        Ok(Layout { rank, starts, hosts, num_hosts })
    }

    /// Number of processes.
    pub(crate) fn num_procs(&self) -> u32 {
        self.hosts.len() as u32
    }

    /// PEs of the job.
    #[inline]
    pub(crate) fn total(&self) -> u32 {
        *self.starts.last().expect("at least one process")
    }

    /// First PE of process `r`.
    #[inline]
    pub(crate) fn first_pe_of(&self, r: u32) -> u32 {
        self.starts[r as usize]
    }

    /// Number of PEs of process `r`.
    #[inline]
    pub(crate) fn pes_of(&self, r: u32) -> u32 {
        self.starts[r as usize + 1] - self.starts[r as usize]
    }

    /// First PE of this process.
    #[inline]
    pub(crate) fn first_pe(&self) -> u32 {
        self.starts[self.rank as usize]
    }

    /// PEs of this process.
    #[inline]
    pub(crate) fn local_pes(&self) -> u32 {
        self.starts[self.rank as usize + 1] - self.first_pe()
    }

    /// The process PE `pe` lives in.
    #[inline]
    pub(crate) fn proc_of(&self, pe: PeId) -> u32 {
        (self.starts.partition_point(|&s| s <= pe.0) - 1) as u32
    }

    /// The host PE `pe` is on.
    pub(crate) fn host_of(&self, pe: PeId) -> u32 {
        self.hosts[self.proc_of(pe) as usize]
    }

    /// This process's host.
    pub(crate) fn my_host(&self) -> u32 {
        self.hosts[self.rank as usize]
    }

    /// Number of hosts.
    pub(crate) fn num_hosts(&self) -> u32 {
        self.num_hosts
    }

    /// The PEs of host `h`, in order.
    pub(crate) fn host_pes(&self, h: u32) -> Vec<PeId> {
        (0..self.num_procs())
            .filter(|&r| self.hosts[r as usize] == h)
            .flat_map(|r| (self.starts[r as usize]..self.starts[r as usize + 1]).map(PeId))
            .collect()
    }

    /// PEs of this host in processes before this one (where this process's PEs start
    /// among the host's cores), and PEs of the whole host.
    pub(crate) fn host_offset(&self) -> (u32, u32) {
        let me = self.my_host();
        let mut before = 0;
        let mut all = 0;
        for r in 0..self.num_procs() {
            if self.hosts[r as usize] == me {
                let n = self.starts[r as usize + 1] - self.starts[r as usize];
                if r < self.rank {
                    before += n;
                }
                all += n;
            }
        }
        (before, all)
    }

    /// `process r (PEs a-b on host h)`, for messages.
    pub(crate) fn describe(&self, r: u32) -> String {
        let (a, b) = (self.starts[r as usize], self.starts[r as usize + 1] - 1);
        let pes = if a == b { format!("PE {a}") } else { format!("PEs {a}-{b}") };
        format!("process {r} ({pes} on host {})", self.hosts[r as usize])
    }
}

/// The runtime's sending end of the transport.
pub(crate) struct Net {
    transport: Box<dyn Transport>,
    /// The connection to the launcher.
    control: std::sync::Mutex<std::net::TcpStream>,
    rank: u32,
}

impl Net {
    /// Tells the launcher the job ends with `code` by its own choice (`exit(code)`).
    pub(crate) fn announce_exit(&self, code: i32) {
        let mut c = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let _ = charmrs_comm::bootstrap::announce_exit(&mut c, self.rank, code);
    }

    /// Tells the launcher that this process ends because process `gone` vanished.
    pub(crate) fn announce_follows(&self, gone: u32) {
        let mut c = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let _ = charmrs_comm::bootstrap::announce_follows(&mut c, self.rank, gone);
    }

    /// Sends `env` to PE `to` of another process.
    pub(crate) fn send(&self, shared: &Shared, to: PeId, env: Envelope) {
        // The job is ending: other processes are leaving too, and nothing will read it.
        if shared.exiting() {
            return;
        }
        let buf = charmrs_comm::frame::open_frame();
        let proc = shared.layout.proc_of(to);
        let sent = match wire::to_wire(to, env, buf, |buf, runs| self.transport.send_parts(proc, buf, runs)) {
            Ok(sent) => sent,
            Err(e) => crate::chare::invoke::fatal(&e.to_string()),
        };
        if let Err(e) = sent {
            // The peer closed its end. If it left because the job ends, the exit message
            // it sent first is still unread on our side (this PE was busy sending): read
            // what is there for a moment. If it died, reading reports that, with the
            // reason; if neither shows up, the failed send is the reason.
            let t0 = std::time::Instant::now();
            while !shared.exiting() && t0.elapsed() < std::time::Duration::from_secs(2) {
                if !self.transport.poll() {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            if !shared.exiting() {
                process_fatal(&shared.layout, &format!("cannot reach {}: {e}", shared.layout.describe(proc)));
            }
        }
    }

    /// Tells every other process that the job ends with `code`.
    pub(crate) fn send_exit(&self, layout: &Layout, code: i32) {
        for r in (0..layout.num_procs()).filter(|&r| r != layout.rank) {
            let mut buf = charmrs_comm::frame::open_frame();
            wire::exit_to_wire(PeId(layout.first_pe_of(r)), code, &mut buf);
            let _ = self.transport.send(r, buf);
        }
    }

    /// Receives what waits in the transport on this thread (see `Transport::poll`).
    #[inline]
    pub(crate) fn poll(&self) -> bool {
        self.transport.poll()
    }

    /// An idle PE's poll while it spins: also tells the transport that PEs are awake.
    #[inline]
    pub(crate) fn poll_active(&self) -> bool {
        self.transport.pes_active();
        self.transport.poll()
    }

    /// A PE is about to park.
    pub(crate) fn pes_sleeping(&self) {
        self.transport.pes_sleeping();
    }

    /// Ends the connections in order (the peers see a goodbye, not a death).
    pub(crate) fn goodbye(&self) {
        self.transport.goodbye();
    }
}

/// Ends this process for a fault of the job (not of one PE): exit status 1.
pub(crate) fn process_fatal(layout: &Layout, msg: &str) -> ! {
    // Not `eprintln!`: it panics when stderr is a pipe whose reader is gone (a killed
    // launcher), and a panic here would leave the process running without its launcher.
    let _ = writeln!(std::io::stderr(), "charmrs: process {}: {msg}", layout.rank);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(1)
}

/// The runtime's receiving end: decodes and routes what the transport delivers.
pub(crate) struct Inbound(pub(crate) Arc<Shared>);

impl Inbound {
    /// Routes what arrived from process `from`, decoded.
    fn arrived(&self, from: u32, got: Result<Arrived, wire::DecodeError>) {
        let shared = &self.0;
        match got {
            Ok(Arrived::Msg(to, env)) if shared.is_local(to) => shared.push(to, env),
            Ok(Arrived::Msg(to, _)) => process_fatal(
                &shared.layout,
                &format!(
                    "{} sent a message for PE {to}, which is not in this process",
                    shared.layout.describe(from)
                ),
            ),
            Ok(Arrived::Exit(code)) => {
                shared.exit_local(code);
            }
            Err(e) => process_fatal(&shared.layout, &format!("{} sent a {e}", shared.layout.describe(from))),
        }
    }
}

/// A streamed tail that remembers whether the sender died before it was all there.
struct Watched<'a> {
    tail: &'a dyn Tail,
    cut: std::cell::Cell<bool>,
}

impl Tail for Watched<'_> {
    fn len(&self) -> usize {
        self.tail.len()
    }

    fn copy_to(&self, at: usize, dst: &mut [std::mem::MaybeUninit<u8>]) -> Result<(), String> {
        self.tail.copy_to(at, dst).inspect_err(|_| self.cut.set(true))
    }
}

impl Receiver for Inbound {
    fn deliver(&self, from: u32, msg: &[u8]) {
        self.arrived(from, wire::from_wire(msg));
    }

    fn deliver_streamed(&self, from: u32, msg: &[u8], tail: &dyn Tail) {
        let watch = Watched { tail, cut: std::cell::Cell::new(false) };
        let got = wire::from_wire_streamed(msg, &watch);
        if got.is_err() && watch.cut.get() {
            // The sender died in the middle: the transport reports it as a lost peer,
            // which it is, rather than as a malformed message.
            return;
        }
        self.arrived(from, got);
    }

    fn closed(&self, from: u32, how: Closed) {
        let shared = &self.0;
        match how {
            Closed::Goodbye => {}
            Closed::Lost(_) if shared.exiting() => {}
            Closed::Lost(why) => {
                // A consequence, not the cause: the launcher names `from` instead.
                if let Some(net) = shared.net.get() {
                    net.announce_follows(from);
                }
                process_fatal(
                    &shared.layout,
                    &format!("{} is gone ({why}); ending the job", shared.layout.describe(from)),
                )
            }
        }
    }
}

/// Starts the transport over the mesh's connections (shared memory with the processes
/// of this host unless `CHARMRS_SHM=0`, TCP with the others) and watches the launcher.
pub(crate) fn start_transport(shared: &Arc<Shared>, mut mesh: Mesh, job: u64) -> Result<Net, String> {
    let size = mesh.procs.len() as u32;
    let recv: Arc<dyn Receiver> = Arc::new(Inbound(Arc::clone(shared)));
    let watch = Arc::clone(shared);
    if mesh.launcher {
        mesh.watch_launcher(move |why| {
            if !watch.exiting() {
                process_fatal(&watch.layout, &format!("{why}: the launcher is gone; ending"));
            }
        })
        .map_err(|e| e.to_string())?;
    }
    // The watcher holds its own handle on the launcher's connection: it stays open for
    // the life of the process.
    let transport: Box<dyn Transport> = match shm_ring_size() {
        #[cfg(target_os = "linux")]
        Some(cap) => {
            let links = charmrs_comm::shm::setup(&mut mesh, job, cap)?;
            let streams = std::mem::take(&mut mesh.streams);
            Box::new(
                charmrs_comm::shm::Hybrid::start(mesh.rank, size, job, links, streams, recv)
                    .map_err(|e| e.to_string())?,
            )
        }
        _ => {
            let _ = job;
            let streams = std::mem::take(&mut mesh.streams);
            Box::new(
                charmrs_comm::tcp::Tcp::start(mesh.rank, size, streams, recv).map_err(|e| e.to_string())?,
            )
        }
    };
    tracing::debug!(transport = transport.name(), "transport started");
    Ok(Net { transport, control: std::sync::Mutex::new(mesh.control), rank: mesh.rank })
}

/// The ring capacity for shared memory between processes of a host, or `None` when
/// shared memory is off (`CHARMRS_SHM=0`, or not Linux). `CHARMRS_SHM_RING=BYTES`
/// sets the capacity (rounded up to a power of two; default 1 MiB).
fn shm_ring_size() -> Option<usize> {
    if !cfg!(target_os = "linux") || std::env::var("CHARMRS_SHM").is_ok_and(|v| v.trim() == "0") {
        return None;
    }
    let cap = std::env::var("CHARMRS_SHM_RING").ok().and_then(|v| v.trim().parse::<usize>().ok());
    Some(cap.unwrap_or(1 << 20).clamp(1 << 12, 1 << 30).next_power_of_two())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn procs(spec: &[(u32, u32)]) -> Vec<ProcInfo> {
        let mut first = 0;
        spec.iter()
            .map(|&(pes, host)| {
                let p = ProcInfo { first_pe: first, pes, host, addr: "127.0.0.1:1".parse().expect("addr") };
                first += pes;
                p
            })
            .collect()
    }

    #[test]
    fn layout_maps_pes_to_processes_and_hosts() {
        let l = Layout::from_procs(2, &procs(&[(2, 0), (2, 0), (3, 1), (1, 1)])).expect("layout");
        assert_eq!(l.total(), 8);
        assert_eq!(l.first_pe(), 4);
        assert_eq!(l.local_pes(), 3);
        let owners: Vec<u32> = (0..8).map(|p| l.proc_of(PeId(p))).collect();
        assert_eq!(owners, [0, 0, 1, 1, 2, 2, 2, 3]);
        assert_eq!(l.num_hosts(), 2);
        assert_eq!(l.host_pes(1), (4..8).map(PeId).collect::<Vec<_>>());
        assert_eq!(l.host_of(PeId(3)), 0);
        assert_eq!(l.host_offset(), (0, 4));
        assert_eq!(l.describe(2), "process 2 (PEs 4-6 on host 1)");
    }

    #[test]
    fn a_table_with_a_gap_is_refused() {
        let mut p = procs(&[(2, 0), (2, 0)]);
        p[1].first_pe = 3;
        assert!(Layout::from_procs(0, &p).is_err());
    }
}

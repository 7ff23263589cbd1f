//! Bootstrap: how the processes of a job find each other and connect.
//!
//! ```text
//! launcher (rendezvous)                      process r
//!   listens on one address, one port
//!                            <-- connect, handshake (secret) as rank r
//!                            <-- REGISTER { r, first PE, PEs, host key, listen address }
//!   (all n registered)
//!   TABLE { per rank: first PE, PEs, host, address } -->
//!                                            connects to every rank < r (handshake),
//!                                            accepts every rank > r (handshake), then
//!                                            closes its listener
//! ```
//!
//! The launcher hands each process its place through the environment ([`JobEnv`]):
//! rank, PE counts, the job id and secret, and the rendezvous address. Each process
//! listens on the address it reached the rendezvous from (the interface that faces the
//! job), on a port of the kernel's choice, only until its peers are connected: nothing
//! stays listening once the job runs. Every connection starts with the handshake of
//! [`crate::handshake`]; a connection that fails it (a rogue client, garbage, another
//! job) is logged and dropped, and the bootstrap goes on. A process that cannot finish
//! within the connect timeout fails with a message that says what it waited for.
//!
//! Hosts: each process reports a host key (`CHARMRS_HOST` if the launcher set it,
//! otherwise the host name); processes with the same key are on one host. Hosts are
//! numbered in the order of their first process.
//!
//! The connection to the launcher stays open while the job runs: if it breaks, the
//! launcher is gone and the process ends (see [`Mesh::watch_launcher`]).
//!
//! Connections are opened eagerly at start-up (n(n-1)/2 of them): start-up costs one
//! round of connects, and no message ever waits for a connection to open.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use crate::frame::{encode, parse_header, FrameKind, HEADER_LEN};
use crate::handshake::{self, Secret};

/// `flags` of the control frames of the bootstrap.
const REGISTER: u8 = 10;
/// See [`REGISTER`].
const TABLE: u8 = 11;
/// See [`REGISTER`]: a process tells the launcher the exit code the job chose.
const EXIT: u8 = 12;
/// Process → launcher: this process ends because another one is gone (`u32` rank).
const FOLLOWS: u8 = 13;
/// Largest bootstrap frame (a table of thousands of processes fits).
const MAX_CONTROL: u32 = 64 << 20;
/// Default time a process waits for the rendezvous and its peers.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the bootstrap failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    /// A job variable is missing or malformed.
    #[error("bad job environment: {0}")]
    Env(String),
    /// The rendezvous could not be reached or did not answer.
    #[error("cannot join the job through the launcher at {addr}: {why}")]
    Rendezvous {
        /// The rendezvous address.
        addr: String,
        /// What failed.
        why: String,
    },
    /// Peers did not connect in time, or a connection to one failed.
    #[error("cannot connect to the other processes of the job: {0}")]
    Peers(String),
}

/// A process's place in a job, from the environment the launcher set.
#[derive(Clone, Debug)]
pub struct JobEnv {
    /// This process's rank.
    pub rank: u32,
    /// Number of processes.
    pub size: u32,
    /// PEs of this process.
    pub pes: u32,
    /// First PE of this process.
    pub first_pe: u32,
    /// PEs of the whole job.
    pub total_pes: u32,
    /// The job id.
    pub job: u64,
    /// The job's secret.
    pub secret: Secret,
    /// The launcher's rendezvous address (`host:port`).
    pub rendezvous: String,
    /// Which host this process is on (processes with one key share a host).
    pub host_key: String,
    /// How long to wait for the rendezvous and the peers.
    pub timeout: Duration,
    /// What program this process runs (the runtime sets a hash of its entry-method
    /// table): every process of a job must show the same, or the job does not start.
    pub signature: u64,
    /// The rendezvous is a launcher's (`charmrs-run`), which outlives the processes:
    /// losing the connection to it means it died, and the process ends. Under an MPI
    /// launcher without `charmrs-run`, rank 0 runs the rendezvous and may end first;
    /// the MPI launcher ends the job's processes when one fails.
    pub launcher: bool,
}

/// The rank variables MPI launchers set (Open MPI, PMIx, MPICH/Hydra and PMI, Slurm's
/// `srun`, MVAPICH), each with its size variable.
const MPI_RANK_VARS: [(&str, &str); 5] = [
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("PMIX_RANK", "PMIX_SIZE"),
    ("PMI_RANK", "PMI_SIZE"),
    ("SLURM_PROCID", "SLURM_NTASKS"),
    ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"),
];

/// This process's rank as its MPI launcher set it, checked against the job's `size`.
fn mpi_rank(var: &impl Fn(&str) -> Option<String>, size: u32) -> Result<u32, BootError> {
    let Some((name, value, size_var)) = MPI_RANK_VARS.iter().find_map(|(r, s)| var(r).map(|v| (*r, v, *s)))
    else {
        let names: Vec<&str> = MPI_RANK_VARS.iter().map(|(r, _)| *r).collect();
        return Err(BootError::Env(format!(
            "started for ++mpiexec, but none of {} is set: was this process started by an MPI launcher?",
            names.join(", ")
        )));
    };
    let rank: u32 = value
        .trim()
        .parse()
        .map_err(|_| BootError::Env(format!("{name}={value:?} is not a whole number")))?;
    let started = var(size_var).and_then(|v| v.trim().parse::<u32>().ok());
    if started.is_some_and(|n| n != size) || rank >= size {
        return Err(BootError::Env(format!(
            "the MPI launcher started {} processes (this one is rank {rank}) for a job of {size}: \
             check its process count (++mpiexec passes -n {size}; ++mpiexec-no-n takes the batch system's)",
            started.map_or_else(|| "more".to_string(), |n| n.to_string()),
        )));
    }
    Ok(rank)
}

/// The address other hosts reach this one by: `CHARMRS_RENDEZVOUS_IP`, or the source
/// address of the default route, or loopback on a host without one.
///
/// # Errors
/// `CHARMRS_RENDEZVOUS_IP` is not an IP address.
pub fn reachable_ip() -> Result<std::net::IpAddr, String> {
    use std::net::{IpAddr, Ipv4Addr, UdpSocket};
    if let Ok(ip) = std::env::var("CHARMRS_RENDEZVOUS_IP") {
        return ip.trim().parse().map_err(|_| format!("CHARMRS_RENDEZVOUS_IP={ip:?} is not an IP address"));
    }
    // A UDP "connection" sends nothing: it asks the kernel for the route (TEST-NET-1).
    let routed = UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| s.connect(("192.0.2.1", 9)).and_then(|()| s.local_addr()))
        .map(|a| a.ip());
    Ok(routed.ok().filter(|ip| !ip.is_unspecified()).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)))
}

impl JobEnv {
    /// This process's place in its job: from the variables `charmrs-run` set
    /// ([`JobEnv::from_vars`]), or, for a process an MPI launcher started without it
    /// (`mpirun -np 4 ./app`, `srun ./app`), through PMIx (`from_pmix`).
    /// `Ok(None)` for a process on its own.
    ///
    /// # Errors
    /// Bad variables, or the PMIx exchange failed.
    pub fn from_env(pes: u32) -> Result<Option<JobEnv>, BootError> {
        let var = |k: &str| std::env::var(k).ok();
        if var("CHARMRS_NUM_PROCESSES").is_some() {
            return JobEnv::from_vars(pes, var);
        }
        #[cfg(unix)]
        if charmrs_pmix::launched_by_pmix() {
            return JobEnv::from_pmix(pes, var);
        }
        Ok(None)
    }

    /// The job of a process a PMIx launcher started, each process with `pes` PEs:
    /// rank 0 makes the job's id and secret and runs the rendezvous (the part of
    /// `charmrs-run` the others need), and publishes where it listens through PMIx; the
    /// others read it, and everyone joins as under `charmrs-run`. The job's size is
    /// PMIx's `PMIX_JOB_SIZE` (or the launcher's `OMPI_COMM_WORLD_SIZE`,
    /// `SLURM_NTASKS`, ...).
    #[cfg(unix)]
    fn from_pmix(pes: u32, var: impl Fn(&str) -> Option<String>) -> Result<Option<JobEnv>, BootError> {
        // The launcher's size variable, if it sets one: a job of one needs no PMIx.
        let env_size = match MPI_RANK_VARS.iter().find_map(|(_, s)| var(s).map(|v| (*s, v))) {
            Some((name, v)) => Some(
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| BootError::Env(format!("{name}={v:?} is not a whole number")))?,
            ),
            None => None,
        };
        if env_size.is_some_and(|n| n <= 1) {
            return Ok(None);
        }
        let pmix_err = |e: charmrs_pmix::Error| BootError::Env(format!("PMIx: {e}"));
        let pmix = charmrs_pmix::Pmix::init().map_err(pmix_err)?;
        let size = match (pmix.job_size(), env_size) {
            (Ok(n), _) => n,
            (Err(_), Some(n)) => n,
            (Err(e), None) => return Err(pmix_err(e)),
        };
        if size <= 1 {
            return Ok(None);
        }
        let rank = pmix.rank();
        const KEY: &str = "charmrs.rendezvous";
        if rank == 0 {
            let secret = Secret::random().map_err(|e| BootError::Env(e.to_string()))?;
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).map_err(|e| BootError::Env(e.to_string()))?;
            let job = u64::from_le_bytes(b);
            let ip = reachable_ip().map_err(BootError::Env)?;
            let l = TcpListener::bind((ip, 0))
                .map_err(|e| BootError::Env(format!("cannot listen for the job's processes on {ip}: {e}")))?;
            let at = l.local_addr().map_err(|e| BootError::Env(e.to_string()))?;
            let s = secret.clone();
            let deadline = Instant::now() + connect_timeout() + Duration::from_secs(5);
            std::thread::Builder::new()
                .name("rendezvous".into())
                .spawn(move || match rendezvous(&[l], &s, job, size, deadline) {
                    // Held until each process ends: a process whose connection to the
                    // rendezvous breaks ends itself, as under charmrs-run.
                    Ok((conns, _)) => {
                        for mut c in conns {
                            std::thread::spawn(move || read_announcement(&mut c));
                        }
                    }
                    Err(e) => eprintln!("charmrs: process 0: the job's processes did not all join: {e}"),
                })
                .map_err(|e| BootError::Env(e.to_string()))?;
            pmix.put(KEY, &format!("{at} {} {job:016x}", secret.to_hex())).map_err(pmix_err)?;
            pmix.commit().map_err(pmix_err)?;
        }
        pmix.fence().map_err(pmix_err)?;
        let published = pmix.get(0, KEY).map_err(pmix_err)?;
        // Everyone has read it before rank 0 leaves PMIx.
        pmix.fence().map_err(pmix_err)?;
        drop(pmix);
        let bad = || BootError::Env(format!("rank 0 published {published:?} through PMIx"));
        let mut words = published.split(' ');
        let (Some(at), Some(secret), Some(job), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(bad());
        };
        let secret = Secret::from_hex(secret).map_err(|_| bad())?;
        let job = u64::from_str_radix(job, 16).map_err(|_| bad())?;
        let first_pe = rank.checked_mul(pes).ok_or_else(bad)?;
        Ok(Some(JobEnv {
            rank,
            size,
            pes,
            first_pe,
            total_pes: size.checked_mul(pes).ok_or_else(bad)?,
            job,
            secret,
            rendezvous: at.to_string(),
            host_key: host_name(),
            timeout: connect_timeout(),
            signature: 0,
            launcher: false,
        }))
    }

    /// Reads the job variables through `var` (`std::env::var` in a process), for a
    /// process of `pes` PEs (the runtime's `+p`, or `CHARMRS_PES` the launcher set).
    /// `Ok(None)` when this process is not one of several (no `CHARMRS_NUM_PROCESSES`,
    /// or 1).
    ///
    /// # Errors
    /// A variable that is missing or does not parse, named in the message.
    pub fn from_vars(pes: u32, var: impl Fn(&str) -> Option<String>) -> Result<Option<JobEnv>, BootError> {
        let num = |name: &str| -> Result<u32, BootError> {
            let v = var(name).ok_or_else(|| BootError::Env(format!("{name} is not set")))?;
            v.trim().parse().map_err(|_| BootError::Env(format!("{name}={v:?} is not a whole number")))
        };
        let size = match var("CHARMRS_NUM_PROCESSES") {
            None => return Ok(None),
            Some(_) => num("CHARMRS_NUM_PROCESSES")?,
        };
        if size <= 1 {
            return Ok(None);
        }
        let (rank, first_pe) = if var("CHARMRS_RANK_FROM").as_deref() == Some("mpi") {
            // Started by an MPI launcher (`++mpiexec`): the rank is its, and every
            // process has `pes` PEs.
            let rank = mpi_rank(&var, size)?;
            (
                rank,
                rank.checked_mul(pes)
                    .ok_or_else(|| BootError::Env(format!("rank {rank} of {pes} PEs each")))?,
            )
        } else {
            (num("CHARMRS_RANK")?, num("CHARMRS_FIRST_PE")?)
        };
        let total_pes = num("CHARMRS_TOTAL_PES")?;
        if rank >= size || pes == 0 || first_pe.checked_add(pes).is_none_or(|end| end > total_pes) {
            return Err(BootError::Env(format!(
                "rank {rank} of {size} with PEs {first_pe}..{} of {total_pes} is not a place in a job",
                first_pe as u64 + pes as u64
            )));
        }
        let job_s = var("CHARMRS_JOB").ok_or_else(|| BootError::Env("CHARMRS_JOB is not set".into()))?;
        let job = u64::from_str_radix(job_s.trim(), 16)
            .map_err(|_| BootError::Env(format!("CHARMRS_JOB={job_s:?} is not a hex job id")))?;
        let secret = var("CHARMRS_SECRET")
            .ok_or_else(|| BootError::Env("CHARMRS_SECRET is not set".into()))
            .and_then(|s| {
                Secret::from_hex(s.trim()).map_err(|e| BootError::Env(format!("CHARMRS_SECRET: {e}")))
            })?;
        let rendezvous = var("CHARMRS_RENDEZVOUS")
            .ok_or_else(|| BootError::Env("CHARMRS_RENDEZVOUS is not set".into()))?;
        let host_key = var("CHARMRS_HOST").filter(|h| !h.is_empty()).unwrap_or_else(host_name);
        let timeout = match var("CHARMRS_CONNECT_TIMEOUT") {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && s.is_finite())
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    BootError::Env(format!(
                        "CHARMRS_CONNECT_TIMEOUT={v:?} is not a positive number of seconds"
                    ))
                })?,
        };
        Ok(Some(JobEnv {
            rank,
            size,
            pes,
            first_pe,
            total_pes,
            job,
            secret,
            rendezvous,
            host_key,
            timeout,
            signature: 0,
            launcher: true,
        }))
    }
}

/// The connect timeout from `CHARMRS_CONNECT_TIMEOUT` (seconds), or the default.
pub fn connect_timeout() -> Duration {
    std::env::var("CHARMRS_CONNECT_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s > 0.0 && s.is_finite())
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
}

/// How long a peer may stay silent on a connection with data or keepalive probes
/// outstanding before it counts as gone: `CHARMRS_PEER_TIMEOUT` (seconds), default 10 s.
/// A peer that dies closes its connections and is seen at once; this bounds the
/// detection of a host that vanished or a network that partitioned (no FIN, no RST).
pub fn peer_timeout() -> Duration {
    std::env::var("CHARMRS_PEER_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| *s >= 1.0 && s.is_finite())
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(10))
}

/// Makes a connection notice within `timeout` that its peer went silent: TCP keepalive
/// probes on an idle connection, and (Linux) `TCP_USER_TIMEOUT` on one with unacknowledged
/// data. The read or write then fails, and the connection counts as lost.
///
/// # Errors
/// The socket options cannot be set.
pub fn watch_peer(s: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    use rustix::net::sockopt;
    let secs = timeout.as_secs().max(1);
    let idle = (secs / 3).max(1);
    let probes = (secs - idle).max(1) as u32;
    sockopt::set_socket_keepalive(s, true)?;
    sockopt::set_tcp_keepidle(s, Duration::from_secs(idle))?;
    sockopt::set_tcp_keepintvl(s, Duration::from_secs(1))?;
    sockopt::set_tcp_keepcnt(s, probes)?;
    #[cfg(target_os = "linux")]
    sockopt::set_tcp_user_timeout(s, u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX))?;
    Ok(())
}

/// This machine's host name (`localhost` if it cannot be read).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// One process of the job, as the table describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    /// First PE.
    pub first_pe: u32,
    /// Number of PEs.
    pub pes: u32,
    /// Host number (0-based, in the order hosts first appear by rank).
    pub host: u32,
    /// Where it listened during the bootstrap.
    pub addr: SocketAddr,
}

/// A process joined to its job: the table of all processes and one authenticated
/// connection to every other process.
#[derive(Debug)]
pub struct Mesh {
    /// This process's rank.
    pub rank: u32,
    /// Every process, by rank.
    pub procs: Vec<ProcInfo>,
    /// `(peer rank, stream)` for every other process.
    pub streams: Vec<(u32, TcpStream)>,
    /// The connection to the launcher (or, under an MPI launcher without
    /// `charmrs-run`, to rank 0's rendezvous).
    pub control: TcpStream,
    /// Whether `control` leads to a launcher that outlives the job's processes (see
    /// [`JobEnv::launcher`]).
    pub launcher: bool,
}

impl Mesh {
    /// Number of hosts.
    pub fn num_hosts(&self) -> u32 {
        self.procs.iter().map(|p| p.host + 1).max().unwrap_or(1)
    }

    /// Calls `gone` (on a thread of its own) if the connection to the launcher breaks:
    /// the launcher died, and this process should end.
    ///
    /// # Errors
    /// The socket cannot be cloned.
    pub fn watch_launcher(&self, gone: impl FnOnce(String) + Send + 'static) -> std::io::Result<()> {
        let mut s = self.control.try_clone()?;
        thread::Builder::new().name("launcher-watch".into()).spawn(move || {
            let mut buf = [0u8; 64];
            let why = loop {
                match s.read(&mut buf) {
                    Ok(0) => break "the launcher closed its connection".to_string(),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break format!("the connection to the launcher failed: {e}"),
                }
            };
            gone(why)
        })?;
        Ok(())
    }
}

/// Tells the launcher, over the connection to it, that this process ends because the
/// job called `exit(code)`: an exit status of `code` is then the job's choice, not a
/// failure.
///
/// # Errors
/// The connection failed (the launcher is gone).
pub fn announce_exit(control: &mut TcpStream, rank: u32, code: i32) -> Result<(), String> {
    write_control(control, EXIT, rank, &code.to_le_bytes())
}

/// Tells the launcher that this process ends because process `gone` vanished: its own
/// failure is a consequence, and the launcher names `gone` as the cause.
///
/// # Errors
/// The connection to the launcher failed.
pub fn announce_follows(control: &mut TcpStream, rank: u32, gone: u32) -> Result<(), String> {
    write_control(control, FOLLOWS, rank, &gone.to_le_bytes())
}

/// What a process told the launcher before its connection ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Announcement {
    /// The exit code the job chose ([`announce_exit`]).
    pub exit: Option<i32>,
    /// The process whose loss ended this one ([`announce_follows`]).
    pub follows: Option<u32>,
}

/// The launcher's side of [`announce_exit`] and [`announce_follows`]: reads the
/// connection of one process until it ends, and returns what it announced.
pub fn read_announcement(control: &mut TcpStream) -> Announcement {
    let mut said = Announcement::default();
    loop {
        let mut head = [0u8; HEADER_LEN];
        if control.read_exact(&mut head).is_err() {
            return said;
        }
        let Ok(h) = parse_header(&head, 64) else { return said };
        let mut payload = vec![0u8; h.len as usize];
        if control.read_exact(&mut payload).is_err() {
            return said;
        }
        let word = <[u8; 4]>::try_from(&payload[..]).ok();
        match (h.kind == FrameKind::CONTROL, h.flags, word) {
            (true, EXIT, Some(w)) => said.exit = Some(i32::from_le_bytes(w)),
            // The first loss it saw is the cause; later ones are other followers.
            (true, FOLLOWS, Some(w)) => {
                said.follows.get_or_insert(u32::from_le_bytes(w));
            }
            _ => {}
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads little-endian fields from a control payload.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn u32(&mut self) -> Result<u32, String> {
        let (a, b) = self.0.split_first_chunk::<4>().ok_or("truncated control message")?;
        self.0 = b;
        Ok(u32::from_le_bytes(*a))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        if n > self.0.len() {
            return Err("truncated control message".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        String::from_utf8(a.to_vec()).map_err(|_| "control message with a string that is not UTF-8".into())
    }
}

/// Reads one control frame with flags `flags` before `deadline`.
fn read_control(s: &mut TcpStream, flags: u8, deadline: Instant) -> Result<(u32, Vec<u8>), String> {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).map_err(|e| io_why(&e))?;
    let h = parse_header(&head, MAX_CONTROL).map_err(|e| e.to_string())?;
    if h.kind != FrameKind::CONTROL || h.flags != flags {
        return Err(format!("unexpected frame of kind {} step {}", h.kind.0, h.flags));
    }
    let mut payload = vec![0u8; h.len as usize];
    s.read_exact(&mut payload).map_err(|e| io_why(&e))?;
    s.set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok((h.src, payload))
}

fn io_why(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => "no answer in time".into(),
        std::io::ErrorKind::UnexpectedEof => "the connection closed in the middle of a message".into(),
        _ => e.to_string(),
    }
}

fn write_control(s: &mut TcpStream, flags: u8, src: u32, payload: &[u8]) -> Result<(), String> {
    let mut out = Vec::new();
    encode(FrameKind::CONTROL, flags, src, payload, &mut out).map_err(|e| e.to_string())?;
    s.write_all(&out).map_err(|e| e.to_string())
}

/// Connects to `addr` until `deadline`, retrying while nobody listens yet.
fn connect_until(addr: &str, deadline: Instant) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| format!("bad address: {e}"))?.collect();
    let mut last = String::from("no address");
    loop {
        for a in &addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no connection within the timeout ({last})"));
            }
            match TcpStream::connect_timeout(a, left.min(Duration::from_secs(5))) {
                Ok(s) => return Ok(s),
                Err(e) => last = e.to_string(),
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no connection within the timeout ({last})"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Joins the job described by `env`: registers with the launcher, receives the table,
/// connects to every other process.
///
/// # Errors
/// See [`BootError`]; the message says what the process waited for.
pub fn join(env: &JobEnv) -> Result<Mesh, BootError> {
    let deadline = Instant::now() + env.timeout;
    let rv = |why: String| BootError::Rendezvous { addr: env.rendezvous.clone(), why };
    let mut control = connect_until(&env.rendezvous, deadline).map_err(rv)?;
    let left = deadline.saturating_duration_since(Instant::now());
    handshake::connect(&mut control, &env.secret, env.job, env.rank, left).map_err(|e| rv(e.to_string()))?;
    // Listen where this process reached the launcher: the interface facing the job.
    let ip: IpAddr = control.local_addr().map_err(|e| rv(e.to_string()))?.ip();
    let listener =
        TcpListener::bind((ip, 0)).map_err(|e| BootError::Peers(format!("cannot listen on {ip}: {e}")))?;
    let addr = listener.local_addr().map_err(|e| BootError::Peers(e.to_string()))?;
    let mut reg = Vec::new();
    reg.extend_from_slice(&env.rank.to_le_bytes());
    reg.extend_from_slice(&env.first_pe.to_le_bytes());
    reg.extend_from_slice(&env.pes.to_le_bytes());
    put_str(&mut reg, &env.host_key);
    put_str(&mut reg, &addr.to_string());
    reg.extend_from_slice(&env.signature.to_le_bytes());
    write_control(&mut control, REGISTER, env.rank, &reg).map_err(rv)?;
    let (_, table) = read_control(&mut control, TABLE, deadline)
        .map_err(|e| rv(format!("no table of the job's processes: {e}")))?;
    let procs = parse_table(&table, env.size).map_err(rv)?;
    let mut streams = Vec::with_capacity(env.size as usize - 1);
    for (j, p) in procs.iter().enumerate().take(env.rank as usize) {
        let mut s = connect_until(&p.addr.to_string(), deadline)
            .map_err(|e| BootError::Peers(format!("process {j} at {}: {e}", p.addr)))?;
        let left = deadline.saturating_duration_since(Instant::now());
        handshake::connect(&mut s, &env.secret, env.job, env.rank, left)
            .map_err(|e| BootError::Peers(format!("process {j} at {}: {e}", p.addr)))?;
        streams.push((j as u32, s));
    }
    let expect = env.size - env.rank - 1;
    let mut got = vec![false; env.size as usize];
    let mut accepted = 0;
    listener.set_nonblocking(true).map_err(|e| BootError::Peers(e.to_string()))?;
    while accepted < expect {
        if Instant::now() >= deadline {
            let missing: Vec<String> =
                (env.rank + 1..env.size).filter(|r| !got[*r as usize]).map(|r| r.to_string()).collect();
            return Err(BootError::Peers(format!(
                "processes {} did not connect within {:?}",
                missing.join(", "),
                env.timeout
            )));
        }
        let (mut s, from) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(e) => return Err(BootError::Peers(format!("accept failed: {e}"))),
        };
        let _ = s.set_nonblocking(false);
        let left = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(5));
        match handshake::accept(&mut s, &env.secret, env.job, left) {
            Ok(peer) if peer.rank > env.rank && peer.rank < env.size && !got[peer.rank as usize] => {
                got[peer.rank as usize] = true;
                accepted += 1;
                streams.push((peer.rank, s));
            }
            Ok(peer) => eprintln!(
                "charmrs: process {}: refused a connection from {from}: it claims rank {}, which is not expected",
                env.rank, peer.rank
            ),
            Err(e) => eprintln!("charmrs: process {}: refused a connection from {from}: {e}", env.rank),
        }
    }
    drop(listener);
    let silent = peer_timeout();
    for (_, s) in &streams {
        watch_peer(s, silent).map_err(|e| BootError::Peers(format!("socket options: {e}")))?;
    }
    watch_peer(&control, silent).map_err(|e| rv(format!("socket options: {e}")))?;
    Ok(Mesh { rank: env.rank, procs, streams, control, launcher: env.launcher })
}

fn parse_table(bytes: &[u8], size: u32) -> Result<Vec<ProcInfo>, String> {
    let mut f = Fields(bytes);
    let n = f.u32()?;
    if n != size {
        return Err(format!("the launcher's table has {n} processes, this job has {size}"));
    }
    (0..n)
        .map(|_| {
            let first_pe = f.u32()?;
            let pes = f.u32()?;
            let host = f.u32()?;
            let addr =
                f.string()?.parse::<SocketAddr>().map_err(|e| format!("bad address in the table: {e}"))?;
            Ok(ProcInfo { first_pe, pes, host, addr })
        })
        .collect()
}

/// The launcher's side: accepts the `size` processes of job `job` on `listeners` (one
/// per local address that faces the job's hosts), until
/// `deadline`, and sends each the table. Returns the connections (keep them open while
/// the job runs: a process whose connection breaks ends) and the table.
///
/// Connections that fail the handshake or register nonsense are logged and dropped.
///
/// # Errors
/// Not every process registered in time (the message lists the missing ranks).
pub fn rendezvous(
    listeners: &[TcpListener],
    secret: &Secret,
    job: u64,
    size: u32,
    deadline: Instant,
) -> Result<(Vec<TcpStream>, Vec<ProcInfo>), String> {
    /// A registered process: its connection, first PE, PEs, host key, address.
    type Registered = (TcpStream, u32, u32, String, SocketAddr, u64);
    let mut slots: Vec<Option<Registered>> = (0..size).map(|_| None).collect();
    let mut got = 0;
    for l in listeners {
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
    }
    while got < size {
        if Instant::now() >= deadline {
            let missing: Vec<String> =
                (0..size).filter(|r| slots[*r as usize].is_none()).map(|r| r.to_string()).collect();
            return Err(format!("processes {} did not join the job in time", missing.join(", ")));
        }
        let mut came = None;
        for l in listeners {
            match l.accept() {
                Ok(x) => {
                    came = Some(x);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("accept failed: {e}")),
            }
        }
        let Some((mut s, from)) = came else {
            thread::sleep(Duration::from_millis(2));
            continue;
        };
        let _ = s.set_nonblocking(false);
        let left = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(5));
        let peer = match handshake::accept(&mut s, secret, job, left) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("charmrs-run: refused a connection from {from}: {e}");
                continue;
            }
        };
        let reg = read_control(&mut s, REGISTER, Instant::now() + left).and_then(|(_, p)| {
            let mut f = Fields(&p);
            let rank = f.u32()?;
            let first = f.u32()?;
            let pes = f.u32()?;
            let host = f.string()?;
            let addr = f.string()?.parse::<SocketAddr>().map_err(|e| format!("bad address: {e}"))?;
            let sig = u64::from(f.u32()?) | (u64::from(f.u32()?) << 32);
            Ok((rank, first, pes, host, addr, sig))
        });
        match reg {
            Ok((rank, first, pes, host, addr, sig))
                if rank == peer.rank && rank < size && slots[rank as usize].is_none() =>
            {
                slots[rank as usize] = Some((s, first, pes, host, addr, sig));
                got += 1;
            }
            Ok((rank, ..)) => eprintln!("charmrs-run: refused a registration of rank {rank} from {from}"),
            Err(e) => eprintln!("charmrs-run: refused a registration from {from}: {e}"),
        }
    }
    let mut hosts: Vec<String> = Vec::new();
    let mut table = Vec::new();
    let mut infos = Vec::new();
    table.extend_from_slice(&size.to_le_bytes());
    // Every process must run the same program: entry-method ids are positions in the
    // registration table, so another build would misread every message.
    let sigs: Vec<u64> = slots.iter().flatten().map(|s| s.5).collect();
    if let Some(r) = sigs.iter().position(|&s| s != sigs[0]) {
        return Err(format!(
            "process {r} runs a different program than process 0 (its entry methods differ): \
             every process of a job must run the same build"
        ));
    }
    for (_, first, pes, host, addr, _) in slots.iter().flatten() {
        let h = match hosts.iter().position(|k| k == host) {
            Some(i) => i,
            None => {
                hosts.push(host.clone());
                hosts.len() - 1
            }
        } as u32;
        table.extend_from_slice(&first.to_le_bytes());
        table.extend_from_slice(&pes.to_le_bytes());
        table.extend_from_slice(&h.to_le_bytes());
        put_str(&mut table, &addr.to_string());
        infos.push(ProcInfo { first_pe: *first, pes: *pes, host: h, addr: *addr });
    }
    let mut conns = Vec::new();
    for (s, ..) in slots.into_iter().flatten() {
        let mut s = s;
        write_control(&mut s, TABLE, u32::MAX, &table)?;
        conns.push(s);
    }
    Ok((conns, infos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_vars<'a>(extra: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        let secret = Secret::random().expect("random").to_hex();
        move |k: &str| {
            let base = [
                ("CHARMRS_NUM_PROCESSES", "4"),
                ("CHARMRS_TOTAL_PES", "8"),
                ("CHARMRS_JOB", "00000000000000ab"),
                ("CHARMRS_RENDEZVOUS", "127.0.0.1:9"),
                ("CHARMRS_RANK_FROM", "mpi"),
            ];
            if k == "CHARMRS_SECRET" {
                return Some(secret.clone());
            }
            base.iter().chain(extra).find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn under_an_mpi_launcher_the_rank_is_the_launchers() {
        for (var, size) in
            [("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")]
        {
            let env =
                JobEnv::from_vars(2, job_vars(&[(var, "3"), (size, "4")])).expect("valid").expect("a job");
            assert_eq!((env.rank, env.first_pe, env.size, env.total_pes), (3, 6, 4, 8), "{var}");
        }
        let e = JobEnv::from_vars(2, job_vars(&[("PMI_RANK", "1"), ("PMI_SIZE", "3")])).expect_err("3 of 4");
        assert!(e.to_string().contains("started 3 processes"), "{e}");
        let e = JobEnv::from_vars(2, job_vars(&[])).expect_err("no rank");
        assert!(e.to_string().contains("none of OMPI_COMM_WORLD_RANK"), "{e}");
        let e = JobEnv::from_vars(2, job_vars(&[("PMIX_RANK", "x")])).expect_err("not a number");
        assert!(e.to_string().contains("PMIX_RANK=\"x\""), "{e}");
    }
}

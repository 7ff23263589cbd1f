//! Running a job's processes on this host (`++local`): start them, forward their
//! output, end the whole job when one fails, on a timeout or on Ctrl-C / SIGTERM, and
//! say which process ended it and how.
//!
//! Each process gets its place in the job through the environment (its PE count, rank,
//! first PE, the job's size, id and secret: see [`JOB_ENV`]). Each runs in its own
//! process group, so that ending it also ends whatever it started.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::handshake::Secret;
use crate::launcher::options::LaunchOptions;

/// The variables a process of a job gets (besides `CHARMRS_PES`, its PE count).
pub const JOB_ENV: [&str; 7] = [
    "CHARMRS_RANK",
    "CHARMRS_NUM_PROCESSES",
    "CHARMRS_FIRST_PE",
    "CHARMRS_TOTAL_PES",
    "CHARMRS_JOB",
    "CHARMRS_SECRET",
    "CHARMRS_RENDEZVOUS",
];

/// How long processes get to end after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(2);

/// One process of the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Its rank.
    pub rank: u32,
    /// Its first PE.
    pub first_pe: u32,
    /// Its PE count.
    pub pes: u32,
}

impl Slot {
    /// `PE 3` or `PEs 2-3`.
    pub fn describe(&self) -> String {
        if self.pes == 1 {
            format!("PE {}", self.first_pe)
        } else {
            format!("PEs {}-{}", self.first_pe, self.first_pe + self.pes - 1)
        }
    }
}

/// The processes of a job on this host: `pes / ppn` of `ppn` PEs, or one of all.
pub fn plan(opts: &LaunchOptions) -> Vec<Slot> {
    let per = opts.ppn.unwrap_or(opts.pes);
    (0..opts.pes / per).map(|r| Slot { rank: r, first_pe: r * per, pes: per }).collect()
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The launcher's exit status.
    pub code: i32,
    /// Why, when it is not 0 (also printed to stderr).
    pub reason: Option<String>,
}

fn describe_status(st: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = st.signal() {
            let name = match sig {
                2 => " (SIGINT)",
                6 => " (SIGABRT)",
                9 => " (SIGKILL, probably out of memory if nobody killed it)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            return format!("killed by signal {sig}{name}");
        }
    }
    match st.code() {
        Some(c) => format!("exited with status {c}"),
        None => "ended".to_string(),
    }
}

fn killed_by_signal(st: ExitStatus) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        st.signal().is_some()
    }
    #[cfg(not(unix))]
    {
        let _ = st;
        false
    }
}

#[cfg(unix)]
fn signal_group(child: &Child, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// Ends every process still running: SIGTERM to its group, SIGKILL after the grace.
fn end_all(children: &mut [(Slot, Child)]) {
    #[cfg(unix)]
    for (_, c) in children.iter() {
        signal_group(c, rustix::process::Signal::TERM);
    }
    let t0 = Instant::now();
    while t0.elapsed() < GRACE {
        if children.iter_mut().all(|(_, c)| matches!(c.try_wait(), Ok(Some(_)))) {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    for (_, c) in children.iter_mut() {
        #[cfg(unix)]
        signal_group(c, rustix::process::Signal::KILL);
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Copies a child's output to ours, line by line, with an optional prefix.
fn forward(
    from: impl std::io::Read + Send + 'static,
    prefix: Option<String>,
    to_stderr: bool,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::new(from);
        let mut line = Vec::new();
        while let Ok(n) = r.read_until(b'\n', &mut line) {
            if n == 0 {
                break;
            }
            let mut out: Box<dyn Write> = if to_stderr {
                Box::new(std::io::stderr().lock())
            } else {
                Box::new(std::io::stdout().lock())
            };
            if let Some(p) = &prefix {
                let _ = out.write_all(p.as_bytes());
            }
            let _ = out.write_all(&line);
            let _ = out.flush();
            line.clear();
        }
    })
}

/// Runs the job on this host and returns how it ended.
///
/// # Errors
/// A process that cannot be started (the message names the program).
pub fn run(opts: &LaunchOptions) -> Result<Outcome, String> {
    let slots = plan(opts);
    let secret = Secret::random().map_err(|e| e.to_string())?;
    let job = {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| e.to_string())?;
        u64::from_le_bytes(b)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    {
        let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop));
        let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&term));
    }
    // The rendezvous: processes of a job of several register there and learn each
    // other's addresses (bootstrap.rs). Loopback only: every process is on this host.
    let mut boot_rx = None;
    let mut rendezvous = String::new();
    if slots.len() > 1 {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| format!("cannot listen for the job's processes: {e}"))?;
        rendezvous = listener.local_addr().map_err(|e| e.to_string())?.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        let (secret, n) = (secret.clone(), slots.len() as u32);
        let deadline = Instant::now() + crate::bootstrap::connect_timeout() + Duration::from_secs(5);
        thread::Builder::new()
            .name("rendezvous".into())
            .spawn(move || {
                let r = crate::bootstrap::rendezvous(&listener, &secret, job, n, deadline);
                let _ = tx.send(r.map(|(conns, _)| conns));
            })
            .map_err(|e| e.to_string())?;
        boot_rx = Some(rx);
    }
    // Held while the job runs: a process whose connection to us breaks ends itself.
    let mut _control = Vec::new();
    let mut children: Vec<(Slot, Child)> = Vec::new();
    let mut pumps = Vec::new();
    for s in &slots {
        let mut cmd = Command::new(&opts.program);
        cmd.args(&opts.args)
            .env("CHARMRS_PES", s.pes.to_string())
            .env("CHARMRS_RANK", s.rank.to_string())
            .env("CHARMRS_NUM_PROCESSES", slots.len().to_string())
            .env("CHARMRS_FIRST_PE", s.first_pe.to_string())
            .env("CHARMRS_TOTAL_PES", opts.pes.to_string())
            .env("CHARMRS_JOB", format!("{job:016x}"))
            .env("CHARMRS_SECRET", secret.to_hex())
            .env("CHARMRS_RENDEZVOUS", &rendezvous)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                end_all(&mut children);
                return Err(format!("cannot start '{}': {e}", opts.program));
            }
        };
        let prefix = opts.prefix.then(|| format!("[{}] ", s.describe().to_lowercase()));
        if let Some(o) = child.stdout.take() {
            pumps.push(forward(o, prefix.clone(), false));
        }
        if let Some(e) = child.stderr.take() {
            pumps.push(forward(e, prefix, true));
        }
        children.push((*s, child));
    }
    let t0 = Instant::now();
    let mut running: Vec<bool> = vec![true; children.len()];
    // Exit codes processes announced before ending (the job called `exit(code)`), and the
    // code of such an exit once one happened.
    // Per process: `None` while its connection is open, then what it announced.
    let announced: Arc<std::sync::Mutex<Vec<Option<Option<i32>>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; slots.len()]));
    let mut chosen = 0;
    let outcome = loop {
        if stop.load(Ordering::Relaxed) || term.load(Ordering::Relaxed) {
            let (code, sig) = if term.load(Ordering::Relaxed) { (143, "SIGTERM") } else { (130, "SIGINT") };
            end_all(&mut children);
            break Outcome { code, reason: Some(format!("{sig} received: the job was ended")) };
        }
        if let Some(limit) = opts.timeout {
            if t0.elapsed() > limit {
                end_all(&mut children);
                break Outcome {
                    code: 124,
                    reason: Some(format!("the job ran past ++timeout {limit:?} and was ended")),
                };
            }
        }
        if let Some(rx) = &boot_rx {
            match rx.try_recv() {
                Ok(Ok(conns)) => {
                    for (rank, c) in conns.iter().enumerate() {
                        let (mut c, announced) =
                            (c.try_clone().map_err(|e| e.to_string())?, Arc::clone(&announced));
                        thread::spawn(move || {
                            let code = crate::bootstrap::read_announcement(&mut c);
                            announced.lock().unwrap_or_else(|e| e.into_inner())[rank] = Some(code);
                        });
                    }
                    _control = conns;
                    boot_rx = None;
                }
                Ok(Err(e)) => {
                    end_all(&mut children);
                    break Outcome {
                        code: 1,
                        reason: Some(format!("the job's processes did not start: {e}")),
                    };
                }
                Err(_) => {}
            }
        }
        let mut failed = None;
        for (i, (slot, c)) in children.iter_mut().enumerate() {
            if !running[i] {
                continue;
            }
            if let Ok(Some(st)) = c.try_wait() {
                running[i] = false;
                // Its connection closes as it exits: give the reader a moment to see the
                // end of it (only for a job of several, where there is a connection).
                let t = Instant::now();
                let mut wanted = None;
                while !st.success() && st.code().is_some() && _control.len() == slots.len() {
                    if let Some(a) = announced.lock().unwrap_or_else(|e| e.into_inner())[i] {
                        wanted = a;
                        break;
                    }
                    if t.elapsed() > Duration::from_millis(500) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                if st.code().is_some() && st.code() == wanted {
                    // The job chose this code: not a failure.
                    chosen = st.code().unwrap_or(0);
                    continue;
                }
                if !st.success() {
                    failed = Some((*slot, st));
                    break;
                }
            }
        }
        if let Some((mut slot, mut st)) = failed {
            // When one process dies, the others notice and end with an error of their
            // own: the first exit seen may be such a consequence. A process killed by a
            // signal in the same moment is the likelier cause: name it.
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(300) && !killed_by_signal(st) {
                for (i, (s, c)) in children.iter_mut().enumerate() {
                    if running[i] {
                        if let Ok(Some(other)) = c.try_wait() {
                            running[i] = false;
                            if killed_by_signal(other) {
                                (slot, st) = (*s, other);
                            }
                        }
                    }
                }
                thread::sleep(Duration::from_millis(10));
            }
            end_all(&mut children);
            let reason = format!(
                "process {} ({} on host localhost) {}",
                slot.rank,
                slot.describe(),
                describe_status(st)
            );
            break Outcome { code: st.code().filter(|&c| c != 0).unwrap_or(1), reason: Some(reason) };
        }
        if running.iter().all(|r| !r) {
            break Outcome { code: chosen, reason: None };
        }
        thread::sleep(Duration::from_millis(5));
    };
    for p in pumps {
        let _ = p.join();
    }
    Ok(outcome)
}

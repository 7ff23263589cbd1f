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
pub const JOB_ENV: [&str; 6] = [
    "CHARMRS_RANK",
    "CHARMRS_NUM_PROCESSES",
    "CHARMRS_FIRST_PE",
    "CHARMRS_TOTAL_PES",
    "CHARMRS_JOB",
    "CHARMRS_SECRET",
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
        let mut failed = None;
        for (i, (slot, c)) in children.iter_mut().enumerate() {
            if !running[i] {
                continue;
            }
            if let Ok(Some(st)) = c.try_wait() {
                running[i] = false;
                if !st.success() {
                    failed = Some((*slot, st));
                    break;
                }
            }
        }
        if let Some((slot, st)) = failed {
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
            break Outcome { code: 0, reason: None };
        }
        thread::sleep(Duration::from_millis(5));
    };
    for p in pumps {
        let _ = p.join();
    }
    Ok(outcome)
}

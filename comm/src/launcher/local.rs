//! Running a job's processes, on this host (`++local`) or on the hosts of a nodelist
//! (`++nodelist FILE`, through `++remote-shell CMD`, `ssh` by default): start them,
//! forward their output, end the whole job when one fails, on a timeout or on Ctrl-C /
//! SIGTERM, and say which process ended it and how.
//!
//! Each process gets its place in the job through the environment (its PE count, rank,
//! first PE, the job's size, id and secret, the rendezvous: see [`JOB_ENV`]). Each runs
//! in its own process group, so that ending it also ends whatever it started.
//!
//! On other hosts, a process is started as `CMD HOST '. ~/.charmrunrc; cd DIR && exec env
//! VAR=... PROGRAM ARGS...'` (one shell-quoted command line, as `ssh` expects; the
//! host's `~/.charmrunrc` is sourced only if it exists, as charmrun does), in the launcher's working
//! directory, with the launcher's `CHARMRS_*` variables and `CHARMRS_HOST` set to the
//! host's position in the nodelist. Processes are dealt to the hosts round-robin (rank
//! `r` on host `r mod hosts`). The rendezvous listens, for the bootstrap only, on each
//! local address that faces one of the job's hosts (the route's source address;
//! loopback for `++local`), and each host's processes dial the address that faces it.
//! A remote process whose shell is killed still ends: its connection to the launcher
//! breaks, and it leaves the job (see `bootstrap`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::bootstrap::Announcement;
use crate::handshake::Secret;
use crate::launcher::nodelist::{self, Host};
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
    /// Its host: position in the host list (0 for `++local`).
    pub host: u32,
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

/// The processes of a job on `hosts` hosts: `pes / ppn` of `ppn` PEs, or one per host
/// (at most one per PE) sharing the PEs as evenly as possible; dealt to the hosts
/// round-robin.
pub fn plan(opts: &LaunchOptions, hosts: u32) -> Vec<Slot> {
    let hosts = hosts.max(1);
    let n = opts.processes(hosts);
    let mut first = 0;
    (0..n)
        .map(|r| {
            let pes = match opts.ppn {
                Some(k) => k,
                None => opts.pes / n + u32::from(r < opts.pes % n),
            };
            let s = Slot { rank: r, first_pe: first, pes, host: r % hosts };
            first += pes;
            s
        })
        .collect()
}

/// Removes the job's leftover `/dev/shm` files on every host of a nodelist, through the
/// remote shell, giving up on a host after 10 s.
fn clean_remote(opts: &LaunchOptions, hosts: &[Host], job: u64) {
    let mut running = Vec::new();
    for h in hosts {
        let shell = h.shell.as_deref().unwrap_or(&opts.remote_shell);
        let mut words = shell.split_whitespace();
        let Some(first) = words.next() else { continue };
        let mut cmd = Command::new(first);
        cmd.args(words)
            .arg(&h.name)
            .arg(format!("rm -f /dev/shm/charmrs-{job:016x}-*"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(c) = cmd.spawn() {
            running.push(c);
        }
    }
    let t0 = Instant::now();
    for mut c in running {
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if t0.elapsed() > Duration::from_secs(10) => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

/// Quotes `s` for a POSIX shell.
fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The local address the kernel would use to reach `host` (loopback for this machine).
fn local_ip_towards(host: &str) -> Result<std::net::IpAddr, String> {
    use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs, UdpSocket};
    let target = (host, 9)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host '{host}': {e}"))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| format!("host '{host}' has no IPv4 address"))?;
    if target.ip().is_loopback() {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    // A UDP "connection" sends nothing: it only asks the kernel for the route.
    let s = UdpSocket::bind(("0.0.0.0", 0)).map_err(|e| e.to_string())?;
    s.connect(target).map_err(|e| format!("no route to host '{host}': {e}"))?;
    Ok(s.local_addr().map_err(|e| e.to_string())?.ip())
}

/// The rendezvous's listeners, one per local address that faces a host, and the address
/// each host's processes dial.
fn rendezvous_listeners(
    hosts: &[Host],
    remote: bool,
) -> Result<(Vec<std::net::TcpListener>, Vec<String>), String> {
    let mut listeners: Vec<(std::net::IpAddr, std::net::TcpListener, String)> = Vec::new();
    let mut per_host = Vec::with_capacity(hosts.len());
    for h in hosts {
        let ip = if remote { local_ip_towards(&h.name)? } else { std::net::Ipv4Addr::LOCALHOST.into() };
        if let Some((_, _, at)) = listeners.iter().find(|(i, _, _)| *i == ip) {
            per_host.push(at.clone());
            continue;
        }
        let l = std::net::TcpListener::bind((ip, 0))
            .map_err(|e| format!("cannot listen for the job's processes on {ip}: {e}"))?;
        let at = l.local_addr().map_err(|e| e.to_string())?.to_string();
        per_host.push(at.clone());
        listeners.push((ip, l, at));
    }
    Ok((listeners.into_iter().map(|(_, l, _)| l).collect(), per_host))
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The launcher's exit status.
    pub code: i32,
    /// Why, when it is not 0 (also printed to stderr).
    pub reason: Option<String>,
}

pub(crate) fn describe_status(st: ExitStatus) -> String {
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

/// [`end_all`] of a job's processes.
fn end_slots(children: &mut [(Slot, Child)]) {
    end_all(&mut children.iter_mut().map(|(_, c)| c).collect::<Vec<_>>());
}

/// Ends every process still running: SIGTERM to its group, SIGKILL after the grace.
pub(crate) fn end_all(children: &mut [&mut Child]) {
    #[cfg(unix)]
    for c in children.iter() {
        signal_group(c, rustix::process::Signal::TERM);
    }
    let t0 = Instant::now();
    while t0.elapsed() < GRACE {
        if children.iter_mut().all(|c| matches!(c.try_wait(), Ok(Some(_)))) {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    for c in children.iter_mut() {
        #[cfg(unix)]
        signal_group(c, rustix::process::Signal::KILL);
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Makes the process `cmd` starts get SIGTERM when the launcher dies (Linux's parent
/// death signal): a process still starting up (interpreter imports, the bootstrap) has
/// no connection to the launcher yet to notice that it is gone, and would otherwise run
/// on until its connect timeout. Once running, the connection to the launcher covers it
/// too (and is what covers processes on other hosts).
///
/// The signal is tied to the thread that spawns the process: [`run`] spawns and then
/// waits for the job on the same thread, which lives as long as the job.
///
/// The crate's one `unsafe` block: `pre_exec` is the only way std offers to run code in
/// the child before `exec`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn end_with_launcher(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let launcher = rustix::process::getpid();
    let ends_with_launcher = move || -> std::io::Result<()> {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
        // The launcher may have died between fork and prctl: then nobody sends the
        // signal, and the parent is already another process.
        if rustix::process::getppid() != Some(launcher) {
            return Err(rustix::io::Errno::SRCH.into());
        }
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe work is allowed: it makes two system calls (prctl, getppid),
    // builds an error from an errno without allocating, and touches no lock.
    unsafe {
        cmd.pre_exec(ends_with_launcher);
    }
}

/// Copies a child's output to ours, line by line, with an optional prefix.
pub(crate) fn forward(
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

/// Without `++nodelist` or `++local`: the nodelist charmrun would use (`$NODELIST`,
/// `./nodelist`, `~/.nodelist`), if there is one that names another host; then `opts`
/// with it. A nodelist of this machine only keeps the launch local, as charmrun's
/// `++local` rule has it.
fn found_nodelist(opts: &LaunchOptions) -> Result<Option<LaunchOptions>, String> {
    if opts.nodelist.is_some() || opts.local_given {
        return Ok(None);
    }
    let Some((path, from)) = nodelist::discover(|k| std::env::var(k).ok(), |p| p.is_file()) else {
        return Ok(None);
    };
    let hosts = nodelist::read(&path, &opts.nodegroup).map_err(|e| format!("{e} (found as {from})"))?;
    if nodelist::all_local(&hosts, &crate::bootstrap::host_name()) {
        return Ok(None);
    }
    if !opts.quiet {
        eprintln!("charmrs-run: using the nodelist {} (found as {from}; ++local runs here)", path.display());
    }
    let mut o = opts.clone();
    o.nodelist = Some(path);
    o.local = false;
    Ok(Some(o))
}

/// Asks the job's processes, one after the other (the first 16), to print where they
/// are (SIGUSR1: each PE's running entry method, and a Python worker's thread stacks),
/// each under a line that names it, before the job is ended on `++timeout`.
fn dump_stacks(children: &[(Slot, Child)]) {
    #[cfg(unix)]
    for (slot, c) in children.iter().take(16) {
        let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) else { continue };
        eprintln!("charmrs-run: ++timeout: where process {} ({}) is:", slot.rank, slot.describe());
        if rustix::process::kill_process(pid, rustix::process::Signal::USR1).is_ok() {
            // Time for the process to print and for its output to be forwarded.
            thread::sleep(Duration::from_millis(150));
        }
    }
    if children.len() > 16 {
        eprintln!("charmrs-run: ++timeout: (the other {} processes not shown)", children.len() - 16);
    }
}

/// A new job's secret and id.
pub(crate) fn new_job() -> Result<(Secret, u64), String> {
    let secret = Secret::random().map_err(|e| e.to_string())?;
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| e.to_string())?;
    Ok((secret, u64::from_le_bytes(b)))
}

/// Flags raised by SIGINT and SIGTERM.
pub(crate) fn watch_signals() -> (Arc<AtomicBool>, Arc<AtomicBool>) {
    let stop = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    #[cfg(unix)]
    {
        let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop));
        let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&term));
    }
    (stop, term)
}

/// How the job ends if a signal came or it ran past its `timeout` (since `t0`).
pub(crate) fn stopped(
    stop: &AtomicBool,
    term: &AtomicBool,
    timeout: Option<Duration>,
    t0: Instant,
) -> Option<Outcome> {
    if stop.load(Ordering::Relaxed) || term.load(Ordering::Relaxed) {
        let (code, sig) = if term.load(Ordering::Relaxed) { (143, "SIGTERM") } else { (130, "SIGINT") };
        return Some(Outcome { code, reason: Some(format!("{sig} received: the job was ended")) });
    }
    let limit = timeout.filter(|l| t0.elapsed() > *l)?;
    Some(Outcome { code: 124, reason: Some(format!("the job ran past ++timeout {limit:?} and was ended")) })
}

/// The connections of the job's `n` processes, once all registered at the
/// rendezvous on `listeners` (on a thread of its own).
pub(crate) type Boot = std::sync::mpsc::Receiver<Result<Vec<std::net::TcpStream>, String>>;

/// Starts the rendezvous of a job of `n` processes (see `bootstrap::rendezvous`).
pub(crate) fn start_rendezvous(
    listeners: Vec<std::net::TcpListener>,
    secret: &Secret,
    job: u64,
    n: u32,
) -> Result<Boot, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let secret = secret.clone();
    let deadline = Instant::now() + crate::bootstrap::connect_timeout() + Duration::from_secs(5);
    thread::Builder::new()
        .name("rendezvous".into())
        .spawn(move || {
            let r = crate::bootstrap::rendezvous(&listeners, &secret, job, n, deadline);
            let _ = tx.send(r.map(|(conns, _)| conns));
        })
        .map_err(|e| e.to_string())?;
    Ok(rx)
}

/// Reads what each process announces on its connection (a thread each), into
/// `announced[rank]` once its connection ends.
pub(crate) fn read_announcements(
    conns: &[std::net::TcpStream],
    announced: &Arc<std::sync::Mutex<Vec<Option<Announcement>>>>,
) -> Result<(), String> {
    for (rank, c) in conns.iter().enumerate() {
        let (mut c, announced) = (c.try_clone().map_err(|e| e.to_string())?, Arc::clone(announced));
        thread::spawn(move || {
            let said = crate::bootstrap::read_announcement(&mut c);
            announced.lock().unwrap_or_else(|e| e.into_inner())[rank] = Some(said);
        });
    }
    Ok(())
}

/// Starts `cmd` in a process group of its own, ending with the launcher.
pub(crate) fn spawn_alone(cmd: &mut Command) -> std::io::Result<Child> {
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    #[cfg(target_os = "linux")]
    end_with_launcher(cmd);
    cmd.spawn()
}

/// Runs the job (on this host, on the hosts of a nodelist, or through the MPI launcher
/// with `++mpiexec`) and returns how it ended.
///
/// # Errors
/// A process that cannot be started (the message names the program).
pub fn run(opts: &LaunchOptions) -> Result<Outcome, String> {
    if let Some(how) = opts.mpiexec {
        return crate::launcher::mpiexec::run(opts, how);
    }
    let found;
    let opts = match found_nodelist(opts)? {
        Some(o) => {
            found = o;
            &found
        }
        None => opts,
    };
    let hosts: Vec<Host> = match &opts.nodelist {
        Some(path) => nodelist::read(path, &opts.nodegroup).map_err(|e| e.to_string())?,
        None => vec![Host { name: "localhost".into(), cpus: None, shell: None }],
    };
    let remote = opts.nodelist.is_some();
    let slots = plan(opts, hosts.len() as u32);
    let cwd = std::env::current_dir().map_err(|e| format!("no working directory: {e}"))?;
    // The program as the remote shell will find it: absolute if given with a path.
    let program = if remote && opts.program.contains('/') && !opts.program.starts_with('/') {
        cwd.join(&opts.program).display().to_string()
    } else {
        opts.program.clone()
    };
    let (secret, job) = new_job()?;
    let (stop, term) = watch_signals();
    // The rendezvous: processes of a job of several register there and learn each
    // other's addresses (bootstrap.rs).
    let mut boot_rx = None;
    let mut rendezvous = vec![String::new(); hosts.len()];
    if slots.len() > 1 {
        let (listeners, at) = rendezvous_listeners(&hosts, remote)?;
        rendezvous = at;
        boot_rx = Some(start_rendezvous(listeners, &secret, job, slots.len() as u32)?);
    }
    // Held while the job runs: a process whose connection to us breaks ends itself.
    let mut _control = Vec::new();
    let mut children: Vec<(Slot, Child)> = Vec::new();
    let mut pumps = Vec::new();
    for s in &slots {
        let mut vars: Vec<(&str, String)> = vec![
            ("CHARMRS_PES", s.pes.to_string()),
            ("CHARMRS_RANK", s.rank.to_string()),
            ("CHARMRS_NUM_PROCESSES", slots.len().to_string()),
            ("CHARMRS_FIRST_PE", s.first_pe.to_string()),
            ("CHARMRS_TOTAL_PES", opts.pes.to_string()),
            ("CHARMRS_JOB", format!("{job:016x}")),
            ("CHARMRS_SECRET", secret.to_hex()),
            ("CHARMRS_RENDEZVOUS", rendezvous[s.host as usize].clone()),
            ("CHARMRS_HOST", s.host.to_string()),
        ];
        if opts.quiet {
            vars.extend([("CHARMRS_WARN", "all".to_string()), ("CHARMRS_QUIET", "1".to_string())]);
        }
        let mut cmd = if remote {
            let host = &hosts[s.host as usize];
            let shell = host.shell.as_deref().unwrap_or(&opts.remote_shell);
            let mut words = shell.split_whitespace();
            let mut cmd = Command::new(words.next().ok_or("++remote-shell is empty")?);
            cmd.args(words).arg(&host.name);
            // The launcher's own CHARMRS_* settings (log level, warnings, ...) go along.
            // The host's ~/.charmrunrc first, if it has one: charmrun's way to set the
            // environment of remote processes (module paths, virtualenvs, ...).
            let mut line = format!(
                "if [ -f \"$HOME/.charmrunrc\" ]; then . \"$HOME/.charmrunrc\"; fi; cd {} && exec env",
                sh_quote(&cwd.display().to_string())
            );
            let inherited: Vec<(String, String)> = std::env::vars()
                .filter(|(k, _)| k.starts_with("CHARMRS_") && !vars.iter().any(|(v, _)| v == k))
                .collect();
            for (k, v) in inherited.iter().map(|(k, v)| (k.as_str(), v.clone())).chain(vars.iter().cloned()) {
                line.push(' ');
                line.push_str(&sh_quote(&format!("{k}={v}")));
            }
            for w in std::iter::once(&program).chain(&opts.args) {
                line.push(' ');
                line.push_str(&sh_quote(w));
            }
            cmd.arg(line);
            cmd
        } else {
            let mut cmd = Command::new(&opts.program);
            cmd.args(&opts.args).envs(vars.iter().map(|(k, v)| (k, v)));
            cmd
        };
        // Interactive mode: the first process reads the launcher's input (its prompt).
        let stdin = if opts.interactive && s.rank == 0 { Stdio::inherit() } else { Stdio::null() };
        cmd.stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = match spawn_alone(&mut cmd) {
            Ok(c) => c,
            Err(e) => {
                end_slots(&mut children);
                let what = if remote {
                    format!("the remote shell for host {}", hosts[s.host as usize].name)
                } else {
                    format!("'{}'", opts.program)
                };
                return Err(format!("cannot start {what}: {e}"));
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
    // What processes announced before ending (an exit code the job chose, or the process
    // whose loss ended them). Per process: `None` while its connection is open.
    let announced: Arc<std::sync::Mutex<Vec<Option<Announcement>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; slots.len()]));
    // How the processes that ended so far ended.
    let mut ended: Vec<Option<ExitStatus>> = vec![None; children.len()];
    let mut chosen = 0;
    let outcome = loop {
        if let Some(o) = stopped(&stop, &term, opts.timeout, t0) {
            if o.code == 124 && opts.dump_on_timeout && !remote {
                dump_stacks(&children);
            }
            end_slots(&mut children);
            break o;
        }
        if let Some(rx) = &boot_rx {
            match rx.try_recv() {
                Ok(Ok(conns)) => {
                    read_announcements(&conns, &announced)?;
                    _control = conns;
                    boot_rx = None;
                }
                Ok(Err(e)) => {
                    end_slots(&mut children);
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
                ended[i] = Some(st);
                // Its connection closes as it exits: give the reader a moment to see the
                // end of it (only for a job of several, where there is a connection).
                let t = Instant::now();
                let mut wanted = None;
                while !st.success() && st.code().is_some() && _control.len() == slots.len() {
                    if let Some(a) = announced.lock().unwrap_or_else(|e| e.into_inner())[i] {
                        wanted = a.exit;
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
                            ended[i] = Some(other);
                            if killed_by_signal(other) {
                                (slot, st) = (*s, other);
                            }
                        }
                    }
                }
                // A process that said it ends because another vanished names that one
                // (which may have ended first, seen later in this loop's order).
                let follows = announced.lock().unwrap_or_else(|e| e.into_inner())[slot.rank as usize]
                    .and_then(|a| a.follows)
                    .map(|r| r as usize);
                if let Some(r) = follows.filter(|&r| r < children.len()) {
                    if let Some(other) = ended[r] {
                        (slot, st) = (children[r].0, other);
                    }
                }
                thread::sleep(Duration::from_millis(10));
            }
            end_slots(&mut children);
            let reason = format!(
                "process {} ({} on host {}) {}",
                slot.rank,
                slot.describe(),
                hosts[slot.host as usize].name,
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
    // Shared-memory files that no process got to unlink (a process that died between
    // creating a segment and its peer taking it): on this host, and on the others
    // through the remote shell.
    #[cfg(target_os = "linux")]
    if let Err(e) = charmrs_shm::segment::Segment::remove_job(&format!("{job:016x}")) {
        eprintln!("charmrs-run: could not clean /dev/shm of the job's files: {e}");
    }
    if remote {
        clean_remote(opts, &hosts, job);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> LaunchOptions {
        LaunchOptions::parse(args.iter().copied().chain(["prog"])).expect("valid")
    }

    #[test]
    fn processes_are_dealt_round_robin_and_pes_shared_evenly() {
        let p = plan(&opts(&["+p5", "++ppn", "1"]), 3);
        let hosts: Vec<u32> = p.iter().map(|s| s.host).collect();
        assert_eq!(hosts, [0, 1, 2, 0, 1]);
        let p = plan(&opts(&["+p7"]), 3);
        let pes: Vec<(u32, u32)> = p.iter().map(|s| (s.first_pe, s.pes)).collect();
        assert_eq!(pes, [(0, 3), (3, 2), (5, 2)], "one process per host, PEs as even as possible");
        let p = plan(&opts(&["+p2"]), 4);
        assert_eq!(p.len(), 2, "never more processes than PEs");
        let p = plan(&opts(&["+p4", "++ppn", "2"]), 1);
        assert_eq!(p.iter().map(|s| (s.rank, s.first_pe, s.pes)).collect::<Vec<_>>(), [(0, 0, 2), (1, 2, 2)]);
    }

    #[test]
    fn shell_quoting_survives_a_posix_shell() {
        for s in ["plain", "with space", "it's", "$HOME `x` \"q\" \\ ;|&", ""] {
            let out =
                Command::new("sh").arg("-c").arg(format!("printf %s {}", sh_quote(s))).output().expect("sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }
}

//! Starting and ending a job; the state every PE of the process shares.

use std::future::Future;
use std::io::Write;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use charmrs_comm::bootstrap::{self, JobEnv};

use serde::{Deserialize, Serialize};

use crate::chare::registry;
use crate::config::{Config, WarningKind};
use crate::msg::Envelope;
use crate::pe::local::{self, PeLocal};
use crate::pe::net::{start_transport, Layout, Net};
use crate::pe::stats::{self, PeStats};
use crate::pe::{worker, SysMsg};
use crate::queue::inbox::Inbox;
use crate::reduction::Span;
use crate::sched::idle::Sleeper;
use crate::topo;

/// The number of a PE in the job, from 0 to `num_pes() - 1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PeId(pub u32);

impl std::fmt::Display for PeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The main function, started as a task on PE 0 once its thread runs.
type MainTask = Box<dyn FnOnce(&Rc<PeLocal>)>;

/// What other threads may touch of one PE: its inbox and its sleep state.
pub(crate) struct PeShared {
    /// Messages from other PEs.
    pub(crate) inbox: Inbox<Envelope>,
    /// Idle/park/wake state.
    pub(crate) sleeper: Sleeper,
    /// The entry method this PE runs (its id + 1; 0: none), for SIGUSR1's report.
    pub(crate) running: std::sync::atomic::AtomicU32,
}

/// State shared by all PEs of the process.
pub(crate) struct Shared {
    /// The parsed configuration.
    pub(crate) config: Config,
    /// One entry per PE.
    pub(crate) pes: Box<[PeShared]>,
    /// The spanning tree over all PEs (host, process, PE levels) that broadcasts,
    /// creation and QD travel.
    pub(crate) span: Span,
    /// More PEs than usable cores: idle PEs must not spin.
    pub(crate) oversubscribed: bool,
    exiting: AtomicBool,
    exit_code: AtomicI32,
    /// Each PE leaves its counters here when its loop ends.
    pub(crate) stats: Mutex<Vec<Option<PeStats>>>,
    /// Where the job's PEs live.
    pub(crate) layout: Layout,
    /// The other processes (none in a job of one process).
    pub(crate) net: OnceLock<Net>,
    /// The task pool's deques.
    pub(crate) pool: crate::pool::PoolShared,
}

impl Shared {
    /// Number of PEs of the job.
    #[inline]
    pub(crate) fn num_pes(&self) -> u32 {
        self.layout.total()
    }

    /// Number of processes of the job.
    #[inline]
    pub(crate) fn num_processes(&self) -> u32 {
        self.layout.num_procs()
    }

    /// Whether PE `pe` runs in this process.
    #[inline]
    pub(crate) fn is_local(&self, pe: PeId) -> bool {
        pe.0.wrapping_sub(self.layout.first_pe()) < self.pes.len() as u32
    }

    /// The shared state of PE `pe` of this process.
    #[inline]
    pub(crate) fn pe(&self, pe: PeId) -> &PeShared {
        &self.pes[(pe.0 - self.layout.first_pe()) as usize]
    }

    /// Sends a message to a PE of another process.
    pub(crate) fn send_remote(&self, pe: PeId, env: Envelope) {
        match self.net.get() {
            Some(net) => net.send(self, pe, env),
            None => crate::chare::invoke::fatal(&format!(
                "PE {pe} is not in this process and there are no others"
            )),
        }
    }

    /// Pushes a message into the inbox of a PE of this process and wakes it if it sleeps.
    #[inline]
    pub(crate) fn push(&self, pe: PeId, env: Envelope) {
        let target = self.pe(pe);
        // A push onto a non-empty inbox needs no notify: the push that made it
        // non-empty notifies after it (queue/README.md, "Empty to non-empty").
        if target.inbox.push(env) {
            target.sleeper.notify();
        }
    }

    /// True once `exit` was called.
    #[inline]
    pub(crate) fn exiting(&self) -> bool {
        // Relaxed: a hint polled once per loop turn; the Exit message that follows the
        // store is what guarantees every PE leaves its loop.
        self.exiting.load(Ordering::Relaxed)
    }

    /// Ends the job with `code` (the first code wins): this process and the others.
    pub(crate) fn request_exit(&self, code: i32) {
        if self.exit_local(code) {
            if let Some(net) = self.net.get() {
                net.send_exit(&self.layout, code);
            }
        }
    }

    /// Ends this process's part of the job with `code`; false if it was ending already.
    pub(crate) fn exit_local(&self, code: i32) -> bool {
        if self.exiting.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.exit_code.store(code, Ordering::Release);
        let first = self.layout.first_pe();
        for pe in first..first + self.pes.len() as u32 {
            self.push(PeId(pe), Envelope::Sys(SysMsg::Exit));
        }
        true
    }
}

/// Handed to the main function: the program's own arguments.
pub struct MainCtx {
    args: Vec<String>,
}

impl MainCtx {
    /// The program's arguments without the runtime options (`args()[0]` is the program).
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

/// Starts the runtime with the options of the command line (`+p4`, `+stats`, ...: see
/// [`crate::config`]) and the `CHARMRS_*` variables, runs `main` on PE 0, and ends the
/// process when a chare calls [`exit`] (with its code) or [`abort`].
///
/// A bad runtime option prints `charmrs: <reason>` and exits with status 2.
pub fn start<F, Fut>(main: F) -> !
where
    F: FnOnce(MainCtx) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    init_logging();
    match Config::from_env() {
        Ok(config) => start_with(config, main),
        Err(e) => {
            eprintln!("charmrs: {e}");
            std::process::exit(2)
        }
    }
}

/// Like [`start`], with a configuration built by the caller.
pub fn start_with<F, Fut>(config: Config, main: F) -> !
where
    F: FnOnce(MainCtx) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    match run_with(config, main) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("charmrs: {e}");
            std::process::exit(2)
        }
    }
}

/// Like [`start_with`], but returns the job's exit code to the caller instead of ending
/// the process, for hosts that must tidy up before they exit (the Python package
/// flushes its streams and runs its `atexit` handlers). The calling thread runs the
/// first PE of this process; the runtime has stopped, the other PE threads have ended
/// and the connections to other processes are closed when it returns. A runtime runs
/// once per process: a second call is an error.
///
/// # Errors
/// The job cannot start (see [`crate::Error`]): the runtime already ran in this
/// process, or the topology or the connection to the other processes failed.
pub fn run_with<F, Fut>(config: Config, main: F) -> Result<i32, crate::Error>
where
    F: FnOnce(MainCtx) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    init_logging();
    static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if STARTED.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return Err(crate::Error::Usage(
            "the charmrs runtime already ran in this process: start it once".into(),
        ));
    }
    let booted = boot(config)?;
    let handles = booted.spawn_pes(1);
    booted.pin(0);
    let shared = Arc::clone(&booted.shared);
    let args = shared.config.user_args.clone();
    let main_task: MainTask = Box::new(move |pe: &Rc<PeLocal>| {
        let fut = main(MainCtx { args });
        pe.spawn_task(Box::pin(crate::chare::invoke::guard_main(fut)), None);
    });
    // `main` runs on PE 0, in the process that holds it.
    let first = PeId(shared.layout.first_pe());
    run_pe(first, Arc::clone(&shared), (first.0 == 0).then_some(main_task));
    let code = finish(&shared, handles);
    if let Some(net) = shared.net.get() {
        net.announce_exit(code);
        net.goodbye();
    }
    Ok(code)
}

/// A job whose PEs all run on background threads, driven from the thread that
/// launched it: for benchmarks, tests and programs that embed charmrs in a larger
/// application. [`Job::run`] runs an async closure on PE 0 and returns its result.
/// Unlike [`start`], it installs no `tracing` subscriber: that is the application's
/// choice.
///
/// ```no_run
/// let job = charmrs::Job::launch(charmrs::Config::default()).expect("job started");
/// let pes = job.run(|| async { charmrs::num_pes() });
/// assert_eq!(pes, 1);
/// assert_eq!(job.shutdown(), 0);
/// ```
pub struct Job {
    shared: Arc<Shared>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Job {
    /// Starts `config.num_pes` PE threads and returns at once.
    ///
    /// # Errors
    /// [`crate::Error::Config`] for a bad configuration, or when the environment says
    /// this process is one of several of a job (`charmrs-run ++ppn`): an embedded job
    /// runs in one process.
    pub fn launch(config: Config) -> crate::Result<Job> {
        if std::env::var("CHARMRS_NUM_PROCESSES").is_ok_and(|n| n.trim() != "1") {
            return Err(crate::Error::Config(
                "charmrs::Job runs a job in one process; this process was started as one of several".into(),
            ));
        }
        let booted = boot(config)?;
        let handles = booted.spawn_pes(0);
        Ok(Job { shared: booted.shared, handles })
    }

    /// Runs `f()` as a task on PE 0 and blocks this thread until it completes.
    ///
    /// # Panics
    /// If the job has ended (a chare called [`exit`]).
    pub fn run<F, Fut, R>(&self, f: F) -> R
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let start: Box<dyn FnOnce() + Send> = Box::new(move || {
            let fut = f();
            crate::spawn(async move {
                let _ = tx.send(fut.await);
            });
        });
        self.shared.push(PeId(0), Envelope::Sys(SysMsg::Run(start)));
        loop {
            match rx.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(r) => return r,
                // The job ended (a chare called `exit`): PE 0 will never run the task,
                // and the message holding the sender stays in its inbox. Do not hang.
                Err(_) if self.handles.iter().all(|h| h.is_finished()) => {
                    panic!("charmrs::Job::run: the job ended before the task completed")
                }
                Err(_) => {}
            }
        }
    }

    /// Ends the job (if no chare did) and returns its exit code.
    pub fn shutdown(mut self) -> i32 {
        self.shared.request_exit(0);
        finish(&self.shared, std::mem::take(&mut self.handles))
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.handles.is_empty() {
            self.shared.request_exit(0);
            finish(&self.shared, std::mem::take(&mut self.handles));
        }
    }
}

/// A job whose shared state exists and whose PE threads are not started yet.
struct Booted {
    shared: Arc<Shared>,
    cpus: Vec<Option<usize>>,
    pin_warned: Arc<AtomicBool>,
}

/// Checks the registration table, plans PE placement, builds the shared state.
fn boot(config: Config) -> crate::Result<Booted> {
    registry::init().map_err(|e| crate::Error::Config(e.to_string()))?;
    crate::chare::invoke::install_panic_hook();
    // A process of a job of several joins the others first: the layout decides PE
    // numbers and placement.
    let mut job = JobEnv::from_env(config.num_pes).map_err(|e| crate::Error::Config(e.to_string()))?;
    if let Some(env) = &mut job {
        env.signature = registry::signature();
    }
    let (layout, mesh) = match &job {
        None => (Layout::single(config.num_pes), None),
        Some(env) => {
            let mesh = match bootstrap::join(env) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("charmrs: process {}: {e}", env.rank);
                    std::process::exit(1)
                }
            };
            let layout = Layout::from_procs(env.rank, &mesh.procs).map_err(crate::Error::Config)?;
            if layout.local_pes() != config.num_pes {
                return Err(crate::Error::Config(format!(
                    "the job's table gives this process {} PEs, it was started with {}",
                    layout.local_pes(),
                    config.num_pes
                )));
            }
            (layout, Some(mesh))
        }
    };
    // Processes sharing a host take consecutive slices of its cores.
    let (offset, host_pes) = layout.host_offset();
    let mut placement = topo::plan(host_pes, config.pin);
    placement.cpus = placement.cpus.into_iter().skip(offset as usize).take(config.num_pes as usize).collect();
    // Warnings go to stderr as plain lines (not through the tracing subscriber, whose
    // default level a user may have turned off): they are for the person at the terminal.
    for w in placement.warnings.iter().filter(|w| config.warning_enabled(w.kind)) {
        eprintln!("charmrs: warning: {w}");
    }
    tracing::debug!(source = ?placement.source, cpus = ?placement.cpus, "PE placement");
    let n = config.num_pes;
    let shared = Arc::new(Shared {
        pes: (0..n)
            .map(|_| PeShared {
                inbox: Inbox::new(),
                sleeper: Sleeper::new(),
                running: std::sync::atomic::AtomicU32::new(0),
            })
            .collect(),
        oversubscribed: placement.oversubscribed,
        exiting: AtomicBool::new(false),
        exit_code: AtomicI32::new(0),
        stats: Mutex::new((0..n).map(|_| None).collect()),
        span: Span::new(
            (0..layout.total()).map(PeId),
            |p| layout.host_of(p),
            |p| layout.proc_of(p),
            config.tree_arity,
        ),
        layout,
        net: OnceLock::new(),
        pool: crate::pool::PoolShared::new(n as usize),
        config,
    });
    if let (Some(mesh), Some(env)) = (mesh, &job) {
        let net = start_transport(&shared, mesh, env.job).map_err(crate::Error::Config)?;
        let _ = shared.net.set(net);
    }
    dump_on_signal(&shared);
    Ok(Booted { shared, cpus: placement.cpus, pin_warned: Arc::new(AtomicBool::new(false)) })
}

/// The job SIGUSR1 reports on (the last one started in this process).
static DUMPED: Mutex<Option<std::sync::Weak<Shared>>> = Mutex::new(None);

/// Makes SIGUSR1 print, for each PE of this process, the entry method it is running
/// (or that it runs none) on stderr: `kill -USR1 PID` shows where a job that hangs
/// is stuck, and the launcher asks for it before it ends a job on `++timeout`. One
/// thread per process waits for the signal; `CHARMRS_SIGUSR1=0` leaves the signal
/// alone (its default action ends the process).
fn dump_on_signal(shared: &Arc<Shared>) {
    #[cfg(unix)]
    {
        static STARTED: std::sync::Once = std::sync::Once::new();
        if std::env::var("CHARMRS_SIGUSR1").as_deref() == Ok("0") {
            return;
        }
        *DUMPED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(shared));
        STARTED.call_once(|| {
            let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1]) else {
                return;
            };
            let _ = std::thread::Builder::new().name("charmrs-sigusr1".into()).spawn(move || {
                for _ in signals.forever() {
                    let job =
                        DUMPED.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|w| w.upgrade());
                    if let Some(shared) = job {
                        eprint!("{}", running_report(&shared));
                    }
                }
            });
        });
    }
    #[cfg(not(unix))]
    let _ = shared;
}

/// A line per PE of this process: the entry method it runs, or that it runs none.
fn running_report(shared: &Shared) -> String {
    let first = shared.layout.first_pe();
    let proc_ = shared.layout.proc_of(PeId(first));
    let mut out = String::new();
    for (i, p) in shared.pes.iter().enumerate() {
        let what = match p.running.load(Ordering::Relaxed) {
            0 => "runs no entry method (idle, or between messages)".to_string(),
            id => match registry::entry(registry::EpId(id - 1)) {
                Some(d) => format!("runs {}", d.name()),
                None => format!("runs entry method {}", id - 1),
            },
        };
        out.push_str(&format!("charmrs: process {proc_}: PE {} {what}\n", first + i as u32));
    }
    out
}

impl Booted {
    /// Pins the calling thread for PE `pe` (warns once if refused).
    fn pin(&self, pe: u32) {
        pin_for(&self.shared, self.cpus.get(pe as usize).copied().flatten(), &self.pin_warned);
    }

    /// Starts the threads of this process's PEs from the `skip`-th on.
    fn spawn_pes(&self, skip: u32) -> Vec<std::thread::JoinHandle<()>> {
        let base = self.shared.layout.first_pe();
        (skip..self.shared.pes.len() as u32)
            .map(|i| {
                let p = base + i;
                let shared = Arc::clone(&self.shared);
                let cpu = self.cpus.get(i as usize).copied().flatten();
                let warned = Arc::clone(&self.pin_warned);
                std::thread::Builder::new()
                    .name(format!("pe-{p}"))
                    .spawn(move || {
                        pin_for(&shared, cpu, &warned);
                        let mut body = Some(move || run_pe(PeId(p), shared, None));
                        let mut run = || {
                            if let Some(b) = body.take() {
                                b()
                            }
                        };
                        match PE_THREAD_WRAPPER.get() {
                            Some(wrap) => wrap(&mut run),
                            None => run(),
                        }
                    })
                    .expect("spawning a PE thread")
            })
            .collect()
    }
}

/// Runs around the whole life of each PE thread the runtime starts (see
/// [`set_pe_thread_wrapper`]).
static PE_THREAD_WRAPPER: std::sync::OnceLock<fn(&mut (dyn FnMut() + Send))> = std::sync::OnceLock::new();

/// Makes every PE thread the runtime starts run its loop inside `wrap` (which must call
/// the function it is given, once): for a language binding that needs per-thread state
/// for the thread's whole life (the Python package keeps each PE thread's interpreter
/// state, which greenlets belong to). Set once, before the runtime starts; later calls
/// are ignored. Not a public API.
#[doc(hidden)]
pub fn set_pe_thread_wrapper(wrap: fn(&mut (dyn FnMut() + Send))) {
    let _ = PE_THREAD_WRAPPER.set(wrap);
}

/// Runs around each busy turn of the scheduler loop of a PE that is alone in its
/// process (see [`set_pe_turn_wrapper`]).
pub(crate) static PE_TURN_WRAPPER: std::sync::OnceLock<fn(&mut dyn FnMut())> = std::sync::OnceLock::new();

/// Makes the scheduler of a PE that is the only one of its process run each turn of its
/// loop that does work (the messages it takes, the tasks it polls, the timers it fires;
/// never its idle wait) inside `wrap`, which must call the function it is given, once.
/// For a language binding whose every call into the language takes a global lock: the
/// Python package takes the GIL once per turn instead of once per message, and releases
/// it whenever the PE idles. Not applied to processes of several PEs, which must be free
/// to interleave between messages. Set once, before the runtime starts; later calls are
/// ignored. Not a public API.
#[doc(hidden)]
pub fn set_pe_turn_wrapper(wrap: fn(&mut dyn FnMut())) {
    let _ = PE_TURN_WRAPPER.set(wrap);
}

fn pin_for(shared: &Shared, cpu: Option<usize>, warned: &AtomicBool) {
    if let Some(cpu) = cpu {
        if !topo::pin_current_thread(cpu)
            && !warned.swap(true, Ordering::Relaxed)
            && shared.config.warning_enabled(WarningKind::Pinning)
        {
            eprintln!("charmrs: warning: could not pin PE threads to cores; running unpinned");
        }
    }
}

/// Joins the PE threads, reports errors nobody awaited and the `+stats` table, and
/// returns the job's exit code.
fn finish(shared: &Shared, handles: Vec<std::thread::JoinHandle<()>>) -> i32 {
    for h in handles {
        if h.join().is_err() {
            eprintln!("charmrs: a PE thread ended abnormally");
            return 1;
        }
    }
    let code = shared.exit_code.load(Ordering::Acquire);
    let all = std::mem::take(&mut *shared.stats.lock().unwrap_or_else(|e| e.into_inner()));
    let all: Vec<PeStats> = all.into_iter().flatten().collect();
    let lost: usize = all.iter().map(|s| s.unobserved_errors.len()).sum();
    for s in &all {
        for e in &s.unobserved_errors {
            eprintln!("charmrs: error never awaited: {e}");
        }
    }
    if shared.config.stats {
        let mut out = std::io::stdout().lock();
        // In a job of several processes, each prints its own PEs' table, titled.
        let whose = (shared.layout.num_procs() > 1).then(|| shared.layout.describe(shared.layout.rank));
        let _ = stats::print_table(&mut out, &all, whose.as_deref());
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    if code == 0 && lost > 0 {
        1
    } else {
        code
    }
}

/// Runs the scheduler loop of PE `id` on this thread until the job ends.
fn run_pe(id: PeId, shared: Arc<Shared>, main_task: Option<MainTask>) {
    let _span = tracing::info_span!("pe", pe = id.0).entered();
    tracing::debug!("PE loop starts");
    let pe = Rc::new(PeLocal::new(id, Arc::clone(&shared)));
    local::set_current(Some(Rc::clone(&pe)));
    if let Some(task) = main_task {
        task(&pe);
    }
    let body = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker::run(&pe)));
    if body.is_err() {
        eprintln!("charmrs: internal error: the scheduler of PE {id} panicked");
        let _ = std::io::stderr().flush();
        std::process::exit(1);
    }
    tracing::debug!("PE loop ends");
    let mut stats = pe.take_stats();
    stats.wakes = shared.pe(id).sleeper.stats().wakes;
    let i = (id.0 - shared.layout.first_pe()) as usize;
    shared.stats.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(stats);
    local::set_current(None);
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHARMRS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

/// Ends the job: every PE leaves its loop after the message it is running, and the
/// process exits with `code` (Charm4py's `exit()`). Returns to the caller, which should
/// return too.
pub fn exit(code: i32) {
    local::with_pe(|pe| pe.shared.request_exit(code));
}

/// Ends the job at once with `msg` on stderr and exit status 1 (Charm4py's `abort`).
pub fn abort(msg: &str) -> ! {
    let pe = local::try_with_pe(|pe| pe.id.0.to_string()).unwrap_or_else(|| "?".into());
    eprintln!("charmrs: abort on PE {pe}: {msg}");
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(1)
}

/// The PE this code runs on.
///
/// # Panics
/// Outside a PE of a running job.
pub fn my_pe() -> PeId {
    local::with_pe(|pe| pe.id)
}

/// Number of PEs in the job.
pub fn num_pes() -> u32 {
    local::with_pe(|pe| pe.shared.num_pes())
}

/// The host this code runs on (hosts are numbered from 0 in the order of their first
/// PE).
pub fn my_host() -> u32 {
    local::with_pe(|pe| pe.shared.layout.my_host())
}

/// Number of hosts of the job.
pub fn num_hosts() -> u32 {
    local::with_pe(|pe| pe.shared.layout.num_hosts())
}

/// The PEs of host `host`, in order (empty for a host that does not exist).
pub fn get_host_pes(host: u32) -> Vec<PeId> {
    local::with_pe(|pe| pe.shared.layout.host_pes(host))
}

/// The host PE `pe` is on.
pub fn get_pe_host(pe: PeId) -> u32 {
    local::with_pe(|p| p.shared.layout.host_of(pe))
}

/// The first PE of host `host`.
///
/// # Panics
/// If the host does not exist.
pub fn get_host_first_pe(host: u32) -> PeId {
    *get_host_pes(host).first().unwrap_or_else(|| panic!("host {host} does not exist"))
}

/// Number of PEs on host `host` (0 for a host that does not exist).
pub fn get_host_num_pes(host: u32) -> u32 {
    get_host_pes(host).len() as u32
}

/// The rank of PE `pe` among the PEs of its host (from 0).
pub fn get_pe_host_rank(pe: PeId) -> u32 {
    let host = get_pe_host(pe);
    get_host_pes(host).iter().position(|&p| p == pe).map_or(0, |r| r as u32)
}

/// The topology-aware spanning tree over `pes` (all PEs if `None`) rooted at `root`,
/// with fan-out `bfactor` at each level (hosts, processes of a host, PEs of a process),
/// as broadcasts and reductions use it: the parent (none for the root) and the children
/// of `pe`. Charm4py's `charm.getTopoTreeEdges(pe, root_pe, pes, bfactor)`.
///
/// # Panics
/// If `pe` or `root` is not among `pes`.
pub fn get_topo_tree_edges(
    pe: PeId,
    root: PeId,
    pes: Option<&[PeId]>,
    bfactor: u32,
) -> (Option<PeId>, Vec<PeId>) {
    let span = topo_span(pes, bfactor);
    (span.parent(root, pe), span.children(root, pe))
}

/// The subtrees under `root` in the tree of [`get_topo_tree_edges`]: one list per child of
/// the root, the child first, then the rest of its subtree. Charm4py's
/// `charm.getTopoSubtrees(root_pe, pes, bfactor)`.
///
/// # Panics
/// If `root` is not among `pes`.
pub fn get_topo_subtrees(root: PeId, pes: Option<&[PeId]>, bfactor: u32) -> Vec<Vec<PeId>> {
    let span = topo_span(pes, bfactor);
    span.children(root, root)
        .into_iter()
        .map(|sub| {
            let mut out = vec![sub];
            let mut at = 0;
            while at < out.len() {
                let kids = span.children(root, out[at]);
                out.extend(kids);
                at += 1;
            }
            out
        })
        .collect()
}

fn topo_span(pes: Option<&[PeId]>, bfactor: u32) -> Span {
    local::with_pe(|p| {
        let l = &p.shared.layout;
        let mut list: Vec<PeId> = match pes {
            Some(pes) => pes.to_vec(),
            None => (0..l.total()).map(PeId).collect(),
        };
        list.sort();
        list.dedup();
        Span::new(list, |q| l.host_of(q), |q| l.proc_of(q), bfactor)
    })
}

/// The process (node) this code runs in; processes are numbered from 0 in PE order.
pub fn my_node() -> u32 {
    local::with_pe(|pe| pe.shared.layout.rank)
}

/// Number of processes (nodes) of the job.
pub fn num_nodes() -> u32 {
    local::with_pe(|pe| pe.shared.layout.num_procs())
}

/// The first PE of process `node`.
///
/// # Panics
/// If the process does not exist.
pub fn get_node_first_pe(node: u32) -> PeId {
    local::with_pe(|pe| {
        assert!(node < pe.shared.layout.num_procs(), "process {node} does not exist");
        PeId(pe.shared.layout.first_pe_of(node))
    })
}

/// Runs `fut` on the current PE, interleaved with its messages (a coroutine that belongs
/// to no chare).
pub fn spawn(fut: impl Future<Output = ()> + 'static) {
    local::with_pe(|pe| pe.spawn_task(Box::pin(crate::chare::invoke::guard_main(fut)), None));
}

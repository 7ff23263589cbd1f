//! `++mpiexec`: the job's processes started by the cluster's MPI launcher (charmrun's
//! option of the same name): `mpiexec -n P env CHARMRS_...=... PROGRAM ARGS...`, or the
//! command `++remote-shell` names (`srun`, `mpirun --oversubscribe`, ...), without
//! `-n P` for `++mpiexec-no-n`. The MPI launcher decides where the processes run (the
//! batch system's allocation, its host file); each process takes its rank from the
//! variable its launcher sets (`OMPI_COMM_WORLD_RANK`, `PMIX_RANK`, `PMI_RANK`,
//! `SLURM_PROCID`, ...: see `bootstrap`) and joins the job through this launcher's
//! rendezvous, as with ssh. Nothing of MPI is used beyond starting the processes.
//!
//! The rendezvous listens on the address of this host's default route (the one the
//! other hosts of a cluster reach it by; loopback on a host without one), or on
//! `CHARMRS_RENDEZVOUS_IP` if set. The job's variables are on the command line (as
//! `env` arguments), because MPI launchers forward different sets of environment
//! variables to their processes.
//!
//! The launcher watches the MPI launcher as one process: output is forwarded as it
//! comes (its own, merged; `++prefix` is not applied), Ctrl-C, SIGTERM and `++timeout`
//! end its process group, and when it ends with a status that no process of the job
//! chose (`exit(n)`), the job failed; the reason names the first process whose
//! connection ended without a word, if one did.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::bootstrap::Announcement;
use crate::launcher::local::{self, Outcome};
use crate::launcher::options::{LaunchOptions, Mpiexec};

/// Runs the job through the MPI launcher and returns how it ended.
///
/// # Errors
/// The MPI launcher cannot be started, or the rendezvous cannot listen.
pub(crate) fn run(opts: &LaunchOptions, how: Mpiexec) -> Result<Outcome, String> {
    let ppn = opts.ppn.unwrap_or(1);
    let n = opts.pes / ppn;
    let (secret, job) = local::new_job()?;
    let (stop, term) = local::watch_signals();
    let ip = crate::bootstrap::reachable_ip()?;
    let listener = std::net::TcpListener::bind((ip, 0))
        .map_err(|e| format!("cannot listen for the job's processes on {ip}: {e}"))?;
    let at = listener.local_addr().map_err(|e| e.to_string())?.to_string();
    let boot = (n > 1).then(|| local::start_rendezvous(vec![listener], &secret, job, n)).transpose()?;
    let mut vars: Vec<(String, String)> =
        std::env::vars().filter(|(k, _)| k.starts_with("CHARMRS_")).collect();
    let mut set = |k: &str, v: String| {
        vars.retain(|(x, _)| x != k);
        vars.push((k.to_string(), v));
    };
    set("CHARMRS_PES", ppn.to_string());
    set("CHARMRS_NUM_PROCESSES", n.to_string());
    set("CHARMRS_TOTAL_PES", opts.pes.to_string());
    set("CHARMRS_RANK_FROM", "mpi".into());
    set("CHARMRS_JOB", format!("{job:016x}"));
    set("CHARMRS_SECRET", secret.to_hex());
    set("CHARMRS_RENDEZVOUS", at);
    if opts.quiet {
        set("CHARMRS_WARN", "all".into());
        set("CHARMRS_QUIET", "1".into());
    }
    let mut words = opts.remote_shell.split_whitespace();
    let mut cmd = Command::new(words.next().ok_or("++remote-shell (the MPI launcher) is empty")?);
    cmd.args(words);
    if how == Mpiexec::WithCount {
        cmd.args(["-n", &n.to_string()]);
    }
    cmd.arg("env").args(vars.iter().map(|(k, v)| format!("{k}={v}")));
    cmd.arg(&opts.program).args(&opts.args);
    // Interactive mode: MPI launchers give their input to rank 0.
    cmd.stdin(if opts.interactive { Stdio::inherit() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = local::spawn_alone(&mut cmd)
        .map_err(|e| format!("cannot start the MPI launcher '{}': {e}", opts.remote_shell))?;
    let mut pumps = Vec::new();
    if let Some(o) = child.stdout.take() {
        pumps.push(local::forward(o, None, false));
    }
    if let Some(e) = child.stderr.take() {
        pumps.push(local::forward(e, None, true));
    }
    let t0 = Instant::now();
    let announced: Arc<std::sync::Mutex<Vec<Option<Announcement>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; n as usize]));
    let mut boot_rx = boot;
    // Held while the job runs: a process whose connection to us breaks ends itself.
    let mut control = Vec::new();
    let outcome = loop {
        if let Some(o) = local::stopped(&stop, &term, opts.timeout, t0) {
            local::end_all(&mut [&mut child]);
            break o;
        }
        if let Some(rx) = &boot_rx {
            match rx.try_recv() {
                Ok(Ok(conns)) => {
                    local::read_announcements(&conns, &announced)?;
                    control = conns;
                    boot_rx = None;
                }
                Ok(Err(e)) => {
                    local::end_all(&mut [&mut child]);
                    break Outcome {
                        code: 1,
                        reason: Some(format!("the job's processes did not start: {e}")),
                    };
                }
                Err(_) => {}
            }
        }
        let Ok(Some(st)) = child.try_wait() else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        // The processes' connections close as they end: give the readers a moment.
        let t = Instant::now();
        let said = loop {
            let said = announced.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if control.is_empty()
                || said.iter().all(Option::is_some)
                || t.elapsed() > Duration::from_millis(500)
            {
                break said;
            }
            thread::sleep(Duration::from_millis(2));
        };
        let chosen: Vec<i32> = said.iter().flatten().filter_map(|a| a.exit).collect();
        if st.success() || (st.code().is_some() && chosen.contains(&st.code().unwrap_or(0))) {
            break Outcome { code: st.code().unwrap_or(0), reason: None };
        }
        // The processes that ended without announcing an exit or whom they follow died
        // (or were killed by the MPI launcher before they could say why).
        let silent: Vec<String> = said
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_some_and(|a| a.exit.is_none() && a.follows.is_none()))
            .map(|(r, _)| {
                let r = r as u32;
                format!("{r} ({})", local::Slot { rank: r, first_pe: r * ppn, pes: ppn, host: 0 }.describe())
            })
            .collect();
        let who = match silent.len() {
            0 => String::new(),
            1 => format!("process {} ended without a word; ", silent[0]),
            _ => format!("processes {} ended without a word; ", silent.join(", ")),
        };
        let reason = format!("{who}the MPI launcher '{}' {}", opts.remote_shell, local::describe_status(st));
        break Outcome { code: st.code().filter(|&c| c != 0).unwrap_or(1), reason: Some(reason) };
    };
    drop(control);
    for p in pumps {
        let _ = p.join();
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = charmrs_shm::segment::Segment::remove_job(&format!("{job:016x}")) {
        eprintln!("charmrs-run: could not clean /dev/shm of the job's files: {e}");
    }
    Ok(outcome)
}

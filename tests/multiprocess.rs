//! The examples as jobs of several processes, started by the real launcher
//! (`charmrs-run +pN ++ppn K`): the same programs, unchanged, with the same results as
//! in one process; and the faults of a job of several processes (a process killed, a
//! launcher that cannot be reached). Every run has a timeout.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{example, launch, launch_env, launcher, run, run_cmd, stencil_result, wait_ended};

const T: Duration = Duration::from_secs(90);

/// `+p4 ++ppn 1` (4 processes of 1 PE) and `+p4 ++ppn 2` (2 of 2).
const SHAPES: [[&str; 3]; 2] = [["+p4", "++ppn", "1"], ["+p4", "++ppn", "2"]];

#[test]
fn hello_reaches_every_pe_of_every_process() {
    for shape in SHAPES {
        let r = launch(&shape, "hello", &[], T);
        r.assert_ok().stdout_has("4 PEs answered");
        for pe in 0..4 {
            r.stdout_has(&format!("Hello from PE {pe} of 4 (asked by PE 0)"));
        }
    }
}

#[test]
fn tcp_between_processes_of_a_host_works_too() {
    // CHARMRS_SHM=0: processes of one host talk TCP, as across hosts.
    for shape in SHAPES {
        let r = launch_env(&shape, "hello", &[], &[("CHARMRS_SHM", "0")], T);
        r.assert_ok().stdout_has("4 PEs answered");
        launch_env(&shape, "reductions", &[], &[("CHARMRS_SHM", "0")], T)
            .assert_ok()
            .stdout_has("0 mismatches");
    }
}

#[test]
fn large_messages_and_out_of_band_buffers_arrive_whole() {
    // A 4 KiB ring: every halo of 256 doubles (2 KiB, above a quarter of the ring) goes through
    // rendezvous segments; the result must not change.
    let one = run("jacobi2d", &["+p4", "4", "256", "100"], T);
    one.assert_ok();
    let key = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("jacobi2d"))
            .map(|l| l.split(" PEs: ").nth(1).unwrap_or("").split(',').take(2).collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    // The halos are `PodVec`s of 2 KiB: their bytes travel out of band, after the
    // message, through the rendezvous buffer (4 KiB ring), through the ring (default
    // ring) and over TCP.
    for env in [[("CHARMRS_SHM_RING", "4096")], [("CHARMRS_SHM_RING", "1048576")], [("CHARMRS_SHM", "0")]] {
        let r = launch_env(&["+p4", "++ppn", "1"], "jacobi2d", &["4", "256", "100"], &env, T);
        r.assert_ok();
        assert_eq!(key(&r.stdout), key(&one.stdout), "{env:?}");
    }
}

#[test]
fn run_with_returns_the_job_exit_code_in_every_process() {
    let r = launch(&["+p4", "++ppn", "2"], "failures", &["run-twice"], T);
    r.assert_code(5);
    assert_eq!(r.stdout.matches("the runtime returned Ok(5)").count(), 2, "{}", r.stdout);
}

#[test]
fn runtime_options_reach_every_process() {
    // `+stats` after the program: each process prints its own PEs' table, titled.
    launch(&["+p4", "++ppn", "2"], "hello", &["+stats"], T)
        .assert_ok()
        .stdout_has("charmrs stats of process 0 (PEs 0-1 on host 0)")
        .stdout_has("charmrs stats of process 1 (PEs 2-3 on host 0)");
}

#[test]
fn pingpong_crosses_processes() {
    for shape in SHAPES {
        launch(&shape, "pingpong", &["2000"], T)
            .assert_ok()
            .stdout_has("2000 round trips between PE 0 and PE 3");
    }
}

#[test]
fn fib_is_right_across_processes() {
    for shape in SHAPES {
        launch(&shape, "fib", &["16"], T).assert_ok().stdout_has("fib(16) = 987");
    }
}

#[test]
fn every_reducer_gives_the_sequential_result_across_processes() {
    for shape in SHAPES {
        launch(&shape, "reductions", &[], T).assert_ok().stdout_has("0 mismatches");
    }
    launch(&["+p6", "++ppn", "2"], "reductions", &[], T).assert_ok().stdout_has("0 mismatches");
}

#[test]
fn sections_work_across_processes() {
    for shape in SHAPES {
        launch(&shape, "sections", &["5", "3"], T).assert_ok().stdout_has("0 mismatches");
    }
    launch(&["+p3", "++ppn", "1"], "sections", &["2", "5"], T).assert_ok().stdout_has("0 mismatches");
}

#[test]
fn pool_tasks_are_stolen_across_processes() {
    for shape in SHAPES {
        let r = launch(&shape, "pool", &["25"], T);
        r.assert_ok().stdout_has("0 wrong").stdout_has("the error reached map");
        // The map's tasks are submitted on PE 0: the other processes ran some by
        // stealing them.
        r.stdout_has("400 tasks ran on 4 of 4 PEs");
    }
}

#[test]
fn migration_across_processes_loses_nothing() {
    // With ++ppn 1, moving every element to the last PE leaves the other processes'
    // homes with serialized contributions only (the reduction is finished elsewhere).
    for shape in SHAPES {
        launch(&shape, "migrate", &["32", "3000"], T).assert_ok().stdout_has("0 mismatches");
    }
    launch(&SHAPES[0], "migrate", &["8", "100", "stuck"], T)
        .assert_code(1)
        .stderr_has("cannot migrate while an async method of it is suspended");
}

#[test]
fn load_balancing_moves_blocks_between_processes() {
    const STENCIL: [&str; 5] = ["16", "20", "5", "60", "10"];
    for shape in SHAPES {
        let plain = launch(&shape, "lb_stencil", &STENCIL, T);
        plain.assert_ok();
        let (_, want) = stencil_result(&plain);
        for b in ["GreedyLB", "RotateLB", "DistributedLB"] {
            let args = [&["+balancer", b, "+LBDebug", "2"], &STENCIL[..]].concat();
            let r = launch(&shape, "lb_stencil", &args, T);
            r.assert_ok();
            let (moves, sum) = stencil_result(&r);
            assert_eq!(sum, want, "{b} with {shape:?}");
            if b == "RotateLB" {
                assert_eq!(moves, 16 * 3, "{b} with {shape:?}");
                r.stdout_has("charmrs LB:   element 15: PE 3 -> PE 0");
            }
        }
    }
}

#[test]
fn sparse_arrays_work_across_processes() {
    for shape in SHAPES {
        launch(&shape, "sparse", &["30"], T).assert_ok().stdout_has("0 mismatches");
    }
}

#[test]
fn jacobi2d_gives_the_one_process_result() {
    let key = |out: &str| {
        let line = out.lines().find(|l| l.starts_with("jacobi2d")).expect("result line").to_string();
        line.split(" PEs: ").nth(1).expect("result").split(',').take(2).collect::<Vec<_>>().join(",")
    };
    let one = run("jacobi2d", &["+p4", "3", "8"], T);
    one.assert_ok();
    for shape in SHAPES {
        let r = launch(&shape, "jacobi2d", &["3", "8"], T);
        r.assert_ok();
        assert_eq!(key(&r.stdout), key(&one.stdout), "one process vs {shape:?}");
    }
}

#[test]
fn failures_are_reported_the_same_across_processes() {
    let shape = ["+p4", "++ppn", "2"];
    launch(&shape, "failures", &["method-panic-awaited"], T)
        .assert_ok()
        .stdout_has("caught: panic on PE 3 in Fragile::poke (element 3): poke failed on element 3");
    let r = launch(&shape, "failures", &["ctor-panic-awaited"], T);
    r.assert_code(3).stdout_has("creation failed: panic on PE 3 in Fragile::new (element 3)");
    assert!(!r.stderr.contains("charmrs-run"), "the job's own exit code is not a failure: {}", r.stderr);
    launch(&shape, "failures", &["foreign-await"], T)
        .assert_ok()
        .stdout_has("refused: future created on PE 2 awaited on PE 0");
    launch(&shape, "failures", &["double-send"], T).assert_code(1).stderr_has("was sent a second value");
    launch(&shape, "failures", &["exit-code"], T).assert_code(7);
    launch(&shape, "failures", &["timers"], T).assert_ok().stdout_has("timer fired at");
    launch(&shape, "failures", &["bad-map"], T).assert_code(1).stderr_has("on PE 9, but there are 4 PEs");
}

#[test]
fn the_process_that_failed_is_named_not_those_that_followed() {
    // Element 1 panics on PE 1 (process 1); the other processes see it vanish and end
    // too, and tell the launcher so: whichever exit the launcher sees first, it names
    // process 1. Several runs, since the order of the exits varies.
    for _ in 0..5 {
        launch(&["+p4", "++ppn", "1"], "failures", &["method-panic"], T)
            .assert_code(1)
            .stderr_has("charmrs-run: process 1 (PE 1 on host localhost) exited with status 1");
    }
}

#[test]
fn ending_the_job_while_a_process_floods_another_does_not_hang() {
    for env in [("CHARMRS_SHM_RING", "4096"), ("CHARMRS_SHM", "0")] {
        launch_env(&["+p2", "++ppn", "1"], "failures", &["flood-exit"], &[env], T)
            .assert_ok()
            .stdout_has("ending the job under load");
    }
}

#[test]
fn topology_trees_cover_every_pe_across_processes() {
    run("failures", &["+p5", "topo"], T).assert_ok().stdout_has("topo ok: ");
    for shape in [["+p4", "++ppn", "1"], ["+p6", "++ppn", "2"]] {
        launch(&shape, "failures", &["topo"], T).assert_ok().stdout_has("topo ok: ");
    }
}

#[test]
fn quiescence_detection_spans_processes() {
    for shape in SHAPES {
        launch(&shape, "failures", &["qd"], T)
            .assert_ok()
            .stdout_has("entry-method QD callback called: true")
            .stdout_has("quiescence after chains");
    }
}

/// The children of process `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else { continue };
        if rest.split_whitespace().nth(1).and_then(|s| s.parse::<u32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

fn env_of(pid: u32, var: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|&b| b == 0).find_map(|kv| {
        let kv = String::from_utf8_lossy(kv);
        kv.strip_prefix(&format!("{var}=")).map(str::to_string)
    })
}

fn alive(pid: u32) -> bool {
    // A zombie has exited: it only waits for its parent to reap it.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|x| x.1.split_whitespace().next().map(|st| st != "Z"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// Starts `charmrs-run <launch> pingpong <args>` (stderr piped) and waits until its
/// `procs` processes run and are past the bootstrap; returns the launcher and their pids.
fn start_pingpong(launch: &[&str], args: &[&str], procs: usize) -> (std::process::Child, Vec<u32>) {
    start_example("pingpong", launch, args, procs)
}

/// [`start_pingpong`] for any example.
#[allow(clippy::zombie_processes)] // the child is returned, and its callers wait for it
fn start_example(
    name: &str,
    launch: &[&str],
    args: &[&str],
    procs: usize,
) -> (std::process::Child, Vec<u32>) {
    let mut child = Command::new(launcher())
        .args(launch)
        .arg(example(name))
        .args(args)
        .env("CHARMRS_WARN", "oversubscribed")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("launcher starts");
    let t0 = Instant::now();
    loop {
        let kids = children_of(child.id());
        if kids.len() == procs && t0.elapsed() > Duration::from_millis(1500) {
            return (child, kids);
        }
        if t0.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the job's processes did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killing_the_destination_of_migrations_ends_the_job() {
    // Fault matrix row 24: elements keep moving between the 4 processes; one of them
    // is killed. The job ends at once with the reason, nothing left running (an element
    // is never duplicated: the job does not go on without the lost process).
    let (mut child, procs) = start_example("migrate", &["+p4", "++ppn", "1"], &["16", "10", "churn"], 4);
    let victim = *procs.iter().find(|&&p| env_of(p, "CHARMRS_RANK").as_deref() == Some("2")).expect("rank 2");
    let killed_at = Instant::now();
    Command::new("kill").args(["-9", &victim.to_string()]).status().expect("kill runs");
    let (status, err, took) =
        wait_ended(&mut child, killed_at, Duration::from_secs(20), "a job killed while migrating");
    assert!(!status.success());
    assert!(took < Duration::from_secs(5), "the job took {took:?} to end");
    assert!(err.contains("process 2 (PE 2 on host localhost) killed by signal 9"), "{err}");
    for p in procs {
        assert!(!alive(p), "process {p} was left running");
    }
}

#[test]
fn killing_one_process_ends_the_job_with_the_reason() {
    let (mut child, procs) = start_pingpong(&["+p4", "++ppn", "2"], &["100000000"], 2);
    let victim = *procs.iter().find(|&&p| env_of(p, "CHARMRS_RANK").as_deref() == Some("1")).expect("rank 1");
    let job = env_of(victim, "CHARMRS_JOB").expect("job id");
    let killed_at = Instant::now();
    Command::new("kill").args(["-9", &victim.to_string()]).status().expect("kill runs");
    let (status, err, took) =
        wait_ended(&mut child, killed_at, Duration::from_secs(20), "a job one of whose processes was killed");
    assert!(!status.success());
    assert!(took < Duration::from_secs(5), "the job took {took:?} to end");
    assert!(err.contains("process 1 (PEs 2-3 on host localhost) killed by signal 9"), "{err}");
    for p in procs {
        assert!(!alive(p), "process {p} was left running");
    }
    let leaked: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    let prefix = format!("charmrs-{job}-");
    assert!(
        !leaked.iter().any(|f| f.starts_with(&prefix)),
        "/dev/shm files of the job were left: {leaked:?}"
    );
}

#[test]
fn a_process_that_cannot_reach_the_launcher_fails_in_bounded_time() {
    let t0 = Instant::now();
    let out = Command::new(example("hello"))
        .args(["+p1"])
        .env("CHARMRS_NUM_PROCESSES", "2")
        .env("CHARMRS_RANK", "1")
        .env("CHARMRS_FIRST_PE", "1")
        .env("CHARMRS_TOTAL_PES", "2")
        .env("CHARMRS_JOB", "1234")
        .env("CHARMRS_SECRET", "00".repeat(32))
        .env("CHARMRS_RENDEZVOUS", "127.0.0.1:1")
        .env("CHARMRS_CONNECT_TIMEOUT", "1")
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(t0.elapsed() < Duration::from_secs(10));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("process 1: cannot join the job through the launcher at 127.0.0.1:1"), "{err}");
}

/// CPU time (user + system) of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[test]
fn an_idle_job_of_several_processes_uses_no_cpu() {
    for env in [[("CHARMRS_SHM", "1")], [("CHARMRS_SHM", "0")]] {
        let mut child = Command::new(launcher())
            .args(["+p4", "++ppn", "1"])
            .arg(example("failures"))
            .args(["idle", "3000"])
            .env("CHARMRS_WARN", "oversubscribed")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("launcher starts");
        // Past the bootstrap and the messages: the PEs wait on a 3 s timer.
        std::thread::sleep(Duration::from_millis(1200));
        let procs = children_of(child.id());
        let before: Vec<Option<u64>> = procs.iter().map(|&p| cpu_ticks(p)).collect();
        std::thread::sleep(Duration::from_millis(1000));
        let after: Vec<Option<u64>> = procs.iter().map(|&p| cpu_ticks(p)).collect();
        let st = child.wait().expect("job ends");
        assert!(st.success(), "{env:?}: {st}");
        assert_eq!(procs.len(), 4, "{env:?}: the job's processes");
        let used: u64 =
            before.iter().zip(&after).map(|(b, a)| a.unwrap_or(0).saturating_sub(b.unwrap_or(0))).sum();
        eprintln!("{env:?}: idle processes used {used} ticks in 1 s");
        // Four spinning processes would use ~200 ticks (100 Hz, 2 cores) in 1 s.
        assert!(used <= 20, "{env:?}: idle processes used {used} ticks of CPU in 1 s");
    }
}

#[test]
fn ctrl_c_ends_the_job_and_leaves_nothing_behind() {
    // Large messages in flight: the rendezvous buffers exist.
    let (mut child, procs) = start_pingpong(&["+p4", "++ppn", "1"], &["1000000", "1048576"], 4);
    let job = env_of(procs[0], "CHARMRS_JOB").expect("job id");
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    let sent = Instant::now();
    let (status, err, _) = wait_ended(&mut child, sent, Duration::from_secs(20), "a job sent SIGINT");
    assert_eq!(status.code(), Some(130));
    assert!(err.contains("SIGINT received"), "{err}");
    for p in procs {
        assert!(!alive(p), "process {p} was left running");
    }
    let prefix = format!("charmrs-{job}-");
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    assert!(!left.iter().any(|f| f.starts_with(&prefix)), "/dev/shm files of the job were left: {left:?}");
}

#[test]
fn a_process_that_fails_at_start_ends_the_job_with_its_output_and_status() {
    // Rank 1 fails before it joins; rank 0 would wait for it (here: sleeps).
    let t0 = Instant::now();
    let mut cmd = Command::new(launcher());
    cmd.args(["+p2", "++ppn", "1", "sh", "-c"]).arg(
        r#"if [ "$CHARMRS_RANK" = 1 ]; then echo "cannot start: missing input" >&2; exit 3; fi; sleep 60"#,
    );
    let r = common::run_cmd(cmd, "a job whose rank 1 fails at start", T);
    assert!(t0.elapsed() < Duration::from_secs(20), "took {:?}", t0.elapsed());
    r.assert_code(3)
        .stderr_has("cannot start: missing input")
        .stderr_has("process 1 (PE 1 on host localhost) exited with status 3");
}

/// `pid`'s children, their children, and so on.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = children_of(pid);
    let mut i = 0;
    while i < out.len() {
        let more = children_of(out[i]);
        out.extend(more);
        i += 1;
    }
    out
}

/// Starts the launcher `cmd` with no input or output (a dead launcher's pipes are then
/// nobody's).
fn launch_silent(cmd: &mut Command) -> std::process::Child {
    cmd.env("CHARMRS_WARN", "oversubscribed")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("launcher starts")
}

/// Waits (up to 30 s) until `procs()` lists `n` processes, and at least `settle`; returns them.
fn wait_for_procs(n: usize, settle: Duration, procs: impl Fn() -> Vec<u32>) -> Vec<u32> {
    let t0 = Instant::now();
    loop {
        let running = procs();
        if running.len() == n && t0.elapsed() >= settle {
            return running;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "the job's processes did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills `launcher` with SIGKILL (it gets no chance to end anything) and waits up to
/// `limit` for every process of `procs` to end.
fn kill_launcher_and_wait(launcher: &mut std::process::Child, procs: &[u32], limit: Duration) -> Vec<u32> {
    Command::new("kill").args(["-9", &launcher.id().to_string()]).status().expect("kill runs");
    let _ = launcher.wait();
    let t0 = Instant::now();
    loop {
        let left: Vec<u32> = procs.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() || t0.elapsed() > limit {
            for &p in &left {
                let _ = Command::new("kill").args(["-9", &p.to_string()]).status();
            }
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killing_the_launcher_ends_every_process_of_a_running_job() {
    // Fault matrix: the launcher dies (SIGKILL, so it ends nothing itself). Its processes
    // write to pipes nobody reads any more; none may outlive it.
    let (mut child, procs) = start_pingpong(&["+p4", "++ppn", "1"], &["1000000000"], 4);
    let left = kill_launcher_and_wait(&mut child, &procs, Duration::from_secs(5));
    assert!(left.is_empty(), "processes {left:?} outlived the launcher by 5 s");
}

#[test]
fn killing_the_launcher_ends_processes_that_are_still_starting() {
    // Processes that have not reached the bootstrap yet (here: never will) have no
    // connection to the launcher: the parent-death signal ends them.
    let mut child =
        launch_silent(Command::new(launcher()).args(["+p2", "++ppn", "1", "sh", "-c", "exec sleep 60"]));
    let procs = wait_for_procs(2, Duration::ZERO, || children_of(child.id()));
    let left = kill_launcher_and_wait(&mut child, &procs, Duration::from_secs(5));
    assert!(left.is_empty(), "processes {left:?} outlived the launcher by 5 s");
}

#[test]
fn a_process_that_is_not_the_launchers_child_ends_when_the_launcher_dies() {
    // Processes on other hosts are the remote shell's, not the launcher's: only their
    // connection to the launcher tells them it died. A "remote shell" that runs the
    // command in the background makes this happen on this host. Their output goes to
    // the dead launcher's pipes: reporting the loss there must not fail either.
    let dir = std::env::temp_dir().join(format!("charmrs-orphan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let rsh = dir.join("rsh");
    std::fs::write(&rsh, "#!/bin/sh\nshift\nsh -c \"$1\" &\nwait\n").expect("write rsh");
    Command::new("chmod").arg("+x").arg(&rsh).status().expect("chmod");
    std::fs::write(dir.join("nodelist"), "group main\nhost 127.0.0.1\n").expect("write nodelist");
    let mut child = launch_silent(
        Command::new(launcher())
            .args(["+p2", "++ppn", "1", "++nodelist"])
            .arg(dir.join("nodelist"))
            .arg("++remote-shell")
            .arg(&rsh)
            .arg(example("pingpong"))
            .arg("1000000000"),
    );
    let procs = wait_for_procs(2, Duration::from_millis(1500), || {
        descendants(child.id())
            .into_iter()
            .filter(|&p| {
                env_of(p, "CHARMRS_RANK").is_some()
                    && std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e.ends_with("pingpong"))
            })
            .collect()
    });
    let left = kill_launcher_and_wait(&mut child, &procs, Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(left.is_empty(), "processes {left:?} outlived the launcher by 5 s");
}

#[test]
fn a_found_nodelist_of_this_machine_only_keeps_the_launch_local() {
    // $NODELIST naming localhost only: charmrun's ++local rule, nothing is started
    // through a remote shell (which would fail: there is no ssh here).
    let dir = std::env::temp_dir().join(format!("charmrs-nodelist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let list = dir.join("nodelist");
    std::fs::write(&list, "group main\nhost localhost\nhost 127.0.0.1\n").expect("write nodelist");
    let r =
        launch_env(&["+p2", "++ppn", "1"], "hello", &[], &[("NODELIST", list.to_str().expect("utf-8"))], T);
    let _ = std::fs::remove_dir_all(&dir);
    r.assert_ok().stdout_has("2 PEs answered");
    assert!(!r.stderr.contains("using the nodelist"), "{}", r.stderr);
}

#[test]
fn a_malformed_found_nodelist_is_a_clear_error() {
    // The nodelist the launcher found by itself ($NODELIST) is bad: the error names
    // the line and where the file came from, and nothing starts.
    let dir = std::env::temp_dir().join(format!("charmrs-badlist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let list = dir.join("nodelist");
    std::fs::write(&list, "group main\nhost\n").expect("write nodelist");
    let r =
        launch_env(&["+p2", "++ppn", "1"], "hello", &[], &[("NODELIST", list.to_str().expect("utf-8"))], T);
    let _ = std::fs::remove_dir_all(&dir);
    r.assert_code(1).stderr_has("nodelist line 2").stderr_has("found as $NODELIST");
    assert!(!r.stdout.contains("PEs answered"), "{}", r.stdout);
}

/// Open MPI refuses root, and more processes than cores, unless told.
const OMPI: [(&str, &str); 3] = [
    ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
    ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
    ("OMPI_MCA_rmaps_base_oversubscribe", "1"),
];

#[test]
fn mpi_launchers_start_jobs_with_and_without_charmrs_run() {
    if Command::new("mpirun").arg("--version").stdout(Stdio::null()).status().is_err() {
        // ci/deps.sh installs Open MPI: only a developer's machine without it gets here.
        eprintln!("skipped: no mpirun (Debian: openmpi-bin)");
        return;
    }
    // Plain mpirun: 2 processes of 2 PEs find each other through PMIx.
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", "2"]).arg(example("hello")).arg("+p2").envs(OMPI).env("CHARMRS_WARN", "oversubscribed");
    let r = run_cmd(cmd, "mpirun -np 2 hello +p2", T);
    r.assert_ok().stdout_has("4 PEs answered").stdout_has("1 host(s), 2 process(es)");
    // Without the launcher's size variable: the job's size comes from PMIx itself.
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", "2", "env", "-u", "OMPI_COMM_WORLD_SIZE"]).arg(example("hello")).arg("+p1").envs(OMPI);
    run_cmd(cmd, "mpirun -np 2 env -u OMPI_COMM_WORLD_SIZE hello", T)
        .assert_ok()
        .stdout_has("2 PEs answered");
    // charmrs-run ++mpiexec: the launcher's rendezvous, mpiexec's processes.
    for shape in [["+p4", "++ppn", "2", "++mpiexec"], ["+p2", "++ppn", "1", "++mpiexec"]] {
        launch_env(&shape, "hello", &[], &OMPI, T)
            .assert_ok()
            .stdout_has(&format!("{} PEs answered", &shape[0][2..]));
    }
    launch_env(&["+p4", "++ppn", "1", "++mpiexec"], "reductions", &[], &OMPI, T)
        .assert_ok()
        .stdout_has("0 mismatches");
}

#[test]
fn a_timeout_names_the_entry_method_each_pe_is_stuck_in() {
    for shape in SHAPES {
        let mut opts = shape.to_vec();
        opts.extend(["++timeout", "3"]);
        let r = launch(&opts, "failures", &["spin"], T);
        r.assert_code(124).stderr_has("ran past ++timeout");
        r.stderr_has("PE 3 runs failures::Fragile::spin").stderr_has("PE 0 runs no entry method");
    }
}

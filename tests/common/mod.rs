//! What the integration tests share: running the examples (directly, or through the
//! launcher as several processes) with a timeout, and checking how they ended.
#![allow(dead_code)] // each test file uses part of it

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What a finished run left.
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "exit status\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
    pub(crate) fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "exit status\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
    pub(crate) fn stdout_has(&self, s: &str) -> &Self {
        assert!(
            self.stdout.contains(s),
            "stdout lacks {s:?}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
    pub(crate) fn stderr_has(&self, s: &str) -> &Self {
        assert!(
            self.stderr.contains(s),
            "stderr lacks {s:?}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// An example of this build (target/<profile>/examples/NAME), up to date: see [`built`].
pub(crate) fn example(name: &str) -> PathBuf {
    let path = built().join("examples").join(name);
    assert!(path.exists(), "{} is not an example of this workspace", path.display());
    path
}

/// The target profile directory of this test binary, with the launcher and every example
/// rebuilt once per test binary (a no-op when they are current). `cargo test --test X`
/// builds neither (the launcher belongs to another package, and a test target filter
/// skips the examples): without this, a test would run binaries older than the code.
fn built() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        let dir = exe.parent().and_then(|d| d.parent()).expect("target profile dir").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-q",
            "-p",
            "charmrs-comm",
            "--bin",
            "charmrs-run",
            "-p",
            "charmrs-examples",
            "--examples",
        ]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("cargo runs");
        assert!(st.success(), "could not build the launcher and the examples");
        dir
    })
}

/// Runs an example with a timeout; a run that does not end in time is killed and fails
/// the test.
pub(crate) fn run(name: &str, args: &[&str], timeout: Duration) -> Run {
    let mut cmd = Command::new(example(name));
    cmd.args(args);
    run_cmd(cmd, &format!("{name} {args:?}"), timeout)
}

/// Runs `charmrs-run <launch...> <example> <args...>` with a timeout.
pub(crate) fn launch(launch: &[&str], name: &str, args: &[&str], timeout: Duration) -> Run {
    launch_env(launch, name, args, &[], timeout)
}

/// [`launch`] with extra environment variables (the launcher passes `CHARMRS_*` on).
pub(crate) fn launch_env(
    launch: &[&str],
    name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Run {
    let mut cmd = Command::new(launcher());
    cmd.args(launch).arg(example(name)).args(args).env("CHARMRS_WARN", "oversubscribed");
    cmd.envs(env.iter().copied());
    run_cmd(cmd, &format!("charmrs-run {launch:?} {name} {args:?} {env:?}"), timeout)
}

/// Runs `cmd` with a timeout; a run that does not end in time is killed and fails the
/// test.
pub(crate) fn run_cmd(mut cmd: Command, what: &str, timeout: Duration) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("example starts");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {timeout:?} (hang)\nstdout:\n{}\nstderr:\n{}",
                t_out.join().unwrap_or_default(),
                t_err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// The launcher binary of this build (target/<profile>/charmrs-run), up to date: see
/// [`built`].
pub(crate) fn launcher() -> PathBuf {
    built().join("charmrs-run")
}

/// Waits for the launcher `child` started at `since` to end, at most `limit` (then kills
/// it and fails the test with `what`); returns its status, stderr and how long it took
/// from `since`.
pub(crate) fn wait_ended(
    child: &mut std::process::Child,
    since: Instant,
    limit: Duration,
    what: &str,
) -> (std::process::ExitStatus, String, Duration) {
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if since.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = since.elapsed();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status, err, took)
}

/// The `(moves, checksum)` of an `lb_stencil` run's result line.
pub(crate) fn stencil_result(r: &Run) -> (u64, String) {
    let line = r.stdout.lines().find(|l| l.starts_with("lb_stencil")).expect("lb_stencil result line");
    let moves =
        line.split(", ").find_map(|p| p.strip_suffix(" moves")).expect("moves").parse().expect("a number");
    let sum = line.rsplit("checksum ").next().expect("checksum").to_string();
    (moves, sum)
}

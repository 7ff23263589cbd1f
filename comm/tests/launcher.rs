//! `charmrs-run` on this host, with real processes: the environment each gets, output
//! forwarding, a failing or killed process ending the whole job with the reason, the
//! timeout, SIGTERM, and bad command lines. Every run has a timeout.

#![cfg(unix)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Run {
    code: Option<i32>,
    out: String,
    err: String,
    took: Duration,
}

fn launcher() -> Command {
    Command::new(env!("CARGO_BIN_EXE_charmrs-run"))
}

/// Runs the launcher with `args`; kills it and fails if it runs past `limit`.
fn run(args: &[&str], limit: Duration) -> Run {
    let t0 = Instant::now();
    let mut child = launcher()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("launcher starts");
    let mut o = child.stdout.take().expect("stdout");
    let mut e = child.stderr.take().expect("stderr");
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = o.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = e.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("charmrs-run {args:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run { code: status.code(), out: to.join().unwrap(), err: te.join().unwrap(), took: t0.elapsed() }
}

const T: Duration = Duration::from_secs(20);

#[test]
fn every_process_gets_its_place_in_the_job() {
    let r = run(
        &["+p4", "++ppn", "2", "sh", "-c", "echo rank=$CHARMRS_RANK pes=$CHARMRS_PES first=$CHARMRS_FIRST_PE of=$CHARMRS_NUM_PROCESSES total=$CHARMRS_TOTAL_PES secret=${#CHARMRS_SECRET}"],
        T,
    );
    assert_eq!(r.code, Some(0), "{}", r.err);
    assert!(r.out.contains("rank=0 pes=2 first=0 of=2 total=4 secret=64"), "{}", r.out);
    assert!(r.out.contains("rank=1 pes=2 first=2 of=2 total=4 secret=64"), "{}", r.out);
}

#[test]
fn output_lines_can_be_prefixed() {
    let r = run(&["++prefix", "+p2", "++ppn", "1", "sh", "-c", "echo hi; echo oops >&2"], T);
    assert_eq!(r.code, Some(0), "{}", r.err);
    assert!(r.out.contains("[pe 0] hi") && r.out.contains("[pe 1] hi"), "{}", r.out);
    assert!(r.err.contains("[pe 1] oops"), "{}", r.err);
}

#[test]
fn a_failing_process_ends_the_job_with_its_status() {
    let r = run(&["+p3", "++ppn", "1", "sh", "-c", "if [ $CHARMRS_RANK = 1 ]; then exit 3; fi; sleep 30"], T);
    assert_eq!(r.code, Some(3), "{}", r.err);
    assert!(r.err.contains("process 1 (PE 1 on host localhost) exited with status 3"), "{}", r.err);
    assert!(r.took < Duration::from_secs(6), "the others were ended within seconds: {:?}", r.took);
}

#[test]
fn a_killed_process_is_named_with_its_signal() {
    let r =
        run(&["+p4", "++ppn", "2", "sh", "-c", "if [ $CHARMRS_RANK = 1 ]; then kill -9 $$; fi; sleep 30"], T);
    assert_eq!(r.code, Some(1), "{}", r.err);
    assert!(r.err.contains("process 1 (PEs 2-3 on host localhost) killed by signal 9"), "{}", r.err);
    assert!(r.took < Duration::from_secs(6), "{:?}", r.took);
}

#[test]
fn a_hung_job_ends_at_the_timeout() {
    let r = run(&["++timeout", "0.5", "+p2", "++ppn", "1", "sh", "-c", "sleep 30"], T);
    assert_eq!(r.code, Some(124), "{}", r.err);
    assert!(r.err.contains("++timeout"), "{}", r.err);
    assert!(r.took < Duration::from_secs(5), "{:?}", r.took);
}

#[test]
fn sigterm_ends_the_whole_job() {
    let t0 = Instant::now();
    let child = launcher()
        .args(["+p2", "++ppn", "1", "sh", "-c", "sleep 30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("launcher starts");
    std::thread::sleep(Duration::from_millis(300));
    let st = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(st.success());
    let out = child.wait_with_output().expect("launcher ends");
    assert_eq!(out.status.code(), Some(143), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGTERM received"));
    assert!(t0.elapsed() < Duration::from_secs(6));
}

#[test]
fn bad_command_lines_are_clear_errors_with_status_2() {
    let r = run(&["+p3", "++ppn", "2", "prog"], T);
    assert_eq!(r.code, Some(2));
    assert!(r.err.contains("+p3 is not a multiple of ++ppn 2"), "{}", r.err);
    let r = run(&["++frobnicate", "prog"], T);
    assert_eq!(r.code, Some(2));
    assert!(r.err.contains("unknown launcher option '++frobnicate'"), "{}", r.err);
    let r = run(&["+p2"], T);
    assert_eq!(r.code, Some(2));
    assert!(r.err.contains("no program"), "{}", r.err);
    let r = run(&["+p1", "/nonexistent/program"], T);
    assert_eq!(r.code, Some(1));
    assert!(r.err.contains("cannot start '/nonexistent/program'"), "{}", r.err);
}

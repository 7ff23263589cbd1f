//! Jobs across several hosts: each "host" is a network namespace of this machine,
//! joined to the others by veth pairs on a bridge, made and removed by the test itself
//! (iproute2, needs root). The launcher starts the processes through
//! `++nodelist FILE ++remote-shell CMD`, where CMD runs `ip netns exec` for the host:
//! the processes talk over real TCP between namespaces. Skipped, with a message saying
//! why, where namespaces cannot be made.

mod common;

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::{example, launcher, run_cmd, wait_ended, Run};

const T: Duration = Duration::from_secs(120);

/// One network-namespace test at a time (they share the bridge naming scheme).
static LOCK: Mutex<()> = Mutex::new(());

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `n` hosts: namespaces with one veth each on a bridge; removed on drop.
struct Hosts {
    tag: String,
    addrs: Vec<String>,
    dir: std::path::PathBuf,
}

impl Hosts {
    fn make(n: u32) -> Result<Hosts, String> {
        let pid = std::process::id();
        let tag = format!("c{}", pid % 100_000);
        let net = format!("10.{}.{}", 200 + pid % 50, (pid / 50) % 250);
        let dir = std::env::temp_dir().join(format!("charmrs-hosts-{pid}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let mut h = Hosts { tag: tag.clone(), addrs: Vec::new(), dir };
        let br = format!("{tag}b");
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{net}.1/24"), "dev", &br])?;
        ip(&["link", "set", &br, "up"])?;
        for i in 0..n {
            let ns = format!("{tag}n{i}");
            let (v, p) = (format!("{tag}v{i}"), format!("{tag}p{i}"));
            let addr = format!("{net}.{}", 10 + i);
            ip(&["netns", "add", &ns])?;
            h.addrs.push(addr.clone());
            ip(&["link", "add", &v, "type", "veth", "peer", "name", &p])?;
            ip(&["link", "set", &p, "netns", &ns])?;
            ip(&["link", "set", &v, "master", &br])?;
            ip(&["link", "set", &v, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &p])?;
            ip(&["-n", &ns, "link", "set", &p, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        // The remote shell: `rsh HOST 'command line'` runs the line in HOST's namespace.
        let mut script = String::from("#!/bin/sh\nhost=\"$1\"; shift\ncase \"$host\" in\n");
        for (i, a) in h.addrs.iter().enumerate() {
            script.push_str(&format!("  {a}) ns={tag}n{i} ;;\n"));
        }
        script.push_str("  *) echo \"rsh: unknown host $host\" >&2; exit 255 ;;\nesac\n");
        script.push_str("exec ip netns exec \"$ns\" sh -c \"$1\"\n");
        let rsh = h.dir.join("rsh");
        std::fs::write(&rsh, script).map_err(|e| e.to_string())?;
        Command::new("chmod").arg("+x").arg(&rsh).status().map_err(|e| e.to_string())?;
        let list: String = h.addrs.iter().map(|a| format!("host {a}\n")).collect();
        std::fs::write(h.dir.join("nodelist"), format!("group main\n{list}")).map_err(|e| e.to_string())?;
        Ok(h)
    }

    /// `charmrs-run <shape> ++nodelist .. ++remote-shell .. <example> <args>`.
    fn launch(&self, shape: &[&str], name: &str, args: &[&str]) -> Run {
        let mut cmd = Command::new(launcher());
        cmd.args(shape)
            .arg("++nodelist")
            .arg(self.dir.join("nodelist"))
            .arg("++remote-shell")
            .arg(self.dir.join("rsh"))
            .arg(example(name))
            .args(args)
            .env("CHARMRS_WARN", "oversubscribed");
        run_cmd(cmd, &format!("{shape:?} {name} {args:?} across namespace hosts"), T)
    }
}

impl Hosts {
    /// Cuts host `i` off the network (its link goes down: no FIN, no RST, silence).
    fn cut(&self, i: usize) {
        ip(&["link", "set", &format!("{}v{i}", self.tag), "down"]).expect("link down");
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 0..self.addrs.len() {
            let _ = ip(&["netns", "del", &format!("{}n{i}", self.tag)]);
        }
        let _ = ip(&["link", "del", &format!("{}b", self.tag)]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The hosts, or `None` (with the reason printed) where namespaces cannot be made.
fn hosts(n: u32) -> Option<Hosts> {
    match Hosts::make(n) {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("SKIPPED: cannot make network-namespace hosts here: {e}");
            None
        }
    }
}

#[test]
fn examples_run_unchanged_across_namespace_hosts() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(h) = hosts(3) else { return };
    // 3 hosts, one process each (no ++ppn): 6 PEs as 2+2+2.
    let r = h.launch(&["+p6"], "hello", &[]);
    r.assert_ok().stdout_has("6 PEs answered").stdout_has("3 host(s), 3 process(es); PEs per host: 2 2 2");
    for pe in 0..6 {
        r.stdout_has(&format!("Hello from PE {pe} of 6 (asked by PE 0)"));
    }
    // Two processes per host for two of them: 5 processes dealt round-robin.
    h.launch(&["+p5", "++ppn", "1"], "hello", &[])
        .assert_ok()
        .stdout_has("5 PEs answered")
        .stdout_has("3 host(s), 5 process(es); PEs per host: 2 2 1");
    h.launch(&["+p6", "++ppn", "2"], "reductions", &[]).assert_ok().stdout_has("0 mismatches");
    h.launch(&["+p4", "++ppn", "1"], "pingpong", &["1000"]).assert_ok().stdout_has("1000 round trips");
    h.launch(&["+p3"], "fib", &["14"]).assert_ok().stdout_has("fib(14) = 377");
    // Sections, the task pool (stealing between hosts) and sparse arrays over TCP.
    h.launch(&["+p6", "++ppn", "2"], "sections", &["5", "3"]).assert_ok().stdout_has("0 mismatches");
    h.launch(&["+p3", "++ppn", "1"], "pool", &["22"])
        .assert_ok()
        .stdout_has("0 wrong")
        .stdout_has("400 tasks ran on 3 of 3 PEs");
    h.launch(&["+p6", "++ppn", "2"], "sparse", &["30"]).assert_ok().stdout_has("0 mismatches");
    h.launch(&["+p6", "++ppn", "2"], "migrate", &["24", "2000"]).assert_ok().stdout_has("0 mismatches");
    h.launch(&["+p6", "++ppn", "2"], "lb_stencil", &["+balancer", "GreedyLB", "12", "20", "5", "60", "10"])
        .assert_ok()
        .stdout_has("checksum 306.000000");
    h.launch(&["+p6", "++ppn", "2"], "failures", &["qd"]).assert_ok().stdout_has("quiescence after chains");
    h.launch(&["+p6", "++ppn", "1"], "failures", &["topo"])
        .assert_ok()
        .stdout_has("topo ok: ")
        .stdout_has("3 host(s), 6 process(es)");
}

#[test]
fn a_host_cut_off_the_network_ends_the_job_in_bounded_time() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(h) = hosts(2) else { return };
    let mut cmd = Command::new(launcher());
    cmd.args(["+p2", "++ppn", "1", "++nodelist"])
        .arg(h.dir.join("nodelist"))
        .arg("++remote-shell")
        .arg(h.dir.join("rsh"))
        .arg(example("pingpong"))
        .arg("1000000000")
        .env("CHARMRS_PEER_TIMEOUT", "3")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("launcher starts");
    std::thread::sleep(Duration::from_millis(2000));
    h.cut(1);
    let cut_at = std::time::Instant::now();
    let (status, err, took) =
        wait_ended(&mut child, cut_at, Duration::from_secs(40), "a job with a host cut off");
    assert!(!status.success(), "{err}");
    assert!(took < Duration::from_secs(15), "took {took:?} to notice: {err}");
    assert!(err.contains("is gone"), "{err}");
}

#[test]
fn a_process_failing_on_another_host_ends_the_job_and_names_the_host() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(h) = hosts(2) else { return };
    let r = h.launch(&["+p4", "++ppn", "2"], "failures", &["double-send"]);
    r.assert_code(1).stderr_has("was sent a second value");
    let host0 = &h.addrs[0];
    r.stderr_has(&format!("on host {host0})"));
}

#[test]
fn each_hosts_charmrunrc_is_sourced_before_the_program() {
    // charmrun's ~/.charmrunrc: run by the remote shell before the program, on every
    // host that has one. HOME points at a directory of the test's own.
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(h) = hosts(2) else { return };
    let home = h.dir.join("home");
    std::fs::create_dir_all(&home).expect("home dir");
    std::fs::write(home.join(".charmrunrc"), "echo sourced >> \"$HOME/rc-log\"\n")
        .expect("write .charmrunrc");
    let mut cmd = Command::new(launcher());
    cmd.args(["+p4", "++ppn", "2", "++nodelist"])
        .arg(h.dir.join("nodelist"))
        .arg("++remote-shell")
        .arg(h.dir.join("rsh"))
        .arg(example("hello"))
        .env("CHARMRS_WARN", "oversubscribed")
        .env("HOME", &home);
    run_cmd(cmd, "hello with a .charmrunrc", T).assert_ok().stdout_has("4 PEs answered");
    let log = std::fs::read_to_string(home.join("rc-log")).unwrap_or_default();
    assert_eq!(log.lines().count(), 2, "sourced once per process (2 processes): {log:?}");
}

#[test]
fn a_nodelist_named_by_the_nodelist_variable_is_used_without_the_option() {
    // charmrun's rule: without ++nodelist or ++local, $NODELIST (then ./nodelist, then
    // ~/.nodelist) names the hosts when it lists another host than this one.
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some(h) = hosts(2) else { return };
    let mut cmd = Command::new(launcher());
    cmd.args(["+p4", "++ppn", "2", "++remote-shell"])
        .arg(h.dir.join("rsh"))
        .arg(example("hello"))
        .env("CHARMRS_WARN", "oversubscribed")
        .env("NODELIST", h.dir.join("nodelist"));
    run_cmd(cmd, "hello with $NODELIST", T)
        .assert_ok()
        .stdout_has("2 host(s), 2 process(es)")
        .stderr_has("using the nodelist");
}

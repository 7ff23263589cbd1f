//! What every bench file shares: the job configuration, short criterion settings, a
//! recorder of the per-iteration times that criterion measures (so that each file can
//! print its `RATIO` lines at the end of its run), and the raw lower bounds that more
//! than one file uses (a crossbeam-channel echo between two pinned threads, a
//! `VecDeque` + `dyn Fn` dispatch loop).
//!
//! Not every bench file uses every item.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::hint::black_box;
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use charmrs::{Config, Job};
use criterion::Criterion;
use crossbeam_channel::{bounded, Receiver, Sender};

/// Criterion samples per benchmark: the per-sample times the summary takes its median of.
pub(crate) const SAMPLE_SIZE: usize = 20;

/// Criterion with the short settings that keep a whole `cargo bench` near 5 minutes on
/// 2 cores, then the command line (`cargo bench -- <filter>` still works).
pub(crate) fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(SAMPLE_SIZE)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .without_plots()
        .configure_from_args()
}

/// A job of `pes` PEs with idle policy `idle` (`None`: the default, adaptive). PEs are
/// pinned (the default), PE `i` on the `i`-th core.
pub(crate) fn launch(pes: u32, idle: Option<&str>) -> Job {
    let mut args = vec!["bench".to_string(), format!("+p{pes}")];
    if let Some(policy) = idle {
        args.push("+idle".into());
        args.push(policy.into());
    }
    let config = Config::parse(args, |_| None).expect("bench configuration");
    Job::launch(config).expect("job launched")
}

/// The per-iteration times of one benchmark, as criterion measured them. Criterion
/// calls the `iter_custom` routine for its warm-up first, then exactly `SAMPLE_SIZE`
/// times for the samples it analyses: the last `SAMPLE_SIZE` records are the samples.
#[derive(Clone, Default)]
pub(crate) struct Samples(Rc<RefCell<Vec<f64>>>);

impl Samples {
    /// Records `total` for `iters` iterations and hands it back to criterion.
    pub(crate) fn record(&self, iters: u64, total: Duration) -> Duration {
        self.0.borrow_mut().push(total.as_secs_f64() * 1e9 / iters.max(1) as f64);
        total
    }

    /// Median of the samples' per-iteration times, in nanoseconds (`None` when the
    /// benchmark was filtered out).
    pub(crate) fn median_ns(&self) -> Option<f64> {
        let all = self.0.borrow();
        if all.is_empty() {
            return None;
        }
        let mut last: Vec<f64> = all[all.len().saturating_sub(SAMPLE_SIZE)..].to_vec();
        last.sort_by(f64::total_cmp);
        let n = last.len();
        Some(if n % 2 == 1 { last[n / 2] } else { (last[n / 2 - 1] + last[n / 2]) / 2.0 })
    }
}

/// A time in nanoseconds, in the unit that reads best.
pub(crate) fn fmt_ns(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{:.3} ms", ns / 1e6)
    }
}

/// A rate, in messages (or calls) per second.
pub(crate) fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else {
        format!("{:.0} k", per_s / 1e3)
    }
}

/// The goal of a comparison.
#[derive(Clone, Copy)]
pub(crate) enum Goal {
    /// charmrs / lower bound at most this.
    RatioAtMost(f64),
    /// No goal was set: the ratio is reported only.
    None,
}

/// The summary lines a bench file prints at the end of its run.
#[derive(Default)]
pub(crate) struct Summary {
    lines: Vec<String>,
}

impl Summary {
    /// `RATIO <scenario>: charmrs <t>, <bound_name> <t>, ratio <r>x (goal ...)`.
    pub(crate) fn ratio(
        &mut self,
        scenario: &str,
        charmrs: &Samples,
        bound_name: &str,
        bound: &Samples,
        goal: Goal,
    ) {
        let (Some(c), Some(b)) = (charmrs.median_ns(), bound.median_ns()) else {
            self.lines.push(format!("RATIO {scenario}: not run (filtered out)"));
            return;
        };
        let r = c / b;
        let goal = match goal {
            Goal::RatioAtMost(g) => format!("goal <= {g}x: {}", if r <= g { "met" } else { "NOT met" }),
            Goal::None => "no goal set".to_string(),
        };
        self.lines.push(format!(
            "RATIO {scenario}: charmrs {}, {bound_name} {}, ratio {r:.1}x ({goal})",
            fmt_ns(c),
            fmt_ns(b)
        ));
    }

    /// `RATE <scenario>: charmrs <r>/s, <bound_name> <r>/s (<note>)`, where each
    /// iteration is `per_iter.0` items of kind `per_iter.1` (" msgs", " calls").
    pub(crate) fn rate(
        &mut self,
        scenario: &str,
        per_iter: (f64, &str),
        charmrs: &Samples,
        bound_name: &str,
        bound: &Samples,
        note: &str,
    ) {
        let (per_iter, unit) = per_iter;
        let (Some(c), Some(b)) = (charmrs.median_ns(), bound.median_ns()) else {
            self.lines.push(format!("RATE {scenario}: not run (filtered out)"));
            return;
        };
        self.lines.push(format!(
            "RATE {scenario}: charmrs {}{unit}/s, {bound_name} {}{unit}/s ({note})",
            fmt_rate(per_iter * 1e9 / c),
            fmt_rate(per_iter * 1e9 / b)
        ));
    }

    /// Any other line.
    pub(crate) fn line(&mut self, line: String) {
        self.lines.push(line);
    }

    /// Prints the lines to stdout.
    pub(crate) fn print(&self) {
        println!();
        for l in &self.lines {
            println!("{l}");
        }
    }
}

/// Spawns a thread pinned to core `core` (unpinned if the OS refuses).
pub(crate) fn spawn_pinned(core: usize, name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let ids = core_affinity::get_core_ids().unwrap_or_default();
            if let Some(&id) = ids.get(core) {
                core_affinity::set_for_current(id);
            }
            f()
        })
        .expect("spawning a bench thread")
}

/// The cross-thread lower bound: a thread pinned to core 0 sends a `u64` to a thread
/// pinned to core 1 over a `bounded(1)` crossbeam channel and waits for the echo on
/// another. [`CrossbeamEcho::round_trips`] times `n` round trips on the core-0 thread.
pub(crate) struct CrossbeamEcho {
    ctl: Option<Sender<u64>>,
    done: Receiver<Duration>,
    threads: Vec<JoinHandle<()>>,
}

impl CrossbeamEcho {
    /// Starts both threads.
    pub(crate) fn new() -> CrossbeamEcho {
        let (ctl, ctl_rx) = bounded::<u64>(1);
        let (done_tx, done) = bounded::<Duration>(1);
        let (ping, ping_rx) = bounded::<u64>(1);
        let (pong, pong_rx) = bounded::<u64>(1);
        let a = spawn_pinned(0, "cb-ping", move || {
            while let Ok(n) = ctl_rx.recv() {
                let t0 = Instant::now();
                for i in 0..n {
                    ping.send(i).expect("echo thread alive");
                    black_box(pong_rx.recv().expect("echo thread alive"));
                }
                let _ = done_tx.send(t0.elapsed());
            }
        });
        let b = spawn_pinned(1, "cb-echo", move || {
            while let Ok(v) = ping_rx.recv() {
                if pong.send(v).is_err() {
                    break;
                }
            }
        });
        CrossbeamEcho { ctl: Some(ctl), done, threads: vec![a, b] }
    }

    /// Time of `n` round trips.
    pub(crate) fn round_trips(&self, n: u64) -> Duration {
        self.ctl.as_ref().expect("running").send(n).expect("ping thread alive");
        self.done.recv().expect("ping thread alive")
    }
}

impl Drop for CrossbeamEcho {
    fn drop(&mut self) {
        // Closing the control channel ends the ping thread, whose end closes the ping
        // channel and so ends the echo thread.
        self.ctl = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A message of the same-thread lower bound: a handler index and a small argument.
struct LocalMsg {
    ep: usize,
    n: u64,
}

/// A handler of the same-thread lower bound: may queue the next message.
type Handler = Box<dyn Fn(u64, &mut VecDeque<LocalMsg>)>;

/// The same-thread lower bound of one message: a `VecDeque` push and pop plus a call
/// through `dyn Fn`. Runs a chain of `n` messages, each handler queueing the next (two
/// handlers alternating, as the two players of a same-PE ping-pong), and returns the
/// time of the whole chain.
pub(crate) fn vecdeque_chain(n: u64) -> Duration {
    let handlers: [Handler; 2] = [
        Box::new(|n, q| {
            if n > 1 {
                q.push_back(LocalMsg { ep: 1, n: n - 1 });
            }
        }),
        Box::new(|n, q| {
            if n > 1 {
                q.push_back(LocalMsg { ep: 0, n: n - 1 });
            }
        }),
    ];
    let handlers = black_box(&handlers);
    let mut q = VecDeque::with_capacity(16);
    let t0 = Instant::now();
    q.push_back(LocalMsg { ep: 0, n });
    while let Some(m) = q.pop_front() {
        handlers[black_box(m.ep)](m.n, &mut q);
    }
    t0.elapsed()
}

/// The same-thread lower bound of a burst: `n` messages pushed on a `VecDeque`, then
/// popped and each given to a `dyn Fn` handler that counts it.
pub(crate) fn vecdeque_burst(n: u64) -> Duration {
    let count = std::cell::Cell::new(0u64);
    let handler: Box<dyn Fn(u64) + '_> = Box::new(|x| count.set(count.get() + black_box(x) - x + 1));
    let handler = black_box(&handler);
    let mut q: VecDeque<LocalMsg> = VecDeque::new();
    let t0 = Instant::now();
    for i in 0..n {
        q.push_back(LocalMsg { ep: 0, n: i });
    }
    while let Some(m) = q.pop_front() {
        black_box(m.ep);
        handler(m.n);
    }
    let dt = t0.elapsed();
    assert_eq!(count.get(), n);
    dt
}

/// A rayon pool of `n` threads, thread `i` pinned to core `i` (the lower bound of the
/// fib and pool benches).
pub(crate) fn pinned_rayon_pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .start_handler(|i| {
            if let Some(&id) = core_affinity::get_core_ids().unwrap_or_default().get(i) {
                core_affinity::set_for_current(id);
            }
        })
        .build()
        .expect("rayon pool")
}

/// Fibonacci, sequentially.
pub(crate) fn fib_seq(n: u32) -> u64 {
    if n < 2 {
        u64::from(n)
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

/// Fibonacci with `rayon::join` above `threshold`.
pub(crate) fn fib_rayon(n: u32, threshold: u32) -> u64 {
    if n < 2 || n <= threshold {
        return fib_seq(n);
    }
    let (a, b) = rayon::join(|| fib_rayon(n - 1, threshold), || fib_rayon(n - 2, threshold));
    a + b
}

/// Number of calls of the recursion for fib(n) with `threshold` (sequential leaves
/// count as one call each).
pub(crate) fn fib_calls(n: u32, threshold: u32) -> u64 {
    if n < 2 || n <= threshold {
        1
    } else {
        1 + fib_calls(n - 1, threshold) + fib_calls(n - 2, threshold)
    }
}

/// The median of 5 whole jobs' figures: each job is `cmd()` run to its end, its figure
/// what `parse` finds in its standard output (`None` if a job fails or prints none).
pub(crate) fn median_of_jobs(
    mut cmd: impl FnMut() -> std::process::Command,
    parse: impl Fn(&str) -> Option<f64>,
) -> Option<f64> {
    let mut runs = Vec::new();
    for _ in 0..5 {
        let out = cmd().output().ok()?;
        runs.push(parse(&String::from_utf8_lossy(&out.stdout))?);
    }
    runs.sort_by(f64::total_cmp);
    Some(runs[runs.len() / 2])
}

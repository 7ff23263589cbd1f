//! Small-message throughput (comparison bench, usable as a regression bench).
//!
//! - `many_to_one` (`+p2`, default adaptive idle policy, pinned): a group element on
//!   every PE sends its share of N one-way `u64` messages to a sink chare on PE 0, which
//!   completes a future after the N-th. Lower bound: two threads pinned to cores 0 and
//!   1 send their shares into one unbounded crossbeam channel, and the core-0 thread
//!   receives all N (it sends its share first, as PE 0 does).
//! - `same_pe` (`+p1`): the same chares on one PE, so every message goes through PE 0's
//!   local queue. Lower bound: N pushes on a `VecDeque`, then N pops, each calling a
//!   `dyn Fn`.
//!
//! One criterion iteration is one message; the end-of-run lines give the ratio of the
//! per-message times and the messages per second. No goal was set for these two.

mod common;

use std::hint::black_box;
use std::time::Instant;

use charmrs::prelude::*;
use charmrs::Job;
use common::{Goal, Samples, Summary};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

/// Counts the messages it receives.
pub struct Sink {
    left: u64,
    done: Option<Future<()>>,
}

#[chare]
impl Sink {
    fn new() -> Self {
        Sink { left: 0, done: None }
    }

    /// Expects `n` (>= 1) messages, then completes `done`.
    fn expect(&mut self, n: u64, done: Future<()>) {
        self.left = n;
        self.done = Some(done);
    }

    /// One small message.
    fn put(&mut self, x: u64) {
        black_box(x);
        self.left -= 1;
        if self.left == 0 {
            if let Some(done) = self.done.take() {
                done.send(());
            }
        }
    }
}

/// One sender per PE.
pub struct Source;

#[chare]
impl Source {
    fn new() -> Self {
        Source
    }

    /// Sends this PE's share of `total` messages to element 0 of `sink`.
    fn blast(&mut self, ctx: &Ctx<Self>, total: u64, sink: SinkProxy) {
        let p = u64::from(ctx.num_pes());
        let me = u64::from(ctx.my_pe().0);
        let share = total / p + u64::from(me < total % p);
        let to = sink.elem(0);
        for i in 0..share {
            to.put(i);
        }
    }
}

/// The chares of one job.
#[derive(Clone, Copy)]
struct Chares {
    sink: SinkProxy,
    sources: SourceProxy,
}

fn create(job: &Job) -> Chares {
    job.run(|| async {
        let sink = Array::<Sink>::new(1, ()).await.expect("sink created");
        let sources = Group::<Source>::new(()).await.expect("sources created");
        Chares { sink, sources }
    })
}

fn bench_charmrs(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, job: &Job, ch: Chares) -> Samples {
    let samples = Samples::default();
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let dt = job.run(move || async move {
                let done = Future::new();
                ch.sink.elem(0).expect(iters, done.clone()).awaitable().await.expect("sink ready");
                let t0 = Instant::now();
                ch.sources.blast(iters, ch.sink);
                done.await.expect("all messages arrived");
                t0.elapsed()
            });
            samples.record(iters, dt)
        })
    });
    samples
}

/// Two pinned threads sending into one unbounded channel; the core-0 thread also
/// receives everything.
struct CrossbeamManyToOne {
    ctl: Vec<Sender<u64>>,
    done: Receiver<std::time::Duration>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CrossbeamManyToOne {
    fn new() -> Self {
        let (tx, rx) = unbounded::<u64>();
        let (done_tx, done) = bounded(1);
        let (ctl0, ctl0_rx) = bounded::<u64>(1);
        let (ctl1, ctl1_rx) = bounded::<u64>(1);
        let tx1 = tx.clone();
        let t0 = common::spawn_pinned(0, "cb-sink", move || {
            while let Ok(n) = ctl0_rx.recv() {
                let start = Instant::now();
                for i in 0..n - n / 2 {
                    tx.send(i).expect("receiver alive");
                }
                for _ in 0..n {
                    black_box(rx.recv().expect("senders alive"));
                }
                let _ = done_tx.send(start.elapsed());
            }
        });
        let t1 = common::spawn_pinned(1, "cb-source", move || {
            while let Ok(n) = ctl1_rx.recv() {
                for i in 0..n / 2 {
                    tx1.send(i).expect("receiver alive");
                }
            }
        });
        CrossbeamManyToOne { ctl: vec![ctl0, ctl1], done, threads: vec![t0, t1] }
    }

    fn run(&self, n: u64) -> std::time::Duration {
        for c in &self.ctl {
            c.send(n).expect("bench thread alive");
        }
        self.done.recv().expect("sink thread alive")
    }
}

impl Drop for CrossbeamManyToOne {
    fn drop(&mut self) {
        self.ctl.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn many_to_one(c: &mut Criterion, summary: &mut Summary) {
    let mut g = c.benchmark_group("many_to_one");
    let job = common::launch(2, None);
    let ch = create(&job);
    let charmrs = bench_charmrs(&mut g, "charmrs_p2", &job, ch);
    assert_eq!(job.shutdown(), 0);
    let cb = CrossbeamManyToOne::new();
    let bound = Samples::default();
    g.bench_function("crossbeam_unbounded_2_threads", |b| {
        b.iter_custom(|iters| bound.record(iters, cb.run(iters)))
    });
    drop(cb);
    g.finish();
    summary.ratio("many_to_one per message (+p2)", &charmrs, "crossbeam", &bound, Goal::None);
    summary.rate("many_to_one (+p2)", (1.0, " msgs"), &charmrs, "crossbeam", &bound, "received by one PE");
}

fn same_pe(c: &mut Criterion, summary: &mut Summary) {
    let mut g = c.benchmark_group("same_pe_throughput");
    let job = common::launch(1, None);
    let ch = create(&job);
    let charmrs = bench_charmrs(&mut g, "charmrs_p1", &job, ch);
    assert_eq!(job.shutdown(), 0);
    let bound = Samples::default();
    g.bench_function("vecdeque_dyn_fn_burst", |b| {
        b.iter_custom(|iters| bound.record(iters, common::vecdeque_burst(iters)))
    });
    g.finish();
    summary.ratio("same_pe_throughput per message (+p1)", &charmrs, "VecDeque+dyn Fn", &bound, Goal::None);
    summary.rate(
        "same_pe_throughput (+p1)",
        (1.0, " msgs"),
        &charmrs,
        "VecDeque+dyn Fn",
        &bound,
        "one PE sends to itself",
    );
}

fn main() {
    let mut c = common::criterion();
    let mut summary = Summary::default();
    many_to_one(&mut c, &mut summary);
    same_pe(&mut c, &mut summary);
    c.final_summary();
    summary.print();
}

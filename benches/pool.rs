//! The task pool against rayon (comparison bench, usable as a regression bench), `+p2`
//! pinned, default adaptive idle policy; rayon runs a 2-thread pool pinned to the same
//! cores. One criterion iteration is one whole computation.
//!
//! - `pool_fib25_threshold12`: recursive Fibonacci as nested tasks (each submits its
//!   two halves and awaits them), sequential at or below the threshold; bound:
//!   `rayon::join` with the same threshold.
//! - `pool_fib20_threshold0`: every one of the 21,891 calls is a task; bound:
//!   `rayon::join` per call. Reported as tasks per second too.
//! - `pool_map_4096x5us`: an embarrassingly parallel map of 4096 tasks of ~5 us of
//!   work each, submitted at once from PE 0; bound: rayon's `par_iter().map()`.
//!
//! No goal was set by the issue beyond reporting the ratios.

mod common;

use std::time::{Duration, Instant};

use charmrs::pool::{self, Task};
use charmrs::Job;
use common::{Goal, Samples, Summary};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use rayon::prelude::*;

/// fib(.0), sequential at or below .1.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Fib(u32, u32);

impl Task for Fib {
    type Output = u64;
    async fn run(self) -> u64 {
        let Fib(n, t) = self;
        if n < 2 || n <= t {
            return common::fib_seq(n);
        }
        let (a, b) = (pool::submit(Fib(n - 1, t)), pool::submit(Fib(n - 2, t)));
        a.await.expect("fib(n-1)") + b.await.expect("fib(n-2)")
    }
}

/// About `.0` of busy work.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Spin(Duration);

fn spin(d: Duration) -> u32 {
    let t0 = Instant::now();
    let mut k = 0u32;
    while t0.elapsed() < d {
        k = k.wrapping_add(1);
        std::hint::spin_loop();
    }
    k
}

impl Task for Spin {
    type Output = u32;
    async fn run(self) -> u32 {
        spin(self.0)
    }
}

const MAP_TASKS: usize = 4096;
const MAP_WORK: Duration = Duration::from_micros(5);

fn bench_pool_fib(g: &mut BenchmarkGroup<'_, WallTime>, job: &Job, n: u32, t: u32) -> Samples {
    let samples = Samples::default();
    let expected = common::fib_seq(n);
    g.bench_function("charmrs_pool_p2", |b| {
        b.iter_custom(|iters| {
            let dt = job.run(move || async move {
                let t0 = Instant::now();
                for _ in 0..iters {
                    assert_eq!(pool::submit(Fib(n, t)).await.expect("fib"), expected);
                }
                t0.elapsed()
            });
            samples.record(iters, dt)
        })
    });
    samples
}

fn bench_pool_map(g: &mut BenchmarkGroup<'_, WallTime>, job: &Job) -> Samples {
    let samples = Samples::default();
    g.bench_function("charmrs_pool_p2", |b| {
        b.iter_custom(|iters| {
            let dt = job.run(move || async move {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let r = pool::map((0..MAP_TASKS).map(|_| Spin(MAP_WORK))).await.expect("map");
                    assert_eq!(r.len(), MAP_TASKS);
                }
                t0.elapsed()
            });
            samples.record(iters, dt)
        })
    });
    samples
}

fn main() {
    let mut c: Criterion = common::criterion();
    let mut summary = Summary::default();
    let fibs = [(25, 12, "pool_fib25_threshold12"), (20, 0, "pool_fib20_threshold0")];

    let job = common::launch(2, None);
    let mut ours = Vec::new();
    for &(n, t, name) in &fibs {
        let mut g = c.benchmark_group(name);
        ours.push(bench_pool_fib(&mut g, &job, n, t));
        g.finish();
    }
    let mut g = c.benchmark_group("pool_map_4096x5us");
    let map_ours = bench_pool_map(&mut g, &job);
    g.finish();
    assert_eq!(job.shutdown(), 0);

    let rpool = common::pinned_rayon_pool(2);
    let mut bound = Vec::new();
    for &(n, t, name) in &fibs {
        let mut g = c.benchmark_group(name);
        let s = Samples::default();
        let expected = common::fib_seq(n);
        g.bench_function("rayon_join_2_threads", |b| {
            b.iter_custom(|iters| {
                let dt = rpool.install(|| {
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        assert_eq!(common::fib_rayon(std::hint::black_box(n), t), expected);
                    }
                    t0.elapsed()
                });
                s.record(iters, dt)
            })
        });
        g.finish();
        bound.push(s);
    }
    let mut g = c.benchmark_group("pool_map_4096x5us");
    let map_bound = Samples::default();
    g.bench_function("rayon_par_iter_2_threads", |b| {
        b.iter_custom(|iters| {
            let dt = rpool.install(|| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let r: Vec<u32> = (0..MAP_TASKS).into_par_iter().map(|_| spin(MAP_WORK)).collect();
                    assert_eq!(r.len(), MAP_TASKS);
                }
                t0.elapsed()
            });
            map_bound.record(iters, dt)
        })
    });
    g.finish();
    drop(rpool);

    c.final_summary();
    for (i, &(n, t, name)) in fibs.iter().enumerate() {
        summary.ratio(&format!("{name} (+p2)"), &ours[i], "rayon::join", &bound[i], Goal::None);
        let k = common::fib_calls(n, t) as f64;
        summary.rate(
            &format!("{name} (+p2)"),
            (k, " tasks"),
            &ours[i],
            "rayon::join",
            &bound[i],
            &format!("{k} tasks per fib({n})"),
        );
    }
    summary.ratio("pool_map_4096x5us (+p2)", &map_ours, "rayon par_iter", &map_bound, Goal::None);
    summary.print();
}

//! Recursive Fibonacci with futures and async entry methods (comparison bench, usable
//! as a regression bench), as `examples/fib.rs`: each call above the threshold calls
//! fib(n-1) and fib(n-2) with `.ret()` on the next two PEs of a group and awaits both.
//!
//! - `fib25_threshold12` (`+p2`, pinned, default adaptive idle policy): below the
//!   threshold a call computes sequentially, so a run mixes messages and computation.
//!   Lower bound: `rayon::join` with the same threshold on a 2-thread rayon pool whose
//!   threads are pinned to cores 0 and 1.
//! - `fib20_threshold0`: every one of the 21,891 calls is an entry method (Charm4py 1.1
//!   takes 0.568 s); reported as calls per second, against `rayon::join` with threshold
//!   0 (a join per call).
//!
//! One criterion iteration is one whole fib(n). No goal was set.

mod common;

use std::time::Instant;

use charmrs::prelude::*;
use charmrs::Job;
use common::{Goal, Samples, Summary};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};

/// One worker per PE.
pub struct Fib;

#[chare]
impl Fib {
    fn new() -> Self {
        Fib
    }

    /// fib(n), computed sequentially at or below `threshold`.
    async fn fib(this: Handle<Self>, n: u32, threshold: u32) -> u64 {
        if n < 2 || n <= threshold {
            return common::fib_seq(n);
        }
        let me = this.my_pe().0;
        let p = this.num_pes();
        let workers = this.this_proxy();
        let a = workers.elem(((me + 1) % p) as i32).fib(n - 1, threshold).ret();
        let b = workers.elem(((me + 2) % p) as i32).fib(n - 2, threshold).ret();
        let (a, b) = (a.await.expect("fib(n-1)"), b.await.expect("fib(n-2)"));
        a + b
    }
}

fn bench_charmrs(
    g: &mut BenchmarkGroup<'_, WallTime>,
    job: &Job,
    workers: FibProxy,
    n: u32,
    threshold: u32,
) -> Samples {
    let samples = Samples::default();
    let expected = common::fib_seq(n);
    g.bench_function("charmrs_p2", |b| {
        b.iter_custom(|iters| {
            let dt = job.run(move || async move {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let r = workers.elem(0).fib(n, threshold).ret().await.expect("fib");
                    assert_eq!(r, expected);
                }
                t0.elapsed()
            });
            samples.record(iters, dt)
        })
    });
    samples
}

fn bench_rayon(
    g: &mut BenchmarkGroup<'_, WallTime>,
    pool: &rayon::ThreadPool,
    n: u32,
    threshold: u32,
) -> Samples {
    let samples = Samples::default();
    let expected = common::fib_seq(n);
    g.bench_function("rayon_join_2_threads", |b| {
        b.iter_custom(|iters| {
            let dt = pool.install(|| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    assert_eq!(common::fib_rayon(std::hint::black_box(n), threshold), expected);
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
    let cases = [(25, 12, "fib25_threshold12"), (20, 0, "fib20_threshold0")];

    let mut charmrs = Vec::new();
    let job = common::launch(2, None);
    let workers = job.run(|| async { Group::<Fib>::new(()).await.expect("workers created") });
    for &(n, t, name) in &cases {
        let mut g = c.benchmark_group(name);
        charmrs.push(bench_charmrs(&mut g, &job, workers, n, t));
        g.finish();
    }
    assert_eq!(job.shutdown(), 0);

    let pool = common::pinned_rayon_pool(2);
    let mut bound = Vec::new();
    for &(n, t, name) in &cases {
        let mut g = c.benchmark_group(name);
        bound.push(bench_rayon(&mut g, &pool, n, t));
        g.finish();
    }
    drop(pool);

    c.final_summary();
    for (i, &(n, t, name)) in cases.iter().enumerate() {
        summary.ratio(&format!("{name} (+p2)"), &charmrs[i], "rayon::join", &bound[i], Goal::None);
        let k = common::fib_calls(n, t) as f64;
        summary.rate(
            &format!("{name} (+p2)"),
            (k, " calls"),
            &charmrs[i],
            "rayon::join",
            &bound[i],
            &format!("{k} calls per fib({n})"),
        );
    }
    summary.print();
}

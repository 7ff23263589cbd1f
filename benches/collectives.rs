//! One broadcast + reduction round over all PEs (comparison bench, usable as a
//! regression bench).
//!
//! A task on PE 0 broadcasts `round(f)` to a group; every element contributes `1u64`
//! to a sum delivered to the future `f`, which the task awaits before the next round.
//! One criterion iteration is one round.
//!
//! - `+p2` (pinned), with the default adaptive idle policy and with `+idle spin`.
//!   Lower bound, the "raw barrier": a thread pinned to core 0 sends a crossbeam-channel
//!   message to every other thread (here the one on core 1) and waits for each reply.
//! - `+p1`: the round never leaves PE 0. A one-thread barrier is empty, so the lower
//!   bound is the same-thread cost of the two messages a round needs (the broadcast's
//!   delivery and the result's): two `VecDeque` push/pop + `dyn Fn` calls.
//!
//! - Sections, `+p2`: a 64-element array; a round is a multicast to a section of half
//!   of it (32 elements, split by a slice) whose members contribute to a section
//!   reduction, against the same round broadcast to the whole array.
//!
//! No goal was set. For reference (`/work/shared/PERF-NOTES.md`): Charm4py 1.1 takes
//! 33 us per round at +p2, MPI Bcast+Reduce 2.0 us.

mod common;

use std::time::Instant;

use charmrs::prelude::*;
use charmrs::Job;
use common::{CrossbeamEcho, Goal, Samples, Summary};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};

/// One element per PE.
pub struct Member;

#[chare]
impl Member {
    fn new() -> Self {
        Member
    }

    /// Contributes 1 to a sum delivered to `f`.
    fn round(&mut self, ctx: &Ctx<Self>, f: Future<u64>) {
        ctx.contribute(1u64, Reducer::sum(), f);
    }
}

/// An element of the array of the section bench.
pub struct Cell;

#[chare]
impl Cell {
    fn new() -> Self {
        Cell
    }

    /// Contributes 1 to a sum over the whole array.
    fn round(&mut self, ctx: &Ctx<Self>, f: Future<u64>) {
        ctx.contribute(1u64, Reducer::sum(), f);
    }

    /// Contributes 1 to a sum over section `sec`.
    fn round_in(&mut self, ctx: &Ctx<Self>, f: Future<u64>, sec: CellProxy) {
        ctx.section_contribute(&sec, 1u64, Reducer::sum(), f);
    }
}

fn sections(c: &mut Criterion, summary: &mut Summary) {
    let mut g = c.benchmark_group("section_round_p2");
    let job = common::launch(2, None);
    let (arr, half) = job.run(|| async {
        let a = Array::<Cell>::new([64], ()).await.expect("array");
        let s = charmrs::section(&a, charmrs::Members::Slice(vec![charmrs::SliceDim::new(0, 32, 1)]))
            .await
            .expect("section");
        (a, s)
    });
    let sec = Samples::default();
    g.bench_function("charmrs_section_of_32", |b| {
        b.iter_custom(|iters| {
            let dt = job.run(move || async move {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let f = Future::new();
                    half.round_in(f.clone(), half);
                    assert_eq!(f.await.expect("section reduction"), 32);
                }
                t0.elapsed()
            });
            sec.record(iters, dt)
        })
    });
    let whole = Samples::default();
    g.bench_function("charmrs_whole_array_of_64", |b| {
        b.iter_custom(|iters| {
            let dt = job.run(move || async move {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let f = Future::new();
                    arr.round(f.clone());
                    assert_eq!(f.await.expect("reduction"), 64);
                }
                t0.elapsed()
            });
            whole.record(iters, dt)
        })
    });
    assert_eq!(job.shutdown(), 0);
    g.finish();
    summary.ratio(
        "section of 32 multicast + section reduction (+p2)",
        &sec,
        "whole-array (64) bcast + reduction",
        &whole,
        Goal::None,
    );
}

fn bench_rounds(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, job: &Job) -> Samples {
    let group = job.run(|| async { Group::<Member>::new(()).await.expect("group created") });
    let samples = Samples::default();
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let dt = job.run(move || async move {
                let pes = u64::from(charmrs::num_pes());
                let t0 = Instant::now();
                for _ in 0..iters {
                    let f = Future::new();
                    group.round(f.clone());
                    let sum = f.await.expect("reduction");
                    assert_eq!(sum, pes);
                }
                t0.elapsed()
            });
            samples.record(iters, dt)
        })
    });
    samples
}

fn two_pes(c: &mut Criterion, summary: &mut Summary) {
    let mut g = c.benchmark_group("bcast_reduce_round_p2");
    let mut charmrs = Vec::new();
    for (label, idle) in [("adaptive", None), ("spin", Some("spin"))] {
        let job = common::launch(2, idle);
        charmrs.push((label, bench_rounds(&mut g, &format!("charmrs_p2_{label}"), &job)));
        assert_eq!(job.shutdown(), 0);
    }
    let echo = CrossbeamEcho::new();
    let bound = Samples::default();
    g.bench_function("raw_barrier_crossbeam", |b| {
        b.iter_custom(|iters| bound.record(iters, echo.round_trips(iters)))
    });
    drop(echo);
    g.finish();
    for (label, s) in &charmrs {
        summary.ratio(
            &format!("bcast_reduce_round (+p2, +idle {label})"),
            s,
            "raw barrier",
            &bound,
            Goal::None,
        );
    }
}

fn one_pe(c: &mut Criterion, summary: &mut Summary) {
    let mut g = c.benchmark_group("bcast_reduce_round_p1");
    let job = common::launch(1, None);
    let charmrs = bench_rounds(&mut g, "charmrs_p1", &job);
    assert_eq!(job.shutdown(), 0);
    let bound = Samples::default();
    g.bench_function("two_local_messages", |b| {
        b.iter_custom(|iters| bound.record(iters, common::vecdeque_chain(2 * iters)))
    });
    g.finish();
    summary.ratio("bcast_reduce_round (+p1)", &charmrs, "2 x VecDeque+dyn Fn", &bound, Goal::None);
}

fn main() {
    let mut c = common::criterion();
    let mut summary = Summary::default();
    two_pes(&mut c, &mut summary);
    one_pe(&mut c, &mut summary);
    sections(&mut c, &mut summary);
    c.final_summary();
    summary.print();
}

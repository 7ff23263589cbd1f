//! Ping-pong latency of an entry-method call, one-way (comparison bench, usable as a
//! regression bench).
//!
//! - `cross_pe_pingpong_one_way`: two chares on PE 0 and PE 1 (`+p2`, pinned) bounce a
//!   `u64`, once with `+idle spin` and once with the default adaptive idle policy.
//!   Lower bound: a crossbeam-channel (`bounded(1)`) ping-pong between two threads
//!   pinned to cores 0 and 1, measured in the same run. Goal: <= 1.5x.
//! - `same_pe_send_dispatch_one_way`: the same two chares on one PE (`+p1`): each hop is
//!   one send plus one dispatch on the same PE. Lower bound: a `VecDeque` push and pop
//!   plus a `dyn Fn` call per message. Goals: <= 3x, and >= 10 M messages/s per PE.
//!
//! One criterion iteration is one round trip; the time reported is half of it (one
//! way). The `RATIO`/`RATE` lines at the end use the median of criterion's samples.

mod common;

use std::time::Instant;

use charmrs::prelude::*;
use charmrs::Job;
use common::{CrossbeamEcho, Goal, Samples, Summary};
use criterion::Criterion;

/// One side of the ping-pong.
pub struct Player {
    left: u64,
    done: Option<Future<()>>,
}

#[chare]
impl Player {
    fn new() -> Self {
        Player { left: 0, done: None }
    }

    /// Starts `round_trips` (>= 1) exchanges with element 1; completes `done` at the end.
    fn start(&mut self, ctx: &Ctx<Self>, round_trips: u64, done: Future<()>) {
        self.left = round_trips;
        self.done = Some(done);
        ctx.this_proxy().elem(1).ping(0);
    }

    /// Element 1 answers every ping.
    fn ping(&mut self, ctx: &Ctx<Self>, n: u64) {
        ctx.this_proxy().elem(0).pong(n + 1);
    }

    /// Element 0 counts the round trips.
    fn pong(&mut self, ctx: &Ctx<Self>, n: u64) {
        self.left -= 1;
        if self.left == 0 {
            if let Some(done) = self.done.take() {
                done.send(());
            }
        } else {
            ctx.this_proxy().elem(1).ping(n);
        }
    }
}

/// Element 0 on PE 0, element 1 on the last PE (PE 0 too at `+p1`).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Ends;
charmrs::register_map!(Ends);

impl ArrayMap for Ends {
    fn pe_of(&self, index: &Index, _shape: &Index, num_pes: u32) -> PeId {
        if index[0] == 0 {
            PeId(0)
        } else {
            PeId(num_pes - 1)
        }
    }
}

/// Creates the two players in `job`.
fn players(job: &Job) -> PlayerProxy {
    job.run(|| async { Array::<Player>::with_map(2, Ends, ()).await.expect("players created") })
}

/// Benchmarks `iters` round trips between the players, reporting half of each.
fn bench_players(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    job: &Job,
    players: PlayerProxy,
) -> Samples {
    let samples = Samples::default();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let one_way = job.run(move || async move {
                let done = Future::new();
                let t0 = Instant::now();
                players.elem(0).start(iters, done.clone());
                done.await.expect("ping-pong finished");
                t0.elapsed() / 2
            });
            samples.record(iters, one_way)
        })
    });
    samples
}

fn cross_pe(c: &mut Criterion, summary: &mut Summary) {
    let mut g = c.benchmark_group("cross_pe_pingpong_one_way");
    let mut charmrs = Vec::new();
    for (label, idle) in [("spin", Some("spin")), ("adaptive", None)] {
        let job = common::launch(2, idle);
        let p = players(&job);
        charmrs.push((label, bench_players(&mut g, &format!("charmrs_p2_{label}"), &job, p)));
        assert_eq!(job.shutdown(), 0);
    }
    let echo = CrossbeamEcho::new();
    let bound = Samples::default();
    g.bench_function("crossbeam_bounded1_pinned", |b| {
        b.iter_custom(|iters| bound.record(iters, echo.round_trips(iters) / 2))
    });
    drop(echo);
    g.finish();
    for (label, s) in &charmrs {
        summary.ratio(
            &format!("cross_pe_pingpong_one_way (+p2, +idle {label})"),
            s,
            "crossbeam",
            &bound,
            Goal::RatioAtMost(1.5),
        );
    }
}

fn same_pe(c: &mut Criterion, summary: &mut Summary) {
    let mut g = c.benchmark_group("same_pe_send_dispatch_one_way");
    let job = common::launch(1, None);
    let p = players(&job);
    let charmrs = bench_players(&mut g, "charmrs_p1", &job, p);
    assert_eq!(job.shutdown(), 0);
    let bound = Samples::default();
    g.bench_function("vecdeque_dyn_fn", |b| {
        b.iter_custom(|iters| bound.record(iters, common::vecdeque_chain(2 * iters) / 2))
    });
    g.finish();
    summary.ratio(
        "same_pe_send_dispatch_one_way (+p1)",
        &charmrs,
        "VecDeque+dyn Fn",
        &bound,
        Goal::RatioAtMost(3.0),
    );
    let goal = match charmrs.median_ns() {
        Some(ns) if 1e9 / ns >= 10e6 => "goal >= 10 M msgs/s per PE: met",
        Some(_) => "goal >= 10 M msgs/s per PE: NOT met",
        None => "not run",
    };
    summary.rate("same_pe_send_dispatch (+p1)", (1.0, " msgs"), &charmrs, "VecDeque+dyn Fn", &bound, goal);
}

fn main() {
    let mut c = common::criterion();
    let mut summary = Summary::default();
    cross_pe(&mut c, &mut summary);
    same_pe(&mut c, &mut summary);
    c.final_summary();
    summary.print();
}

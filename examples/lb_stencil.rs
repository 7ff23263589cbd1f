//! An imbalanced 1-d stencil with load balancing: a ring of blocks, each exchanging
//! its value with its two neighbours every iteration, then working for a time that
//! depends on the block (the first `1/p` of the blocks work `heavy` microseconds, the
//! rest `light`). With the default block map the heavy blocks all start on PE 0.
//! Every `lb_every` iterations the blocks call `at_sync`; with `+balancer GreedyLB`
//! (or another) the runtime moves blocks by their measured load and resumes them.
//! `map = rr` places the blocks round-robin instead: the perfectly balanced run the
//! benchmark compares with. Prints the time per iteration and a checksum that must not
//! depend on placement or balancing.
//!
//! `cargo run --release --example lb_stencil -- +p2 [+balancer GreedyLB] [+LBDebug 1]
//!  [blocks] [iterations] [lb_every] [heavy_us] [light_us] [block|rr]`

use std::time::{Duration, Instant};

use charmrs::prelude::*;
use serde::{Deserialize, Serialize};

/// The parameters of a run.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Cfg {
    n: i32,
    iters: u32,
    lb_every: u32,
    heavy_us: u64,
    light_us: u64,
}

/// One block of the ring.
#[derive(Serialize, Deserialize)]
pub struct Block {
    cfg: Cfg,
    iter: u32,
    v: f64,
    /// The neighbours' values of the current iteration received so far.
    got: u32,
    sum: f64,
    /// Iterations this block sent its value for (it computes an iteration once both
    /// neighbours' values are in and its own went out: after a load-balancing step the
    /// neighbours may resume, and send, before it does).
    sent: u32,
    moves: u32,
    done: Option<Future<(f64, u32)>>,
}

#[chare(migratable)]
impl Block {
    fn new(cfg: Cfg) -> Self {
        Block { cfg, iter: 0, v: 0.0, got: 0, sum: 0.0, sent: 0, moves: 0, done: None }
    }

    /// Starts the iterations; the result (checksum, moves) goes to `done`.
    fn start(&mut self, ctx: &Ctx<Self>, done: Future<(f64, u32)>) {
        self.v = ctx.this_index()[0] as f64;
        self.done = Some(done);
        self.send_halos(ctx);
    }

    /// A neighbour's value of iteration `iter` (early ones wait for their iteration).
    #[when(self.iter == *iter)]
    fn halo(&mut self, ctx: &Ctx<Self>, iter: u32, v: f64) {
        debug_assert_eq!(iter, self.iter);
        self.sum += v;
        self.got += 1;
        self.step(ctx);
    }

    /// After a load-balancing step: go on.
    fn resume_from_sync(&mut self, ctx: &Ctx<Self>) {
        self.send_halos(ctx);
        self.step(ctx);
    }

    /// After a move.
    fn migrated(&mut self) {
        self.moves += 1;
    }
}

impl Block {
    fn send_halos(&mut self, ctx: &Ctx<Self>) {
        self.sent = self.iter + 1;
        let i = ctx.this_index()[0];
        let n = self.cfg.n;
        ctx.this_proxy().elem((i + n - 1) % n).halo(self.iter, self.v);
        ctx.this_proxy().elem((i + 1) % n).halo(self.iter, self.v);
    }

    /// Computes the current iteration if its inputs are in and its value went out.
    fn step(&mut self, ctx: &Ctx<Self>) {
        if self.got < 2 || self.sent != self.iter + 1 {
            return;
        }
        let i = ctx.this_index()[0];
        let heavy = i < self.cfg.n / ctx.num_pes() as i32;
        let us = if heavy { self.cfg.heavy_us } else { self.cfg.light_us };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_micros(us) {
            std::hint::spin_loop();
        }
        self.v = (self.v + self.sum) / 3.0 + 1.0;
        self.sum = 0.0;
        self.got = 0;
        self.iter += 1;
        if self.iter == self.cfg.iters {
            let done = self.done.clone().expect("started");
            ctx.contribute(
                (self.v, self.moves),
                Reducer::custom("sum2", |a: (f64, u32), b| (a.0 + b.0, a.1 + b.1)),
                done,
            );
        } else if self.cfg.lb_every > 0 && self.iter % self.cfg.lb_every == 0 {
            ctx.at_sync();
        } else {
            self.send_halos(ctx);
        }
    }
}

/// Round-robin placement: block `i` on PE `i % p`.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct RoundRobin;
charmrs::register_map!(RoundRobin);

impl ArrayMap for RoundRobin {
    fn pe_of(&self, index: &Index, _shape: &Index, num_pes: u32) -> PeId {
        PeId(index[0] as u32 % num_pes)
    }
}

fn main() {
    charmrs::start(|main| async move {
        let arg = |i: usize, d: u64| main.args().get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
        let cfg = Cfg {
            n: arg(1, 32) as i32,
            iters: arg(2, 60) as u32,
            lb_every: arg(3, 10) as u32,
            heavy_us: arg(4, 400),
            light_us: arg(5, 100),
        };
        let rr = main.args().get(6).map(String::as_str) == Some("rr");
        let blocks = if rr {
            Array::<Block>::with_map([cfg.n], RoundRobin, (cfg,)).await
        } else {
            Array::<Block>::new([cfg.n], (cfg,)).await
        }
        .expect("array");
        let done = Future::<(f64, u32)>::new();
        let t0 = Instant::now();
        blocks.start(done.clone());
        let (sum, moves) = done.await.expect("stencil");
        let t = t0.elapsed();
        println!(
            "lb_stencil {} blocks on {} PEs, map {}: {:.3} ms per iteration, {moves} moves, checksum {sum:.6}",
            cfg.n,
            charmrs::num_pes(),
            if rr { "rr" } else { "block" },
            t.as_secs_f64() * 1e3 / cfg.iters as f64
        );
        charmrs::exit(0);
    })
}

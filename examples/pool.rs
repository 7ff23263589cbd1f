//! The task pool: recursive Fibonacci as nested tasks (each waits for the two it
//! submits), a map over many small tasks that every PE takes part in by stealing
//! (also across processes), a map with at most `ncores` tasks at once, and a task
//! that panics, whose failure reaches the caller of `map`. Exit status 1 on any wrong
//! result.
//!
//! `cargo run --release --example pool -- +p4 [n]`

use charmrs::pool::{self, Task};
use charmrs::PeId;

/// Fibonacci of `.0`, sequential below `.1`, as tasks above.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Fib(u64, u64);
charmrs::register_task!(Fib);

fn fib_seq(n: u64) -> u64 {
    if n < 2 {
        n
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

impl Task for Fib {
    type Output = u64;
    async fn run(self) -> u64 {
        let Fib(n, cutoff) = self;
        if n < cutoff.max(2) {
            return fib_seq(n);
        }
        let a = pool::submit(Fib(n - 1, cutoff));
        let b = pool::submit(Fib(n - 2, cutoff));
        a.await.expect("fib(n-1)") + b.await.expect("fib(n-2)")
    }
}

/// About `.0` microseconds of work; returns the PE that did it.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Work(u64);
charmrs::register_task!(Work);

impl Task for Work {
    type Output = PeId;
    async fn run(self) -> PeId {
        let t0 = std::time::Instant::now();
        while t0.elapsed().as_micros() < self.0 as u128 {
            std::hint::spin_loop();
        }
        charmrs::my_pe()
    }
}

/// Squares `.0`, or panics when it is 13.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Square(i64);
charmrs::register_task!(Square);

impl Task for Square {
    type Output = i64;
    async fn run(self) -> i64 {
        if self.0 == 13 {
            panic!("unlucky number {}", self.0);
        }
        self.0 * self.0
    }
}

fn main() {
    charmrs::start(|main| async move {
        let n: u64 = main.args().get(1).and_then(|a| a.parse().ok()).unwrap_or(24);
        let p = charmrs::num_pes();
        let mut bad = 0;

        let t0 = std::time::Instant::now();
        let f = pool::submit(Fib(n, 12)).await.expect("fib");
        let ok = f == fib_seq(n);
        bad += u32::from(!ok);
        println!(
            "fib({n}) = {f} in {:.1} ms ({})",
            t0.elapsed().as_secs_f64() * 1e3,
            if ok { "ok" } else { "WRONG" }
        );

        let pes = pool::map((0..400).map(|_| Work(200))).await.expect("map");
        let mut used: Vec<u32> = pes.iter().map(|p| p.0).collect();
        used.sort_unstable();
        used.dedup();
        println!("400 tasks ran on {} of {p} PEs", used.len());

        let sq = pool::map((0..100).map(Square)).await;
        match sq {
            Err(e) if e.to_string().contains("unlucky number 13") => {
                println!("a panicking task: the error reached map")
            }
            other => {
                bad += 1;
                println!("WRONG: a panicking task gave {:?}", other.map(|v| v.len()));
            }
        }
        let sq = pool::map_limited((0..50).filter(|&i| i != 13).map(Square), 2).await.expect("map_limited");
        let ok = sq == (0..50).filter(|&i| i != 13).map(|i| i * i).collect::<Vec<_>>();
        bad += u32::from(!ok);
        println!("map with ncores=2: {}", if ok { "ok" } else { "WRONG" });

        // Quiescence once the pool is idle: the stealing protocol goes quiet.
        charmrs::wait_qd().await.expect("quiescence");
        println!("pool on {p} PEs: {bad} wrong");
        charmrs::exit(if bad == 0 { 0 } else { 1 });
    })
}

//! Recursive Fibonacci with futures and async entry methods: each call above the
//! threshold calls two others, on other PEs, and awaits both; while it waits, its PE
//! runs other calls (including other calls of the same chare).
//!
//! `cargo run --release --example fib -- +p4 [n] [threshold]`

use charmrs::prelude::*;

/// One worker per PE.
pub struct Fib;

fn fib_seq(n: u32) -> u64 {
    if n < 2 {
        n as u64
    } else {
        fib_seq(n - 1) + fib_seq(n - 2)
    }
}

#[chare]
impl Fib {
    fn new() -> Self {
        Fib
    }

    /// fib(n), computed sequentially below `threshold`.
    async fn fib(this: Handle<Self>, n: u32, threshold: u32) -> u64 {
        if n < 2 || n <= threshold {
            return fib_seq(n);
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

fn main() {
    charmrs::start(|main| async move {
        let n: u32 = main.args().get(1).and_then(|a| a.parse().ok()).unwrap_or(24);
        let threshold: u32 = main.args().get(2).and_then(|a| a.parse().ok()).unwrap_or(0);
        let workers = Group::<Fib>::new(()).await.expect("workers created");
        let t0 = std::time::Instant::now();
        let r = workers.elem(0).fib(n, threshold).ret().await.expect("fib");
        let dt = t0.elapsed();
        let expected = fib_seq(n);
        println!(
            "fib({n}) = {r} on {} PEs in {:.3} s (threshold {threshold})",
            charmrs::num_pes(),
            dt.as_secs_f64()
        );
        if r != expected {
            eprintln!("wrong result: expected {expected}");
            charmrs::exit(1);
            return;
        }
        charmrs::exit(0);
    })
}

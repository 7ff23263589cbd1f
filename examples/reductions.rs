//! A tour of reductions: every built-in reducer on scalars and element-wise on vectors,
//! gather, nop as a barrier, a user-defined reducer, allreduce, results sent to futures
//! and to entry methods (one element or broadcast), several reductions in flight at
//! once, over a 2-d array and a group. Every result is checked against a sequential
//! fold; the exit status is 1 on any mismatch.
//!
//! `cargo run --release --example reductions -- +p4`

use charmrs::prelude::*;

/// What the main function hands to every element: where each reduction goes.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Targets {
    sum: Future<i64>,
    product: Future<i64>,
    max: Future<i64>,
    min: Future<i64>,
    vsum: Future<Vec<f64>>,
    vmax: Future<Vec<f64>>,
    land: Future<bool>,
    lor: Future<bool>,
    lxor: Future<bool>,
    vland: Future<Vec<bool>>,
    band: Future<u32>,
    bor: Future<u32>,
    bxor: Future<u32>,
    vbxor: Future<Vec<u32>>,
    gather: Future<Vec<i32>>,
    barrier: Future<()>,
    gcd: Future<u64>,
    checked: Future<u32>,
    allreduce_ok: Future<Vec<bool>>,
}

/// An element of the 2-d array.
pub struct Elem {
    seen_total: Option<i64>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The value element `k` contributes.
fn value(k: i64) -> i64 {
    (k % 5) + 1
}

#[chare]
impl Elem {
    fn new() -> Self {
        Elem { seen_total: None }
    }

    /// Contributes to every reduction (in the same order on every element).
    async fn go(this: Handle<Self>, cols: i32, t: Targets) {
        let idx = this.this_index();
        let k = (idx[0] * cols + idx[1]) as i64;
        let v = value(k);
        this.contribute(v, Reducer::sum(), &t.sum);
        this.contribute(v, Reducer::product(), &t.product);
        this.contribute(v, Reducer::max(), &t.max);
        this.contribute(v, Reducer::min(), &t.min);
        this.contribute(vec![v as f64, 1.0, -(v as f64)], Reducer::sum(), &t.vsum);
        this.contribute(vec![v as f64, -(k as f64)], Reducer::max(), &t.vmax);
        this.contribute(v > 0, Reducer::logical_and(), &t.land);
        this.contribute(k == 3, Reducer::logical_or(), &t.lor);
        this.contribute(k % 2 == 0, Reducer::logical_xor(), &t.lxor);
        this.contribute(vec![true, k != 1], Reducer::logical_and(), &t.vland);
        this.contribute(0xffu32 ^ (1 << (k % 8)), Reducer::bitwise_and(), &t.band);
        this.contribute(1u32 << (k % 16), Reducer::bitwise_or(), &t.bor);
        this.contribute(k as u32, Reducer::bitwise_xor(), &t.bxor);
        this.contribute(vec![k as u32, 1], Reducer::bitwise_xor(), &t.vbxor);
        this.contribute(k as i32, Reducer::gather(), &t.gather);
        this.contribute((), Reducer::nop(), &t.barrier);
        this.contribute(12 * (k as u64 + 1), Reducer::custom("gcd", gcd), &t.gcd);
        // To an entry method, broadcast: every element checks the total.
        this.contribute(v, Reducer::sum(), RedTarget::call(this.this_proxy(), ElemProxy::total));
        // Allreduce: every element gets the result.
        let all = this.allreduce(v, Reducer::sum()).await.expect("allreduce");
        let expected = this.with(|e| e.seen_total);
        // The broadcast of `total` may or may not have arrived yet; when it has, it agrees.
        let ok = expected.is_none_or(|e| e == all);
        this.contribute(ok, Reducer::gather(), &t.allreduce_ok);
        this.wait(|e| e.seen_total.is_some()).await;
        let agree = this.with(|e| e.seen_total) == Some(all);
        this.contribute(agree as u32, Reducer::sum(), &t.checked);
    }

    /// Receives the sum reduction by broadcast.
    fn total(&mut self, total: i64) {
        self.seen_total = Some(total);
    }
}

/// A group whose elements each contribute their PE number, to a single element.
pub struct PerPe {
    result: Option<Future<Vec<u32>>>,
}

#[chare]
impl PerPe {
    fn new() -> Self {
        PerPe { result: None }
    }

    /// Contributes `this_pe` to a gather delivered to element 0's `collect`.
    fn go(&mut self, ctx: &Ctx<Self>, done: Future<Vec<u32>>) {
        self.result = Some(done);
        let pe = ctx.my_pe().0;
        ctx.contribute(pe, Reducer::gather(), RedTarget::call(ctx.this_proxy().elem(0), PerPeProxy::collect));
    }

    /// The gather's result arrives on element 0.
    fn collect(&mut self, pes: Vec<u32>) {
        if let Some(done) = self.result.take() {
            done.send(pes);
        }
    }
}

fn check<T: PartialEq + std::fmt::Debug>(name: &str, got: T, want: T, bad: &mut u32) {
    if got == want {
        println!("{name:>14}: {got:?}");
    } else {
        println!("{name:>14}: {got:?} MISMATCH, expected {want:?}");
        *bad += 1;
    }
}

fn main() {
    charmrs::start(|_main| async move {
        let (rows, cols) = (3, 5);
        let n = (rows * cols) as i64;
        let ks: Vec<i64> = (0..n).collect();
        let vs: Vec<i64> = ks.iter().map(|&k| value(k)).collect();
        let arr = Array::<Elem>::new([rows, cols], ()).await.expect("array created");
        let t = Targets {
            sum: Future::new(),
            product: Future::new(),
            max: Future::new(),
            min: Future::new(),
            vsum: Future::new(),
            vmax: Future::new(),
            land: Future::new(),
            lor: Future::new(),
            lxor: Future::new(),
            vland: Future::new(),
            band: Future::new(),
            bor: Future::new(),
            bxor: Future::new(),
            vbxor: Future::new(),
            gather: Future::new(),
            barrier: Future::new(),
            gcd: Future::new(),
            checked: Future::new(),
            allreduce_ok: Future::new(),
        };
        arr.go(cols, t.clone());
        let mut bad = 0;
        let sum: i64 = vs.iter().sum();
        check("sum", t.sum.await.unwrap(), sum, &mut bad);
        check("product", t.product.await.unwrap(), vs.iter().product(), &mut bad);
        check("max", t.max.await.unwrap(), *vs.iter().max().unwrap(), &mut bad);
        check("min", t.min.await.unwrap(), *vs.iter().min().unwrap(), &mut bad);
        check("vector sum", t.vsum.await.unwrap(), vec![sum as f64, n as f64, -(sum as f64)], &mut bad);
        check("vector max", t.vmax.await.unwrap(), vec![5.0, 0.0], &mut bad);
        check("logical_and", t.land.await.unwrap(), true, &mut bad);
        check("logical_or", t.lor.await.unwrap(), true, &mut bad);
        check(
            "logical_xor",
            t.lxor.await.unwrap(),
            ks.iter().filter(|&&k| k % 2 == 0).count() % 2 == 1,
            &mut bad,
        );
        check("vector and", t.vland.await.unwrap(), vec![true, false], &mut bad);
        let band = ks.iter().fold(0xffu32, |a, &k| a & (0xff ^ (1 << (k % 8))));
        check("bitwise_and", t.band.await.unwrap(), band, &mut bad);
        check(
            "bitwise_or",
            t.bor.await.unwrap(),
            ks.iter().fold(0, |a, &k| a | (1u32 << (k % 16))),
            &mut bad,
        );
        check("bitwise_xor", t.bxor.await.unwrap(), ks.iter().fold(0, |a, &k| a ^ k as u32), &mut bad);
        check(
            "vector xor",
            t.vbxor.await.unwrap(),
            vec![ks.iter().fold(0, |a, &k| a ^ k as u32), (n % 2) as u32],
            &mut bad,
        );
        check("gather", t.gather.await.unwrap(), (0..n as i32).collect::<Vec<_>>(), &mut bad);
        check("nop barrier", t.barrier.await.is_ok(), true, &mut bad);
        check("custom gcd", t.gcd.await.unwrap(), 12, &mut bad);
        check("allreduce", t.allreduce_ok.await.unwrap(), vec![true; n as usize], &mut bad);
        check("to entry", t.checked.await.unwrap(), n as u32, &mut bad);

        let group = Group::<PerPe>::new(()).await.expect("group created");
        let done = Future::new();
        group.go(done.clone());
        let pes = charmrs::num_pes();
        check("group gather", done.await.unwrap(), (0..pes).collect::<Vec<_>>(), &mut bad);

        println!("{} reductions checked, {bad} mismatches", 20);
        charmrs::exit(if bad == 0 { 0 } else { 1 });
    })
}

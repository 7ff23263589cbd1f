//! Sparse arrays and dynamic insertion: a 2-d array created empty, elements inserted
//! at their home PE, on chosen PEs, and by other elements (from other PEs); calls to
//! elements sent before they exist; a reduction started before `done_inserting` (it
//! completes after); broadcasts and reductions over exactly the inserted elements; the
//! errors of inserting after `done_inserting` and with a wrong index. Exit status 1 on
//! any wrong result.
//!
//! `cargo run --release --example sparse -- +p4 [n]`

use charmrs::prelude::*;

/// An element: its value, and the calls it received.
pub struct Cell {
    v: i64,
    got: Vec<i64>,
}

#[chare]
impl Cell {
    fn new(v: i64) -> Self {
        Cell { v, got: Vec::new() }
    }

    /// Records a call.
    fn poke(&mut self, x: i64) {
        self.got.push(x);
    }

    /// What this element received, and where it lives.
    fn report(&self, ctx: &Ctx<Self>) -> (Vec<i32>, Vec<i64>, u32) {
        (ctx.this_index().as_slice().to_vec(), self.got.clone(), ctx.my_pe().0)
    }

    /// Inserts `k` children at row `1000 + own row`, on PE `(i + own pe) % p`.
    fn spawn_children(&self, ctx: &Ctx<Self>, k: i32) {
        let me = ctx.this_index();
        for i in 0..k {
            let pe = PeId((ctx.my_pe().0 + i as u32) % ctx.num_pes());
            ctx.this_proxy().insert([1000 + me[0], i], (1,), Some(pe)).expect("insert from an element");
        }
    }

    /// Contributes its value.
    fn sum(&self, ctx: &Ctx<Self>, done: Future<i64>) {
        ctx.contribute(self.v, Reducer::sum(), done);
    }
}

fn check(bad: &mut u32, what: &str, ok: bool) {
    println!("{}: {what}", if ok { "ok" } else { "MISMATCH" });
    *bad += u32::from(!ok);
}

fn main() {
    charmrs::start(|main| async move {
        let n: i32 = main.args().get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
        let p = charmrs::num_pes();
        let mut bad = 0;
        let a = Array::<Cell>::sparse(2).await.expect("sparse array");

        // A call to an element that does not exist yet waits for its insertion.
        let poked = a.elem([7, 7]).poke(-1).awaitable();
        // Elements at their home PE, and on chosen PEs.
        for i in 0..n {
            a.insert([i, i * 3 % 7], (i as i64,), None).expect("insert");
        }
        a.insert([7, 7], (100,), Some(PeId(p - 1))).expect("insert on a PE");
        // A reduction before done_inserting: it completes once the array is frozen.
        let early = Future::<i64>::new();
        a.sum(early.clone());
        // Elements insert others (from their PEs).
        a.elem([0, 0]).spawn_children(3).awaitable().await.expect("children");
        a.elem([1, 3]).spawn_children(2).awaitable().await.expect("children");
        a.done_inserting().await.expect("done inserting");
        poked.await.expect("the call made before the insertion");

        let total = n + 1 + 3 + 2;
        let want_sum: i64 = (0..n as i64).sum::<i64>() + 100 + 5;
        let reports = a.report().ret_all().await.expect("broadcast");
        check(
            &mut bad,
            &format!("a broadcast reaches the {total} inserted elements"),
            reports.len() == total as usize,
        );
        let seven = reports.iter().find(|r| r.0 == vec![7, 7]);
        check(
            &mut bad,
            "the call sent before the insertion ran, on the chosen PE",
            seven.is_some_and(|r| r.1 == vec![-1] && r.2 == p - 1),
        );
        let kids: Vec<u32> = reports.iter().filter(|r| r.0[0] == 1000).map(|r| r.2).collect();
        check(
            &mut bad,
            "children inserted on their chosen PEs",
            kids.len() == 3 && kids.iter().all(|&k| k < p),
        );
        // The children, inserted after the broadcast that started it, get it too.
        check(
            &mut bad,
            "the reduction started before done_inserting",
            early.await.expect("early") == want_sum,
        );
        let late = Future::<i64>::new();
        a.sum(late.clone());
        check(&mut bad, "a reduction after done_inserting", late.await.expect("late") == want_sum);

        // Calls to single elements, in order, from here.
        for x in 0..5 {
            a.elem([1000, 1]).poke(x);
        }
        let r = a.elem([1000, 1]).report().ret().await.expect("report");
        check(&mut bad, "calls to one element arrive in order", r.1 == vec![0, 1, 2, 3, 4]);

        // Insertions (and done_inserting) made before the creation reached this PE wait
        // for it.
        let b = Array::<Cell>::sparse(1).proxy();
        for i in 0..5 {
            b.insert([i * 7], (i as i64,), None).expect("insert before the creation arrived");
        }
        b.done_inserting().await.expect("done inserting b");
        let f = Future::<i64>::new();
        b.sum(f.clone());
        check(&mut bad, "insertions made before the creation arrived", f.await.expect("b sum") == 10);

        check(&mut bad, "insert after done_inserting is refused", a.insert([99, 99], (0,), None).is_err());
        check(&mut bad, "an index of the wrong dimensions is refused", a.insert([1], (0,), None).is_err());
        let dense = Array::<Cell>::new([2], (0,)).await.expect("dense");
        check(&mut bad, "insert into a dense array is refused", dense.insert([5], (0,), None).is_err());

        println!("sparse on {p} PEs: {bad} mismatches");
        charmrs::exit(if bad == 0 { 0 } else { 1 });
    })
}

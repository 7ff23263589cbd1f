//! Migration under load, with a checker: every PE sends numbered calls to random
//! elements of a migratable array while elements keep moving to random PEs (also to
//! other processes); broadcasts run meanwhile. Each element checks that the calls of
//! each sender arrive once and in order, and that it gets every broadcast once and in
//! order. Then reductions and allreduces over the moved elements, `when`-buffered
//! calls that travel with their element, elements of a sparse array moving before and
//! after `done_inserting`, and the error of migrating what cannot move.
//! Exit status 1 on any wrong result.
//!
//! `cargo run --release --example migrate -- +p4 [elements] [calls per PE]`

use std::collections::BTreeMap;

use charmrs::prelude::*;
use serde::{Deserialize, Serialize};

/// An element of the checked array: what it received, as seen by the checker.
#[derive(Serialize, Deserialize)]
pub struct Cell {
    /// Last sequence number received from each sender PE.
    last: BTreeMap<u32, u64>,
    /// Calls received, calls out of order or duplicated.
    got: u64,
    bad: u64,
    /// Broadcasts received (each carries its number), and broadcasts out of order.
    ticks: u32,
    bad_ticks: u32,
    /// Moves (counted by `migrated`), and the step of the `when` test.
    moves: u32,
    step: u32,
}

#[chare(migratable)]
impl Cell {
    fn new() -> Self {
        Cell { last: BTreeMap::new(), got: 0, bad: 0, ticks: 0, bad_ticks: 0, moves: 0, step: 0 }
    }

    /// A numbered call from PE `from`.
    fn recv(&mut self, from: u32, seq: u64) {
        let last = self.last.entry(from).or_insert(0);
        if seq != *last + 1 {
            self.bad += 1;
        }
        *last = seq;
        self.got += 1;
    }

    /// The `n`-th broadcast (from 1).
    fn tick(&mut self, n: u32) {
        if n != self.ticks + 1 {
            self.bad_ticks += 1;
        }
        self.ticks = n;
    }

    /// Moves to PE `to`.
    fn hop(&self, ctx: &Ctx<Self>, to: u32) {
        ctx.migrate(PeId(to));
    }

    /// Runs after each move.
    fn migrated(&mut self) {
        self.moves += 1;
    }

    /// Runs only in step order (sent out of order on purpose).
    #[when(self.step == *step)]
    fn stepped(&mut self, step: u32) {
        self.step = step + 1;
    }

    /// Contributes `[calls received, calls out of order, broadcasts, broadcasts out of
    /// order, moves, 1]`.
    fn check(&self, ctx: &Ctx<Self>, done: Future<Vec<u64>>) {
        let v = vec![self.got, self.bad, self.ticks as u64, self.bad_ticks as u64, self.moves as u64, 1];
        ctx.contribute(v, Reducer::sum(), done);
    }

    /// An allreduce of the element indexes; every element checks the result.
    async fn agree(this: Handle<Self>, want: i64) -> bool {
        let me = this.this_index()[0] as i64;
        this.allreduce(me, Reducer::sum()).await.expect("allreduce") == want
    }

    /// Where this element lives, and its step.
    fn whereabouts(&self, ctx: &Ctx<Self>) -> (u32, u32) {
        (ctx.my_pe().0, self.step)
    }

    /// Asks to move the element with an `async` method suspended: refused.
    async fn stuck(this: Handle<Self>, to: u32) {
        this.migrate(PeId(to));
        charmrs::Future::<()>::new().await.ok();
    }
}

/// One per PE: sends the numbered calls.
pub struct Sender {
    rng: u64,
}

#[chare]
impl Sender {
    fn new(ctx: &Ctx<Self>) -> Self {
        Sender { rng: 0x9e37_79b9_7f4a_7c15 ^ (ctx.my_pe().0 as u64 + 1) }
    }

    fn next(&mut self) -> u64 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Sends `calls` numbered calls to random elements of `cells` (`n` of them); every
    /// `hop_every` calls, asks a random element to move to a random PE.
    fn run(&mut self, ctx: &Ctx<Self>, cells: CellProxy, n: u32, calls: u64, hop_every: u64) {
        let me = ctx.my_pe().0;
        let p = ctx.num_pes();
        let mut seq = vec![0u64; n as usize];
        for k in 0..calls {
            let i = (self.next() % n as u64) as usize;
            seq[i] += 1;
            cells.elem(i as i32).recv(me, seq[i]);
            if k % hop_every == 0 {
                let who = (self.next() % n as u64) as i32;
                let to = (self.next() % p as u64) as u32;
                cells.elem(who).hop(to);
            }
        }
    }
}

fn check(bad: &mut u32, what: &str, ok: bool) {
    println!("{}: {what}", if ok { "ok" } else { "MISMATCH" });
    *bad += u32::from(!ok);
}

fn main() {
    charmrs::start(|main| async move {
        let n: u32 = main.args().get(1).and_then(|a| a.parse().ok()).unwrap_or(32);
        let calls: u64 = main.args().get(2).and_then(|a| a.parse().ok()).unwrap_or(4000);
        let p = charmrs::num_pes();
        let mut bad = 0;
        let cells = Array::<Cell>::new([n as i32], ()).await.expect("array");
        if main.args().get(3).map(String::as_str) == Some("churn") {
            // Moves elements between all PEs until the job is ended from outside (the
            // fault tests kill a process meanwhile).
            println!("churning");
            for k in 0u32.. {
                for i in 0..n {
                    cells.elem(i as i32).hop((i + k) % p);
                    cells.elem(i as i32).recv(0, k as u64 + 1);
                }
                charmrs::wait_qd().await.expect("quiescence");
            }
        }
        let senders = Group::<Sender>::new(()).await.expect("senders");

        // Calls, moves and broadcasts at once.
        let sending = senders.run(cells, n, calls, 50).awaitable();
        let ticks = 20;
        for t in 1..=ticks {
            cells.tick(t);
            if t % 5 == 0 {
                // Every element moves one PE over, while calls are in flight.
                for i in 0..n {
                    cells.elem(i as i32).hop((i + t) % p);
                }
            }
        }
        sending.await.expect("sending");
        charmrs::wait_qd().await.expect("quiescence");

        let sums = Future::<Vec<u64>>::new();
        cells.check(sums.clone());
        let s = sums.await.expect("check reduction");
        println!("calls {} (out of order {}), broadcasts {}, moves {}", s[0], s[1], s[2], s[4]);
        check(&mut bad, "every call arrived exactly once", s[0] == calls * p as u64);
        check(&mut bad, "calls from each sender arrived in order", s[1] == 0);
        check(&mut bad, "every broadcast reached every element once", s[2] == (ticks * n) as u64);
        check(&mut bad, "broadcasts arrived in order", s[3] == 0);
        check(&mut bad, "every element contributed once", s[5] == n as u64);
        check(&mut bad, "elements moved (with p > 1)", p == 1 || s[4] > 0);

        // Collectives over moved elements.
        let want = (n as i64) * (n as i64 - 1) / 2;
        let agreed = cells.agree(want).ret_all().await.expect("allreduce");
        check(&mut bad, "an allreduce over moved elements", agreed.iter().all(|&b| b));
        let wher = cells.whereabouts().ret_all().await.expect("whereabouts");
        let moved = wher.iter().enumerate().filter(|(i, w)| w.0 != (*i as u32 * p) / n).count();
        println!("{moved} of {n} elements are away from their first PE");

        // `when`-buffered calls travel with their element.
        let e = cells.elem(0);
        e.stepped(2);
        e.stepped(1);
        e.hop(p - 1);
        e.stepped(0);
        charmrs::wait_qd().await.expect("quiescence");
        let (at, step) = e.whereabouts().ret().await.expect("whereabouts");
        check(&mut bad, "buffered calls ran in order after the move", step == 3 && at == p - 1);

        // A burst of moves of one element, each chasing the last.
        for k in 0..20 {
            cells.elem(1).hop(k % p);
        }
        for x in 1..=100 {
            cells.elem(1).recv(9999, x);
        }
        charmrs::wait_qd().await.expect("quiescence");
        let sums = Future::<Vec<u64>>::new();
        cells.check(sums.clone());
        let s2 = sums.await.expect("second check");
        check(&mut bad, "calls chasing a moving element, in order", s2[0] == s[0] + 100 && s2[1] == 0);

        // Every element on the last PE: the homes (other processes, with ++ppn 1) have
        // only serialized contributions, and no element waiting for the allreduce.
        for i in 0..n {
            cells.elem(i as i32).hop(p - 1);
        }
        charmrs::wait_qd().await.expect("quiescence");
        let sums = Future::<Vec<u64>>::new();
        cells.check(sums.clone());
        let s3 = sums.await.expect("third check");
        check(&mut bad, "a reduction with every element on one PE", s3[5] == n as u64 && s3[0] == s2[0]);
        let agreed = cells.agree(want).ret_all().await.expect("allreduce");
        check(&mut bad, "an allreduce with every element on one PE", agreed.iter().all(|&b| b));
        let wher = cells.whereabouts().ret_all().await.expect("whereabouts");
        check(&mut bad, "every element is on the last PE", wher.iter().all(|w| w.0 == p - 1));
        // Sections of migrated elements are refused with a clear error.
        let sec =
            charmrs::split(&cells, 1, charmrs::Members::Slice(vec![charmrs::SliceDim::new(0, n as i32, 1)]))
                .await;
        let refused = sec.as_ref().err().is_some_and(|e| e.to_string().contains("has migrated away"));
        check(&mut bad, "a section of migrated elements is refused (p > 1)", p == 1 || refused);

        // Elements of a sparse array migrate too: inserted on chosen PEs, moved before
        // and after done_inserting, with calls and broadcasts on the way.
        let sp = Array::<Cell>::sparse(1).await.expect("sparse array");
        for i in 0..n as i32 {
            sp.insert([i * 7], (), Some(PeId(i as u32 % p))).expect("insert");
        }
        for i in 0..n as i32 {
            sp.elem([i * 7]).hop((i as u32 + 1) % p);
            for x in 1..=10 {
                sp.elem([i * 7]).recv(7777, x);
            }
        }
        sp.tick(1);
        sp.done_inserting().await.expect("done inserting");
        for i in 0..n as i32 {
            sp.elem([i * 7]).hop(p - 1 - (i as u32 % p));
        }
        sp.tick(2);
        charmrs::wait_qd().await.expect("quiescence");
        let sums = Future::<Vec<u64>>::new();
        sp.check(sums.clone());
        let s4 = sums.await.expect("sparse check");
        println!("sparse: {s4:?}");
        check(
            &mut bad,
            "calls to moving sparse elements, once and in order",
            s4[0] == 10 * n as u64 && s4[1] == 0,
        );
        check(
            &mut bad,
            "broadcasts reach moving sparse elements once, in order",
            s4[2] == 2 * n as u64 && s4[3] == 0,
        );
        check(&mut bad, "sparse elements moved (with p > 1)", p == 1 || s4[4] >= n as u64);
        let agreed = sp.agree((0..n as i64).map(|i| i * 7).sum()).ret_all().await.expect("sparse allreduce");
        check(&mut bad, "an allreduce over moved sparse elements", agreed.iter().all(|&b| b));

        println!("migrate on {p} PEs: {bad} mismatches");
        let refuse = main.args().get(3).map(String::as_str) == Some("stuck");
        if refuse {
            // Ends the job with a clear message (the test checks it).
            cells.elem(2).stuck(0);
            charmrs::wait_qd().await.ok();
            println!("NOT REFUSED");
            charmrs::exit(3);
        }
        charmrs::exit(if bad == 0 { 0 } else { 1 });
    })
}

//! The embedded `Job` API: PEs on background threads, work injected from the test's
//! thread. Also exercises collections, futures and reductions without a subprocess.

use charmrs::prelude::*;
use charmrs::{Config, Job};

/// A counter per element.
pub struct Counter {
    n: u64,
}

#[chare]
impl Counter {
    fn new(start: u64) -> Self {
        Counter { n: start }
    }

    /// Adds `k`.
    fn add(&mut self, k: u64) {
        self.n += k;
    }

    /// Current value.
    fn get(&self) -> u64 {
        self.n
    }

    /// Contributes the value to a sum.
    fn total(&self, ctx: &Ctx<Self>, f: Future<u64>) {
        ctx.contribute(self.n, Reducer::sum(), f);
    }
}

fn config(pes: u32) -> Config {
    Config::parse(["job-test".to_string(), format!("+p{pes}"), "+nopin".into()], |_| None).expect("config")
}

#[test]
fn run_returns_values_from_pe0() {
    let job = Job::launch(config(3)).expect("launched");
    assert_eq!(job.run(|| async { (charmrs::my_pe(), charmrs::num_pes()) }), (PeId(0), 3));
    assert_eq!(job.shutdown(), 0);
}

#[test]
fn fifo_per_sender_and_reductions() {
    for pes in [1, 2, 4] {
        let job = Job::launch(config(pes)).expect("launched");
        let (vals, sum) = job.run(|| async {
            let arr = Array::<Counter>::new(10, (1,)).await.expect("created");
            // Many one-way messages, then an awaited call: FIFO from this PE means
            // every add arrived before the get.
            for i in 0..100 {
                arr.elem(i % 10).add(1);
            }
            let vals = arr.get().ret_all().await.expect("values");
            let f = Future::new();
            arr.total(f.clone());
            (vals, f.await.expect("sum"))
        });
        assert_eq!(vals, vec![11; 10]);
        assert_eq!(sum, 110);
        assert_eq!(job.shutdown(), 0);
    }
}

#[test]
fn awaiting_a_method_that_returns_a_value_waits_for_completion_only() {
    // `awaitable()` on one element of a method with a return value (a bug once: the
    // value reached a `Future<()>` and ended the job), and on a broadcast.
    let job = Job::launch(config(2)).expect("launched");
    let v = job.run(|| async {
        let arr = Array::<Counter>::new(4, (7,)).await.expect("created");
        arr.elem(3).get().awaitable().await.expect("awaited one element");
        arr.get().awaitable().await.expect("awaited a broadcast");
        arr.elem(1).get().ret().await.expect("value")
    });
    assert_eq!(v, 7);
    assert_eq!(job.shutdown(), 0);
}

#[test]
fn exit_code_from_a_chare_reaches_shutdown() {
    let job = Job::launch(config(2)).expect("launched");
    let (tx, rx) = std::sync::mpsc::channel();
    // `exit` ends the job: the task's result still arrives first.
    job.run(move || async move {
        charmrs::exit(5);
        let _ = tx.send(());
    });
    rx.recv().expect("ran");
    assert_eq!(job.shutdown(), 5);
}

#[test]
fn sizes_are_reported() {
    let s = charmrs::__private::sizes();
    eprintln!("{s:?}");
    assert!(s.envelope >= 16 && s.inbox_node > s.envelope && s.chare_overhead > 0);
}

/// An element of a 6-d array that reports its index.
pub struct Cell6;

#[chare]
impl Cell6 {
    fn new() -> Self {
        Cell6
    }

    /// The element's index and PE.
    fn whoami(&self, ctx: &Ctx<Self>) -> (Vec<i32>, u32) {
        (ctx.this_index().as_slice().to_vec(), ctx.my_pe().0)
    }
}

#[test]
fn six_dimensional_arrays_cover_their_shape() {
    let job = Job::launch(config(3)).expect("launched");
    let got = job.run(|| async {
        let arr = Array::<Cell6>::new([2, 1, 3, 1, 2, 2], ()).await.expect("created");
        arr.whoami().ret_all().await.expect("answers")
    });
    assert_eq!(got.len(), 24);
    let shape = charmrs::Index::from([2, 1, 3, 1, 2, 2]);
    for (lin, (idx, pe)) in got.iter().enumerate() {
        let idx = charmrs::Index::new(idx);
        assert_eq!(idx.linearize(&shape), Some(lin as u64), "gather is ordered by index");
        assert_eq!(charmrs::BlockMap.pe_of(&idx, &shape, 3), PeId(*pe), "element on its block-map PE");
    }
    assert_eq!(job.shutdown(), 0);
}

#[test]
fn iwait_yields_every_future_once_and_wait_any_the_first() {
    let job = Job::launch(config(2)).expect("launched");
    let (order, any) = job.run(|| async {
        let arr = Array::<Counter>::new(4, (0,)).await.expect("created");
        let futs: Vec<Future<u64>> = (0..4).map(|i| arr.elem(i).get().ret()).collect();
        let mut it = charmrs::iwait(futs);
        let mut seen = Vec::new();
        while let Some((i, v)) = it.next().await {
            assert_eq!(v.expect("value"), 0);
            seen.push(i);
        }
        seen.sort();
        let one = Future::<u64>::new();
        let never = Future::<u64>::new();
        arr.elem(3).add(5);
        arr.elem(3).get().ret_all();
        let f = arr.elem(3).get().ret();
        let relay = one.clone();
        charmrs::spawn(async move { relay.send(f.await.expect("value")) });
        let any = charmrs::wait_any(vec![never, one]).await;
        (seen, (any.0, any.1.expect("value")))
    });
    assert_eq!(order, vec![0, 1, 2, 3]);
    assert_eq!(any, (1, 5));
    assert_eq!(job.shutdown(), 0);
}

#[test]
fn tree_arity_is_configurable() {
    for k in ["2", "3", "8"] {
        let args = ["arity".to_string(), "+p5".into(), "+nopin".into(), "+tree-arity".into(), k.into()];
        let job = Job::launch(Config::parse(args, |_| None).expect("config")).expect("launched");
        let sum = job.run(|| async {
            let g = Group::<Counter>::new((2,)).await.expect("created");
            let f = Future::new();
            g.total(f.clone());
            f.await.expect("sum")
        });
        assert_eq!(sum, 10);
        assert_eq!(job.shutdown(), 0);
    }
}

#[test]
fn run_after_the_job_ended_fails_instead_of_hanging() {
    let job = Job::launch(config(2)).expect("launched");
    job.run(|| async { charmrs::exit(0) });
    let late = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(|| async { 1 })));
    assert!(late.is_err(), "run on an ended job must panic");
    assert_eq!(job.shutdown(), 0);
}

/// Records the order of the calls it gets.
pub struct Recorder {
    seen: Vec<u64>,
}

#[chare]
impl Recorder {
    fn new() -> Self {
        Recorder { seen: Vec::new() }
    }

    /// Records `k`.
    fn note(&mut self, k: u64) {
        self.seen.push(k);
    }

    /// What was recorded, in order.
    fn seen(&self) -> Vec<u64> {
        self.seen.clone()
    }

    /// Forwards `n` numbered calls to every element of `to`, right after creating it
    /// (so they race the creation on every PE).
    fn spray(&self, to: RecorderProxy, n: u64) {
        for k in 0..n {
            to.note(k); // broadcast
            to.elem(0).note(1000 + k);
        }
    }
}

#[test]
fn calls_made_before_creation_completes_are_held_in_order() {
    for pes in [1, 2, 4] {
        let job = Job::launch(config(pes)).expect("launched");
        let seen = job.run(|| async {
            // Calls right after creation, before any PE has run the creation message:
            // the sender keeps element calls until it knows the map, receivers keep
            // whatever arrives before the creation.
            let arr = Array::<Recorder>::new(6, ()).proxy();
            for k in 0..50 {
                arr.elem((k % 6) as i32).note(k);
            }
            // A broadcast after them: with at most 4 PEs and the default tree arity (4),
            // every PE is a direct child of the root, so it arrives after the calls
            // (broadcasts and element calls are not ordered in general; see `Call`).
            arr.note(99);
            // Another PE creates a second array and calls it at once.
            let other = Group::<Recorder>::new(()).proxy();
            let second = Array::<Recorder>::new(3, ()).proxy();
            other.elem(charmrs::num_pes() as i32 - 1).spray(second, 20);
            charmrs::wait_qd().await.expect("quiescence");
            let first = arr.seen().ret_all().await.expect("first");
            let second = second.seen().ret_all().await.expect("second");
            (first, second)
        });
        let (first, second) = seen;
        for (i, got) in first.iter().enumerate() {
            let mut want: Vec<u64> = (0..50).filter(|k| k % 6 == i as u64).collect();
            want.push(99);
            assert_eq!(got, &want, "element {i} at +p{pes}");
        }
        let bcast: Vec<u64> = (0..20).collect();
        for (i, got) in second.iter().enumerate() {
            let from_bcast: Vec<u64> = got.iter().copied().filter(|&k| k < 1000).collect();
            assert_eq!(from_bcast, bcast, "broadcasts to element {i} at +p{pes}");
            if i == 0 {
                let direct: Vec<u64> = got.iter().copied().filter(|&k| k >= 1000).collect();
                assert_eq!(direct, (1000..1020).collect::<Vec<_>>());
            }
        }
        assert_eq!(job.shutdown(), 0);
    }
}

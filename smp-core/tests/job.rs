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

//! Property tests over real jobs: a tree reduction equals the sequential fold for any
//! values, shape and PE count; several reductions in flight never mix; every message
//! arrives exactly once and in order from each sender.

use charmrs::prelude::*;
use charmrs::{Config, Job};
use proptest::prelude::*;

/// An element holding one value per reduction round.
pub struct Holder {
    values: Vec<i64>,
    got: Vec<(u32, u64)>,
}

#[chare]
impl Holder {
    fn new(ctx: &Ctx<Self>, table: Vec<Vec<i64>>, cols: i32) -> Self {
        let i = ctx.this_index();
        let k = if i.dims() == 2 { i[0] * cols + i[1] } else { i[0] };
        Holder { values: table.iter().map(|row| row[k as usize]).collect(), got: Vec::new() }
    }

    /// Starts every round at once: the reductions are in flight together.
    fn reduce_all(&self, ctx: &Ctx<Self>, sums: Vec<Future<i64>>, maxes: Vec<Future<i64>>) {
        for (r, (s, m)) in sums.into_iter().zip(maxes).enumerate() {
            ctx.contribute(self.values[r], Reducer::sum(), s);
            ctx.contribute(vec![self.values[r], -self.values[r]], Reducer::max(), m_first(m));
        }
    }

    /// Records a numbered message from a sender.
    fn record(&mut self, from: u32, n: u64) {
        self.got.push((from, n));
    }

    /// What was recorded.
    fn recorded(&self) -> Vec<(u32, u64)> {
        self.got.clone()
    }

    /// Sends `n` numbered messages to every element of `to` (as sender `me`).
    fn blast(&self, to: HolderProxy, me: u32, n: u64, elems: i32) {
        for k in 0..n {
            for e in 0..elems {
                to.elem(e).record(me, k);
            }
        }
    }
}

/// The first component of an element-wise max, delivered to a future of i64.
fn m_first(f: Future<i64>) -> RedTarget<Vec<i64>> {
    let fut = Future::<Vec<i64>>::new();
    let out = f.clone();
    let wait = fut.clone();
    charmrs::spawn(async move {
        let v = wait.await.expect("max");
        out.send(v[0]);
    });
    fut.into()
}

fn job(pes: u32) -> Job {
    let args = ["props".to_string(), format!("+p{pes}"), "+nopin".into(), "+idle".into(), "park".into()];
    Job::launch(Config::parse(args, |_| None).expect("config")).expect("job")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn tree_reductions_equal_sequential_folds_and_do_not_mix(
        pes in 1u32..6,
        rows in 1i32..5,
        cols in 1i32..6,
        rounds in 1usize..5,
        seed in any::<u64>(),
    ) {
        let n = (rows * cols) as usize;
        let mut x = seed | 1;
        let table: Vec<Vec<i64>> = (0..rounds)
            .map(|_| (0..n).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; (x % 2001) as i64 - 1000 }).collect())
            .collect();
        let expected: Vec<(i64, i64)> = table.iter().map(|r| (r.iter().sum(), *r.iter().max().unwrap())).collect();
        let job = job(pes);
        let got = job.run(move || async move {
            let arr = Array::<Holder>::new([rows, cols], (table, cols)).await.expect("created");
            let sums: Vec<Future<i64>> = (0..rounds).map(|_| Future::new()).collect();
            let maxes: Vec<Future<i64>> = (0..rounds).map(|_| Future::new()).collect();
            arr.reduce_all(sums.clone(), maxes.clone());
            let s = charmrs::wait_all(sums).await.expect("sums");
            let m = charmrs::wait_all(maxes).await.expect("maxes");
            s.into_iter().zip(m).collect::<Vec<_>>()
        });
        prop_assert_eq!(got, expected);
        prop_assert_eq!(job.shutdown(), 0);
    }

    #[test]
    fn messages_arrive_once_and_in_order_per_sender(pes in 1u32..6, senders in 1i32..5, n in 1u64..300) {
        let job = job(pes);
        let elems = 3;
        let ok = job.run(move || async move {
            let zero: Vec<Vec<i64>> = vec![vec![0; 8]];
            let from = Array::<Holder>::new(senders, (zero.clone(), 1)).await.expect("senders");
            let to = Array::<Holder>::new(elems, (zero, 1)).await.expect("receivers");
            for s in 0..senders {
                from.elem(s).blast(to, s as u32, n, elems);
            }
            charmrs::wait_qd().await.expect("quiescence");
            let all = to.recorded().ret_all().await.expect("recorded");
            all.iter().all(|got| {
                (0..senders as u32).all(|s| {
                    let seq: Vec<u64> = got.iter().filter(|(f, _)| *f == s).map(|(_, k)| *k).collect();
                    seq == (0..n).collect::<Vec<_>>()
                })
            })
        });
        prop_assert!(ok);
        prop_assert_eq!(job.shutdown(), 0);
    }
}

/// Creates an array from its own PE and reduces over it at once.
pub struct Maker;

#[chare]
impl Maker {
    fn new() -> Self {
        Maker
    }

    /// Creates an array of `n` elements here, and has every element contribute its
    /// index right away (the creation and the reduction race through the trees).
    async fn make_and_sum(_this: Handle<Self>, n: i32) -> i64 {
        let arr = Array::<Holder>::new(n, (vec![(0..n as i64).collect()], 1)).proxy();
        let sums = vec![Future::<i64>::new()];
        let maxes = vec![Future::<i64>::new()];
        arr.reduce_all(sums.clone(), maxes.clone());
        let s = sums[0].get().await.expect("sum");
        let _ = maxes[0].get().await.expect("max");
        s
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn creation_and_reduction_race_through_deep_trees(pes in 2u32..8, arity in 2u32..4, creator in 0u32..8, n in 1i32..30) {
        let args = ["props".to_string(), format!("+p{pes}"), "+nopin".into(), "+idle".into(), "park".into(),
            "+tree-arity".into(), arity.to_string()];
        let job = Job::launch(Config::parse(args, |_| None).expect("config")).expect("job");
        let creator = (creator % pes) as i32;
        let got = job.run(move || async move {
            let makers = Group::<Maker>::new(()).await.expect("makers");
            makers.elem(creator).make_and_sum(n).ret().await.expect("sum")
        });
        prop_assert_eq!(got, (0..n as i64).sum::<i64>());
        prop_assert_eq!(job.shutdown(), 0);
    }
}

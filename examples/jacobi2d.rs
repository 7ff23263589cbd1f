//! 2-d Jacobi relaxation on a 2-d chare array: each element owns a block of the grid,
//! exchanges halos with its four neighbours every iteration (`#[when]` keeps a halo of
//! the next iteration until its element gets there), and the iteration stops when the
//! largest change, found by an allreduce, is below the tolerance. Halos are
//! [`PodVec`]s: between processes they travel as raw bytes, one copy each way.
//!
//! `cargo run --release --example jacobi2d -- +p4 [blocks_per_side] [block_size] [max_iters]`

use charmrs::prelude::*;
use charmrs::PodVec;

const TOLERANCE: f64 = 1e-3;

/// Which side of a block a halo comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Side {
    /// From the block above (smaller first index).
    North,
    /// From the block below.
    South,
    /// From the block on the left.
    West,
    /// From the block on the right.
    East,
}

/// One block of the grid, with a one-cell halo all around.
pub struct Block {
    n: usize,
    grid: Vec<f64>,
    next: Vec<f64>,
    iter: u32,
    received: u32,
    neighbours: u32,
}

impl Block {
    fn at(&self, i: usize, j: usize) -> usize {
        i * (self.n + 2) + j
    }

    fn edge(&self, side: Side) -> PodVec<f64> {
        let n = self.n;
        match side {
            Side::North => (1..=n).map(|j| self.grid[self.at(1, j)]).collect(),
            Side::South => (1..=n).map(|j| self.grid[self.at(n, j)]).collect(),
            Side::West => (1..=n).map(|i| self.grid[self.at(i, 1)]).collect(),
            Side::East => (1..=n).map(|i| self.grid[self.at(i, n)]).collect(),
        }
    }

    /// One Jacobi sweep over the interior; returns the largest change.
    fn sweep(&mut self) -> f64 {
        let n = self.n;
        let mut max_diff = 0.0f64;
        for i in 1..=n {
            for j in 1..=n {
                let v = 0.25
                    * (self.grid[self.at(i - 1, j)]
                        + self.grid[self.at(i + 1, j)]
                        + self.grid[self.at(i, j - 1)]
                        + self.grid[self.at(i, j + 1)]);
                let k = self.at(i, j);
                max_diff = max_diff.max((v - self.grid[k]).abs());
                self.next[k] = v;
            }
        }
        for i in 1..=n {
            for j in 1..=n {
                let k = self.at(i, j);
                self.grid[k] = self.next[k];
            }
        }
        max_diff
    }
}

#[chare]
impl Block {
    fn new(ctx: &Ctx<Self>, blocks: i32, n: usize) -> Self {
        let idx = ctx.this_index();
        let (x, y) = (idx[0], idx[1]);
        let neighbours = [x > 0, x < blocks - 1, y > 0, y < blocks - 1].iter().filter(|&&b| b).count() as u32;
        let mut b = Block {
            n,
            grid: vec![0.0; (n + 2) * (n + 2)],
            next: vec![0.0; (n + 2) * (n + 2)],
            iter: 0,
            received: 0,
            neighbours,
        };
        // Fixed boundary: the top edge of the whole domain is hot.
        if x == 0 {
            for j in 0..n + 2 {
                let k = b.at(0, j);
                b.grid[k] = 1.0;
                b.next[k] = 1.0;
            }
        }
        b
    }

    /// A halo from a neighbour, for iteration `iter`.
    #[when(self.iter == *iter)]
    fn halo(&mut self, iter: u32, from: Side, data: PodVec<f64>) {
        debug_assert_eq!(iter, self.iter, "`when` delivers halos of the current iteration only");
        let n = self.n;
        for (k, &v) in data.iter().enumerate() {
            let at = match from {
                Side::North => self.at(0, k + 1),
                Side::South => self.at(n + 1, k + 1),
                Side::West => self.at(k + 1, 0),
                Side::East => self.at(k + 1, n + 1),
            };
            self.grid[at] = v;
        }
        self.received += 1;
    }

    /// Iterates until convergence or `max_iters`; returns the number of iterations
    /// and the final largest change.
    async fn run(this: Handle<Self>, blocks: i32, max_iters: u32) -> (u32, f64) {
        let idx = this.this_index();
        let (x, y) = (idx[0], idx[1]);
        let all = this.this_proxy();
        loop {
            let iter = this.with(|b| b.iter);
            // Send my edges: my north edge is the south halo of the block above, etc.
            let sends = [
                (x > 0, [x - 1, y], Side::South, Side::North),
                (x < blocks - 1, [x + 1, y], Side::North, Side::South),
                (y > 0, [x, y - 1], Side::East, Side::West),
                (y < blocks - 1, [x, y + 1], Side::West, Side::East),
            ];
            for (exists, to, their_side, my_edge) in sends {
                if exists {
                    let data = this.with(|b| b.edge(my_edge));
                    all.elem(to).halo(iter, their_side, data);
                }
            }
            this.wait(|b| b.received == b.neighbours).await;
            let diff = this.with(|b| {
                b.received = 0;
                b.iter += 1;
                b.sweep()
            });
            let max = this.allreduce(diff, Reducer::max()).await.expect("allreduce");
            let iters = iter + 1;
            if max < TOLERANCE || iters >= max_iters {
                return (iters, max);
            }
        }
    }
}

fn main() {
    charmrs::start(|main| async move {
        let arg = |i: usize, d: u64| main.args().get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
        let blocks = arg(1, 4) as i32;
        let n = arg(2, 32) as usize;
        let max_iters = arg(3, 5000) as u32;
        let t0 = std::time::Instant::now();
        let array = Array::<Block>::new([blocks, blocks], (blocks, n)).await.expect("blocks created");
        let results = array.run(blocks, max_iters).ret_all().await.expect("jacobi finished");
        let (iters, max) = results[0];
        let agree = results.iter().all(|&r| r == (iters, max));
        println!(
            "jacobi2d: {blocks}x{blocks} blocks of {n}x{n} on {} PEs: {iters} iterations, max change {max:.2e}, {:.3} s",
            charmrs::num_pes(),
            t0.elapsed().as_secs_f64()
        );
        if !agree {
            eprintln!("elements disagree on the result: {results:?}");
            charmrs::exit(1);
            return;
        }
        charmrs::exit(if max < TOLERANCE || iters == max_iters { 0 } else { 1 });
    })
}

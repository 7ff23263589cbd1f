//! Ping-pong between two chares, on the first and last PE (the same PE at `+p1`):
//! measures the one-way latency of an entry-method call, or with a payload of `bytes`
//! sent back and forth) the bandwidth: as a [`PodVec<f64>`](charmrs::PodVec) (raw bytes,
//! one copy each way between processes: the default) or as a plain `Vec<f64>` (`vec`:
//! serde element by element).
//!
//! `cargo run --release --example pingpong -- +p2 [round_trips [bytes [pod|vec]]]`

use std::time::Instant;

use charmrs::prelude::*;
use charmrs::PodVec;

/// The payload of the bandwidth mode.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
enum Data {
    /// Raw bytes between processes.
    Pod(PodVec<f64>),
    /// Serialized element by element between processes.
    Vec(Vec<f64>),
}

impl Data {
    fn bytes(&self) -> usize {
        8 * match self {
            Data::Pod(v) => v.len(),
            Data::Vec(v) => v.len(),
        }
    }
}

/// One side of the ping-pong.
pub struct Player {
    left: u64,
    done: Option<Future<()>>,
}

#[chare]
impl Player {
    fn new() -> Self {
        Player { left: 0, done: None }
    }

    /// Starts `round_trips` exchanges with element 1 and completes `done` at the end.
    fn start(&mut self, ctx: &Ctx<Self>, round_trips: u64, done: Future<()>) {
        self.left = round_trips;
        self.done = Some(done);
        ctx.this_proxy().elem(1).ping(0);
    }

    /// Element 1 answers every ping.
    fn ping(&mut self, ctx: &Ctx<Self>, n: u64) {
        ctx.this_proxy().elem(0).pong(n + 1);
    }

    /// Starts `round_trips` exchanges of `data` with element 1.
    fn start_bulk(&mut self, ctx: &Ctx<Self>, round_trips: u64, data: Data, done: Future<()>) {
        self.left = round_trips;
        self.done = Some(done);
        ctx.this_proxy().elem(1).bulk_ping(data);
    }

    /// Element 1 sends the data back.
    fn bulk_ping(&mut self, ctx: &Ctx<Self>, data: Data) {
        ctx.this_proxy().elem(0).bulk_pong(data);
    }

    /// Element 0 counts the round trips of the data.
    fn bulk_pong(&mut self, ctx: &Ctx<Self>, data: Data) {
        self.left -= 1;
        if self.left == 0 {
            if let Some(done) = self.done.take() {
                done.send(());
            }
        } else {
            ctx.this_proxy().elem(1).bulk_ping(data);
        }
    }

    /// Element 0 counts the round trips.
    fn pong(&mut self, ctx: &Ctx<Self>, n: u64) {
        self.left -= 1;
        if self.left == 0 {
            assert_eq!(n, n.max(1), "round trip count");
            if let Some(done) = self.done.take() {
                done.send(());
            }
        } else {
            ctx.this_proxy().elem(1).ping(n);
        }
    }
}

/// Puts element 0 on PE 0 and element 1 on the last PE.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Ends;
charmrs::register_map!(Ends);

impl ArrayMap for Ends {
    fn pe_of(&self, index: &Index, _shape: &Index, num_pes: u32) -> PeId {
        if index[0] == 0 {
            PeId(0)
        } else {
            PeId(num_pes - 1)
        }
    }
}

fn main() {
    charmrs::start(|main| async move {
        let trips: u64 = main.args().get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
        let bytes: usize = main.args().get(2).and_then(|a| a.parse().ok()).unwrap_or(0);
        let players = Array::<Player>::with_map(2, Ends, ()).await.expect("players created");
        if bytes > 0 {
            let data = match main.args().get(3).map(String::as_str) {
                None | Some("pod") => Data::Pod(vec![1.5f64; bytes.div_ceil(8)].into()),
                Some("vec") => Data::Vec(vec![1.5f64; bytes.div_ceil(8)]),
                Some(other) => {
                    eprintln!("pingpong: payload kind must be pod or vec, not {other}");
                    charmrs::exit(2);
                    return;
                }
            };
            for (label, n) in [("warm-up", trips / 10 + 1), ("measured", trips)] {
                let done = Future::new();
                let t0 = Instant::now();
                players.elem(0).start_bulk(n, data.clone(), done.clone());
                done.await.expect("ping-pong finished");
                let dt = t0.elapsed().as_secs_f64();
                if label == "measured" {
                    let moved = (2 * n) as f64 * data.bytes() as f64;
                    println!(
                        "pingpong: {n} round trips of {} bytes between PE 0 and PE {} in {dt:.3} s: {:.1} MB/s",
                        data.bytes(),
                        charmrs::num_pes() - 1,
                        moved / dt / 1e6
                    );
                }
            }
            charmrs::exit(0);
            return;
        }
        // Warm up, then measure.
        for (label, n) in [("warm-up", trips / 10 + 1), ("measured", trips)] {
            let done = Future::new();
            let t0 = Instant::now();
            players.elem(0).start(n, done.clone());
            done.await.expect("ping-pong finished");
            let dt = t0.elapsed();
            if label == "measured" {
                println!(
                    "pingpong: {n} round trips between PE 0 and PE {} in {:.3} s: {:.3} us one-way",
                    charmrs::num_pes() - 1,
                    dt.as_secs_f64(),
                    dt.as_secs_f64() * 1e6 / (2 * n) as f64
                );
            }
        }
        charmrs::exit(0);
    })
}

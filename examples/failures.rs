//! Failure cases the runtime must report clearly (run by the integration tests):
//! `failures +p2 MODE` where MODE is one of
//! `ctor-panic-awaited`, `ctor-panic`, `method-panic-awaited`, `method-panic`,
//! `async-panic-awaited`, `double-send`, `main-panic`, `exit-code`, `foreign-await`,
//! `qd`, `timers`, `abort`, `bad-index`, `bad-map`, `topo`, `idle [MS]`, `flood-exit`,
//! `run-twice`.

use std::time::{Duration, Instant};

use charmrs::prelude::*;

/// A chare that fails on request.
pub struct Fragile {
    calls: u32,
}

#[chare]
impl Fragile {
    fn new(ctx: &Ctx<Self>, bad_index: i32) -> Self {
        if ctx.this_index()[0] == bad_index {
            panic!("constructor refused index {bad_index}");
        }
        Fragile { calls: 0 }
    }

    /// Never returns on the job's last PE (an entry method stuck in a loop).
    fn spin(&self, ctx: &Ctx<Self>) {
        let _ = self;
        if ctx.my_pe().0 + 1 == charmrs::num_pes() {
            loop {
                std::hint::spin_loop();
            }
        }
    }

    /// Panics when `fail` is true, else counts the call.
    fn poke(&mut self, ctx: &Ctx<Self>, fail: bool) -> u32 {
        if fail {
            panic!("poke failed on element {}", ctx.this_index());
        }
        self.calls += 1;
        self.calls
    }

    /// Panics after a suspension.
    async fn later(this: Handle<Self>, fail: bool) -> u32 {
        charmrs::sleep(Duration::from_millis(1)).await;
        if fail {
            panic!("async method failed");
        }
        this.with(|f| f.calls)
    }

    /// Ends the job with `charmrs::abort`.
    fn give_up(&mut self, why: String) {
        charmrs::abort(&why);
    }

    /// Sends two values to one future.
    fn send_twice(&mut self, f: Future<u32>) {
        f.send(1);
        f.send(2);
    }

    /// Returns a future owned by this element's PE.
    fn make_future(&mut self) -> Future<u32> {
        Future::new()
    }

    /// The QD callback: counts as a call.
    fn quiet(&mut self, _: ()) {
        self.calls += 1_000;
    }

    /// Whether `quiet` was called.
    fn was_quiet(&self) -> bool {
        self.calls >= 1_000
    }

    /// Sends `count` messages to itself through the array, one after another.
    fn chain(&mut self, ctx: &Ctx<Self>, count: u32) {
        self.calls += 1;
        if count > 0 {
            ctx.this_elem().chain(count - 1);
        }
    }
}

/// A map that puts elements on a PE that does not exist.
/// Floods element 0 with messages (the exit-under-load case).
pub struct Flood {
    got: u64,
}

#[chare]
impl Flood {
    fn new() -> Self {
        Flood { got: 0 }
    }

    /// Sends `n` messages of 1 KiB to element 0, as fast as it can.
    fn run(&self, ctx: &Ctx<Self>, n: u64) {
        let to = ctx.this_proxy().elem(0);
        for i in 0..n {
            to.sink(i, vec![7u8; 1024]);
        }
    }

    /// Counts.
    fn sink(&mut self, _i: u64, _data: Vec<u8>) {
        self.got += 1;
    }
}

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct NoSuchPe;
charmrs::register_map!(NoSuchPe);

impl ArrayMap for NoSuchPe {
    fn pe_of(&self, _index: &Index, _shape: &Index, num_pes: u32) -> PeId {
        PeId(num_pes + 5)
    }
}

/// `run-twice`: the runtime through `run_with`, which returns the job's exit code to the
/// caller, then a second start, which is refused.
fn run_twice() {
    let config = match charmrs::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("charmrs: {e}");
            std::process::exit(2);
        }
    };
    let first = charmrs::run_with(config.clone(), |_| async { charmrs::exit(5) });
    println!("the runtime returned {first:?}");
    match charmrs::run_with(config, |_| async {}) {
        Err(e) => println!("second start: {e}"),
        Ok(code) => println!("second start ran (unexpected): {code}"),
    }
    std::process::exit(first.unwrap_or(1));
}

fn main() {
    if std::env::args().any(|a| a == "run-twice") {
        run_twice();
    }
    charmrs::start(|main| async move {
        let mode = main.args().get(1).cloned().unwrap_or_default();
        let last = charmrs::num_pes() as i32 - 1;
        match mode.as_str() {
            "ctor-panic-awaited" => match Array::<Fragile>::new(4, (3,)).await {
                Ok(_) => println!("created (unexpected)"),
                Err(e) => {
                    println!("creation failed: {e}");
                    charmrs::exit(3);
                }
            },
            "ctor-panic" => {
                let _a = Array::<Fragile>::new(4, (2,)).proxy();
            }
            "method-panic-awaited" => {
                let a = Array::<Fragile>::new(4, (-1,)).await.expect("created");
                match a.elem(last).poke(true).ret().await {
                    Ok(v) => println!("no error (unexpected): {v}"),
                    Err(e) => println!("caught: {e}"),
                }
                // The PE and the chare keep working after a caught panic.
                let v = a.elem(last).poke(false).ret().await.expect("second call works");
                println!("after the panic, poke returned {v}");
                charmrs::exit(0);
            }
            "method-panic" => {
                let a = Array::<Fragile>::new(4, (-1,)).await.expect("created");
                a.elem(1).poke(true);
            }
            "async-panic-awaited" => {
                let a = Array::<Fragile>::new(4, (-1,)).await.expect("created");
                match a.elem(2).later(true).ret().await {
                    Ok(v) => println!("no error (unexpected): {v}"),
                    Err(e) => println!("caught: {e}"),
                }
                charmrs::exit(0);
            }
            "double-send" => {
                let a = Array::<Fragile>::new(2, (-1,)).await.expect("created");
                let f = Future::<u32>::new();
                a.elem(1).send_twice(f.clone());
                let _ = f.await;
            }
            "main-panic" => panic!("main gave up"),
            "exit-code" => charmrs::exit(7),
            "abort" => {
                let a = Array::<Fragile>::new(2, (-1,)).await.expect("created");
                a.elem(1).give_up("the data is inconsistent".into());
            }
            "bad-index" => {
                let a = Array::<Fragile>::new(4, (-1,)).await.expect("created");
                a.elem(9).poke(false);
            }
            "bad-map" => {
                let _a = Array::<Fragile>::with_map(4, NoSuchPe, (-1,)).await;
            }
            "foreign-await" => {
                let a = Array::<Fragile>::new(2, (-1,)).await.expect("created");
                let f = a.elem(1).make_future().ret().await.expect("future made");
                match f.await {
                    Ok(v) => println!("awaited a foreign future (unexpected): {v}"),
                    Err(e) => println!("refused: {e}"),
                }
                charmrs::exit(0);
            }
            "qd" => {
                let a = Array::<Fragile>::new(8, (-1,)).await.expect("created");
                a.chain(200);
                // QD with an entry method as the callback, then with a future.
                charmrs::start_qd(RedTarget::call(a.elem(0), FragileProxy::quiet));
                charmrs::wait_qd().await.expect("quiescence");
                let quiet = a.elem(0).was_quiet().ret().await.expect("asked");
                println!("entry-method QD callback called: {quiet}");
                let counts = a.poke(false).ret_all().await.expect("counted");
                println!("quiescence after chains; counts {counts:?}");
                let ok = counts[0] == 1202 && counts[1..].iter().all(|&c| c == 202);
                charmrs::exit(if ok { 0 } else { 1 });
            }
            "flood-exit" => {
                // The last PE floods PE 0, and the job ends in the middle: senders blocked
                // on a full channel to a process that is leaving must not hang the job.
                let a = Array::<Flood>::new(2, ()).await.expect("created");
                a.elem(1).run(1_000_000);
                charmrs::sleep(Duration::from_millis(200)).await;
                println!("ending the job under load");
                charmrs::exit(0);
            }
            "topo" => {
                // The topology-aware trees: every PE is reached once, edges agree, and the
                // root's subtrees partition the other PEs.
                let n = charmrs::num_pes();
                let root = PeId(n / 2);
                let mut ok = true;
                for pe in (0..n).map(PeId) {
                    let (parent, children) = charmrs::get_topo_tree_edges(pe, root, None, 2);
                    ok &= (pe == root) == parent.is_none();
                    for c in children {
                        ok &= charmrs::get_topo_tree_edges(c, root, None, 2).0 == Some(pe);
                    }
                }
                let subs = charmrs::get_topo_subtrees(root, None, 2);
                let mut all: Vec<u32> = subs.iter().flatten().map(|p| p.0).collect();
                all.sort();
                ok &= all == (0..n).filter(|&p| p != root.0).collect::<Vec<_>>();
                println!(
                    "topo {}: {} subtrees under PE {root}, {} host(s), {} process(es)",
                    if ok { "ok" } else { "WRONG" },
                    subs.len(),
                    charmrs::num_hosts(),
                    charmrs::num_nodes()
                );
                charmrs::exit(if ok { 0 } else { 1 });
            }
            "spin" => {
                // One PE stuck in an entry method: the launcher's ++timeout names it.
                let a = Array::<Fragile>::new(charmrs::num_pes() as i32, (-1,)).await.expect("created");
                a.spin().awaitable().await.expect("never");
                charmrs::exit(0);
            }
            "idle" => {
                // Messages across every PE, then nothing for a while: idle PEs (and, in
                // a job of several processes, the transport) must cost no CPU.
                let ms: u64 = main.args().get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
                let a = Array::<Fragile>::new(charmrs::num_pes() as i32, (-1,)).await.expect("created");
                a.poke(false).awaitable().await.expect("poked");
                charmrs::sleep(Duration::from_millis(ms)).await;
                println!("idle for {ms} ms");
                charmrs::exit(0);
            }
            "timers" => {
                let t0 = Instant::now();
                let fired = Future::<u64>::new();
                let f2 = fired.clone();
                charmrs::call_after(Duration::from_millis(30), move || {
                    f2.send(t0.elapsed().as_millis() as u64)
                });
                charmrs::sleep(Duration::from_millis(20)).await;
                let slept = t0.elapsed().as_millis();
                let at = fired.await.expect("timer fired");
                println!("slept {slept} ms, timer fired at {at} ms");
                charmrs::exit(if slept >= 20 && at >= 30 { 0 } else { 1 });
            }
            other => {
                eprintln!("unknown mode {other:?}");
                charmrs::exit(2);
            }
        }
    })
}

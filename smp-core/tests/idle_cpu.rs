//! A parked PE uses no CPU. Alone in its test binary: it measures the CPU time of the
//! whole process, which other tests running at the same time would disturb.

use charmrs::prelude::*;
use charmrs::{Config, Job};

/// A chare that does nothing.
pub struct Idle;

#[chare]
impl Idle {
    fn new() -> Self {
        Idle
    }

    /// Does nothing.
    fn touch(&self) {}
}

/// CPU time (user + system) of this process, in clock ticks, from /proc (Linux only).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[test]
fn idle_pes_park_and_use_no_cpu() {
    for policy in ["adaptive", "park"] {
        let args = ["idle".to_string(), "+p2".into(), "+idle".into(), policy.into()];
        let job = Job::launch(Config::parse(args, |_| None).expect("config")).expect("launched");
        job.run(|| async {
            let g = Group::<Idle>::new(()).await.expect("created");
            g.touch().awaitable().await.expect("touched");
        });
        let Some(before) = cpu_ticks() else { return };
        std::thread::sleep(std::time::Duration::from_millis(500));
        let used = cpu_ticks().expect("cpu ticks") - before;
        // Two spinning PEs would use ~100 ticks (100 Hz) in 500 ms; parked ones about 0.
        assert!(used <= 10, "idle PEs used {used} ticks of CPU in 500 ms with +idle {policy}");
        assert_eq!(job.shutdown(), 0);
    }
}

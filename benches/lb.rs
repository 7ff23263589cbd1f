//! Load balancing on an imbalanced stencil (the `lb_stencil` example: a ring of 32
//! blocks, the first half 4x heavier, all of them on PE 0 under the default block
//! map), `+p2`, against the perfectly balanced run of the same work (round-robin
//! placement: each PE gets half the heavy blocks) measured in the same run. The
//! blocks call `at_sync` every 10 of 60 iterations. Whole jobs, not criterion: the
//! figure is the time per iteration the example prints, median of 5 jobs per
//! configuration, in one process (threads) and as 2 processes (`++ppn 1`).
//!
//! Goal (issue 6): with the balancer, within 1.2x of the balanced run.

mod common;

use std::process::Command;

use common::Summary;

const STENCIL: [&str; 5] = ["32", "60", "10", "400", "100"];

/// Median over 5 jobs of the example's milliseconds per iteration.
fn job(procs: bool, extra: &[&str], map: &str) -> Option<f64> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?.to_path_buf();
    common::median_of_jobs(
        || {
            let example = dir.join("examples").join("lb_stencil");
            let mut c = if procs {
                let mut c = Command::new(dir.join("charmrs-run"));
                c.args(["+p2", "++ppn", "1", "++timeout", "120"]).arg(example);
                c
            } else {
                let mut c = Command::new(example);
                c.arg("+p2");
                c
            };
            c.args(extra).args(STENCIL).arg(map);
            c
        },
        |text| {
            let line = text.lines().find(|l| l.starts_with("lb_stencil"))?;
            line.split(": ").nth(1)?.split(" ms per iteration").next()?.trim().parse().ok()
        },
    )
}

fn build_example() -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "charmrs-examples",
            "--example",
            "lb_stencil",
            "-p",
            "charmrs-comm",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    let mut summary = Summary::default();
    if !build_example() {
        summary.line("lb_stencil: not run (the example did not build)".into());
        summary.print();
        return;
    }
    for (procs, label) in [(false, "threads"), (true, "2 processes")] {
        let Some(balanced) = job(procs, &[], "rr") else {
            summary.line(format!("lb_stencil ({label}): the balanced run failed"));
            continue;
        };
        for (bal, goal) in [
            (None, false),
            (Some("GreedyLB"), true),
            (Some("GreedyRefineLB"), true),
            (Some("RefineLB"), true),
            (Some("DistributedLB"), true),
        ] {
            let extra: Vec<&str> = bal.map(|b| vec!["+balancer", b]).unwrap_or_default();
            let Some(ms) = job(procs, &extra, "block") else {
                summary.line(format!("lb_stencil ({label}, {}): failed", bal.unwrap_or("no balancer")));
                continue;
            };
            let r = ms / balanced;
            let goal = if goal {
                format!(" (goal <= 1.2x: {})", if r <= 1.2 { "met" } else { "NOT met" })
            } else {
                String::new()
            };
            summary.line(format!(
                "RATIO lb_stencil_{} ({label}, +p2, median of 5 jobs): {ms:.3} ms/iteration, perfectly balanced {balanced:.3} ms/iteration, ratio {r:.2}x{goal}",
                bal.unwrap_or("no_balancer")
            ));
        }
    }
    summary.print();
}

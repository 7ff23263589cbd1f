//! Runs the examples as real processes, at several PE counts (including more PEs than
//! this machine has cores), and the failure cases: every run has a timeout, and each
//! test checks the exit status and the output.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{example, run, stencil_result};

const T: Duration = Duration::from_secs(60);
const PES: [u32; 4] = [1, 2, 4, 7];

fn p(n: u32) -> String {
    format!("+p{n}")
}

#[test]
fn hello_every_pe_answers() {
    for n in PES {
        let r = run("hello", &[&p(n)], T);
        r.assert_ok().stdout_has(&format!("{n} PEs answered"));
        for pe in 0..n {
            r.stdout_has(&format!("Hello from PE {pe} of {n} (asked by PE 0)"));
        }
    }
}

#[test]
fn pingpong_completes() {
    for n in PES {
        run("pingpong", &[&p(n), "2000"], T)
            .assert_ok()
            .stdout_has(&format!("2000 round trips between PE 0 and PE {}", n - 1));
    }
}

#[test]
fn fib_is_right() {
    for n in PES {
        run("fib", &[&p(n), "16"], T).assert_ok().stdout_has("fib(16) = 987");
    }
    // With a sequential threshold.
    run("fib", &["+p3", "22", "10"], T).assert_ok().stdout_has("fib(22) = 17711");
}

#[test]
fn jacobi2d_converges_identically_at_every_pe_count() {
    for n in PES {
        run("jacobi2d", &[&p(n), "3", "8"], T)
            .assert_ok()
            .stdout_has("3x3 blocks of 8x8")
            .stdout_has(" iterations, max change ");
    }
    let lines: Vec<String> = PES
        .iter()
        .map(|&n| {
            let r = run("jacobi2d", &[&p(n), "3", "8"], T);
            let line = r.stdout.lines().find(|l| l.starts_with("jacobi2d")).expect("result line").to_string();
            line.split(" PEs: ").nth(1).unwrap().split(',').take(2).collect::<Vec<_>>().join(",")
        })
        .collect();
    assert!(lines.windows(2).all(|w| w[0] == w[1]), "results differ across PE counts: {lines:?}");
}

#[test]
fn reduction_tour_matches_sequential_folds() {
    for n in PES {
        run("reductions", &[&p(n)], T).assert_ok().stdout_has("0 mismatches");
    }
}

#[test]
fn sections_multicast_and_reduce_over_exactly_their_members() {
    for n in PES {
        run("sections", &[&p(n)], T).assert_ok().stdout_has("0 mismatches");
    }
    // Odd shapes: rows of one element, and more rows than PEs.
    run("sections", &["+p3", "7", "1"], T).assert_ok().stdout_has("0 mismatches");
}

#[test]
fn pool_runs_nested_tasks_on_every_pe_and_reports_failures() {
    for n in PES {
        let r = run("pool", &[&p(n)], T);
        r.assert_ok().stdout_has("0 wrong").stdout_has("the error reached map");
        // Work stealing: every PE took part in the map of 400 tasks.
        r.stdout_has(&format!("400 tasks ran on {n} of {n} PEs"));
    }
}

#[test]
fn migration_loses_duplicates_and_reorders_nothing() {
    for n in PES {
        run("migrate", &[&p(n), "32", "3000"], T).assert_ok().stdout_has("0 mismatches");
    }
    // An element with a suspended async method cannot move: a clear error.
    run("migrate", &["+p2", "8", "100", "stuck"], T)
        .assert_code(1)
        .stderr_has("cannot migrate while an async method of it is suspended");
}

#[test]
fn load_balancers_move_blocks_and_keep_the_result() {
    const STENCIL: [&str; 5] = ["16", "20", "5", "60", "10"];
    for n in PES {
        let pes = p(n);
        let plain = run("lb_stencil", &[&[pes.as_str()], &STENCIL[..]].concat(), T);
        plain.assert_ok();
        let (moves, want) = stencil_result(&plain);
        assert_eq!(moves, 0, "no balancer, no moves");
        for b in ["GreedyLB", "RefineLB", "GreedyRefineLB", "RotateLB", "RandCentLB", "DistributedLB"] {
            let args = [&[pes.as_str(), "+balancer", b, "+LBDebug", "1"], &STENCIL[..]].concat();
            let r = run("lb_stencil", &args, T);
            r.assert_ok().stdout_has(&format!("charmrs LB [{b}] step 2"));
            let (moves, sum) = stencil_result(&r);
            assert_eq!(sum, want, "{b} at {pes}: the result depends on the balancing");
            if n > 1 && b == "RotateLB" {
                // Every block moves at each of the 3 steps.
                assert_eq!(moves, 16 * 3, "{b} at {pes}");
            }
            if n > 1 && b == "GreedyLB" {
                // The heavy blocks all start on PE 0.
                assert!(moves > 0, "{b} at {pes} moved nothing");
            }
        }
    }
    run("lb_stencil", &["+p2", "+balancer", "NoSuchLB"], T)
        .assert_code(2)
        .stderr_has("GreedyLB, RefineLB, GreedyRefineLB, RotateLB, RandCentLB or DistributedLB");
}

#[test]
fn sparse_arrays_take_insertions_from_anywhere() {
    for n in PES {
        run("sparse", &[&p(n)], T).assert_ok().stdout_has("0 mismatches");
    }
}

#[test]
fn stats_table_is_printed() {
    run("hello", &["+p2", "+stats"], T)
        .assert_ok()
        .stdout_has("charmrs stats")
        .stdout_has("msgs sent")
        .stdout_has("Hello::say_hi");
}

#[test]
fn panic_in_awaited_constructor_is_an_error_value() {
    run("failures", &["+p2", "ctor-panic-awaited"], T).assert_code(3).stdout_has(
        "creation failed: panic on PE 1 in Fragile::new (element 3): constructor refused index 3",
    );
}

#[test]
fn panic_in_constructor_nobody_awaits_ends_the_job() {
    run("failures", &["+p2", "ctor-panic"], T)
        .assert_code(1)
        .stderr_has("unhandled panic on PE 1 in Fragile::new (element 2): constructor refused index 2");
}

#[test]
fn panic_in_awaited_method_reaches_the_caller_and_the_pe_goes_on() {
    for n in [1, 2, 4] {
        let r = run("failures", &[&p(n), "method-panic-awaited"], T);
        r.assert_ok()
            .stdout_has("Fragile::poke (element ")
            .stdout_has("poke failed on element ")
            .stdout_has("after the panic, poke returned 1");
    }
    run("failures", &["+p2", "async-panic-awaited"], T)
        .assert_ok()
        .stdout_has("caught: panic on PE 1 in Fragile::later (element 2): async method failed");
}

#[test]
fn panic_nobody_awaits_ends_the_job() {
    run("failures", &["+p2", "method-panic"], T)
        .assert_code(1)
        .stderr_has("unhandled panic on PE 0 in Fragile::poke (element 1): poke failed on element 1");
    run("failures", &["+p2", "main-panic"], T).assert_code(1).stderr_has("main gave up");
}

#[test]
fn a_future_takes_one_value() {
    run("failures", &["+p2", "double-send"], T).assert_code(1).stderr_has("was sent a second value");
}

#[test]
fn futures_are_awaited_where_they_were_created() {
    run("failures", &["+p2", "foreign-await"], T)
        .assert_ok()
        .stdout_has("refused: future created on PE 1 awaited on PE 0");
}

#[test]
fn exit_code_is_the_process_status() {
    run("failures", &["+p3", "exit-code"], T).assert_code(7);
}

#[test]
fn run_with_returns_the_exit_code_and_refuses_a_second_start() {
    run("failures", &["+p3", "run-twice"], T)
        .assert_code(5)
        .stdout_has("the runtime returned Ok(5)")
        .stdout_has("second start: ")
        .stdout_has("already ran in this process");
}

#[test]
fn quiescence_detection_waits_for_every_chain() {
    for n in [1, 2, 4, 7] {
        run("failures", &[&p(n), "qd"], T)
            .assert_ok()
            .stdout_has("entry-method QD callback called: true")
            .stdout_has("quiescence after chains");
    }
}

#[test]
fn timers_and_sleep_fire_after_their_delay() {
    run("failures", &["+p2", "timers"], T).assert_ok().stdout_has("timer fired at");
}

#[test]
fn bad_runtime_options_are_clear_errors_with_status_2() {
    run("hello", &["+foo"], T).assert_code(2).stderr_has("unknown runtime option '+foo'");
    run("hello", &["+p0"], T).assert_code(2).stderr_has("+p0");
    run("hello", &["+pabc"], T).assert_code(2).stderr_has("+pabc");
    run("hello", &["++ppn", "2"], T).assert_code(2).stderr_has("charmrs-run");
    run("hello", &["+idle", "sometimes"], T).assert_code(2).stderr_has("+idle");
}

#[test]
fn idle_policies_all_work() {
    for policy in ["spin", "park", "adaptive"] {
        run("pingpong", &["+p2", "+idle", policy, "1000"], T).assert_ok().stdout_has("1000 round trips");
    }
}

#[test]
fn abort_ends_the_job_with_its_message() {
    run("failures", &["+p2", "abort"], T)
        .assert_code(1)
        .stderr_has("abort on PE 1: the data is inconsistent");
}

#[test]
fn calls_outside_an_array_or_maps_to_missing_pes_are_clear_errors() {
    run("failures", &["+p2", "bad-index"], T)
        .assert_code(1)
        .stderr_has("index 9 is outside the array's shape");
    run("failures", &["+p2", "bad-map"], T)
        .assert_code(1)
        .stderr_has("the ArrayMap of a")
        .stderr_has("on PE 7, but there are 2 PEs");
}

#[test]
fn a_process_with_a_broken_job_environment_says_what_is_wrong() {
    // Part of what `charmrs-run ++ppn` sets: the process cannot join a job.
    let out = Command::new(example("hello"))
        .args(["+p2"])
        .env("CHARMRS_NUM_PROCESSES", "2")
        .env("CHARMRS_RANK", "1")
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad job environment: CHARMRS_FIRST_PE is not set"), "{err}");
}

//! Fault isolation on the GPU: a tenant whose kernel faults, one whose request runs out of
//! memory and one whose request is invalid. Each faulting tenant's failed requests are counted;
//! worker processes keep the others serving; one-process modes make the context again and
//! resume the others.

use std::path::PathBuf;
use std::sync::Arc;

use rightsize::harness::compare::run_one;
use rightsize::harness::drive::Outcome;
use rightsize::harness::inproc::Knees;
use rightsize::harness::metrics::TenantMetrics;
use rightsize::harness::{Mode, Scenario, ScenarioFile};

const FAULTS: &str = include_str!("../../scenarios/faults.toml");

fn scenario(name: &str) -> Scenario {
    let file = ScenarioFile::parse(FAULTS, "scenarios/faults.toml").unwrap();
    file.scenarios.into_iter().find(|s| s.name == name).unwrap()
}

fn worker() -> Option<PathBuf> {
    let beside = std::env::current_exe().unwrap().with_file_name("rightsize");
    Some(if beside.is_file() { beside } else { PathBuf::from(env!("CARGO_BIN_EXE_rightsize")) })
}

fn run(s: &Scenario, mode: &str) -> Outcome {
    let mode: Mode = mode.parse().unwrap();
    run_one(worker().as_deref(), s, mode, Knees::default(), None, Arc::default())
        .unwrap_or_else(|e| panic!("{} / {mode}: {e:#}", s.name))
}

fn metrics(o: &Outcome, i: usize) -> TenantMetrics {
    TenantMetrics::of(&o.samples[i], None, None).unwrap()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_faulted_kernel_stops_its_tenant_and_the_others_keep_serving() {
    let (faulty, clean) = (scenario("fault-kernel"), scenario("fault-none"));
    for mode in ["timeslice", "streams", "krisp-plan"] {
        let with = run(&faulty, mode);
        let without = run(&clean, mode);
        // The faulted tenant: its fault counted, every later request failed and counted.
        let bad = metrics(&with, 2);
        let why = with.failures[2].as_deref().unwrap_or_default();
        assert!(bad.failed > 0 && why.contains("injected kernel fault"), "{mode}: {bad:?} {why}");
        assert!(with.samples[2].iter().skip_while(|s| !s.failed).all(|s| s.failed), "{mode}: served after its fault");
        for i in 0..2 {
            let (a, b) = (metrics(&with, i), metrics(&without, i));
            let ratio = a.throughput / b.throughput;
            println!(
                "{mode}: tenant {i}: {:.1} req/s with the fault, {:.1} without ({ratio:.3}); p99 {:.2} vs {:.2} ms; \
                 {} failed; outages {:?}",
                a.throughput, b.throughput, a.latency.p99, b.latency.p99, a.failed, with.outages_s
            );
            assert!(ratio >= 0.95, "{mode}: tenant {i} at {ratio:.3} of its throughput without the fault");
        }
        if mode == "timeslice" {
            // Worker processes: the others never saw it.
            assert!(with.outages_s.is_empty() && (0..2).all(|i| metrics(&with, i).failed == 0), "{mode}");
        } else {
            // One process: the context was made again once, within 5 s; at most the request
            // each survivor had in flight failed.
            assert_eq!(with.outages_s.len(), 1, "{mode}");
            assert!(with.outages_s[0] <= 5.0, "{mode}: outage {:?}", with.outages_s);
            assert!((0..2).all(|i| metrics(&with, i).failed <= 1), "{mode}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_request_out_of_memory_or_invalid_fails_alone() {
    let s = scenario("fault-oom-invalid");
    for mode in ["timeslice", "krisp"] {
        let o = run(&s, mode);
        for (i, what) in [(0, "out of GPU memory"), (1, "request of 5×")] {
            let m = metrics(&o, i);
            let why = o.failures[i].as_deref().unwrap_or_default();
            assert_eq!((m.failed, m.requests), (1, 199), "{mode}: tenant {i}");
            assert!(why.contains(what), "{mode}: tenant {i}: {why}");
            println!("{mode}: tenant {i}: {why}");
        }
        let m = metrics(&o, 2);
        assert_eq!((m.failed, m.requests), (0, 200), "{mode}");
        assert!(o.outages_s.is_empty(), "{mode}: no context was lost");
    }
}

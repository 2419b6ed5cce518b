//! Fault isolation on the GPU: a tenant whose kernel faults, one whose request runs out of
//! memory and one whose request is invalid. Each faulting tenant's failed requests are counted;
//! worker processes keep the others serving; one-process modes, hosted in a child process, go
//! on in a new one where the survivors reload (every request counted, the outage timed).

use std::path::PathBuf;
use std::sync::Arc;

use rightsize::harness::compare::run_one;
use rightsize::harness::drive::Outcome;
use rightsize::harness::inproc::Knees;
use rightsize::harness::metrics::TenantMetrics;
use rightsize::harness::results::Status;
use rightsize::harness::{Mode, Report, Scenario, ScenarioFile};

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

/// Runs `rightsize compare` on the fault scenarios under `mode` in a process of its own (a
/// lost context must not take this test binary's GPU with it) and reads its results.
fn compare_in_child(mode: &str) -> Report {
    let out = std::env::temp_dir().join(format!("rightsize-faults-{mode}-{}", std::process::id()));
    let status = std::process::Command::new(worker().unwrap())
        .args(["compare", "--file", "scenarios/faults.toml", "--modes", mode, "--scenario", "fault-none"])
        .args(["--scenario", "fault-kernel", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success(), "{mode}: {status}");
    let r = Report::load(&out.join("results.json")).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    r
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_faulted_kernel_stops_its_tenant_and_the_others_keep_serving() {
    for mode in ["timeslice", "mps", "streams", "krisp-plan"] {
        if mode == "mps" && rightsize::runtime::mps_control_path().is_none() {
            println!("{mode}: skipped: nvidia-cuda-mps-control is not on PATH");
            continue;
        }
        let r = compare_in_child(mode);
        let run = |name: &str| r.runs.iter().find(|x| x.scenario == name).unwrap();
        let (with, without) = (run("fault-kernel"), run("fault-none"));
        assert!(matches!(with.status, Status::Ok), "{mode}: {:?}", with.status);
        if mode != "timeslice" {
            // One process, or worker processes under MPS (the fault reaches every client): the
            // run went on in new processes within 5 s of the fault.
            println!("{mode}: outages {:?} s", with.outages_s);
            assert!(with.outages_s.len() == 1 && with.outages_s[0] <= 5.0, "{mode}: {:?}", with.outages_s);
            // Every request of the open-loop survivors counted, none failed: the arrivals
            // during the outage were served after it (late), as many as without the fault.
            for i in 0..2 {
                let (a, b) = (&with.tenants[i], &without.tenants[i]);
                let counted = |t: &rightsize::harness::results::TenantResult| t.samples.len() as f64;
                println!(
                    "{mode}: tenant {i}: {} requests counted with the fault, {} without; p99 {:.1} vs {:.1} ms",
                    counted(a),
                    counted(b),
                    a.metrics.latency.p99,
                    b.metrics.latency.p99
                );
                assert_eq!(a.metrics.failed, 0, "{mode}: tenant {i}");
                assert!(a.failure.is_none(), "{mode}: tenant {i} reported a failure: {:?}", a.failure);
                assert!(counted(a) >= 0.95 * counted(b), "{mode}: tenant {i} lost requests");
            }
        }
        // The faulted tenant: its fault counted as failed, nothing served after it — or, where
        // it faulted before the others were warm (its requests until then uncounted), reported
        // as a tenant that served none of its counted requests.
        match with.tenants.get(2) {
            Some(bad) => {
                let why = bad.failure.as_deref().unwrap_or_default();
                assert!(
                    bad.metrics.failed > 0 && why.contains("injected kernel fault"),
                    "{mode}: {:?} {why}",
                    bad.metrics
                );
                assert!(
                    bad.samples.iter().skip_while(|s| !s.failed).all(|s| s.failed),
                    "{mode}: served after its fault"
                );
            }
            None => assert!(
                with.unserved.iter().any(|u| u.contains("1 failed") && u.contains("injected kernel fault")),
                "{mode}: the faulted tenant is neither measured nor reported: {:?}",
                with.unserved
            ),
        }
        if mode != "timeslice" {
            continue;
        }
        // Worker processes: the others never saw it.
        for i in 0..2 {
            let (a, b) = (&with.tenants[i].metrics, &without.tenants[i].metrics);
            let ratio = a.throughput / b.throughput;
            println!(
                "{mode}: tenant {i}: {:.1} req/s with the fault, {:.1} without ({ratio:.3}); p99 {:.2} vs {:.2} ms",
                a.throughput, b.throughput, a.latency.p99, b.latency.p99
            );
            assert!(ratio >= 0.95, "{mode}: tenant {i} at {ratio:.3} of its throughput without the fault");
            assert_eq!(a.failed, 0, "{mode}: tenant {i}");
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

//! The harness end to end on the GPU: a pair of tenants under every mode of the default set,
//! with solo baselines, knees from committed profiles (or profiled on the spot), worker
//! processes and an MPS daemon of its own.

use std::path::PathBuf;

use rightsize::harness::compare::TraceOptions;
use rightsize::harness::results::Status;
use rightsize::harness::{compare, CompareOptions, Mode, ScenarioFile, Sharing};

/// The `rightsize` binary: beside this test binary (scripts/gpu-build.sh puts them together),
/// else where cargo built it.
fn rightsize_exe() -> PathBuf {
    let beside = std::env::current_exe().unwrap().with_file_name("rightsize");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from(env!("CARGO_BIN_EXE_rightsize"))
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_pair_runs_under_every_mode_with_solo_baselines() {
    let text = r#"
        [[scenario]]
        name = "pair"
        warmup = 2
        requests = 6
        [[scenario.tenant]]
        model = "bert-base"
        class = "latency-critical"
        slo_ms = 50.0
        [[scenario.tenant]]
        model = "distilgpt2"
        new_tokens = 4
        rate = 100.0
    "#;
    let scenarios = ScenarioFile::parse(text, "test").unwrap().scenarios;
    let out = std::env::temp_dir().join(format!("rightsize-harness-test-{}", std::process::id()));
    let opts = CompareOptions {
        modes: Mode::defaults(),
        out: out.clone(),
        profiles: PathBuf::from("profiles"),
        command: "gpu test".into(),
        worker: Some(rightsize_exe()),
        trace: Some(TraceOptions { path: out.join("trace.json"), limit: 100_000 }),
        solos_from: None,
        resume_from: None,
    };
    let report = compare(&scenarios, &opts).unwrap();
    println!("{}", rightsize::harness::output::summary(&report));
    assert!(report.solo.iter().all(|s| matches!(s.status, Status::Ok) && s.metrics.is_some()), "{:?}", report.solo);
    assert_eq!(report.runs.len(), Mode::defaults().len());
    // Going on from a finished comparison takes every solo baseline and run that ran, measuring none
    // of them (a skipped one's reason is judged again, and skips again here).
    let again = CompareOptions { resume_from: Some(out.clone()), out: out.join("again"), trace: None, ..opts.clone() };
    let resumed = compare(&scenarios, &again).unwrap();
    let keys = |r: &rightsize::harness::Report| {
        r.runs
            .iter()
            .filter(|x| matches!(x.status, Status::Ok))
            .map(|x| (x.scenario.clone(), x.mode.clone(), x.wall_s))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&resumed), keys(&report), "every run taken as it was");
    let solos = |r: &rightsize::harness::Report| serde_json::to_string(&r.solo).unwrap();
    assert_eq!(solos(&resumed), solos(&report), "every solo baseline taken as it was");
    // Not into the directory it reads.
    let into_itself = CompareOptions { resume_from: Some(out.clone()), out: out.clone(), trace: None, ..opts.clone() };
    assert!(format!("{:#}", compare(&scenarios, &into_itself).unwrap_err()).contains("another --out"));
    let mps_control = rightsize::runtime::mps_control_path();
    for run in &report.runs {
        let mode: Mode = run.mode.parse().unwrap();
        match &run.status {
            // Under the MPS modes every worker said it was attached to the harness's daemon,
            // and under time slicing that it was not (the run fails otherwise).
            Status::Ok => {}
            // Only a host without MPS skips them, saying so; where nvidia-cuda-mps-control is,
            // MPS must have been used.
            Status::Skipped { reason } if mode.sharing.uses_mps() && mps_control.is_none() => {
                println!("{}: skipped: {reason}", run.mode);
                continue;
            }
            other if mode.sharing.uses_mps() => match &mps_control {
                Some(control) => {
                    panic!("{}: MPS could not be used ({} is here): {other:?}", run.mode, control.display())
                }
                None => panic!("{}: no nvidia-cuda-mps-control on PATH, yet not skipped: {other:?}", run.mode),
            },
            other => panic!("{}: {other:?}", run.mode),
        }
        assert_eq!(run.tenants.len(), 2, "{}", run.mode);
        for t in &run.tenants {
            let m = &t.metrics;
            assert_eq!(m.requests, 6, "{} {}", run.mode, t.spec.label());
            assert!(m.latency.p50 > 0.05 && m.latency.p50 <= m.latency.p99, "{} {}: {m:?}", run.mode, t.spec.label());
            assert!(m.slowdown.is_some_and(|s| s > 0.3), "{} {}: {m:?}", run.mode, t.spec.label());
        }
        let rm = run.metrics.expect("run metrics");
        let (stp, fairness) = (rm.stp.expect("closed loops: STP"), rm.fairness.expect("fairness"));
        assert!(stp > 0.2 && stp < 2.5 && fairness <= 1.0 + 1e-9, "{}: {rm:?}", run.mode);
        assert!(rm.slo_attainment.is_some());
        if mode.sharing == Sharing::Streams || mode.sharing.is_krisp() {
            assert!(run.tenants.iter().all(|t| t.samples.len() == 6));
        }
        // Counters: each a value or a reason (a run this short may show idle utilization).
        let c = run.counters.as_ref().expect("counters");
        assert!(c.values.get("sm clock MHz").is_some_and(|s| s.max > 0.0), "{}: {c:?}", run.mode);
        assert!(c.values.get("memory used GiB").is_some_and(|s| s.max > 0.0), "{}: {c:?}", run.mode);
        for name in rightsize::harness::counters::NVML_COUNTERS {
            assert!(c.values.contains_key(*name) || c.refused.contains_key(*name), "{}: {name}", run.mode);
        }
    }
    // The trace: valid, a process per tenant of every run that ran, and GPU slices inside the
    // host spans of the requests they belong to (the clocks are aligned).
    let text = std::fs::read_to_string(out.join("trace.json")).unwrap();
    let trace: serde_json::Value = serde_json::from_str(&text).unwrap();
    let stats = rightsize::harness::trace::validate(&trace).unwrap();
    let ran = report.runs.iter().filter(|r| matches!(r.status, Status::Ok)).count();
    assert_eq!(stats.processes, 2 * ran, "{stats:?}");
    let events = trace["traceEvents"].as_array().unwrap();
    let mut spans = std::collections::HashMap::new();
    for e in events.iter().filter(|e| e["cat"] == "request") {
        let (ts, dur) = (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap());
        spans.insert((e["pid"].as_u64().unwrap(), e["args"]["request"].as_u64().unwrap()), (ts, ts + dur));
    }
    let gpu: Vec<&serde_json::Value> = events.iter().filter(|e| e["cat"] == "gpu").collect();
    assert!(gpu.iter().any(|e| e["name"] == "plan") && gpu.iter().any(|e| e["name"] != "plan"));
    let inside = gpu
        .iter()
        .filter(|e| {
            let key = (e["pid"].as_u64().unwrap(), e["args"]["request"].as_u64().unwrap());
            let (ts, dur) = (e["ts"].as_f64().unwrap(), e["dur"].as_f64().unwrap());
            spans.get(&key).is_some_and(|&(a, b)| ts >= a - 50.0 && ts + dur <= b + 50.0)
        })
        .count();
    println!("trace: {stats:?}; {inside} of {} GPU slices inside their request's span ±50 µs", gpu.len());
    assert!(inside as f64 >= 0.95 * gpu.len() as f64, "{inside} of {}", gpu.len());
    // Everything is on disk.
    let back = rightsize::harness::Report::load(&out.join("results.json")).unwrap();
    assert_eq!(back.runs.len(), report.runs.len());
    for f in ["summary.md", "runs.csv", "tenants.csv", "trace.json"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_soak_keeps_serving_through_its_windows() {
    use rightsize::harness::soak::{soak, soak_mode, SoakOptions};
    use std::time::Duration;
    let dir = std::env::temp_dir().join(format!("rightsize-soak-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("soak.toml");
    std::fs::write(
        &file,
        "[[scenario]]\nname = \"s\"\nwarmup = 5\nrequests = 1\n\
         [[scenario.tenant]]\nmodel = \"bert-base\"\nbatch = 1\nrate = 200.0\nqueue_limit = 16\n\
         [[scenario.tenant]]\nmodel = \"distilgpt2\"\nbatch = 1\nrate = 40.0\nqueue_limit = 16\n",
    )
    .unwrap();
    let opts = SoakOptions {
        duration: Duration::from_secs(6),
        window: Duration::from_secs(2),
        mode: soak_mode("krisp").unwrap(),
        file: Some(file),
        out: dir.clone(),
        launches: true,
    };
    let closed = std::sync::atomic::AtomicUsize::new(0);
    let launches = parking_lot::Mutex::new(Vec::new());
    let r = soak(&opts, &|p| {
        closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *launches.lock() = p.launches.clone().expect("asked for launches");
    })
    .unwrap();
    // Every tenant's launches were counted, its last one named.
    let launches = launches.into_inner();
    assert_eq!(launches.len(), 2);
    assert!(launches.iter().all(|l| l.count > 0 && l.last.is_some()), "{launches:?}");
    assert!(r.error.is_none(), "{:?}", r.error);
    println!("{}", r.summary(&opts));
    // Three windows of 2 s (the last may close as the run ends), both tenants served in each.
    assert!(closed.into_inner() >= 2);
    let windows: Vec<f64> = r.rows.iter().map(|w| w.end_s).collect();
    for end in windows.iter().copied().filter(|&e| e <= 4.0) {
        for t in 0..2 {
            let row = r.rows.iter().find(|w| w.end_s == end && w.tenant == t).unwrap();
            assert!(row.requests > 0 && row.p99_ms.is_some(), "{row:?}");
            assert!(row.rss_mib.is_some() && row.involuntary_switches.is_some() && row.load1.is_some(), "{row:?}");
            // The slowest request is one of the window's, completed within it (±1 s of slack
            // for the run's clock starting before the first sample).
            let (max, at) = (row.max_ms.unwrap(), row.slowest_end_s.unwrap());
            assert!(max >= row.p99_ms.unwrap() && at > end - 3.0 && at <= end + 1.0, "{row:?}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Why the host's Python cannot run PyTorch tenants on the GPU, if it cannot.
fn torch_python() -> Result<(), String> {
    let check = "import torch, transformers; assert torch.cuda.is_available(), 'no CUDA GPU in PyTorch'";
    let out = std::process::Command::new(rightsize::harness::worker::python())
        .args(["-c", check])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default().to_string())
    }
}

/// A pair of PyTorch tenants, `duration_s` long: a BERT-base with `encoder`'s settings beside
/// a closed-loop distilgpt2 generating 4 tokens; `None` (said) where the host's Python cannot
/// run them.
fn torch_pair(encoder: &str, duration_s: f64) -> Option<String> {
    if let Err(why) = torch_python() {
        println!("skipped: PyTorch tenants need PyTorch, transformers and a GPU in python3 ({why})");
        return None;
    }
    Some(format!(
        "[[scenario]]\nname = \"torch-pair\"\nwarmup = 2\nrequests = 100000\nduration_s = {duration_s}\n\
         [[scenario.tenant]]\nmodel = \"bert-base\"\nengine = \"torch\"\n{encoder}\n\
         [[scenario.tenant]]\nmodel = \"distilgpt2\"\nengine = \"torch\"\nnew_tokens = 4\n"
    ))
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn pytorch_tenants_run_as_processes_and_follow_the_load_through_the_interposer() {
    use rightsize::harness::compare::run_one;
    use rightsize::harness::inproc::Knees;
    // An open-loop batch-1 encoder that leaves gaps, and a closed-loop decoder that never does;
    // then the same with the encoder latency-critical.
    let Some(text) = torch_pair("batch = 1\nrate = 100.0", 2.0) else { return };
    let s = ScenarioFile::parse(&text, "test").unwrap().scenarios.remove(0);
    let exe = rightsize_exe();
    // Best-effort processes among themselves share every SM under krisp, as under MPS, unless
    // one starves (then the other keeps its part free and is placed).
    let o = run_one(Some(&exe), &s, "krisp".parse().unwrap(), Knees::default(), None, Default::default()).unwrap();
    let logs: Vec<_> = o.interposed.iter().map(|l| l.clone().expect("every process wrote its log")).collect();
    println!("krisp, best-effort only: interposer {logs:?}");
    let starved = logs.iter().any(|l| l.counts.starved > 0);
    assert!(logs.iter().all(|l| (starved || l.counts.placed == 0) && l.counts.fallback == 0), "{logs:?}");
    assert!(logs[1].counts.shared > 0 && logs[1].counts.alone > 0, "{logs:?}");
    assert!(logs.iter().all(|l| l.counts.starving == 0 || l.counts.starved > 0), "{logs:?}");
    let critical = text.replace("rate = 100.0", "rate = 100.0\nclass = \"latency-critical\"\nquota_sms = 32");
    let s = ScenarioFile::parse(&critical, "test").unwrap().scenarios.remove(0);
    for mode in ["timeslice", "static", "krisp"] {
        let o = run_one(Some(&exe), &s, mode.parse().unwrap(), Knees::default(), None, Default::default())
            .unwrap_or_else(|e| panic!("{mode}: {e:#}"));
        for (i, samples) in o.samples.iter().enumerate() {
            assert!(samples.len() >= 5, "{mode} tenant {i}: {} requests", samples.len());
            assert!(samples.iter().all(|x| x.due <= x.start && x.start < x.end && x.end <= 2.5), "{mode} tenant {i}");
        }
        let logs: Vec<_> = o.interposed.iter().map(|l| l.clone().expect("every process wrote its log")).collect();
        println!("{mode}: {} and {} requests; interposer {logs:?}", o.samples[0].len(), o.samples[1].len());
        match mode {
            "timeslice" => assert!(logs.is_empty()),
            "static" => {
                assert!(
                    logs.iter()
                        .all(|l| l.counts.placed > 0 && l.counts.alone == 0 && l.counts.fallback == 0 && l.sms >= 64),
                    "{logs:?}"
                );
                assert!(logs.iter().map(|l| l.sms).sum::<u32>() <= 132 + 8);
            }
            _ => {
                // The latency-critical encoder runs where PyTorch put it; while it is busy the
                // decoder keeps its quota free (its prefill kernels are wider than its part).
                assert!(logs.iter().all(|l| l.counts.fallback == 0), "{logs:?}");
                assert!(logs[0].counts.placed == 0 && logs[0].counts.critical > 0, "{logs:?}");
                assert!(logs[1].counts.placed > 0 && logs[1].counts.narrow > 0, "{logs:?}");
                assert!(logs[1].counts.alone > 0, "the decoder runs alone in the encoder's gaps: {logs:?}");
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn pytorch_processes_under_krisp_stand_aside_together_in_every_other_period() {
    use rightsize::harness::compare::run_one;
    use rightsize::harness::inproc::Knees;
    // Two closed loops that never idle; periods of 250 ms over a 3-s run.
    let Some(text) = torch_pair("", 3.0) else { return };
    let s = ScenarioFile::parse(&text, "test").unwrap().scenarios.remove(0);
    let exe = rightsize_exe();
    let run = |every: Option<&str>| {
        match every {
            // The harness reads it as a run is set up (tests of this binary run one at a time).
            Some(ms) => std::env::set_var("RIGHTSIZE_KRISP_ASIDE_MS", ms),
            None => std::env::remove_var("RIGHTSIZE_KRISP_ASIDE_MS"),
        }
        let o = run_one(Some(&exe), &s, "krisp".parse().unwrap(), Knees::default(), None, Default::default());
        std::env::remove_var("RIGHTSIZE_KRISP_ASIDE_MS");
        o.unwrap()
    };
    let (plain, ab) = (run(None), run(Some("250")));
    assert_eq!(plain.aside, None);
    let phases = ab.aside.expect("the periods, on the samples' clock");
    assert_eq!(phases.every_s, 0.25);
    assert!(phases.epoch_s < 0.0, "the epoch is set before the common start: {phases:?}");
    // Standing aside, a process's launches go straight to the driver, uncounted: about half of
    // them, per second of run, beside the run that took part throughout.
    let per_s = |o: &rightsize::harness::drive::Outcome, i: usize| {
        let log = o.interposed[i].clone().expect("every process wrote its log");
        let served = o.samples[i].len() as f64;
        (log.counts.launches as f64, served)
    };
    for i in 0..2 {
        let ((l0, n0), (l1, n1)) = (per_s(&plain, i), per_s(&ab, i));
        println!("tenant {i}: {l0} launches for {n0} requests taking part throughout, {l1} for {n1} in turn");
        assert!(n0 >= 5.0 && n1 >= 5.0, "tenant {i} served");
        let ratio = (l1 / n1) / (l0 / n0);
        assert!((0.3..0.8).contains(&ratio), "tenant {i}: launches counted per request, in turn ÷ throughout {ratio}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn an_unmodified_pytorch_application_is_profiled_by_kernel_name_and_launch_shape() {
    use rightsize::profiler::app::{preload_library, profile_app};
    if let Err(why) = torch_python() {
        println!("skipped: needs PyTorch and a GPU in python3 ({why})");
        return;
    }
    let preload = preload_library(&rightsize_exe()).unwrap();
    let info = rightsize::runtime::Device::open(0).unwrap().info().clone();
    // 30 compute-bound 4096³ FP16 GEMMs (cuBLAS) and 30 element-wise kernels (PyTorch's own).
    let app = format!(
        "{} -c 'import torch\na = torch.randn(4096, 4096, device=\"cuda\", dtype=torch.half)\n\
         for _ in range(30): (a @ a).relu_()\ntorch.cuda.synchronize()'",
        rightsize::harness::worker::python().display()
    );
    let p = profile_app(&info, &app, &[16, 64], &preload, 0.05, 0.5, |_, _, _| {}).unwrap();
    println!("{}", rightsize::profiler::app::summary(&p));
    let sms: Vec<u32> = p.request_curve.iter().map(|q| q.sms).collect();
    assert_eq!(sms, [16, 64, info.sm_count]);
    let gemm = p
        .app_kernels
        .iter()
        .filter(|k| k.name.starts_with("cublas") && k.shape.contains(&4096))
        .max_by(|a, b| a.full_us.total_cmp(&b.full_us))
        .expect("the GEMM, as a cuBLAS call with its shape");
    assert!(gemm.calls >= 30, "{gemm:?}");
    let at = |k: &rightsize::profiler::AppKernel, sms| k.curve.iter().find(|q| q.sms == sms).map(|q| q.us);
    let (small, full) = (at(gemm, 16).expect("timed on 16 SMs"), at(gemm, info.sm_count).unwrap());
    assert!(small > 4.0 * full, "a compute-bound GEMM on 16 SMs: {small} µs against {full} on the device");
    assert_eq!(gemm.min_sms, info.sm_count, "it needs the whole device: {gemm:?}");
    let relu = p.app_kernels.iter().find(|k| !k.name.starts_with("cublas") && k.calls >= 30 && k.shape[0] > 1);
    let relu = relu.expect("PyTorch's element-wise kernel, by its mangled name and grid");
    assert!(relu.name.contains("elementwise") || relu.name.contains("vectorized"), "{relu:?}");
    assert_eq!(relu.curve.len(), 3, "{relu:?}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_models_request_curve_holds_the_windows_that_take_the_sms_outside_the_groups() {
    use rightsize::harness::serve::{profile_model, ModelSource};
    use rightsize::profiler::Options;
    let device = rightsize::runtime::Device::open(0).unwrap();
    let Ok(topo) = device.info().partitions.topology() else {
        println!("skipped: no SM partitions");
        return;
    };
    let source = ModelSource::Named("bert-base".into(), 1);
    let opts = Options { repeats: 3, beside: true, ..Options::default() };
    let p = profile_model(device, &source, 1, 32, opts, |_, _| {}).unwrap().profile;
    let sms: Vec<u32> = p.request_curve.iter().map(|q| q.sms).collect();
    let mut want: Vec<u32> = (1..=topo.groups).map(|g| g * topo.granularity).collect();
    if topo.rest_sms > 0 {
        want.extend((1..topo.groups).map(|g| g * topo.granularity + topo.rest_sms));
    }
    want.push(topo.sms());
    want.sort();
    assert_eq!(sms, want, "every group count, every one with the SMs outside the groups, and the device");
    assert!(p.request_curve.iter().all(|q| q.us > 0.0), "{:?}", p.request_curve);
    // Those windows are measured alone: the curve beside the co-runner leaves them out.
    let beside: Vec<u32> = p.request_us_beside(1).iter().map(|q| q.0).collect();
    assert!(beside.iter().all(|s| s % topo.granularity == 0 || *s == topo.sms()), "{beside:?}");
}

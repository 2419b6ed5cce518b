//! kernel-wise right-sizing against MPS on fixed multi-tenant workloads, measured in the same
//! run: "pair" (bert-base + gpt2-medium) and "mix-4" (bert-base, bert-large, distilgpt2,
//! gpt2-medium), batch 8, seq 128, closed loop. Criterion times one request of the mix (the
//! run's makespan over its requests); after the groups, the bench prints each mode's STP and
//! its ratio to MPS's (the target: krisp STP ≥ 1.3× mps on the 4-tenant mix).
//!
//! `cargo bench --bench multitenant` on a GPU host; the MPS mode needs
//! nvidia-cuda-mps-control and the `rightsize` binary (beside this one, as
//! scripts/gpu-build.sh lays them out, or in cargo's target directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rightsize::harness::compare::{knees, run_one, solo_scenario};
use rightsize::harness::inproc::Knees;
use rightsize::harness::metrics::{RunMetrics, Sample, TenantMetrics};
use rightsize::harness::scenario::{Mode, Scenario, ScenarioFile, Sharing};
use rightsize::runtime::Device;

const REQUESTS: u32 = 10;
const WARMUP: u32 = 2;

fn rightsize_exe() -> Option<PathBuf> {
    let me = std::env::current_exe().ok()?;
    [me.with_file_name("rightsize"), me.parent()?.with_file_name("rightsize")].into_iter().find(|p| p.is_file())
}

fn workloads() -> Vec<Scenario> {
    let mut defaults = ScenarioFile::defaults();
    let mut pick = |name: &str, as_name: &str| {
        let mut s = defaults.scenarios.iter_mut().find(|s| s.name == name).expect("a default scenario").clone();
        s.name = as_name.into();
        s.requests = REQUESTS;
        s.warmup = WARMUP;
        s
    };
    vec![pick("mix-small-large", "pair"), pick("mix-4", "mix-4")]
}

/// Seconds from the first counted request's due time to the last one's end, over requests.
fn time_per_request(samples: &[Vec<Sample>]) -> Duration {
    let all = samples.iter().flatten();
    let first = all.clone().map(|s| s.due).fold(f64::INFINITY, f64::min);
    let last = all.clone().map(|s| s.end).fold(f64::NEG_INFINITY, f64::max);
    Duration::from_secs_f64((last - first) / all.count().max(1) as f64)
}

fn bench(c: &mut Criterion) {
    let info = match Device::open(0) {
        Ok(d) => d.info().clone(),
        Err(e) => {
            eprintln!("multitenant bench skipped: {e}");
            return;
        }
    };
    let worker = rightsize_exe();
    let modes = [
        Mode { sharing: Sharing::Mps, plan: false },
        Mode { sharing: Sharing::KrispConserved, plan: false },
        Mode { sharing: Sharing::KrispIsolated, plan: false },
        Mode { sharing: Sharing::Krisp, plan: false },
    ];
    let mut cache = BTreeMap::new();
    let mut stp: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for w in workloads() {
        // Solo baselines, eager, in this run.
        let solo: Vec<TenantMetrics> = w
            .tenants
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let samples = run_one(
                    None,
                    &solo_scenario(&w, i),
                    Mode { sharing: Sharing::Streams, plan: false },
                    Knees::default(),
                    None,
                    Arc::default(),
                )
                .expect("solo run")
                .samples;
                TenantMetrics::of(&samples[0], None, None).expect("solo samples")
            })
            .collect();
        let profiled =
            knees(&w, &|_| true, Path::new("profiles"), None, &info, &mut cache, &|m| eprintln!("{m}")).expect("knees");
        let mut g = c.benchmark_group(format!("multitenant/{}", w.name));
        g.sample_size(10).warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_secs(1));
        for mode in modes {
            if mode.sharing.uses_mps() && (worker.is_none() || rightsize::runtime::mps_control_path().is_none()) {
                eprintln!("{}: skipped (needs the rightsize binary and nvidia-cuda-mps-control)", mode);
                continue;
            }
            g.bench_function(mode.to_string(), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let samples = run_one(worker.as_deref(), &w, mode, profiled.clone(), None, Arc::default())
                            .expect("run")
                            .samples;
                        total += time_per_request(&samples);
                        let tenants: Vec<TenantMetrics> = samples
                            .iter()
                            .zip(&solo)
                            .map(|(s, solo)| TenantMetrics::of(s, Some(solo), None).expect("samples"))
                            .collect();
                        let closed: Vec<_> =
                            tenants.iter().zip(&w.tenants).map(|(m, spec)| (m, spec.rate.is_none())).collect();
                        if let Some(stp_now) = RunMetrics::of(&closed).and_then(|m| m.stp) {
                            stp.entry((w.name.clone(), mode.to_string())).or_default().push(stp_now);
                        }
                    }
                    total
                })
            });
        }
        g.finish();
    }
    println!("\nSTP (median over iterations) and ratio to MPS, same run:");
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for w in workloads() {
        let mps = stp.get(&(w.name.clone(), "mps".into())).map(|v| median(v));
        for mode in modes {
            if let Some(v) = stp.get(&(w.name.clone(), mode.to_string())) {
                let m = median(v);
                let ratio = mps.map_or("–".to_string(), |b| format!("{:.2}×", m / b));
                println!("  {:<6} {:<16} STP {m:.2}  vs mps {ratio}", w.name, mode.to_string());
            }
        }
    }
}

criterion_group! {
    name = benches;
    // Our own tables, not criterion's plots (which need a system font).
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);

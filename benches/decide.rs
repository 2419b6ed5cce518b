//! Host cost of a policy's decision alone, without a GPU: where a best-effort tenant's launch
//! goes beside another active one, under `static` (fixed windows), `krisp` without request
//! curves, and `krisp` with curves, untried and with its pair tried (each decision also
//! counted for the trial). The runtime's part of a launch (the driver call, the stream order) is
//! `bench-launch`'s.
//!
//! `cargo bench --bench decide`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rightsize::runtime::policy::{Demand, GroupLoad, KrispShare, Policy, PriorityClass, Share, Static, Topology};

#[path = "common/speeds.rs"]
mod speeds;

/// An H200's split: 15 groups of 8 SMs and 12 SMs outside them.
const TOPO: Topology = Topology { groups: 15, granularity: 8, rest_sms: 12 };

fn bench(c: &mut Criterion) {
    let speeds = speeds::prefill_and_decoder(&TOPO);
    let policies: [(&str, Box<dyn Policy>); 4] = [
        (
            "krisp with curves, untried",
            Box::new(KrispShare::with_speeds(vec![Share::default(); 2], speeds.clone(), 2, &TOPO).untried()),
        ),
        ("static", Box::new(Static::side_by_side(&[None, None], TOPO.groups, TOPO.granularity).expect("windows"))),
        ("krisp", Box::new(KrispShare::new(vec![Share::default(); 2]))),
        ("krisp with curves, tried", Box::new(KrispShare::with_speeds(vec![Share::default(); 2], speeds, 2, &TOPO))),
    ];
    let load = GroupLoad::new(TOPO.groups, 2);
    let d = Demand { active: 0b11, ..Demand::new(0, PriorityClass::BestEffort, None, 1024) };
    let mut g = c.benchmark_group("decide");
    g.warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    for (name, p) in &policies {
        g.bench_function(format!("{name}, beside an active tenant"), |b| {
            b.iter(|| black_box(p.decide(black_box(&d), &load, &TOPO)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    // Our own tables, not criterion's plots (which need a system font).
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);

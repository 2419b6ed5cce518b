//! The request curves the policy benches give krisp: a prefill that scales with its SMs and a
//! decoder that hardly does, at every group count of `topo` and the whole device (so the
//! pair's layout is not equal parts, and is tried).

use rightsize::runtime::policy::{Speeds, Topology};

pub fn prefill_and_decoder(topo: &Topology) -> Vec<Option<Speeds>> {
    let sms: Vec<u32> = (1..=topo.groups).map(|g| g * topo.granularity).chain([topo.sms()]).collect();
    let curve = |f: &dyn Fn(f64) -> f64| sms.iter().map(|&s| (s, f(f64::from(s)))).collect::<Vec<_>>();
    vec![
        Speeds::from_times(&curve(&|s| 13_200.0 / s), topo),
        Speeds::from_times(&curve(&|s| 100.0 + 1_320.0 / s), topo),
    ]
}

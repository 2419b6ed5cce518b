//! Load sweeps and SLO goodput: a scenario's open-loop rates scaled up and down, run under
//! each mode, to find the highest load at which every tenant with an SLO meets it at p99.
//!
//! A scenario asks for a sweep with `sweep = [0.5, 1.5, 2.0]` (rate scales besides 1, which
//! its ordinary runs give). The comparison runs each scale under each mode right after the
//! scenario's ordinary runs; this module scales scenarios, keeps the points and computes the
//! goodput (pure code, tested on the CPU).

use serde::{Deserialize, Serialize};

use super::metrics::TenantMetrics;
use super::scenario::{Scenario, TenantSpec};

/// `s` with every open-loop rate multiplied by `scale` (closed-loop tenants as they are).
pub fn scaled(s: &Scenario, scale: f64) -> Scenario {
    let mut out = s.clone();
    for t in &mut out.tenants {
        t.rate = t.rate.map(|r| r * scale);
    }
    out
}

/// The scales a sweep of `s` runs besides the ordinary runs (scale 1), ascending, repeats and
/// 1 dropped.
pub fn extra_scales(s: &Scenario) -> Vec<f64> {
    let mut v: Vec<f64> = s.sweep.iter().flatten().copied().filter(|&x| (x - 1.0).abs() > 1e-9).collect();
    v.sort_by(f64::total_cmp);
    v.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    v
}

/// One tenant at one point of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepTenant {
    /// Its label ([`TenantSpec::label`]).
    pub label: String,
    /// Its arrival rate at this point (requests/s), if open loop.
    pub rate: Option<f64>,
    /// Its p99 latency, ms.
    pub p99_ms: f64,
    /// Its SLO, ms, if it has one.
    pub slo_ms: Option<f64>,
    /// Share of its requests within the SLO.
    pub slo_attainment: Option<f64>,
    /// Its throughput, requests/s.
    pub throughput: f64,
}

impl SweepTenant {
    /// From a tenant's spec and metrics.
    pub fn of(spec: &TenantSpec, m: &TenantMetrics) -> SweepTenant {
        SweepTenant {
            label: spec.label(),
            rate: spec.rate,
            p99_ms: m.latency.p99,
            slo_ms: spec.slo_ms,
            slo_attainment: m.slo_attainment,
            throughput: m.throughput,
        }
    }

    /// Whether it meets its SLO at p99 (a tenant without an SLO always does).
    pub fn meets(&self) -> bool {
        self.slo_ms.is_none_or(|slo| self.p99_ms <= slo)
    }
}

/// One mode at one scale of a scenario's sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// The scenario.
    pub scenario: String,
    /// The mode.
    pub mode: String,
    /// The rate scale.
    pub scale: f64,
    /// Its tenants, in scenario order; empty when the run failed or was skipped.
    pub tenants: Vec<SweepTenant>,
    /// Why it has no tenants, if it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SweepPoint {
    /// Whether it ran and every tenant with an SLO met it at p99.
    pub fn meets(&self) -> bool {
        !self.tenants.is_empty() && self.tenants.iter().all(SweepTenant::meets)
    }

    /// Open-loop requests per second offered, all tenants together.
    pub fn offered(&self) -> f64 {
        self.tenants.iter().filter_map(|t| t.rate).sum()
    }

    /// Share of all requests of tenants with an SLO within it.
    pub fn attainment(&self) -> Option<f64> {
        let v: Vec<f64> = self.tenants.iter().filter_map(|t| t.slo_attainment).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// The largest p99 ÷ SLO over its tenants with an SLO.
    pub fn worst_p99_vs_slo(&self) -> Option<f64> {
        self.tenants.iter().filter_map(|t| t.slo_ms.map(|slo| t.p99_ms / slo)).reduce(f64::max)
    }
}

/// SLO goodput of `mode` in `scenario`: the highest scale whose point meets every SLO, and its
/// offered rate; `None` when no point does.
pub fn goodput<'a>(points: &'a [SweepPoint], scenario: &str, mode: &str) -> Option<&'a SweepPoint> {
    points
        .iter()
        .filter(|p| p.scenario == scenario && p.mode == mode && p.meets())
        .max_by(|a, b| a.scale.total_cmp(&b.scale))
}

/// The best goodput (offered rate) among `modes` (e.g. a mode and its plan variant).
pub fn best_goodput(points: &[SweepPoint], scenario: &str, modes: &[&str]) -> Option<f64> {
    modes.iter().filter_map(|m| goodput(points, scenario, m)).map(SweepPoint::offered).reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(mode: &str, scale: f64, p99s: &[f64]) -> SweepPoint {
        SweepPoint {
            scenario: "s".into(),
            mode: mode.into(),
            scale,
            tenants: p99s
                .iter()
                .map(|&p99| SweepTenant {
                    label: "t".into(),
                    rate: Some(100.0 * scale),
                    p99_ms: p99,
                    slo_ms: Some(2.0),
                    slo_attainment: Some(if p99 <= 2.0 { 1.0 } else { 0.9 }),
                    throughput: 100.0 * scale,
                })
                .collect(),
            error: None,
        }
    }

    #[test]
    fn goodput_is_the_highest_load_meeting_every_slo() {
        let pts = vec![
            point("mps", 0.5, &[1.0, 1.5]),
            point("mps", 1.0, &[1.8, 2.5]),
            point("mps", 2.0, &[3.0, 4.0]),
            point("krisp", 0.5, &[0.8, 0.9]),
            point("krisp", 1.0, &[1.0, 1.2]),
            point("krisp", 2.0, &[1.9, 1.7]),
            point("krisp-plan", 2.0, &[]),
        ];
        assert_eq!(goodput(&pts, "s", "mps").map(|p| p.scale), Some(0.5));
        assert_eq!(goodput(&pts, "s", "krisp").map(|p| p.offered()), Some(400.0));
        assert_eq!(best_goodput(&pts, "s", &["krisp", "krisp-plan"]), Some(400.0));
        assert_eq!(goodput(&pts, "s", "streams"), None);
        assert!(!pts[6].meets(), "a failed point meets nothing");
        assert_eq!(pts[1].worst_p99_vs_slo(), Some(1.25));
        assert_eq!(pts[1].attainment(), Some(0.95));
    }

    #[test]
    fn scaling_touches_only_open_loop_rates() {
        let text = "[[scenario]]\nname = \"a\"\nsweep = [2.0, 0.5, 1.0, 2.0]\n[[scenario.tenant]]\nmodel = \"gpt2\"\nrate = 100.0\nslo_ms = 9.0\n\
                    [[scenario.tenant]]\nmodel = \"gpt2\"\n";
        let s = &crate::harness::ScenarioFile::parse(text, "t").unwrap().scenarios[0];
        let x = scaled(s, 2.5);
        assert_eq!((x.tenants[0].rate, x.tenants[1].rate), (Some(250.0), None));
        assert_eq!(extra_scales(s), vec![0.5, 2.0]);
    }
}

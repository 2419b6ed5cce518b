//! Load sweeps and SLO goodput: a scenario's open-loop rates scaled up and down, run under
//! each mode, to find the highest load at which every tenant with an SLO meets it at p99.
//!
//! A scenario asks for a sweep with `sweep = [0.58, 0.7, 0.84, 1.2, 1.44]`: its coarse
//! scales (1, where its ordinary runs are, is always among them). For each swept mode
//! (`sweep_modes`, default all), right after the scenario's ordinary runs, [`GoodputSearch`]
//! picks the runs:
//!
//! - a point (one scale) runs [`REPEATS`] times, each repeat with other arrivals, for
//!   `sweep_duration_s` ([`at`]); the ordinary run is repeat 0 of scale 1. It *meets* when
//!   every repeat met every SLO. Its repeats all run before the search goes past it, a point
//!   that missed included: one miss decides the verdict, the other repeats show how often it
//!   misses there (the spread the sweep plot draws);
//! - coarse pass: from scale 1 up the coarse scales while points meet, or down them while
//!   they miss; a mode stops climbing at its first miss;
//! - fine pass: the geometric midpoint of the highest point that met and the lowest that
//!   missed, again, until the two are at most [`FINE_RATIO`] apart (one midpoint when the
//!   coarse steps are ≤ 21%).
//!
//! The goodput ([`goodput`]) is the highest scale below the lowest one that missed, all of
//! whose repeats met every SLO; none when the lowest coarse scale misses, and the highest
//! coarse scale (a lower bound) when it meets. This assumes that a mode that misses at a load
//! misses at every higher one; scales above a miss are not run.
//!
//! This module scales scenarios, runs the search as a pure state machine and computes the
//! goodput (all tested on the CPU); `compare` runs what the search asks for.

use serde::{Deserialize, Serialize};

use super::drive::SplitMix;
use super::metrics::TenantMetrics;
use super::scenario::{Mode, Scenario, TenantSpec};

/// Runs of every point, each with other arrivals.
pub const REPEATS: u32 = 3;

/// At most this ratio between a mode's goodput and the lowest scale above it that missed,
/// once the fine pass is done (10% apart).
pub const FINE_RATIO: f64 = 1.10;

/// `s` with every open-loop rate multiplied by `scale` (closed-loop tenants as they are).
pub fn scaled(s: &Scenario, scale: f64) -> Scenario {
    let mut out = s.clone();
    for t in &mut out.tenants {
        t.rate = t.rate.map(|r| r * scale);
    }
    out
}

/// The coarse scales of `s`'s sweep, ascending: its `sweep` and 1, duplicates dropped; empty
/// when it has no sweep.
pub fn coarse_scales(s: &Scenario) -> Vec<f64> {
    let Some(listed) = &s.sweep else { return Vec::new() };
    let mut v: Vec<f64> = listed.iter().copied().chain([1.0]).collect();
    v.sort_by(f64::total_cmp);
    v.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    v
}

/// The modes of `modes` (those `s` runs under) that its sweep runs: the ones its
/// `sweep_modes` names, or all.
pub fn swept_modes(s: &Scenario, modes: &[Mode]) -> Vec<Mode> {
    match &s.sweep_modes {
        Some(named) => modes.iter().copied().filter(|m| named.contains(m)).collect(),
        None => modes.to_vec(),
    }
}

/// The arrival seed of repeat `repeat` of a tenant whose ordinary arrivals have `seed`:
/// `seed` itself for repeat 0 (the ordinary run), else a hash of both. Not `seed + k`: the
/// arrival generator (splitmix64) steps its state by a constant, so nearby seeds would replay
/// shifted copies of one stream.
pub fn repeat_seed(seed: u64, repeat: u32) -> u64 {
    if repeat == 0 {
        return seed;
    }
    SplitMix::new(seed ^ u64::from(repeat).rotate_left(32)).next_u64()
}

/// A scale as tables and labels show it: at most three decimals (0.5, 1.095).
pub fn scale_label(scale: f64) -> String {
    let s = format!("{scale:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// One run of a sweep: a scale and which repeat of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// The rate scale.
    pub scale: f64,
    /// The repeat, from 0.
    pub repeat: u32,
}

/// What a sweep runs for `probe`: `s` with its open-loop rates scaled, each open-loop
/// tenant's arrivals drawn from the repeat's seed ([`repeat_seed`]), for `sweep_duration_s`
/// if it sets one.
pub fn at(s: &Scenario, probe: Probe) -> Scenario {
    let mut out = scaled(s, probe.scale);
    for i in 0..out.tenants.len() {
        if out.tenants[i].rate.is_some() {
            out.tenants[i].arrival_seed = Some(repeat_seed(s.arrival_seed(i), probe.repeat));
        }
    }
    out.duration_s = s.sweep_duration_s.or(s.duration_s);
    out
}

/// What the search knows of one scale: how many repeats ran and whether one missed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tried {
    scale: f64,
    runs: u32,
    missed: bool,
}

/// The search for one mode's SLO goodput over a sweep's coarse scales, as a state machine:
/// [`next`](Self::next) says which run comes next, [`record`](Self::record) takes its verdict
/// (whether every tenant met its SLO). Pure: the caller runs the probes (see the module docs
/// for the order).
#[derive(Debug, Clone)]
pub struct GoodputSearch {
    coarse: Vec<f64>,
    tried: Vec<Tried>,
}

impl GoodputSearch {
    /// A search over `coarse` scales (1 added); it starts at scale 1, repeat 0.
    pub fn new(coarse: &[f64]) -> GoodputSearch {
        let mut coarse: Vec<f64> = coarse.iter().copied().filter(|x| x.is_finite() && *x > 0.0).chain([1.0]).collect();
        coarse.sort_by(f64::total_cmp);
        coarse.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        GoodputSearch { coarse, tried: Vec::new() }
    }

    fn find(&self, scale: f64) -> Option<&Tried> {
        self.tried.iter().find(|t| (t.scale - scale).abs() < 1e-12)
    }

    /// The lowest scale at which a repeat missed.
    pub fn lowest_miss(&self) -> Option<f64> {
        self.tried.iter().filter(|t| t.missed).map(|t| t.scale).reduce(f64::min)
    }

    /// The highest scale below the lowest miss at which every repeat so far met.
    fn highest_met(&self) -> Option<&Tried> {
        let below = self.lowest_miss().unwrap_or(f64::INFINITY);
        self.tried.iter().filter(|t| !t.missed && t.scale < below).max_by(|a, b| a.scale.total_cmp(&b.scale))
    }

    /// The run to do next; `None` when the search is done.
    pub fn next(&self) -> Option<Probe> {
        let probe = |scale, repeat| Some(Probe { scale, repeat });
        let (met, missed) = (self.highest_met(), self.lowest_miss());
        // Every point runs all its repeats before anything builds on it.
        if let Some(t) = self.tried.iter().find(|t| t.runs < REPEATS) {
            return probe(t.scale, t.runs);
        }
        match (met.map(|t| t.scale), missed) {
            (None, None) => probe(1.0, 0),
            // Coarse pass: up while points meet, down while they miss.
            (Some(lo), None) => self.coarse.iter().copied().find(|&c| c > lo * (1.0 + 1e-9)).and_then(|c| probe(c, 0)),
            (None, Some(hi)) => {
                self.coarse.iter().rev().copied().find(|&c| c < hi * (1.0 - 1e-9)).and_then(|c| probe(c, 0))
            }
            // Fine pass: geometric midpoints until the two are close enough.
            (Some(lo), Some(hi)) => {
                let mid = (lo * hi).sqrt();
                let fresh = self.find(mid).is_none() && mid > lo && mid < hi;
                (hi / lo > FINE_RATIO * (1.0 + 1e-9) && fresh).then_some(Probe { scale: mid, repeat: 0 })
            }
        }
    }

    /// Takes the verdict of `probe`: whether every tenant with an SLO met it (a run that
    /// failed meets nothing).
    pub fn record(&mut self, probe: Probe, met: bool) {
        match self.tried.iter_mut().find(|t| (t.scale - probe.scale).abs() < 1e-12) {
            Some(t) => {
                t.runs += 1;
                t.missed |= !met;
            }
            None => self.tried.push(Tried { scale: probe.scale, runs: 1, missed: !met }),
        }
    }

    /// The goodput's scale once the search is done: the highest scale below the lowest miss
    /// whose [`REPEATS`] repeats all met; `None` if no scale did.
    pub fn goodput(&self) -> Option<f64> {
        self.highest_met().filter(|t| t.runs >= REPEATS).map(|t| t.scale)
    }
}

/// Runs a whole search with `verdict` standing in for the runs; returns the probes in the
/// order they ran and the goodput's scale.
pub fn search(coarse: &[f64], mut verdict: impl FnMut(Probe) -> bool) -> (Vec<Probe>, Option<f64>) {
    let mut s = GoodputSearch::new(coarse);
    let mut asked = Vec::new();
    while let Some(p) = s.next() {
        s.record(p, verdict(p));
        asked.push(p);
    }
    (asked, s.goodput())
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

/// One run of a mode at one scale of a scenario's sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// The scenario.
    pub scenario: String,
    /// The mode.
    pub mode: String,
    /// The rate scale.
    pub scale: f64,
    /// Which repeat of the scale, from 0 (the ordinary run at scale 1); each repeat draws
    /// other arrivals ([`at`]).
    #[serde(default)]
    pub repeat: u32,
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

/// The runs of `mode` in `scenario`'s sweep, grouped by scale (ascending), in run order
/// within a scale.
pub fn by_scale<'a>(points: &'a [SweepPoint], scenario: &str, mode: &str) -> Vec<(f64, Vec<&'a SweepPoint>)> {
    let mut out: Vec<(f64, Vec<&SweepPoint>)> = Vec::new();
    for p in points.iter().filter(|p| p.scenario == scenario && p.mode == mode) {
        match out.iter_mut().find(|(x, _)| (x - p.scale).abs() < 1e-12) {
            Some((_, v)) => v.push(p),
            None => out.push((p.scale, vec![p])),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// A mode's SLO goodput in a sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goodput {
    /// The rate scale.
    pub scale: f64,
    /// Open-loop requests per second offered there, all tenants together.
    pub offered: f64,
    /// How many repeats ran there (every one met every SLO).
    pub repeats: usize,
    /// The lowest scale at which a repeat missed (or failed), if one did.
    pub missed_at: Option<f64>,
}

/// SLO goodput of `mode` in `scenario`: the highest scale below the lowest one at which a
/// repeat missed, all of whose repeats met every SLO; `None` when no scale did.
pub fn goodput(points: &[SweepPoint], scenario: &str, mode: &str) -> Option<Goodput> {
    let scales = by_scale(points, scenario, mode);
    let missed_at = scales.iter().find(|(_, runs)| !runs.iter().all(|p| p.meets())).map(|(x, _)| *x);
    scales.iter().rev().find(|(x, _)| missed_at.is_none_or(|m| *x < m)).map(|(scale, runs)| Goodput {
        scale: *scale,
        offered: runs[0].offered(),
        repeats: runs.len(),
        missed_at,
    })
}

/// The best goodput (offered rate) among `modes` (e.g. a mode and its plan variant).
pub fn best_goodput(points: &[SweepPoint], scenario: &str, modes: &[&str]) -> Option<f64> {
    modes.iter().filter_map(|m| goodput(points, scenario, m)).map(|g| g.offered).reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn point(mode: &str, scale: f64, repeat: u32, p99s: &[f64]) -> SweepPoint {
        SweepPoint {
            scenario: "s".into(),
            mode: mode.into(),
            scale,
            repeat,
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
            point("mps", 0.5, 0, &[1.0, 1.5]),
            point("mps", 1.0, 0, &[1.8, 2.5]),
            point("mps", 2.0, 0, &[3.0, 4.0]),
            point("krisp", 0.5, 0, &[0.8, 0.9]),
            point("krisp", 1.0, 0, &[1.0, 1.2]),
            point("krisp", 2.0, 0, &[1.9, 1.7]),
            point("krisp-plan", 2.0, 0, &[]),
        ];
        assert_eq!(goodput(&pts, "s", "mps").map(|g| (g.scale, g.missed_at)), Some((0.5, Some(1.0))));
        assert_eq!(goodput(&pts, "s", "krisp").map(|g| (g.offered, g.missed_at)), Some((400.0, None)));
        assert_eq!(best_goodput(&pts, "s", &["krisp", "krisp-plan"]), Some(400.0));
        assert_eq!(goodput(&pts, "s", "streams"), None);
        assert_eq!(goodput(&pts, "s", "krisp-plan"), None, "a failed run meets nothing");
        assert_eq!(pts[1].worst_p99_vs_slo(), Some(1.25));
        assert_eq!(pts[1].attainment(), Some(0.95));
    }

    #[test]
    fn goodput_needs_every_repeat_and_ends_at_the_first_miss() {
        let pts = vec![
            point("krisp", 1.0, 0, &[1.0]),
            point("krisp", 1.0, 1, &[1.9]),
            point("krisp", 1.0, 2, &[1.2]),
            // One repeat of three misses: ×1.2 does not count, however well the others did.
            point("krisp", 1.2, 0, &[1.1]),
            point("krisp", 1.2, 1, &[2.1]),
            // Above the first miss nothing counts (a lucky point, run by hand).
            point("krisp", 1.5, 0, &[1.9]),
        ];
        let g = goodput(&pts, "s", "krisp").unwrap();
        assert_eq!((g.scale, g.repeats, g.missed_at), (1.0, 3, Some(1.2)));
        assert_eq!(
            by_scale(&pts, "s", "krisp").iter().map(|(x, v)| (*x, v.len())).collect::<Vec<_>>(),
            [(1.0, 3), (1.2, 2), (1.5, 1)]
        );
    }

    /// The probes as (scale to 3 decimals, repeat).
    fn asked(coarse: &[f64], verdict: impl FnMut(Probe) -> bool) -> (Vec<(f64, u32)>, Option<f64>) {
        let (probes, g) = search(coarse, verdict);
        let r = |x: f64| (x * 1000.0).round() / 1000.0;
        (probes.iter().map(|p| (r(p.scale), p.repeat)).collect(), g.map(r))
    }

    const COARSE: [f64; 5] = [0.58, 0.7, 0.84, 1.2, 1.44];

    #[test]
    fn the_search_climbs_while_points_meet_then_bisects() {
        let (probes, g) = asked(&COARSE, |p| p.scale <= 1.1);
        let want = [(1.0, 0), (1.0, 1), (1.0, 2), (1.2, 0), (1.2, 1), (1.2, 2), (1.095, 0), (1.095, 1), (1.095, 2)];
        assert_eq!((probes.as_slice(), g), (&want[..], Some(1.095)));
        // A miss in the last repeat fails the point just the same.
        let (probes, g) = asked(&COARSE, |p| p.scale < 1.05 || p.repeat < 2);
        assert_eq!(&probes[3..], [(1.2, 0), (1.2, 1), (1.2, 2), (1.095, 0), (1.095, 1), (1.095, 2)]);
        assert_eq!(g, Some(1.0));
        // Every coarse scale meets: the goodput is the highest, a lower bound.
        let (probes, g) = asked(&COARSE, |_| true);
        assert_eq!((probes.len(), g), (9, Some(1.44)));
    }

    #[test]
    fn the_search_descends_while_points_miss() {
        let (probes, g) = asked(&COARSE, |p| p.scale <= 0.75);
        let want = [(1.0, 0), (1.0, 1), (1.0, 2), (0.84, 0), (0.84, 1), (0.84, 2)];
        assert_eq!(&probes[..6], want);
        let want = [(0.7, 0), (0.7, 1), (0.7, 2), (0.767, 0), (0.767, 1), (0.767, 2)];
        assert_eq!((&probes[6..], g), (&want[..], Some(0.7)));
        // Nothing meets: every coarse scale down to the lowest, three runs each, no goodput.
        let (probes, g) = asked(&COARSE, |_| false);
        let scales: Vec<f64> = probes.iter().map(|p| p.0).collect();
        assert_eq!((scales, g), ([1.0, 1.0, 1.0, 0.84, 0.84, 0.84, 0.7, 0.7, 0.7, 0.58, 0.58, 0.58].to_vec(), None));
        // Wide coarse steps take more midpoints: ×1 met, ×2 missed.
        let (probes, g) = asked(&[2.0], |p| p.scale <= 1.3);
        let scales: Vec<f64> = probes.iter().filter(|p| p.1 == 0).map(|p| p.0).collect();
        assert_eq!((scales, g), (vec![1.0, 2.0, 1.414, 1.189, 1.297], Some(1.297)));
    }

    proptest! {
        /// Whatever the runs say: every point runs its repeats in order, no new point starts
        /// at or above a miss, the goodput is the search's and the points' alike, and a
        /// goodput inside the coarse range is within 10% of the lowest miss.
        #[test]
        fn the_search_keeps_its_promises(
            mut coarse in prop::collection::vec(0.2f64..5.0, 1..8),
            threshold in 0.1f64..6.0,
            noise in prop::collection::vec(any::<bool>(), 64),
            noisy in any::<bool>(),
        ) {
            coarse.sort_by(f64::total_cmp);
            let mut k = 0;
            let (probes, g) = search(&coarse, |p| {
                k += 1;
                p.scale <= threshold && !(noisy && noise[k % noise.len()] && noise[(k * 7) % noise.len()])
            });
            prop_assert!(probes.len() < 90, "{} probes", probes.len());
            prop_assert_eq!(probes[0], Probe { scale: 1.0, repeat: 0 });
            // Replay the verdicts as points.
            let mut k = 0;
            let mut points = Vec::new();
            let mut lowest_miss = f64::INFINITY;
            for (i, p) in probes.iter().enumerate() {
                let before = probes[..i].iter().filter(|q| q.scale == p.scale).count() as u32;
                prop_assert_eq!(p.repeat, before, "repeats in order");
                prop_assert!(p.repeat < REPEATS);
                prop_assert!(p.repeat > 0 || p.scale < lowest_miss, "{:?} starts at or above a miss at {}", p, lowest_miss);
                k += 1;
                let met = p.scale <= threshold && !(noisy && noise[k % noise.len()] && noise[(k * 7) % noise.len()]);
                if !met {
                    lowest_miss = lowest_miss.min(p.scale);
                }
                points.push(point("m", p.scale, p.repeat, &[if met { 1.0 } else { 3.0 }]));
            }
            for p in &probes {
                let runs = probes.iter().filter(|q| q.scale == p.scale).count();
                prop_assert_eq!(runs, REPEATS as usize, "every point runs every repeat");
            }
            let from_points = goodput(&points, "s", "m");
            prop_assert_eq!(g, from_points.map(|x| x.scale));
            if let Some(x) = from_points {
                prop_assert_eq!(x.repeats, REPEATS as usize);
                if !noisy {
                    prop_assert!(x.scale <= threshold);
                }
                match x.missed_at {
                    Some(m) => prop_assert!(m / x.scale <= FINE_RATIO + 1e-9, "{} .. {}", x.scale, m),
                    None => prop_assert!(x.scale >= coarse[coarse.len() - 1].max(1.0) - 1e-9),
                }
            } else {
                let lowest = coarse[0].min(1.0);
                prop_assert!(probes.iter().any(|p| (p.scale - lowest).abs() < 1e-9), "the lowest scale was tried");
            }
        }
    }

    /// The default comparison's swept scenario (lc-open on COARSE) with each swept mode's
    /// goodput scale what the H200 measured on 2026-11-25 (mps, mps-limit, streams, static,
    /// krisp, then the same as plans): about ten runs a mode besides the ordinary one, which
    /// the comparison's ten minutes allow at about one second a run.
    #[test]
    fn a_sweep_of_the_default_modes_costs_about_ten_runs_a_mode() {
        let lc_open = [0.64, 0.58, 1.1, 0.58, 1.1, 0.64, 0.58, 1.1, 0.58, 1.1];
        let runs: usize = lc_open.iter().map(|&g| search(&COARSE, |p| p.scale <= g).0.len() - 1).sum();
        assert_eq!(runs, 116);
    }

    #[test]
    fn repeats_draw_other_arrivals_at_the_scaled_rates() {
        let text = "[[scenario]]\nname = \"a\"\nseed = 4\nduration_s = 1.5\nsweep_duration_s = 1.0\nsweep = [2.0]\n\
                    [[scenario.tenant]]\nmodel = \"gpt2\"\nrate = 100.0\nslo_ms = 9.0\n\
                    [[scenario.tenant]]\nmodel = \"gpt2\"\n\
                    [[scenario.tenant]]\nmodel = \"gpt2\"\nrate = 50.0\n";
        let s = &crate::harness::ScenarioFile::parse(text, "t").unwrap().scenarios[0];
        let runs: Vec<Scenario> = (0..REPEATS).map(|repeat| at(s, Probe { scale: 1.5, repeat })).collect();
        for r in &runs {
            let rates: Vec<Option<f64>> = r.tenants.iter().map(|t| t.rate).collect();
            assert_eq!(rates, [Some(150.0), None, Some(75.0)]);
            assert_eq!((r.duration_s, r.tenants[1].arrival_seed), (Some(1.0), None));
        }
        // Repeat 0 draws the ordinary run's arrivals; each other repeat its own, per tenant.
        assert_eq!((runs[0].arrival_seed(0), runs[0].arrival_seed(2)), (s.arrival_seed(0), s.arrival_seed(2)));
        let mut seeds: Vec<u64> = runs.iter().flat_map(|r| [r.arrival_seed(0), r.arrival_seed(2)]).collect();
        seeds.sort_unstable();
        seeds.dedup();
        assert_eq!(seeds.len(), 2 * REPEATS as usize);
        // Not shifted copies of one stream: no draw of one repeat appears in another's.
        let draws = |seed: u64| {
            let mut g = SplitMix::new(seed);
            (0..1000).map(|_| g.next_u64()).collect::<std::collections::HashSet<u64>>()
        };
        let (a, b) = (draws(runs[0].arrival_seed(0)), draws(runs[1].arrival_seed(0)));
        assert!(a.is_disjoint(&b));
    }

    #[test]
    fn scaling_touches_only_open_loop_rates() {
        let text = "[[scenario]]\nname = \"a\"\nsweep = [2.0, 0.5, 1.0, 2.0]\n[[scenario.tenant]]\nmodel = \"gpt2\"\nrate = 100.0\nslo_ms = 9.0\n\
                    [[scenario.tenant]]\nmodel = \"gpt2\"\n";
        let s = &crate::harness::ScenarioFile::parse(text, "t").unwrap().scenarios[0];
        let x = scaled(s, 2.5);
        assert_eq!((x.tenants[0].rate, x.tenants[1].rate), (Some(250.0), None));
        assert_eq!(coarse_scales(s), vec![0.5, 1.0, 2.0]);
        let all = Mode::defaults();
        assert_eq!(swept_modes(s, &all), all);
        let s = Scenario { sweep_modes: Some(vec!["krisp".parse().unwrap(), "mps".parse().unwrap()]), ..s.clone() };
        let names: Vec<String> = swept_modes(&s, &all).iter().map(Mode::to_string).collect();
        assert_eq!(names, ["mps", "krisp"], "in the comparison's order");
    }
}

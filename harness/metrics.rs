//! The one metrics module: per-tenant latency and throughput, and the multi-program metrics
//! of a shared run (Eyerman & Eeckhout's STP and ANTT, Jain's fairness, SLO attainment).
//!
//! A tenant's *normalized progress* is its solo mean latency over its shared mean latency
//! (1 = unaffected by sharing); its slowdown is the inverse. Over `n` tenants:
//! - STP (system throughput) = Σ progress — `n` means every tenant ran as fast as alone;
//! - ANTT (average normalized turnaround time) = mean slowdown — 1 is best;
//! - fairness = (Σ progress)² / (n · Σ progress²), Jain's index — 1 when all progress equally.

use serde::{Deserialize, Serialize};

/// One request's times, seconds from the run's common start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was due: its arrival (open loop) or its issue (closed loop).
    pub due: f64,
    /// When it was issued.
    pub start: f64,
    /// When its last kernel completed (the host saw it).
    pub end: f64,
    /// Refused on arrival (its queue was full): never run, its times all its arrival.
    #[serde(default)]
    pub shed: bool,
    /// Issued but failed (an error the tenant went on from): not served.
    #[serde(default)]
    pub failed: bool,
    /// An open-loop request the request loop judged behind when it started (it queued, or
    /// another had arrived: `drive_with`): those a hushing policy is asked to protect, in any
    /// mode, whether or not anyone was then quieted for it. Written only where true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub behind: bool,
}

impl Sample {
    /// A request shed when it arrived at `due`.
    pub fn shed(due: f64) -> Sample {
        Sample { due, start: due, end: due, shed: true, failed: false, behind: false }
    }

    /// A request served from `due`, issued at `start`, done at `end`.
    pub fn served(due: f64, start: f64, end: f64) -> Sample {
        Sample { due, start, end, shed: false, failed: false, behind: false }
    }

    /// Whether it was served (neither shed nor failed).
    pub fn is_served(&self) -> bool {
        !self.shed && !self.failed
    }

    /// Latency counted from when it was due.
    pub fn latency(&self) -> f64 {
        self.end - self.due
    }
}

/// Latency statistics, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// The `q`-quantile (0–1) of sorted values, nearest rank.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Latency {
    /// Statistics of latencies in seconds, reported in ms; `None` for no samples.
    pub fn of(latencies_s: &[f64]) -> Option<Latency> {
        if latencies_s.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = latencies_s.iter().map(|s| s * 1e3).collect();
        v.sort_by(f64::total_cmp);
        Some(Latency {
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: percentile(&v, 0.50),
            p90: percentile(&v, 0.90),
            p99: percentile(&v, 0.99),
            max: v[v.len() - 1],
        })
    }
}

/// One tenant's results in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantMetrics {
    /// Counted requests.
    pub requests: usize,
    /// Counted requests per second, from the first counted request's due time to the last
    /// one's end.
    pub throughput: f64,
    /// Latency, ms.
    pub latency: Latency,
    /// Mean latency over the solo run's (when a solo baseline is known).
    pub slowdown: Option<f64>,
    /// Throughput over the solo run's.
    pub relative_throughput: Option<f64>,
    /// p99 latency over the solo run's.
    pub p99_vs_solo: Option<f64>,
    /// The SLO, ms, if it has one.
    pub slo_ms: Option<f64>,
    /// Share of counted requests within the SLO (a shed or failed request is not).
    pub slo_attainment: Option<f64>,
    /// Counted requests shed on arrival (a full queue), not in `requests`.
    #[serde(default)]
    pub shed: usize,
    /// Counted requests that failed (an error the tenant went on from), not in `requests`.
    #[serde(default)]
    pub failed: usize,
}

impl TenantMetrics {
    /// Metrics of the counted `samples` (in issue order), against a solo baseline if given.
    pub fn of(all: &[Sample], solo: Option<&TenantMetrics>, slo_ms: Option<f64>) -> Option<TenantMetrics> {
        let samples: Vec<Sample> = all.iter().filter(|s| s.is_served()).copied().collect();
        let shed = all.iter().filter(|s| s.shed).count();
        let failed = all.iter().filter(|s| s.failed).count();
        let latencies: Vec<f64> = samples.iter().map(Sample::latency).collect();
        let latency = Latency::of(&latencies)?;
        let first = samples.iter().map(|s| s.due).fold(f64::INFINITY, f64::min);
        let last = samples.iter().map(|s| s.end).fold(f64::NEG_INFINITY, f64::max);
        let span = last - first;
        let throughput = if span > 0.0 { samples.len() as f64 / span } else { f64::NAN };
        let slo_attainment = slo_ms.map(|slo| {
            latencies.iter().filter(|&&l| l * 1e3 <= slo).count() as f64 / (latencies.len() + shed + failed) as f64
        });
        Some(TenantMetrics {
            requests: samples.len(),
            throughput,
            latency,
            slowdown: solo.map(|s| latency.mean / s.latency.mean),
            relative_throughput: solo.map(|s| throughput / s.throughput),
            p99_vs_solo: solo.map(|s| latency.p99 / s.latency.p99),
            slo_ms,
            slo_attainment,
            shed,
            failed,
        })
    }

    /// Solo mean latency over this mean latency.
    pub fn progress(&self) -> Option<f64> {
        self.slowdown.map(|s| 1.0 / s)
    }
}

/// Below this many samples a nearest-rank p99 is the maximum: tables then say "max of n".
pub const P99_SAMPLES: usize = 100;

/// Whether a p99 over `n` samples is only their maximum ([`P99_SAMPLES`]).
pub fn p99_is_max(n: usize) -> bool {
    n < P99_SAMPLES
}

/// The metrics of a shared run over its tenants.
///
/// STP, ANTT and fairness are the textbook multiprogram figures, over the closed-loop tenants
/// only: a closed-loop tenant's normalized progress is its solo mean latency ÷ its shared mean
/// latency, which for a loop with one request in flight is its throughput ÷ solo while it is
/// busy. Open-loop tenants offer a fixed load, so they are scored by SLO goodput, p99 ÷ solo
/// and throughput ÷ solo instead, and are not in these sums.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// System throughput: Σ normalized progress of the closed-loop tenants; `None` when the
    /// run has none, or one lacks a solo baseline.
    pub stp: Option<f64>,
    /// Average normalized turnaround time: their mean slowdown.
    pub antt: Option<f64>,
    /// Jain's fairness index over their normalized progress.
    pub fairness: Option<f64>,
    /// Share of all requests of tenants with an SLO (open or closed loop) that met it.
    pub slo_attainment: Option<f64>,
}

impl RunMetrics {
    /// Over `tenants`, each with whether it runs a closed loop; `None` when there are none.
    pub fn of(tenants: &[(&TenantMetrics, bool)]) -> Option<RunMetrics> {
        if tenants.is_empty() {
            return None;
        }
        let closed: Option<Vec<f64>> =
            tenants.iter().filter(|(_, closed)| *closed).map(|(t, _)| t.progress()).collect();
        let progress = closed.filter(|p| !p.is_empty());
        let n = progress.as_ref().map_or(0.0, |p| p.len() as f64);
        let sum = progress.as_ref().map(|p| p.iter().sum::<f64>());
        let (met, total) = tenants
            .iter()
            .filter_map(|(t, _)| t.slo_attainment.map(|a| (a * t.requests as f64, t.requests as f64)))
            .fold((0.0, 0.0), |(m, n), (a, b)| (m + a, n + b));
        Some(RunMetrics {
            stp: sum,
            antt: progress.as_ref().map(|p| p.iter().map(|p| 1.0 / p).sum::<f64>() / n),
            fairness: progress.as_ref().zip(sum).map(|(p, sum)| sum * sum / (n * p.iter().map(|p| p * p).sum::<f64>())),
            slo_attainment: (total > 0.0).then(|| met / total),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_says_it_was_behind_only_where_it_was() {
        let behind = Sample { behind: true, ..Sample::served(0.0, 0.001, 0.002) };
        let json = serde_json::to_string(&behind).unwrap();
        assert!(json.contains("\"behind\":true"), "{json}");
        assert!(!serde_json::to_string(&Sample::served(0.0, 0.0, 0.1)).unwrap().contains("behind"));
        // Results written before the field read as not behind.
        let old: Sample = serde_json::from_str(r#"{"due":0.0,"start":0.0,"end":0.1}"#).unwrap();
        assert!(!old.behind);
        assert_eq!(serde_json::from_str::<Sample>(&json).unwrap(), behind);
    }

    fn closed(latencies_ms: &[f64]) -> Vec<Sample> {
        let mut t = 0.0;
        latencies_ms
            .iter()
            .map(|l| {
                let s = Sample::served(t, t, t + l / 1e3);
                t = s.end;
                s
            })
            .collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 0.9), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn latency_and_throughput_of_a_closed_loop() {
        let m = TenantMetrics::of(&closed(&[1.0, 2.0, 3.0, 4.0]), None, Some(2.5)).unwrap();
        assert_eq!(m.requests, 4);
        assert!((m.latency.mean - 2.5).abs() < 1e-9);
        assert_eq!((m.latency.p50, m.latency.max), (2.0, 4.0));
        // 4 requests back to back in 10 ms.
        assert!((m.throughput - 400.0).abs() < 1e-6);
        assert_eq!(m.slo_attainment, Some(0.5));
        assert_eq!(m.slowdown, None);
        assert!(TenantMetrics::of(&[], None, None).is_none());
    }

    #[test]
    fn open_loop_latency_counts_from_the_due_time() {
        // Due at 0 but issued at 4 ms (the previous request was late): 5 ms, not 1 ms.
        let s = Sample::served(0.0, 0.004, 0.005);
        assert!((s.latency() - 0.005).abs() < 1e-12);
    }

    #[test]
    fn stp_antt_and_fairness() {
        let solo_a = TenantMetrics::of(&closed(&[1.0; 10]), None, None).unwrap();
        let solo_b = TenantMetrics::of(&closed(&[2.0; 10]), None, None).unwrap();
        // A runs 2× slower shared, B 4× slower.
        let a = TenantMetrics::of(&closed(&[2.0; 10]), Some(&solo_a), Some(1.5)).unwrap();
        let b = TenantMetrics::of(&closed(&[8.0; 10]), Some(&solo_b), None).unwrap();
        assert!((a.slowdown.unwrap() - 2.0).abs() < 1e-9 && (b.slowdown.unwrap() - 4.0).abs() < 1e-9);
        assert!((a.relative_throughput.unwrap() - 0.5).abs() < 1e-9);
        assert!((a.p99_vs_solo.unwrap() - 2.0).abs() < 1e-9);
        let r = RunMetrics::of(&[(&a, true), (&b, true)]).unwrap();
        assert!((r.stp.unwrap() - 0.75).abs() < 1e-9);
        assert!((r.antt.unwrap() - 3.0).abs() < 1e-9);
        // Jain over (0.5, 0.25): 0.5625 / (2 · 0.3125) = 0.9.
        assert!((r.fairness.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(r.slo_attainment, Some(0.0));
        // Unaffected tenants: STP = n, ANTT = 1, fairness = 1.
        let same = TenantMetrics::of(&closed(&[1.0; 10]), Some(&solo_a), None).unwrap();
        let r = RunMetrics::of(&[(&same, true), (&same, true)]).unwrap();
        assert_eq!((r.stp, r.antt, r.fairness), (Some(2.0), Some(1.0), Some(1.0)));
        assert_eq!(r.slo_attainment, None);
        // A tenant without a baseline: no STP.
        assert_eq!(RunMetrics::of(&[(&a, true), (&solo_b, true)]).unwrap().stp, None);
    }

    #[test]
    fn stp_counts_closed_loops_only_and_slo_attainment_every_tenant() {
        let solo = TenantMetrics::of(&closed(&[1.0; 10]), None, None).unwrap();
        let closed_half = TenantMetrics::of(&closed(&[2.0; 10]), Some(&solo), None).unwrap();
        // An open-loop tenant that met its SLO on half its requests, at 4x its solo latency.
        let open = TenantMetrics::of(&closed(&[4.0; 10]), Some(&solo), Some(3.0)).unwrap();
        let open = TenantMetrics { slo_attainment: Some(0.5), ..open };
        let r = RunMetrics::of(&[(&closed_half, true), (&open, false)]).unwrap();
        assert_eq!((r.stp, r.antt, r.fairness), (Some(0.5), Some(2.0), Some(1.0)));
        assert_eq!(r.slo_attainment, Some(0.5));
        // Every tenant open loop: scored by goodput and ratios, with no STP at all.
        let r = RunMetrics::of(&[(&open, false)]).unwrap();
        assert_eq!((r.stp, r.antt, r.fairness, r.slo_attainment), (None, None, None, Some(0.5)));
        assert!(RunMetrics::of(&[]).is_none());
    }

    #[test]
    fn a_p99_of_fewer_than_100_samples_is_their_maximum() {
        for n in [1usize, 8, 20, 99, 100, 250] {
            let v: Vec<f64> = (1..=n).map(|x| x as f64).collect();
            assert_eq!(percentile(&v, 0.99) == v[n - 1], p99_is_max(n), "n = {n}");
        }
    }
}

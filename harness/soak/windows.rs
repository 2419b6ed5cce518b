//! Each tenant's open window of a soak: its samples, recorded from the tenant's thread, and
//! closed into a [`WindowRow`] per tenant at every window's end; and the confidence interval
//! of a window's p99.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::WindowRow;
use crate::harness::counters::Machine;
use crate::harness::metrics::{Latency, Sample};

/// The open window of every tenant, and when the first sample came (the windows start then,
/// after the tenants' set-up).
pub(super) struct Windows {
    open: Vec<Mutex<Open>>,
    started: OnceLock<Instant>,
}

/// One tenant's open window.
#[derive(Default)]
struct Open {
    /// The served requests' latencies, s.
    latencies: Vec<f64>,
    shed: usize,
    /// The slowest served request: its latency and when it completed, s.
    slowest: Option<(f64, f64)>,
}

impl Windows {
    pub(super) fn new(tenants: usize) -> Windows {
        Windows { open: (0..tenants).map(|_| Mutex::new(Open::default())).collect(), started: OnceLock::new() }
    }

    /// A counted sample of `tenant` (from its thread; one short lock of its own window).
    pub(super) fn record(&self, tenant: usize, x: Sample) {
        self.started.get_or_init(Instant::now);
        let mut w = self.open[tenant].lock();
        if x.shed {
            w.shed += 1;
        } else {
            let latency = x.latency();
            w.latencies.push(latency);
            if w.slowest.is_none_or(|(slowest, _)| latency > slowest) {
                w.slowest = Some((latency, x.end));
            }
        }
    }

    /// Closes every tenant's window at `end_s` seconds from the start.
    pub(super) fn close(&self, end_s: f64, at_end: Machine) -> Vec<WindowRow> {
        self.open
            .iter()
            .enumerate()
            .map(|(tenant, w)| {
                let Open { latencies: mut lat, shed, slowest } = std::mem::take(&mut *w.lock());
                let stats = Latency::of(&lat);
                lat.sort_by(f64::total_cmp);
                WindowRow {
                    end_s,
                    tenant,
                    requests: lat.len(),
                    shed,
                    p99_ms: stats.map(|l| l.p99),
                    p99_interval_ms: quantile_interval(&lat, 0.99).map(|(lo, hi)| (lo * 1e3, hi * 1e3)),
                    p50_ms: stats.map(|l| l.p50),
                    rss_mib: at_end.rss_mib,
                    gpu_used_mib: at_end.gpu_used_mib,
                    sm_clock_mhz: at_end.sm_clock_mhz,
                    temperature_c: at_end.temperature_c,
                    max_ms: slowest.map(|s| s.0 * 1e3),
                    slowest_end_s: slowest.map(|s| s.1),
                    involuntary_switches: at_end.involuntary_switches,
                    load1: at_end.load1,
                    other_cpu: at_end.other_cpu,
                    steal_cpu: at_end.steal_cpu,
                    gpu_processes: at_end.gpu_processes,
                }
            })
            .collect()
    }

    /// Calls `begin` at the first sample, then `close` at the end of every `window` from it on,
    /// until `done`.
    pub(super) fn sample(&self, window: Duration, done: &AtomicBool, begin: impl FnOnce(), mut close: impl FnMut(f64)) {
        let t0 = loop {
            if done.load(Ordering::Acquire) {
                return;
            }
            if let Some(&t0) = self.started.get() {
                break t0;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        begin();
        for k in 1u32.. {
            let next = t0 + window * k;
            while Instant::now() < next {
                if done.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep((next - Instant::now()).min(Duration::from_millis(20)));
            }
            close((window * k).as_secs_f64());
        }
    }
}

/// A distribution-free confidence interval of at least 95% for the `q`-quantile of `sorted`
/// samples: the order statistics between which the true quantile lies unless the count of
/// samples above it, binomial(n, 1−q), falls in either 2.5% tail (computed exactly); the upper
/// end is clamped to the largest sample. `None` for no samples.
pub fn quantile_interval(sorted: &[f64], q: f64) -> Option<(f64, f64)> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // P(C = c) for C ~ binomial(n, 1 − q), in logs (0.99^n underflows beyond n ≈ 70,000).
    let (p, nf) = (1.0 - q, n as f64);
    let mut log_pmf = nf * q.ln();
    let (mut below, mut c_lo, mut c_hi) = (0.0, None, n);
    for c in 0..=n {
        let pmf = log_pmf.exp();
        if below + pmf <= 0.025 {
            c_lo = Some(c); // P(C ≤ c) ≤ 2.5%
        }
        below += pmf;
        if 1.0 - below <= 0.025 {
            c_hi = c; // P(C > c) ≤ 2.5%
            break;
        }
        let cf = c as f64;
        log_pmf += ((nf - cf) / (cf + 1.0)).ln() + (p / q).ln();
    }
    // The true quantile is at least the (n − c_hi)-th sample and below the (n − c_lo)-th.
    let at = |rank: usize| sorted[rank.clamp(1, n) - 1];
    Some((at(n - c_hi), at(c_lo.map_or(n, |c| n - c))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_close_while_tenants_keep_recording() {
        // Two tenants recording as fast as they can, 20-ms windows: every window has samples
        // of both (a sampler that held a lock the tenants need would leave them empty).
        let w = Windows::new(2);
        let done = AtomicBool::new(false);
        let rows = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for t in 0..2 {
                let (w, done) = (&w, &done);
                scope.spawn(move || {
                    let mut i = 0u32;
                    while !done.load(Ordering::Acquire) {
                        i += 1;
                        let x = if i % 10 == 0 { Sample::shed(0.0) } else { Sample::served(0.0, 0.0, 0.001) };
                        w.record(t, x);
                        std::thread::sleep(Duration::from_micros(200));
                    }
                });
            }
            scope.spawn(|| {
                w.sample(
                    Duration::from_millis(20),
                    &done,
                    || {},
                    |end_s| rows.lock().extend(w.close(end_s, Machine::default())),
                )
            });
            std::thread::sleep(Duration::from_millis(150));
            done.store(true, Ordering::Release);
        });
        let rows = rows.into_inner();
        assert!(rows.len() >= 2 * 4, "{} rows", rows.len());
        assert!(rows.iter().all(|r| r.requests > 0 && r.p99_ms == Some(1.0)), "{rows:?}");
        assert!(rows.iter().all(|r| r.max_ms == Some(1.0) && r.slowest_end_s == Some(0.001)), "{rows:?}");
        assert!(rows.iter().map(|r| r.shed).sum::<usize>() > 0);
        assert!(rows.windows(2).all(|p| p[0].end_s <= p[1].end_s));
    }

    #[test]
    fn the_p99_interval_covers_the_true_p99_about_95_times_in_100() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile_interval(&v, 0.99), Some((983.0, 997.0)));
        assert_eq!(quantile_interval(&[], 0.99), None);
        assert_eq!(quantile_interval(&[3.0], 0.99), Some((3.0, 3.0)));
        // Windows of 700 exponential samples (a xorshift's uniforms): the true p99 is ln 100.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut uniform = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let truth = 100f64.ln();
        let covered = (0..2000)
            .filter(|_| {
                let mut w: Vec<f64> = (0..700).map(|_| -(1.0 - uniform()).ln()).collect();
                w.sort_by(f64::total_cmp);
                let (lo, hi) = quantile_interval(&w, 0.99).unwrap();
                lo <= truth && truth <= hi
            })
            .count();
        // At least 95% (the count is discrete, so exactly 2.5% a side cannot be had: 98% here).
        assert!((1900..=1985).contains(&covered), "covered {covered} of 2000");
    }
}

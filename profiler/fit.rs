//! An online model of a kernel's latency against its SMs, for kernels no profile has:
//! `T(k) = a/k + b` (work spread over `k` SMs plus a part that does not shrink with them),
//! refit from completions timed as the kernel runs on whatever partitions it is given. Its
//! knee is the profile's ([`super::knee`]) over the curve the fit predicts.

use std::collections::BTreeMap;

use super::{knee, Point};

/// Completions kept per SM count: a running mean that forgets (weight 1/n up to
/// 1/[`FORGET_AFTER`]), so the fit follows a kernel whose latency changes.
pub const FORGET_AFTER: f64 = 32.0;

/// Timed completions of one kernel (and launch shape), by the SMs it ran on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatencyFit {
    /// SMs → (completions, running mean µs).
    by_sms: BTreeMap<u32, (u32, f64)>,
}

impl LatencyFit {
    /// Adds a completion: `us` on `sms` SMs (ignored unless both are positive and finite).
    pub fn add(&mut self, sms: u32, us: f64) {
        if sms == 0 || !us.is_finite() || us <= 0.0 {
            return;
        }
        let (n, mean) = self.by_sms.entry(sms).or_insert((0, 0.0));
        *n = n.saturating_add(1);
        *mean += (us - *mean) / f64::from(*n).min(FORGET_AFTER);
    }

    /// Completions added.
    pub fn completions(&self) -> u32 {
        self.by_sms.values().map(|v| v.0).sum()
    }

    /// `(a, b)` of `T(k) = a/k + b`, least squares over the SM counts' means in `1/k`, each
    /// weighted by its completions (at most [`FORGET_AFTER`]); `None` until two SM counts have
    /// been seen. `a` is kept ≥ 0 (a kernel cannot get slower with more SMs in this model:
    /// a fit that says so is noise, and reads as flat at the mean).
    pub fn fit(&self) -> Option<(f64, f64)> {
        if self.by_sms.len() < 2 {
            return None;
        }
        let pts: Vec<(f64, f64, f64)> = self
            .by_sms
            .iter()
            .map(|(&k, &(n, mean))| (1.0 / f64::from(k), mean, f64::from(n).min(FORGET_AFTER)))
            .collect();
        let w: f64 = pts.iter().map(|p| p.2).sum();
        let (x, y) = (pts.iter().map(|p| p.2 * p.0).sum::<f64>() / w, pts.iter().map(|p| p.2 * p.1).sum::<f64>() / w);
        let sxx: f64 = pts.iter().map(|p| p.2 * (p.0 - x).powi(2)).sum();
        let sxy: f64 = pts.iter().map(|p| p.2 * (p.0 - x) * (p.1 - y)).sum();
        let a = if sxx > 0.0 { (sxy / sxx).max(0.0) } else { 0.0 };
        Some((a, y - a * x))
    }

    /// The fewest SMs, in steps of `granularity` up to `device_sms`, whose predicted latency is
    /// within ε (or `abs_tol_us`) of the whole device's; `None` until [`fit`](Self::fit) has a
    /// model.
    pub fn knee(&self, device_sms: u32, granularity: u32, epsilon: f64, abs_tol_us: f64) -> Option<u32> {
        let (a, b) = self.fit()?;
        let g = granularity.max(1);
        let t = |k: u32| a / f64::from(k) + b;
        let mut curve: Vec<Point> =
            (1..).map(|i| i * g).take_while(|&k| k < device_sms).map(|k| Point { sms: k, us: t(k) }).collect();
        curve.push(Point { sms: device_sms, us: t(device_sms) });
        Some(knee(&curve, t(device_sms), epsilon, abs_tol_us, 0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_that_scales_is_fit_and_its_knee_found() {
        // T(k) = 1320/k + 5 µs: 15 µs on 132 SMs; within 5% (15.75) from 1320/10.75 = 123 SMs.
        let mut f = LatencyFit::default();
        for k in [16, 32, 64, 132] {
            for _ in 0..5 {
                f.add(k, 1320.0 / f64::from(k) + 5.0);
            }
        }
        let (a, b) = f.fit().unwrap();
        assert!((a - 1320.0).abs() < 1e-6 && (b - 5.0).abs() < 1e-9, "{a} {b}");
        assert_eq!(f.knee(132, 8, 0.05, 0.5), Some(128), "the first 8-SM step from 123");
        // A large fixed part: T(k) = 160/k + 40 µs is within 5% of 41.2 from 160/3.16 = 51 SMs.
        let mut g = LatencyFit::default();
        for k in [24, 48, 132] {
            g.add(k, 160.0 / f64::from(k) + 40.0);
        }
        assert_eq!(g.knee(132, 8, 0.05, 0.5), Some(56));
        assert_eq!(g.completions(), 3);
    }

    #[test]
    fn one_sm_count_is_no_model_and_noise_is_no_slowdown() {
        let mut f = LatencyFit::default();
        f.add(132, 10.0);
        f.add(132, 12.0);
        assert_eq!((f.fit(), f.knee(132, 8, 0.05, 0.5)), (None, None));
        // Slower on more SMs (noise): flat at the mean, so one group is enough.
        f.add(16, 9.0);
        let (a, _) = f.fit().unwrap();
        assert_eq!(a, 0.0);
        assert_eq!(f.knee(132, 8, 0.05, 0.5), Some(8));
        f.add(0, 1.0);
        f.add(8, f64::NAN);
        f.add(8, -1.0);
        assert_eq!(f.completions(), 3, "bad completions are not added");
    }

    #[test]
    fn the_fit_follows_a_kernel_whose_latency_changes() {
        let mut f = LatencyFit::default();
        for _ in 0..100 {
            f.add(16, 100.0);
            f.add(132, 100.0);
        }
        assert_eq!(f.knee(132, 8, 0.05, 0.5), Some(8));
        // Its work grows: 16 SMs now take 8x longer than before, 132 SMs about as long.
        for _ in 0..200 {
            f.add(16, 800.0);
            f.add(132, 110.0);
        }
        let knee = f.knee(132, 8, 0.05, 0.5).unwrap();
        assert!(knee >= 96, "knee {knee} after the change");
    }
}

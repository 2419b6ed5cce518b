//! A profile as Markdown: each kernel's knees and share of the request, the SM-time
//! right-sizing frees, and the request's own curve.

use std::fmt::Write as _;

use super::profile::Profile;

impl Profile {
    /// Share of the request's full-device time spent in each kernel profile, in order.
    fn shares(&self) -> Vec<f64> {
        let total: f64 = self.kernels.iter().map(|k| f64::from(k.calls) * k.full_us).sum();
        self.kernels.iter().map(|k| f64::from(k.calls) * k.full_us / total.max(f64::MIN_POSITIVE)).collect()
    }

    /// SM-time right-sizing frees: Σ share × (1 − min SMs / all SMs).
    pub fn sm_time_freed(&self) -> f64 {
        self.kernels
            .iter()
            .zip(self.shares())
            .map(|(k, s)| s * (1.0 - f64::from(k.min_sms) / f64::from(self.sm_count)))
            .sum()
    }

    /// A Markdown table: kernel, units, calls, full-device µs, latency and efficiency knees
    /// (on an idle device, and beside the co-runner), share of request time, SM-time freed;
    /// then the request's own curve.
    pub fn summary(&self) -> String {
        let mut t = format!(
            "{} — {} on {} ({} SMs), ε = {}, absolute tolerance {} µs, partition switch {:.2} µs\n\nKnees in SMs: *latency*, the fewest SMs within ε of the kernel's best (idle: of the whole device, counting the switch); *efficiency*, the most SMs whose SM·time stays within ε of its least. *Beside*: measured while a co-runner streams memory on the SMs the partition leaves.\n\n| kernel | units | calls | full-GPU µs | latency knee | efficiency knee | latency knee beside | efficiency knee beside | share of request | SM-time freed |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.model, self.request, self.gpu, self.sm_count, self.epsilon, self.abs_tol_us, self.switch_us
        );
        let or_dash = |sms: u32| if sms > 0 { sms.to_string() } else { "–".into() };
        for (k, share) in self.kernels.iter().zip(self.shares()) {
            let freed = share * (1.0 - f64::from(k.min_sms) / f64::from(self.sm_count));
            let _ = writeln!(
                t,
                "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {:.1}% | {:.1}% |",
                k.kernel,
                k.units,
                k.calls,
                k.full_us,
                k.min_sms,
                k.efficiency_sms(self.epsilon),
                or_dash(k.min_sms_beside),
                or_dash(k.efficiency_sms_beside(self.epsilon)),
                100.0 * share,
                100.0 * freed
            );
        }
        let _ = writeln!(t, "\nSM-time freed over the request: {:.1}%", 100.0 * self.sm_time_freed());
        if let Some(whole) = self.request_curve.last().filter(|w| w.us > 0.0) {
            let _ = writeln!(
                t,
                "\nThe request on a partition (kernels chosen for its SMs), alone and beside a co-runner streaming memory on the rest of the device; speed ÷ the whole device alone:\n\n| SMs | forward or prefill µs | decode step µs | speed | beside: forward or prefill µs | beside: decode step µs | speed beside |\n|---:|---:|---:|---:|---:|---:|---:|"
            );
            for p in &self.request_curve {
                let (a, b, c) = (whole.us + whole.step_us, p.us + p.step_us, p.co_us + p.co_step_us);
                let speed = |x: f64| a / x.max(f64::MIN_POSITIVE);
                let beside = if c > 0.0 {
                    format!("{:.1} | {:.1} | {:.2}", p.co_us, p.co_step_us, speed(c))
                } else {
                    "– | – | –".to_string()
                };
                let _ = writeln!(t, "| {} | {:.1} | {:.1} | {:.2} | {beside} |", p.sms, p.us, p.step_us, speed(b));
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use crate::kernels::KernelId;
    use crate::profiler::knee_beside;
    use crate::profiler::tests::{pts, sample};

    #[test]
    fn shares_and_freed_sm_time() {
        let p = sample();
        // Shares 0.75 and 0.25; the norm frees 3/4 of its SM-time.
        assert!((p.sm_time_freed() - 0.25 * 0.75).abs() < 1e-9);
        let s = p.summary();
        assert!(s.contains("| layer_norm_f16 | 10 | 2 | 5.0 | 33 | 0 | – | – | 25.0% | 18.8% |"), "{s}");
        // Measured beside the co-runner: both of its knees there, in their columns.
        let mut q = sample();
        q.kernels[1].beside = pts(&[(8, 40.0), (16, 20.0), (64, 18.0), (120, 17.5)]);
        q.kernels[1].min_sms_beside = knee_beside(&q.kernels[1].beside, q.epsilon, q.abs_tol_us);
        let s = q.summary();
        assert!(s.contains("| layer_norm_f16 | 10 | 2 | 5.0 | 33 | 0 | 64 | 16 | 25.0% | 18.8% |"), "{s}");
        let m = p.min_sms();
        assert_eq!(m.get(KernelId::LayerNorm, 44), Some(33));
        assert_eq!(m.get(KernelId::LayerNorm, 45), None);
        // A launch the engine makes with another kernel on smaller partitions: its knee is
        // found under that kernel's key too.
        let mut q = sample();
        q.kernels[0].variants = vec![(KernelId::GemmWgmmaSlim, format!("{:016x}", 7))];
        assert_eq!(q.min_sms().get(KernelId::GemmWgmmaSlim, 7), Some(132));
    }
}

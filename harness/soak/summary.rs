//! `summary.md` of a soak: the growth of both memories, each tenant's p99 per window against
//! its median window ([`P99Spread`]), and the windows where some tenant was unstable.

use super::{SoakOptions, SoakReport, WindowRow};

/// How far a window's p99 may stray from the run's median window before the soak calls it
/// unstable, as a share of the median: beyond it *and* beyond what the window's own samples can
/// resolve (its p99's confidence interval lies wholly outside the band).
pub const P99_BAND: f64 = 0.10;

impl SoakReport {
    /// Growth of a memory from the first window sampled to the last, as a share of the first.
    fn growth(&self, of: impl Fn(&WindowRow) -> Option<f64>) -> Option<f64> {
        let first = self.rows.iter().find_map(&of)?;
        let last = self.rows.iter().rev().find_map(&of)?;
        Some((last - first) / first)
    }

    /// Whether `r`'s p99 is off its tenant's median window `median` by more than the band and
    /// by more than its own interval can tell.
    fn unstable(r: &WindowRow, median: f64) -> bool {
        let (lo, hi) = (median * (1.0 - P99_BAND), median * (1.0 + P99_BAND));
        r.p99_interval_ms.is_some_and(|(a, b)| b < lo || a > hi)
    }

    /// Each tenant's p99 per window against its median window: see [`P99Spread`].
    pub fn p99_spread(&self) -> Vec<P99Spread> {
        (0..self.labels.len())
            .map(|t| {
                let windows: Vec<&WindowRow> =
                    self.rows.iter().filter(|r| r.tenant == t && r.p99_ms.is_some()).collect();
                let median_of = |w: &[&WindowRow]| {
                    let mut v: Vec<f64> = w.iter().filter_map(|r| r.p99_ms).collect();
                    v.sort_by(f64::total_cmp);
                    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
                };
                let median = median_of(&windows);
                let third = windows.len() / 3;
                P99Spread {
                    median,
                    largest_deviation: windows
                        .iter()
                        .filter_map(|r| r.p99_ms)
                        .map(|x| (x - median).abs() / median)
                        .fold(0.0, f64::max),
                    unstable: windows.iter().filter(|r| Self::unstable(r, median)).count(),
                    drift: (third > 0)
                        .then(|| median_of(&windows[windows.len() - third..]) / median_of(&windows[..third]) - 1.0),
                }
            })
            .collect()
    }

    /// `summary.md`.
    pub fn summary(&self, opts: &SoakOptions) -> String {
        let pct = |v: Option<f64>| v.map(|x| format!("{:+.2}%", 100.0 * x)).unwrap_or_else(|| "–".into());
        let windows = self.rows.iter().map(|r| r.end_s).fold(0.0, f64::max) / opts.window.as_secs_f64();
        let mut s = format!(
            "# rightsize soak\n\n{} tenant{} under `{}`, {:.0} s in {:.0} windows of {:.0} s.\n\n",
            self.labels.len(),
            if self.labels.len() == 1 { "" } else { "s" },
            opts.mode,
            opts.duration.as_secs_f64(),
            windows,
            opts.window.as_secs_f64()
        );
        s += &format!(
            "- host resident memory, first window to last: {}\n- GPU used memory, first window to last: {}\n",
            pct(self.growth(|r| r.rss_mib)),
            pct(self.growth(|r| r.gpu_used_mib))
        );
        // The most of a value any window recorded (`–`: none did).
        let most = |f: fn(&WindowRow) -> Option<f64>, digits: usize| {
            self.rows.iter().filter_map(f).reduce(f64::max).map_or("–".into(), |x| format!("{x:.digits$}"))
        };
        s += &format!(
            "- host CPU outside this process, the most in a window: {} cores busy, {} stolen\n\
             - processes seen on the GPU, the most in a window: {} (this one included)\n",
            most(|r| r.other_cpu, 2),
            most(|r| r.steal_cpu, 2),
            most(|r| r.gpu_processes.map(f64::from), 0)
        );
        s += &format!("- error: {}\n\n", self.error.as_deref().unwrap_or("none"));
        s += &format!(
            "A window is unstable when its p99 is more than ±{:.0}% from the tenant's median window \
             by more than the window's own samples can tell: its p99's 95% confidence interval lies \
             wholly outside the band. Drift: the median window of the last third over the first \
             third's.\n\n",
            100.0 * P99_BAND
        );
        s += "| tenant | requests | shed | median window p99 ms | largest deviation of a window | unstable windows | drift |\n";
        s += "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n";
        for (t, p) in self.p99_spread().into_iter().enumerate() {
            let rows = self.rows.iter().filter(|r| r.tenant == t);
            let (req, shed) = rows.fold((0, 0), |(a, b), r| (a + r.requests, b + r.shed));
            s += &format!(
                "| {} | {req} | {shed} | {:.2} | {:.1}% | {} | {} |\n",
                self.labels[t],
                p.median,
                100.0 * p.largest_deviation,
                p.unstable,
                pct(p.drift)
            );
        }
        s + &self.unstable_windows_table()
    }

    /// The windows where some tenant was unstable: how many tenants, how far, whether their
    /// slowest requests came together (on the run's clock), and what the host did meanwhile.
    fn unstable_windows_table(&self) -> String {
        let medians: Vec<f64> = self.p99_spread().iter().map(|p| p.median).collect();
        let mut ends: Vec<f64> = self.rows.iter().map(|r| r.end_s).collect();
        ends.dedup();
        let mut table = String::new();
        for end in ends {
            let window: Vec<&WindowRow> = self.rows.iter().filter(|r| r.end_s == end).collect();
            let off: Vec<&&WindowRow> = window.iter().filter(|r| Self::unstable(r, medians[r.tenant])).collect();
            if off.is_empty() {
                continue;
            }
            let worst = off.iter().filter_map(|r| Some(r.p99_ms? / medians[r.tenant])).fold(0.0, f64::max);
            let slowest: Vec<f64> = off.iter().filter_map(|r| r.slowest_end_s).collect();
            let came = if slowest.is_empty() {
                "–".to_string()
            } else {
                let (a, b) = slowest.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
                format!("{a:.1}–{b:.1}")
            };
            let host = window.first().map_or("– | – | – | – | –".to_string(), |r| {
                let count = |n: Option<u64>| n.map_or("–".into(), |n| n.to_string());
                let two = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.2}"));
                format!(
                    "{} | {} | {} | {} | {}",
                    count(r.involuntary_switches),
                    two(r.load1),
                    two(r.other_cpu),
                    two(r.steal_cpu),
                    count(r.gpu_processes.map(u64::from))
                )
            });
            table += &format!("| {end:.0} | {} of {} | {worst:.2}× | {came} | {host} |\n", off.len(), window.len());
        }
        if table.is_empty() {
            return table;
        }
        "\n## Unstable windows\n\nThe worst p99 is the unstable tenants' largest over their median window; \
         their slowest requests completed within the span given (seconds on the run's clock, one \
         for every tenant); the host's involuntary context switches of this process during the \
         window, its load average at the end, and the CPU cores it kept busy outside this process \
         and its hypervisor took (steal), on average over the window; the processes seen on the GPU \
         during the window, this one included.\n\n\
         | window end s | unstable tenants | worst p99 | slowest requests completed, s | involuntary switches | load | other CPU, cores | steal, cores | GPU processes |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
            .to_string()
            + &table
    }
}

/// One tenant's p99 per window against its median window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct P99Spread {
    /// The median window's p99, ms.
    pub median: f64,
    /// The largest deviation of a window's p99 from it, a share of it.
    pub largest_deviation: f64,
    /// Windows whose p99 interval lies wholly outside ±[`P99_BAND`] of it.
    pub unstable: usize,
    /// The last third of the windows' median p99 over the first third's, less 1 (fewer than
    /// three windows: `None`).
    pub drift: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::super::tests::opts;
    use super::*;

    #[test]
    fn the_report_gives_growth_and_p99_spread() {
        let row = |end_s: f64, tenant, p99: f64, rss: f64| WindowRow {
            end_s,
            tenant,
            requests: 100,
            shed: 1,
            p99_ms: Some(p99),
            p99_interval_ms: Some((p99 * 0.99, p99 * 1.01)),
            p50_ms: Some(p99 / 2.0),
            rss_mib: Some(rss),
            gpu_used_mib: Some(1000.0),
            sm_clock_mhz: Some(1980.0),
            temperature_c: Some(40.0),
            max_ms: Some(p99 * 1.5),
            slowest_end_s: Some(end_s - 1.0 - tenant as f64),
            involuntary_switches: Some(7),
            load1: Some(0.5),
            other_cpu: Some(0.25),
            steal_cpu: None,
            gpu_processes: Some(2),
        };
        let r = SoakReport {
            labels: vec!["a".into(), "b".into()],
            rows: vec![
                row(60.0, 0, 2.0, 500.0),
                row(60.0, 1, 5.0, 500.0),
                row(120.0, 0, 2.2, 502.0),
                row(120.0, 1, 5.0, 502.0),
                row(180.0, 0, 1.9, 505.0),
                row(180.0, 1, 5.5, 505.0),
            ],
            error: None,
        };
        assert!((r.growth(|w| w.rss_mib).unwrap() - 0.01).abs() < 1e-9);
        let spread = r.p99_spread();
        assert_eq!(spread[0].median, 2.0);
        assert!((spread[0].largest_deviation - 0.1).abs() < 1e-9 && (spread[1].largest_deviation - 0.1).abs() < 1e-9);
        // 2.2 ms with an interval of ±1% is within the band's edge (2.2); 5.5 is not.
        assert_eq!((spread[0].unstable, spread[1].unstable), (0, 0));
        assert!((spread[0].drift.unwrap() - (1.9 / 2.0 - 1.0)).abs() < 1e-9, "{:?}", spread[0]);
        let mut wide = r.clone();
        wide.rows[5].p99_ms = Some(6.0);
        wide.rows[5].p99_interval_ms = Some((5.94, 6.06));
        assert_eq!(wide.p99_spread()[1].unstable, 1, "an interval of 5.94–6.06 ms is outside 4.5–5.5");
        wide.rows[5].p99_interval_ms = Some((5.0, 6.5));
        assert_eq!(wide.p99_spread()[1].unstable, 0, "an interval reaching into the band is noise");
        let dir = std::env::temp_dir().join(format!("rightsize-soak-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        match r.plot(&dir) {
            Ok(files) => assert!(files.iter().all(|f| f.is_file()), "{files:?}"),
            // A machine without a TrueType font says so instead of plotting.
            Err(e) => assert!(format!("{e:#}").contains("font"), "{e:#}"),
        }
        std::fs::remove_dir_all(&dir).ok();
        let md = r.summary(&opts());
        assert!(md.contains("\n2 tenants under `"), "{md}");
        let one = SoakReport {
            labels: vec!["a".into()],
            rows: r.rows.iter().filter(|w| w.tenant == 0).cloned().collect(),
            error: None,
        };
        assert!(one.summary(&opts()).contains("\n1 tenant under `"), "{}", one.summary(&opts()));
        assert!(md.contains("+1.00%") && md.contains("| a | 300 | 3 | 2.00 | 10.0% | 0 | -5.00% |"), "{md}");
        assert!(md.contains("the most in a window: 0.25 cores busy, – stolen\n"), "{md}");
        assert!(md.contains("processes seen on the GPU, the most in a window: 2 (this one included)"), "{md}");
        assert_eq!(r.csv().lines().count(), 7);
        assert!(r.csv().lines().nth(1).unwrap().starts_with("60.0,0,a,100,1,1.000,2.000,1.980,2.020,"), "{}", r.csv());
        assert!(
            r.csv().lines().nth(1).unwrap().ends_with(",1000.000,1980.000,40.000,3.000,59.000,7,0.500,0.250,,2"),
            "{}",
            r.csv()
        );
        assert!(!md.contains("Unstable windows"), "{md}");
        // An unstable window is listed with its tenants, how far, and when their slowest came.
        wide.rows[5].p99_interval_ms = Some((5.94, 6.06));
        let md = wide.summary(&opts());
        assert!(md.contains("| 180 | 1 of 2 | 1.20× | 178.0–178.0 | 7 | 0.50 | 0.25 | – | 2 |"), "{md}");
    }
}

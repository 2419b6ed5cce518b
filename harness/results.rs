//! What a comparison measured, as it is written to `results.json` and read back (by `report`,
//! the plots and the tables): each run's status, tenants and metrics, the solo baselines, the
//! whole [`Report`]; and the time stamps of results directories.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::counters::Counters;
use super::metrics::{RunMetrics, Sample, TenantMetrics};
use super::scenario::{Scenario, TenantSpec};
use super::sweep::{Probe, SweepPoint};

/// How a run ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Status {
    /// It ran.
    Ok,
    /// It cannot run on this host.
    Skipped {
        /// Why.
        reason: String,
    },
    /// It failed.
    Failed {
        /// The error.
        error: String,
    },
}

/// One tenant's part of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantResult {
    /// Its spec.
    pub spec: TenantSpec,
    /// One request, e.g. "8×128 +8".
    pub shape: String,
    /// Its metrics (against its solo baseline).
    pub metrics: TenantMetrics,
    /// Its counted samples.
    pub samples: Vec<Sample>,
    /// Why its first failed request failed, if one did (see `metrics.failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// One-process modes: how much of its recent time it spent busy, at the end (see
    /// `Tenant::duty`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duty: Option<f64>,
    /// PyTorch tenants under `static` and `krisp`: what the interposer did with its kernels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interposed: Option<super::torch::Interposed>,
}

/// One scenario under one mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Scenario name.
    pub scenario: String,
    /// Mode name.
    pub mode: String,
    /// How it ended.
    #[serde(flatten)]
    pub status: Status,
    /// Wall-clock seconds, setup included.
    pub wall_s: f64,
    /// Tenants, in scenario order (empty unless it ran).
    pub tenants: Vec<TenantResult>,
    /// STP, ANTT, fairness, SLO attainment.
    pub metrics: Option<RunMetrics>,
    /// Bandwidth the background PCIe load achieved, GB/s.
    pub pcie_gb_per_s: Option<f64>,
    /// GPU counters sampled while it ran.
    #[serde(default)]
    pub counters: Option<Counters>,
    /// One-process modes, and worker processes under MPS: how long each recovery from a lost
    /// context kept the tenants from serving, seconds (from the fault to the last tenant
    /// resuming).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outages_s: Vec<f64>,
    /// Tenants that served none of their counted requests (every one failed or was shed) or
    /// counted none, so they have no latency or throughput and are not in `tenants`: a line
    /// each, with what failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unserved: Vec<String>,
    /// PyTorch tenants under `krisp` with `RIGHTSIZE_KRISP_ASIDE_MS`: when every process stood
    /// aside (`scripts/aside_ab.py` splits the samples by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aside: Option<AsidePhases>,
    /// What the policy learned in the run (one-process runs in the harness's own process; a
    /// kernel-fault scenario's, hosted in a child process, carry none; `krisp`: where each
    /// layout trial stands at the end), a line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_notes: Vec<String>,
}

/// The periods in which a run's processes all stood aside (the interposer's alternation):
/// periods of `every_s` seconds from `epoch_s` on the samples' clock (seconds from the
/// tenants' common start; before it, so negative), the interposer taking part in the first,
/// third, … and standing aside in the second, fourth, …
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AsidePhases {
    /// A period's length, seconds.
    pub every_s: f64,
    /// Where the first period begins on the samples' clock, seconds.
    pub epoch_s: f64,
}

impl RunResult {
    /// A run of `scenario` under `mode` with no tenants to report: skipped, or failed.
    pub fn without_tenants(scenario: &str, mode: &str, status: Status, wall_s: f64) -> RunResult {
        RunResult {
            scenario: scenario.to_string(),
            mode: mode.to_string(),
            status,
            wall_s,
            tenants: Vec::new(),
            metrics: None,
            pcie_gb_per_s: None,
            counters: None,
            outages_s: Vec::new(),
            unserved: Vec::new(),
            aside: None,
            policy_notes: Vec::new(),
        }
    }
}

/// The line of [`RunResult::unserved`] for a tenant labelled `label` that counted `samples`
/// (none served) and first failed with `failure`, or counted none.
pub(crate) fn unserved_line(label: &str, samples: &[Sample], failure: Option<&str>) -> String {
    if samples.is_empty() && failure.is_none() {
        return format!(
            "{label}: counted no requests (the run ended before every tenant had issued its warm-up, \
             or before this tenant's first counted request)"
        );
    }
    let failed = samples.iter().filter(|s| s.failed).count();
    let shed = samples.iter().filter(|s| s.shed).count();
    let mut line = format!("{label}: served none of its counted requests ({failed} failed, {shed} shed)");
    if let Some(why) = failure {
        line += &format!("; the first failure: {why}");
    }
    line
}

/// A tenant alone on the GPU.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoloResult {
    /// Its key ([`Scenario::solo_key`]).
    pub key: String,
    /// How it ended.
    #[serde(flatten)]
    pub status: Status,
    /// Its metrics.
    pub metrics: Option<TenantMetrics>,
}

/// The largest magnitude a figure of a results file may have: far beyond any time (s or ms),
/// rate or ratio a comparison measures, and small enough for a plot's axes.
pub const FIGURE_LIMIT: f64 = 1e12;

/// The results file `path` names: its results.json where it is a directory, else itself.
pub fn results_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_path_buf()
    }
}

/// Whether `a` and `b` name the same results file however named (a link, `.`, a directory
/// or its results.json); one not there is no other.
pub fn same_results_file(a: &Path, b: &Path) -> bool {
    match (results_file(a).canonicalize(), results_file(b).canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Refuses `x` (`what` names it) unless it is finite and within ±[`FIGURE_LIMIT`].
pub fn check_figure(x: f64, what: impl FnOnce() -> String) -> anyhow::Result<()> {
    anyhow::ensure!(
        x.is_finite() && x.abs() <= FIGURE_LIMIT,
        "{}: {x:e} is not a measured figure (not finite, or beyond ±{FIGURE_LIMIT:e})",
        what()
    );
    Ok(())
}

/// Everything a comparison measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// GPU name.
    pub gpu: String,
    /// Its SMs.
    pub sm_count: u32,
    /// Driver release.
    pub driver: Option<String>,
    /// When it started (UTC).
    pub date: String,
    /// The command that made it.
    pub command: String,
    /// The scenarios.
    pub scenarios: Vec<Scenario>,
    /// Solo baselines.
    pub solo: Vec<SoloResult>,
    /// Shared runs.
    pub runs: Vec<RunResult>,
    /// Load sweeps' runs (scenarios with `sweep`), the ordinary runs as repeat 0 of scale 1.
    #[serde(default)]
    pub sweeps: Vec<SweepPoint>,
}

impl Report {
    /// "GPU (N SMs), driver D", for the heads of the summary and the report.
    pub fn machine(&self) -> String {
        format!("{} ({} SMs), driver {}", self.gpu, self.sm_count, self.driver.as_deref().unwrap_or("?"))
    }

    /// Reads a results file, refusing one whose runs do not fit its scenarios or whose figures
    /// no measurement gives ([`Report::check`]).
    pub fn load(path: &Path) -> anyhow::Result<Report> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a rightsize results file", path.display()))?;
        report.check().with_context(|| format!("{} is not a consistent rightsize results file", path.display()))?;
        Ok(report)
    }

    /// Whether what it holds could have been measured: every run and sweep point of a scenario
    /// it names, with no more tenants than that scenario has, and every figure finite and
    /// within ±[`FIGURE_LIMIT`] (a hand-edited or merged file otherwise reaches code that indexes
    /// a scenario's tenants by a run's, and plots whose axes cannot be drawn).
    pub fn check(&self) -> anyhow::Result<()> {
        let check_tenant_count = |scenario: &str, mode: &str, what: &str, n: usize| -> anyhow::Result<()> {
            let sc = self.scenarios.iter().find(|s| s.name == scenario);
            let sc = sc.with_context(|| {
                format!("{what} of scenario {scenario} ({mode}), which the file's scenarios do not include")
            })?;
            anyhow::ensure!(
                n <= sc.tenants.len(),
                "{what} of {scenario} ({mode}) has {n} tenants, the scenario {}",
                sc.tenants.len()
            );
            Ok(())
        };
        // Each figure given (`Some`) of a list, named by `at(its name)`.
        let figures = |xs: &[(Option<f64>, &str)], at: &dyn Fn(&str) -> String| {
            xs.iter().try_for_each(|&(x, name)| x.map_or(Ok(()), |x| check_figure(x, || at(name))))
        };
        let check_tenant = |m: &TenantMetrics, at: &dyn Fn(&str) -> String| {
            let l = &m.latency;
            figures(
                &[
                    (Some(m.throughput), "throughput"),
                    (Some(l.mean), "mean"),
                    (Some(l.p50), "p50"),
                    (Some(l.p90), "p90"),
                    (Some(l.p99), "p99"),
                    (Some(l.max), "max"),
                    (m.slowdown, "slowdown"),
                    (m.relative_throughput, "relative_throughput"),
                    (m.p99_vs_solo, "p99_vs_solo"),
                    (m.slo_ms, "slo_ms"),
                    (m.slo_attainment, "slo_attainment"),
                ],
                at,
            )
        };
        for solo in &self.solo {
            if let Some(m) = &solo.metrics {
                check_tenant(m, &|name| format!("solo {}, {name}", solo.key))?;
            }
        }
        for run in &self.runs {
            check_tenant_count(&run.scenario, &run.mode, "a run", run.tenants.len())?;
            let at = |what: &str| format!("the run of {} ({}), {what}", run.scenario, run.mode);
            let m = run.metrics.as_ref();
            figures(
                &[
                    (Some(run.wall_s), "wall_s"),
                    (m.and_then(|m| m.stp), "stp"),
                    (m.and_then(|m| m.antt), "antt"),
                    (m.and_then(|m| m.fairness), "fairness"),
                    (m.and_then(|m| m.slo_attainment), "slo_attainment"),
                ],
                &at,
            )?;
            for (i, t) in run.tenants.iter().enumerate() {
                check_tenant(&t.metrics, &|name| at(&format!("tenant {i}, {name}")))?;
                for (j, q) in t.samples.iter().enumerate() {
                    figures(&[(Some(q.due), "due"), (Some(q.start), "start"), (Some(q.end), "end")], &|name| {
                        at(&format!("tenant {i}, sample {j}, {name}"))
                    })?;
                }
            }
        }
        for point in &self.sweeps {
            check_tenant_count(&point.scenario, &point.mode, "a sweep point", point.tenants.len())?;
            let at = |what: &str| {
                format!("the sweep point of {} ({}) at ×{}, {what}", point.scenario, point.mode, point.scale)
            };
            figures(&[(Some(point.scale), "scale")], &at)?;
            for (i, t) in point.tenants.iter().enumerate() {
                figures(
                    &[
                        (Some(t.p99_ms), "p99_ms"),
                        (Some(t.throughput), "throughput"),
                        (t.rate, "rate"),
                        (t.slo_ms, "slo_ms"),
                        (t.slo_attainment, "slo_attainment"),
                    ],
                    &|name| at(&format!("tenant {i}, {name}")),
                )?;
            }
        }
        Ok(())
    }

    /// The results of a results directory (its results.json), or of a results.json itself.
    pub fn load_from(path: &Path) -> anyhow::Result<Report> {
        anyhow::ensure!(path.exists(), "{} does not exist", path.display());
        let file = results_file(path);
        anyhow::ensure!(file.is_file(), "{} has no results.json (is it a results directory?)", path.display());
        Report::load(&file)
    }

    pub(crate) fn solo(&self, key: &str) -> Option<&TenantMetrics> {
        self.solo.iter().find(|s| s.key == key).and_then(|s| s.metrics.as_ref())
    }

    /// These results (read from `path`, a results.json or the results directory holding it)
    /// as a comparison to go on from: refused where they were measured on another GPU than
    /// `gpu` with `sms` SMs.
    pub fn resumable_on(self, path: &Path, gpu: &str, sms: u32) -> anyhow::Result<Report> {
        self.measured_on(path, gpu, sms, "a comparison goes on on its own GPU kind")
    }

    /// These results (read from `path`), refused (saying `why`) where they were measured on
    /// another GPU than `gpu` with `sms` SMs.
    fn measured_on(self, path: &Path, gpu: &str, sms: u32, why: &str) -> anyhow::Result<Report> {
        anyhow::ensure!(
            self.gpu == gpu && self.sm_count == sms,
            "{} was measured on {} ({} SMs), not this {gpu} ({sms} SMs): {why}",
            path.display(),
            self.gpu,
            self.sm_count
        );
        Ok(self)
    }

    /// Its run of `scenario` under `mode`, where that ran to its end and the scenario is the
    /// same as its own (a changed scenario of the same name is run again, as is a run that
    /// failed or was skipped: a reason to skip is judged again).
    pub fn finished_run(&self, scenario: &Scenario, mode: &str) -> Option<&RunResult> {
        if !self.scenarios.contains(scenario) {
            return None;
        }
        self.runs.iter().find(|r| r.scenario == scenario.name && r.mode == mode && matches!(r.status, Status::Ok))
    }

    /// Its point of `scenario`'s sweep under `mode` at `probe` (a scale and a repeat), where
    /// it ran without an error and the scenario is the same as its own. A sweep's search asks
    /// for its points in an order that depends only on their verdicts, so taking the points
    /// that ran and running the rest goes on from where a sweep was cut short.
    pub fn sweep_point(&self, scenario: &Scenario, mode: &str, probe: Probe) -> Option<&SweepPoint> {
        if !self.scenarios.contains(scenario) {
            return None;
        }
        self.sweeps.iter().find(|p| {
            p.scenario == scenario.name
                && p.mode == mode
                && p.scale == probe.scale
                && p.repeat == probe.repeat
                && p.error.is_none()
        })
    }

    /// The `RIGHTSIZE_*` settings its command line begins with (several change what runs).
    pub fn settings(&self) -> Vec<String> {
        settings(&self.command)
    }

    /// The solo baselines of these results (read from `path`, a results.json or the results
    /// directory holding it) that a comparison on `gpu` with `sms` SMs can take instead of
    /// measuring them again: those that ran. Refused where they were measured on another GPU
    /// (a baseline is of one GPU kind).
    pub fn solos_on(self, path: &Path, gpu: &str, sms: u32) -> anyhow::Result<Vec<SoloResult>> {
        Ok(self.measured_on(path, gpu, sms, "its solo baselines do not hold here")?.solos_that_ran())
    }

    /// Its solo baselines that ran (with metrics).
    pub fn solos_that_ran(&self) -> Vec<SoloResult> {
        self.solo.iter().filter(|s| matches!(s.status, Status::Ok) && s.metrics.is_some()).cloned().collect()
    }
}

/// The `RIGHTSIZE_*` variables a recorded command line begins with, `NAME=value` each (the
/// line's words as a shell reads them: a value the line quoted, `'a b'`, is one word; a line no
/// shell could read is split at its blanks).
pub fn settings(command: &str) -> Vec<String> {
    let words = shlex::split(command).unwrap_or_else(|| command.split_whitespace().map(String::from).collect());
    words.into_iter().take_while(|w| w.starts_with("RIGHTSIZE_") && w.contains('=')).collect()
}

/// "YYYY-MM-DD HH:MM:SS" (UTC) of a Unix time.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A default results directory: `results/<name>-<UTC date and time>`.
pub fn default_out(name: &str) -> PathBuf {
    let stamp: String = utc(now_unix()).chars().filter(|c| c.is_ascii_digit()).collect();
    PathBuf::from("results").join(format!("{name}-{}-{}", &stamp[..8], &stamp[8..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn earlier_solos(path: &Path, gpu: &str, sms: u32) -> anyhow::Result<Vec<SoloResult>> {
        Report::load_from(path)?.solos_on(path, gpu, sms)
    }

    fn resumable(path: &Path, gpu: &str, sms: u32) -> anyhow::Result<Report> {
        Report::load_from(path)?.resumable_on(path, gpu, sms)
    }

    /// Writes `r` as an earlier comparison's results directory under a temporary one.
    fn earlier(r: &Report, name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rightsize-earlier-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("results.json"), serde_json::to_string(r).unwrap()).unwrap();
        dir
    }

    #[test]
    fn a_results_file_whose_runs_do_not_fit_its_scenarios_or_whose_figures_no_run_gives_is_refused() {
        let good = crate::harness::output::tests::report();
        good.check().unwrap();
        let refused = |edit: &dyn Fn(&mut Report), says: &str| {
            let mut r = good.clone();
            edit(&mut r);
            let dir = earlier(&r, "check");
            let e = format!("{:#}", Report::load_from(&dir).unwrap_err());
            assert!(e.contains("is not a consistent rightsize results file") && e.contains(says), "{e}");
            std::fs::remove_dir_all(dir).unwrap();
        };
        // A scenario cut to fewer tenants than its runs have (the report indexed them: a panic).
        refused(&|r| r.scenarios[0].tenants.truncate(1), "tenants, the scenario 1");
        refused(&|r| r.runs[0].scenario = "elsewhere".into(), "which the file's scenarios do not include");
        // Figures no run gives (a plot's axes then never finished).
        refused(&|r| r.runs[0].tenants[0].metrics.throughput = 1e308, "throughput: 1e308 is not a measured figure");
        refused(&|r| r.runs[0].tenants[0].samples[0].end = -1e300, "sample 0, end");
        refused(&|r| r.solo[0].metrics.as_mut().unwrap().latency.p99 = 1e13, "p99");
    }

    #[test]
    fn an_earlier_comparisons_solos_are_taken_only_on_its_gpu_and_only_those_that_ran() {
        let mut r = crate::harness::output::tests::report();
        let ran: Vec<String> = r.solo.iter().map(|s| s.key.clone()).collect();
        r.solo.push(SoloResult {
            key: "failed".into(),
            status: Status::Failed { error: "lost".into() },
            metrics: None,
        });
        let dir = earlier(&r, "solos");
        // The directory or its results.json: the baselines that ran, by key.
        for path in [dir.clone(), dir.join("results.json")] {
            let taken = earlier_solos(&path, &r.gpu, r.sm_count).unwrap();
            assert_eq!(taken.iter().map(|s| s.key.clone()).collect::<Vec<_>>(), ran);
        }
        // Another GPU, or another SM count: refused, naming both.
        let e = earlier_solos(&dir, "Other GPU", r.sm_count).unwrap_err().to_string();
        assert!(e.contains("Other GPU") && e.contains(&r.gpu) && e.contains("do not hold here"), "{e}");
        assert!(earlier_solos(&dir, &r.gpu, r.sm_count + 1).is_err());
        // Not a results file: said so.
        std::fs::write(dir.join("results.json"), "{}").unwrap();
        let e = format!("{:#}", earlier_solos(&dir, &r.gpu, r.sm_count).unwrap_err());
        assert!(e.contains("is not a rightsize results file"), "{e}");
        let missing = earlier_solos(&dir.join("nowhere"), &r.gpu, r.sm_count).unwrap_err();
        assert!(format!("{missing:#}").contains("nowhere does not exist"), "{missing:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn results_read_back_hold_the_numbers_written() {
        // A solo throughput measured on an H200 that the default float parser read back one
        // unit in the last place off, so a comparison resumed did not take it as it was.
        let mut r = crate::harness::output::tests::report();
        let m = r.solo.iter_mut().find_map(|s| s.metrics.as_mut()).unwrap();
        m.throughput = 98.232_966_141_780_07;
        m.latency.mean = 1.008_050_408_533_824_7;
        let dir = earlier(&r, "roundtrip");
        let back = Report::load_from(&dir).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), serde_json::to_string(&r).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_comparison_goes_on_from_the_runs_that_finished_and_the_sweep_points_that_ran() {
        let mut r = crate::harness::output::tests::report();
        r.runs.push(RunResult::without_tenants("pair", "streams", Status::Failed { error: "lost".into() }, 1.0));
        let dir = earlier(&r, "resume");
        let back = resumable(&dir, &r.gpu, r.sm_count).unwrap();
        let pair = r.scenarios[0].clone();
        // Ran to its end: taken; failed, skipped (its reason judged again) or never run: run again.
        assert!(back.finished_run(&pair, "mps").is_some_and(|x| matches!(x.status, Status::Ok)));
        assert!(back.finished_run(&pair, "timeslice").is_none(), "skipped: judged again");
        assert!(back.finished_run(&pair, "streams").is_none(), "failed: run again");
        assert!(back.finished_run(&pair, "static").is_none());
        // A scenario of the same name that changed (here its requests): run again.
        let changed = crate::harness::Scenario { requests: pair.requests + 1, ..pair.clone() };
        assert!(back.finished_run(&changed, "mps").is_none());
        // Its sweep's points that ran, by mode, scale and repeat; a changed scenario's none, nor
        // a point whose run failed.
        let first = r.sweeps[0].clone();
        let probe = Probe { scale: first.scale, repeat: first.repeat };
        assert_eq!(back.sweep_point(&pair, &first.mode, probe), Some(&first));
        assert_eq!(back.sweep_point(&pair, &first.mode, Probe { repeat: first.repeat + 7, ..probe }), None);
        assert_eq!(back.sweep_point(&pair, "no-such-mode", probe), None);
        assert_eq!(back.sweep_point(&changed, &first.mode, probe), None);
        let mut failed = r.clone();
        failed.sweeps[0].error = Some("lost".into());
        assert_eq!(failed.sweep_point(&pair, &first.mode, probe), None);
        // The settings its command line began with.
        let set =
            Report { command: "RIGHTSIZE_GUARD=off RIGHTSIZE_TRIAL=on gpu-bin/rightsize compare".into(), ..r.clone() };
        assert_eq!(set.settings(), ["RIGHTSIZE_GUARD=off", "RIGHTSIZE_TRIAL=on"]);
        // A quoted value is one word, whatever it holds.
        let quoted =
            Report { command: r"RIGHTSIZE_A='x y' RIGHTSIZE_B='it'\''s' RIGHTSIZE_C=1 rightsize".into(), ..r.clone() };
        assert_eq!(quoted.settings(), ["RIGHTSIZE_A=x y", "RIGHTSIZE_B=it's", "RIGHTSIZE_C=1"]);
        assert!(Report { command: "rightsize compare --out RIGHTSIZE_X=1".into(), ..r.clone() }.settings().is_empty());
        // Another GPU: refused.
        let e = resumable(&dir, "Other GPU", r.sm_count).unwrap_err().to_string();
        assert!(e.contains("Other GPU") && e.contains("its own GPU kind"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

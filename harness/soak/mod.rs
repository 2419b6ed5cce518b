//! `rightsize soak`: one long run of many tenants (by default `scenarios/soak.toml`: eight
//! batch-1 encoders and decoders, open loop) under one mode, keeping per window of time only
//! what it reports — each tenant's requests, shed requests and p99, the process's resident
//! memory, the GPU's used memory, SM clock, temperature and processes, and what the host did
//! besides — so the run itself holds no more memory at the end than at the start. Writes
//! `soak.csv` (one row per window and tenant), `summary.md` (growth of both memories, each
//! tenant's p99 per window against its median window) and `soak.svg`/`.png`.
//!
//! Here: the run, its options and what it measures ([`WindowRow`], [`SoakReport`]). Beside it:
//! `windows.rs` (each tenant's open window, closed into a row; the p99's confidence
//! interval), `launches.rs` (every tenant's launches so far, `--launches`), `csv_file.rs`
//! (`soak.csv`, written and read back) and `summary.rs` (`summary.md`). What the machine did
//! at each window's end is sampled by [`super::counters`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use parking_lot::Mutex;

use super::counters::{HostTotals, Machine};
use super::inproc::{self, Knees, RunOptions};
use super::scenario::{Mode, Scenario, ScenarioFile};
use crate::runtime::{Device, TraceSink};

mod csv_file;
mod launches;
mod summary;
mod windows;

pub use csv_file::read_csv;
pub use launches::{launches_line, LaunchWatch, TenantLaunches};
pub use summary::{P99Spread, P99_BAND};
pub use windows::quantile_interval;
use windows::Windows;

/// The embedded soak scenario.
pub const SOAK_SCENARIO: &str = include_str!("../../scenarios/soak.toml");

/// What a soak run does.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// How long the tenants run.
    pub duration: Duration,
    /// The length of a reporting window.
    pub window: Duration,
    /// The sharing mode (one process).
    pub mode: Mode,
    /// A scenario file whose first scenario runs instead of the embedded one.
    pub file: Option<PathBuf>,
    /// Results directory.
    pub out: PathBuf,
    /// Also report, as each window closes, every tenant's kernel launches so far and its last
    /// (a record taken per launch: for runs under a sanitizer, to see which launch holds them).
    pub launches: bool,
}

/// What a soak reports as each window closes.
#[derive(Debug)]
pub struct Progress<'a> {
    /// Every tenant's label.
    pub labels: &'a [String],
    /// Every tenant's row of the window.
    pub rows: &'a [WindowRow],
    /// With [`SoakOptions::launches`]: every tenant's launches so far.
    pub launches: Option<Vec<TenantLaunches>>,
}

/// One tenant in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    /// Seconds from the start to the window's end.
    pub end_s: f64,
    /// The tenant's index.
    pub tenant: usize,
    /// Requests served in the window.
    pub requests: usize,
    /// Requests shed in the window.
    pub shed: usize,
    /// p99 latency of the served ones, ms (none served: `None`).
    pub p99_ms: Option<f64>,
    /// The 95% confidence interval of that p99 from the window's own samples, ms: the order
    /// statistics around rank 0.99·n that bracket the true 99th percentile with 95%
    /// probability whatever the distribution (a minute of 700 requests cannot place its p99
    /// closer than this).
    pub p99_interval_ms: Option<(f64, f64)>,
    /// Median latency of the served ones, ms.
    pub p50_ms: Option<f64>,
    /// The host process's resident memory at the window's end, MiB.
    pub rss_mib: Option<f64>,
    /// The GPU's used memory at the window's end, MiB (all processes).
    pub gpu_used_mib: Option<f64>,
    /// The GPU's SM clock at the window's end, MHz (what explains a device-wide drift of p99).
    pub sm_clock_mhz: Option<f64>,
    /// The GPU's temperature at the window's end, °C.
    pub temperature_c: Option<f64>,
    /// The slowest served request's latency, ms.
    pub max_ms: Option<f64>,
    /// When that request completed, seconds on the run's clock (the same clock for every
    /// tenant, so windows whose outliers came together can be told from each tenant's own).
    pub slowest_end_s: Option<f64>,
    /// Involuntary context switches of this process's threads during the window (the host
    /// preempting the tenants), from `getrusage`.
    pub involuntary_switches: Option<u64>,
    /// The host's one-minute load average at the window's end.
    pub load1: Option<f64>,
    /// CPU cores the host kept busy outside this process during the window, on average:
    /// every process's and the kernel's busy time (`/proc/stat`) less this process's own.
    pub other_cpu: Option<f64>,
    /// CPU cores the hypervisor took from the host during the window, on average (its steal
    /// time: a virtual machine's neighbours).
    pub steal_cpu: Option<f64>,
    /// Processes seen on the GPU during the window, this one included: those NVML sampled
    /// using its SMs, and those holding a context at the window's end. More than one: another
    /// process shared the GPU (time-sliced with the tenants).
    pub gpu_processes: Option<u32>,
}

/// What a soak run measured.
#[derive(Debug, Clone)]
pub struct SoakReport {
    /// The tenants' labels.
    pub labels: Vec<String>,
    /// Every window's rows, in order.
    pub rows: Vec<WindowRow>,
    /// The error that ended the run early, if any.
    pub error: Option<String>,
}

/// The scenario a soak runs: the file's first, or the embedded one; open loops only, counting
/// for `duration`.
pub fn soak_scenario(opts: &SoakOptions) -> anyhow::Result<Scenario> {
    let file = match &opts.file {
        Some(path) => ScenarioFile::load(path)?,
        None => ScenarioFile::parse(SOAK_SCENARIO, "the embedded soak scenario")?,
    };
    let mut s = file.scenarios.into_iter().next().context("no scenario")?;
    if let Some(t) = s.tenants.iter().find(|t| t.rate.is_none()) {
        bail!("soak runs open loops: tenant {} has no rate", t.model);
    }
    if let Some(t) = s.tenants.iter().find(|t| t.fault.is_some()) {
        bail!("a soak injects no faults: tenant {} has one", t.model);
    }
    s.duration_s = Some(opts.duration.as_secs_f64());
    s.requests = u32::MAX;
    Ok(s)
}

/// Runs a soak; `progress` is told each window as it closes.
pub fn soak(opts: &SoakOptions, progress: &(dyn Fn(&Progress<'_>) + Sync)) -> anyhow::Result<SoakReport> {
    one_process(opts.mode)?;
    if opts.window.is_zero() || opts.duration < opts.window {
        bail!("the window ({:?}) must be positive and no longer than the run ({:?})", opts.window, opts.duration);
    }
    let s = soak_scenario(opts)?;
    let n = s.tenants.len();
    let device = Device::open(0).context("cannot open the GPU")?;
    s.check_memory(device.info().free_memory_bytes, false)?;
    let knees = if s.tenants.iter().any(|t| opts.mode.sharing.reads_profile_of(t)) {
        super::compare::knees(
            &s,
            &|t| opts.mode.sharing.reads_profile_of(t),
            std::path::Path::new("profiles"),
            Some(&opts.out.join("profiles")),
            device.info(),
            &mut Default::default(),
            &|m| eprintln!("{m}"),
        )?
    } else {
        Knees::default()
    };
    let windows = Windows::new(n);
    let labels: Vec<String> = s.tenants.iter().map(|t| t.label()).collect();
    std::fs::create_dir_all(&opts.out).with_context(|| format!("cannot create {}", opts.out.display()))?;
    let csv_path = opts.out.join("soak.csv");
    let nvml = nvml_wrapper::Nvml::init().ok();
    let rows: Mutex<Vec<WindowRow>> = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let watch = opts.launches.then(|| Arc::new(LaunchWatch::new(n)));
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            // The host's counters at the last window's end (at the first sample, for the first).
            let before = std::cell::Cell::new(HostTotals::now());
            windows.sample(
                opts.window,
                &done,
                || before.set(HostTotals::now()),
                |end_s| {
                    // A window that ends with the run or after it: the tenants may be freeing their
                    // models already (a run ends once every tenant has stopped, after the last window).
                    let running = !done.load(Ordering::Acquire) && end_s < opts.duration.as_secs_f64();
                    let mut at_end = Machine::default();
                    if running {
                        let now = HostTotals::now();
                        let then = before.replace(now);
                        at_end = Machine::at_end(&nvml, &then, &now);
                    }
                    let closed = windows.close(end_s, at_end);
                    let launches = watch.as_ref().map(|w| w.at(Instant::now()));
                    progress(&Progress { labels: &labels, rows: &closed, launches });
                    let mut rows = rows.lock();
                    rows.extend(closed);
                    // The CSV so far, so that a run stopped from outside keeps its windows.
                    if let Err(e) = std::fs::write(&csv_path, csv_file::csv(&labels, &rows)) {
                        eprintln!("rightsize: cannot write {}: {e}", csv_path.display());
                    }
                },
            )
        });
        let record = |t, x| windows.record(t, x);
        let launches = watch.clone().map(|w| Box::new(w) as Box<dyn TraceSink>);
        let r = inproc::run(
            device,
            &s,
            opts.mode,
            knees,
            RunOptions { sink: Some(&record), launches, ..RunOptions::default() },
        )
        .and_then(super::compare::in_process);
        done.store(true, Ordering::Release);
        r
    });
    let rows = rows.into_inner();
    Ok(SoakReport { labels, rows, error: result.err().map(|e| format!("{e:#}")) })
}

impl SoakReport {
    /// Draws `soak.svg` and `soak.png` into `dir`.
    pub fn plot(&self, dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut memory: Vec<(f64, Option<f64>, Option<f64>)> =
            self.rows.iter().map(|r| (r.end_s, r.rss_mib, r.gpu_used_mib)).collect();
        memory.dedup_by(|a, b| a.0 == b.0);
        let p99 = (0..self.labels.len())
            .map(|t| {
                let v = self.rows.iter().filter(|r| r.tenant == t).filter_map(|r| r.p99_ms.map(|p| (r.end_s, p)));
                (self.labels[t].clone(), v.collect())
            })
            .collect::<Vec<_>>();
        super::plots::soak_plot(&memory, &p99, dir)
    }
}

/// Parses a mode for `soak`: one process only.
pub fn soak_mode(name: &str) -> anyhow::Result<Mode> {
    one_process(name.parse()?)
}

/// `m`, if it runs in one process (a soak's tenants share one runtime).
fn one_process(m: Mode) -> anyhow::Result<Mode> {
    if m.sharing.is_multiprocess() {
        bail!("soak runs one-process modes (streams, static, krisp…), not {m}");
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn opts() -> SoakOptions {
        SoakOptions {
            duration: Duration::from_secs(1800),
            window: Duration::from_secs(60),
            mode: soak_mode("krisp").unwrap(),
            file: None,
            out: PathBuf::from("x"),
            launches: false,
        }
    }

    #[test]
    fn the_embedded_soak_has_eight_open_loop_tenants_of_both_kinds() {
        let s = soak_scenario(&opts()).unwrap();
        assert_eq!(s.tenants.len(), 8);
        assert!(s.tenants.iter().all(|t| t.rate.is_some() && t.queue_limit.is_some() && t.slo_ms.is_some()));
        assert!(
            s.tenants.iter().any(|t| t.model.starts_with("bert")) && s.tenants.iter().any(|t| t.model.contains("gpt"))
        );
        assert_eq!(s.duration_s, Some(1800.0));
        assert!(soak_mode("mps").is_err() && soak_mode("krisp-plan").is_ok());
        // The sanitizer's version: the same tenants, slower arrivals, shorter generations.
        let file = Some(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/soak-sanitize.toml")));
        let slow = soak_scenario(&SoakOptions { file, ..opts() }).unwrap();
        assert!(slow.tenants.iter().zip(&s.tenants).all(|(a, b)| a.model == b.model && a.rate < b.rate));
        assert!(slow.tenants.iter().zip(&s.tenants).all(|(a, b)| a.new_tokens <= b.new_tokens && a.new_tokens >= 2));
    }
}

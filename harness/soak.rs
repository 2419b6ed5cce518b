//! `rightsize soak`: one long run of many tenants (by default `scenarios/soak.toml`: eight
//! batch-1 encoders and decoders, open loop) under one mode, keeping per window of time only
//! what it reports — each tenant's requests, shed requests and p99, the process's resident
//! memory, the GPU's used memory, SM clock, temperature and processes, and what the host did
//! besides — so the run itself holds no more memory at the end than at the start. Writes
//! `soak.csv` (one row per window and tenant), `summary.md` (growth of both memories, each
//! tenant's p99 per window against its median window) and `soak.svg`/`.png`.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use parking_lot::Mutex;

use super::counters::{HostTotals, Machine};
use super::csv::{self, Table};
use super::inproc::{self, Knees, RunOptions};
use super::metrics::{Latency, Sample};
use super::scenario::{Mode, Scenario, ScenarioFile};
use crate::runtime::policy::TenantId;
use crate::runtime::{Device, LaunchRecord, TraceSink};

/// The embedded soak scenario.
pub const SOAK_SCENARIO: &str = include_str!("../scenarios/soak.toml");

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

/// One tenant's launches so far.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TenantLaunches {
    /// How many.
    pub count: u64,
    /// The last one's kernel and how long before the report it was issued.
    pub last: Option<(Cow<'static, str>, Duration)>,
}

/// Every tenant's launches, as the runtime tells them before issuing each
/// ([`TraceSink::issuing`]; so a launch that blocks is the last one even while it runs): a
/// count and the last one's kernel and time, behind a lock of the tenant's own (taken once per
/// launch, and by the reader once per window).
#[derive(Debug)]
pub struct LaunchWatch {
    tenants: Vec<Mutex<Watched>>,
}

/// One tenant's launches in a [`LaunchWatch`].
#[derive(Debug, Default, Clone)]
struct Watched {
    count: u64,
    last: Option<(Cow<'static, str>, Instant)>,
}

impl LaunchWatch {
    /// A watch of `tenants` tenants (ids `0..tenants`; launches of others are not counted).
    pub fn new(tenants: usize) -> LaunchWatch {
        LaunchWatch { tenants: (0..tenants).map(|_| Mutex::default()).collect() }
    }

    /// Every tenant's launches so far, their last one's age taken at `now`.
    pub fn at(&self, now: Instant) -> Vec<TenantLaunches> {
        self.tenants
            .iter()
            .map(|t| {
                let Watched { count, last } = t.lock().clone();
                TenantLaunches { count, last: last.map(|(k, at)| (k, now.saturating_duration_since(at))) }
            })
            .collect()
    }
}

impl TraceSink for LaunchWatch {
    fn launch(&self, _: &LaunchRecord) {}

    fn issuing(&self, tenant: TenantId, name: Cow<'static, str>) {
        if let Some(t) = self.tenants.get(tenant as usize) {
            let mut t = t.lock();
            t.count += 1;
            t.last = Some((name, Instant::now()));
        }
    }
}

/// One line of every tenant's launches: `INDEX LABEL: N launches, last KERNEL S s ago; …`.
pub fn launches_line(labels: &[String], launches: &[TenantLaunches]) -> String {
    let tenant = |(i, (label, l)): (usize, (&String, &TenantLaunches))| {
        let last =
            l.last.as_ref().map_or(String::new(), |(k, ago)| format!(", last {k} {:.0} s ago", ago.as_secs_f64()));
        format!("{i} {label}: {} launches{last}", l.count)
    };
    labels.iter().zip(launches).enumerate().map(tenant).collect::<Vec<_>>().join("; ")
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
                    if let Err(e) = std::fs::write(&csv_path, csv(&labels, &rows)) {
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

/// The open window of every tenant, and when the first sample came (the windows start then,
/// after the tenants' set-up).
struct Windows {
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
    fn new(tenants: usize) -> Windows {
        Windows { open: (0..tenants).map(|_| Mutex::new(Open::default())).collect(), started: OnceLock::new() }
    }

    /// A counted sample of `tenant` (from its thread; one short lock of its own window).
    fn record(&self, tenant: usize, x: Sample) {
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
    fn close(&self, end_s: f64, at_end: Machine) -> Vec<WindowRow> {
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
    fn sample(&self, window: Duration, done: &AtomicBool, begin: impl FnOnce(), mut close: impl FnMut(f64)) {
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

/// How far a window's p99 may stray from the run's median window before the soak calls it
/// unstable, as a share of the median: beyond it *and* beyond what the window's own samples can
/// resolve (its p99's confidence interval lies wholly outside the band).
pub const P99_BAND: f64 = 0.10;

/// The columns of `soak.csv`.
const CSV_HEADER: &str = "end_s,tenant,label,requests,shed,p50_ms,p99_ms,p99_lo_ms,p99_hi_ms,rss_mib,gpu_used_mib,\
                          sm_clock_mhz,temperature_c,max_ms,slowest_end_s,involuntary_switches,load1,other_cpu,steal_cpu,\
                          gpu_processes";

/// `soak.csv`: a row per window and tenant.
fn csv(labels: &[String], rows: &[WindowRow]) -> String {
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
    let count = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    let mut table = Table::new(CSV_HEADER);
    for r in rows {
        table.row(&[
            &format!("{:.1}", r.end_s),
            &r.tenant,
            &labels[r.tenant],
            &r.requests,
            &r.shed,
            &opt(r.p50_ms),
            &opt(r.p99_ms),
            &opt(r.p99_interval_ms.map(|i| i.0)),
            &opt(r.p99_interval_ms.map(|i| i.1)),
            &opt(r.rss_mib),
            &opt(r.gpu_used_mib),
            &opt(r.sm_clock_mhz),
            &opt(r.temperature_c),
            &opt(r.max_ms),
            &opt(r.slowest_end_s),
            &count(r.involuntary_switches),
            &opt(r.load1),
            &opt(r.other_cpu),
            &opt(r.steal_cpu),
            &count(r.gpu_processes.map(u64::from)),
        ]);
    }
    table.into_text()
}

/// Reads a `soak.csv` back (`what` names it in errors); the columns after `temperature_c`,
/// which earlier soaks did not write, may be missing.
pub fn read_csv(text: &str, what: &str) -> anyhow::Result<SoakReport> {
    let mut records = csv::records(text).into_iter();
    let header: Vec<String> = records.next().map(|(_, fields)| fields).unwrap_or_default();
    let at = |name: &str| header.iter().position(|h| *h == name);
    let required = ["end_s", "tenant", "label", "requests", "shed", "p99_ms"];
    if let Some(missing) = required.iter().find(|c| at(c).is_none()) {
        bail!("{what}: not a soak.csv (no column {missing})");
    }
    let mut labels: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let blank = |fields: &[String]| matches!(fields, [f] if f.trim().is_empty());
    for (line, fields) in records.filter(|(_, fields)| !blank(fields)) {
        if fields.len() != header.len() {
            bail!("{what}, line {line}: {} fields for {} columns", fields.len(), header.len());
        }
        let field = |name: &str| at(name).map(|i| fields[i].as_str()).filter(|f| !f.is_empty());
        // A column's value (`None`: empty or missing), or why it does not parse.
        fn parse<T: std::str::FromStr>(f: Option<&str>, at: impl Fn() -> String) -> anyhow::Result<Option<T>>
        where
            T::Err: std::error::Error + Send + Sync + 'static,
        {
            f.map(|f| f.parse::<T>().with_context(|| format!("{} {f:?}", at()))).transpose()
        }
        let num = |name: &str| parse::<f64>(field(name), || format!("{what}, line {line}: {name}"));
        let count = |name: &str| -> anyhow::Result<usize> {
            parse(field(name), || format!("{what}, line {line}: {name}"))?
                .with_context(|| format!("{what}, line {line}: no {name}"))
        };
        let switches =
            parse::<u64>(field("involuntary_switches"), || format!("{what}, line {line}: involuntary_switches"))?;
        let processes = parse::<u32>(field("gpu_processes"), || format!("{what}, line {line}: gpu_processes"))?;
        let tenant = count("tenant")?;
        let label = field("label").unwrap_or("").to_string();
        match labels.get(tenant) {
            Some(l) if *l != label => bail!("{what}, line {line}: tenant {tenant} is {l}, not {label}"),
            Some(_) => {}
            None if tenant == labels.len() => labels.push(label),
            None => bail!("{what}, line {line}: tenant {tenant} before tenant {}", labels.len()),
        }
        let end_s = num("end_s")?.with_context(|| format!("{what}, line {line}: no end_s"))?;
        rows.push(WindowRow {
            end_s,
            tenant,
            requests: count("requests")?,
            shed: count("shed")?,
            p99_ms: num("p99_ms")?,
            p99_interval_ms: num("p99_lo_ms")?.zip(num("p99_hi_ms")?),
            p50_ms: num("p50_ms")?,
            rss_mib: num("rss_mib")?,
            gpu_used_mib: num("gpu_used_mib")?,
            sm_clock_mhz: num("sm_clock_mhz")?,
            temperature_c: num("temperature_c")?,
            max_ms: num("max_ms")?,
            slowest_end_s: num("slowest_end_s")?,
            involuntary_switches: switches,
            load1: num("load1")?,
            other_cpu: num("other_cpu")?,
            steal_cpu: num("steal_cpu")?,
            gpu_processes: processes,
        });
    }
    if rows.is_empty() {
        bail!("{what}: no windows");
    }
    Ok(SoakReport { labels, rows, error: None })
}

impl SoakReport {
    /// `soak.csv`: a row per window and tenant.
    pub fn csv(&self) -> String {
        csv(&self.labels, &self.rows)
    }

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

    fn opts() -> SoakOptions {
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
    fn a_launch_watch_counts_each_tenants_launches_and_names_its_last() {
        let watch = Arc::new(LaunchWatch::new(2));
        let sink: Box<dyn TraceSink> = Box::new(watch.clone());
        sink.issuing(1, "layer_norm_f16".into());
        sink.issuing(1, "cublasLt".into());
        sink.issuing(5, "plan".into()); // not a tenant of the watch: not counted
        let later = Instant::now() + Duration::from_secs(3);
        let got = watch.at(later);
        assert_eq!(got[0], TenantLaunches::default());
        assert_eq!(got[1].count, 2);
        let (kernel, ago) = got[1].last.clone().unwrap();
        assert_eq!(kernel, "cublasLt");
        assert!((3.0..4.0).contains(&ago.as_secs_f64()), "{ago:?}");
        let labels = ["bert-base".to_string(), "gpt2-medium".to_string()];
        assert_eq!(
            launches_line(&labels, &got),
            "0 bert-base: 0 launches; 1 gpt2-medium: 2 launches, last cublasLt 3 s ago"
        );
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

    #[test]
    fn soak_csv_reads_back_and_bad_files_are_refused_with_their_line() {
        let row = |end_s: f64, tenant| WindowRow {
            end_s,
            tenant,
            requests: 700,
            shed: 0,
            p99_ms: Some(4.0 + tenant as f64),
            p99_interval_ms: Some((3.5, 4.5)),
            p50_ms: Some(1.25),
            rss_mib: Some(360.5),
            gpu_used_mib: Some(6128.812),
            sm_clock_mhz: Some(1980.0),
            temperature_c: Some(45.0),
            max_ms: Some(9.5),
            slowest_end_s: Some(end_s - 2.5),
            involuntary_switches: Some(12),
            load1: Some(1.25),
            other_cpu: Some(1.5),
            steal_cpu: Some(0.125),
            gpu_processes: Some(1),
        };
        let r = SoakReport {
            labels: vec!["bert-base".into(), "gpt2".into()],
            rows: vec![row(60.0, 0), row(60.0, 1), row(120.0, 0), row(120.0, 1)],
            error: None,
        };
        let back = read_csv(&r.csv(), "soak.csv").unwrap();
        assert_eq!((back.labels, back.rows), (r.labels.clone(), r.rows.clone()));
        // An earlier soak's file, without the last four columns, still reads.
        let old: String = r.csv().lines().map(|l| l.split(',').take(13).collect::<Vec<_>>().join(",") + "\n").collect();
        let back = read_csv(&old, "old.csv").unwrap();
        assert!(back.rows.iter().all(|w| w.max_ms.is_none() && w.load1.is_none() && w.p99_ms.is_some()));
        let err = |text: &str| format!("{:#}", read_csv(text, "f.csv").unwrap_err());
        assert!(err("a,b\n1,2\n").contains("f.csv: not a soak.csv (no column end_s)"));
        assert!(err(&r.csv().replace("700", "many")).contains("line 2: requests \"many\""));
        assert!(err(&r.csv().replacen(",1,gpt2,", ",1,bert,", 1)).contains("line 5: tenant 1 is bert, not gpt2"));
        assert!(
            err(&r.csv().replacen(",0,bert-base,", ",3,bert-base,", 1)).contains("line 2: tenant 3 before tenant 0")
        );
        assert!(err(&format!("{}60.0,0\n", r.csv())).contains("line 6: 2 fields for 20 columns"));
        assert!(err(CSV_HEADER).contains("no windows"));
        assert!(err(&r.csv().replacen(",12,", ",-1,", 1)).contains("line 2: involuntary_switches \"-1\""));
    }
}

//! A comparison: solo baselines, then every scenario under every mode, with progress bars;
//! results written after each run (JSON, CSV, Markdown), so an interrupted or failed run
//! loses nothing already measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};

use super::counters::{Counters, Sampler};
use super::drive::Outcome;
use super::inproc::{Knees, RunOptions};
use super::metrics::{RunMetrics, Sample, TenantMetrics};
use super::mps::{private_dir, MpsDaemon, Unavailable};
use super::pcie::Pressure;
use super::progress::Bars;
use super::results::{now_unix, unserved_line};
use super::results::{utc, Report, RunResult, SoloResult, Status, TenantResult};
use super::scenario::{Backend, Mode, Scenario, Sharing, TenantSpec};
use super::serve::{profile_model, profile_path, ModelSource};
use super::sweep::{self, SweepPoint, SweepTenant};
use super::trace::TracedRun;
use super::{inproc, output, trace, worker};
use crate::engine::ModelConfig;
use crate::profiler::{Options as ProfileOptions, Profile};
use crate::runtime::policy::PriorityClass;
use crate::runtime::Device;

/// How a comparison runs.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Modes, unless a scenario lists its own.
    pub modes: Vec<Mode>,
    /// Results directory.
    pub out: PathBuf,
    /// Where committed profiles are looked up (`<dir>/<gpu>/<model>-b<batch>-s<seq>.json`).
    pub profiles: PathBuf,
    /// The command line, recorded with the results.
    pub command: String,
    /// The program worker processes run (default: [`worker::worker_exe`]).
    pub worker: Option<PathBuf>,
    /// Write a timeline trace of the shared runs.
    pub trace: Option<TraceOptions>,
    /// An earlier comparison (its results.json or directory) on the same GPU whose solo
    /// baselines are taken instead of measured again; those it lacks are measured.
    pub solos_from: Option<PathBuf>,
    /// A comparison cut short (its results.json or directory) on the same GPU to go on from:
    /// its solo baselines, its shared runs that finished (judged by solo baselines taken too)
    /// and its sweep points that ran are taken, the rest run; refused into its own directory or
    /// with other `RIGHTSIZE_*` settings.
    pub resume_from: Option<PathBuf>,
}

/// Where a comparison writes its timeline trace.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// The trace file (Chrome trace-event JSON).
    pub path: PathBuf,
    /// The most GPU slices kept per run (per tenant in the multi-process modes).
    pub limit: usize,
}

/// Whether GPU counters are sampled during shared runs: unless `RIGHTSIZE_COUNTERS=off` (for
/// A/Bs of what sampling costs a run; the results then have no counters).
fn sampling() -> bool {
    std::env::var("RIGHTSIZE_COUNTERS").map_or(true, |v| v.trim() != "off")
}

/// How often GPU counters are sampled during shared runs.
const COUNTER_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

/// The knees and request curves of the models of `scenario`'s tenants that `needs` picks
/// (the others have none), from committed profiles under `profiles` or, where none matches
/// this GPU and build, profiled now (and saved under `save_to`, if given). `cache` keeps
/// profiles between calls; `note` is told what was profiled and why.
pub fn knees(
    scenario: &Scenario,
    needs: &dyn Fn(&TenantSpec) -> bool,
    profiles: &Path,
    save_to: Option<&Path>,
    info: &crate::runtime::DeviceInfo,
    cache: &mut BTreeMap<String, Profile>,
    note: &dyn Fn(&str),
) -> anyhow::Result<Knees> {
    let mut out = Knees::default();
    for t in &scenario.tenants {
        if !needs(t) {
            out.request_us.push(None);
            out.request_beside_us.push(None);
            out.request_knee_sms.push(None);
            continue;
        }
        let path = profile_path(profiles, &info.name, &t.model, t.batch, t.seq);
        let key = path.display().to_string();
        if !cache.contains_key(&key) {
            let loaded = Profile::load(&path).map_err(anyhow::Error::from).and_then(|p| {
                p.check(info)?;
                Ok(p)
            });
            let profile = match loaded {
                Ok(p) => p,
                Err(e) => {
                    note(&format!("no usable profile for {} ({e:#}); profiling it now", t.model));
                    let device = Device::open(0)?;
                    let source = ModelSource::Named(t.model.clone(), 1);
                    let p = profile_model(device, &source, t.batch, t.seq, ProfileOptions::default(), |_, _| {})?;
                    if let Some(dir) = save_to {
                        p.profile.save(&profile_path(dir, &info.name, &t.model, t.batch, t.seq))?;
                    }
                    p.profile
                }
            };
            cache.insert(key.clone(), profile);
        }
        let p = &cache[&key];
        p.add_to(&mut out.min_sms);
        out.request_us.push(Some(p.request_us(t.new_tokens)).filter(|c| !c.is_empty()));
        out.request_beside_us.push(Some(p.request_us_beside(t.new_tokens)).filter(|c| !c.is_empty()));
        out.request_knee_sms.push(p.request_knee_sms(t.new_tokens));
    }
    Ok(out)
}

/// What the worker processes of a run need: an environment per tenant, and the MPS daemon and
/// the directory (an empty pipe directory that keeps the workers off any other daemon, or the
/// interposer's) to remove after the run.
struct ProcessSetup {
    env: Vec<Vec<(String, String)>>,
    daemon: Option<MpsDaemon>,
    dir: Option<PathBuf>,
    aside: Option<super::torch::Alternating>,
}

fn process_setup(scenario: &Scenario, sharing: Sharing, exe: &Path) -> anyhow::Result<ProcessSetup> {
    let n = scenario.tenants.len() as u32;
    if !worker::under_mps(scenario, sharing) {
        // A pipe directory with no daemon in it: the workers never join a system-wide MPS.
        let empty = private_dir("no-mps")?;
        let env = vec![("CUDA_MPS_PIPE_DIRECTORY".to_string(), empty.display().to_string())];
        return Ok(ProcessSetup { env: vec![env; n as usize], daemon: None, dir: Some(empty), aside: None });
    }
    let placed = super::torch::placed_by_interposer(scenario, sharing)
        .then(|| super::torch::interposer_env(scenario, sharing, exe))
        .transpose()?;
    let daemon = MpsDaemon::start().inspect_err(|_| {
        if let Some(p) = &placed {
            let _ = std::fs::remove_dir_all(&p.dir);
        }
    })?;
    let mut env: Vec<Vec<(String, String)>> = scenario
        .mps_percentages()
        .into_iter()
        .map(|pct| {
            let mut env = daemon.client_env();
            if sharing == Sharing::MpsLimit {
                env.push(("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE".into(), pct.to_string()));
            }
            env
        })
        .collect();
    let aside = placed.as_ref().and_then(|p| p.aside);
    let dir = placed.map(|p| {
        for (e, more) in env.iter_mut().zip(p.env) {
            e.extend(more);
        }
        p.dir
    });
    Ok(ProcessSetup { env, daemon: Some(daemon), dir, aside })
}

/// Why `sharing` cannot run `s` on this host, if it cannot (checked before trying).
fn unavailable(s: &Scenario, sharing: Sharing, info: &crate::runtime::DeviceInfo) -> Option<String> {
    if worker::under_mps(s, sharing) && crate::runtime::mps_control_path().is_none() {
        return Some("nvidia-cuda-mps-control is not on PATH".into());
    }
    if !sharing.is_multiprocess() {
        if let crate::runtime::PartitionSupport::Unsupported { reason } = &info.partitions {
            return Some(format!("SM partitions are unavailable: {reason}"));
        }
    }
    None
}

/// Why `mode` is skipped for `s` in this comparison, if it is: the mode cannot run the
/// scenario's tenants, the host cannot run it, or an earlier MPS mode found no usable daemon
/// (`mps_broken`).
fn skip_reason(
    s: &Scenario,
    mode: Mode,
    info: &crate::runtime::DeviceInfo,
    mps_broken: &Option<String>,
) -> Option<String> {
    s.unsupported(mode)
        .or_else(|| unavailable(s, mode.sharing, info))
        .or_else(|| worker::under_mps(s, mode.sharing).then(|| mps_broken.clone()).flatten())
}

/// The knees `mode` reads for `scenario` ([`knees`], saved under the results directory), or
/// none for modes that read no profile.
fn mode_knees(
    mode: Mode,
    scenario: &Scenario,
    opts: &CompareOptions,
    info: &crate::runtime::DeviceInfo,
    cache: &mut BTreeMap<String, Profile>,
    note: &dyn Fn(&str),
) -> anyhow::Result<Knees> {
    let needs = |t: &TenantSpec| mode.sharing.reads_profile_of(t);
    if !scenario.tenants.iter().any(needs) {
        return Ok(Knees::default());
    }
    knees(scenario, &needs, &opts.profiles, Some(&opts.out.join("profiles")), info, cache, note)
}

/// Runs one scenario under one mode (worker processes run `worker_exe`, by default
/// [`worker::worker_exe`]) and returns each tenant's counted samples and, with `trace` (the
/// most GPU slices to keep), its timeline; `counted` counts the requests as they complete. The
/// krisp modes read `knees` (see [`knees`]).
pub fn run_one(
    worker_exe: Option<&Path>,
    scenario: &Scenario,
    mode: Mode,
    knees: Knees,
    trace: Option<usize>,
    counted: Arc<AtomicU64>,
) -> anyhow::Result<Outcome> {
    let exe = || match worker_exe {
        Some(p) => Ok(p.to_path_buf()),
        None => worker::worker_exe(),
    };
    match scenario.backend(mode) {
        Backend::Workers => {
            if let Some(why) = scenario.unsupported(mode) {
                bail!("{} cannot run {}: {why}", mode, scenario.name);
            }
            let exe = exe()?;
            let ProcessSetup { env, daemon, dir, aside } = process_setup(scenario, mode.sharing, &exe)?;
            let r = worker::run(&exe, scenario, mode, &env, trace, counted).map(|mut outcome| {
                // The interposer's processes wrote what they placed in its directory.
                if let (true, Some(dir)) = (super::torch::placed_by_interposer(scenario, mode.sharing), &dir) {
                    outcome.interposed = super::torch::read_logs(dir, scenario.tenants.len());
                }
                outcome.aside = aside.zip(outcome.started).map(|(a, started)| a.phases(started));
                outcome
            });
            let stopped = daemon.map(MpsDaemon::stop).transpose();
            if let Some(dir) = dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            let outcome = r?;
            stopped.context("stopping the MPS daemon")?;
            Ok(outcome)
        }
        Backend::Host => {
            // A kernel fault loses the process's context: the run goes on in a new process.
            let faulting = scenario.tenants.iter().find(|t| t.injects_kernel_fault());
            if let (Some(t), Some(_)) = (faulting, trace) {
                bail!("tenant {}: a kernel fault loses the context, which a trace cannot outlive", t.model);
            }
            super::host::run(&exe()?, scenario, mode, knees, counted)
        }
        Backend::InProcess => {
            let options = RunOptions { trace, counted, ..RunOptions::default() };
            in_process(inproc::run(Device::open(0)?, scenario, mode, knees, options)?)
        }
    }
}

/// A one-process run's outcome, refused when its context was lost: in this process no run
/// can go on (only a hosted run, [`super::host`], can).
pub fn in_process(out: Outcome) -> anyhow::Result<Outcome> {
    match &out.interrupted {
        Some(_) => {
            let why = out.failures.iter().flatten().next().cloned().unwrap_or_default();
            bail!("the GPU context was lost, and a run in this process cannot go on ({why})")
        }
        None => Ok(out),
    }
}

/// Tenant `i` of `of` alone, for its solo baseline: its own arrivals (closed loop, or its
/// rate with the seed it has in `of`), busy all the time, as long as `of` runs.
pub fn solo_scenario(of: &Scenario, i: usize) -> Scenario {
    let mut alone = of.tenants[i].clone();
    alone.phases = None;
    alone.fault = None;
    alone.class = PriorityClass::BestEffort;
    alone.arrival_seed = Some(of.arrival_seed(i));
    Scenario {
        name: format!("solo-{}", alone.model),
        description: String::new(),
        tenants: vec![alone],
        warmup: of.warmup,
        requests: of.requests,
        duration_s: of.duration_s,
        seed: of.seed,
        reserved_sms: 0,
        pcie: None,
        modes: None,
        sweep: None,
        sweep_duration_s: None,
        sweep_modes: None,
    }
}

/// What the progress bar expects of a mode's sweep before its search has run (about what
/// the default comparison's sweeps take).
const SWEEP_RUNS_GUESS: u64 = 5;

/// Runs one point of a sweep: the scenario at a [`sweep::Probe`], under a mode, with a label
/// for the progress bar; gives its tenants.
type RunPoint<'a> = dyn FnMut(&Scenario, Mode, &str) -> anyhow::Result<Vec<SweepTenant>> + 'a;

/// A sweep's point of a comparison resumed, where it has it: by mode, probe and label.
type TakenPoint<'a> = dyn Fn(&str, sweep::Probe, &str) -> Option<Vec<SweepTenant>> + 'a;

/// The load sweep of `s` under those of `modes` it sweeps, after its ordinary runs (in
/// `report`): per mode, the points its [`sweep::GoodputSearch`] asks for, the ordinary run as
/// repeat 0 of scale 1, each run by `run` (or, where `taken` has it, a point of a comparison
/// resumed; both get the point's label) and added to `report`, then `save`d. A mode whose ordinary run was skipped is not
/// swept; a point whose run failed meets nothing.
fn sweep_scenario(
    s: &Scenario,
    modes: &[Mode],
    report: &mut Report,
    run: &mut RunPoint<'_>,
    taken: &TakenPoint<'_>,
    note: &dyn Fn(&str),
    save: &dyn Fn(&Report) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let coarse = sweep::coarse_scales(s);
    for mode in sweep::swept_modes(s, modes) {
        let name = mode.to_string();
        let mut search = sweep::GoodputSearch::new(&coarse);
        while let Some(probe) = search.next() {
            let ordinary = probe == sweep::Probe { scale: 1.0, repeat: 0 };
            // The mode cannot run this sweep: said at this point, and the sweep ends.
            let end = |report: &mut Report, error: Option<String>| {
                report.sweeps.push(SweepPoint {
                    scenario: s.name.clone(),
                    mode: name.clone(),
                    scale: probe.scale,
                    repeat: probe.repeat,
                    tenants: Vec::new(),
                    error,
                });
                save(report)
            };
            let label = format!("{} ×{} #{} / {name}", s.name, sweep::scale_label(probe.scale), probe.repeat + 1);
            let (tenants, error) = if ordinary {
                match report.runs.iter().rev().find(|r| r.scenario == s.name && r.mode == name) {
                    Some(r) if matches!(r.status, Status::Skipped { .. }) => {
                        let error = status_line(&r.status);
                        end(report, error)?;
                        break;
                    }
                    Some(r) if r.tenants.len() == s.tenants.len() => {
                        (r.tenants.iter().map(|t| SweepTenant::of(&t.spec, &t.metrics)).collect(), None)
                    }
                    Some(r) => (
                        Vec::new(),
                        status_line(&r.status).or_else(|| Some("a tenant served none of its requests".into())),
                    ),
                    None => (Vec::new(), Some("no ordinary run".into())),
                }
            } else if let Some(tenants) = taken(&name, probe, &label) {
                (tenants, None)
            } else {
                match run(&sweep::at(s, probe), mode, &label) {
                    Ok(tenants) => (tenants, None),
                    Err(e) if e.downcast_ref::<SkippedPoint>().is_some() => {
                        // The mode cannot run here now (its ordinary run was taken from a
                        // comparison resumed, say): said once, the sweep ends, as a skipped
                        // ordinary run's does; its misses would be no measurement.
                        end(report, Some(format!("{e:#}")))?;
                        break;
                    }
                    Err(e) => {
                        note(&format!("{label} failed: {e:#}"));
                        (Vec::new(), Some(format!("{e:#}")))
                    }
                }
            };
            let point = SweepPoint {
                scenario: s.name.clone(),
                mode: name.clone(),
                scale: probe.scale,
                repeat: probe.repeat,
                tenants,
                error,
            };
            search.record(probe, point.meets());
            report.sweeps.push(point);
            save(report)?;
        }
    }
    Ok(())
}

/// The run of `s` under `mode` in the comparison `resumed`, where it finished and none of the
/// solo baselines it was judged by was `measured` again (so its ratios are to the same ones).
fn taken_run<'a>(resumed: Option<&'a Report>, s: &Scenario, mode: Mode, measured: &[String]) -> Option<&'a RunResult> {
    let judged_alike = (0..s.tenants.len()).all(|i| !measured.contains(&s.solo_key(i, mode.plan)));
    resumed.filter(|_| judged_alike)?.finished_run(s, &mode.to_string())
}

/// Why a sweep's point is not run under its mode here: the mode is skipped.
#[derive(Debug)]
struct SkippedPoint(String);

impl std::fmt::Display for SkippedPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skipped: {}", self.0)
    }
}

impl std::error::Error for SkippedPoint {}

/// What a run that did not go through says about itself.
fn status_line(status: &Status) -> Option<String> {
    match status {
        Status::Ok => None,
        Status::Skipped { reason } => Some(format!("skipped: {reason}")),
        Status::Failed { error } => Some(error.clone()),
    }
}

/// A sweep point's tenants from its run's samples; an error when a tenant served nothing
/// (it met no SLO).
fn sweep_tenants(at: &Scenario, samples: &[Vec<Sample>]) -> anyhow::Result<Vec<SweepTenant>> {
    at.tenants
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let counted = samples.get(i).map_or(&[][..], Vec::as_slice);
            let m = TenantMetrics::of(counted, None, spec.slo_ms)
                .with_context(|| format!("tenant {i}: {}", unserved_line(&spec.model, counted, None)))?;
            Ok(SweepTenant::of(spec, &m))
        })
        .collect()
}

/// Refuses to resume the comparison in `path` into `out` where its results are the ones this
/// comparison writes there (each save would drop what is not yet taken again).
fn not_into_itself(path: &Path, out: &Path) -> anyhow::Result<()> {
    // A results file not written yet is not it.
    anyhow::ensure!(
        !super::results::same_results_file(path, out),
        "--resume {} is the results directory this comparison writes: give it another --out (the comparison \
         resumed is read, not changed)",
        path.display()
    );
    Ok(())
}

/// The comparison `earlier` (read from `path`) to go on from, on `gpu` with `sms` SMs
/// ([`Report::resumable_on`]): refused where it ran with other `RIGHTSIZE_*` settings than this
/// one's `command` line (several change what runs).
fn resumable(earlier: Report, path: &Path, command: &str, gpu: &str, sms: u32) -> anyhow::Result<Report> {
    let earlier = earlier.resumable_on(path, gpu, sms)?;
    let (then, now) = (earlier.settings(), super::results::settings(command));
    anyhow::ensure!(
        then == now,
        "{} ran with {} and this comparison with {}: its runs would not be of these settings (set them as it \
         had them)",
        path.display(),
        if then.is_empty() { "no RIGHTSIZE_* settings".to_string() } else { then.join(" ") },
        if now.is_empty() { "none".to_string() } else { now.join(" ") }
    );
    Ok(earlier)
}

/// The earlier comparisons a comparison reads (their paths and results), as read before the
/// GPU is opened.
struct Earlier<'a> {
    /// `--solos`'s.
    solos: Option<(&'a Path, Report)>,
    /// `--resume`'s.
    resume: Option<(&'a Path, Report)>,
}

/// What can be checked of a comparison's paths before the GPU is opened and anything is
/// written: `--out` not a file, the trace not a directory (its directory is made where
/// missing), `--resume` not into `--out`, and the earlier comparisons (`--solos`, `--resume`)
/// read, each once (whether they ran on this GPU is checked once it is open). A bad path
/// otherwise surfaces only after the solo baselines have run, or leaves an empty results
/// directory behind.
fn check_paths(opts: &CompareOptions) -> anyhow::Result<Earlier<'_>> {
    anyhow::ensure!(
        !opts.out.exists() || opts.out.is_dir(),
        "--out {} is a file, not a results directory",
        opts.out.display()
    );
    if let Some(t) = &opts.trace {
        anyhow::ensure!(!t.path.is_dir(), "--trace {} is a directory: name the trace file", t.path.display());
    }
    if let Some(path) = &opts.resume_from {
        not_into_itself(path, &opts.out)?;
    }
    fn read<'a>(flag: &str, path: &'a Option<PathBuf>) -> anyhow::Result<Option<(&'a Path, Report)>> {
        let Some(p) = path.as_deref() else { return Ok(None) };
        Ok(Some((p, Report::load_from(p).with_context(|| format!("{flag} {}", p.display()))?)))
    }
    Ok(Earlier { solos: read("--solos", &opts.solos_from)?, resume: read("--resume", &opts.resume_from)? })
}

/// Runs every scenario under its modes, after the solo baselines they need.
pub fn compare(scenarios: &[Scenario], opts: &CompareOptions) -> anyhow::Result<Report> {
    let earlier = check_paths(opts)?;
    super::mps::install_interrupt_handler();
    let device = Device::open(0).context("cannot open the GPU")?;
    let info = device.info().clone();
    let modes_of = |s: &Scenario| s.modes.clone().unwrap_or_else(|| opts.modes.clone());
    for s in scenarios {
        let processes = modes_of(s).iter().any(|&m| s.backend(m) == Backend::Workers);
        s.check_memory(info.free_memory_bytes, processes)?;
    }
    std::fs::create_dir_all(&opts.out).with_context(|| format!("cannot create {}", opts.out.display()))?;

    let resumed = match earlier.resume {
        Some((path, r)) => Some(resumable(r, path, &opts.command, &info.name, info.sm_count)?),
        None => None,
    };
    let earlier = match (earlier.solos, &resumed) {
        (Some((path, r)), _) => r.solos_on(path, &info.name, info.sm_count)?,
        (None, Some(r)) => r.solos_that_ran(),
        (None, None) => Vec::new(),
    };
    let solo_jobs = solo_jobs(scenarios, &modes_of);
    let total = solo_jobs.len()
        + scenarios
            .iter()
            .map(|s| {
                let swept = if s.sweep.is_some() { sweep::swept_modes(s, &modes_of(s)).len() } else { 0 };
                modes_of(s).len() + swept * SWEEP_RUNS_GUESS as usize
            })
            .sum::<usize>();
    let bars = Bars::new(total as u64);
    let mut report = Report {
        gpu: info.name.clone(),
        sm_count: info.sm_count,
        driver: info.driver_release.clone(),
        date: utc(now_unix()),
        command: match &resumed {
            Some(r) => format!("{} (going on from: {})", opts.command, r.command),
            None => opts.command.clone(),
        },
        scenarios: scenarios.to_vec(),
        solo: Vec::new(),
        runs: Vec::new(),
        sweeps: Vec::new(),
    };
    let results = opts.out.join("results.json");
    let save = |report: &Report| -> anyhow::Result<()> {
        std::fs::write(&results, serde_json::to_string_pretty(report)? + "\n")
            .with_context(|| format!("cannot write {}", results.display()))
    };
    let started = Instant::now();

    // Solo baselines measured now: a resumed run judged without one is run again.
    let mut measured: Vec<String> = Vec::new();
    for (key, alone, mode) in &solo_jobs {
        if let Some(taken) = earlier.iter().find(|s| &s.key == key) {
            bars.track(&format!("solo {key}: taken from the earlier comparison"), 0, |_| ());
            report.solo.push(taken.clone());
            save(&report)?;
            continue;
        }
        if let Some(other) = other_length(key, &earlier) {
            bars.println(&format!(
                "solo {key}: the earlier comparison has it over another length ({other}); an open loop's \
                 baseline is of its own run's arrivals, so it is measured again"
            ));
        }
        let total = u64::from(alone.requests);
        let r = bars.track(&format!("solo {key}"), total, |c| {
            run_one(opts.worker.as_deref(), alone, *mode, Knees::default(), None, c)
        });
        let solo = match r {
            Ok(outcome) => SoloResult {
                key: key.clone(),
                status: Status::Ok,
                metrics: outcome.samples.first().and_then(|s| TenantMetrics::of(s, None, None)),
            },
            Err(e) => {
                bars.println(&format!("solo {key} failed: {e:#}"));
                SoloResult { key: key.clone(), status: Status::Failed { error: format!("{e:#}") }, metrics: None }
            }
        };
        report.solo.push(solo);
        save(&report)?;
        measured.push(key.clone());
    }

    let mut profiles = BTreeMap::new();
    let mut mps_broken: Option<String> = None;
    // The trace is written run by run, so a long comparison keeps none of it in memory.
    let mut trace_file = opts.trace.as_ref().map(|t| trace::TraceWriter::create(&t.path)).transpose()?;
    let trace_limit = opts.trace.as_ref().map(|t| t.limit);
    for s in scenarios {
        for mode in modes_of(s) {
            let label = format!("{} / {mode}", s.name);
            if let Some(done) = taken_run(resumed.as_ref(), s, mode, &measured) {
                bars.track(&format!("{label}: taken from the comparison resumed"), 0, |_| ());
                report.runs.push(done.clone());
                save(&report)?;
                continue;
            }
            let t0 = Instant::now();
            let skip = skip_reason(s, mode, &info, &mps_broken);
            let total = u64::from(s.requests) * s.tenants.len() as u64;
            let outcome: anyhow::Result<(Outcome, Option<f64>, Option<Counters>)> = match skip {
                Some(reason) => {
                    bars.track(&label, 0, |_| ());
                    report.runs.push(RunResult::without_tenants(
                        &s.name,
                        &mode.to_string(),
                        Status::Skipped { reason },
                        0.0,
                    ));
                    save(&report)?;
                    continue;
                }
                None => bars.track(&label, total, |counted| {
                    let mut knees = mode_knees(mode, s, opts, &info, &mut profiles, &|m| bars.println(m))?;
                    knees.solo_us = solo_means(&report, s, mode);
                    let pressure = s.pcie.map(|load| Pressure::start(&device, load)).transpose()?;
                    let sampler = sampling().then(|| Sampler::start(info.pci_bus_id.clone(), COUNTER_PERIOD));
                    let r = run_one(opts.worker.as_deref(), s, mode, knees, trace_limit, counted);
                    let counters = sampler.map(|sm| sm.stop(r.as_ref().ok().and_then(|o| o.started)));
                    let pcie = pressure.map(Pressure::stop).transpose()?.map(|p| p.gb_per_s);
                    r.map(|outcome| (outcome, pcie, counters))
                }),
            };
            let wall_s = t0.elapsed().as_secs_f64();
            let run = match outcome {
                Ok((mut outcome, pcie, counters)) => {
                    if let Some(w) = trace_file.as_mut() {
                        w.add(&TracedRun {
                            scenario: s.name.clone(),
                            mode: mode.to_string(),
                            tenants: s.tenants.iter().map(TenantSpec::label).collect(),
                            traces: std::mem::take(&mut outcome.traces),
                        })?;
                    }
                    finished_run(s, mode, outcome, pcie, counters, wall_s, &report)
                }
                Err(e) => {
                    let status = match e.downcast_ref::<Unavailable>() {
                        // No daemon here: this and every later MPS mode is skipped.
                        Some(why) => {
                            mps_broken = Some(why.0.clone());
                            Status::Skipped { reason: why.0.clone() }
                        }
                        None => Status::Failed { error: format!("{e:#}") },
                    };
                    if let Status::Failed { error } = &status {
                        bars.println(&format!("{label} failed: {error}"));
                    }
                    RunResult::without_tenants(&s.name, &mode.to_string(), status, wall_s)
                }
            };
            report.runs.push(run);
            save(&report)?;
        }
        if s.sweep.is_some() {
            // The search decides how many runs a sweep takes: the bar's total holds a guess.
            let guess = SWEEP_RUNS_GUESS * sweep::swept_modes(s, &modes_of(s)).len() as u64;
            // Points run or taken (each a step of the bar).
            let runs = std::cell::Cell::new(0);
            let step = || {
                runs.set(runs.get() + 1);
                if runs.get() > guess {
                    bars.runs.inc_length(1);
                }
            };
            let mut run_point = |at: &Scenario, mode: Mode, label: &str| {
                step();
                if let Some(reason) = skip_reason(at, mode, &info, &mps_broken) {
                    return Err(SkippedPoint(reason).into());
                }
                let total = u64::from(at.requests) * at.tenants.len() as u64;
                let outcome = bars.track(label, total, |counted| {
                    // (A sweep's scaled arrivals have no solo baseline of their own: the
                    // layout trial weighs by the curves there.)
                    let knees = mode_knees(mode, at, opts, &info, &mut profiles, &|m| bars.println(m))?;
                    run_one(opts.worker.as_deref(), at, mode, knees, None, counted)
                })?;
                sweep_tenants(at, &outcome.samples)
            };
            let taken = |mode: &str, probe: sweep::Probe, label: &str| {
                let point = resumed.as_ref()?.sweep_point(s, mode, probe)?;
                step();
                bars.track(&format!("{label}: taken from the comparison resumed"), 0, |_| ());
                Some(point.tenants.clone())
            };
            sweep_scenario(s, &modes_of(s), &mut report, &mut run_point, &taken, &|m| bars.println(m), &save)?;
            bars.runs.dec_length(guess.saturating_sub(runs.get()));
        }
    }
    bars.finish(format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    output::write_all(&report, &opts.out)?;
    if let (Some(t), Some(w)) = (&opts.trace, trace_file) {
        let stats = w.finish()?;
        bars.println(&format!(
            "trace: {} ({} GPU slices of {} tenant runs)",
            t.path.display(),
            stats.slices,
            stats.processes
        ));
    }
    Ok(report)
}

/// Each tenant's solo baseline's mean request time in `report`, µs (`None` where it has none):
/// what krisp's layout trial weighs each tenant's speed by (`KrispShare::with_solo_times`).
fn solo_means(report: &Report, s: &Scenario, mode: Mode) -> Vec<Option<f64>> {
    (0..s.tenants.len()).map(|i| report.solo(&s.solo_key(i, mode.plan)).map(|m| m.latency.mean * 1e3)).collect()
}

/// The key of an `earlier` baseline of the same tenant and arrivals as `key` over another
/// length of run (keys that differ in their length alone: `…/6s/…` against `…/150s/…`), which
/// `--solos` cannot take for it ([`Scenario::solo_key`]).
fn other_length<'a>(key: &str, earlier: &'a [SoloResult]) -> Option<&'a str> {
    let is_length = |part: &str| {
        part.strip_suffix("req").or_else(|| part.strip_suffix('s')).is_some_and(|n| n.parse::<f64>().is_ok())
    };
    let parts: Vec<&str> = key.split('/').collect();
    earlier.iter().map(|s| s.key.as_str()).find(|other| {
        let theirs: Vec<&str> = other.split('/').collect();
        let mut differ = parts.iter().zip(&theirs).filter(|(a, b)| a != b);
        theirs.len() == parts.len()
            && differ.next().is_some_and(|(a, b)| is_length(a) && is_length(b))
            && differ.next().is_none()
    })
}

/// The solo baselines the scenarios need: each distinct tenant, eager and as plans as its
/// modes need, alone on the whole device (one process, one stream; PyTorch tenants in their
/// process, eager), keyed by [`Scenario::solo_key`].
fn solo_jobs(scenarios: &[Scenario], modes_of: &dyn Fn(&Scenario) -> Vec<Mode>) -> Vec<(String, Scenario, Mode)> {
    let mut jobs: Vec<(String, Scenario, Mode)> = Vec::new();
    for s in scenarios {
        for plan in [false, true] {
            if !modes_of(s).iter().any(|m| m.plan == plan && s.unsupported(*m).is_none()) {
                continue;
            }
            let sharing = if s.is_torch() { Sharing::Timeslice } else { Sharing::Streams };
            for i in 0..s.tenants.len() {
                let key = s.solo_key(i, plan);
                if !jobs.iter().any(|(k, _, _)| k == &key) {
                    jobs.push((key, solo_scenario(s, i), Mode { sharing, plan }));
                }
            }
        }
    }
    jobs
}

/// The result of a run of `s` under `mode` that ended with `outcome`: each tenant's metrics
/// against its solo baseline in `report` (a tenant that served none of its counted requests
/// is a line in `unserved` instead), and the run's.
fn finished_run(
    s: &Scenario,
    mode: Mode,
    outcome: Outcome,
    pcie: Option<f64>,
    counters: Option<Counters>,
    wall_s: f64,
    report: &Report,
) -> RunResult {
    let mut failures = outcome.failures.into_iter();
    let mut duties = outcome.duties.into_iter();
    let mut interposed = outcome.interposed.into_iter();
    let mut unserved = Vec::new();
    let tenants: Vec<TenantResult> = s
        .tenants
        .iter()
        .zip(outcome.samples)
        .enumerate()
        .filter_map(|(i, (spec, samples))| {
            let failure = failures.next().flatten();
            let duty = duties.next().flatten();
            let interposed = interposed.next().flatten();
            let solo = report.solo(&s.solo_key(i, mode.plan));
            let Some(metrics) = TenantMetrics::of(&samples, solo, spec.slo_ms) else {
                unserved.push(unserved_line(&spec.label(), &samples, failure.as_deref()));
                return None;
            };
            let decoder = ModelConfig::named(&spec.model).map(|c| c.is_decoder()).unwrap_or(false);
            let shape = spec.shape(decoder);
            Some(TenantResult { spec: spec.clone(), shape, metrics, samples, failure, duty, interposed })
        })
        .collect();
    let metrics = RunMetrics::of(&tenants.iter().map(|t| (&t.metrics, t.spec.rate.is_none())).collect::<Vec<_>>());
    RunResult {
        scenario: s.name.clone(),
        mode: mode.to_string(),
        status: Status::Ok,
        wall_s,
        tenants,
        metrics,
        pcie_gb_per_s: pcie,
        counters,
        outages_s: outcome.outages_s,
        unserved,
        aside: outcome.aside,
        policy_notes: outcome.policy_notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traced_one_process_run_with_a_kernel_fault_is_refused_before_it_starts() {
        let text = "[[scenario]]\nname = \"f\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\n\
                    fault = { kind = \"kernel\", at = 3 }\n";
        let s = &crate::harness::ScenarioFile::parse(text, "t").unwrap().scenarios[0];
        let mode: Mode = "krisp".parse().unwrap();
        let e = run_one(Some(Path::new("/nonexistent")), s, mode, Knees::default(), Some(10), Arc::default());
        let e = e.unwrap_err().to_string();
        assert!(e.contains("a trace cannot outlive"), "{e}");
    }

    #[test]
    fn a_sweep_point_says_whether_a_tenant_counted_nothing_or_served_nothing() {
        let text = "[[scenario]]\nname = \"s\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nrate = 9.0\nslo_ms = 9.0\n";
        let s = &crate::harness::ScenarioFile::parse(text, "t").unwrap().scenarios[0];
        let none = sweep_tenants(s, &[Vec::new()]).unwrap_err().to_string();
        assert!(none.contains("tenant 0: gpt2: counted no requests"), "{none}");
        let failed = Sample { failed: true, ..Sample::served(0.0, 0.0, 0.1) };
        let e = sweep_tenants(s, &[vec![failed]]).unwrap_err().to_string();
        assert!(e.contains("served none of its counted requests (1 failed, 0 shed)"), "{e}");
        assert_eq!(sweep_tenants(s, &[vec![Sample::served(0.0, 0.0, 0.001)]]).unwrap().len(), 1);
    }

    #[test]
    fn a_solo_baseline_replays_the_tenants_own_arrivals() {
        let text = "[[scenario]]\nname = \"o\"\nseed = 5\nduration_s = 1.5\nrequests = 1000\n\
                    [[scenario.tenant]]\nmodel = \"gpt2\"\nbatch = 1\nrate = 100.0\n\
                    [[scenario.tenant]]\nmodel = \"gpt2\"\nbatch = 1\nrate = 100.0\n\
                    [[scenario.tenant]]\nmodel = \"bert-base\"\n";
        let s = &crate::harness::ScenarioFile::parse(text, "t").unwrap().scenarios[0];
        for i in 0..s.tenants.len() {
            let alone = solo_scenario(s, i);
            // The same arrivals, for as long, under the same key.
            assert_eq!(alone.arrival_seed(0), s.arrival_seed(i), "tenant {i}");
            assert_eq!((alone.warmup, alone.requests, alone.duration_s), (s.warmup, s.requests, s.duration_s));
            assert_eq!(alone.solo_key(0, true), s.solo_key(i, true), "tenant {i}");
        }
        // Two open-loop tenants of one model and rate draw different arrivals, so each has
        // a baseline of its own; a closed-loop tenant's key names its work only.
        assert_ne!(s.arrival_seed(0), s.arrival_seed(1));
        assert_ne!(s.solo_key(0, false), s.solo_key(1, false));
        assert_eq!(s.solo_key(2, false), "bert-base/b8/s128/n8/eager");
        // Another scenario with the tenant at another length is another baseline.
        let longer = Scenario { duration_s: Some(3.0), ..s.clone() };
        assert_ne!(longer.solo_key(0, false), s.solo_key(0, false));
        // …which a comparison taking earlier baselines names when it measures it again.
        let earlier = |keys: &[String]| -> Vec<SoloResult> {
            keys.iter().map(|k| SoloResult { key: k.clone(), status: Status::Ok, metrics: None }).collect()
        };
        let shorter = Scenario { duration_s: None, requests: 50, ..s.clone() };
        let had = earlier(&[s.solo_key(2, false), shorter.solo_key(0, false), s.solo_key(1, false)]);
        assert_eq!(other_length(&longer.solo_key(0, false), &had), Some(shorter.solo_key(0, false).as_str()));
        // Not another tenant's arrivals, another tenant, or the other way of issuing.
        assert_eq!(other_length(&longer.solo_key(1, false), &had), Some(s.solo_key(1, false).as_str()));
        assert_eq!(other_length(&longer.solo_key(0, true), &had), None);
        assert_eq!(other_length(&s.solo_key(2, true), &had), None);
        assert_eq!(other_length(&longer.solo_key(0, false), &earlier(&[s.solo_key(1, false)])), None);
    }

    #[test]
    fn a_sweep_runs_what_its_search_asks_for_with_the_ordinary_run_as_its_first() {
        let text = "[[scenario]]\nname = \"o\"\nduration_s = 1.5\nsweep_duration_s = 1.0\nsweep = [0.84, 1.2]\n\
                    modes = [\"mps\", \"krisp\", \"streams\"]\nsweep_modes = [\"krisp\", \"mps\"]\n\
                    [[scenario.tenant]]\nmodel = \"gpt2\"\nbatch = 1\nrate = 100.0\nslo_ms = 2.0\n";
        let s = crate::harness::ScenarioFile::parse(text, "t").unwrap().scenarios.remove(0);
        let samples: Vec<Sample> = (0..10).map(|i| Sample::served(i as f64, i as f64, i as f64 + 1e-3)).collect();
        let ok_run = |mode: &str| RunResult {
            scenario: "o".into(),
            mode: mode.into(),
            status: Status::Ok,
            wall_s: 2.0,
            tenants: vec![TenantResult {
                spec: s.tenants[0].clone(),
                shape: "1×128".into(),
                metrics: TenantMetrics::of(&samples, None, Some(2.0)).unwrap(),
                samples: samples.clone(),
                failure: None,
                duty: None,
                interposed: None,
            }],
            metrics: None,
            pcie_gb_per_s: None,
            counters: None,
            outages_s: Vec::new(),
            unserved: Vec::new(),
            aside: None,
            policy_notes: Vec::new(),
        };
        let skipped = RunResult {
            status: Status::Skipped { reason: "no MPS here".into() },
            tenants: Vec::new(),
            ..ok_run("mps")
        };
        let mut report = Report {
            gpu: "GPU".into(),
            sm_count: 132,
            driver: None,
            date: String::new(),
            command: String::new(),
            scenarios: vec![s.clone()],
            solo: Vec::new(),
            runs: vec![skipped, ok_run("krisp"), ok_run("streams")],
            sweeps: Vec::new(),
        };
        // krisp meets every SLO up to ×1.1 of the rate.
        let point = |at: &Scenario| {
            let rate = at.tenants[0].rate.unwrap();
            let p99_ms = if rate <= 110.0 { 1.0 } else { 3.0 };
            vec![SweepTenant {
                label: "gpt2".into(),
                rate: Some(rate),
                p99_ms,
                slo_ms: Some(2.0),
                slo_attainment: Some(1.0),
                throughput: rate,
            }]
        };
        let mut ran: Vec<(String, f64, Option<u64>, Option<f64>)> = Vec::new();
        let mut run = |at: &Scenario, mode: Mode, _: &str| {
            ran.push((mode.to_string(), at.tenants[0].rate.unwrap(), at.tenants[0].arrival_seed, at.duration_s));
            Ok(point(at))
        };
        let saves = std::cell::Cell::new(0);
        sweep_scenario(&s, &Mode::defaults(), &mut report, &mut run, &|_, _, _| None, &|_| (), &|_| {
            saves.set(saves.get() + 1);
            Ok(())
        })
        .unwrap();
        // mps was skipped: one point saying so, nothing run. krisp: the ordinary run, two more
        // at ×1, three at ×1.2 (missed), three at the midpoint ×1.095. streams is not swept.
        let points: Vec<(&str, String, u32, bool)> =
            report.sweeps.iter().map(|p| (p.mode.as_str(), sweep::scale_label(p.scale), p.repeat, p.meets())).collect();
        let want = [
            ("mps", "1", 0, false),
            ("krisp", "1", 0, true),
            ("krisp", "1", 1, true),
            ("krisp", "1", 2, true),
            ("krisp", "1.2", 0, false),
            ("krisp", "1.2", 1, false),
            ("krisp", "1.2", 2, false),
            ("krisp", "1.095", 0, true),
            ("krisp", "1.095", 1, true),
            ("krisp", "1.095", 2, true),
        ];
        let want: Vec<(&str, String, u32, bool)> =
            want.iter().map(|&(m, x, r, ok)| (m, x.to_string(), r, ok)).collect();
        assert_eq!(points, want);
        assert!(report.sweeps[0].error.as_deref().is_some_and(|e| e.contains("no MPS here")));
        assert_eq!(saves.get(), report.sweeps.len());
        // Every run besides the ordinary one: krisp, at the sweep's length, each repeat of a
        // scale on other arrivals.
        assert_eq!(ran.len(), 8);
        assert!(ran.iter().all(|r| r.0 == "krisp" && r.3 == Some(1.0)));
        assert_ne!(ran[0].2, Some(s.arrival_seed(0)), "repeat 1 draws other arrivals than the ordinary run");
        assert_ne!(ran[0].2, ran[1].2);
        assert_eq!((ran[2].1, ran[2].2), (120.0, Some(s.arrival_seed(0))), "repeat 0 of ×1.2: the ordinary seed");
        assert_eq!(sweep::goodput(&report.sweeps, "o", "krisp").map(|g| g.repeats), Some(3));
        // Cut short after the midpoint's first repeat and read back from its results: the points
        // that ran are taken (the midpoint's scale as the search computes it again), the search
        // goes on from there, and only the other two run.
        let cut = Report { sweeps: report.sweeps[..8].to_vec(), ..report.clone() };
        let resumed: Report = serde_json::from_str(&serde_json::to_string(&cut).unwrap()).unwrap();
        let mut again = Report { sweeps: Vec::new(), ..report.clone() };
        let mut reran = Vec::new();
        let mut run = |at: &Scenario, _: Mode, _: &str| {
            reran.push((sweep::scale_label(at.tenants[0].rate.unwrap() / 100.0), at.tenants[0].arrival_seed));
            Ok(point(at))
        };
        let taken =
            |mode: &str, probe: sweep::Probe, _: &str| resumed.sweep_point(&s, mode, probe).map(|p| p.tenants.clone());
        sweep_scenario(&s, &Mode::defaults(), &mut again, &mut run, &taken, &|_| (), &|_| Ok(())).unwrap();
        assert_eq!(again.sweeps, report.sweeps);
        let scales: Vec<&str> = reran.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(scales, ["1.095", "1.095"]);
        assert_eq!(reran[0].1, Some(sweep::repeat_seed(s.arrival_seed(0), 1)), "the midpoint's second repeat");
        // A mode skipped here now, whose ordinary run was taken: its sweep ends at the first
        // point it cannot run, said once (no misses that were never measured).
        let mut skipped = Report { sweeps: Vec::new(), ..report.clone() };
        let mut run = |_: &Scenario, _: Mode, _: &str| -> anyhow::Result<Vec<SweepTenant>> {
            Err(SkippedPoint("no MPS here now".into()).into())
        };
        sweep_scenario(&s, &Mode::defaults(), &mut skipped, &mut run, &|_, _, _| None, &|_| (), &|_| Ok(())).unwrap();
        let krisp: Vec<_> = skipped.sweeps.iter().filter(|p| p.mode == "krisp").collect();
        assert_eq!(krisp.len(), 2, "the ordinary run, then the point that said so");
        assert!(krisp[1].error.as_deref().is_some_and(|e| e.contains("no MPS here now")));
        assert_eq!(sweep::goodput(&skipped.sweeps, "o", "krisp"), None, "no goodput measured");
    }

    #[test]
    fn a_comparison_goes_on_only_into_another_directory_and_with_the_same_settings() {
        let r = Report {
            command: "RIGHTSIZE_TRIAL=off gpu-bin/rightsize compare --out a".into(),
            ..crate::harness::output::tests::report()
        };
        let dir = std::env::temp_dir().join(format!("rightsize-resume-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("results.json"), serde_json::to_string(&r).unwrap()).unwrap();
        let other = dir.join("again");
        std::fs::create_dir_all(&other).unwrap();
        let go_on = |out: &Path, command: &str| {
            not_into_itself(&dir, out)?;
            resumable(Report::load_from(&dir)?, &dir, command, &r.gpu, r.sm_count)
        };
        assert!(go_on(&other, "RIGHTSIZE_TRIAL=off rightsize compare --resume d").is_ok());
        // Into the directory it reads: refused (its results would be written over as they are taken).
        for same in [dir.clone(), dir.join("."), other.join("..")] {
            let e = go_on(&same, "RIGHTSIZE_TRIAL=off rightsize compare").unwrap_err().to_string();
            assert!(e.contains("another --out"), "{e}");
        }
        // With other settings, or none: refused, naming both.
        let e = go_on(&other, "RIGHTSIZE_TRIAL=on rightsize compare").unwrap_err().to_string();
        assert!(e.contains("RIGHTSIZE_TRIAL=off") && e.contains("RIGHTSIZE_TRIAL=on"), "{e}");
        assert!(go_on(&other, "rightsize compare").unwrap_err().to_string().contains("this comparison with none"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_run_is_taken_only_where_its_solo_baselines_were_taken_too() {
        let r = crate::harness::output::tests::report();
        let pair = r.scenarios[0].clone();
        let mps: Mode = "mps".parse().unwrap();
        assert!(taken_run(Some(&r), &pair, mps, &[]).is_some());
        assert!(taken_run(None, &pair, mps, &[]).is_none());
        // A baseline of one of its tenants measured again: run again, to be judged by it.
        assert!(taken_run(Some(&r), &pair, mps, &[pair.solo_key(1, false)]).is_none());
        // Another way of issuing's baseline: still taken.
        assert!(taken_run(Some(&r), &pair, mps, &[pair.solo_key(1, true)]).is_some());
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_795_000_000), "2026-11-18 11:06:40");
    }
}

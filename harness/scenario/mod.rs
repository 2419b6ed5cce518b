//! Scenarios: which tenants share the GPU, what each asks of it, and how the GPU is shared.
//!
//! A scenario file is TOML with one `[[scenario]]` table per scenario:
//!
//! ```toml
//! [[scenario]]
//! name = "lc-mix"
//! warmup = 10          # requests per tenant not counted (default 10); nobody counts until
//!                      # every tenant has issued its warm-up (an open loop whose warm-up
//!                      # takes, on average, the whole duration_s is refused)
//! requests = 100       # counted requests per tenant (default 100)
//! duration_s = 60      # optional: stop counting this long after the common start
//! seed = 1             # synthetic weights, token ids and arrivals (default 1)
//! reserved_sms = 32    # SMs only latency-critical tenants may use (krisp modes; default 0)
//! pcie = { threads = 4, mib = 64, level = 0.5 }   # optional background host↔device copies
//! sweep = [0.7, 0.84, 1.2]   # optional: a load sweep for the SLO goodput; its coarse rate
//!                      # scales (besides 1), refined to 10% steps around each mode's goodput
//!                      # (harness/sweep.rs says how; each point up to 3 runs)
//! sweep_duration_s = 1.0   # optional: how long each sweep run counts (default duration_s)
//! sweep_modes = ["krisp", "mps"]   # optional: the modes swept (default: all it runs under)
//!
//! [[scenario.tenant]]
//! model = "bert-base"  # a named model (engine::config::NAMED)
//! engine = "torch"     # optional: run it in PyTorch (transformers, random FP16 weights), a
//!                      # process per tenant; every tenant of the scenario then does, and it
//!                      # runs eagerly under timeslice, mps, mps-limit, static and krisp
//! batch = 8            # default 8
//! seq = 128            # tokens per sequence; the prompt of a decoder (default 128)
//! new_tokens = 8       # decoders: tokens generated per request (default 8)
//! class = "latency-critical"   # or "best-effort" (default)
//! slo_ms = 5.0         # optional latency objective
//! rate = 200.0         # optional: open loop, Poisson arrivals per second; else closed loop
//! quota_sms = 64       # optional: SMs guaranteed to it whenever it contends (krisp mode)
//! mps_percentage = 25  # optional: its MPS thread percentage under mps-limit; the tenants
//!                      # without one share what the others leave of 100, equally
//! memory_mib = 2048    # optional: its memory budget; refused if its model and workspace need more
//! queue_limit = 16     # optional, open loop: requests that may wait; more are shed and counted
//! phases = { busy_s = 0.5, idle_s = 0.5, offset_s = 0.0 }   # optional: a time-varying load
//! fault = { kind = "kernel", at = 200 }   # optional: inject a fault ("kernel", "oom" or
//!                      # "invalid") into its 200th request, warm-up included (fault isolation)
//! ```
//!
//! Modes are named `<sharing>` or `<sharing>-plan` (requests replayed from CUDA graphs):
//! see [`Sharing`].

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::results::FIGURE_LIMIT;
use crate::engine::{MemoryNeed, ModelConfig};
use crate::runtime::policy::PriorityClass;

/// The scenario set `rightsize compare` runs with no arguments.
pub const DEFAULT_SCENARIOS: &str = include_str!("../../scenarios/default.toml");

/// Where a run of a scenario under a mode runs ([`Scenario::backend`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A worker process per tenant: the multi-process modes, and every mode of PyTorch
    /// tenants (`harness/worker.rs`).
    Workers,
    /// One process, in a child the harness starts again after a kernel fault loses its
    /// context: the one-process modes of a scenario that injects a kernel fault
    /// (`harness/host.rs`).
    Host,
    /// One process, the harness's own (`harness/inproc.rs`).
    InProcess,
}

/// A scenario file: one or more scenarios.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// The scenarios, in file order.
    #[serde(rename = "scenario")]
    pub scenarios: Vec<Scenario>,
}

/// Tenants sharing the GPU and how long to run them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Unique name within its file.
    pub name: String,
    /// What it shows (printed with its results).
    #[serde(default)]
    pub description: String,
    /// The tenants.
    #[serde(rename = "tenant")]
    pub tenants: Vec<TenantSpec>,
    /// Requests per tenant run before counting; a tenant counts once every tenant has issued
    /// its warm-up (until then it goes on uncounted).
    #[serde(default = "default_warmup")]
    pub warmup: u32,
    /// Counted requests per tenant.
    #[serde(default = "default_requests")]
    pub requests: u32,
    /// Stop counting this many seconds after the common start, even if fewer requests
    /// completed.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Seed of synthetic weights, token ids and arrivals.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// SMs reserved for latency-critical tenants under the krisp modes.
    #[serde(default)]
    pub reserved_sms: u32,
    /// Background host↔device copies while the tenants run.
    #[serde(default)]
    pub pcie: Option<PcieLoad>,
    /// Modes to run it under unless the command line names some (then those; without
    /// either, the default set).
    #[serde(default)]
    pub modes: Option<Vec<Mode>>,
    /// The coarse rate scales of a load sweep (besides 1): the comparison searches them, and
    /// finer ones between, for each mode's SLO goodput ([`super::sweep`]).
    #[serde(default)]
    pub sweep: Option<Vec<f64>>,
    /// How long each run of the sweep counts, except the ordinary run at scale 1 (default:
    /// `duration_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_duration_s: Option<f64>,
    /// The modes the sweep runs, of those the scenario runs under (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep_modes: Option<Vec<Mode>>,
}

fn default_warmup() -> u32 {
    10
}
fn default_requests() -> u32 {
    100
}
fn default_seed() -> u64 {
    1
}
fn default_batch() -> u32 {
    8
}
fn default_seq() -> u32 {
    128
}
fn default_new_tokens() -> u32 {
    8
}

/// One tenant: a model instance and the requests it makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// A named model.
    pub model: String,
    /// What runs it: rightsize's engine (default), or PyTorch with transformers (`torch`: a
    /// worker process per tenant, [`Engine::Torch`]).
    #[serde(default, skip_serializing_if = "Engine::is_rightsize")]
    pub engine: Engine,
    /// Sequences per request.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// Tokens per sequence (a decoder's prompt).
    #[serde(default = "default_seq")]
    pub seq: u32,
    /// Tokens a decoder generates per request (the first by the prefill); ignored for encoders.
    #[serde(default = "default_new_tokens")]
    pub new_tokens: u32,
    /// Priority class.
    #[serde(default)]
    pub class: PriorityClass,
    /// Latency objective, ms.
    #[serde(default)]
    pub slo_ms: Option<f64>,
    /// Open loop at this many requests per second (Poisson arrivals); closed loop if absent.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Open loop: the seed of its arrivals (default: from the scenario's seed and the
    /// tenant's place, [`Scenario::arrival_seed`]). Solo baselines set it, so a tenant alone
    /// replays the arrivals it has in the shared run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_seed: Option<u64>,
    /// `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` under `mps-limit` (default: an equal share of what
    /// the tenants that set one leave, [`Scenario::mps_percentages`]).
    #[serde(default)]
    pub mps_percentage: Option<u32>,
    /// SMs of its partition under `static` (default: an equal share of the groups).
    #[serde(default)]
    pub static_sms: Option<u32>,
    /// SMs guaranteed to it whenever it contends under `krisp` (default: its part of what the
    /// other contending tenants' quotas leave, sized by the request curves; equal parts under
    /// `krisp-equal`).
    #[serde(default)]
    pub quota_sms: Option<u32>,
    /// Busy and idle phases (a time-varying load); busy all the time if absent.
    #[serde(default)]
    pub phases: Option<super::spec::Phases>,
    /// Its device-memory budget, MiB: the scenario is refused when its model's weights and
    /// workspace ([`TenantSpec::memory_need`]) need more.
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// Open loop: the most arrived requests waiting behind the one in service; more are shed
    /// (refused on arrival and counted). Unbounded if absent.
    #[serde(default)]
    pub queue_limit: Option<u32>,
    /// A fault injected into this tenant (tests of fault isolation): a kernel that faults, a
    /// request that runs out of memory, or an invalid request, at its `at`-th request.
    #[serde(default)]
    pub fault: Option<super::spec::FaultSpec>,
    /// A PyTorch tenant's application profile (`rightsize profile --app`): under `krisp` its
    /// interposer takes each launch's need from it (`RIGHTSIZE_PROFILE`), and the board sizes
    /// the busy processes' parts by those needs. A relative path is from the working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_profile: Option<std::path::PathBuf>,
    /// A PyTorch tenant whose interposer, under `krisp`, sizes each kernel its profile lacks
    /// (every kernel, without one) by an online fit of its latency against its SMs
    /// (`RIGHTSIZE_FIT=1`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub online_fit: bool,
}

impl TenantSpec {
    /// Whether its scenario makes one of its kernels fault, which loses its process's context.
    pub fn injects_kernel_fault(&self) -> bool {
        self.fault.is_some_and(|f| f.kind == super::spec::FaultKind::Kernel)
    }

    /// A label for tables: the model, with its class when latency-critical.
    pub fn label(&self) -> String {
        match self.class {
            PriorityClass::LatencyCritical => format!("{} (LC)", self.model),
            PriorityClass::BestEffort => self.model.clone(),
        }
    }

    /// What one request is, e.g. "8×128" or "8×128 +8".
    pub fn shape(&self, decoder: bool) -> String {
        if decoder {
            format!("{}×{} +{}", self.batch, self.seq, self.new_tokens)
        } else {
            format!("{}×{}", self.batch, self.seq)
        }
    }

    /// What one of its requests is, as a key: engine, model, batch, sequence, new tokens.
    fn work_key(&self) -> String {
        let engine = if self.engine == Engine::Torch { "torch:" } else { "" };
        format!("{engine}{}/b{}/s{}/n{}", self.model, self.batch, self.seq, self.new_tokens)
    }
}

/// What runs a tenant's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// rightsize's own engine and kernels.
    #[default]
    Rightsize,
    /// The model in PyTorch (Hugging Face transformers, random FP16 weights of the named
    /// architecture), in a Python worker process per tenant; under `static` and `krisp` its
    /// kernels are placed by the interposer (`librightsize_preload.so`).
    Torch,
}

impl Engine {
    /// Whether it is rightsize's own engine (the default, left out of files).
    pub fn is_rightsize(&self) -> bool {
        *self == Engine::Rightsize
    }
}

/// Host↔device copies from background threads (the PCIe-pressure study).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcieLoad {
    /// Copy threads, each with its own stream and pinned buffer.
    pub threads: u32,
    /// MiB per copy.
    #[serde(default = "default_pcie_mib")]
    pub mib: u32,
    /// Share of each thread's time spent copying, 0–1 (1: back to back).
    #[serde(default = "default_pcie_level")]
    pub level: f64,
}

fn default_pcie_mib() -> u32 {
    64
}
fn default_pcie_level() -> f64 {
    1.0
}

/// How tenants share the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sharing {
    /// A worker process per tenant, no MPS: the driver time-slices their contexts.
    Timeslice,
    /// A worker process per tenant under an MPS daemon the harness starts and stops.
    Mps,
    /// As `Mps`, each client limited by `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`.
    MpsLimit,
    /// One process, a stream per tenant on the whole device, no right-sizing.
    Streams,
    /// One process, a disjoint green-context partition per tenant.
    Static,
    /// One process; each kernel on its profiled minimum SMs, windows may overlap.
    KrispConserved,
    /// One process; each kernel on its profiled minimum SMs, never overlapping another tenant.
    KrispIsolated,
    /// One process; shares that follow the load: a tenant alone gets the whole device,
    /// contending tenants their quotas, and what the quotas leave split by the tenants'
    /// request curves (proportional fairness over their profiled speeds); idle tenants' SMs
    /// are lent out.
    Krisp,
    /// As `Krisp`, with what the quotas leave in equal parts (the curves size nothing).
    KrispEqual,
}

impl Sharing {
    /// Every sharing mode.
    pub const ALL: [Sharing; 9] = [
        Sharing::Timeslice,
        Sharing::Mps,
        Sharing::MpsLimit,
        Sharing::Streams,
        Sharing::Static,
        Sharing::KrispConserved,
        Sharing::KrispIsolated,
        Sharing::Krisp,
        Sharing::KrispEqual,
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Sharing::Timeslice => "timeslice",
            Sharing::Mps => "mps",
            Sharing::MpsLimit => "mps-limit",
            Sharing::Streams => "streams",
            Sharing::Static => "static",
            Sharing::KrispConserved => "krisp-conserved",
            Sharing::KrispIsolated => "krisp-isolated",
            Sharing::Krisp => "krisp",
            Sharing::KrispEqual => "krisp-equal",
        }
    }

    /// Whether each tenant runs in its own worker process.
    pub fn is_multiprocess(self) -> bool {
        matches!(self, Sharing::Timeslice | Sharing::Mps | Sharing::MpsLimit)
    }

    /// Whether it runs under an MPS daemon.
    pub fn uses_mps(self) -> bool {
        matches!(self, Sharing::Mps | Sharing::MpsLimit)
    }

    /// Whether it is one of the right-sizing modes (kernel by kernel, `krisp…`).
    pub fn is_krisp(self) -> bool {
        matches!(self, Sharing::KrispConserved | Sharing::KrispIsolated | Sharing::Krisp | Sharing::KrispEqual)
    }

    /// Whether the mode reads tenant `t`'s profile: kernels' knees (krisp-conserved,
    /// krisp-isolated), requests' curves (krisp sizes windows by them) or, under
    /// krisp-equal, the curve of a latency-critical tenant with a quota and an objective
    /// (whether its quota meets the objective). Never a PyTorch tenant's: the interposer reads
    /// no profile.
    pub fn reads_profile_of(self, t: &TenantSpec) -> bool {
        if t.engine == Engine::Torch {
            return false;
        }
        match self {
            Sharing::KrispConserved | Sharing::KrispIsolated | Sharing::Krisp => true,
            Sharing::KrispEqual => {
                t.class == PriorityClass::LatencyCritical && t.quota_sms.is_some() && t.slo_ms.is_some()
            }
            _ => false,
        }
    }
}

/// A sharing mode and how requests are issued: eager launches or plan replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mode {
    /// How the GPU is shared.
    pub sharing: Sharing,
    /// Requests replayed from CUDA graphs captured once.
    pub plan: bool,
}

impl Mode {
    /// The modes the default comparison runs: every baseline and `krisp` eager, and as plans
    /// every one of them that can replay plans (all but time slicing). The fixed-knee policies
    /// (`krisp-conserved`, `krisp-isolated`) and `krisp-equal` run when asked for.
    pub fn defaults() -> Vec<Mode> {
        let run = |plan| {
            Sharing::ALL
                .into_iter()
                .filter(|&s| !matches!(s, Sharing::KrispConserved | Sharing::KrispIsolated | Sharing::KrispEqual))
                .filter(move |&s| !(plan && s == Sharing::Timeslice))
                .map(move |sharing| Mode { sharing, plan })
        };
        run(false).chain(run(true)).collect()
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sharing.name())?;
        if self.plan {
            f.write_str("-plan")?;
        }
        Ok(())
    }
}

impl FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Mode> {
        let (base, plan) = match s.strip_suffix("-plan") {
            Some(b) => (b, true),
            None => (s, false),
        };
        match Sharing::ALL.iter().find(|m| m.name() == base) {
            Some(&sharing) => Ok(Mode { sharing, plan }),
            None if base == "krisp-curves" => {
                bail!("mode {s:?} is `krisp` since 2026-11-28 (the equal split it replaced is `krisp-equal`)")
            }
            None => {
                let known: Vec<&str> = Sharing::ALL.iter().map(|m| m.name()).collect();
                bail!("unknown mode {s:?}; modes are {} (each also as <mode>-plan)", known.join(", "))
            }
        }
    }
}

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether `x` may be a rate or a rate's scale: positive, within the results' figures
/// (±[`FIGURE_LIMIT`]), and so is the mean gap between arrivals it makes (a gap past it is no
/// run, and the first arrival would overflow a `Duration`).
fn rate_like(x: f64) -> bool {
    x.is_finite() && x > 0.0 && x <= FIGURE_LIMIT && 1.0 / x <= FIGURE_LIMIT
}

/// Parses a comma-separated list of modes ("all" and "default" name the default set, alone or
/// beside others), each once, in the order first named.
pub fn parse_modes(list: &str) -> anyhow::Result<Vec<Mode>> {
    let mut modes: Vec<Mode> = Vec::new();
    for name in list.split(',').map(str::trim) {
        let named = match name {
            "all" | "default" => Mode::defaults(),
            _ => vec![name.parse()?],
        };
        for m in named {
            if !modes.contains(&m) {
                modes.push(m);
            }
        }
    }
    // Never empty: an empty list is one empty name, which no mode has.
    Ok(modes)
}

impl ScenarioFile {
    /// Parses and checks a scenario file's text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<ScenarioFile> {
        let file: ScenarioFile =
            toml::from_str(text).with_context(|| format!("{origin}: not a valid scenario file"))?;
        file.validate().with_context(|| format!("{origin}: invalid scenario"))?;
        Ok(file)
    }

    /// Reads and checks a scenario file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<ScenarioFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The embedded default set.
    pub fn defaults() -> ScenarioFile {
        Self::parse(DEFAULT_SCENARIOS, "the default scenarios").expect("the embedded default scenarios are valid")
    }

    /// Checks every scenario; names must be unique.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.scenarios.is_empty() {
            bail!("no [[scenario]]");
        }
        let mut seen = std::collections::HashSet::new();
        for s in &self.scenarios {
            if !seen.insert(s.name.as_str()) {
                bail!("two scenarios are named {:?}", s.name);
            }
            s.validate().with_context(|| format!("scenario {:?}", s.name))?;
        }
        Ok(())
    }

    /// The scenarios whose names are listed (all if `names` is empty).
    pub fn select(&self, names: &[String]) -> anyhow::Result<Vec<Scenario>> {
        if names.is_empty() {
            return Ok(self.scenarios.clone());
        }
        names
            .iter()
            .map(|n| {
                self.scenarios.iter().find(|s| &s.name == n).cloned().with_context(|| {
                    let known: Vec<&str> = self.scenarios.iter().map(|s| s.name.as_str()).collect();
                    format!("no scenario {n:?}; known: {}", known.join(", "))
                })
            })
            .collect()
    }
}

impl Scenario {
    /// The seed of tenant `i`'s arrivals: its own `arrival_seed`, else one from the
    /// scenario's seed and its place.
    pub fn arrival_seed(&self, i: usize) -> u64 {
        self.tenants[i].arrival_seed.unwrap_or_else(|| self.seed.wrapping_mul(31).wrapping_add(i as u64))
    }

    /// The key of tenant `i`'s solo baseline: tenants with equal keys do the same work alone.
    /// An open-loop tenant's baseline is its own arrivals alone (rate, seed and the run's
    /// length), so throughput ÷ solo is 1 unless sharing makes it fall behind, and queueing
    /// behind its own requests is not counted as a cost of sharing.
    pub fn solo_key(&self, i: usize, plan: bool) -> String {
        let t = &self.tenants[i];
        let arrivals = t.rate.map_or(String::new(), |r| {
            let length = self.duration_s.map_or(format!("{}req", self.requests), |d| format!("{d}s"));
            format!("/r{r}/a{}/w{}/{length}", self.arrival_seed(i), self.warmup)
        });
        format!("{}{arrivals}/{}", t.work_key(), if plan { "plan" } else { "eager" })
    }

    /// Whether its tenants run in PyTorch ([`Engine::Torch`]).
    pub fn is_torch(&self) -> bool {
        self.tenants.iter().any(|t| t.engine == Engine::Torch)
    }

    /// Where a run of it under `mode` runs: the one place that chooses.
    pub fn backend(&self, mode: Mode) -> Backend {
        if mode.sharing.is_multiprocess() || self.is_torch() {
            Backend::Workers
        } else if self.tenants.iter().any(TenantSpec::injects_kernel_fault) {
            Backend::Host
        } else {
            Backend::InProcess
        }
    }

    /// Why `mode` cannot run this scenario, if it cannot: PyTorch tenants run eagerly, each
    /// in its process — under time slicing, MPS, MPS with limits, or MPS with the interposer
    /// placing their kernels (`static`, `krisp`).
    pub fn unsupported(&self, mode: Mode) -> Option<String> {
        if !self.is_torch() {
            return None;
        }
        if mode.plan {
            return Some("PyTorch tenants run eagerly (no plans)".into());
        }
        match mode.sharing {
            Sharing::Timeslice | Sharing::Mps | Sharing::MpsLimit | Sharing::Static | Sharing::Krisp => None,
            other => Some(format!("PyTorch tenants run as processes: {} is a one-process mode", other.name())),
        }
    }

    /// Counting starts once every tenant has issued its warm-up: refuses an open loop whose
    /// warm-up takes, on average, a whole run (the ordinary one, or a sweep's at its lowest
    /// scale and `sweep_duration_s`), which would leave every tenant nothing to count.
    fn check_warm_up(&self) -> anyhow::Result<()> {
        // (duration, rate scale, what ends): the ordinary run, and a sweep's slowest.
        let mut runs = vec![(self.duration_s, 1.0, "duration_s")];
        if let Some(scales) = &self.sweep {
            let lowest = scales.iter().copied().fold(1.0, f64::min);
            runs.push((self.sweep_duration_s.or(self.duration_s), lowest, "a sweep run"));
        }
        for (i, t) in self.tenants.iter().enumerate() {
            for &(d, scale, what) in &runs {
                let (Some(rate), Some(d)) = (t.rate, d) else { continue };
                let warm_s = f64::from(self.warmup) / (rate * scale);
                if warm_s >= d {
                    bail!(
                        "tenant {i} ({}) issues its {} warm-up requests at {}/s in about {warm_s:.2} s, no \
                         sooner than {what} ({d} s) ends: nothing would be counted (lower warmup, or raise \
                         rate or the duration)",
                        t.model,
                        self.warmup,
                        rate * scale
                    );
                }
            }
        }
        Ok(())
    }

    /// Checks the scenario: known models, positive sizes, sane rates and levels.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            bail!("name {:?} must be non-empty letters, digits, '-', '_' or '.'", self.name);
        }
        if self.tenants.is_empty() {
            bail!("no [[scenario.tenant]]");
        }
        if self.requests == 0 {
            bail!("requests must be at least 1");
        }
        if let Some(d) = self.duration_s {
            if !(d.is_finite() && d > 0.0) {
                bail!("duration_s = {d} must be positive");
            }
        }
        if let Some(p) = &self.pcie {
            if p.threads == 0 || p.mib == 0 || !(p.level > 0.0 && p.level <= 1.0) {
                bail!("pcie needs threads ≥ 1, mib ≥ 1 and 0 < level ≤ 1");
            }
        }
        for (i, t) in self.tenants.iter().enumerate() {
            t.validate().with_context(|| format!("tenant {i} ({})", t.model))?;
        }
        if self.is_torch() && self.tenants.iter().any(|t| t.engine != Engine::Torch) {
            bail!("PyTorch tenants share a scenario only with PyTorch tenants (engine = \"torch\" on every tenant)");
        }
        if self.is_torch() && self.pcie.is_some() {
            bail!("pcie is not supported with PyTorch tenants");
        }
        self.mps_share()?;
        if let Some(scales) = &self.sweep {
            if scales.is_empty() || !scales.iter().all(|&x| rate_like(x)) {
                bail!("sweep needs positive rate scales, from {:e} to {:e}", 1.0 / FIGURE_LIMIT, FIGURE_LIMIT);
            }
            if !self.tenants.iter().any(|t| t.rate.is_some() && t.slo_ms.is_some()) {
                bail!("sweep needs an open-loop tenant (rate) with an SLO (slo_ms)");
            }
        } else if self.sweep_duration_s.is_some() || self.sweep_modes.is_some() {
            bail!("sweep_duration_s and sweep_modes need a sweep (sweep = [scales])");
        }
        if let Some(d) = self.sweep_duration_s {
            if !(d.is_finite() && d > 0.0) {
                bail!("sweep_duration_s = {d} must be positive");
            }
        }
        if let Some(modes) = &self.modes {
            if modes.is_empty() {
                bail!("modes is empty: omit it to run the default set");
            }
            if let Some((_, m)) = modes.iter().enumerate().find(|(i, m)| modes[..*i].contains(m)) {
                bail!("modes names {m} twice: each mode runs once");
            }
        }
        if let Some(swept) = &self.sweep_modes {
            if swept.is_empty() {
                bail!("sweep_modes is empty: omit it to sweep every mode");
            }
            if let Some(m) = self.modes.as_ref().and_then(|run| swept.iter().find(|m| !run.contains(m))) {
                bail!("sweep_modes names {m}, which is not among the scenario's modes");
            }
        }
        self.check_warm_up()?;
        Ok(())
    }
}

impl Scenario {
    /// Each tenant's `CUDA_MPS_ACTIVE_THREAD_PERCENTAGE` under `mps-limit`: its own
    /// `mps_percentage`, and for the tenants without one an equal part of what those leave of
    /// 100 (the first ones get the remainder's extra points), so the limits add up to 100
    /// unless every tenant sets its own. The scenario is checked at load ([`Scenario::validate`]),
    /// so this cannot fail then.
    pub fn mps_percentages(&self) -> Vec<u32> {
        self.mps_share().unwrap_or_else(|_| vec![100u32.div_ceil(self.tenants.len().max(1) as u32); self.tenants.len()])
    }

    fn mps_share(&self) -> anyhow::Result<Vec<u32>> {
        let set: u32 = self.tenants.iter().filter_map(|t| t.mps_percentage).sum();
        let unset = self.tenants.iter().filter(|t| t.mps_percentage.is_none()).count() as u32;
        let named = || {
            let v: Vec<String> = self
                .tenants
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.mps_percentage.map(|p| format!("tenant {i} ({}) {p}%", t.model)))
                .collect();
            v.join(", ")
        };
        if set > 100 {
            bail!("mps_percentage adds up to {set}% over its tenants ({}); at most 100", named());
        }
        if unset > 0 && 100 - set < unset {
            bail!(
                "mps_percentage leaves {}% ({}) for {unset} tenant(s) without one: each needs at least 1%",
                100 - set,
                named()
            );
        }
        let left = 100 - set;
        let (each, extra) = (left.checked_div(unset).unwrap_or(0), left.checked_rem(unset).unwrap_or(0));
        let mut k = 0;
        Ok(self
            .tenants
            .iter()
            .map(|t| {
                t.mps_percentage.unwrap_or_else(|| {
                    k += 1;
                    each + u32::from(k <= extra)
                })
            })
            .collect())
    }
}

/// Device memory a CUDA context and the kernel images take, counted once per process
/// besides what the models need ([`MemoryNeed`]).
pub const CONTEXT_BYTES: u64 = 1 << 30;

impl Scenario {
    /// Refuses the scenario, before anything loads, when its tenants' models and workspaces
    /// (and a context per worker process under `processes`) would not fit in `free_bytes` of
    /// device memory; the message gives every tenant's numbers.
    pub fn check_memory(&self, free_bytes: u64, processes: bool) -> anyhow::Result<()> {
        let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
        let needs: Vec<MemoryNeed> = self.tenants.iter().map(TenantSpec::memory_need).collect::<anyhow::Result<_>>()?;
        let contexts = if processes { self.tenants.len() as u64 } else { 1 } * CONTEXT_BYTES;
        // Peaks: tenants may load at the same time (processes) or beside served ones.
        let total = needs.iter().map(MemoryNeed::peak).sum::<u64>() + contexts;
        if total <= free_bytes {
            return Ok(());
        }
        let each: Vec<String> = self
            .tenants
            .iter()
            .zip(&needs)
            .map(|(t, n)| {
                format!(
                    "{} {}: weights {:.2} GiB + workspace {:.2} GiB{}",
                    t.model,
                    t.shape(ModelConfig::named(&t.model).is_ok_and(|c| c.is_decoder())),
                    gib(n.weights),
                    gib(n.workspace),
                    if n.load > 0 { format!(" (+ {:.2} GiB while it loads)", gib(n.load)) } else { String::new() }
                )
            })
            .collect();
        bail!(
            "scenario {:?} needs {:.2} GiB of device memory ({}; {:.2} GiB for {} context{}), and the GPU has {:.2} GiB free",
            self.name,
            gib(total),
            each.join("; "),
            gib(contexts),
            contexts / CONTEXT_BYTES,
            if contexts > CONTEXT_BYTES { "s" } else { "" },
            gib(free_bytes)
        )
    }
}

impl TenantSpec {
    /// What its model and workspace take on the device (a decoder's workspace holds the
    /// prompt and every generated token).
    pub fn memory_need(&self) -> anyhow::Result<MemoryNeed> {
        let c = ModelConfig::named(&self.model)?;
        let positions = self.seq.saturating_add(if c.is_decoder() { self.new_tokens } else { 0 });
        Ok(MemoryNeed::of(&c, self.batch, positions))
    }

    /// Checks the tenant against its model's config.
    pub fn validate(&self) -> anyhow::Result<()> {
        let c = ModelConfig::named(&self.model)?;
        if self.batch == 0 || self.seq == 0 {
            bail!("batch and seq must be at least 1");
        }
        let positions = self.seq.saturating_add(if c.is_decoder() { self.new_tokens } else { 0 });
        if positions > c.max_positions {
            bail!("{} tokens exceed the model's {} positions", positions, c.max_positions);
        }
        if c.is_decoder() && self.new_tokens == 0 {
            bail!("a decoder tenant needs new_tokens ≥ 1");
        }
        // Both are written into the results, whose figures stay within ±FIGURE_LIMIT
        // (Report::check).
        if let Some(s) = self.slo_ms {
            if !(s.is_finite() && s > 0.0 && s <= FIGURE_LIMIT) {
                bail!("slo_ms = {s:?} must be positive and at most {FIGURE_LIMIT:e}");
            }
        }
        if let Some(r) = self.rate {
            if !rate_like(r) {
                bail!(
                    "rate = {r:?} must be positive, from {:e} to {FIGURE_LIMIT:e} (omit it for a closed loop)",
                    1.0 / FIGURE_LIMIT
                );
            }
        }
        if self.arrival_seed.is_some() && self.rate.is_none() {
            bail!("arrival_seed is the seed of an open loop's arrivals: it needs a rate");
        }
        if let Some(p) = self.mps_percentage {
            if !(1..=100).contains(&p) {
                bail!("mps_percentage = {p} must be 1–100");
            }
        }
        if let Some(p) = &self.phases {
            let ok = |x: f64| x.is_finite() && x >= 0.0;
            if !(ok(p.busy_s) && ok(p.idle_s) && ok(p.offset_s) && p.busy_s > 0.0) {
                bail!("phases need busy_s > 0, idle_s ≥ 0 and offset_s ≥ 0");
            }
        }
        if self.static_sms == Some(0) || self.quota_sms == Some(0) {
            bail!("static_sms and quota_sms must be positive");
        }
        if self.queue_limit.is_some() && self.rate.is_none() {
            bail!("queue_limit bounds an open loop's queue: it needs a rate");
        }
        if self.fault.is_some_and(|f| f.at == 0) {
            bail!("fault.at counts requests from 1");
        }
        if let Some(p) = &self.app_profile {
            if self.engine != Engine::Torch {
                bail!("app_profile sizes a PyTorch tenant's launches: it needs engine = \"torch\"");
            }
            if !p.is_file() {
                bail!("app_profile {} is not a file (make one with `rightsize profile --app`)", p.display());
            }
        }
        if self.online_fit && self.engine != Engine::Torch {
            bail!("online_fit sizes a PyTorch tenant's launches: it needs engine = \"torch\"");
        }
        if self.engine == Engine::Torch {
            // Their loop is the engine's (phases and queue limits included); faults and a memory
            // budget act on the engine's model, which they do not run.
            let unsupported = [(self.fault.is_some(), "fault"), (self.memory_mib.is_some(), "memory_mib")];
            if let Some((_, what)) = unsupported.iter().find(|(set, _)| *set) {
                bail!("{what} is not supported for PyTorch tenants (engine = \"torch\")");
            }
        }
        if let Some(budget) = self.memory_mib {
            let need = self.memory_need()?;
            let mib = |b: u64| b.div_ceil(1 << 20);
            if need.total() > budget.saturating_mul(1 << 20) {
                bail!(
                    "its model and workspace need {} MiB (weights {} MiB + workspace {} MiB for {}), over its budget of {budget} MiB",
                    mib(need.total()),
                    mib(need.weights),
                    mib(need.workspace),
                    self.shape(c.is_decoder()),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

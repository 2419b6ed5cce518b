//! The one-process modes: every tenant a thread with a scheduled tenant handle on one runtime
//! whose policy is the mode (plain streams, static partitions, the krisp policies).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::drive::{Gate, Interrupted, Interruption, Outcome, TenantState};
use super::fault::{context_lost, RequestFailed};
use super::metrics::Sample;
use super::scenario::{Mode, Scenario, Sharing};
use super::serve::Served;
use super::session::{self, Session, SessionOutcome};
use super::trace::TenantTrace;
use crate::runtime::policy::{Guard, KrispShare, Lending, PolicyKind, PolicySpec, Spill, TenantSpec, Topology};
use crate::runtime::sync::{AtomicU32, Condvar, Mutex, Ordering};
use crate::runtime::{Device, GroupRange, MinSms, Runtime, Tenant};

/// What the profiles of a scenario's tenants tell the krisp modes.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Knees {
    /// Every kernel's latency knee.
    pub min_sms: MinSms,
    /// Tenant `i`'s request time on each profiled SM count (`(sms, µs)`, ascending; on an
    /// otherwise idle device), where its profile has a request curve.
    pub request_us: Vec<Option<Vec<(u32, f64)>>>,
    /// The same beside a co-runner streaming memory on the rest of the device
    /// ([`crate::profiler::Profile::request_us_beside`]: where it ran, and the whole device).
    pub request_beside_us: Vec<Option<Vec<(u32, f64)>>>,
    /// Tenant `i`'s request's latency knee in SMs ([`crate::profiler::Profile::request_knee_sms`]).
    #[serde(default)]
    pub request_knee_sms: Vec<Option<u32>>,
    /// Tenant `i`'s solo baseline's mean request time, µs, where the comparison has it: what
    /// krisp's layout trial weighs its speed by.
    #[serde(default)]
    pub solo_us: Vec<Option<f64>>,
}

/// Why a tenant did not start: another tenant of the run failed to get ready.
#[derive(Debug, thiserror::Error)]
#[error("another tenant failed to start")]
struct CalledOff;

/// The gate of tenants in threads of one process.
pub(crate) struct ThreadGate<'a> {
    n: u32,
    arrived: Mutex<(u32, bool)>,
    cv: Condvar,
    t0: OnceLock<Instant>,
    done: AtomicU32,
    /// Tenants that have issued their warm-up.
    warmed: AtomicU32,
    /// When the run's context was found lost, seconds after the start: from then every loop
    /// stops where it stands.
    lost_at: OnceLock<f64>,
    /// Called by the last tenant to arrive, before the start: how long before now the common
    /// start lies (a resumed run's is the first run's), or why the run is called off.
    open: Option<Opener<'a>>,
    /// Counted requests of all tenants, for progress bars.
    pub(crate) counted: Arc<AtomicU64>,
    /// Tenants whose loops are over (see [`ThreadGate::leaving`]), and its waiters.
    left: Mutex<u32>,
    all_left: Condvar,
}

/// A tenant's part in the run's end: see [`ThreadGate::leaving`].
pub(crate) struct Leaving<'g, 'a> {
    gate: &'g ThreadGate<'a>,
    counted: bool,
}

impl Leaving<'_, '_> {
    /// Counts this tenant out and waits until every tenant is.
    pub(crate) fn wait_for_all(mut self) {
        self.count();
        let mut left = self.gate.left.lock();
        while *left < self.gate.n {
            left = self.gate.all_left.wait(left);
        }
    }

    fn count(&mut self) {
        if !std::mem::replace(&mut self.counted, true) {
            *self.gate.left.lock() += 1;
            self.gate.all_left.notify_all();
        }
    }
}

impl Drop for Leaving<'_, '_> {
    fn drop(&mut self) {
        self.count();
    }
}

/// See [`ThreadGate`]'s `open`.
pub type Opener<'a> = &'a (dyn Fn() -> anyhow::Result<Duration> + Sync);

impl std::fmt::Debug for ThreadGate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadGate({} tenants)", self.n)
    }
}

impl<'a> ThreadGate<'a> {
    pub(crate) fn new(n: u32, counted: Arc<AtomicU64>) -> ThreadGate<'a> {
        ThreadGate {
            n,
            arrived: Mutex::new((0, false)),
            cv: Condvar::new(),
            t0: OnceLock::new(),
            done: AtomicU32::new(0),
            warmed: AtomicU32::new(0),
            lost_at: OnceLock::new(),
            open: None,
            counted,
            left: Mutex::new(0),
            all_left: Condvar::new(),
        }
    }

    /// A tenant's way out of the run: it frees its model only once every tenant's loop is over
    /// ([`Leaving::wait_for_all`]). Freeing memory synchronizes the device, so a tenant freeing
    /// its model would stall the others' last requests; and under compute-sanitizer, whose
    /// launches block, a tenant's frees beside the others' launches hung the run (the launch
    /// never returned). Dropped without waiting (an early return, a panic), it still counts the
    /// tenant out, so nobody waits for it.
    pub(crate) fn leaving(&self) -> Leaving<'_, 'a> {
        Leaving { gate: self, counted: false }
    }

    /// Calls the run off before its start (a tenant could not get ready).
    pub(crate) fn fail(&self) {
        let mut a = self.arrived.lock();
        a.1 = true;
        self.done.fetch_add(1, Ordering::SeqCst);
        self.cv.notify_all();
    }

    /// Stops every loop where it stands: the context was lost (the first call says when).
    fn interrupt(&self) {
        let _ = self.lost_at.set(self.since_start());
    }
}

impl Gate for ThreadGate<'_> {
    fn start(&self) -> anyhow::Result<Instant> {
        let mut a = self.arrived.lock();
        a.0 += 1;
        if a.0 == self.n {
            match self.open.map_or(Ok(Duration::ZERO), |open| open()) {
                Ok(back) => {
                    let now = Instant::now();
                    let _ = self.t0.set(now.checked_sub(back).unwrap_or(now));
                }
                Err(e) => {
                    a.1 = true;
                    self.cv.notify_all();
                    return Err(e);
                }
            }
            self.cv.notify_all();
        }
        while a.0 < self.n && !a.1 {
            a = self.cv.wait(a);
        }
        if a.1 {
            return Err(CalledOff.into());
        }
        Ok(*self.t0.get().expect("set by the last arrival"))
    }
    fn finished(&self) {
        self.done.fetch_add(1, Ordering::SeqCst);
    }
    fn warm(&self) {
        self.warmed.fetch_add(1, Ordering::SeqCst);
    }
    fn all_warm(&self) -> bool {
        self.warmed.load(Ordering::SeqCst) >= self.n
    }
    fn stopped(&self) -> bool {
        self.done.load(Ordering::SeqCst) >= self.n
    }
    fn progress(&self, _: u32) {
        self.counted.fetch_add(1, Ordering::Relaxed);
    }
    fn interrupted(&self) -> bool {
        self.lost_at.get().is_some()
    }
    fn since_start(&self) -> f64 {
        self.t0.get().map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}

pub use crate::runtime::policy::equal_windows;

/// The static mode's windows: each tenant's `static_sms` (rounded up to groups), the others
/// an equal part of the groups left, side by side from group 0.
pub(crate) fn static_windows(s: &Scenario, groups: u32, granularity: u32) -> anyhow::Result<Vec<Option<GroupRange>>> {
    let topo = Topology { groups, granularity, rest_sms: 0 };
    let spec = PolicySpec { kind: PolicyKind::Static, ..policy_spec(s, &Knees::default()) };
    spec.static_windows(&topo).map_err(anyhow::Error::msg)
}

/// The shares of a krisp mode ([`PolicySpec::krisp_shares`]).
pub(crate) fn krisp_shares(s: &Scenario, sharing: Sharing, topo: &Topology, knees: &Knees) -> KrispShare {
    let kind = PolicyKind::Krisp { curves: sharing == Sharing::Krisp };
    PolicySpec { kind, ..policy_spec(s, knees) }.krisp_shares(topo)
}

/// The policy of a scenario's tenants as data, of kind [`PolicyKind::Full`] until set:
/// each tenant's class, quota, static window, objective and request curves.
fn policy_spec(s: &Scenario, knees: &Knees) -> PolicySpec {
    let curve = |curves: &[Option<Vec<(u32, f64)>>], i: usize| curves.get(i).cloned().flatten();
    // RIGHTSIZE_SPEEDS=idle|beside: krisp sizes windows by the request curves measured on an
    // idle device (the default) or beside a co-runner (the profile's `co_us`), for comparisons.
    let beside = env_setting(
        "RIGHTSIZE_SPEEDS",
        |v| matches!(v, "idle" | "beside").then_some(v == "beside"),
        false,
        "neither idle nor beside; krisp reads the idle curves",
    );
    let speeds = if beside { &knees.request_beside_us } else { &knees.request_us };
    let tenants = s
        .tenants
        .iter()
        .enumerate()
        .map(|(i, t)| TenantSpec {
            class: t.class,
            quota_sms: t.quota_sms,
            window_sms: t.static_sms,
            slo_ms: t.slo_ms,
            request_beside_us: curve(&knees.request_beside_us, i),
            request_us: curve(speeds, i),
            request_knee_sms: knees.request_knee_sms.get(i).copied().flatten(),
            solo_us: knees.solo_us.get(i).copied().flatten(),
        })
        .collect();
    // RIGHTSIZE_CLAIMS=1: latency-critical tenants of krisp claim their SMs, for comparisons
    // (as RIGHTSIZE_UNITS for the unit order).
    let claims = std::env::var("RIGHTSIZE_CLAIMS").is_ok_and(|v| v == "1");
    // RIGHTSIZE_GUARD=off|quota|knee: how krisp guards latency-critical windows where
    // contention comes and goes (knee, the default), for comparisons.
    let guard = env_setting(
        "RIGHTSIZE_GUARD",
        Guard::parse,
        Guard::default(),
        "none of off, quota, knee; krisp guards at the knee",
    );
    // RIGHTSIZE_HUSH=N: a best-effort request of krisp waits at its first launch and every
    // N-th after while a latency-critical request that is behind (it queued, or another
    // arrived behind it: the request loop says so) is in flight, for comparisons
    // (docs/harness-h200.md).
    let hush = env_setting(
        "RIGHTSIZE_HUSH",
        |v| v.parse::<u32>().ok(),
        0,
        "not a count of launches; best-effort work does not wait",
    );
    // RIGHTSIZE_TRIAL=off: krisp keeps its curves' layout for every set instead of trying
    // equal parts beside it and keeping the faster, for comparisons.
    let trial = env_setting(
        "RIGHTSIZE_TRIAL",
        |v| match v {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        },
        true,
        "neither on nor off; krisp tries its layouts",
    );
    // RIGHTSIZE_SPILL=whole|knee: where krisp runs a latency-critical tenant its quota does not
    // bound, beside others, for comparisons.
    let spill = env_setting(
        "RIGHTSIZE_SPILL",
        Spill::parse,
        Spill::default(),
        "neither whole nor knee; krisp runs unbounded latency-critical kernels on the whole device",
    );
    // RIGHTSIZE_LEND=neighbour|speeds: who krisp gives an idle latency-critical tenant's groups
    // to, for comparisons.
    let lending = env_setting(
        "RIGHTSIZE_LEND",
        Lending::parse,
        Lending::default(),
        "neither neighbour nor speeds; krisp lends to the neighbour",
    );
    PolicySpec {
        kind: PolicyKind::Full,
        tenants,
        reserved_sms: s.reserved_sms,
        claims,
        guard,
        hush,
        trial,
        spill,
        lending,
    }
}

/// The setting of environment variable `name` as `parse` reads it; `otherwise` where it is
/// unset, and, said on stderr with `why` (once a process and value: a comparison reads its
/// settings for every run), where `parse` cannot read it.
fn env_setting<T>(name: &str, parse: impl Fn(&str) -> Option<T>, otherwise: T, why: &str) -> T {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    match std::env::var(name) {
        Ok(v) => parse(&v).unwrap_or_else(|| {
            let line = format!("rightsize: {name}={v} is {why}");
            let mut said = SAID.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !said.contains(&line) {
                eprintln!("{line}");
                said.push(line);
            }
            otherwise
        }),
        Err(_) => otherwise,
    }
}

/// The policy kind of an in-process mode.
fn policy_kind(sharing: Sharing) -> anyhow::Result<PolicyKind> {
    Ok(match sharing {
        Sharing::Streams => PolicyKind::Full,
        Sharing::Static => PolicyKind::Static,
        Sharing::KrispConserved => PolicyKind::KrispConserved,
        Sharing::KrispIsolated => PolicyKind::KrispIsolated,
        Sharing::Krisp | Sharing::KrispEqual => PolicyKind::Krisp { curves: sharing == Sharing::Krisp },
        other => bail!("{} is not a one-process mode", other.name()),
    })
}

/// What a one-process run is given besides its scenario, mode and knees.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Trace the GPU work, keeping at most this many slices.
    pub trace: Option<usize>,
    /// Counted requests of all tenants, as they complete (for progress bars).
    pub counted: Arc<AtomicU64>,
    /// Hands each counted sample to it (tenant index, sample) instead of returning them.
    pub sink: Option<&'a (dyn Fn(usize, Sample) + Sync)>,
    /// Go on from an interrupted run: where each tenant stood ([`Outcome::interrupted`]).
    pub resume: Option<&'a [TenantState]>,
    /// Called once every tenant is ready: how long before now the common start lies (a
    /// resumed run: the first run's start), or why the run is called off.
    pub open: Option<Opener<'a>>,
    /// The runtime's trace sink ([`Runtime::set_trace`]): told of every launch before it is
    /// issued, and given each library kernel launch's record.
    pub launches: Option<Box<dyn crate::runtime::TraceSink>>,
}

impl std::fmt::Debug for RunOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("trace", &self.trace)
            .field("sink", &self.sink.is_some())
            .field("resume", &self.resume)
            .field("open", &self.open.is_some())
            .field("launches", &self.launches.is_some())
            .finish_non_exhaustive()
    }
}

/// Runs `s` under the one-process mode `mode`; returns each tenant's counted samples (or
/// hands them to `o.sink`) and, with `o.trace`, its timeline. `knees` holds what the profiles
/// say (the krisp modes read it).
///
/// When a kernel fault loses the context (the driver then refuses every CUDA call of this
/// process, a new context included), every tenant stops where it stands: a request that was
/// in flight is neither counted nor failed, except the faulting tenant's own, which fails. The
/// outcome then says where each tenant stood ([`Outcome::interrupted`]), for a new process to
/// go on from ([`RunOptions::resume`]; [`super::host`] does): the surviving tenants reload
/// their models there and resume their loops on the same clock, and a tenant whose kernel
/// faulted loads nothing and fails each of its later requests at once.
pub fn run(device: Device, s: &Scenario, mode: Mode, knees: Knees, mut o: RunOptions<'_>) -> anyhow::Result<Outcome> {
    let topo = match device.info().partitions.topology() {
        Ok(topo) => topo,
        Err(reason) => bail!("SM partitions are unavailable: {reason}"),
    };
    let groups = topo.groups;
    let n = s.tenants.len() as u32;
    if let Some(r) = o.resume.filter(|r| r.len() != s.tenants.len()) {
        bail!("cannot resume {} tenants in a scenario of {n}", r.len());
    }
    if o.trace.is_some() || s.pcie.is_some() {
        if let Some(t) = s.tenants.iter().find(|t| t.injects_kernel_fault()) {
            bail!(
                "tenant {}: a kernel fault loses the context, which traces and PCIe pressure cannot outlive",
                t.model
            );
        }
    }
    let spec = PolicySpec { kind: policy_kind(mode.sharing)?, ..policy_spec(s, &knees) };
    let policy = spec.build(&topo).map_err(anyhow::Error::msg)?;
    // Plan sets: tenant i replays on the whole device when no other tenant has work in flight,
    // else within a window the policy can give it beside others.
    let windows: Vec<Vec<GroupRange>> = (0..n).map(|i| policy.plan_windows(i, n, groups)).collect();
    let rt = Arc::new(Runtime::with_policy(device, policy, knees.min_sms.clone(), n).context("making the runtime")?);
    if let Some(limit) = o.trace {
        rt.start_timeline(limit)?;
    }
    if let Some(sink) = o.launches.take() {
        rt.set_trace(sink)?;
    }
    let pressure = match s.pcie {
        Some(load) => Some(super::pcie::Pressure::start(rt.device(), load)?),
        None => None,
    };
    let mut gate = ThreadGate::new(n, o.counted.clone());
    gate.open = o.open;
    let sink = o.sink;
    let reports = !std::env::var("RIGHTSIZE_PRESSURE").is_ok_and(|v| v == "0");
    let results: Vec<anyhow::Result<TenantOutcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = s
            .tenants
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let (gate, windows, rt) = (&gate, &windows[i], &rt);
                let from = o.resume.map(|r| r[i].clone());
                scope.spawn(move || -> anyhow::Result<TenantOutcome> {
                    let leaving = gate.leaving();
                    let load = || -> anyhow::Result<(Tenant, Served)> {
                        let mut t = Tenant::scheduled(rt.clone(), i as u32, spec.class)?;
                        // Each tenant with an SLO (finite and positive: the scenario's checks)
                        // has krisp measure its pressure from its requests' latencies
                        // (`Tenant::observe`, which every tenant's requests reach);
                        // RIGHTSIZE_PRESSURE=0 turns the pressure off (docs/harness-h200.md).
                        if let Some(slo) = spec.slo_ms.filter(|_| reports) {
                            t = t.with_slo(std::time::Duration::from_secs_f64(slo / 1e3));
                        }
                        let mut served = Served::load(&t, spec, s.seed + i as u64)?;
                        if mode.plan {
                            served.capture(&t, mode.sharing.is_krisp().then_some(windows.as_slice()))?;
                        }
                        Ok((t, served))
                    };
                    let mut session = match Session::new(spec, from, o.trace.is_some(), load) {
                        Ok(session) => session,
                        Err(e) => {
                            gate.fail();
                            return Err(e.context(format!("tenant {i} ({})", spec.model)));
                        }
                    };
                    let loop_spec = session::loop_spec(spec, s.warmup, s.requests, s.arrival_seed(i), s.duration_s);
                    let tenant_sink = move |x: Sample| sink.into_iter().for_each(|f| f(i, x));
                    let sink_i: Option<super::drive::Sink<'_>> = sink.map(|_| &tenant_sink as super::drive::Sink<'_>);
                    let r = session.drive(
                        &loop_spec,
                        gate,
                        sink_i,
                        // Waiting at the start for the others to load was not idleness between
                        // its requests.
                        |t| {
                            t.restart_duty();
                            // Where the policy hushes, its requests do from now on (not
                            // while the tenants load).
                            t.hush_while_serving(true);
                        },
                        |e, faults| match e {
                            // Lost, or failing (a library call's status) after another tenant saw it lost.
                            e if context_lost(&e) || gate.interrupted() => {
                                gate.interrupt();
                                match faults.stopped() {
                                    // Its own kernel faulted: that request failed.
                                    true => RequestFailed::from_error(&e, true).into(),
                                    // Another's did: the next process issues this one again.
                                    false => Interrupted.into(),
                                }
                            }
                            e => e,
                        },
                    );
                    let duty = session.tenant().map(|t| t.duty());
                    // A request that ended in an error may have left its words set: clear them
                    // now rather than at the watchdog's limit (an error here means the context
                    // is gone, and the others' work with it).
                    if let Some(t) = session.tenant() {
                        t.hush_while_serving(false);
                    }
                    leaving.wait_for_all();
                    drop(session.unload());
                    let (samples, position) = r.with_context(|| format!("tenant {i} ({})", spec.model))?;
                    Ok(TenantOutcome { samples, duty, session: session.end(position) })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a tenant thread panicked"))))
            .collect()
    });
    if let Some(p) = pressure {
        p.stop()?;
    }
    // The first real error, not a tenant that was merely called off.
    let mut ran = Vec::with_capacity(results.len());
    let mut called_off = None;
    for r in results {
        match r {
            Ok(x) => ran.push(x),
            Err(e) if e.downcast_ref::<CalledOff>().is_some() => called_off = Some(e),
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = called_off {
        return Err(e);
    }
    let mut out = Outcome { started: gate.t0.get().copied(), ..Outcome::default() };
    out.first_served = ran.iter().map(|r| r.session.first_served).collect();
    let mut spans = Vec::with_capacity(ran.len());
    let mut states = Vec::with_capacity(ran.len());
    for r in ran {
        out.samples.push(r.samples);
        spans.push(r.session.spans);
        out.failures.push(r.session.failure);
        out.duties.push(r.duty);
        states.push(r.session.state);
    }
    out.policy_notes = rt.scheduler().map(|s| s.policy_notes()).unwrap_or_default();
    if let Some(&at_s) = gate.lost_at.get() {
        out.interrupted = Some(Interruption { at_s, tenants: states });
        return Ok(out);
    }
    if let Some(tl) = rt.timeline() {
        let (slices, dropped) = tl.take()?;
        out.traces = spans.into_iter().map(|requests| TenantTrace { requests, ..TenantTrace::default() }).collect();
        for s in slices {
            if let Some(t) = out.traces.get_mut(s.tenant as usize) {
                t.slices.push(s);
            }
        }
        // Dropped launches are not attributed to tenants; the first carries the count.
        if let Some(first) = out.traces.first_mut() {
            first.dropped = dropped;
        }
    }
    Ok(out)
}

/// What one tenant thread of [`run`] gives back.
struct TenantOutcome {
    samples: Vec<Sample>,
    duty: Option<f64>,
    session: SessionOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::scenario::ScenarioFile;

    #[test]
    fn a_failed_tenant_calls_the_others_off() {
        let gate = ThreadGate::new(2, Arc::default());
        gate.fail();
        let e = gate.start().map_err(|e| e.context("tenant 1 (gpt2)")).unwrap_err();
        assert!(e.downcast_ref::<CalledOff>().is_some(), "{e:#}");
    }

    #[test]
    fn a_tenant_leaves_once_every_tenant_has_left_or_gone() {
        let gate = ThreadGate::new(3, Arc::default());
        let order = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            s.spawn(|| {
                gate.leaving().wait_for_all();
                order.lock().push("waited");
            });
            std::thread::sleep(Duration::from_millis(50));
            order.lock().push("one gone");
            // A tenant that returns early (its model failed to load) counts out unwaited.
            drop(gate.leaving());
            std::thread::sleep(Duration::from_millis(50));
            order.lock().push("last leaving");
            gate.leaving().wait_for_all();
        });
        assert_eq!(*order.lock(), vec!["one gone", "last leaving", "waited"]);
    }

    #[test]
    fn equal_windows_cover_the_groups() {
        let w = equal_windows(15, 4);
        assert_eq!(w.iter().map(|w| w.count).collect::<Vec<_>>(), vec![4, 4, 4, 3]);
        assert_eq!(w[3].end(), 15);
        assert!(w.windows(2).all(|p| p[0].end() == p[1].first));
        assert_eq!(equal_windows(2, 4).len(), 2);
    }

    #[test]
    fn static_windows_honour_fixed_sizes() {
        let text = "[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nstatic_sms = 40\n\
                    [[scenario.tenant]]\nmodel = \"gpt2\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\n";
        let s = &ScenarioFile::parse(text, "t").unwrap().scenarios[0];
        let w: Vec<GroupRange> = static_windows(s, 15, 8).unwrap().into_iter().flatten().collect();
        assert_eq!(w[0], GroupRange { first: 0, count: 5 });
        assert_eq!((w[1].count, w[2].count, w[2].end()), (5, 5, 15));
        assert!(static_windows(s, 6, 8).is_err());
    }
}

/// Model checks (`RUSTFLAGS="--cfg loom" cargo test --lib loom_`): the gate under every
/// interleaving of its tenant threads.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc as LoomArc;

    fn bounded() -> loom::model::Builder {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b
    }

    /// A tenant that fails to get ready calls the run off: a tenant waiting at the gate is let
    /// go with an error, never left waiting.
    #[test]
    fn loom_a_failed_tenant_releases_the_gate() {
        bounded().check(|| {
            let gate = LoomArc::new(ThreadGate::new(2, Arc::default()));
            let g = gate.clone();
            let waiting = loom::thread::spawn(move || g.start().is_err());
            let g = gate.clone();
            let failing = loom::thread::spawn(move || g.fail());
            failing.join().unwrap();
            assert!(waiting.join().unwrap(), "called off");
            assert!(gate.stopped() || gate.done.load(Ordering::SeqCst) == 1);
        });
    }

    /// No tenant waiting to leave is left waiting, whether the other waits too or returns early.
    #[test]
    fn loom_every_tenant_gets_out() {
        bounded().check(|| {
            let gate = LoomArc::new(ThreadGate::new(2, Arc::default()));
            let g = gate.clone();
            let waiting = loom::thread::spawn(move || g.leaving().wait_for_all());
            let g = gate.clone();
            let other = loom::thread::spawn(move || drop(g.leaving()));
            other.join().unwrap();
            waiting.join().unwrap();
        });
    }

    /// Every tenant ready: all pass the gate with the same start.
    #[test]
    fn loom_the_gate_opens_once_every_tenant_arrived() {
        bounded().check(|| {
            let gate = LoomArc::new(ThreadGate::new(2, Arc::default()));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let g = gate.clone();
                    loom::thread::spawn(move || g.start().unwrap())
                })
                .collect();
            let starts: Vec<Instant> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            assert_eq!(starts[0], starts[1]);
        });
    }
}

//! The one-process modes: every tenant a thread with a scheduled tenant handle on one runtime
//! whose policy is the mode (plain streams, static partitions, the krisp policies).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::{bail, Context as _};

use super::drive::{drive_into, Gate, LoopSpec, Outcome};
use super::fault::{context_lost, FaultKind, Faults, RequestFailed};
use super::metrics::Sample;
use super::scenario::{Mode, Scenario, Sharing};
use super::serve::Served;
use super::trace::{RequestSpan, Spans, TenantTrace};
use crate::runtime::policy::{
    Full, KrispConserved, KrispIsolated, KrispShare, Policy, Prioritized, PriorityClass, Share, Speeds, Static,
    Topology,
};
use crate::runtime::sync::{AtomicU32, Condvar, Mutex, MutexGuard, Ordering};
use crate::runtime::{Device, GroupRange, MinSms, Runtime, Tenant};

/// What the profiles of a scenario's tenants tell the krisp modes.
#[derive(Debug, Clone, Default)]
pub struct Knees {
    /// Every kernel's latency knee.
    pub min_sms: MinSms,
    /// Tenant `i`'s request time on each profiled SM count (`(sms, µs)`, ascending; on an
    /// otherwise idle device), where its profile has a request curve.
    pub request_us: Vec<Option<Vec<(u32, f64)>>>,
    /// The same beside a co-runner streaming memory on the rest of the device (alone where
    /// there is no rest).
    pub request_beside_us: Vec<Option<Vec<(u32, f64)>>>,
}

/// The share of its objective a latency-critical tenant's request may take, beside a
/// co-runner, on its quota for the tenant to be bounded to its window: the rest is left to
/// queueing and the tail.
pub const BOUNDED_SLO_SHARE: f64 = 0.5;

/// Whether a request whose times beside a co-runner are `beside` (`(sms, µs)`, ascending)
/// meets `slo_ms` × [`BOUNDED_SLO_SHARE`] on `sms` SMs, judged at the largest profiled count
/// not above it (none: no).
fn meets_on(beside: &[(u32, f64)], sms: u32, slo_ms: f64) -> bool {
    beside.iter().rev().find(|p| p.0 <= sms).is_some_and(|p| p.1 > 0.0 && p.1 <= slo_ms * 1e3 * BOUNDED_SLO_SHARE)
}

/// Why a tenant did not start: another tenant of the run failed to get ready.
#[derive(Debug, thiserror::Error)]
#[error("another tenant failed to start")]
struct CalledOff;

/// The gate of tenants in threads of one process.
#[derive(Debug)]
pub(crate) struct ThreadGate {
    n: u32,
    arrived: Mutex<(u32, bool)>,
    cv: Condvar,
    t0: OnceLock<Instant>,
    done: AtomicU32,
    /// Counted requests of all tenants, for progress bars.
    pub(crate) counted: Arc<AtomicU64>,
}

impl ThreadGate {
    pub(crate) fn new(n: u32, counted: Arc<AtomicU64>) -> ThreadGate {
        ThreadGate {
            n,
            arrived: Mutex::new((0, false)),
            cv: Condvar::new(),
            t0: OnceLock::new(),
            done: AtomicU32::new(0),
            counted,
        }
    }

    /// Calls the run off before its start (a tenant could not get ready).
    pub(crate) fn fail(&self) {
        let mut a = self.arrived.lock();
        a.1 = true;
        self.done.fetch_add(1, Ordering::SeqCst);
        self.cv.notify_all();
    }
}

impl Gate for ThreadGate {
    fn start(&self) -> anyhow::Result<Instant> {
        let mut a = self.arrived.lock();
        a.0 += 1;
        if a.0 == self.n {
            let _ = self.t0.set(Instant::now());
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
    fn stopped(&self) -> bool {
        self.done.load(Ordering::SeqCst) >= self.n
    }
    fn progress(&self, _: u32) {
        self.counted.fetch_add(1, Ordering::Relaxed);
    }
}

/// The runtime the tenants of a one-process run share, and its recovery: when a kernel fault
/// loses the context, every live tenant drops its handles, the last one to do so makes a new
/// runtime on a new context, and the survivors reload their models on it and go on.
struct Shared<T> {
    state: Mutex<SharedState<T>>,
    cv: Condvar,
}

struct SharedState<T> {
    rt: Option<Arc<T>>,
    /// How many runtimes were made before this one.
    epoch: u64,
    /// Tenants that hold (or will take) handles on the runtime.
    live: u32,
    /// Live tenants that dropped their handles and wait for a new runtime.
    arrived: u32,
    /// When the lost context was first seen (cleared once every survivor served again).
    lost_at: Option<Instant>,
    /// Survivors of the last recovery that have not reloaded yet.
    resuming: u32,
    /// Each recovery's outage, seconds.
    outages_s: Vec<f64>,
    /// Why the last recovery failed.
    failed: Option<String>,
}

impl<T> Shared<T> {
    fn new(rt: Arc<T>, live: u32) -> Shared<T> {
        let st = SharedState {
            rt: Some(rt),
            epoch: 0,
            live,
            arrived: 0,
            lost_at: None,
            resuming: 0,
            outages_s: Vec::new(),
            failed: None,
        };
        Shared { state: Mutex::new(st), cv: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, SharedState<T>> {
        self.state.lock()
    }

    /// The runtime now, and its epoch.
    fn current(&self) -> (Arc<T>, u64) {
        let st = self.lock();
        (st.rt.clone().expect("a runtime between recoveries"), st.epoch)
    }

    /// Whether the context of runtime `epoch` was lost (a tenant is waiting for a new one).
    fn lost(&self, epoch: u64) -> bool {
        let st = self.lock();
        st.epoch == epoch && st.lost_at.is_some()
    }

    /// Called with this tenant's handles dropped, after it found the context of runtime
    /// `epoch` lost: waits until every live tenant has dropped its handles and a new runtime
    /// is made (by the last to arrive), and returns it — or, for a tenant that does not
    /// survive, leaves at once with `None`.
    fn recover(
        &self,
        epoch: u64,
        survives: bool,
        make: &(dyn Fn() -> anyhow::Result<T> + Sync),
    ) -> anyhow::Result<Option<Arc<T>>> {
        let mut st = self.lock();
        if st.epoch == epoch {
            st.lost_at.get_or_insert_with(Instant::now);
        }
        if survives {
            st.arrived += 1;
        } else {
            st.live -= 1;
        }
        self.lead_if_all_in(&mut st, make);
        if !survives {
            return Ok(None);
        }
        while st.epoch == epoch {
            st = self.cv.wait(st);
            // Woken by a tenant that left: the rest may all be in now.
            self.lead_if_all_in(&mut st, make);
        }
        match &st.failed {
            Some(why) => bail!("the context was lost and could not be made again: {why}"),
            None => Ok(st.rt.clone()),
        }
    }

    /// Once every live tenant waits: drops the old runtime (its context goes with the last
    /// handle), makes a new one and wakes them.
    fn lead_if_all_in(&self, st: &mut SharedState<T>, make: &(dyn Fn() -> anyhow::Result<T> + Sync)) {
        if st.arrived == 0 || st.arrived < st.live {
            return;
        }
        st.rt = None;
        match make() {
            Ok(rt) => st.rt = Some(Arc::new(rt)),
            Err(e) => st.failed = Some(format!("{e:#}")),
        }
        st.epoch += 1;
        st.resuming = st.arrived;
        st.arrived = 0;
        self.cv.notify_all();
    }

    /// A survivor has reloaded and serves again.
    fn resumed(&self) {
        let mut st = self.lock();
        st.resuming = st.resuming.saturating_sub(1);
        if st.resuming == 0 {
            if let Some(at) = st.lost_at.take() {
                st.outages_s.push(at.elapsed().as_secs_f64());
            }
        }
    }

    /// A tenant is done with the runtime (its handles dropped): a recovery waiting for it goes on.
    fn leave(&self) {
        let mut st = self.lock();
        st.live = st.live.saturating_sub(1);
        // The waiting tenants may have waited for this one alone: one of them makes the runtime.
        if st.arrived > 0 && st.arrived >= st.live {
            self.cv.notify_all();
        }
    }

    fn outages_s(&self) -> Vec<f64> {
        self.lock().outages_s.clone()
    }
}

/// Splits `groups` groups into `n` consecutive windows as evenly as possible (the first get
/// the extra groups).
pub fn equal_windows(groups: u32, n: u32) -> Vec<GroupRange> {
    let n = n.max(1).min(groups.max(1));
    let (base, extra) = (groups / n, groups % n);
    let mut first = 0;
    (0..n)
        .map(|i| {
            let count = base + u32::from(i < extra);
            let w = GroupRange { first, count };
            first += count;
            w
        })
        .collect()
}

/// The static mode's windows: each tenant's `static_sms` (rounded up to groups), the others
/// sharing the remaining groups equally; laid side by side from group 0.
pub(crate) fn static_windows(s: &Scenario, groups: u32, granularity: u32) -> anyhow::Result<Vec<Option<GroupRange>>> {
    let fixed: u32 = s.tenants.iter().filter_map(|t| t.static_sms).map(|sms| sms.div_ceil(granularity)).sum();
    let open = s.tenants.iter().filter(|t| t.static_sms.is_none()).count() as u32;
    if fixed + open > groups {
        bail!("static partitions need {} groups; the device has {groups} of {granularity} SMs", fixed + open);
    }
    let mut shares = equal_windows(groups - fixed, open).into_iter().map(|w| w.count);
    let mut first = 0;
    s.tenants
        .iter()
        .map(|t| {
            let count = match t.static_sms {
                Some(sms) => sms.div_ceil(granularity),
                None => shares.next().unwrap_or(1),
            };
            let w = GroupRange { first, count };
            first += count;
            Ok(Some(w))
        })
        .collect()
}

/// The shares of a krisp mode: each tenant's class, its quota in groups (a latency-critical
/// tenant bounded to it where its profile says its quota meets its objective beside a
/// co-runner) and, for `krisp-curves` where its profile has a request curve, its speed on
/// each window size.
pub(crate) fn krisp_shares(s: &Scenario, sharing: Sharing, topo: &Topology, knees: &Knees) -> KrispShare {
    let g = topo.granularity.max(1);
    let shares = s
        .tenants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let quota = t.quota_sms.map(|sms| sms.div_ceil(g));
            let beside = knees.request_beside_us.get(i).and_then(Option::as_deref);
            let bounded = t.class == PriorityClass::LatencyCritical
                && matches!((quota, t.slo_ms, beside), (Some(q), Some(slo), Some(c)) if meets_on(c, q * g, slo));
            Share { class: t.class, quota, bounded }
        })
        .collect();
    let curves: &[Option<Vec<(u32, f64)>>] = if sharing == Sharing::KrispCurves { &knees.request_us } else { &[] };
    let speeds = (0..s.tenants.len())
        .map(|i| curves.get(i).and_then(Option::as_ref).and_then(|c| Speeds::from_times(c, topo)))
        .collect();
    KrispShare::with_speeds(shares, speeds, s.tenants.len() as u32, topo)
}

/// The policy of an in-process mode.
fn policy(
    s: &Scenario,
    sharing: Sharing,
    topo: &Topology,
    krisp: Option<KrispShare>,
) -> anyhow::Result<Box<dyn Policy>> {
    let Topology { groups, granularity, .. } = *topo;
    let any_lc = s.tenants.iter().any(|t| t.class == PriorityClass::LatencyCritical);
    let reserved_groups = if any_lc { s.reserved_sms.div_ceil(granularity).min(groups.saturating_sub(1)) } else { 0 };
    Ok(match sharing {
        Sharing::Streams => Box::new(Prioritized { inner: Full, reserved_groups: 0 }),
        Sharing::Static => Box::new(Prioritized {
            inner: Static { windows: static_windows(s, groups, granularity)? },
            reserved_groups: 0,
        }),
        Sharing::KrispConserved => Box::new(Prioritized { inner: KrispConserved, reserved_groups }),
        Sharing::KrispIsolated => Box::new(Prioritized { inner: KrispIsolated::default(), reserved_groups }),
        Sharing::Krisp | Sharing::KrispCurves => match krisp {
            Some(k) => Box::new(k),
            None => bail!("{} needs its shares", sharing.name()),
        },
        other => bail!("{} is not a one-process mode", other.name()),
    })
}

/// Runs `s` under the one-process mode `mode`; returns each tenant's counted samples (or, with
/// `sink`, hands them to it as they come: tenant index, sample) and, with `trace` (the most GPU
/// slices to keep), its timeline. `knees` holds what the profiles say (the krisp modes read it).
pub fn run(
    device: Device,
    s: &Scenario,
    mode: Mode,
    knees: Knees,
    trace: Option<usize>,
    counted: Arc<AtomicU64>,
    sink: Option<&(dyn Fn(usize, Sample) + Sync)>,
) -> anyhow::Result<Outcome> {
    let topo = match device.info().partitions.topology() {
        Ok(topo) => topo,
        Err(reason) => bail!("SM partitions are unavailable: {reason}"),
    };
    let groups = topo.groups;
    let n = s.tenants.len() as u32;
    let krisp = matches!(mode.sharing, Sharing::Krisp | Sharing::KrispCurves)
        .then(|| krisp_shares(s, mode.sharing, &topo, &knees));
    // Plan sets of the krisp modes: tenant i replays on the whole device when no other tenant
    // has work in flight, else within its share of the groups (krisp: a plan for every window
    // the tenants that contend can give it; the older modes: an equal share).
    let whole = GroupRange { first: 0, count: groups };
    let windows: Vec<Vec<GroupRange>> = match &krisp {
        Some(p) => (0..n).map(|i| std::iter::once(whole).chain(p.windows(i, n, groups)).collect()).collect(),
        None => {
            let homes = equal_windows(groups, n);
            (0..n as usize)
                .map(|i| if n > 1 { vec![whole, homes[i.min(homes.len() - 1)]] } else { vec![whole] })
                .collect()
        }
    };
    if trace.is_some() || s.pcie.is_some() {
        if let Some(t) = s.tenants.iter().find(|t| t.fault.is_some_and(|f| f.kind == FaultKind::Kernel)) {
            bail!(
                "tenant {}: a kernel fault loses the context, which traces and PCIe pressure cannot outlive",
                t.model
            );
        }
    }
    let ordinal = device.info().ordinal;
    let first = Mutex::new(Some(device));
    // The runtime, made again (on a new context) after a kernel fault lost the last one.
    let make = || -> anyhow::Result<Runtime> {
        let device = match first.lock().take() {
            Some(d) => d,
            None => {
                // SAFETY: a recovery makes the runtime again only after every tenant dropped its
                // handles and the old runtime was dropped.
                unsafe { Device::reset_primary_context(ordinal) }.context("resetting the lost context")?;
                Device::open(ordinal).context("opening the GPU again")?
            }
        };
        let policy = policy(s, mode.sharing, &topo, krisp.clone())?;
        let rt = Runtime::with_policy(device, policy, knees.min_sms.clone(), n).context("making the runtime")?;
        if let Some(limit) = trace {
            rt.start_timeline(limit)?;
        }
        Ok(rt)
    };
    let shared = Shared::new(Arc::new(make()?), n);
    let pressure = match s.pcie {
        Some(load) => Some(super::pcie::Pressure::start(shared.current().0.device(), load)?),
        None => None,
    };
    let gate = ThreadGate::new(n, counted);
    type Ran = (Vec<Sample>, Vec<RequestSpan>, Option<String>, Option<f64>);
    let results: Vec<anyhow::Result<Ran>> = std::thread::scope(|scope| {
        let handles: Vec<_> = s
            .tenants
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let (shared, gate, windows, make) = (&shared, &gate, &windows[i], &make);
                scope.spawn(move || -> anyhow::Result<Ran> {
                    let setup = |rt: Arc<Runtime>| -> anyhow::Result<(Tenant, Served)> {
                        let t = Tenant::scheduled(rt, i as u32, spec.class)?;
                        let mut served = Served::load(&t, spec, s.seed + i as u64)?;
                        if mode.plan {
                            served.capture(&t, mode.sharing.is_krisp().then_some(windows.as_slice()))?;
                        }
                        // One request before the start: first-launch costs are not counted.
                        served.request(&t)?;
                        Ok((t, served))
                    };
                    let (rt, mut epoch) = shared.current();
                    let mut held = match setup(rt) {
                        Ok(x) => Some(x),
                        Err(e) => {
                            gate.fail();
                            shared.leave();
                            return Err(e.context(format!("tenant {i} ({})", spec.model)));
                        }
                    };
                    let spec_loop = LoopSpec {
                        warmup: s.warmup,
                        requests: s.requests,
                        rate: spec.rate,
                        seed: s.seed.wrapping_mul(31).wrapping_add(i as u64),
                        duration: s.duration_s.map(std::time::Duration::from_secs_f64),
                        phases: spec.phases,
                        queue_limit: spec.queue_limit,
                    };
                    let mut spans = Spans::new(trace.is_some());
                    let mut faults = Faults::new(spec.fault);
                    let mut live = true;
                    let tenant_sink = move |x: Sample| sink.into_iter().for_each(|f| f(i, x));
                    let sink_i: Option<super::drive::Sink<'_>> = sink.map(|_| &tenant_sink as super::drive::Sink<'_>);
                    // Drops this tenant's handles, waits for every live tenant to do the same and
                    // for the new runtime, and reloads on it (a tenant whose kernel faulted leaves).
                    let mut recover = |held: &mut Option<(Tenant, Served)>, epoch: &mut u64, survives: bool| {
                        *held = None;
                        live = survives;
                        match shared.recover(*epoch, survives, make)? {
                            Some(rt) => {
                                *epoch += 1;
                                *held = Some(setup(rt)?);
                                shared.resumed();
                                anyhow::Ok(())
                            }
                            None => Ok(()),
                        }
                    };
                    let r = drive_into(&spec_loop, gate, sink_i, || {
                        if faults.stopped() {
                            return Err(faults.refusal().into());
                        }
                        if shared.lost(epoch) {
                            recover(&mut held, &mut epoch, true)?;
                        }
                        let (t, served) = held.as_ref().context("the tenant has no model loaded")?;
                        match spans.request(t, || faults.request(t, served)) {
                            // Lost, or failing (a library call's status) after another tenant saw it lost.
                            Err(e) if context_lost(&e) || shared.lost(epoch) => {
                                recover(&mut held, &mut epoch, !faults.stopped())?;
                                Err(RequestFailed::from_error(&e, faults.stopped()).into())
                            }
                            r => r,
                        }
                    });
                    let duty = held.as_ref().map(|(t, _)| t.duty());
                    drop(held);
                    if live {
                        shared.leave();
                    }
                    let samples = r.with_context(|| format!("tenant {i} ({})", spec.model))?;
                    Ok((samples, spans.into_vec(), faults.first_failure().map(str::to_owned), duty))
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
    let mut out = Outcome::default();
    let mut spans = Vec::new();
    let mut called_off = None;
    for r in results {
        match r {
            Ok((samples, s, failure, duty)) => {
                out.samples.push(samples);
                spans.push(s);
                out.failures.push(failure);
                out.duties.push(duty);
            }
            Err(e) if e.downcast_ref::<CalledOff>().is_some() => called_off = Some(e),
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = called_off {
        return Err(e);
    }
    out.started = gate.t0.get().copied();
    let (rt, _) = shared.current();
    out.outages_s = shared.outages_s();
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
    fn a_lost_context_is_made_again_once_every_live_tenant_let_go() {
        // Three tenants: 0's kernel faults (it leaves), 1 notices at once, 2 only after a while
        // and 3 finishes its loop instead; the runtime is made again once, after all let go.
        let shared = Shared::new(Arc::new(0u32), 4);
        let made = AtomicU32::new(0);
        let old = Arc::downgrade(&shared.current().0);
        let make = || -> anyhow::Result<u32> {
            assert!(old.upgrade().is_none(), "made again while the old one is held");
            Ok(made.fetch_add(1, Ordering::SeqCst) + 1)
        };
        let got = std::thread::scope(|s| {
            let faulted = s.spawn(|| shared.recover(0, false, &make).unwrap());
            let (first, late) = (
                s.spawn(|| {
                    let mine = shared.current().0;
                    while !shared.lost(0) {
                        std::thread::yield_now();
                    }
                    drop(mine);
                    shared.recover(0, true, &make).unwrap()
                }),
                s.spawn(|| {
                    let mine = shared.current().0;
                    std::thread::sleep(std::time::Duration::from_millis(30));
                    drop(mine);
                    shared.recover(0, true, &make).unwrap()
                }),
            );
            let finished = s.spawn(|| {
                let mine = shared.current().0;
                std::thread::sleep(std::time::Duration::from_millis(60));
                drop(mine);
                shared.leave();
            });
            finished.join().unwrap();
            (faulted.join().unwrap(), first.join().unwrap(), late.join().unwrap())
        });
        assert!(got.0.is_none(), "the faulted tenant does not come back");
        assert_eq!((*got.1.unwrap(), *got.2.unwrap()), (1, 1));
        assert_eq!(made.load(Ordering::SeqCst), 1);
        shared.resumed();
        assert!(shared.outages_s().is_empty(), "one survivor has not served yet");
        shared.resumed();
        let outages = shared.outages_s();
        assert_eq!(outages.len(), 1);
        assert!(outages[0] >= 0.02, "{outages:?}");
        assert_eq!(shared.current().1, 1);
    }

    #[test]
    fn a_recovery_that_cannot_make_the_runtime_fails_every_survivor() {
        let shared = Shared::new(Arc::new(0u32), 2);
        let make = || -> anyhow::Result<u32> { bail!("no device") };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| shared.recover(0, true, &make).map(|_| ()));
            let b = s.spawn(|| shared.recover(0, true, &make).map(|_| ()));
            (a.join().unwrap(), b.join().unwrap())
        });
        for r in [a, b] {
            assert!(format!("{:#}", r.unwrap_err()).contains("no device"));
        }
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

    #[test]
    fn a_latency_critical_tenant_is_bounded_where_its_quota_meets_its_objective() {
        let text =
            "[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"bert-base\"\nclass = \"latency-critical\"\n\
                    slo_ms = 10.0\nquota_sms = 32\n[[scenario.tenant]]\nmodel = \"gpt2\"\n";
        let s = &ScenarioFile::parse(text, "t").unwrap().scenarios[0];
        let topo = Topology { groups: 15, granularity: 8, rest_sms: 12 };
        let curve = |at_32: f64| Some(vec![(16, 2.0 * at_32), (32, at_32), (132, at_32 / 4.0)]);
        let knees = |at_32| Knees { request_beside_us: vec![curve(at_32), curve(at_32)], ..Knees::default() };
        let bounded =
            |k: &Knees| krisp_shares(s, Sharing::Krisp, &topo, k).shares.iter().map(|s| s.bounded).collect::<Vec<_>>();
        // 4 ms on its 32 SMs beside a co-runner: within half of 10 ms; the best-effort tenant never.
        assert_eq!(bounded(&knees(4000.0)), vec![true, false]);
        // 6 ms: not; nor without a curve.
        assert_eq!(bounded(&knees(6000.0)), vec![false, false]);
        assert_eq!(bounded(&Knees::default()), vec![false, false]);
        // Judged at the largest profiled count within the quota.
        assert!(meets_on(&[(24, 4000.0), (40, 1000.0)], 32, 10.0));
        assert!(!meets_on(&[(40, 1000.0)], 32, 10.0));
    }
}

/// Model checks (`RUSTFLAGS="--cfg loom" cargo test --lib loom_`): the gate and the recovery
/// barrier under every interleaving of their tenant threads.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc as LoomArc;

    fn bounded() -> loom::model::Builder {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b
    }

    /// A faulted tenant leaves, a survivor waits and a third tenant finishes its loop instead:
    /// the runtime is made again exactly once, only after both others let go, and the
    /// survivor resumes on it.
    #[test]
    fn loom_a_recovery_makes_the_runtime_once() {
        bounded().check(|| {
            let shared = LoomArc::new(Shared::new(Arc::new(0u32), 3));
            let made = LoomArc::new(AtomicU32::new(0));
            // Each tenant holds the runtime until it lets go; it is made again only after.
            let held: Vec<Arc<u32>> = (0..3).map(|_| shared.current().0).collect();
            let old = Arc::downgrade(&held[0]);
            // std's Arc: loom's cannot hold an unsized closure.
            let make: Arc<dyn Fn() -> anyhow::Result<u32> + Send + Sync> = {
                let made = made.clone();
                Arc::new(move || {
                    assert!(old.upgrade().is_none(), "made again while a tenant holds the old runtime");
                    Ok(made.fetch_add(1, Ordering::SeqCst) + 1)
                })
            };
            let mut held = held.into_iter();
            let (s, m, mine) = (shared.clone(), make.clone(), held.next());
            let faulted = loom::thread::spawn(move || {
                drop(mine);
                s.recover(0, false, &*m).unwrap().is_none()
            });
            let (s, m, mine) = (shared.clone(), make.clone(), held.next());
            let survivor = loom::thread::spawn(move || {
                drop(mine);
                s.recover(0, true, &*m).unwrap().map(|rt| *rt)
            });
            let (s, mine) = (shared.clone(), held.next());
            let finished = loom::thread::spawn(move || {
                drop(mine);
                s.leave()
            });
            assert!(faulted.join().unwrap(), "the faulted tenant does not come back");
            assert_eq!(survivor.join().unwrap(), Some(1), "the survivor gets the new runtime");
            finished.join().unwrap();
            assert_eq!(made.load(Ordering::SeqCst), 1, "made once");
            assert_eq!(shared.current(), (Arc::new(1), 1));
        });
    }

    /// Two survivors of one lost context: whichever arrives last makes the runtime; both get it.
    #[test]
    fn loom_every_survivor_resumes_on_the_same_runtime() {
        bounded().check(|| {
            let shared = LoomArc::new(Shared::new(Arc::new(0u32), 2));
            let made = LoomArc::new(AtomicU32::new(0));
            // std's Arc: loom's cannot hold an unsized closure.
            let make: Arc<dyn Fn() -> anyhow::Result<u32> + Send + Sync> = {
                let made = made.clone();
                Arc::new(move || Ok(made.fetch_add(1, Ordering::SeqCst) + 1))
            };
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (s, m) = (shared.clone(), make.clone());
                    loom::thread::spawn(move || {
                        let rt = s.recover(0, true, &*m).unwrap().map(|rt| *rt);
                        s.resumed();
                        rt
                    })
                })
                .collect();
            for t in threads {
                assert_eq!(t.join().unwrap(), Some(1));
            }
            assert_eq!(made.load(Ordering::SeqCst), 1);
            assert_eq!(shared.outages_s().len(), 1, "one outage, counted once both resumed");
        });
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

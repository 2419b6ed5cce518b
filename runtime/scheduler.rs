//! The scheduler: asks the active [`Policy`] where each launch of a scheduled tenant runs,
//! keeps the per-group load the policies read, and releases groups when kernels complete.
//!
//! Completion tracking: every scheduled launch records an event (from its tenant's pool, made
//! at start) after the kernel; the load of its groups is released once that event has
//! completed. Each tenant's kernels complete in order (its logical stream is in order), so the
//! scheduler keeps one FIFO per tenant and polls only their heads, on every scheduled launch
//! and while a launch waits for groups. A tenant with every event of its pool in flight waits
//! for its own oldest kernel — without the scheduler's lock, so other tenants go on — which
//! also bounds how far a tenant's host thread runs ahead of its kernels (and so keeps the load
//! the policies read close to what the GPU runs).

use std::collections::{HashMap, VecDeque};
use std::fmt;

use cudarc::driver::{result, sys};

use super::error::{DriverContext as _, Result};
use super::handles::Event;
use super::partition::PartitionId;
use super::policy::{
    priority_level, Blocks, Decision, Demand, GroupLoad, GroupRange, Policy, PriorityClass, Region, TenantId, Topology,
    SUSTAINED,
};
use super::sync::{AtomicU32, AtomicU64, Mutex, MutexGuard, Ordering};
use crate::kernels::KernelId;

/// Profiled minimum SMs per (kernel, shape key): what the KRISP policies ask for. Written as
/// a list of entries (JSON maps take string keys only).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(from = "MinSmsEntries", into = "MinSmsEntries")]
pub struct MinSms {
    table: HashMap<(KernelId, u64), u32>,
    /// What a launch missing from the table asks for (none: the whole device).
    pub default: Option<u32>,
}

/// [`MinSms`] as it is written.
#[derive(serde::Serialize, serde::Deserialize)]
struct MinSmsEntries {
    entries: Vec<(KernelId, u64, u32)>,
    default: Option<u32>,
}

impl From<MinSmsEntries> for MinSms {
    fn from(e: MinSmsEntries) -> MinSms {
        MinSms { table: e.entries.into_iter().map(|(k, s, n)| ((k, s), n)).collect(), default: e.default }
    }
}

impl From<MinSms> for MinSmsEntries {
    fn from(m: MinSms) -> MinSmsEntries {
        let mut entries: Vec<_> = m.table.into_iter().map(|((k, s), n)| (k, s, n)).collect();
        entries.sort_by_key(|&(k, s, _)| (k, s));
        MinSmsEntries { entries, default: m.default }
    }
}

impl MinSms {
    /// Records the minimum SMs of `kernel` at the shape whose key is `shape`.
    pub fn insert(&mut self, kernel: KernelId, shape: u64, sms: u32) {
        self.table.insert((kernel, shape), sms);
    }

    /// The minimum SMs of a launch, if profiled.
    pub fn get(&self, kernel: KernelId, shape: u64) -> Option<u32> {
        self.table.get(&(kernel, shape)).copied().or(self.default)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether it has no entry.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// What the scheduler knows a kernel's completion by: the CUDA event recorded after it (a
/// stand-in in the model checks).
pub(crate) trait Fence: Clone {
    /// Whether the work before it has completed.
    fn done(&self) -> bool;
    /// Waits for the work before it.
    fn wait(&self) -> Result<()>;
}

impl Fence for sys::CUevent {
    fn done(&self) -> bool {
        // SAFETY: a live event of the scheduler's pool.
        unsafe { result::event::query(*self) }.is_ok()
    }
    fn wait(&self) -> Result<()> {
        // SAFETY: as above.
        unsafe { result::event::synchronize(*self) }.call("cuEventSynchronize")
    }
}

/// Fences recorded after scheduled kernels, per tenant, oldest first, and the load they hold.
struct Inflight<E> {
    load: GroupLoad,
    queues: Vec<VecDeque<(E, Region)>>,
    /// Each tenant's unused fences.
    free: Vec<Vec<E>>,
}

impl<E: Fence> Inflight<E> {
    /// Tenant `t`'s fences are `pools[t]`.
    fn new(load: GroupLoad, pools: Vec<Vec<E>>) -> Inflight<E> {
        let queues = pools.iter().map(|p| VecDeque::with_capacity(p.len())).collect();
        Inflight { load, queues, free: pools }
    }

    /// Releases the groups of every kernel whose fence has completed. Each tenant's kernels
    /// complete in order, so only the heads of the queues are looked at.
    fn reap(&mut self) {
        let Inflight { load, queues, free } = self;
        for (t, q) in queues.iter_mut().enumerate() {
            while let Some((e, region)) = q.front() {
                if !e.done() {
                    break;
                }
                load.release(*region, t as TenantId);
                let (e, _) = q.pop_front().expect("a head");
                free[t].push(e);
            }
        }
    }

    /// Waits for every tracked kernel (holding the lock) and releases its groups.
    fn drain(&mut self) -> Result<()> {
        for q in &self.queues {
            for (e, _) in q {
                e.wait()?;
            }
        }
        self.reap();
        Ok(())
    }
}

/// Takes a free fence of tenant `t`, reaping completions when it has none; when every one is
/// in flight, waits for its oldest kernel without the lock (other tenants go on). Returns the
/// fence with the lock held, so the caller records and queues it before anyone reaps.
///
/// Only tenant `t`'s thread takes and records `t`'s fences: another thread's reap may move the
/// oldest to the free list meanwhile, but nobody records it again while this thread waits.
fn take_fence<E: Fence>(state: &Mutex<Inflight<E>>, t: usize) -> Result<(MutexGuard<'_, Inflight<E>>, E)> {
    let mut st = state.lock();
    loop {
        if let Some(e) = st.free[t].pop() {
            return Ok((st, e));
        }
        st.reap();
        if !st.free[t].is_empty() {
            continue;
        }
        let (oldest, _) = st.queues[t].front().cloned().expect("a tenant without free fences has fences in flight");
        drop(st);
        oldest.wait()?;
        st = state.lock();
    }
}

/// The runtime's scheduler (present when the runtime was made with a policy).
pub struct Scheduler {
    policy: Box<dyn Policy>,
    topo: Topology,
    min_sms: MinSms,
    windows: HashMap<GroupRange, PartitionId>,
    state: Mutex<Inflight<sys::CUevent>>,
    /// An empty load, for policies that do not read it and for capturing plans.
    idle: GroupLoad,
    /// Tenants with work outstanding: a bit per tenant id below 64, set at a tenant's first
    /// launch and cleared when it has waited for all of its work (no driver call, no lock).
    active: AtomicU64,
    /// Tenants that stay busy (their [`Duty`](super::policy::Duty) at least [`SUSTAINED`]), a
    /// bit per tenant id below 64, as each tenant's thread last stored it (when it last waited
    /// for its work); a new tenant counts as busy.
    sustained: AtomicU64,
    /// Tenants whose SMs are theirs whenever they have work ([`Policy::guaranteed`]): whether
    /// they stay busy decides nobody's window.
    guaranteed: u64,
    /// Each tenant's pressure ([`Scheduler::set_pressure`]) as `f32` bits, [`UNMEASURED`]
    /// until measured.
    pressure: Vec<AtomicU32>,
    /// Tenant ids a live scheduled tenant holds: one tenant per id, since an id's event pool,
    /// streams and active bit assume a single owner.
    claimed: Mutex<Vec<bool>>,
    /// Every completion event (the pools above hold their raw handles); destroyed after the
    /// drop drains what is in flight.
    _events: Vec<Event>,
}

// SAFETY: event handles may be used from any thread; all mutable state is behind the mutex.
unsafe impl Send for Scheduler {}
// SAFETY: as above.
unsafe impl Sync for Scheduler {}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("policy", &self.policy.name())
            .field("topology", &self.topo)
            .field("profiled", &self.min_sms.len())
            .finish()
    }
}

/// Kernels per tenant that can be in flight before its next launch waits for its oldest.
const EVENTS_PER_TENANT: usize = 64;

impl Scheduler {
    pub(crate) fn new(
        policy: Box<dyn Policy>,
        topo: Topology,
        min_sms: MinSms,
        windows: HashMap<GroupRange, PartitionId>,
        tenants: u32,
    ) -> Result<Scheduler> {
        // The primary context is current (the runtime binds it before this).
        let events =
            (0..tenants as usize * EVENTS_PER_TENANT).map(|_| Event::new(false)).collect::<Result<Vec<_>>>()?;
        let pools = events.chunks(EVENTS_PER_TENANT).map(|c| c.iter().map(Event::raw).collect()).collect();
        let state = Inflight::new(GroupLoad::new(topo.groups, tenants), pools);
        let idle = GroupLoad::new(topo.groups, tenants);
        let guaranteed = policy.guaranteed();
        Ok(Scheduler {
            guaranteed,
            policy,
            topo,
            min_sms,
            windows,
            state: Mutex::new(state),
            idle,
            active: AtomicU64::new(0),
            sustained: AtomicU64::new(u64::MAX),
            pressure: (0..tenants).map(|_| AtomicU32::new(UNMEASURED)).collect(),
            claimed: Mutex::new(vec![false; tenants as usize]),
            _events: events,
        })
    }

    /// Claims tenant id `id` for a new scheduled tenant: `false` if a live one holds it.
    pub(crate) fn claim(&self, id: TenantId) -> bool {
        claim(&mut self.claimed.lock(), id)
    }

    /// Gives tenant id `id` back (its tenant is gone).
    pub(crate) fn unclaim(&self, id: TenantId) {
        mark(&self.sustained, id, true);
        self.set_pressure(id, None);
        if let Some(c) = self.claimed.lock().get_mut(id as usize) {
            *c = false;
        }
    }

    /// The policy's name.
    pub fn policy(&self) -> &'static str {
        self.policy.name()
    }

    /// Whether latency-critical tenants claim their SMs ([`Policy::claims`]).
    pub fn claims(&self) -> bool {
        self.policy.claims()
    }

    /// The tenants whose SMs are theirs whenever they have work (a bit per id:
    /// [`Policy::guaranteed`], the latency-critical ones under krisp).
    pub(crate) fn guaranteed(&self) -> u64 {
        self.guaranteed
    }

    /// The device as the policy sees it.
    pub fn topology(&self) -> Topology {
        self.topo
    }

    /// Tenant ids it can serve.
    pub fn tenants(&self) -> u32 {
        self.lock().load.tenants()
    }

    fn lock(&self) -> MutexGuard<'_, Inflight<sys::CUevent>> {
        self.state.lock()
    }

    /// Decides where `d` runs and counts it on its groups, waiting (polling completions)
    /// while the policy says wait; returns the region, the priority level
    /// ([`priority_level`]) and how many blocks to launch. With `ideal`, decides as on an idle device
    /// within `ideal` (no kernel in flight and no other tenant active) and counts nothing (for
    /// capturing plans: a plan is placed for its window, whoever is active while it is captured).
    pub(crate) fn admit(&self, d: &Demand, ideal: Option<GroupRange>) -> (Region, usize, Blocks) {
        let run = |decision: Decision, fallback: Region| match decision {
            Decision::Run { region, high_priority, borrowed, blocks } => {
                (region, priority_level(high_priority, borrowed), blocks)
            }
            Decision::Wait => (fallback, priority_level(false, false), Blocks::Resident),
        };
        if let Some(within) = ideal {
            let alone = Demand { active: 0, plan: true, yields_to: u64::MAX, ..*d };
            return run(self.policy.place(&alone, &self.idle, &self.topo, within), Region::Groups(within));
        }
        if !self.tracks() {
            return run(self.policy.decide(d, &self.idle, &self.topo), Region::Whole);
        }
        loop {
            let mut st = self.lock();
            st.reap();
            let decision = self.policy.decide(d, &st.load, &self.topo);
            if let Decision::Run { region, .. } = decision {
                st.load.acquire(region, d.tenant);
                return run(decision, region);
            }
            drop(st);
            super::sync::spin();
        }
    }

    /// The plan of `tenant` to replay now, of plans captured within `regions` (the policy's
    /// [`Policy::pick_plan`]), the priority level to replay it at, and whether it borrows there.
    pub(crate) fn pick_plan(&self, tenant: TenantId, class: PriorityClass, regions: &[Region]) -> (usize, usize, bool) {
        let (active, sustained, yields_to) = self.activity(tenant);
        let d = Demand { active, sustained, yields_to, plan: true, ..Demand::new(tenant, class, None, u64::MAX) };
        let (i, borrowed) = if self.tracks() {
            let mut st = self.lock();
            st.reap();
            self.policy.pick_plan(&d, &st.load, &self.topo, regions)
        } else {
            self.policy.pick_plan(&d, &self.idle, &self.topo, regions)
        };
        let level = priority_level(class == PriorityClass::LatencyCritical, borrowed);
        (i.min(regions.len().saturating_sub(1)), level, borrowed)
    }

    /// Tenants with work outstanding, a bit per tenant id (see [`Demand::active`]).
    pub(crate) fn active_set(&self) -> u64 {
        self.active.load(Ordering::Acquire)
    }

    /// Marks `tenant` as having work outstanding (`true`) or none (`false`).
    pub(crate) fn set_active(&self, tenant: TenantId, active: bool) {
        mark(&self.active, tenant, active);
    }

    /// Stores whether `tenant` stays busy, from its duty ([`Duty::value`](super::policy::Duty::value)).
    pub(crate) fn set_duty(&self, tenant: TenantId, duty: f64) {
        mark(&self.sustained, tenant, duty >= SUSTAINED);
    }

    /// Whether every tenant of `set` that windows are laid out for stays busy
    /// ([`Demand::sustained`]).
    pub fn sustained(&self, set: u64) -> bool {
        stays_busy(self.sustained.load(Ordering::Acquire), set, self.guaranteed)
    }

    /// What a launch of `tenant` needs to know of the others: the active set
    /// ([`Demand::active`]), whether it and every active tenant stay busy
    /// ([`Demand::sustained`]) and whom it gives way to ([`Demand::yields_to`]).
    pub(crate) fn activity(&self, tenant: TenantId) -> (u64, bool, u64) {
        let active = self.active_set();
        (active, self.sustained(active | 1 << tenant.min(63)), self.yields_to(tenant))
    }

    /// What its policy has learned so far ([`Policy::notes`]).
    pub fn policy_notes(&self) -> Vec<String> {
        self.policy.notes()
    }

    /// Tells the policy that a request of `tenant` ran from `began_ns` to `ended_ns`
    /// ([`Policy::observe`]).
    pub(crate) fn observe(&self, tenant: TenantId, began_ns: u64, ended_ns: u64) {
        self.policy.observe(tenant, began_ns, ended_ns);
    }

    /// Stores `tenant`'s pressure: how close its recent requests came to its latency
    /// objective (a high quantile of their latencies ÷ the objective, as its tenant measured
    /// it), or `None` (not measured: it has no objective, or too few requests yet).
    pub(crate) fn set_pressure(&self, tenant: TenantId, pressure: Option<f32>) {
        if let Some(p) = self.pressure.get(tenant as usize) {
            p.store(pressure_bits(pressure), Ordering::Release);
        }
    }

    /// `tenant`'s pressure ([`Scheduler::set_pressure`]), if measured.
    pub fn pressure(&self, tenant: TenantId) -> Option<f32> {
        pressure_from_bits(self.pressure.get(tenant as usize)?.load(Ordering::Acquire))
    }

    /// The tenants `tenant` gives way to ([`Demand::yields_to`]): every one while its own
    /// pressure is not measured (what every launch pays then: one load).
    fn yields_to(&self, tenant: TenantId) -> u64 {
        let others = (0..self.pressure.len() as TenantId).map(|i| self.pressure(i));
        gives_way(self.pressure(tenant), others)
    }

    /// The best-effort tenants (a bit per id) that give way to latency-critical tenant `lc`
    /// now ([`Scheduler::yields_to`]: their pressure no higher than `lc`'s, or either
    /// unmeasured): whom hushing quiets for `lc`'s request (runtime/hush.rs).
    pub(crate) fn giving_way_to(&self, lc: TenantId) -> u64 {
        let n = self.pressure.len().min(64);
        let mut pressures = [None; 64];
        for (i, p) in pressures.iter_mut().enumerate().take(n) {
            *p = self.pressure(i as TenantId);
        }
        giving_way(lc, self.guaranteed, &pressures[..n])
    }

    /// Counts a replayed plan of `tenant` on `region` (released when tracked completion fires).
    pub(crate) fn acquire(&self, tenant: TenantId, region: Region) {
        self.lock().load.acquire(region, tenant);
    }

    /// The whole device as groups.
    pub(crate) fn all_groups(&self) -> GroupRange {
        GroupRange { first: 0, count: self.topo.groups }
    }

    /// Whether launches are counted and tracked to completion (the policy reads the load).
    pub(crate) fn tracks(&self) -> bool {
        self.policy.reads_load()
    }

    /// The partition of a region.
    pub(crate) fn partition(&self, region: Region) -> PartitionId {
        match region {
            Region::Whole => PartitionId::WHOLE,
            Region::Groups(g) => self.windows.get(&g).copied().unwrap_or(PartitionId::WHOLE),
        }
    }

    /// Profiled minimum SMs of a launch.
    pub(crate) fn min_sms(&self, kernel: KernelId, shape: u64) -> Option<u32> {
        self.min_sms.get(kernel, shape)
    }

    /// Uncounts a region acquired by `admit` whose launch failed.
    pub(crate) fn release(&self, tenant: TenantId, region: Region) {
        self.lock().load.release(region, tenant);
    }

    /// Records completion tracking for a kernel of `tenant` just launched on `stream`.
    pub(crate) fn track(&self, tenant: TenantId, region: Region, stream: sys::CUstream) -> Result<()> {
        let (mut st, event) = take_fence(&self.state, tenant as usize)?;
        // SAFETY: a live event and stream of this device.
        unsafe { result::event::record(event, stream) }.call("cuEventRecord")?;
        st.queues[tenant as usize].push_back((event, region));
        Ok(())
    }

    /// Waits for every tracked kernel and releases its groups.
    pub(crate) fn drain(&self) -> Result<()> {
        self.lock().drain()
    }

    /// Whether no scheduled kernel is counted on any group.
    pub fn is_idle(&self) -> bool {
        let mut st = self.lock();
        st.reap();
        st.load.is_idle()
    }
}

/// Whether the tenants of `set` whose windows follow the load (all but `guaranteed`) all stay
/// busy, by the bits `busy` of those that do; `false` when `set` has none of them.
fn stays_busy(busy: u64, set: u64, guaranteed: u64) -> bool {
    let takers = set & !guaranteed;
    takers != 0 && takers & !busy == 0
}

/// The stored pressure of a tenant with none measured (a NaN's bits, which
/// [`pressure_bits`] gives for nothing else).
const UNMEASURED: u32 = u32::MAX;

/// A pressure as stored: its `f32` bits, or [`UNMEASURED`] for none or one that is not a
/// finite number ≥ 0.
fn pressure_bits(pressure: Option<f32>) -> u32 {
    pressure.filter(|v| v.is_finite() && *v >= 0.0).map_or(UNMEASURED, f32::to_bits)
}

/// A stored pressure read back ([`pressure_bits`]).
fn pressure_from_bits(bits: u32) -> Option<f32> {
    (bits != UNMEASURED).then(|| f32::from_bits(bits))
}

/// The tenants that a tenant of pressure `own` gives way to, a bit per id
/// ([`Demand::yields_to`]), from every tenant's pressure (`pressures`, by id, read only where
/// `own` is measured): every one but those measured below `own`; every one where `own` is not
/// measured.
fn gives_way(own: Option<f32>, pressures: impl Iterator<Item = Option<f32>>) -> u64 {
    let Some(own) = own else {
        return u64::MAX;
    };
    pressures
        .take(64)
        .enumerate()
        .filter(|(_, p)| p.is_some_and(|p| p < own))
        .fold(u64::MAX, |set, (i, _)| set & !(1 << i))
}

/// The tenants outside `critical` (a bit per id) that give way to tenant `lc`, given every
/// tenant's pressure (`pressures`, by id): those whose pressure is unmeasured or no higher
/// than `lc`'s, and all of them while `lc`'s is unmeasured ([`gives_way`]).
fn giving_way(lc: TenantId, critical: u64, pressures: &[Option<f32>]) -> u64 {
    (0..pressures.len().min(64) as TenantId)
        .filter(|&b| b != lc && critical & (1 << b) == 0)
        .filter(|&b| gives_way(pressures[b as usize], pressures.iter().copied()) & (1 << lc.min(63)) != 0)
        .fold(0, |set, b| set | 1 << b)
}

/// Sets (`on`) or clears tenant `t`'s bit of `bits` (ids from 64 on have none).
fn mark(bits: &AtomicU64, t: TenantId, on: bool) {
    if t < 64 {
        if on {
            bits.fetch_or(1 << t, Ordering::AcqRel);
        } else {
            bits.fetch_and(!(1 << t), Ordering::AcqRel);
        }
    }
}

/// Marks `id` taken in `claimed`; `false` if it already was (or is out of range).
fn claim(claimed: &mut [bool], id: TenantId) -> bool {
    match claimed.get_mut(id as usize) {
        Some(c) if !*c => {
            *c = true;
            true
        }
        _ => false,
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // Recorded events must complete before they are destroyed (with `_events`).
        let _ = self.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_gives_way_to_those_at_least_as_near_their_objectives() {
        let p = [Some(0.9), None, Some(0.5), Some(1.2), Some(0.9)];
        let gives_way = |p: &[Option<f32>], t: usize| gives_way(p.get(t).copied().flatten(), p.iter().copied());
        // Tenant 2 (0.5): to everyone measured at least 0.5 and the unmeasured.
        assert_eq!(gives_way(&p, 2), u64::MAX);
        // Tenant 0 (0.9): not to tenant 2 (0.5); to tenant 4 at the same pressure.
        assert_eq!(gives_way(&p, 0), !0b00100);
        // Tenant 3 (1.2, the nearest to its objective): to no measured tenant but itself.
        assert_eq!(gives_way(&p, 3), !0b10101);
        // Unmeasured, or out of range: to everyone.
        assert_eq!(gives_way(&p, 1), u64::MAX);
        assert_eq!(gives_way(&p, 9), u64::MAX);
        assert_eq!(gives_way(&[], 0), u64::MAX);
    }

    #[test]
    fn best_effort_tenants_give_way_while_no_nearer_their_objectives() {
        // Tenant 0 latency-critical, 1 and 2 best-effort.
        let critical = 0b001;
        assert_eq!(giving_way(0, critical, &[Some(0.8), Some(0.5), Some(0.9)]), 0b010, "1 is less pressed, 2 more");
        assert_eq!(giving_way(0, critical, &[Some(0.4), Some(0.5), Some(0.9)]), 0, "both are more pressed");
        assert_eq!(giving_way(0, critical, &[Some(0.4), None, Some(0.9)]), 0b010, "1 is unmeasured (no objective)");
        assert_eq!(giving_way(0, critical, &[None, Some(0.5), Some(0.9)]), 0b110, "its own is unmeasured");
        assert_eq!(giving_way(0, critical, &[Some(0.5), Some(0.5), Some(0.5)]), 0b110, "as pressed");
        // Another latency-critical tenant is never quieted.
        assert_eq!(giving_way(0, 0b011, &[Some(0.9), Some(0.1), Some(0.9)]), 0b100);
        assert_eq!(giving_way(0, critical, &[Some(0.4)]), 0, "no best-effort tenant");
    }

    #[test]
    fn a_pressure_is_stored_as_its_bits_and_only_a_number_at_least_zero_is_measured() {
        for p in [0.0f32, 0.25, 1.0, 7.5] {
            assert_eq!(pressure_from_bits(pressure_bits(Some(p))), Some(p));
        }
        for p in [None, Some(f32::NAN), Some(f32::INFINITY), Some(-0.5)] {
            assert_eq!(pressure_bits(p), UNMEASURED, "{p:?}");
        }
        assert_eq!(pressure_from_bits(UNMEASURED), None);
    }

    #[test]
    fn a_tenant_id_has_one_owner_at_a_time() {
        let mut claimed = vec![false; 3];
        assert!(claim(&mut claimed, 1));
        assert!(!claim(&mut claimed, 1), "a second tenant with id 1 is refused");
        assert!(claim(&mut claimed, 0) && claim(&mut claimed, 2));
        assert!(!claim(&mut claimed, 3), "beyond the scheduler's tenants");
        claimed[1] = false;
        assert!(claim(&mut claimed, 1), "free again once its tenant is gone");
    }

    #[test]
    fn a_set_is_sustained_when_every_tenant_whose_window_follows_the_load_stays_busy() {
        let bits = AtomicU64::new(u64::MAX);
        for (t, duty) in [0.2, 0.949, 0.95, 1.0].into_iter().enumerate() {
            mark(&bits, t as TenantId, duty >= SUSTAINED);
        }
        let sustained = |set: u64, guaranteed: u64| stays_busy(bits.load(Ordering::Acquire), set, guaranteed);
        assert!(!sustained(0b0011, 0));
        assert!(!sustained(0b0101, 0), "tenant 0 comes and goes");
        assert!(sustained(0b1100, 0) && sustained(0b1000, 0));
        // Tenant 0's SMs are its own whatever the load: it decides nothing.
        assert!(sustained(0b1101, 0b0001));
        assert!(!sustained(0b0001, 0b0001), "no tenant whose window follows the load");
        assert!(!sustained(0, 0), "nobody active");
    }
}

/// Model checks (`RUSTFLAGS="--cfg loom" cargo test --lib loom_`): tenant threads track
/// kernels while a stand-in GPU completes them in order.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::runtime::sync::{AtomicBool, AtomicU32};
    use loom::sync::Arc;

    /// A fence: its use (bumped when recorded) and whether the kernel before it completed.
    #[derive(Clone, Debug)]
    struct Mock(Arc<(AtomicU32, AtomicBool)>);

    impl Fence for Mock {
        fn done(&self) -> bool {
            self.0 .1.load(Ordering::Acquire)
        }
        fn wait(&self) -> Result<()> {
            // Waiting returns once the GPU got there: here, the GPU gets there now.
            self.0 .1.store(true, Ordering::Release);
            Ok(())
        }
    }

    const TOPO: Topology = Topology { groups: 4, granularity: 8, rest_sms: 0 };

    /// Two tenants, one fence each, two kernels each (so the second waits for the first,
    /// outside the lock, while the other tenant may reap it) beside a GPU that completes what
    /// was launched in order, at any point: every kernel's groups are released, every fence
    /// comes back once, and nobody deadlocks.
    #[test]
    fn loom_tracked_kernels_release_their_groups() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let fences: Vec<Vec<Mock>> =
                (0..2).map(|_| vec![Mock(Arc::new((AtomicU32::new(0), AtomicBool::new(true))))]).collect();
            let state = Arc::new(Mutex::new(Inflight::new(GroupLoad::new(TOPO.groups, 2), fences)));
            // What each tenant launched, in order, with the fence's use then.
            let launched: Arc<Mutex<Vec<VecDeque<(Mock, u32)>>>> = Arc::new(Mutex::new(vec![VecDeque::new(); 2]));
            let tenants: Vec<_> = (0..2usize)
                .map(|t| {
                    let (state, launched) = (state.clone(), launched.clone());
                    loom::thread::spawn(move || {
                        let region = Region::Groups(GroupRange { first: t as u32 * 2, count: 2 });
                        for _ in 0..2 {
                            state.lock().load.acquire(region, t as TenantId);
                            let (mut st, fence) = take_fence(&state, t).unwrap();
                            // Record: pending until the GPU gets to it.
                            let used = fence.0 .0.fetch_add(1, Ordering::AcqRel) + 1;
                            fence.0 .1.store(false, Ordering::Release);
                            launched.lock()[t].push_back((fence.clone(), used));
                            st.queues[t].push_back((fence, region));
                        }
                    })
                })
                .collect();
            // The GPU: completes the oldest launched kernel of some tenant, a few times.
            let gpu = {
                let launched = launched.clone();
                loom::thread::spawn(move || {
                    for _ in 0..3 {
                        let next = launched.lock().iter_mut().find_map(VecDeque::pop_front);
                        match next {
                            Some((f, used)) if f.0 .0.load(Ordering::Acquire) == used => {
                                f.0 .1.store(true, Ordering::Release);
                            }
                            _ => loom::thread::yield_now(),
                        }
                    }
                })
            };
            for t in tenants {
                t.join().unwrap();
            }
            gpu.join().unwrap();
            let mut st = state.lock();
            st.drain().unwrap();
            assert!(st.load.is_idle(), "every kernel's groups released");
            assert!(st.queues.iter().all(VecDeque::is_empty));
            assert_eq!(st.free.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1], "each fence back once");
        });
    }

    /// Tenants set and clear their bits of the active and the sustained sets at once: no bit
    /// of another is lost.
    #[test]
    fn loom_active_bits_and_duties_are_per_tenant() {
        loom::model(|| {
            let active = Arc::new(AtomicU64::new(0));
            let duties = Arc::new(AtomicU64::new(u64::MAX));
            let threads: Vec<_> = (0..2u32)
                .map(|t| {
                    let (active, duties) = (active.clone(), duties.clone());
                    loom::thread::spawn(move || {
                        active.fetch_or(1 << t, Ordering::AcqRel);
                        mark(&duties, t, f64::from(100 + 850 * t) / 1000.0 >= SUSTAINED);
                        if t == 1 {
                            active.fetch_and(!(1 << t), Ordering::AcqRel);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(active.load(Ordering::Acquire), 0b01);
            let sustained = |set: u64| stays_busy(duties.load(Ordering::Acquire), set, 0);
            assert!(!sustained(0b01) && sustained(0b10) && !sustained(0b11));
        });
    }
}

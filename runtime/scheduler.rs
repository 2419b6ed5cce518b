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
use std::sync::atomic::{AtomicU64, Ordering};

use cudarc::driver::sys;
use parking_lot::{Mutex, MutexGuard};

use super::error::{check, Result};
use super::handles::Event;
use super::partition::{GroupRange, PartitionId};
use super::policy::{
    priority_level, Blocks, Decision, Demand, GroupLoad, Policy, PriorityClass, Region, TenantId, Topology,
};
use crate::kernels::KernelId;

/// Profiled minimum SMs per (kernel, shape key): what the KRISP policies ask for.
#[derive(Debug, Clone, Default)]
pub struct MinSms {
    table: HashMap<(KernelId, u64), u32>,
    /// What a launch missing from the table asks for (none: the whole device).
    pub default: Option<u32>,
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

/// Events recorded after scheduled kernels, per tenant, oldest first.
struct Inflight {
    load: GroupLoad,
    queues: Vec<VecDeque<(sys::CUevent, Region)>>,
    /// Each tenant's unused events.
    free: Vec<Vec<sys::CUevent>>,
}

/// The runtime's scheduler (present when the runtime was made with a policy).
pub struct Scheduler {
    policy: Box<dyn Policy>,
    topo: Topology,
    min_sms: MinSms,
    windows: HashMap<GroupRange, PartitionId>,
    state: Mutex<Inflight>,
    /// An empty load, for policies that do not read it and for capturing plans.
    idle: GroupLoad,
    /// Tenants with work outstanding: a bit per tenant id below 64, set at a tenant's first
    /// launch and cleared when it has waited for all of its work (no driver call, no lock).
    active: AtomicU64,
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
        let free = events.chunks(EVENTS_PER_TENANT).map(|c| c.iter().map(Event::raw).collect()).collect();
        let queues = (0..tenants).map(|_| VecDeque::with_capacity(EVENTS_PER_TENANT)).collect();
        let state = Inflight { load: GroupLoad::new(topo.groups, tenants), queues, free };
        let idle = GroupLoad::new(topo.groups, tenants);
        Ok(Scheduler {
            policy,
            topo,
            min_sms,
            windows,
            state: Mutex::new(state),
            idle,
            active: AtomicU64::new(0),
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
        if let Some(c) = self.claimed.lock().get_mut(id as usize) {
            *c = false;
        }
    }

    /// The policy's name.
    pub fn policy(&self) -> &'static str {
        self.policy.name()
    }

    /// The device as the policy sees it.
    pub fn topology(&self) -> Topology {
        self.topo
    }

    /// Tenant ids it can serve.
    pub fn tenants(&self) -> u32 {
        self.lock().load.tenants()
    }

    fn lock(&self) -> MutexGuard<'_, Inflight> {
        self.state.lock()
    }

    /// Releases the groups of every kernel whose completion event has fired.
    fn reap(st: &mut Inflight) {
        let Inflight { load, queues, free } = st;
        for (t, q) in queues.iter_mut().enumerate() {
            while let Some(&(e, region)) = q.front() {
                // SAFETY: a live event from the pool, recorded after a launch.
                if unsafe { sys::cuEventQuery(e) } != sys::CUresult::CUDA_SUCCESS {
                    break;
                }
                q.pop_front();
                load.release(region, t as TenantId);
                free[t].push(e);
            }
        }
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
            let alone = Demand { active: 0, ..*d };
            return run(self.policy.place(&alone, &self.idle, &self.topo, within), Region::Groups(within));
        }
        if !self.tracks() {
            return run(self.policy.decide(d, &self.idle, &self.topo), Region::Whole);
        }
        loop {
            let mut st = self.lock();
            Self::reap(&mut st);
            let decision = self.policy.decide(d, &st.load, &self.topo);
            if let Decision::Run { region, .. } = decision {
                st.load.acquire(region, d.tenant);
                return run(decision, region);
            }
            drop(st);
            std::hint::spin_loop();
        }
    }

    /// The plan of `tenant` to replay now, of plans captured within `regions` (the policy's
    /// [`Policy::pick_plan`]), and the priority level to replay it at.
    pub(crate) fn pick_plan(&self, tenant: TenantId, class: PriorityClass, regions: &[Region]) -> (usize, usize) {
        let d = Demand { active: self.active_set(), ..Demand::new(tenant, class, None, u64::MAX) };
        let (i, borrowed) = if self.tracks() {
            let mut st = self.lock();
            Self::reap(&mut st);
            self.policy.pick_plan(&d, &st.load, &self.topo, regions)
        } else {
            self.policy.pick_plan(&d, &self.idle, &self.topo, regions)
        };
        (i.min(regions.len().saturating_sub(1)), priority_level(class == PriorityClass::LatencyCritical, borrowed))
    }

    /// Tenants with work outstanding, a bit per tenant id (see [`Demand::active`]).
    pub(crate) fn active_set(&self) -> u64 {
        self.active.load(Ordering::Acquire)
    }

    /// Marks `tenant` as having work outstanding (`true`) or none (`false`).
    pub(crate) fn set_active(&self, tenant: TenantId, active: bool) {
        if tenant < 64 {
            if active {
                self.active.fetch_or(1 << tenant, Ordering::AcqRel);
            } else {
                self.active.fetch_and(!(1 << tenant), Ordering::AcqRel);
            }
        }
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
        let t = tenant as usize;
        let mut st = self.lock();
        let event = loop {
            if let Some(e) = st.free[t].pop() {
                break e;
            }
            Self::reap(&mut st);
            if !st.free[t].is_empty() {
                continue;
            }
            // Every event of this tenant is in flight: wait for its oldest kernel, without the
            // lock. Only this thread records or recycles this tenant's events, so the event
            // stays recorded meanwhile.
            let (oldest, _) = *st.queues[t].front().expect("a tenant without free events has events in flight");
            drop(st);
            // SAFETY: a live recorded event.
            check("cuEventSynchronize", unsafe { sys::cuEventSynchronize(oldest) })?;
            st = self.lock();
        };
        // SAFETY: a live event and stream of this device.
        check("cuEventRecord", unsafe { sys::cuEventRecord(event, stream) })?;
        st.queues[tenant as usize].push_back((event, region));
        Ok(())
    }

    /// Waits for every tracked kernel and releases its groups.
    pub(crate) fn drain(&self) -> Result<()> {
        let mut st = self.lock();
        for q in &st.queues {
            for &(e, _) in q {
                // SAFETY: live recorded events.
                check("cuEventSynchronize", unsafe { sys::cuEventSynchronize(e) })?;
            }
        }
        Self::reap(&mut st);
        Ok(())
    }

    /// Whether no scheduled kernel is counted on any group.
    pub fn is_idle(&self) -> bool {
        let mut st = self.lock();
        Self::reap(&mut st);
        st.load.is_idle()
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
    fn a_tenant_id_has_one_owner_at_a_time() {
        let mut claimed = vec![false; 3];
        assert!(claim(&mut claimed, 1));
        assert!(!claim(&mut claimed, 1), "a second tenant with id 1 is refused");
        assert!(claim(&mut claimed, 0) && claim(&mut claimed, 2));
        assert!(!claim(&mut claimed, 3), "beyond the scheduler's tenants");
        claimed[1] = false;
        assert!(claim(&mut claimed, 1), "free again once its tenant is gone");
    }
}

//! Policies: where each launch runs. Pure code — no CUDA types — so it is property-tested on
//! the CPU.
//!
//! The device's SMs are `groups` groups of `granularity` SMs (one split of its SM resource);
//! a policy places a kernel on a window of consecutive groups (a green-context partition), or
//! on the whole device. [`GroupLoad`] counts the kernels in flight on each group, per tenant;
//! the runtime acquires a window's groups when it launches there and releases them when the
//! kernel completes.
//!
//! - [`vocabulary`]: tenants, the device as groups, [`Demand`] and [`Decision`];
//! - [`load`]: what is in flight ([`GroupLoad`]) and how busy each tenant stays ([`Duty`]);
//! - [`fixed`]: [`Full`] (every kernel on the whole device) and [`Static`] (a window per tenant);
//! - [`knee`]: [`KrispConserved`] and [`KrispIsolated`], which read each kernel's profiled
//!   minimum SMs, and [`Prioritized`], priority classes on top of any policy;
//! - [`share`]: [`KrispShare`] (the `krisp` mode), shares that follow the load;
//! - [`spec`]: [`PolicySpec`], the one way a runtime's policy is made from a mode and its tenants.

use std::fmt;

pub mod fixed;
pub mod knee;
pub mod load;
pub mod share;
pub mod spec;
#[cfg(test)]
pub(crate) mod tests;
pub mod vocabulary;

pub use fixed::{equal_windows, Full, Static};
pub use knee::{KrispConserved, KrispIsolated, Prioritized};
pub use load::{Duty, GroupLoad, DUTY_IDLE_CAP, DUTY_WEIGHT, SUSTAINED};
pub use share::{meets_on, KrispShare, Share, Speeds, Stage, BOUNDED_SLO_SHARE, TABLE_TENANTS, TRIAL_REQUESTS};
pub use spec::{reserved_groups, Guard, Lending, PolicyKind, PolicySpec, Spill, TenantSpec};
pub(crate) use vocabulary::span;
pub use vocabulary::{
    priority_level, spread_grid, Blocks, Decision, Demand, GroupRange, PriorityClass, Region, TenantId, Topology,
    SPREAD,
};

/// Decides where each launch runs.
pub trait Policy: Send + Sync + fmt::Debug {
    /// A short name ("full", "static", "krisp-conserved", …).
    fn name(&self) -> &'static str;
    /// Places `d` within the groups `allowed`, given what is in flight.
    fn place(&self, d: &Demand, load: &GroupLoad, topo: &Topology, allowed: GroupRange) -> Decision;
    /// Whether its decisions depend on what is in flight (if not, the runtime skips
    /// completion tracking for it).
    fn reads_load(&self) -> bool {
        true
    }
    /// The tenants (a bit per id) whose SMs are theirs whenever they have work, whatever the
    /// load (latency-critical ones, on their quota or the whole device): whether they stay busy
    /// decides nobody's window ([`Demand::sustained`]).
    fn guaranteed(&self) -> u64 {
        0
    }
    /// Whether a latency-critical tenant claims the SMs its work is placed on, for its request
    /// (runtime/claims.rs): lower tenants' kernels already running there leave them within a
    /// work unit, instead of holding them until they end.
    fn claims(&self) -> bool {
        false
    }
    /// Whether best-effort work waits before it starts while a latency-critical tenant has a
    /// request in flight that its caller asked to protect (runtime/hush.rs), so that its
    /// memory traffic stops within n of its launches of the request's start and resumes as it
    /// ends: 0 if not, else every how many (n) of a best-effort tenant's launches one waits
    /// (1: each), counted from the first of each of its requests, which waits.
    fn hush_every(&self) -> u32 {
        0
    }
    /// The windows a plan set of tenant `t` (out of `tenants`) is captured within
    /// ([`Tenant::capture_set`](crate::runtime::Tenant::capture_set)): the whole device, for
    /// when no other tenant has work, and where it runs beside others; by default its equal
    /// part of the groups.
    fn plan_windows(&self, t: TenantId, tenants: u32, groups: u32) -> Vec<GroupRange> {
        let whole = GroupRange { first: 0, count: groups };
        if tenants <= 1 {
            return vec![whole];
        }
        let homes = equal_windows(groups, tenants);
        vec![whole, homes[(t as usize).min(homes.len() - 1)]]
    }
    /// A request of `tenant` ran from `began_ns` to `ended_ns` (the host's monotonic clock,
    /// `timer::monotonic_ns`), as its caller reports it ([`Tenant::observe`](crate::runtime::Tenant::observe)):
    /// for a policy that measures its choices (`krisp`'s layout trial). By default nothing.
    fn observe(&self, _tenant: TenantId, _began_ns: u64, _ended_ns: u64) {}
    /// What it has learned so far, a line each (`krisp`: where each layout trial stands), for
    /// a run's results. By default nothing.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Places `d` anywhere on the device.
    fn decide(&self, d: &Demand, load: &GroupLoad, topo: &Topology) -> Decision {
        self.place(d, load, topo, GroupRange { first: 0, count: topo.groups })
    }
    /// Which of a tenant's plans, captured within `regions`, to replay now, and whether that
    /// replay borrows SMs (then it goes out at the least priority). By default: the first
    /// region where no other tenant has a kernel in flight, else the one other tenants use
    /// least per group (first on ties); its own earlier work does not count (it runs first).
    fn pick_plan(&self, d: &Demand, load: &GroupLoad, topo: &Topology, regions: &[Region]) -> (usize, bool) {
        let tenant = d.tenant;
        let cost = |r: &Region| {
            let (first, count) = match *r {
                Region::Whole => (0, topo.groups),
                Region::Groups(g) => (g.first, g.count),
            };
            let busy: u32 = (first..first + count).map(|g| load.others(g, tenant)).sum();
            f64::from(busy) / f64::from(count.max(1))
        };
        if let Some(free) = regions.iter().position(|r| cost(r) == 0.0) {
            return (free, false);
        }
        let i = (0..regions.len()).min_by(|&a, &b| cost(&regions[a]).total_cmp(&cost(&regions[b]))).unwrap_or(0);
        (i, false)
    }
}

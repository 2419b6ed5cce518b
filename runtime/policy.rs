//! Policies: where each launch runs. Pure code — no CUDA types — so it is property-tested on
//! the CPU.
//!
//! The device's SMs are `groups` groups of `granularity` SMs (one split of its SM resource);
//! a policy places a kernel on a window of consecutive groups (a green-context partition), or
//! on the whole device. [`GroupLoad`] counts the kernels in flight on each group, per tenant;
//! the runtime acquires a window's groups when it launches there and releases them when the
//! kernel completes.
//!
//! - [`Full`]: every kernel on the whole device (what plain streams do).
//! - [`Static`]: a fixed window per tenant (MIG-like, resizable between runs).
//! - [`KrispConserved`]: each kernel gets exactly the groups its profiled minimum SMs need, on
//!   the window with the fewest kernels in flight; windows may overlap other tenants'. A kernel
//!   whose grid is no larger than those groups' SMs stays on the tenant's current window when
//!   that window holds them and is no busier: it occupies the same number of SMs either way, and
//!   each switch of partition costs about a microsecond between dependent kernels.
//! - [`KrispIsolated`]: each kernel gets its groups from groups no other tenant is using; when
//!   too few are free it takes the largest free run down to a floor, else waits. Never overlaps.
//! - [`Prioritized`] wraps any of them: latency-critical tenants get high-priority streams and
//!   may use every group; best-effort tenants are kept off the reserved groups.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use super::partition::GroupRange;

/// A tenant's id: an index below the runtime's tenant limit.
pub type TenantId = u32;

/// How a tenant's kernels are treated when tenants compete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PriorityClass {
    /// Served first: high-priority streams, reserved groups.
    LatencyCritical,
    /// Fills what is left.
    #[default]
    BestEffort,
}

/// The device as policies see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// Groups of one split.
    pub groups: u32,
    /// SMs per group.
    pub granularity: u32,
}

impl Topology {
    /// Groups needed for `sms` SMs (at least one).
    pub fn groups_for(&self, sms: u32) -> u32 {
        sms.div_ceil(self.granularity.max(1)).max(1)
    }
}

/// What a policy knows of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Who launches.
    pub tenant: TenantId,
    /// Its class.
    pub class: PriorityClass,
    /// The kernel's profiled minimum SMs for full speed, if profiled.
    pub min_sms: Option<u32>,
    /// Its work units (the most blocks it launches).
    pub units: u64,
    /// Where the tenant's previous kernel ran, if it was placed by the policy.
    pub current: Option<Region>,
}

impl Demand {
    /// A launch of `units` units with nothing known of the tenant's previous one.
    pub fn new(tenant: TenantId, class: PriorityClass, min_sms: Option<u32>, units: u64) -> Demand {
        Demand { tenant, class, min_sms, units, current: None }
    }
}

/// Where a kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Region {
    /// The whole device (every group and the SMs outside them).
    Whole,
    /// A window of consecutive groups.
    Groups(GroupRange),
}

/// A policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Launch on `region`, on a high-priority stream if `high_priority`.
    Run {
        /// Where.
        region: Region,
        /// Whether it goes on the high-priority stream.
        high_priority: bool,
    },
    /// Nothing suitable is free: poll completions and ask again.
    Wait,
}

/// Kernels in flight on each group, per tenant. Fixed size, so updating it never allocates.
#[derive(Debug, Clone)]
pub struct GroupLoad {
    groups: u32,
    tenants: u32,
    /// `counts[g * tenants + t]`: kernels of tenant t in flight on group g.
    counts: Vec<u32>,
}

impl GroupLoad {
    /// Empty load for `groups` groups and tenant ids below `tenants`.
    pub fn new(groups: u32, tenants: u32) -> GroupLoad {
        GroupLoad { groups, tenants, counts: vec![0; (groups * tenants) as usize] }
    }

    fn range(&self, region: Region) -> std::ops::Range<u32> {
        match region {
            Region::Whole => 0..self.groups,
            Region::Groups(g) => g.first..g.end().min(self.groups),
        }
    }

    /// Kernels in flight on group `g`.
    pub fn inflight(&self, g: u32) -> u32 {
        let row = (g * self.tenants) as usize;
        self.counts[row..row + self.tenants as usize].iter().sum()
    }

    /// Kernels of tenants other than `t` in flight on group `g`.
    pub fn others(&self, g: u32, t: TenantId) -> u32 {
        self.inflight(g) - self.counts[(g * self.tenants + t) as usize]
    }

    /// Counts a kernel of `t` on every group of `region`.
    pub fn acquire(&mut self, region: Region, t: TenantId) {
        for g in self.range(region) {
            self.counts[(g * self.tenants + t) as usize] += 1;
        }
    }

    /// Uncounts a kernel of `t` acquired on `region`.
    pub fn release(&mut self, region: Region, t: TenantId) {
        for g in self.range(region) {
            let c = &mut self.counts[(g * self.tenants + t) as usize];
            *c = c.saturating_sub(1);
        }
    }

    /// Whether nothing is in flight.
    pub fn is_idle(&self) -> bool {
        self.counts.iter().all(|&c| c == 0)
    }

    /// Tenant ids it can count.
    pub fn tenants(&self) -> u32 {
        self.tenants
    }
}

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
    /// Places `d` anywhere on the device.
    fn decide(&self, d: &Demand, load: &GroupLoad, topo: &Topology) -> Decision {
        self.place(d, load, topo, GroupRange { first: 0, count: topo.groups })
    }
}

/// Every kernel on the whole device.
#[derive(Debug, Clone, Copy, Default)]
pub struct Full;

impl Policy for Full {
    fn name(&self) -> &'static str {
        "full"
    }
    fn reads_load(&self) -> bool {
        false
    }
    fn place(&self, _: &Demand, _: &GroupLoad, _: &Topology, _: GroupRange) -> Decision {
        Decision::Run { region: Region::Whole, high_priority: false }
    }
}

/// A fixed window per tenant; tenants without one get the whole device.
#[derive(Debug, Clone, Default)]
pub struct Static {
    /// Window of tenant `i` at index `i`.
    pub windows: Vec<Option<GroupRange>>,
}

impl Policy for Static {
    fn name(&self) -> &'static str {
        "static"
    }
    fn reads_load(&self) -> bool {
        false
    }
    fn place(&self, d: &Demand, _: &GroupLoad, _: &Topology, _: GroupRange) -> Decision {
        let region = match self.windows.get(d.tenant as usize).copied().flatten() {
            Some(w) => Region::Groups(w),
            None => Region::Whole,
        };
        Decision::Run { region, high_priority: false }
    }
}

/// Groups a kernel wants: its minimum SMs rounded up to groups; unprofiled kernels want all.
fn wanted(d: &Demand, topo: &Topology, allowed: GroupRange) -> u32 {
    d.min_sms.map_or(allowed.count, |s| topo.groups_for(s)).min(allowed.count)
}

/// The tenant's current window, as groups, if a kernel wanting `want` groups may stay there:
/// the window lies within `allowed` and holds `want` groups, and the kernel launches no more
/// blocks than `want` groups have SMs, so it occupies no more SMs there than on its own window.
fn stays(d: &Demand, topo: &Topology, allowed: GroupRange, want: u32) -> Option<GroupRange> {
    let cur = match d.current? {
        Region::Whole => GroupRange { first: 0, count: topo.groups },
        Region::Groups(g) => g,
    };
    let inside = cur.first >= allowed.first && cur.end() <= allowed.end();
    let small = d.min_sms.is_some() && d.units <= u64::from(want) * u64::from(topo.granularity);
    (inside && small && cur.count >= want).then_some(cur)
}

/// Exactly the groups the profile asks for, on the least loaded window.
#[derive(Debug, Clone, Copy, Default)]
pub struct KrispConserved;

impl Policy for KrispConserved {
    fn name(&self) -> &'static str {
        "krisp-conserved"
    }
    fn place(&self, d: &Demand, load: &GroupLoad, topo: &Topology, allowed: GroupRange) -> Decision {
        let want = wanted(d, topo, allowed);
        if want == 0 {
            return Decision::Wait;
        }
        if want >= topo.groups {
            return Decision::Run { region: Region::Whole, high_priority: false };
        }
        // Sliding window over the allowed groups: least total in flight, leftmost on ties.
        let busy = |g: u32| load.inflight(g);
        let mut sum: u32 = (allowed.first..allowed.first + want).map(busy).sum();
        let (mut best, mut best_sum) = (allowed.first, sum);
        for first in allowed.first + 1..=allowed.end() - want {
            sum = sum + busy(first + want - 1) - busy(first - 1);
            if sum < best_sum {
                (best, best_sum) = (first, sum);
            }
        }
        if let Some(cur) = stays(d, topo, allowed, want) {
            // No busier per group than the best window of its own size.
            let cur_sum: u32 = (cur.first..cur.end()).map(busy).sum();
            if u64::from(cur_sum) * u64::from(want) <= u64::from(best_sum) * u64::from(cur.count) {
                let region = if cur.count >= topo.groups { Region::Whole } else { Region::Groups(cur) };
                return Decision::Run { region, high_priority: false };
            }
        }
        Decision::Run { region: Region::Groups(GroupRange { first: best, count: want }), high_priority: false }
    }
}

/// Groups no other tenant is using; at least `floor_groups` of them, else wait.
#[derive(Debug, Clone, Copy)]
pub struct KrispIsolated {
    /// Fewest groups a kernel accepts when fewer than it wants are free.
    pub floor_groups: u32,
}

impl Default for KrispIsolated {
    fn default() -> Self {
        KrispIsolated { floor_groups: 1 }
    }
}

impl Policy for KrispIsolated {
    fn name(&self) -> &'static str {
        "krisp-isolated"
    }
    fn place(&self, d: &Demand, load: &GroupLoad, topo: &Topology, allowed: GroupRange) -> Decision {
        let want = wanted(d, topo, allowed);
        // Free runs of groups (no other tenant's kernel in flight): the best fit that holds
        // `want` groups, else the longest.
        let (mut fit, mut longest): (Option<GroupRange>, GroupRange) = (None, GroupRange { first: 0, count: 0 });
        let mut g = allowed.first;
        while g < allowed.end() {
            if load.others(g, d.tenant) > 0 {
                g += 1;
                continue;
            }
            let first = g;
            while g < allowed.end() && load.others(g, d.tenant) == 0 {
                g += 1;
            }
            let run = GroupRange { first, count: g - first };
            if run.count >= want && fit.is_none_or(|f| run.count < f.count) {
                fit = Some(run);
            }
            if run.count > longest.count {
                longest = run;
            }
        }
        let whole_free = longest.count == topo.groups;
        let region = match fit {
            Some(_) if want >= topo.groups && whole_free => Region::Whole,
            Some(run) => Region::Groups(GroupRange { first: run.first, count: want }),
            None if longest.count >= self.floor_groups.max(1) => Region::Groups(longest),
            None => return Decision::Wait,
        };
        Decision::Run { region, high_priority: false }
    }
}

/// Priority classes on top of another policy: latency-critical tenants run at high priority
/// and may use every group; best-effort tenants are kept off the first `reserved_groups`.
#[derive(Debug)]
pub struct Prioritized<P> {
    /// The policy placing each class within its groups.
    pub inner: P,
    /// Groups only latency-critical tenants may use.
    pub reserved_groups: u32,
}

impl<P: Policy> Policy for Prioritized<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn reads_load(&self) -> bool {
        self.inner.reads_load()
    }
    fn place(&self, d: &Demand, load: &GroupLoad, topo: &Topology, allowed: GroupRange) -> Decision {
        let high = d.class == PriorityClass::LatencyCritical;
        // Best-effort kernels stay off groups 0..reserved_groups of the device, within any
        // window (a plan captured within a window included); a window that lies wholly in
        // the reserved groups keeps its last group.
        let allowed = if high || self.reserved_groups == 0 {
            allowed
        } else {
            let first = allowed.first.max(self.reserved_groups).min(allowed.end().saturating_sub(1));
            GroupRange { first, count: allowed.end() - first }
        };
        match self.inner.place(d, load, topo, allowed) {
            // A best-effort kernel may not spill onto the reserved groups via the whole device.
            Decision::Run { region: Region::Whole, .. } if !high && self.reserved_groups > 0 => {
                Decision::Run { region: Region::Groups(allowed), high_priority: false }
            }
            Decision::Run { region, .. } => Decision::Run { region, high_priority: high },
            Decision::Wait => Decision::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOPO: Topology = Topology { groups: 15, granularity: 8 };
    const TENANTS: u32 = 4;

    fn demand(tenant: u32, min_sms: Option<u32>) -> Demand {
        Demand::new(tenant, PriorityClass::BestEffort, min_sms, 1024)
    }

    fn groups(d: Decision) -> Option<GroupRange> {
        match d {
            Decision::Run { region: Region::Groups(g), .. } => Some(g),
            Decision::Run { region: Region::Whole, .. } => Some(GroupRange { first: 0, count: TOPO.groups }),
            Decision::Wait => None,
        }
    }

    #[test]
    fn conserved_takes_exactly_its_groups_on_the_least_loaded_window() {
        let mut load = GroupLoad::new(TOPO.groups, TENANTS);
        let d = demand(0, Some(20)); // 3 groups
        let g = groups(KrispConserved.decide(&d, &load, &TOPO)).unwrap();
        assert_eq!(g, GroupRange { first: 0, count: 3 });
        load.acquire(Region::Groups(g), 1);
        assert_eq!(groups(KrispConserved.decide(&d, &load, &TOPO)).unwrap(), GroupRange { first: 3, count: 3 });
        // Unprofiled kernels and kernels wanting every group run on the whole device.
        assert_eq!(
            KrispConserved.decide(&demand(0, None), &load, &TOPO),
            Decision::Run { region: Region::Whole, high_priority: false }
        );
    }

    #[test]
    fn conserved_keeps_a_small_grid_on_the_current_window() {
        let mut load = GroupLoad::new(TOPO.groups, TENANTS);
        let cur = GroupRange { first: 4, count: 6 };
        // 12 blocks, wanting 2 groups (16 SMs): they fit, so it stays on the 6 groups.
        let small = Demand { units: 12, current: Some(Region::Groups(cur)), ..demand(0, Some(16)) };
        assert_eq!(groups(KrispConserved.decide(&small, &load, &TOPO)), Some(cur));
        // More blocks than its groups' SMs would spread wider there: it moves.
        let wide = Demand { units: 17, ..small };
        assert_eq!(groups(KrispConserved.decide(&wide, &load, &TOPO)), Some(GroupRange { first: 0, count: 2 }));
        // A current window smaller than its groups does not hold it.
        let narrow = Demand { current: Some(Region::Groups(GroupRange { first: 4, count: 1 })), ..small };
        assert_eq!(groups(KrispConserved.decide(&narrow, &load, &TOPO)), Some(GroupRange { first: 0, count: 2 }));
        // Nor does a window busier per group than the best free one.
        load.acquire(Region::Groups(GroupRange { first: 5, count: 1 }), 1);
        assert_eq!(groups(KrispConserved.decide(&small, &load, &TOPO)), Some(GroupRange { first: 0, count: 2 }));
        // Unprofiled kernels never stay on a window smaller than the device.
        let unprofiled = Demand { min_sms: None, ..small };
        assert_eq!(
            KrispConserved.decide(&unprofiled, &load, &TOPO),
            Decision::Run { region: Region::Whole, high_priority: false }
        );
        // Within a window, only a current window inside it counts.
        let outside = GroupRange { first: 10, count: 5 };
        assert_eq!(
            groups(KrispConserved.place(&small, &GroupLoad::new(TOPO.groups, TENANTS), &TOPO, outside)),
            Some(GroupRange { first: 10, count: 2 })
        );
    }

    #[test]
    fn isolated_waits_rather_than_overlap() {
        let mut load = GroupLoad::new(TOPO.groups, TENANTS);
        load.acquire(Region::Whole, 1);
        let p = KrispIsolated { floor_groups: 2 };
        assert_eq!(p.decide(&demand(0, Some(16)), &load, &TOPO), Decision::Wait);
        // Its own kernels do not block it.
        assert!(groups(p.decide(&demand(1, Some(16)), &load, &TOPO)).is_some());
        load.release(Region::Whole, 1);
        load.acquire(Region::Groups(GroupRange { first: 0, count: 12 }), 1);
        // 3 free groups: more than the floor, fewer than the 5 wanted.
        assert_eq!(groups(p.decide(&demand(0, Some(40)), &load, &TOPO)), Some(GroupRange { first: 12, count: 3 }));
    }

    #[test]
    fn priorities_reserve_groups_for_latency_critical_tenants() {
        let p = Prioritized { inner: KrispConserved, reserved_groups: 4 };
        let load = GroupLoad::new(TOPO.groups, TENANTS);
        let lc = Demand::new(0, PriorityClass::LatencyCritical, Some(16), 1024);
        assert_eq!(
            p.decide(&lc, &load, &TOPO),
            Decision::Run { region: Region::Groups(GroupRange { first: 0, count: 2 }), high_priority: true }
        );
        let be = demand(1, Some(16));
        assert_eq!(groups(p.decide(&be, &load, &TOPO)), Some(GroupRange { first: 4, count: 2 }));
        // A best-effort kernel that wants everything gets every unreserved group, not the device.
        assert_eq!(groups(p.decide(&demand(1, None), &load, &TOPO)), Some(GroupRange { first: 4, count: 11 }));
        // Within a window, the reserved groups are the device's first four, not the window's.
        let window = GroupRange { first: 2, count: 6 };
        assert_eq!(groups(p.place(&be, &load, &TOPO, window)), Some(GroupRange { first: 4, count: 2 }));
        let inside = GroupRange { first: 0, count: 3 };
        assert_eq!(groups(p.place(&be, &load, &TOPO, inside)), Some(GroupRange { first: 2, count: 1 }));
    }

    #[test]
    fn static_uses_each_tenants_window() {
        let w = GroupRange { first: 5, count: 4 };
        let p = Static { windows: vec![None, Some(w)] };
        let load = GroupLoad::new(TOPO.groups, TENANTS);
        assert_eq!(groups(p.decide(&demand(1, Some(8)), &load, &TOPO)), Some(w));
        assert_eq!(
            p.decide(&demand(0, Some(8)), &load, &TOPO),
            Decision::Run { region: Region::Whole, high_priority: false }
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Launch { tenant: u32, min_sms: Option<u32>, lc: bool, units: u64 },
        Complete(usize),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let launch = (0..TENANTS, proptest::option::of(1u32..140), any::<bool>(), 1u64..200)
            .prop_map(|(tenant, min_sms, lc, units)| Op::Launch { tenant, min_sms, lc, units });
        let complete = (0usize..64).prop_map(Op::Complete);
        proptest::collection::vec(prop_oneof![3 => launch, 2 => complete], 1..200)
    }

    fn policies() -> Vec<Box<dyn Policy>> {
        vec![
            Box::new(Full),
            Box::new(Static {
                windows: vec![Some(GroupRange { first: 0, count: 4 }), Some(GroupRange { first: 4, count: 4 }), None],
            }),
            Box::new(KrispConserved),
            Box::new(KrispIsolated { floor_groups: 1 }),
            Box::new(KrispIsolated { floor_groups: 3 }),
            Box::new(Prioritized { inner: KrispConserved, reserved_groups: 3 }),
            Box::new(Prioritized { inner: KrispIsolated { floor_groups: 1 }, reserved_groups: 3 }),
        ]
    }

    proptest! {
        /// Replays random launches and completions from several tenants through every policy.
        #[test]
        fn policies_keep_their_invariants(ops in ops()) {
            for p in policies() {
                let mut load = GroupLoad::new(TOPO.groups, TENANTS);
                let mut inflight: Vec<(Region, u32)> = Vec::new();
                let mut waiting = Vec::new();
                let mut current: Vec<Option<Region>> = vec![None; TENANTS as usize];
                for op in &ops {
                    match *op {
                        Op::Launch { tenant, min_sms, lc, units } => {
                            let class = if lc { PriorityClass::LatencyCritical } else { PriorityClass::BestEffort };
                            let d = Demand { tenant, class, min_sms, units, current: current[tenant as usize] };
                            match p.decide(&d, &load, &TOPO) {
                                Decision::Run { region, high_priority } => {
                                    if let Region::Groups(g) = region {
                                        prop_assert!(g.count >= 1 && g.end() <= TOPO.groups, "{}: {g:?}", p.name());
                                        if p.name() == "krisp-conserved" && d.class == PriorityClass::BestEffort {
                                            // Never more than it needs (less only when the allowed groups are fewer),
                                            // unless it stays where it was and its blocks fit in what it needs.
                                            let want = min_sms.map_or(TOPO.groups, |s| TOPO.groups_for(s));
                                            let stayed = d.current == Some(region) && units <= u64::from(want * TOPO.granularity);
                                            prop_assert!(g.count <= want || stayed, "{g:?} for {d:?}");
                                        }
                                    }
                                    if p.name() == "krisp-conserved" && region == Region::Whole && min_sms.is_some_and(|s| TOPO.groups_for(s) < TOPO.groups) {
                                        prop_assert!(d.current == Some(Region::Whole), "{d:?} moved to the whole device");
                                    }
                                    current[tenant as usize] = Some(region);
                                    if p.name() == "krisp-isolated" {
                                        let r = match region { Region::Whole => 0..TOPO.groups, Region::Groups(g) => g.first..g.end() };
                                        for grp in r {
                                            prop_assert_eq!(load.others(grp, tenant), 0, "{} overlapped tenant {}'s kernels", p.name(), tenant);
                                        }
                                    }
                                    prop_assert!(!high_priority || lc, "only latency-critical tenants get high priority");
                                    load.acquire(region, tenant);
                                    inflight.push((region, tenant));
                                }
                                Decision::Wait => {
                                    prop_assert!(p.name() == "krisp-isolated", "{} waited", p.name());
                                    waiting.push(d);
                                }
                            }
                        }
                        Op::Complete(i) if !inflight.is_empty() => {
                            let (region, tenant) = inflight.swap_remove(i % inflight.len());
                            load.release(region, tenant);
                        }
                        Op::Complete(_) => {}
                    }
                }
                for (region, tenant) in inflight.drain(..) {
                    load.release(region, tenant);
                }
                prop_assert!(load.is_idle(), "counters return to zero");
                // Once everything has completed, every waiting request is placed.
                for d in waiting {
                    prop_assert!(matches!(p.decide(&d, &load, &TOPO), Decision::Run { .. }), "{:?} never placed", d);
                }
            }
        }
    }
}

//! Policies that read each kernel's profiled knee (its minimum SMs): [`KrispConserved`] takes
//! exactly those groups on the least loaded window, [`KrispIsolated`] only groups no other
//! tenant is using; [`Prioritized`] puts priority classes on top of either.

use super::{Decision, Demand, GroupLoad, GroupRange, Policy, PriorityClass, Region, Topology};

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
            return Decision::run(Region::Whole, false);
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
                return Decision::run(region, false);
            }
        }
        Decision::run(Region::Groups(GroupRange { first: best, count: want }), false)
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
        Decision::run(region, false)
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
                Decision::run(Region::Groups(allowed), false)
            }
            Decision::Run { region, borrowed, blocks, .. } => {
                Decision::Run { region, high_priority: high, borrowed, blocks }
            }
            Decision::Wait => Decision::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::policy::tests::{demand, groups, TENANTS, TOPO};

    #[test]
    fn conserved_takes_exactly_its_groups_on_the_least_loaded_window() {
        let mut load = GroupLoad::new(TOPO.groups, TENANTS);
        let d = demand(0, Some(20)); // 3 groups
        let g = groups(KrispConserved.decide(&d, &load, &TOPO)).unwrap();
        assert_eq!(g, GroupRange { first: 0, count: 3 });
        load.acquire(Region::Groups(g), 1);
        assert_eq!(groups(KrispConserved.decide(&d, &load, &TOPO)).unwrap(), GroupRange { first: 3, count: 3 });
        // Unprofiled kernels and kernels wanting every group run on the whole device.
        assert_eq!(KrispConserved.decide(&demand(0, None), &load, &TOPO), Decision::run(Region::Whole, false));
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
        assert_eq!(KrispConserved.decide(&unprofiled, &load, &TOPO), Decision::run(Region::Whole, false));
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
        assert_eq!(p.decide(&lc, &load, &TOPO), Decision::run(Region::Groups(GroupRange { first: 0, count: 2 }), true));
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
}

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
//! - [`KrispShare`] (the `krisp` mode): shares that follow the load — a tenant alone gets the
//!   whole device, contending tenants their quotas, idle tenants' SMs are lent out at the
//!   least priority in short blocks, so owners get them back within a block's time.

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
    /// SMs the split leaves outside its groups; a window reaching the last group has them too.
    pub rest_sms: u32,
}

impl Topology {
    /// SMs of the whole device: every group and the SMs outside them.
    pub fn sms(&self) -> u32 {
        self.groups * self.granularity + self.rest_sms
    }

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
    /// Tenants with work outstanding (launched since they last waited for it), a bit per
    /// tenant id below 64, as the runtime knows it without tracking kernels.
    pub active: u64,
    /// Whether this tenant and every one in `active` stay busy: their [`Duty`] is at least
    /// [`SUSTAINED`] (tenants whose SMs are theirs whatever the load, [`Policy::guaranteed`],
    /// left out). While one does not, contention is short-lived.
    pub sustained: bool,
}

/// The weight of each request in a tenant's [`Duty`]: about the last four count.
pub const DUTY_WEIGHT: f64 = 0.25;

/// The most idle time one request counts in a [`Duty`], in multiples of its busy time: one long
/// pause (a tenant back from an idle phase) weighs like a request busy a fifth of its time.
pub const DUTY_IDLE_CAP: f64 = 4.0;

/// The [`Duty`] from which a tenant counts as staying busy ([`Demand::sustained`]). Closed
/// loops measure at least 0.995; from a duty of 0.5 it takes about eleven requests back to back
/// (weighted by [`DUTY_WEIGHT`]) to reach it, which Poisson arrivals below saturation seldom
/// bring, where five (enough for 0.8) come in most bursts.
pub const SUSTAINED: f64 = 0.95;

/// How much of its time a tenant spends busy (with work outstanding): over its recent requests
/// (busy periods, each ended by waiting for its work; each request's weight decays by
/// [`DUTY_WEIGHT`]), the time busy ÷ the time busy and idle (the idle time before each request
/// counted up to [`DUTY_IDLE_CAP`] times its busy time). A closed loop stays near 1; a tenant
/// serving arrivals that leave it idle between requests, near its utilization. A new tenant
/// counts as busy until its requests show otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Duty {
    /// Moving means over its requests of each one's busy time and of its busy and idle time,
    /// seconds (both 0 until its first request).
    busy: f64,
    total: f64,
}

impl Duty {
    /// Counts a request busy for `busy` seconds after `idle` seconds idle.
    pub fn cycle(&mut self, idle: f64, busy: f64) {
        let busy = busy.max(0.0);
        let idle = idle.clamp(0.0, DUTY_IDLE_CAP * busy);
        if idle + busy <= 0.0 {
            return;
        }
        // The first request sets the means; later ones move them.
        let w = if self.total > 0.0 { DUTY_WEIGHT } else { 1.0 };
        self.busy += (busy - self.busy) * w;
        self.total += (idle + busy - self.total) * w;
    }

    /// The busy share, in [0, 1]; 1 before its first request.
    pub fn value(&self) -> f64 {
        if self.total > 0.0 {
            (self.busy / self.total).clamp(0.0, 1.0)
        } else {
            1.0
        }
    }
}

impl Demand {
    /// A launch of `units` units with nothing known of the tenant's previous one or of others
    /// (counted as contention that lasts: `sustained`).
    pub fn new(tenant: TenantId, class: PriorityClass, min_sms: Option<u32>, units: u64) -> Demand {
        Demand { tenant, class, min_sms, units, current: None, active: 0, sustained: true }
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
        /// Whether it runs on SMs other tenants own (idle ones it borrows): it then goes on
        /// the least-priority stream, so an owner's kernels take those SMs back as soon as the
        /// blocks running there finish.
        borrowed: bool,
        /// How many blocks it launches.
        blocks: Blocks,
    },
    /// Nothing suitable is free: poll completions and ask again.
    Wait,
}

impl Decision {
    /// Run on `region`, on the high-priority stream if `high_priority`, on SMs it owns.
    pub fn run(region: Region, high_priority: bool) -> Decision {
        Decision::Run { region, high_priority, borrowed: false, blocks: Blocks::Resident }
    }
}

/// How many blocks a placed kernel launches (kernels loop over their units, so any grid is
/// correct).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocks {
    /// One block per SM slot of its region (at most its units), each looping over units.
    Resident,
    /// Short blocks ([`spread_grid`]), so higher-priority work waits for a block at most,
    /// not for the whole kernel.
    Short,
}

/// The priority level of a kernel placed with `high_priority` and `borrowed`: an index into a
/// scheduled runtime's three stream priorities, least first — borrowed work, a tenant's work
/// on what it owns, latency-critical work.
pub fn priority_level(high_priority: bool, borrowed: bool) -> usize {
    match (high_priority, borrowed) {
        (true, _) => 2,
        (false, false) => 1,
        (false, true) => 0,
    }
}

/// Most blocks per resident block slot a borrowed kernel launches: with one unit a block
/// where units allow, each block is short, so SMs lent out come back within one unit's time.
pub const SPREAD: u64 = 8;

/// The grid of a borrowed kernel: `min(units, SPREAD × sms × blocks_per_sm)`, at least 1.
/// Kernels loop over their units, so any grid is correct; more, shorter blocks let the
/// hardware hand SMs to higher-priority work at block boundaries.
pub fn spread_grid(units: u64, sms: u32, blocks_per_sm: u32) -> u32 {
    let slots = u64::from(sms.max(1)) * u64::from(blocks_per_sm.max(1));
    units.min(SPREAD * slots).clamp(1, i32::MAX as u64) as u32
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

    /// Tenants with a kernel in flight, a bit per tenant id (ids below 64). Every kernel is
    /// counted on at least one group, so the counts tell.
    pub fn active_set(&self) -> u64 {
        let n = self.tenants as usize;
        self.counts.iter().enumerate().filter(|(_, &c)| c > 0).fold(0, |m, (i, _)| match i % n {
            t if t < 64 => m | 1 << t,
            _ => m,
        })
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
    /// The tenants (a bit per id) whose SMs are theirs whenever they have work, whatever the
    /// load (latency-critical ones, on their quota or the whole device): whether they stay busy
    /// decides nobody's window ([`Demand::sustained`]).
    fn guaranteed(&self) -> u64 {
        0
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
        Decision::run(Region::Whole, false)
    }
}

/// A fixed window per tenant; tenants without one get the whole device.
#[derive(Debug, Clone, Default)]
pub struct Static {
    /// Window of tenant `i` at index `i`.
    pub windows: Vec<Option<GroupRange>>,
}

impl Static {
    /// Windows side by side from group 0: tenant `i` gets `sizes[i]` SMs rounded up to
    /// groups, or (`None`) an equal part of the groups the sized ones leave. Refused when
    /// they need more groups than `groups`.
    pub fn side_by_side(sizes: &[Option<u32>], groups: u32, granularity: u32) -> Result<Static, String> {
        let granularity = granularity.max(1);
        let fixed: u32 = sizes.iter().flatten().map(|sms| sms.div_ceil(granularity)).sum();
        let open = sizes.iter().filter(|s| s.is_none()).count() as u32;
        if fixed + open > groups {
            return Err(format!(
                "static partitions need {} groups; the device has {groups} of {granularity} SMs",
                fixed + open
            ));
        }
        let mut shares = equal_windows(groups - fixed, open).into_iter().map(|w| w.count);
        let mut first = 0;
        let windows = sizes
            .iter()
            .map(|size| {
                let count = match size {
                    Some(sms) => sms.div_ceil(granularity),
                    None => shares.next().unwrap_or(1),
                };
                let w = GroupRange { first, count };
                first += count;
                Some(w)
            })
            .collect();
        Ok(Static { windows })
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
        Decision::run(region, false)
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

/// The share of its objective a latency-critical tenant's request may take, beside a
/// co-runner, on its quota for the tenant to be bounded to its window ([`Share::bounded`]):
/// the rest is left to queueing and the tail.
pub const BOUNDED_SLO_SHARE: f64 = 0.5;

/// Whether a request whose times beside a co-runner are `beside` (`(sms, µs)`, ascending; a
/// profile's request curve) meets `slo_ms` × [`BOUNDED_SLO_SHARE`] on `sms` SMs, judged at the
/// largest profiled count not above it (none: no): whether a latency-critical tenant with a
/// quota of `sms` may be [`Share::bounded`].
pub fn meets_on(beside: &[(u32, f64)], sms: u32, slo_ms: f64) -> bool {
    beside.iter().rev().find(|p| p.0 <= sms).is_some_and(|p| p.1 > 0.0 && p.1 <= slo_ms * 1e3 * BOUNDED_SLO_SHARE)
}

/// One tenant as [`KrispShare`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Share {
    /// Its class: latency-critical tenants are laid out first and go out at high priority.
    pub class: PriorityClass,
    /// Groups guaranteed to it whenever it contends; `None`: an equal part of what the
    /// quotas of the contending tenants leave.
    pub quota: Option<u32>,
    /// A latency-critical tenant whose objective its quota already meets: it runs on its
    /// window (its quota while others contend, more as they go idle), at high priority and
    /// never borrowing, instead of on the whole device. Ignored for best-effort tenants.
    pub bounded: bool,
}

/// How fast a tenant's requests run on a window of each size, relative to the whole device:
/// from the request's time on each profiled SM count (its profile's request curve).
#[derive(Debug, Clone, PartialEq)]
pub struct Speeds {
    /// `plain[g - 1]`: on `g` groups.
    plain: Vec<f64>,
    /// `rest[g - 1]`: on `g` groups and the split's remaining SMs.
    rest: Vec<f64>,
}

impl Speeds {
    /// Speeds on `topo`'s windows from a request's time on SM counts (`(sms, µs)`, ascending),
    /// interpolated linearly between counts and held flat beyond them; `None` without two
    /// positive times to go by.
    pub fn from_times(times: &[(u32, f64)], topo: &Topology) -> Option<Speeds> {
        let pts: Vec<(f64, f64)> = times.iter().filter(|p| p.1 > 0.0).map(|&(s, us)| (f64::from(s), us)).collect();
        if pts.len() < 2 || pts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return None;
        }
        let at = |sms: f64| -> f64 {
            let i = pts.partition_point(|p| p.0 < sms);
            match (pts.get(i.wrapping_sub(1)), pts.get(i)) {
                (Some(a), Some(b)) => a.1 + (b.1 - a.1) * (sms - a.0) / (b.0 - a.0),
                (None, Some(b)) => b.1,
                (Some(a), None) => a.1,
                (None, None) => f64::NAN,
            }
        };
        let total = f64::from(topo.sms());
        let whole = at(total);
        let speed = |sms: u32| whole / at(f64::from(sms));
        let plain = (1..=topo.groups).map(|g| speed(g * topo.granularity)).collect();
        let rest = (1..=topo.groups).map(|g| speed(g * topo.granularity + topo.rest_sms)).collect();
        Some(Speeds { plain, rest })
    }

    /// Speed on `g` groups (at least one), with the remaining SMs or not.
    fn on(&self, g: u32, rest: bool) -> f64 {
        let v = if rest { &self.rest } else { &self.plain };
        v.get(g.max(1) as usize - 1).or(v.last()).copied().unwrap_or(1.0)
    }
}

/// Every active set's windows, made once when speeds are known (at most [`TABLE_TENANTS`]).
#[derive(Debug, Clone)]
struct Layouts {
    tenants: u32,
    groups: u32,
    /// By active set (a bit per tenant id), a window per tenant id.
    by_set: Vec<Vec<Option<GroupRange>>>,
}

/// The most tenants whose layouts [`KrispShare::with_speeds`] makes ahead (2^n sets).
pub const TABLE_TENANTS: u32 = 12;

/// Shares that follow the load. Each tenant owns a window of groups (its quota, or an equal
/// part of what the quotas leave) while every tenant contends; the windows of the tenants
/// with work in flight are laid side by side, latency-critical ones first, so:
///
/// - a tenant alone gets the whole device;
/// - contending tenants each get their window, sized for the tenants that contend now: an
///   idle tenant's SMs are lent to the others;
/// - a kernel on SMs beyond the window its tenant owns when every tenant contends is
///   *borrowed*: it goes out at the least priority with a grid of short blocks
///   ([`spread_grid`]), so when the owner comes back, its kernels (at a higher priority) take
///   the SMs as soon as the blocks running there finish — a bound of one block's time,
///   instead of the whole kernel;
/// - latency-critical kernels go out at high priority on the whole device: their quota's
///   groups are kept free of best-effort kernels while they are active, and best-effort
///   kernels there while they are idle are borrowed (short blocks, least priority), so a
///   latency-critical kernel waits for one best-effort block at most for its quota's SMs;
///   beyond its quota it takes SMs as best-effort kernels there end.
///   A *bounded* latency-critical tenant ([`Share::bounded`], one whose quota already meets
///   its objective) runs on its window instead, like a best-effort tenant but at high
///   priority and never borrowing.
/// - windows are for lasting contention: while an active best-effort tenant does not stay busy
///   ([`Demand::sustained`]: a tenant serving arrivals that leave it idle between requests),
///   every kernel runs on the whole device at its owner's priority, since windows would only
///   keep the others off SMs it leaves free — and keep it, when its arrivals come, off SMs
///   the others do not need (a latency-critical tenant among them too: its kernels, at high
///   priority, take each SM as the block running there ends); a tenant alone that does not
///   stay busy does not borrow either. Windows come only once every contending best-effort
///   tenant stays busy, as closed loops and saturated open loops do (a latency-critical
///   tenant's SMs are its own whenever it has work, [`Policy::guaranteed`]: its duty decides
///   nobody's window).
///
/// A best-effort kernel gets its tenant's whole window (its grid then sized for that window).
///
/// With the tenants' [`Speeds`] ([`KrispShare::with_speeds`]), what the quotas leave is split
/// among the tenants that take it so as to maximize Σ log speed (proportional fairness: a
/// tenant whose requests barely speed up on more SMs gives them to one whose requests do),
/// instead of in equal parts.
#[derive(Debug, Clone, Default)]
pub struct KrispShare {
    /// Tenant `i`'s share at index `i`; tenants beyond it are best-effort without a quota.
    pub shares: Vec<Share>,
    /// Tenant `i`'s speeds at index `i`, where known.
    speeds: Vec<Option<Speeds>>,
    /// Every active set's layout by speeds, made once.
    table: Option<Layouts>,
}

impl KrispShare {
    /// Shares without speeds: what quotas leave goes in equal parts.
    pub fn new(shares: Vec<Share>) -> KrispShare {
        KrispShare { shares, speeds: Vec::new(), table: None }
    }

    /// Shares for `tenants` tenants on `topo`, with what quotas leave sized by the tenants'
    /// speeds (`speeds[i]` for tenant `i`; empty: in equal parts) where every tenant that
    /// takes it has speeds. The layout of every active set is made here, once, so the launch
    /// path only looks it up; beyond [`TABLE_TENANTS`] tenants it is computed per launch, in
    /// equal parts, as by [`KrispShare::new`].
    pub fn with_speeds(shares: Vec<Share>, speeds: Vec<Option<Speeds>>, tenants: u32, topo: &Topology) -> KrispShare {
        let mut p = KrispShare { shares, speeds, table: None };
        let n = (p.shares.len() as u32).max(tenants);
        if n == 0 || n > TABLE_TENANTS {
            return p;
        }
        // Every tenant's home, once; then each active set's windows from them.
        let mut home = [0u32; 64];
        p.homes(n, topo.groups, &mut home, true);
        let by_set = (0..1u64 << n)
            .map(|set| {
                let mut out = [None; 64];
                p.arrange(set, &home, topo.groups, &mut out, true);
                out[..n as usize].to_vec()
            })
            .collect();
        p.table = Some(Layouts { tenants: n, groups: topo.groups, by_set });
        p
    }

    fn share(&self, t: usize) -> Share {
        self.shares.get(t).copied().unwrap_or_default()
    }

    /// The windows of the tenants in `active` (a bit per tenant id) out of `tenants` tenants,
    /// side by side from group 0, latency-critical tenants first, each in id order; `None` for
    /// the others. Each active tenant gets its home's groups ([`KrispShare::home`]); the homes of
    /// idle tenants go in equal parts to the active best-effort tenants (to the
    /// latency-critical ones if none is active).
    pub fn layout(&self, active: u64, tenants: u32, groups: u32) -> Vec<Option<GroupRange>> {
        let mut out = [None; 64];
        self.lay(active, tenants, groups, &mut out);
        out[..(64 - active.leading_zeros()) as usize].to_vec()
    }

    /// Groups each tenant of `set` gets when exactly `set` contends for `groups` groups, by
    /// tenant id: quotas are cut (largest first, never below one group) until every tenant
    /// has a group; what they leave goes in equal parts to the tenants without a quota, or
    /// else to the best-effort ones (the latency-critical ones if none).
    fn sizes(&self, set: u64, groups: u32, count: &mut [u32; 64], by_speed: bool) {
        let n = set.count_ones();
        let mut open = 0u32;
        for t in ids(set) {
            match self.share(t).quota {
                Some(q) => count[t] = q.clamp(1, groups),
                None => open += 1,
            }
        }
        if n <= groups {
            cut_to_fit(set, count, groups - open);
        }
        let left = groups.saturating_sub(ids(set).map(|t| count[t]).sum());
        let critical = self.critical_set() & set;
        let takers = if open > 0 {
            ids(set).filter(|&t| self.share(t).quota.is_none()).fold(0u64, |m, t| m | 1 << t)
        } else if critical != set {
            set & !critical
        } else {
            set
        };
        self.hand_out(set, takers, count, left, by_speed);
    }

    /// Hands `left` groups to `takers` of `set` (their sizes so far in `size`, by id): by
    /// their speeds ([`share_out`]) with `by_speed` where every taker has them, else in equal
    /// parts (the lowest ids first with the odd ones).
    fn hand_out(&self, set: u64, takers: u64, size: &mut [u32; 64], left: u32, by_speed: bool) {
        if by_speed {
            let tk: Vec<usize> = ids(takers).collect();
            let sp: Option<Vec<&Speeds>> = tk.iter().map(|&t| self.speeds.get(t).and_then(Option::as_ref)).collect();
            let critical = self.critical_set() & set;
            let last = ids(set & !critical).last().or(ids(critical).last());
            if let Some(extra) = sp.zip(last).and_then(|(sp, last)| share_out(&tk, &sp, size, left, last)) {
                for (t, x) in tk.into_iter().zip(extra) {
                    size[t] += x;
                }
                return;
            }
        }
        let k = takers.count_ones();
        for (j, t) in ids(takers).enumerate() {
            size[t] += left / k + u32::from((j as u32) < left % k);
        }
    }

    /// Every tenant's home size (`count`, by id) when the `tenants` tenants (at least) all
    /// contend.
    fn homes(&self, tenants: u32, groups: u32, count: &mut [u32; 64], by_speed: bool) {
        self.sizes(self.everyone(tenants), groups, count, by_speed);
    }

    /// The windows of `active`, given every tenant's home size (`home`, by id), into `out`:
    /// each active tenant gets its home's size, the idle tenants' groups go in equal parts to
    /// the active best-effort tenants (to every active one if none is best-effort), laid side
    /// by side from group 0, latency-critical tenants first.
    fn arrange(&self, active: u64, home: &[u32; 64], groups: u32, out: &mut [Option<GroupRange>; 64], by_speed: bool) {
        let critical = self.critical_set() & active;
        let order = || ids(critical).chain(ids(active & !critical));
        let k = active.count_ones();
        if k == 0 || groups == 0 {
            return;
        }
        if k > groups {
            // More contenders than groups: one group each, in turn.
            for (i, t) in order().enumerate() {
                out[t] = Some(GroupRange { first: i as u32 % groups, count: 1 });
            }
            return;
        }
        let mut size = [0u32; 64];
        for t in ids(active) {
            size[t] = home[t].clamp(1, groups);
        }
        // Homes of more tenants than groups can add up to more than the device.
        cut_to_fit(active, &mut size, groups);
        let spare = groups.saturating_sub(ids(active).map(|t| size[t]).sum());
        let takers = if critical != active { active & !critical } else { active };
        self.hand_out(active, takers, &mut size, spare, by_speed);
        // The sizes now add up to the groups exactly.
        let mut first = 0;
        for t in order() {
            out[t] = Some(GroupRange { first, count: size[t] });
            first += size[t];
        }
    }

    /// [`KrispShare::layout`] into `out`, without allocating (it runs on the launch path):
    /// looked up when sized by speeds.
    fn lay(&self, active: u64, tenants: u32, groups: u32, out: &mut [Option<GroupRange>; 64]) {
        let n = (self.shares.len() as u32).max(tenants).max(64 - active.leading_zeros()).min(64);
        if let Some(t) = self.table.as_ref().filter(|t| t.tenants == n && t.groups == groups) {
            for (o, w) in out.iter_mut().zip(&t.by_set[active as usize]) {
                *o = *w;
            }
            return;
        }
        let mut home = [0u32; 64];
        self.homes(n, groups, &mut home, false);
        self.arrange(active, &home, groups, out, false);
    }

    /// Every window tenant `t` can get beside others (out of `tenants` tenants, any of the
    /// others contending), smaller than the device, without repeats: what a plan set of `t`
    /// needs besides the whole device. A latency-critical tenant that is not bounded needs
    /// none (it always runs on the whole device); beyond [`TABLE_TENANTS`] tenants, only its
    /// home.
    pub fn windows(&self, t: TenantId, tenants: u32, groups: u32) -> Vec<GroupRange> {
        let t = t.min(63);
        if self.on_whole_device(t as usize) {
            return Vec::new();
        }
        let n = (self.shares.len() as u32).max(tenants).max(t + 1).min(64);
        if n > TABLE_TENANTS {
            return vec![self.home(t, n, groups)];
        }
        let others: Vec<u32> = (0..n).filter(|&o| o != t).collect();
        let mut out: Vec<GroupRange> = Vec::new();
        for subset in 1u64..1 << others.len() {
            let active = others
                .iter()
                .enumerate()
                .filter(|(i, _)| subset & (1 << i) != 0)
                .fold(1u64 << t, |m, (_, &o)| m | 1 << o);
            let mut lay = [None; 64];
            self.lay(active, n, groups, &mut lay);
            if let Some(w) = lay[t as usize].filter(|w| w.count < groups && !out.contains(w)) {
                out.push(w);
            }
        }
        out
    }

    /// Whether tenant `t` is latency-critical.
    fn critical(&self, t: usize) -> bool {
        self.share(t).class == PriorityClass::LatencyCritical
    }

    /// Whether tenant `t`'s kernels always run on the whole device: latency-critical and not
    /// bounded.
    fn on_whole_device(&self, t: usize) -> bool {
        self.critical(t) && !self.share(t).bounded
    }

    /// The window tenant `t` owns: its window when every one of `tenants` tenants contends.
    pub fn home(&self, t: TenantId, tenants: u32, groups: u32) -> GroupRange {
        let t = t.min(63) as usize;
        let mut out = [None; 64];
        self.lay(self.everyone(tenants.max(t as u32 + 1)), tenants.max(t as u32 + 1), groups, &mut out);
        out[t].expect("t is in the set")
    }

    /// The set of every tenant when (at least) `tenants` tenants share the device.
    fn everyone(&self, tenants: u32) -> u64 {
        let n = (self.shares.len() as u32).max(tenants).min(64);
        if n >= 64 {
            u64::MAX
        } else {
            (1u64 << n) - 1
        }
    }

    /// The latency-critical tenants, a bit per id.
    fn critical_set(&self) -> u64 {
        self.shares
            .iter()
            .take(64)
            .enumerate()
            .filter(|(_, s)| s.class == PriorityClass::LatencyCritical)
            .fold(0, |m, (t, _)| m | 1 << t)
    }

    /// Whether a best-effort kernel of `tenant` on window `w` borrows: `w` reaches beyond what
    /// the tenant owns (a latency-critical tenant never borrows).
    fn borrows(&self, tenant: TenantId, load: &GroupLoad, topo: &Topology, w: GroupRange) -> bool {
        let tenant = tenant.min(63);
        if self.critical(tenant as usize) {
            return false;
        }
        !self.home(tenant, load.tenants(), topo.groups).contains(&w)
    }

    /// Where a kernel of the demand's tenant runs now, and whether it borrows.
    fn now(&self, d: &Demand, load: &GroupLoad, topo: &Topology) -> (Region, bool) {
        let tenant = d.tenant.min(63);
        let active = d.active | load.active_set() | 1 << tenant;
        let critical = self.critical(tenant as usize);
        if self.on_whole_device(tenant as usize) || active == 1 << tenant {
            // Alone, a tenant that stays busy borrows the others' SMs (short blocks at the least
            // priority, so an owner coming back gets them within a block); one that comes and
            // goes keeps its own priority, as it does beside others that come and go.
            return (Region::Whole, !critical && d.sustained);
        }
        if !d.sustained {
            // Contention that comes and goes (a contender is idle between its requests): no one
            // needs a window, and sharing every SM block by block lets each use what the others
            // leave; a latency-critical kernel, at high priority, takes each SM as the block
            // running there ends.
            return (Region::Whole, false);
        }
        let (mut now, mut owned) = ([None; 64], [None; 64]);
        let n = load.tenants().max(64 - active.leading_zeros());
        self.lay(active, n, topo.groups, &mut now);
        self.lay(self.everyone(n), n, topo.groups, &mut owned);
        let (w, own) = (now[tenant as usize].expect("active"), owned[tenant as usize].expect("a tenant"));
        let borrowed = !critical && !own.contains(&w);
        let region = if w.count >= topo.groups { Region::Whole } else { Region::Groups(w) };
        (region, borrowed)
    }
}

/// Cuts the largest of the sizes of `set` (by id, the highest id first on ties) by a group
/// at a time until they add up to at most `budget`; a size of one group is cut only when all
/// are (so with no fewer groups than members, none goes below one).
fn cut_to_fit(set: u64, size: &mut [u32; 64], budget: u32) {
    while ids(set).map(|t| size[t]).sum::<u32>() > budget {
        match ids(set).filter(|&t| size[t] > 0).max_by_key(|&t| (size[t], std::cmp::Reverse(t))) {
            Some(largest) => size[largest] -= 1,
            None => return,
        }
    }
}

/// Splits `left` groups among the takers `tk` (their speeds `sp`, sizes so far `size` by id)
/// to maximize Σ log speed, each taker with no groups yet getting at least one; `last` is laid
/// last and has the split's remaining SMs too. Exact (dynamic programming over takers and
/// groups), so steps in the speed curves do not trap it.
fn share_out(tk: &[usize], sp: &[&Speeds], size: &[u32; 64], left: u32, last: usize) -> Option<Vec<u32>> {
    let (m, r) = (tk.len(), left as usize);
    // best[j][x]: the best sum over the first j takers using x groups; pick[j][x]: taker j-1's.
    let mut best = vec![vec![f64::NEG_INFINITY; r + 1]; m + 1];
    let mut pick = vec![vec![0u32; r + 1]; m + 1];
    best[0][0] = 0.0;
    for j in 0..m {
        let t = tk[j];
        let lo = u32::from(size[t] == 0) as usize;
        for used in 0..=r {
            if best[j][used] == f64::NEG_INFINITY {
                continue;
            }
            for x in lo..=r - used {
                let v = best[j][used] + sp[j].on(size[t] + x as u32, t == last).max(f64::MIN_POSITIVE).ln();
                if v > best[j + 1][used + x] {
                    best[j + 1][used + x] = v;
                    pick[j + 1][used + x] = x as u32;
                }
            }
        }
    }
    // Every group is handed out; none if some taker would be left without a group.
    if best[m][r] == f64::NEG_INFINITY {
        return None;
    }
    let (mut used, mut out) = (r, vec![0u32; m]);
    for j in (1..=m).rev() {
        out[j - 1] = pick[j][used];
        used -= pick[j][used] as usize;
    }
    Some(out)
}

/// The tenant ids of a set (a bit per id), ascending.
fn ids(mut set: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (set != 0).then(|| {
            let t = set.trailing_zeros() as usize;
            set &= set - 1;
            t
        })
    })
}

impl Policy for KrispShare {
    fn name(&self) -> &'static str {
        "krisp"
    }
    fn place(&self, d: &Demand, load: &GroupLoad, topo: &Topology, allowed: GroupRange) -> Decision {
        let high = d.class == PriorityClass::LatencyCritical;
        let (region, borrowed) = if allowed.count < topo.groups {
            // Within a window (capturing a plan there): the window, borrowed where it reaches
            // beyond what the tenant owns.
            (Region::Groups(allowed), self.borrows(d.tenant, load, topo, allowed))
        } else {
            self.now(d, load, topo)
        };
        let blocks = if borrowed { Blocks::Short } else { Blocks::Resident };
        Decision::Run { region, high_priority: high, borrowed, blocks }
    }
    fn reads_load(&self) -> bool {
        // Which tenants are active comes with the demand: no kernel is tracked.
        false
    }
    fn guaranteed(&self) -> u64 {
        self.critical_set()
    }
    fn pick_plan(&self, d: &Demand, load: &GroupLoad, topo: &Topology, regions: &[Region]) -> (usize, bool) {
        let (now, now_borrowed) = self.now(d, load, topo);
        let target = span(now, topo);
        let overlap = |r: &Region| {
            let g = span(*r, topo);
            g.end().min(target.end()).saturating_sub(g.first.max(target.first))
        };
        // Most groups in common with where it runs now; the smaller plan on ties.
        let i = (0..regions.len())
            .max_by_key(|&i| {
                (overlap(&regions[i]), std::cmp::Reverse(span(regions[i], topo).count), std::cmp::Reverse(i))
            })
            .unwrap_or(0);
        let borrowed = regions.get(i).is_some_and(|&r| {
            if span(r, topo) == target {
                now_borrowed
            } else {
                self.borrows(d.tenant, load, topo, span(r, topo))
            }
        });
        (i, borrowed)
    }
}

/// The groups of a region.
fn span(r: Region, topo: &Topology) -> GroupRange {
    match r {
        Region::Whole => GroupRange { first: 0, count: topo.groups },
        Region::Groups(g) => g,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOPO: Topology = Topology { groups: 15, granularity: 8, rest_sms: 12 };
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

    #[test]
    fn static_uses_each_tenants_window() {
        let w = GroupRange { first: 5, count: 4 };
        let p = Static { windows: vec![None, Some(w)] };
        let load = GroupLoad::new(TOPO.groups, TENANTS);
        assert_eq!(groups(p.decide(&demand(1, Some(8)), &load, &TOPO)), Some(w));
        assert_eq!(p.decide(&demand(0, Some(8)), &load, &TOPO), Decision::run(Region::Whole, false));
    }

    fn share(lc: bool, quota: Option<u32>) -> Share {
        Share {
            class: if lc { PriorityClass::LatencyCritical } else { PriorityClass::BestEffort },
            quota,
            bounded: false,
        }
    }

    #[test]
    fn shares_lay_out_the_contending_tenants_side_by_side() {
        let p =
            KrispShare::new(vec![share(false, None), share(true, Some(4)), share(false, Some(2)), share(false, None)]);
        let w = |first, count| Some(GroupRange { first, count });
        // Everyone: the latency-critical quota first, then tenant 0, 2 (its quota) and 3.
        assert_eq!(p.layout(0b1111, 4, 15), vec![w(4, 5), w(0, 4), w(9, 2), w(11, 4)]);
        // Tenant 3 idle: its groups go in equal parts to the active best-effort tenants.
        assert_eq!(p.layout(0b0111, 4, 15), vec![w(4, 7), w(0, 4), w(11, 4)]);
        // The latency-critical tenant keeps its quota; the best-effort one takes the rest.
        assert_eq!(p.layout(0b0110, 4, 15), vec![None, w(0, 4), w(4, 11)]);
        // Only the latency-critical tenant among the active: it takes everything idle.
        assert_eq!(p.layout(0b0010, 4, 15), vec![None, w(0, 15)]);
        // Quotas larger than the device are cut, largest first, leaving each contender a group.
        let big = KrispShare::new(vec![share(false, Some(14)), share(false, Some(14)), share(false, None)]);
        assert_eq!(big.layout(0b111, 3, 15), vec![w(0, 7), w(7, 7), w(14, 1)]);
        // More contenders than groups: a group each, in turn.
        let many = KrispShare::default();
        assert_eq!(many.layout(0b111, 3, 2), vec![w(0, 1), w(1, 1), w(0, 1)]);
        assert_eq!(p.home(3, 4, 15), GroupRange { first: 11, count: 4 });
        // Tenant 2's windows beside any others: its home among them; none for the LC tenant.
        let ws = p.windows(2, 4, 15);
        assert!(ws.contains(&p.home(2, 4, 15)) && ws.iter().all(|w| w.count < 15), "{ws:?}");
        assert!(p.windows(1, 4, 15).is_empty());
    }

    #[test]
    fn shares_follow_the_load() {
        let p = KrispShare::new(vec![share(true, Some(4)), share(false, None), share(false, None)]);
        let mut load = GroupLoad::new(TOPO.groups, 3);
        let be = |t| Demand::new(t, PriorityClass::BestEffort, None, 1024);
        let lc = Demand::new(0, PriorityClass::LatencyCritical, None, 1024);
        // Alone: the whole device; a best-effort tenant borrows it, the latency-critical one owns it.
        assert_eq!(
            p.decide(&be(1), &load, &TOPO),
            Decision::Run { region: Region::Whole, high_priority: false, borrowed: true, blocks: Blocks::Short }
        );
        assert_eq!(
            p.decide(&lc, &load, &TOPO),
            Decision::Run { region: Region::Whole, high_priority: true, borrowed: false, blocks: Blocks::Resident }
        );
        // Tenant 2 busy: tenant 1 gets the groups the idle latency-critical tenant owns too (borrowed).
        load.acquire(Region::Groups(GroupRange { first: 0, count: 3 }), 2);
        let g = GroupRange { first: 0, count: 8 };
        assert_eq!(
            p.decide(&be(1), &load, &TOPO),
            Decision::Run { region: Region::Groups(g), high_priority: false, borrowed: true, blocks: Blocks::Short }
        );
        // All three busy: the best-effort tenants on their own windows, off the latency-critical
        // quota's groups, nothing borrowed (one block per SM slot); the latency-critical one on
        // the whole device at high priority.
        load.acquire(Region::Whole, 0);
        load.acquire(Region::Groups(g), 1);
        let owned = |first, count| Decision::run(Region::Groups(GroupRange { first, count }), false);
        assert_eq!(p.decide(&lc, &load, &TOPO), p.decide(&lc, &GroupLoad::new(TOPO.groups, 3), &TOPO));
        assert_eq!(p.decide(&be(1), &load, &TOPO), owned(4, 6));
        assert_eq!(p.decide(&be(2), &load, &TOPO), owned(10, 5));
        // The same without a latency-critical tenant.
        let plain = KrispShare::new(vec![share(false, None), share(false, None)]);
        let both = Demand { active: 0b11, ..be(1) };
        let two = GroupLoad::new(TOPO.groups, 2);
        assert_eq!(plain.decide(&both, &two, &TOPO), Decision::run(Region::Groups(plain.home(1, 2, 15)), false));
        // Within a window (a plan's capture), the window: owned, or borrowed beyond its home.
        let home = p.home(1, 3, TOPO.groups);
        assert_eq!(p.place(&be(1), &GroupLoad::new(TOPO.groups, 3), &TOPO, home), owned(home.first, home.count));
        assert_eq!(
            p.place(&be(1), &GroupLoad::new(TOPO.groups, 3), &TOPO, g),
            Decision::Run { region: Region::Groups(g), high_priority: false, borrowed: true, blocks: Blocks::Short }
        );
        // Activity the runtime reports with the demand counts as kernels in flight do.
        let told = Demand { active: 0b101, ..be(1) };
        assert_eq!(p.decide(&told, &GroupLoad::new(TOPO.groups, 3), &TOPO), p.decide(&be(1), &load, &TOPO));
        // Plans: the whole device alone (borrowed), its own window when others contend.
        let regions = [Region::Whole, Region::Groups(home)];
        assert_eq!(p.pick_plan(&be(1), &GroupLoad::new(TOPO.groups, 3), &TOPO, &regions), (0, true));
        assert_eq!(p.pick_plan(&be(1), &load, &TOPO, &regions), (1, false));
        let wider = [Region::Whole, Region::Groups(home), Region::Groups(g)];
        let lc_idle = Demand { active: 0b110, ..be(1) };
        assert_eq!(p.pick_plan(&lc_idle, &GroupLoad::new(TOPO.groups, 3), &TOPO, &wider), (2, true));
    }

    #[test]
    fn tenants_that_come_and_go_share_the_whole_device() {
        let be =
            |t, sustained| Demand { active: 0b111, sustained, ..Demand::new(t, PriorityClass::BestEffort, None, 64) };
        let idle = GroupLoad::new(TOPO.groups, 3);
        let plain = KrispShare::new(vec![share(false, None); 3]);
        // None stays busy: contention comes and goes, so no windows.
        assert_eq!(plain.decide(&be(1, false), &idle, &TOPO), Decision::run(Region::Whole, false));
        // One of them stays busy: windows.
        let home = Decision::run(Region::Groups(plain.home(1, 3, TOPO.groups)), false);
        assert_eq!(plain.decide(&be(1, true), &idle, &TOPO), home);
        // Alone: the whole device, owned (its own priority, resident blocks); a tenant that stays
        // busy borrows it instead, so owners coming back get their SMs within a block.
        let alone = |sustained| Demand { active: 0, ..be(1, sustained) };
        assert_eq!(plain.decide(&alone(false), &idle, &TOPO), Decision::run(Region::Whole, false));
        assert_eq!(
            plain.decide(&alone(true), &idle, &TOPO),
            Decision::Run { region: Region::Whole, high_priority: false, borrowed: true, blocks: Blocks::Short }
        );
        // A latency-critical tenant among them too: it goes out at high priority on the whole
        // device, the best-effort ones on it at theirs; once one stays busy, windows, with the
        // latency-critical tenant's quota kept free.
        let lc = KrispShare::new(vec![share(true, Some(4)), share(false, None), share(false, None)]);
        assert_eq!(lc.decide(&be(1, false), &idle, &TOPO), Decision::run(Region::Whole, false));
        let critical = Demand { class: PriorityClass::LatencyCritical, ..be(0, false) };
        assert_eq!(lc.decide(&critical, &idle, &TOPO), Decision::run(Region::Whole, true));
        let Decision::Run { region: Region::Groups(w), .. } = lc.decide(&be(1, true), &idle, &TOPO) else {
            panic!("a window once one stays busy")
        };
        assert!(w.first >= 4, "{w:?} overlaps the latency-critical quota");
    }

    #[test]
    fn latency_critical_tenants_duties_decide_no_window() {
        let p = KrispShare::new(vec![share(false, None), share(true, Some(32)), share(false, None), share(true, None)]);
        assert_eq!(p.guaranteed(), 0b1010);
        assert_eq!(Prioritized { inner: Full, reserved_groups: 0 }.guaranteed(), 0);
    }

    #[test]
    fn duty_is_the_busy_share_of_recent_requests() {
        let mut closed = Duty::default();
        assert_eq!(closed.value(), 1.0, "a new tenant counts as busy");
        for _ in 0..20 {
            closed.cycle(0.000_01, 0.001);
        }
        assert!(closed.value() > 0.95, "{closed:?}");
        // Busy 6 ms every 28 ms: about a fifth of the time.
        let mut open = Duty::default();
        for _ in 0..40 {
            open.cycle(0.022, 0.006);
        }
        assert!((open.value() - 6.0 / 28.0).abs() < 0.01, "{open:?}");
        assert!(open.value() < SUSTAINED && closed.value() >= SUSTAINED);
        // Back to a closed loop after a long pause (which weighs like a request busy a fifth of
        // its time): sustained again within sixteen requests.
        open.cycle(10.0, 0.006);
        for _ in 0..16 {
            open.cycle(0.0, 0.006);
        }
        assert!(open.value() >= SUSTAINED, "{open:?}");
        // A request of no time changes nothing.
        let before = open;
        open.cycle(0.0, 0.0);
        assert_eq!(open, before);
    }

    #[test]
    fn speeds_size_the_windows() {
        let sms: Vec<u32> = (1..=15).map(|g| g * 8).chain([132]).collect();
        // A prefill that scales with SMs, and a decoder whose requests barely do.
        let linear: Vec<(u32, f64)> = sms.iter().map(|&s| (s, 13_200.0 / f64::from(s))).collect();
        let flat: Vec<(u32, f64)> = sms.iter().map(|&s| (s, 100.0 + 1_320.0 / f64::from(s))).collect();
        let (lin, fl) = (Speeds::from_times(&linear, &TOPO).unwrap(), Speeds::from_times(&flat, &TOPO).unwrap());
        assert!((lin.on(15, true) - 1.0).abs() < 1e-12 && (lin.on(8, false) - 64.0 / 132.0).abs() < 1e-12);
        // Between profiled counts, interpolated: 7 groups and the 12 remaining SMs are 68 SMs.
        assert!((fl.on(7, true) - 110.0 / (100.0 + 0.5 * (1320.0 / 64.0 + 1320.0 / 72.0))).abs() < 1e-12);
        assert_eq!(Speeds::from_times(&linear[..1], &TOPO), None);
        let be = vec![share(false, None), share(false, None)];
        let p = KrispShare::with_speeds(be.clone(), vec![Some(lin.clone()), Some(fl.clone())], 2, &TOPO);
        let lay = p.layout(0b11, 2, 15);
        let (a, b) = (lay[0].unwrap(), lay[1].unwrap());
        assert!(a.count > b.count + 3, "the prefill gets most of the device: {lay:?}");
        assert_eq!((a.first, b.first, a.count + b.count), (0, a.count, 15));
        // The same speeds for both: the equal split of KrispShare::new.
        let same = KrispShare::with_speeds(be.clone(), vec![Some(lin.clone()), Some(lin)], 2, &TOPO);
        assert_eq!(same.layout(0b11, 2, 15), KrispShare::new(be).layout(0b11, 2, 15));
        // Alone, every tenant still gets the whole device; homes follow the sized layout.
        assert_eq!(p.layout(0b10, 2, 15), vec![None, Some(GroupRange { first: 0, count: 15 })]);
        assert_eq!(p.home(1, 2, 15), b);
        // A tenant without speeds among the takers: equal parts.
        let unknown = KrispShare::with_speeds(vec![share(false, None); 2], vec![Some(fl), None], 2, &TOPO);
        assert_eq!(unknown.layout(0b11, 2, 15), KrispShare::new(vec![share(false, None); 2]).layout(0b11, 2, 15));
    }

    #[test]
    fn borrowed_kernels_launch_short_blocks() {
        assert_eq!(spread_grid(10_000, 132, 1), 8 * 132);
        assert_eq!(spread_grid(100, 132, 2), 100);
        assert_eq!(spread_grid(0, 8, 1), 1);
        assert_eq!(priority_level(false, true), 0);
        assert_eq!(priority_level(false, false), 1);
        assert_eq!(priority_level(true, true), 2);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Launch { tenant: u32, min_sms: Option<u32>, lc: bool, units: u64, sustained: bool },
        Complete(usize),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        let launch = (0..TENANTS, proptest::option::of(1u32..140), any::<bool>(), 1u64..200, any::<bool>())
            .prop_map(|(tenant, min_sms, lc, units, sustained)| Op::Launch { tenant, min_sms, lc, units, sustained });
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
            Box::new(KrispShare::new(vec![share(true, Some(3)), share(false, None), share(false, Some(5))])),
        ]
    }

    #[test]
    fn a_bounded_latency_critical_tenant_runs_on_its_window() {
        let bounded = Share { bounded: true, ..share(true, Some(4)) };
        let p = KrispShare::new(vec![bounded, share(false, None), share(false, None)]);
        let lc = Demand::new(0, PriorityClass::LatencyCritical, None, 1024);
        let run = |first, count| Decision::Run {
            region: Region::Groups(GroupRange { first, count }),
            high_priority: true,
            borrowed: false,
            blocks: Blocks::Resident,
        };
        // Alone: the whole device, never borrowed.
        assert_eq!(
            p.decide(&lc, &GroupLoad::new(TOPO.groups, 3), &TOPO),
            Decision::Run { region: Region::Whole, high_priority: true, borrowed: false, blocks: Blocks::Resident }
        );
        // Every tenant busy: its quota, at high priority; the others off it.
        let all = Demand { active: 0b111, ..lc };
        assert_eq!(p.decide(&all, &GroupLoad::new(TOPO.groups, 3), &TOPO), run(0, 4));
        let be = Demand { active: 0b111, ..Demand::new(1, PriorityClass::BestEffort, None, 1024) };
        assert_eq!(
            p.decide(&be, &GroupLoad::new(TOPO.groups, 3), &TOPO),
            Decision::run(Region::Groups(GroupRange { first: 4, count: 6 }), false)
        );
        // Its windows are a plan set's, as for a best-effort tenant.
        assert!(p.windows(0, 3, TOPO.groups).contains(&GroupRange { first: 0, count: 4 }));
        // Without the bound: the whole device whoever is busy.
        let whole = KrispShare::new(vec![share(true, Some(4)), share(false, None), share(false, None)]);
        assert_eq!(
            whole.decide(&all, &GroupLoad::new(TOPO.groups, 3), &TOPO),
            p.decide(&lc, &GroupLoad::new(TOPO.groups, 3), &TOPO)
        );
    }

    fn shares_strategy() -> impl Strategy<Value = (Vec<Share>, u64)> {
        let one = (any::<bool>(), proptest::option::of(1u32..20), any::<bool>()).prop_map(|(lc, quota, bounded)| {
            Share { class: if lc { PriorityClass::LatencyCritical } else { PriorityClass::BestEffort }, quota, bounded }
        });
        (proptest::collection::vec(one, 1..10), any::<u64>())
    }

    /// The invariants of [`krisp_layouts_partition_the_groups`] for one policy.
    fn check_layouts(p: &KrispShare, shares: &[Share], bits: u64, groups: u32) -> Result<(), TestCaseError> {
        let n = shares.len() as u32;
        let active = bits & ((1u64 << n) - 1);
        let lay = p.layout(active, n, groups);
        let windows: Vec<(usize, GroupRange)> = lay.iter().enumerate().filter_map(|(t, w)| w.map(|w| (t, w))).collect();
        prop_assert_eq!(windows.len() as u32, active.count_ones());
        if active.count_ones() <= groups && active != 0 {
            let mut covered = vec![0u32; groups as usize];
            for (_, w) in &windows {
                prop_assert!(w.count >= 1 && w.end() <= groups, "{w:?}");
                for g in w.first..w.end() {
                    covered[g as usize] += 1;
                }
            }
            prop_assert!(covered.iter().all(|&c| c == 1), "{covered:?} for {windows:?}");
            let lc_end = windows
                .iter()
                .filter(|(t, _)| shares[*t].class == PriorityClass::LatencyCritical)
                .map(|(_, w)| w.end())
                .max();
            let be_first = windows
                .iter()
                .filter(|(t, _)| shares[*t].class != PriorityClass::LatencyCritical)
                .map(|(_, w)| w.first)
                .min();
            if let (Some(a), Some(b)) = (lc_end, be_first) {
                prop_assert!(a <= b, "latency-critical windows first: {windows:?}");
            }
        }
        if n <= groups {
            for t in 0..n {
                let home = p.home(t, n, groups);
                prop_assert!(home.count >= 1 && home.end() <= groups);
                if !p.on_whole_device(t as usize) {
                    let ws = p.windows(t, n, groups);
                    for o in 1u64..(1 << n) {
                        let set = o | 1 << t;
                        if let Some(w) = p.layout(set, n, groups)[t as usize] {
                            prop_assert!(w.count >= groups || ws.contains(&w), "{w:?} not among {ws:?}");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    proptest! {
        /// Any shares and any active set: the windows of the active tenants are disjoint, lie
        /// within the groups, give each one at least a group, cover every group, and put the
        /// latency-critical tenants first; each tenant's window holds its home when it is
        /// alone among those that own more, and a plan set holds every window it can get.
        #[test]
        fn krisp_layouts_partition_the_groups(
            (shares, bits) in shares_strategy(),
            groups in 1u32..20,
            curves in proptest::collection::vec(proptest::option::of(proptest::collection::vec(1.0f64..100.0, 21)), 10),
        ) {
            let n = shares.len() as u32;
            // Without speeds, and with random request curves for some tenants.
            let topo = Topology { groups, granularity: 8, rest_sms: 12 };
            let speeds = curves[..n as usize]
                .iter()
                .map(|c| {
                    let times: Option<Vec<(u32, f64)>> = c.as_ref().map(|c| (1..=groups + 1).map(|g| (g * 8, c[g as usize])).collect());
                    times.and_then(|t| Speeds::from_times(&t, &topo))
                })
                .collect();
            for p in [KrispShare::new(shares.clone()), KrispShare::with_speeds(shares.clone(), speeds, n, &topo)] {
                check_layouts(&p, &shares, bits, groups)?;
            }
        }
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
                        Op::Launch { tenant, min_sms, lc, units, sustained } => {
                            let class = if lc { PriorityClass::LatencyCritical } else { PriorityClass::BestEffort };
                            let d = Demand { tenant, class, min_sms, units, current: current[tenant as usize], active: 0, sustained };
                            match p.decide(&d, &load, &TOPO) {
                                Decision::Run { region, high_priority, borrowed, blocks } => {
                                    prop_assert!(blocks == Blocks::Resident || p.name() == "krisp", "only krisp spreads");
                                    prop_assert!(!borrowed || blocks == Blocks::Short, "borrowed kernels launch short blocks");
                                    // With no active tenant staying busy, every kernel shares the whole
                                    // device, owned.
                                    let shares_all = !sustained;
                                    if p.name() == "krisp" && shares_all {
                                        prop_assert!(region == Region::Whole && !borrowed && blocks == Blocks::Resident, "{d:?} on {region:?}");
                                    } else if p.name() == "krisp" {
                                        // Alone: the whole device. Owned: within what it owns when all contend.
                                        let alone = load.active_set() & !(1 << tenant) == 0;
                                        prop_assert!(!alone || region == Region::Whole, "{d:?} alone on {region:?}");
                                        let home = KrispShare::new(vec![share(true, Some(3)), share(false, None), share(false, Some(5))]).home(tenant, TENANTS, TOPO.groups);
                                        if let (false, Region::Groups(g), false) = (alone, region, tenant == 0) {
                                            prop_assert!(borrowed || (g.first >= home.first && g.end() <= home.end()), "{g:?} outside {home:?}");
                                        }
                                    } else {
                                        prop_assert!(!borrowed, "only krisp borrows");
                                    }
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

//! The words policies and the runtime share: tenants, the device as groups of SMs, what a
//! policy knows of a launch ([`Demand`]) and what it answers ([`Decision`]).

use serde::{Deserialize, Serialize};

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
    /// Whether this tenant and every one in `active` stay busy: their [`Duty`](super::Duty) is
    /// at least [`SUSTAINED`](super::SUSTAINED) (tenants whose SMs are theirs whatever the
    /// load, [`Policy::guaranteed`](super::Policy::guaranteed), left out). While one does not,
    /// contention is short-lived.
    pub sustained: bool,
    /// Whether it is placed for a plan (captured now, or picked to replay): the plan's kernels
    /// reach the GPU together, not one launch at a time as the load changes.
    pub plan: bool,
    /// The tenants it gives way to, a bit per tenant id below 64: where one of them is
    /// latency-critical, its window is guarded against this tenant's kernels. Those whose
    /// recent requests come at least as close to their latency objectives as this tenant's
    /// do (their *pressure*, `Scheduler::pressure`), and every tenant while either has none
    /// measured: so where both are measured, the SMs in dispute go to whichever is nearer
    /// its objective.
    pub yields_to: u64,
}

impl Demand {
    /// A launch of `units` units with nothing known of the tenant's previous one or of others
    /// (counted as contention that lasts: `sustained`), launched now (not `plan`), giving
    /// way to every tenant (no pressure measured).
    pub fn new(tenant: TenantId, class: PriorityClass, min_sms: Option<u32>, units: u64) -> Demand {
        Demand {
            tenant,
            class,
            min_sms,
            units,
            current: None,
            active: 0,
            sustained: true,
            plan: false,
            yields_to: u64::MAX,
        }
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

/// Groups `first..first + count` of the device's split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupRange {
    /// First group.
    pub first: u32,
    /// Number of groups.
    pub count: u32,
}

impl GroupRange {
    /// One past the last group.
    pub fn end(&self) -> u32 {
        self.first + self.count
    }

    /// Whether the two ranges share a group.
    pub fn overlaps(&self, other: &GroupRange) -> bool {
        self.first < other.end() && other.first < self.end()
    }

    /// Whether every group of `other` is one of these.
    pub fn contains(&self, other: &GroupRange) -> bool {
        self.first <= other.first && other.end() <= self.end()
    }
}

/// The groups of a region.
pub(crate) fn span(r: Region, topo: &Topology) -> GroupRange {
    match r {
        Region::Whole => GroupRange { first: 0, count: topo.groups },
        Region::Groups(g) => g,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_kernels_launch_short_blocks() {
        assert_eq!(spread_grid(10_000, 132, 1), 8 * 132);
        assert_eq!(spread_grid(100, 132, 2), 100);
        assert_eq!(spread_grid(0, 8, 1), 1);
        assert_eq!(priority_level(false, true), 0);
        assert_eq!(priority_level(false, false), 1);
        assert_eq!(priority_level(true, true), 2);
    }
}

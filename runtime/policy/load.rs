//! What is in flight and how busy each tenant stays: the state policies read.

use super::{Region, TenantId};

/// The weight of each request in a tenant's [`Duty`]: about the last four count.
pub const DUTY_WEIGHT: f64 = 0.25;

/// The most idle time one request counts in a [`Duty`], in multiples of its busy time: one long
/// pause (a tenant back from an idle phase) weighs like a request busy a fifth of its time.
pub const DUTY_IDLE_CAP: f64 = 4.0;

/// The [`Duty`] from which a tenant counts as staying busy ([`Demand::sustained`](super::Demand::sustained)). Closed
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
        // A row per group, a count per tenant in it: no division per entry (this is on the
        // launch path of every policy that reads the load, and of krisp's, whose load is empty).
        let n = (self.tenants as usize).max(1);
        self.counts
            .chunks(n)
            .fold(0, |m, row| row.iter().take(64).enumerate().filter(|(_, &c)| c > 0).fold(m, |m, (t, _)| m | 1 << t))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

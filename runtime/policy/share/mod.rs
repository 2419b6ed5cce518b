//! The share policy, [`KrispShare`]: windows that follow the load, sized by quotas and, where
//! known, by how fast each tenant's requests run on each window ([`Speeds`]).

mod sizes;
#[cfg(test)]
mod tests;
mod trial;

use std::sync::Arc;

use sizes::{cut_to_fit, ids, share_out};
pub use sizes::{meets_on, Share, Speeds, BOUNDED_SLO_SHARE};
use trial::LayoutTrial;
pub use trial::{Stage, TRIAL_REQUESTS};

use super::{span, Blocks, Decision, Demand, GroupLoad, GroupRange, Policy, PriorityClass, Region, TenantId, Topology};

/// Every active set's windows, made once when speeds are known (at most [`TABLE_TENANTS`]).
#[derive(Debug, Clone)]
struct Layouts {
    tenants: u32,
    groups: u32,
    /// By active set (a bit per tenant id), a window per tenant id.
    by_set: Vec<Vec<Option<GroupRange>>>,
    /// By active set, the windows of equal parts where the set's layout is tried
    /// ([`LayoutTrial`]); empty for the others.
    equal_by_set: Vec<Vec<Option<GroupRange>>>,
}

/// The most tenants whose layouts [`KrispShare::with_speeds`] makes ahead (2^n sets).
pub const TABLE_TENANTS: u32 = 12;

/// Shares that follow the load (the `krisp` mode). Each tenant owns a window of groups (its
/// quota, or its part of what the quotas leave: sized by the tenants' speeds where
/// [`KrispShare::with_speeds`] has them for every taker, `krisp`; else in equal parts,
/// `krisp-equal`) while every tenant contends; the windows of the tenants with work are laid
/// side by side, latency-critical ones first. A tenant alone gets the whole device; SMs beyond
/// what a tenant owns are *borrowed*: short blocks at the least priority, so their owner gets
/// them back within a block's time. Where no windows are laid out, a latency-critical tenant's
/// window is still guarded ([`KrispShare::guarded`]).
/// The rules in full, and why: docs/architecture.md, "The share policy".
#[derive(Debug, Clone, Default)]
pub struct KrispShare {
    /// Tenant `i`'s share at index `i`; tenants beyond it are best-effort without a quota.
    pub shares: Vec<Share>,
    /// Tenant `i`'s speeds at index `i`, where known.
    speeds: Vec<Option<Speeds>>,
    /// Every active set's layout by speeds, made once.
    table: Option<Layouts>,
    /// Whether latency-critical tenants claim their SMs ([`KrispShare::claiming`]).
    claims: bool,
    /// Whether a latency-critical tenant's window is *not* kept for it where contention comes
    /// and goes ([`KrispShare::unguarded`], for comparisons; guarded by default).
    unguarded: bool,
    /// Tenant `i`'s request knee in groups at index `i`, where known
    /// ([`KrispShare::with_knees`]).
    knees: Vec<Option<u32>>,
    /// Every how many of a best-effort tenant's launches one waits while a protected
    /// latency-critical request is in flight; 0: none ([`KrispShare::hushing`]).
    hush: u32,
    /// Which layout each set of busy best-effort tenants keeps, measured, where the curves'
    /// layout and equal parts differ ([`LayoutTrial`]; `None`: the curves' layout always).
    trial: Option<Arc<LayoutTrial>>,
    /// Whether a latency-critical tenant that is not bounded runs beside others on its window,
    /// at least its knee, instead of the whole device ([`KrispShare::spilling_to_knees`]).
    spill_to_knee: bool,
    /// Whether an idle latency-critical tenant's home goes to every active best-effort tenant
    /// by speeds instead of to the one laid next to it ([`KrispShare::lending_by_speeds`]).
    lend_by_speeds: bool,
}

impl KrispShare {
    /// The same policy with latency-critical tenants claiming the SMs their work goes to, for
    /// their request ([`Policy::claims`]), each kernel on a window sized by its own curve
    /// ([`KrispShare::claimed_window`]). Not the default: on the H200 (docs/claims-h200.md,
    /// 2026-11-26) it lowered the latency-critical p99 in some runs only by taking the
    /// best-effort tenants below half their solo throughput (0.26–0.43×).
    pub fn claiming(mut self) -> KrispShare {
        self.claims = true;
        self
    }

    /// The same policy with best-effort work waiting, before the first launch of each of its
    /// tenant's requests (and plans) and every `every`-th after it, while a latency-critical
    /// tenant has a request in flight that its caller asked to protect
    /// ([`Policy::hush_every`]; 0: never). Not the default: an opt-in for comparisons
    /// (`RIGHTSIZE_HUSH=N`; docs/harness-h200.md).
    pub fn hushing(mut self, every: u32) -> KrispShare {
        self.hush = every;
        self
    }

    /// The same policy without guarding latency-critical windows where contention comes and
    /// goes: there every kernel runs on the whole device at its owner's priority, in resident
    /// blocks (the rule before 2026-11-27, kept for comparisons).
    pub fn unguarded(mut self) -> KrispShare {
        self.unguarded = true;
        self
    }

    /// The same policy with each tenant's request knee in groups (`knees[i]` for tenant `i`:
    /// the fewest on which its request runs at full speed, from its profile,
    /// `Profile::request_knee_sms`). Where contention comes and goes, a guarded latency-critical window is
    /// its knee where that is larger than its window (its quota, or its part;
    /// [`KrispShare::guarded`]): there the best-effort tenants have slack, so it gets what its
    /// requests need to run at full speed.
    pub fn with_knees(mut self, knees: Vec<Option<u32>>) -> KrispShare {
        self.knees = knees;
        self
    }

    /// The same policy with each latency-critical tenant that is not bounded
    /// ([`Share::bounded`]) running, beside others, on its window of the current layout grown
    /// to its request's knee ([`KrispShare::with_knees`]) where that is larger (from where its
    /// window starts; the whole device where that reaches it), at high priority: the best-effort
    /// blocks there give way to it as they end, the others' windows beyond its knee are left
    /// alone. Alone it runs on the whole device. (By default it runs on the whole device.)
    pub fn spilling_to_knees(mut self) -> KrispShare {
        self.spill_to_knee = true;
        self
    }

    /// The same policy keeping the curves' layout for every set, untried ([`LayoutTrial`]),
    /// as before 2026-11-30: for comparisons (`RIGHTSIZE_TRIAL=off`).
    pub fn untried(mut self) -> KrispShare {
        self.trial = None;
        if let Some(t) = self.table.as_mut() {
            t.equal_by_set = Vec::new();
        }
        self
    }

    /// The same policy with each tenant's mean request time alone on the whole device, µs
    /// (`solo_us[i]` for tenant `i`, where its caller measured it): a set whose tenants all
    /// have one is judged by Σ solo time ÷ median time on each layout (each tenant's measured
    /// speed relative to solo), the others by their curves ([`LayoutTrial`]).
    ///
    /// # Panics
    /// On a policy that was cloned (its clones share the trial, which would not see the times).
    pub fn with_solo_times(mut self, solo_us: Vec<Option<f64>>) -> KrispShare {
        if let Some(trial) = self.trial.as_mut() {
            let unique = Arc::get_mut(trial).map(|t| t.set_solo_times(solo_us)).is_some();
            assert!(unique, "with_solo_times on a clone of the policy: the solo times would not be kept");
        }
        self
    }

    /// Where the trial of the layout of `set` stands (`None`: not tried, or not begun).
    pub fn trial_stage(&self, set: u64) -> Option<Stage> {
        self.trial.as_ref()?.stage(set)
    }

    /// Shares without speeds: what quotas leave goes in equal parts.
    pub fn new(shares: Vec<Share>) -> KrispShare {
        KrispShare {
            shares,
            speeds: Vec::new(),
            table: None,
            claims: false,
            unguarded: false,
            knees: Vec::new(),
            hush: 0,
            trial: None,
            spill_to_knee: false,
            lend_by_speeds: false,
        }
    }

    /// Shares for `tenants` tenants on `topo`, with what quotas leave sized by the tenants'
    /// speeds (`speeds[i]` for tenant `i`; empty: in equal parts) where every tenant that
    /// takes it has speeds. The layout of every active set is made here, once, so the launch
    /// path only looks it up; beyond [`TABLE_TENANTS`] tenants it is computed per launch, in
    /// equal parts, as by [`KrispShare::new`]. Without latency-critical tenants, a set whose
    /// layout by speeds differs from equal parts keeps whichever of the two runs faster,
    /// measured ([`LayoutTrial`]; [`KrispShare::untried`] keeps the curves' layout).
    pub fn with_speeds(shares: Vec<Share>, speeds: Vec<Option<Speeds>>, tenants: u32, topo: &Topology) -> KrispShare {
        KrispShare { speeds, ..KrispShare::new(shares) }.tabled(tenants, topo)
    }

    /// The same policy with the home of an idle latency-critical tenant going to every active
    /// best-effort tenant by speeds, as the homes of idle best-effort tenants do
    /// (`RIGHTSIZE_LEND=speeds`, for comparisons), instead of to the first active best-effort
    /// tenant, laid next to the latency-critical windows ([`KrispShare::lent_homes`]). Where
    /// there is a latency-critical tenant it makes the layouts of `tenants` tenants on `topo`
    /// again; there no set is tried ([`LayoutTrial`]), so it may come before or after
    /// [`KrispShare::untried`] and [`KrispShare::with_solo_times`]. Without one it changes
    /// nothing.
    pub fn lending_by_speeds(mut self, tenants: u32, topo: &Topology) -> KrispShare {
        self.lend_by_speeds = true;
        if self.critical_set() == 0 {
            // Nothing is lent to a neighbour without a latency-critical tenant.
            return self;
        }
        self.tabled(tenants, topo)
    }

    /// The same policy with the layout of every active set of `tenants` tenants on `topo`
    /// made now ([`KrispShare::with_speeds`]).
    fn tabled(mut self, tenants: u32, topo: &Topology) -> KrispShare {
        self.table = None;
        self.trial = None;
        let mut p = self;
        let n = (p.shares.len() as u32).max(tenants);
        if n == 0 || n > TABLE_TENANTS {
            return p;
        }
        // Every tenant's home, once; then each active set's windows from them.
        let arranged = |by_speed: bool| -> Vec<Vec<Option<GroupRange>>> {
            let mut home = [0u32; 64];
            p.homes(n, topo.groups, &mut home, by_speed);
            (0..1u64 << n)
                .map(|set| {
                    let mut out = [None; 64];
                    p.arrange(set, &home, topo.groups, &mut out, by_speed);
                    out[..n as usize].to_vec()
                })
                .collect()
        };
        let by_set = arranged(true);
        // The sets tried: no latency-critical tenant anywhere, the two layouts differ, and
        // each tenant of the set has its speeds (its weight in the verdict).
        let mut weights = vec![Vec::new(); by_set.len()];
        let mut equal_by_set = vec![Vec::new(); by_set.len()];
        if p.critical_set() == 0 {
            let equal = arranged(false);
            for (set, (curves, eq)) in by_set.iter().zip(equal).enumerate() {
                if *curves == eq {
                    continue;
                }
                let w: Option<Vec<(usize, f64)>> = ids(set as u64)
                    .map(|t| {
                        let win = curves[t]?;
                        let rest = win.end() == topo.groups;
                        Some((t, p.speeds.get(t)?.as_ref()?.on(win.count, rest)))
                    })
                    .collect();
                if let Some(w) = w.filter(|w| w.len() >= 2) {
                    weights[set] = w;
                    equal_by_set[set] = eq;
                }
            }
        }
        if weights.iter().any(|w| !w.is_empty()) {
            p.trial = Some(Arc::new(LayoutTrial::new(weights)));
        }
        p.table = Some(Layouts { tenants: n, groups: topo.groups, by_set, equal_by_set });
        p
    }

    fn share(&self, t: usize) -> Share {
        self.shares.get(t).copied().unwrap_or_default()
    }

    /// The windows of the tenants in `active` (a bit per tenant id) out of `tenants` tenants,
    /// side by side from group 0, latency-critical tenants first, each in id order; `None` for
    /// the others. Each active tenant gets its home's groups ([`KrispShare::home`]); the homes
    /// of idle best-effort tenants go to the active best-effort tenants (to the
    /// latency-critical ones if none is active), by their speeds where every one has them, else
    /// in equal parts; those of idle latency-critical tenants to the first active best-effort
    /// tenant, next to them ([`KrispShare::lent_homes`]; by speeds too with
    /// [`KrispShare::lending_by_speeds`]).
    pub fn layout(&self, active: u64, tenants: u32, groups: u32) -> Vec<Option<GroupRange>> {
        let mut out = [None; 64];
        self.lay(active, tenants, groups, &mut out);
        out[..(64 - active.leading_zeros()) as usize].to_vec()
    }

    /// Groups each tenant of `set` gets when exactly `set` contends for `groups` groups, by
    /// tenant id: quotas are cut (largest first, never below one group) until every tenant
    /// has a group; what they leave goes to the tenants without a quota, or else to the
    /// best-effort ones (the latency-critical ones if none), as [`KrispShare::hand_out`] hands
    /// it out: by speeds with `by_speed` where every taker has them, else in equal parts.
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
    /// each active tenant gets its home's size, the idle tenants' groups go to the active
    /// best-effort tenants (to every active one if none is best-effort) as
    /// [`KrispShare::hand_out`] hands them out, laid side by side from group 0,
    /// latency-critical tenants first. An idle latency-critical tenant's groups go instead to
    /// the first active best-effort tenant, laid next to the latency-critical windows
    /// ([`KrispShare::lent_homes`]).
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
        // Sized as if the latency-critical tenants whose homes are lent were active too.
        let lent = self.lent_homes(active, groups);
        let sized = active | lent;
        let mut size = [0u32; 64];
        for t in ids(sized) {
            size[t] = home[t].clamp(1, groups);
        }
        // Homes of more tenants than groups can add up to more than the device.
        cut_to_fit(sized, &mut size, groups);
        let spare = groups.saturating_sub(ids(sized).map(|t| size[t]).sum());
        // The lent homes are latency-critical, and lent only where a best-effort tenant is
        // active: the takers are the active ones.
        let takers = if critical != active { active & !critical } else { active };
        self.hand_out(sized, takers, &mut size, spare, by_speed);
        if let Some(taker) = ids(active & !critical).next().filter(|_| lent != 0) {
            for u in ids(lent) {
                size[taker] += std::mem::take(&mut size[u]);
            }
        }
        // The sizes now add up to the groups exactly.
        let mut first = 0;
        for t in order() {
            out[t] = Some(GroupRange { first, count: size[t] });
            first += size[t];
        }
    }

    /// The idle latency-critical tenants whose homes go to the first active best-effort tenant
    /// (a bit per id): every idle one, so that as a latency-critical tenant comes and goes
    /// with each request only that neighbour's window moves and the others keep theirs. None
    /// with [`KrispShare::lending_by_speeds`], where no best-effort tenant of `active` is
    /// active, or where the set sized with them would have more tenants than `groups`.
    fn lent_homes(&self, active: u64, groups: u32) -> u64 {
        let critical = self.critical_set();
        let idle = critical & !active;
        if self.lend_by_speeds || active & !critical == 0 || (active | idle).count_ones() > groups {
            return 0;
        }
        idle
    }

    /// [`KrispShare::layout`] into `out`, without allocating (it runs on the launch path):
    /// looked up when sized by speeds.
    fn lay(&self, active: u64, tenants: u32, groups: u32, out: &mut [Option<GroupRange>; 64]) {
        let n = self.laid_tenants(active, tenants);
        if let Some(windows) = self.tabled_windows(active, n, groups) {
            for (o, w) in out.iter_mut().zip(windows) {
                *o = *w;
            }
            return;
        }
        let mut home = [0u32; 64];
        self.homes(n, groups, &mut home, false);
        self.arrange(active, &home, groups, out, false);
    }

    /// How many tenants [`KrispShare::lay`] lays `active` out among, given `tenants`: every
    /// tenant with a share and every one active, at most 64.
    fn laid_tenants(&self, active: u64, tenants: u32) -> u32 {
        (self.shares.len() as u32).max(tenants).max(64 - active.leading_zeros()).min(64)
    }

    /// The tabled windows of `active` (out of `n` tenants, on `groups` groups): equal parts
    /// where the layout trial runs them, else the table's layout; `None` without a table of
    /// this size.
    fn tabled_windows(&self, active: u64, n: u32, groups: u32) -> Option<&[Option<GroupRange>]> {
        let t = self.table.as_ref().filter(|t| t.tenants == n && t.groups == groups)?;
        let equal = self.trial.as_ref().is_some_and(|tr| tr.on_equal(active));
        let windows = equal.then(|| self.tried_equal(active, n, groups)).flatten();
        Some(windows.unwrap_or(&t.by_set[active as usize]))
    }

    /// Tenant `t`'s window of [`KrispShare::lay`]'s layout of `active`: looked up alone where
    /// the layouts are tabled (a launch's decision reads one entry), laid out in full otherwise.
    fn window_of(&self, active: u64, t: TenantId, tenants: u32, groups: u32) -> Option<GroupRange> {
        if let Some(windows) = self.tabled_windows(active, self.laid_tenants(active, tenants), groups) {
            return windows.get(t as usize).copied().flatten();
        }
        let mut out = [None; 64];
        self.lay(active, tenants, groups, &mut out);
        out.get(t as usize).copied().flatten()
    }

    /// The windows of equal parts of `active` (out of `n` tenants, on `groups` groups) where
    /// the set's layout is tried ([`LayoutTrial`]); `None` where it is not.
    fn tried_equal(&self, active: u64, n: u32, groups: u32) -> Option<&[Option<GroupRange>]> {
        let t = self.table.as_ref().filter(|t| t.tenants == n && t.groups == groups)?;
        t.equal_by_set.get(active as usize).map(Vec::as_slice).filter(|eq| !eq.is_empty())
    }

    /// Every window tenant `t` can get beside others (out of `tenants` tenants, any of the
    /// others contending), smaller than the device, without repeats: what a plan set of `t`
    /// needs besides the whole device, guarded windows included ([`KrispShare::guarded`]). A
    /// latency-critical tenant that is not bounded needs none (it runs on the whole device), or
    /// where it spills to its knee ([`KrispShare::spilling_to_knees`]) those it spills to;
    /// beyond [`TABLE_TENANTS`] tenants, only its home, or where it spills, where it spills
    /// beside everyone (so there a replay beside an active latency-critical tenant is not
    /// guarded).
    pub fn windows(&self, t: TenantId, tenants: u32, groups: u32) -> Vec<GroupRange> {
        let t = t.min(63);
        if self.on_whole_device(t as usize) && !self.spill_to_knee {
            return Vec::new();
        }
        let n = (self.shares.len() as u32).max(tenants).max(t + 1).min(64);
        if n > TABLE_TENANTS {
            if self.on_whole_device(t as usize) {
                return self.spill_window(t, self.everyone(n), n, groups).into_iter().collect();
            }
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
            if self.on_whole_device(t as usize) {
                // Where it spills to its knee beside these.
                if let Some(w) = self.spill_window(t, active, n, groups).filter(|w| !out.contains(w)) {
                    out.push(w);
                }
                continue;
            }
            let mut lay = [None; 64];
            self.lay(active, n, groups, &mut lay);
            if let Some(w) = lay[t as usize].filter(|w| w.count < groups && !out.contains(w)) {
                out.push(w);
            }
            // And its window of equal parts, where the set's layout is tried.
            if let Some(w) = self
                .tried_equal(active, n, groups)
                .and_then(|eq| eq.get(t as usize).copied().flatten())
                .filter(|w| w.count < groups && !out.contains(w))
            {
                out.push(w);
            }
            // Where it is guarded off the active latency-critical tenants' windows.
            let lc_active = active & self.critical_set();
            if !self.unguarded && lc_active != 0 && !self.critical(t as usize) {
                let w = self.guard_window(lc_active, t, n, groups);
                if w.count < groups && !out.contains(&w) {
                    out.push(w);
                }
            }
        }
        out
    }

    /// Whether tenant `t` is latency-critical.
    fn critical(&self, t: usize) -> bool {
        self.share(t).class == PriorityClass::LatencyCritical
    }

    /// Whether tenant `t`'s kernels run on the whole device beside others: latency-critical
    /// and not bounded (but see [`KrispShare::spilling_to_knees`]).
    fn on_whole_device(&self, t: usize) -> bool {
        self.critical(t) && !self.share(t).bounded
    }

    /// Where latency-critical tenant `t`, not bounded, runs beside the others of `active` (of
    /// at least `n` tenants) when it spills to its knee ([`KrispShare::spilling_to_knees`]):
    /// its window of `active`'s layout grown to its knee, short of the device's end and of the
    /// next active latency-critical tenant's window; `None` (the whole device) where it does
    /// not spill so, where it is alone, bounded or its knee is not known, or where that window
    /// reaches the whole device.
    fn spill_window(&self, t: TenantId, active: u64, n: u32, groups: u32) -> Option<GroupRange> {
        let t = t.min(63);
        if !self.spill_to_knee || !self.on_whole_device(t as usize) || active & !(1 << t) == 0 {
            return None;
        }
        let knee = self.knees.get(t as usize).copied().flatten()?;
        let active = active | 1 << t;
        let mut now = [None; 64];
        self.lay(active, n.max(64 - active.leading_zeros()).min(64), groups, &mut now);
        let w = now[t as usize]?;
        let end = self.next_critical_first(t, active, &now, w).min(groups);
        let count = w.count.max(knee).min(end - w.first);
        (count < groups).then_some(GroupRange { first: w.first, count })
    }

    /// Where the first window after `w` of another latency-critical tenant of `active` than
    /// `t` begins, in the layout `now`; `u32::MAX` where none follows: how far a
    /// latency-critical tenant's window may grow ([`KrispShare::spill_window`],
    /// [`KrispShare::claimed_window`]).
    fn next_critical_first(&self, t: TenantId, active: u64, now: &[Option<GroupRange>; 64], w: GroupRange) -> u32 {
        ids(self.critical_set() & active & !(1 << t.min(63)))
            .filter_map(|o| now[o])
            .map(|o| o.first)
            .filter(|&first| first >= w.end())
            .fold(u32::MAX, u32::min)
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

    /// With claims ([`KrispShare::claiming`]), where a latency-critical kernel runs while
    /// best-effort tenants stay busy beside it: sized by its own curve, not its tenant's
    /// window. It takes the groups its profile says it needs (its minimum SMs), at least its
    /// window's, from where its window starts, and claims them for as long as its tenant's
    /// kernels run there: the best-effort blocks on them leave within a work unit and their
    /// launches' continuations take the rest elsewhere. It grows short of the last group, so
    /// those continuations always have SMs, and of the next latency-critical tenant's window. `None` (placed as without claims) for an
    /// unprofiled kernel, where no window is laid out (alone, or contention that comes and
    /// goes: it runs on the whole device), or without claims.
    fn claimed_window(&self, d: &Demand, load: &GroupLoad, topo: &Topology) -> Option<GroupRange> {
        let tenant = d.tenant.min(63);
        if !self.claims || !self.critical(tenant as usize) || !d.sustained {
            return None;
        }
        let active = d.active | load.active_set() | 1 << tenant;
        if active == 1 << tenant {
            return None;
        }
        let want = topo.groups_for(d.min_sms?);
        let mut now = [None; 64];
        self.lay(active, load.tenants().max(64 - active.leading_zeros()), topo.groups, &mut now);
        let w = now[tenant as usize]?;
        // Short of the last group, and of the next latency-critical tenant's window: claims
        // are per group, so one tenant's release there would undo the other's claim.
        let end = self.next_critical_first(tenant, active, &now, w).min(topo.groups.saturating_sub(1));
        let count = want.min(end.saturating_sub(w.first)).max(w.count);
        (count < topo.groups).then_some(GroupRange { first: w.first, count })
    }

    /// Whether a best-effort kernel of `tenant` on window `w` borrows: `w` reaches beyond what
    /// the tenant owns (a latency-critical tenant never borrows): its home as every tenant's set
    /// runs now, and where that set is tried ([`LayoutTrial`]) its home of equal parts too, so
    /// plans of both layouts' windows are captured (before any trial) as its own.
    fn borrows(&self, tenant: TenantId, load: &GroupLoad, topo: &Topology, w: GroupRange) -> bool {
        let tenant = tenant.min(63);
        if self.critical(tenant as usize) {
            return false;
        }
        let n = (self.shares.len() as u32).max(load.tenants()).max(tenant + 1).min(64);
        let equal_home = self
            .tried_equal(self.everyone(n), n, topo.groups)
            .and_then(|eq| eq.get(tenant as usize).copied().flatten());
        !self.home(tenant, n, topo.groups).contains(&w) && !equal_home.is_some_and(|h| h.contains(&w))
    }

    /// Where a best-effort tenant's kernel runs beside latency-critical tenants where no
    /// windows are laid out (contention that comes and goes, or the tenant alone), guarded:
    /// off the windows of the latency-critical tenants that are active (each at least its
    /// knee) and that it gives way to ([`Demand::yields_to`]: all but those less pressed
    /// against their latency objectives than it is, as measured), and on those of the idle
    /// ones too — on the whole device while none is active, on what the active ones leave
    /// while some are. So a latency-critical tenant's window is
    /// kept for it as where windows are laid out, whoever else comes and goes. While one is
    /// idle, a kernel launched now by a tenant that comes and goes runs on its window in
    /// resident blocks at its tenant's priority: once the latency-critical tenant has work,
    /// the next launches keep off its window, and its kernels (at high priority) go before
    /// every best-effort block not yet started, so they wait for the best-effort kernels
    /// running there when it arrives. A plan placed there (`Demand::plan`: captured or
    /// picked to replay) borrows instead (short blocks, the least priority), as does a tenant
    /// that stays busy alone (as [`KrispShare::now`] says), so the latency-critical tenant's
    /// arrival takes its window back within a block: measured on an H200, resident plans
    /// there cost the latency-critical tail where resident launches did not
    /// (docs/harness-h200.md, 22:51). (Plans of the guarded window are captured as
    /// borrowing, since it reaches beyond the tenant's home.) `None` where this does not
    /// apply: unguarded, a latency-critical tenant's kernel, no latency-critical tenant it
    /// gives way to, or windows laid out (lasting contention, not alone). (A plan of the whole
    /// device captured beside a latency-critical tenant it gave way to then keeps the short
    /// blocks it was captured with, at its own priority.)
    fn guarded(&self, d: &Demand, active: u64, load: &GroupLoad, topo: &Topology) -> Option<(Region, bool)> {
        let tenant = d.tenant.min(63);
        // Only the latency-critical tenants it gives way to (at least as near their latency
        // objectives as it is, or not measured) are guarded against it.
        let lc = self.critical_set() & d.yields_to;
        if self.unguarded || lc == 0 || self.critical(tenant as usize) || (d.sustained && active != 1 << tenant) {
            return None;
        }
        let lc_active = lc & active;
        let borrowed = lc & !active != 0 && (d.plan || d.sustained);
        if lc_active == 0 {
            return Some((Region::Whole, borrowed));
        }
        let w = self.guard_window(lc_active, tenant, load.tenants(), topo.groups);
        let region = if w.count >= topo.groups { Region::Whole } else { Region::Groups(w) };
        Some((region, borrowed))
    }

    /// Where best-effort tenant `t` (of at least `n` tenants) runs beside the active
    /// latency-critical tenants `lc_active` where contention comes and goes: after their
    /// windows, laid side by side from group 0, each at least its tenant's knee; at least a
    /// group.
    fn guard_window(&self, lc_active: u64, t: TenantId, n: u32, groups: u32) -> GroupRange {
        let set = lc_active | 1 << t.min(63);
        let mut now = [None; 64];
        self.lay(set, n.max(64 - set.leading_zeros()), groups, &mut now);
        let knee = |l: usize| self.knees.get(l).copied().flatten().unwrap_or(0);
        let taken = ids(lc_active).map(|l| now[l].map_or(0, |w| w.count).max(knee(l))).fold(0, u32::saturating_add);
        let first = taken.min(groups.saturating_sub(1));
        GroupRange { first, count: groups - first }
    }

    /// Where a kernel of the demand's tenant runs now, and whether it borrows.
    fn now(&self, d: &Demand, load: &GroupLoad, topo: &Topology) -> (Region, bool) {
        let tenant = d.tenant.min(63);
        let active = d.active | load.active_set() | 1 << tenant;
        let critical = self.critical(tenant as usize);
        // The layout trial counts every placement a request makes: one without laid-out
        // windows as set 0, which is never tried, so a request that mostly ran so counts for
        // no set. A plan captured (placed as if alone, none active) is no request's. (A replay
        // is picked with its tenant marked busy, so `active` names it; a tenant of id 64 or
        // more is never marked, and its replays alone are taken for captures, as the trial
        // already folds those ids into one.)
        let captured = d.plan && d.active == 0;
        let seen = |set: u64| {
            if let Some(tr) = self.trial.as_ref().filter(|_| !captured) {
                tr.saw(tenant as usize, set);
            }
        };
        if let Some(guarded) = self.guarded(d, active, load, topo) {
            seen(0);
            return guarded;
        }
        if self.on_whole_device(tenant as usize) || active == 1 << tenant {
            seen(0);
            if let Some(w) = self.spill_window(tenant, active, load.tenants(), topo.groups) {
                return (Region::Groups(w), false);
            }
            // Alone, a tenant that stays busy borrows the others' SMs (short blocks at the least
            // priority, so an owner coming back gets them within a block); one that comes and
            // goes keeps its own priority, as it does beside others that come and go (beside a
            // latency-critical tenant it gives way to, guarded above).
            return (Region::Whole, !critical && d.sustained);
        }
        if !d.sustained {
            // Contention that comes and goes (a contender is idle between its requests): no one
            // needs a window, and sharing every SM block by block lets each use what the others
            // leave; a latency-critical kernel, at high priority, takes each SM as the block
            // running there ends (its window guarded above against the tenants that give way
            // to it, unless unguarded).
            seen(0);
            return (Region::Whole, false);
        }
        let n = load.tenants().max(64 - active.leading_zeros());
        seen(active);
        let w = self.window_of(active, tenant, n, topo.groups).expect("active");
        let own = self.window_of(self.everyone(n), tenant, n, topo.groups).expect("a tenant");
        let borrowed = !critical && !own.contains(&w);
        let region = if w.count >= topo.groups { Region::Whole } else { Region::Groups(w) };
        (region, borrowed)
    }
}

impl Policy for KrispShare {
    fn name(&self) -> &'static str {
        "krisp"
    }
    fn claims(&self) -> bool {
        self.claims
    }
    fn hush_every(&self) -> u32 {
        self.hush
    }
    fn place(&self, d: &Demand, load: &GroupLoad, topo: &Topology, allowed: GroupRange) -> Decision {
        let high = d.class == PriorityClass::LatencyCritical;
        let (region, borrowed) = if allowed.count < topo.groups {
            // Within a window (capturing a plan there): the window, borrowed where it reaches
            // beyond what the tenant owns.
            (Region::Groups(allowed), self.borrows(d.tenant, load, topo, allowed))
        } else if let Some(w) = self.claimed_window(d, load, topo) {
            (Region::Groups(w), false)
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
    fn plan_windows(&self, t: TenantId, tenants: u32, groups: u32) -> Vec<GroupRange> {
        std::iter::once(GroupRange { first: 0, count: groups }).chain(self.windows(t, tenants, groups)).collect()
    }
    fn observe(&self, tenant: TenantId, began_ns: u64, ended_ns: u64) {
        if let Some(tr) = &self.trial {
            tr.observe(tenant as usize, began_ns, ended_ns);
        }
    }
    fn notes(&self) -> Vec<String> {
        self.trial.as_ref().map_or_else(Vec::new, |tr| tr.notes())
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

//! [`PolicySpec`]: a runtime's policy stated as data (a mode, each tenant's class, quota,
//! window and objective, what its profile says), and the one function that makes the policy
//! from it. The harness, the C ABI and the interposer state their policies this way, so a mode
//! means the same wherever it runs.

use super::{
    meets_on, Full, GroupRange, KrispConserved, KrispIsolated, KrispShare, Policy, Prioritized, PriorityClass, Share,
    Speeds, Static, Topology,
};

/// The policies a runtime can be made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Every kernel on the whole device ([`Full`]: the `streams` mode).
    Full,
    /// A fixed window per tenant ([`Static`]).
    Static,
    /// Each kernel on its profiled knee ([`KrispConserved`]), best-effort tenants off the
    /// reserved groups.
    KrispConserved,
    /// Each kernel on groups no other tenant uses ([`KrispIsolated`]), best-effort tenants off
    /// the reserved groups.
    KrispIsolated,
    /// Shares that follow the load ([`KrispShare`]: the `krisp` mode); what quotas leave is
    /// sized by each tenant's request curve with `curves` (`krisp`), else in equal parts
    /// (`krisp-equal`).
    Krisp {
        /// Whether the request curves size what quotas leave.
        curves: bool,
    },
}

/// One tenant as a policy sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantSpec {
    /// Its class.
    pub class: PriorityClass,
    /// SMs guaranteed to it whenever it contends (`krisp`; rounded up to groups); `None`: its
    /// part of what the quotas leave (by the request curves under `krisp`, equal under
    /// `krisp-equal`).
    pub quota_sms: Option<u32>,
    /// SMs of its fixed window (`static`; rounded up to groups); `None`: an equal part of the
    /// groups the sized windows leave.
    pub window_sms: Option<u32>,
    /// Its latency objective for one request, in milliseconds.
    pub slo_ms: Option<f64>,
    /// Its request's time on each profiled SM count beside a co-runner (`(sms, µs)`,
    /// ascending): whether its quota meets its objective ([`TenantSpec::bounded`]).
    pub request_beside_us: Option<Vec<(u32, f64)>>,
    /// Its request's time on each profiled SM count on an idle device (the harness's
    /// `RIGHTSIZE_SPEEDS=beside`: beside a co-runner): its [`Speeds`] (`krisp`).
    pub request_us: Option<Vec<(u32, f64)>>,
    /// The fewest SMs on which its request runs at full speed (its profile's request knee):
    /// the least a guarded latency-critical window is ([`Guard::Knee`]).
    pub request_knee_sms: Option<u32>,
    /// Its request's mean time alone on the whole device, µs, where its caller measured it (the
    /// harness's solo baseline): what krisp's layout trial weighs its speed by
    /// ([`KrispShare::with_solo_times`]).
    pub solo_us: Option<f64>,
}

impl TenantSpec {
    /// Its quota in groups of `granularity` SMs.
    fn quota_groups(&self, granularity: u32) -> Option<u32> {
        self.quota_sms.map(|sms| sms.div_ceil(granularity.max(1)))
    }

    /// Whether it is bounded to its window ([`Share::bounded`]): latency-critical, with a
    /// quota, an objective and a request curve beside a co-runner that meets the objective on
    /// the quota's whole groups ([`meets_on`]).
    pub fn bounded(&self, granularity: u32) -> bool {
        let g = granularity.max(1);
        match (self.class, self.quota_groups(g), self.slo_ms, self.request_beside_us.as_deref()) {
            (PriorityClass::LatencyCritical, Some(q), Some(slo), Some(beside)) => meets_on(beside, q * g, slo),
            _ => false,
        }
    }
}

/// A runtime's policy as data: which one, for which tenants (tenant ids are indices).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySpec {
    /// Which policy.
    pub kind: PolicyKind,
    /// The tenants.
    pub tenants: Vec<TenantSpec>,
    /// SMs best-effort kernels leave to latency-critical tenants (`krisp-conserved`,
    /// `krisp-isolated`, where a tenant is latency-critical): [`reserved_groups`].
    pub reserved_sms: u32,
    /// Latency-critical tenants claim the SMs their work goes to (`krisp`:
    /// [`KrispShare::claiming`]).
    pub claims: bool,
    /// How krisp guards latency-critical windows where contention comes and goes.
    pub guard: Guard,
    /// Every how many of a best-effort tenant's launches one waits while a protected
    /// latency-critical request is in flight (`krisp`: [`KrispShare::hushing`]); 0: none.
    pub hush: u32,
    /// Whether `krisp` tries equal parts beside its curves' layout and keeps the faster
    /// ([`KrispShare::with_speeds`]; off: [`KrispShare::untried`]).
    pub trial: bool,
    /// Where a latency-critical tenant that is not bounded runs beside others (`krisp`).
    pub spill: Spill,
    /// Who gets an idle latency-critical tenant's groups (`krisp`).
    pub lending: Lending,
}

/// Who krisp gives an idle latency-critical tenant's groups to; the harness reads
/// `RIGHTSIZE_LEND`, for comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lending {
    /// The best-effort tenant laid next to it (the first active one): the others keep their
    /// windows as it comes and goes.
    #[default]
    Neighbour,
    /// Every active best-effort tenant, by their speeds (in equal parts without), as an idle
    /// best-effort tenant's groups go ([`KrispShare::lending_by_speeds`]).
    Speeds,
}

impl Lending {
    /// From its name (`neighbour`, `speeds`).
    pub fn parse(name: &str) -> Option<Lending> {
        match name {
            "neighbour" => Some(Lending::Neighbour),
            "speeds" => Some(Lending::Speeds),
            _ => None,
        }
    }
}

/// Where krisp runs a latency-critical tenant's kernels beside others when its quota does not
/// bound it ([`TenantSpec::bounded`]); the harness reads `RIGHTSIZE_SPILL`, for comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spill {
    /// On the whole device, at high priority.
    #[default]
    Whole,
    /// On its window of the current layout, at least its request's knee
    /// ([`KrispShare::spilling_to_knees`]); the whole device alone.
    Knee,
}

impl Spill {
    /// From its name (`whole`, `knee`).
    pub fn parse(name: &str) -> Option<Spill> {
        match name {
            "whole" => Some(Spill::Whole),
            "knee" => Some(Spill::Knee),
            _ => None,
        }
    }
}

/// How krisp guards a latency-critical tenant's window where contention comes and goes
/// ([`KrispShare::guarded`]); the harness reads `RIGHTSIZE_GUARD`, for comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Guard {
    /// Not at all: there every kernel on the whole device at its owner's priority
    /// ([`KrispShare::unguarded`]).
    Off,
    /// Its window (its quota, or its part).
    Quota,
    /// Its window, at least its request's knee ([`KrispShare::with_knees`]): the default.
    #[default]
    Knee,
}

impl Guard {
    /// From its name (`off`, `quota`, `knee`).
    pub fn parse(name: &str) -> Option<Guard> {
        match name {
            "off" => Some(Guard::Off),
            "quota" => Some(Guard::Quota),
            "knee" => Some(Guard::Knee),
            _ => None,
        }
    }
}

/// Groups of `granularity` SMs, out of `groups`, that `reserved_sms` SMs kept for
/// latency-critical work take: whole groups, at least one group left over.
pub fn reserved_groups(groups: u32, granularity: u32, reserved_sms: u32) -> u32 {
    reserved_sms.div_ceil(granularity.max(1)).min(groups.saturating_sub(1))
}

impl PolicySpec {
    /// A policy of `kind` for `tenants` with every other setting at its default: nothing
    /// reserved, no claims, the guard at the knee, no hush, the layout trial on, an unbounded
    /// latency-critical tenant on the whole device and its idle groups lent to its neighbour.
    pub fn new(kind: PolicyKind, tenants: Vec<TenantSpec>) -> PolicySpec {
        PolicySpec {
            kind,
            tenants,
            reserved_sms: 0,
            claims: false,
            guard: Guard::default(),
            hush: 0,
            trial: true,
            spill: Spill::default(),
            lending: Lending::default(),
        }
    }

    /// The policy on `topo`. Refused (why, in words) when the static windows do not fit.
    pub fn build(&self, topo: &Topology) -> Result<Box<dyn Policy>, String> {
        let any_lc = self.tenants.iter().any(|t| t.class == PriorityClass::LatencyCritical);
        let reserved_groups =
            if any_lc { reserved_groups(topo.groups, topo.granularity, self.reserved_sms) } else { 0 };
        Ok(match self.kind {
            PolicyKind::Full => Box::new(Prioritized { inner: Full, reserved_groups: 0 }),
            PolicyKind::Static => {
                Box::new(Prioritized { inner: Static { windows: self.static_windows(topo)? }, reserved_groups: 0 })
            }
            PolicyKind::KrispConserved => Box::new(Prioritized { inner: KrispConserved, reserved_groups }),
            PolicyKind::KrispIsolated => Box::new(Prioritized { inner: KrispIsolated::default(), reserved_groups }),
            PolicyKind::Krisp { .. } => {
                let shares = self.krisp_shares(topo);
                let shares = if self.claims { shares.claiming() } else { shares };
                Box::new(shares.hushing(self.hush))
            }
        })
    }

    /// The static windows: each tenant's `window_sms` (rounded up to groups), the others an
    /// equal part of the groups left, side by side from group 0.
    pub fn static_windows(&self, topo: &Topology) -> Result<Vec<Option<GroupRange>>, String> {
        let sizes: Vec<Option<u32>> = self.tenants.iter().map(|t| t.window_sms).collect();
        Ok(Static::side_by_side(&sizes, topo.groups, topo.granularity)?.windows)
    }

    /// Per tenant, whether the policy bounds it to its window ([`TenantSpec::bounded`]; only
    /// the krisp policies do).
    pub fn bounded(&self, topo: &Topology) -> Vec<bool> {
        let krisp = matches!(self.kind, PolicyKind::Krisp { .. });
        self.tenants.iter().map(|t| krisp && t.bounded(topo.granularity)).collect()
    }

    /// The shares of a krisp policy: each tenant's class, its quota in groups (bounded to it
    /// where [`TenantSpec::bounded`]) and, for `krisp` where its request curve is known,
    /// its speed on each window size; each tenant's knee from its request curve, and how
    /// latency-critical windows are guarded ([`Guard`]).
    pub fn krisp_shares(&self, topo: &Topology) -> KrispShare {
        let shares = self
            .tenants
            .iter()
            .map(|t| Share {
                class: t.class,
                quota: t.quota_groups(topo.granularity),
                bounded: t.bounded(topo.granularity),
            })
            .collect();
        let curves = self.kind == PolicyKind::Krisp { curves: true };
        let speeds = self
            .tenants
            .iter()
            .map(|t| t.request_us.as_ref().filter(|_| curves).and_then(|c| Speeds::from_times(c, topo)))
            .collect();
        let knees = self
            .tenants
            .iter()
            .map(|t| {
                t.request_knee_sms
                    .filter(|_| self.guard == Guard::Knee)
                    .map(|sms| sms.div_ceil(topo.granularity.max(1)))
            })
            .collect();
        let n = self.tenants.len() as u32;
        let shares = KrispShare::with_speeds(shares, speeds, n, topo).with_knees(knees);
        let shares = if self.lending == Lending::Speeds { shares.lending_by_speeds(n, topo) } else { shares };
        let shares = if self.trial { shares } else { shares.untried() };
        let shares = shares.with_solo_times(self.tenants.iter().map(|t| t.solo_us).collect());
        let shares = if self.spill == Spill::Knee { shares.spilling_to_knees() } else { shares };
        if self.guard == Guard::Off {
            shares.unguarded()
        } else {
            shares
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPO: Topology = Topology { groups: 15, granularity: 8, rest_sms: 12 };

    #[test]
    fn a_latency_critical_tenant_is_bounded_where_its_quota_meets_its_objective() {
        // About what the committed bert-base batch-1 profile says: ~1.5 ms on 32 SMs.
        let curve = vec![(16, 3000.0), (32, 1500.0), (132, 400.0)];
        let lc = TenantSpec {
            class: PriorityClass::LatencyCritical,
            quota_sms: Some(32),
            slo_ms: Some(4.0),
            request_beside_us: Some(curve),
            ..TenantSpec::default()
        };
        assert!(lc.bounded(8), "half of 4 ms holds a 1.5 ms request");
        assert!(!TenantSpec { slo_ms: Some(2.0), ..lc.clone() }.bounded(8), "half of 2 ms does not");
        assert!(!TenantSpec { request_beside_us: None, ..lc.clone() }.bounded(8), "no curve");
        assert!(!TenantSpec { slo_ms: None, ..lc.clone() }.bounded(8), "no objective");
        assert!(!TenantSpec { class: PriorityClass::BestEffort, ..lc.clone() }.bounded(8), "best-effort");
        assert!(!TenantSpec { quota_sms: None, ..lc.clone() }.bounded(8), "no quota");
        // A quota that is not whole groups is judged on its whole groups.
        assert!(TenantSpec { quota_sms: Some(25), ..lc.clone() }.bounded(8));
        // Judged at the largest profiled count within the quota.
        assert!(meets_on(&[(24, 4000.0), (40, 1000.0)], 32, 10.0));
        assert!(!meets_on(&[(40, 1000.0)], 32, 10.0));
        // Only the krisp policies bound tenants.
        let spec = |kind| PolicySpec::new(kind, vec![lc.clone(), TenantSpec::default()]);
        assert_eq!(spec(PolicyKind::Krisp { curves: false }).bounded(&TOPO), vec![true, false]);
        assert_eq!(
            spec(PolicyKind::Krisp { curves: false }).krisp_shares(&TOPO).shares[0],
            Share { class: PriorityClass::LatencyCritical, quota: Some(4), bounded: true }
        );
        assert_eq!(spec(PolicyKind::KrispConserved).bounded(&TOPO), vec![false, false]);
    }

    #[test]
    fn the_guard_asked_for_is_the_guard_built() {
        use crate::runtime::policy::{Decision, Demand, GroupLoad, Region};
        // A latency-critical tenant (32-SM quota: 4 groups) whose request's knee is 64 SMs (8
        // groups), beside a best-effort one that comes and goes.
        let lc = TenantSpec {
            class: PriorityClass::LatencyCritical,
            quota_sms: Some(32),
            request_knee_sms: Some(64),
            ..TenantSpec::default()
        };
        let spec = |guard| PolicySpec {
            guard,
            ..PolicySpec::new(PolicyKind::Krisp { curves: false }, vec![lc.clone(), TenantSpec::default()])
        };
        let be = Demand { active: 0b11, sustained: false, ..Demand::new(1, PriorityClass::BestEffort, None, 64) };
        let place = |guard| match spec(guard).build(&TOPO).unwrap().decide(&be, &GroupLoad::new(TOPO.groups, 2), &TOPO)
        {
            Decision::Run { region, .. } => region,
            Decision::Wait => panic!("krisp never waits"),
        };
        let after = |first| Region::Groups(GroupRange { first, count: TOPO.groups - first });
        assert_eq!(place(Guard::Knee), after(8));
        assert_eq!(place(Guard::Quota), after(4));
        assert_eq!(place(Guard::Off), Region::Whole);
    }

    #[test]
    fn guards_are_named() {
        assert_eq!(Guard::default(), Guard::Knee);
        for (name, g) in [("off", Guard::Off), ("quota", Guard::Quota), ("knee", Guard::Knee)] {
            assert_eq!(Guard::parse(name), Some(g));
        }
        assert_eq!(Guard::parse("on"), None);
    }

    #[test]
    fn spills_and_lendings_are_named_and_built() {
        assert_eq!((Spill::default(), Lending::default()), (Spill::Whole, Lending::Neighbour));
        assert_eq!(
            (Spill::parse("whole"), Spill::parse("knee"), Spill::parse("all")),
            (Some(Spill::Whole), Some(Spill::Knee), None)
        );
        assert_eq!(
            (Lending::parse("neighbour"), Lending::parse("speeds"), Lending::parse("equal")),
            (Some(Lending::Neighbour), Some(Lending::Speeds), None)
        );
        // A latency-critical tenant (4 groups, knee 8, not bounded: no objective) and two
        // best-effort tenants without quotas.
        let lc = TenantSpec {
            class: PriorityClass::LatencyCritical,
            quota_sms: Some(32),
            request_knee_sms: Some(64),
            ..TenantSpec::default()
        };
        let tenants = vec![lc.clone(), TenantSpec::default(), TenantSpec::default()];
        let spec = |spill, lending| PolicySpec {
            spill,
            lending,
            ..PolicySpec::new(PolicyKind::Krisp { curves: false }, tenants.clone())
        };
        let g = |first, count| GroupRange { first, count };
        let shares = spec(Spill::Knee, Lending::Neighbour).krisp_shares(&TOPO);
        assert_eq!(shares.windows(0, 3, TOPO.groups), vec![g(0, 8)], "spilled to its knee");
        assert!(spec(Spill::Whole, Lending::Neighbour).krisp_shares(&TOPO).windows(0, 3, TOPO.groups).is_empty());
        // Idle, its 4 groups go to tenant 1 next to it, or by halves.
        assert_eq!(shares.layout(0b110, 3, TOPO.groups), vec![None, Some(g(0, 10)), Some(g(10, 5))]);
        let by_speeds = spec(Spill::Whole, Lending::Speeds).krisp_shares(&TOPO);
        assert_eq!(by_speeds.layout(0b110, 3, TOPO.groups), vec![None, Some(g(0, 8)), Some(g(8, 7))]);
    }

    #[test]
    fn reserved_groups_are_whole_groups_leaving_one() {
        assert_eq!(reserved_groups(15, 8, 0), 0);
        assert_eq!(reserved_groups(15, 8, 32), 4);
        assert_eq!(reserved_groups(15, 8, 33), 5);
        assert_eq!(reserved_groups(15, 8, 500), 14);
        assert_eq!(reserved_groups(1, 8, 8), 0);
    }

    #[test]
    fn krisp_weighs_its_layout_trial_by_the_solo_times_its_tenants_were_given() {
        use crate::runtime::policy::{Demand, GroupLoad, Policy, TRIAL_REQUESTS};
        use crate::runtime::timer::monotonic_ns;
        // A prefill whose requests scale with SMs and a decoder whose requests barely do, so
        // the curves' layout is not equal parts and the pair is tried.
        let sms: Vec<u32> = (1..=15).map(|g| g * 8).chain([132]).collect();
        let prefill: Vec<(u32, f64)> = sms.iter().map(|&s| (s, 13_200.0 / f64::from(s))).collect();
        let decoder: Vec<(u32, f64)> = sms.iter().map(|&s| (s, 100.0 + 1_320.0 / f64::from(s))).collect();
        let tenant = |curve, solo_us| TenantSpec { request_us: Some(curve), solo_us, ..TenantSpec::default() };
        let verdict = |solo: [Option<f64>; 2]| {
            let tenants = vec![tenant(prefill.clone(), solo[0]), tenant(decoder.clone(), solo[1])];
            let spec = PolicySpec::new(PolicyKind::Krisp { curves: true }, tenants);
            let p = spec.krisp_shares(&TOPO);
            let load = GroupLoad::new(TOPO.groups, 2);
            let mut at = monotonic_ns() + 1_000;
            // The same requests either way (ms; the first of each tenant on each layout not
            // counted): the prefill faster on the curves' layout, the decoder as fast within
            // its spread (the verdict in runtime/policy/share/tests.rs).
            assert_eq!(TRIAL_REQUESTS, 2, "the requests below");
            let curves = [[8.0, 14.0], [8.0, 14.0], [8.0, 14.6]];
            let equal = [[10.0, 13.6], [10.0, 13.6], [10.0, 14.2]];
            for us in curves.into_iter().chain(equal).map(|ms: [f64; 2]| ms.map(|m| m * 1e3)) {
                for (t, &u) in us.iter().enumerate() {
                    let d = Demand {
                        active: 0b11,
                        sustained: true,
                        ..Demand::new(t as u32, PriorityClass::BestEffort, None, 1024)
                    };
                    let began = at;
                    p.decide(&d, &load, &TOPO);
                    at += (u * 1e3) as u64;
                    p.observe(t as u32, began, at);
                }
            }
            p.notes()
        };
        let by_solo = verdict([Some(2e3), Some(13e3)]);
        assert!(by_solo.len() == 1 && by_solo[0].contains("kept equal parts (Σ speed by solo times"), "{by_solo:?}");
        let by_curves = verdict([Some(2e3), None]);
        assert!(
            by_curves.len() == 1 && by_curves[0].contains("kept the curves' layout (Σ speed by curves"),
            "{by_curves:?}"
        );
    }

    #[test]
    fn each_kind_builds_its_policy() {
        let lc = TenantSpec { class: PriorityClass::LatencyCritical, ..TenantSpec::default() };
        let tenants = vec![lc, TenantSpec { window_sms: Some(40), ..TenantSpec::default() }];
        let spec = |kind| PolicySpec { reserved_sms: 32, ..PolicySpec::new(kind, tenants.clone()) };
        let names: Vec<&str> = [
            PolicyKind::Full,
            PolicyKind::Static,
            PolicyKind::KrispConserved,
            PolicyKind::KrispIsolated,
            PolicyKind::Krisp { curves: false },
            PolicyKind::Krisp { curves: true },
        ]
        .into_iter()
        .map(|k| spec(k).build(&TOPO).unwrap().name())
        .collect();
        assert_eq!(names, ["full", "static", "krisp-conserved", "krisp-isolated", "krisp", "krisp"]);
        let krisp = spec(PolicyKind::Krisp { curves: false });
        assert!(!krisp.build(&TOPO).unwrap().claims(), "claims are asked for");
        assert!(PolicySpec { claims: true, ..krisp.clone() }.build(&TOPO).unwrap().claims());
        assert_eq!(krisp.build(&TOPO).unwrap().hush_every(), 0, "hushing is asked for");
        assert_eq!(PolicySpec { hush: 4, ..krisp.clone() }.build(&TOPO).unwrap().hush_every(), 4);
        assert_eq!(
            PolicySpec { hush: 1, ..spec(PolicyKind::Full) }.build(&TOPO).unwrap().hush_every(),
            0,
            "krisp only"
        );
        assert_eq!(
            spec(PolicyKind::Static).static_windows(&TOPO).unwrap(),
            vec![Some(GroupRange { first: 0, count: 10 }), Some(GroupRange { first: 10, count: 5 })]
        );
        let big = PolicySpec {
            tenants: vec![TenantSpec { window_sms: Some(200), ..TenantSpec::default() }],
            ..spec(PolicyKind::Static)
        };
        assert!(big.build(&TOPO).is_err());
    }
}

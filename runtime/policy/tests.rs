//! Helpers the policies' tests share, and the invariants every policy keeps under random
//! launches and completions.

use proptest::prelude::*;

use super::*;

pub(crate) const TOPO: Topology = Topology { groups: 15, granularity: 8, rest_sms: 12 };
pub(crate) const TENANTS: u32 = 4;

pub(crate) fn demand(tenant: u32, min_sms: Option<u32>) -> Demand {
    Demand::new(tenant, PriorityClass::BestEffort, min_sms, 1024)
}

pub(crate) fn groups(d: Decision) -> Option<GroupRange> {
    match d {
        Decision::Run { region: Region::Groups(g), .. } => Some(g),
        Decision::Run { region: Region::Whole, .. } => Some(GroupRange { first: 0, count: TOPO.groups }),
        Decision::Wait => None,
    }
}

pub(crate) fn share(lc: bool, quota: Option<u32>) -> Share {
    Share { class: if lc { PriorityClass::LatencyCritical } else { PriorityClass::BestEffort }, quota, bounded: false }
}

#[derive(Debug, Clone)]
enum Op {
    Launch { tenant: u32, min_sms: Option<u32>, lc: bool, units: u64, sustained: bool, plan: bool, yields_to: u64 },
    Complete(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let launch = (
        0..TENANTS,
        proptest::option::of(1u32..140),
        any::<bool>(),
        1u64..200,
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(u64::MAX), any::<u64>()],
    )
        .prop_map(|(tenant, min_sms, lc, units, sustained, plan, yields_to)| Op::Launch {
            tenant,
            min_sms,
            lc,
            units,
            sustained,
            plan,
            yields_to,
        });
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
                    Op::Launch { tenant, min_sms, lc, units, sustained, plan, yields_to } => {
                        let class = if lc { PriorityClass::LatencyCritical } else { PriorityClass::BestEffort };
                        let d = Demand { tenant, class, min_sms, units, current: current[tenant as usize], active: 0, sustained, plan, yields_to };
                        match p.decide(&d, &load, &TOPO) {
                            Decision::Run { region, high_priority, borrowed, blocks } => {
                                prop_assert!(blocks == Blocks::Resident || p.name() == "krisp", "only krisp spreads");
                                prop_assert!(!borrowed || blocks == Blocks::Short, "borrowed kernels launch short blocks");
                                // With no active tenant staying busy, the latency-critical tenant 0's
                                // kernels share the whole device, owned; a best-effort kernel keeps off
                                // its window (groups [0, 3)) while it is active, and runs on the whole
                                // device while it is idle, a plan there borrowing; unless it does not
                                // give way to tenant 0 (more pressed): then the whole device, owned.
                                let shares_all = !sustained;
                                if p.name() == "krisp" && shares_all {
                                    if tenant == 0 {
                                        prop_assert!(region == Region::Whole && !borrowed && blocks == Blocks::Resident, "{d:?} on {region:?}");
                                    } else if yields_to & 1 == 0 {
                                        prop_assert!(region == Region::Whole && !borrowed, "{d:?} on {region:?}");
                                    } else if load.active_set() & 1 != 0 {
                                        prop_assert!(matches!(region, Region::Groups(g) if g.first >= 3) && !borrowed, "{d:?} on {region:?}");
                                    } else {
                                        prop_assert!(region == Region::Whole && borrowed == plan, "{d:?} on {region:?}");
                                    }
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

/// No policy has latency-critical tenants claim their SMs unless asked: the share policy
/// does with [`KrispShare::claiming`], and it keeps its placements.
#[test]
fn only_a_claiming_share_policy_claims() {
    let claiming: Vec<&str> = policies().iter().filter(|p| p.claims()).map(|p| p.name()).collect();
    assert!(claiming.is_empty(), "{claiming:?}");
    let shares = || vec![share(true, Some(3)), share(false, None), share(false, Some(5))];
    let (plain, claims) = (KrispShare::new(shares()), KrispShare::new(shares()).claiming());
    assert!(claims.claims() && claims.name() == "krisp");
    for tenant in 0..3 {
        assert_eq!(plain.home(tenant, 3, TOPO.groups), claims.home(tenant, 3, TOPO.groups));
    }
}

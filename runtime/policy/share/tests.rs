use proptest::prelude::*;

use super::*;
use crate::runtime::policy::tests::{share, TOPO};
use crate::runtime::policy::{Full, Prioritized, Topology};

#[test]
fn shares_lay_out_the_contending_tenants_side_by_side() {
    let p = KrispShare::new(vec![share(false, None), share(true, Some(4)), share(false, Some(2)), share(false, None)]);
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
    // Tenant 2 busy: tenant 1, laid next to the idle latency-critical tenant, gets the groups
    // it owns too (borrowed); tenant 2 keeps its own.
    load.acquire(Region::Groups(GroupRange { first: 0, count: 3 }), 2);
    let g = GroupRange { first: 0, count: 10 };
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
    let be = |t, sustained| Demand { active: 0b111, sustained, ..Demand::new(t, PriorityClass::BestEffort, None, 64) };
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
    // device, the best-effort ones off its quota while it is active (guarded: the next test);
    // once one stays busy, windows, with the latency-critical tenant's quota kept free.
    let lc = KrispShare::new(vec![share(true, Some(4)), share(false, None), share(false, None)]);
    let off_lc = Region::Groups(GroupRange { first: 4, count: TOPO.groups - 4 });
    assert_eq!(lc.decide(&be(1, false), &idle, &TOPO), Decision::run(off_lc, false));
    assert_eq!(lc.clone().unguarded().decide(&be(1, false), &idle, &TOPO), Decision::run(Region::Whole, false));
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
fn speeds_size_the_windows() {
    // A prefill that scales with SMs, and a decoder whose requests barely do.
    let (linear, flat) = prefill_and_decoder_curves();
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

#[test]
fn with_claims_a_latency_critical_kernel_takes_the_groups_its_curve_needs() {
    let shares = vec![share(true, Some(4)), share(false, None), share(false, None)];
    let (p, plain) = (KrispShare::new(shares.clone()).claiming(), KrispShare::new(shares));
    let load = GroupLoad::new(TOPO.groups, 3);
    let lc = |min_sms| Demand { active: 0b111, ..Demand::new(0, PriorityClass::LatencyCritical, min_sms, 1024) };
    let run = |count| Decision::Run {
        region: Region::Groups(GroupRange { first: 0, count }),
        high_priority: true,
        borrowed: false,
        blocks: Blocks::Resident,
    };
    // Every tenant busy: a kernel whose knee is 80 SMs takes 10 groups of 8 from its window's
    // start; one that needs less than its window keeps the window; one that needs the whole
    // device stops short of the last group.
    assert_eq!(p.decide(&lc(Some(80)), &load, &TOPO), run(10));
    assert_eq!(p.decide(&lc(Some(8)), &load, &TOPO), run(4));
    assert_eq!(p.decide(&lc(Some(500)), &load, &TOPO), run(14));
    // Unprofiled, alone, or beside contention that comes and goes: placed as without claims.
    for d in [lc(None), Demand { active: 0b001, ..lc(Some(80)) }, Demand { sustained: false, ..lc(Some(80)) }] {
        assert_eq!(p.decide(&d, &load, &TOPO), plain.decide(&d, &load, &TOPO), "{d:?}");
    }
    // Best-effort kernels are placed as without claims.
    let be = Demand { active: 0b111, ..Demand::new(1, PriorityClass::BestEffort, Some(80), 1024) };
    assert_eq!(p.decide(&be, &load, &TOPO), plain.decide(&be, &load, &TOPO));
    // Two latency-critical tenants ([0, 4) and [4, 8)): the first does not grow over the
    // second's window (a release there would undo the second's claim); the second grows.
    let two = KrispShare::new(vec![share(true, Some(4)), share(true, Some(4)), share(false, None)]).claiming();
    let load = GroupLoad::new(TOPO.groups, 3);
    let lc_of = |t| Demand { active: 0b111, ..Demand::new(t, PriorityClass::LatencyCritical, Some(80), 1024) };
    let window = |d: Decision| match d {
        Decision::Run { region: Region::Groups(g), .. } => Some(g),
        _ => None,
    };
    assert_eq!(window(two.decide(&lc_of(0), &load, &TOPO)), Some(GroupRange { first: 0, count: 4 }));
    assert_eq!(window(two.decide(&lc_of(1), &load, &TOPO)), Some(GroupRange { first: 4, count: 10 }));
}

#[test]
fn a_latency_critical_window_is_guarded_where_contention_comes_and_goes() {
    let shares = vec![share(true, Some(4)), share(false, None), share(false, None)];
    let (p, unguarded) = (KrispShare::new(shares.clone()), KrispShare::new(shares).unguarded());
    let load = GroupLoad::new(TOPO.groups, 3);
    let be = |active, sustained| Demand { active, sustained, ..Demand::new(1, PriorityClass::BestEffort, None, 1024) };
    let run = |region, borrowed| Decision::Run {
        region,
        high_priority: false,
        borrowed,
        blocks: if borrowed { Blocks::Short } else { Blocks::Resident },
    };
    let off_lc = Region::Groups(GroupRange { first: 4, count: TOPO.groups - 4 });
    // Contention that comes and goes, the latency-critical tenant active: off its window, the
    // rest shared by the best-effort tenants, in resident blocks.
    assert_eq!(p.decide(&be(0b111, false), &load, &TOPO), run(off_lc, false));
    assert_eq!(p.decide(&be(0b011, false), &load, &TOPO), run(off_lc, false));
    // It is idle: the whole device; a launch in resident blocks at its tenant's priority (the
    // next launches keep off the window once it has work), a plan borrowed (short blocks at
    // the least priority), so its next kernel gets its window back within a block; alone
    // likewise.
    let planned = |active| Demand { plan: true, ..be(active, false) };
    for active in [0b110, 0b010] {
        assert_eq!(p.decide(&be(active, false), &load, &TOPO), run(Region::Whole, false), "{active:b}");
        assert_eq!(p.decide(&planned(active), &load, &TOPO), run(Region::Whole, true), "{active:b}");
    }
    // A plan beside the active tenant is placed as a launch is.
    assert_eq!(p.decide(&planned(0b111), &load, &TOPO), run(off_lc, false));
    // Without the guard: the whole device at the tenant's priority, resident blocks.
    for active in [0b111, 0b011, 0b110, 0b010] {
        assert_eq!(unguarded.decide(&be(active, false), &load, &TOPO), run(Region::Whole, false), "{active:b}");
    }
    // Where windows are laid out, and for the latency-critical tenant, nothing changes.
    for d in [
        be(0b111, true),
        be(0b110, true),
        Demand { active: 0b111, ..Demand::new(0, PriorityClass::LatencyCritical, None, 1024) },
    ] {
        assert_eq!(p.decide(&d, &load, &TOPO), unguarded.decide(&d, &load, &TOPO), "{d:?}");
    }
    // Nor without a latency-critical tenant.
    let be_only = vec![share(false, None), share(false, None)];
    let (q, q0) = (KrispShare::new(be_only.clone()), KrispShare::new(be_only).unguarded());
    assert_eq!(q.decide(&be(0b11, false), &load, &TOPO), q0.decide(&be(0b11, false), &load, &TOPO));
    // A plan replayed beside the active latency-critical tenant is the one off its window;
    // while it is idle the whole device's, borrowed.
    let regions = [Region::Whole, off_lc, Region::Groups(GroupRange { first: 4, count: 5 })];
    assert_eq!(p.pick_plan(&planned(0b011), &load, &TOPO, &regions), (1, false));
    assert_eq!(p.pick_plan(&planned(0b010), &load, &TOPO, &regions), (0, true));
}

#[test]
fn a_best_effort_tenant_nearer_its_objective_is_not_guarded_against() {
    // Tenant 0 latency-critical (4 groups), 1 and 2 best-effort, contention that comes and goes.
    let p = KrispShare::new(vec![share(true, Some(4)), share(false, None), share(false, None)]);
    let load = GroupLoad::new(TOPO.groups, 3);
    let be = |active, yields_to, plan| Demand {
        active,
        sustained: false,
        plan,
        yields_to,
        ..Demand::new(1, PriorityClass::BestEffort, None, 1024)
    };
    let off_lc = Region::Groups(GroupRange { first: 4, count: TOPO.groups - 4 });
    // Giving way to it (as nearer its objective, or unmeasured): off its window while it is
    // active, a plan borrowed while it is idle.
    assert_eq!(p.decide(&be(0b011, u64::MAX, false), &load, &TOPO), Decision::run(off_lc, false));
    let borrowed = Decision::Run { region: Region::Whole, high_priority: false, borrowed: true, blocks: Blocks::Short };
    assert_eq!(p.decide(&be(0b010, u64::MAX, true), &load, &TOPO), borrowed);
    // More pressed than the latency-critical tenant (bit 0 clear): every SM at its own
    // priority, launched or placed for a plan, whether it is active or idle — as without the
    // guard.
    let unguarded = KrispShare::new(vec![share(true, Some(4)), share(false, None), share(false, None)]).unguarded();
    for active in [0b011, 0b111, 0b010, 0b110] {
        for plan in [false, true] {
            let d = be(active, !1, plan);
            assert_eq!(p.decide(&d, &load, &TOPO), Decision::run(Region::Whole, false), "{active:b} {plan}");
            assert_eq!(p.decide(&d, &load, &TOPO), unguarded.decide(&d, &load, &TOPO), "{active:b} {plan}");
        }
    }
    // A replay picks the whole device's plan at its own priority (the plan keeps the blocks it
    // was captured with).
    let regions = [Region::Whole, off_lc];
    assert_eq!(p.pick_plan(&be(0b011, !1, true), &load, &TOPO, &regions), (0, false));
    assert_eq!(p.pick_plan(&be(0b011, u64::MAX, true), &load, &TOPO, &regions), (1, false));
    // Whom else it gives way to does not matter; windows laid out are not changed.
    assert_eq!(p.decide(&be(0b011, 0b001, false), &load, &TOPO), Decision::run(off_lc, false));
    let laid = |yields_to| Demand { sustained: true, ..be(0b111, yields_to, false) };
    assert_eq!(p.decide(&laid(!1), &load, &TOPO), p.decide(&laid(u64::MAX), &load, &TOPO));
}

#[test]
fn a_guarded_window_is_at_least_its_tenants_knee() {
    // The committed bert-base batch-1 request's knee, 64 SMs, in groups of 8 (its curve:
    // profiler::profile's test of `request_knee_sms`).
    let shares = vec![share(true, Some(4)), share(false, None), share(false, None)];
    let p = KrispShare::new(shares.clone()).with_knees(vec![Some(8), None, None]);
    let load = GroupLoad::new(TOPO.groups, 3);
    let be = |active| Demand { active, sustained: false, ..Demand::new(1, PriorityClass::BestEffort, None, 1024) };
    let after = |first| Region::Groups(GroupRange { first, count: TOPO.groups - first });
    // Contention that comes and goes: the best-effort tenants keep off the knee's 8 groups.
    assert_eq!(p.decide(&be(0b011), &load, &TOPO), Decision::run(after(8), false));
    // A knee below the quota leaves the quota; a knee of the whole device leaves a group.
    let small = KrispShare::new(shares.clone()).with_knees(vec![Some(2), None, None]);
    assert_eq!(small.decide(&be(0b011), &load, &TOPO), Decision::run(after(4), false));
    let all = KrispShare::new(shares.clone()).with_knees(vec![Some(15), None, None]);
    assert_eq!(all.decide(&be(0b011), &load, &TOPO), Decision::run(after(14), false));
    // Where windows are laid out the quota stands.
    let sustained = Demand { sustained: true, ..be(0b111) };
    assert_eq!(p.decide(&sustained, &load, &TOPO), KrispShare::new(shares).decide(&sustained, &load, &TOPO));
    // A best-effort tenant's plans include the guarded window, so a replay there has one.
    let windows = p.windows(1, 3, TOPO.groups);
    assert!(windows.contains(&GroupRange { first: 8, count: TOPO.groups - 8 }), "{windows:?}");
    assert!(p.windows(0, 3, TOPO.groups).is_empty(), "the latency-critical tenant runs on the whole device");
}

#[test]
fn with_two_latency_critical_tenants_each_active_one_is_guarded() {
    // Tenants 0 and 1 latency-critical (quotas of 3 and 2 groups; 1's knee 5), 2 and 3
    // best-effort, contention that comes and goes.
    let shares = vec![share(true, Some(3)), share(true, Some(2)), share(false, None), share(false, None)];
    let p = KrispShare::new(shares).with_knees(vec![None, Some(5), None, None]);
    let load = GroupLoad::new(TOPO.groups, 4);
    let be = |active| Demand { active, sustained: false, ..Demand::new(2, PriorityClass::BestEffort, None, 64) };
    let run = |region, borrowed| Decision::Run {
        region,
        high_priority: false,
        borrowed,
        blocks: if borrowed { Blocks::Short } else { Blocks::Resident },
    };
    let after = |first| Region::Groups(GroupRange { first, count: TOPO.groups - first });
    // Both active: off both windows (3, then 1's knee of 5), owned.
    assert_eq!(p.decide(&be(0b1111), &load, &TOPO), run(after(8), false));
    // One active: off its window, on the idle one's too — a launch resident, a plan borrowing
    // (its arrival takes it back within a block).
    let planned = |active| Demand { plan: true, ..be(active) };
    for (active, region) in [(0b0101, after(3)), (0b0110, after(5)), (0b1100, Region::Whole)] {
        assert_eq!(p.decide(&be(active), &load, &TOPO), run(region, false), "{active:b}");
        assert_eq!(p.decide(&planned(active), &load, &TOPO), run(region, true), "{active:b}");
    }
    // Giving way to tenant 1 only (more pressed than tenant 0): off 1's window alone while
    // both are active, whatever 0 does; giving way to neither, the whole device, owned.
    let yields = |active, yields_to| Demand { yields_to, ..be(active) };
    assert_eq!(p.decide(&yields(0b1111, !0b01), &load, &TOPO), run(after(5), false));
    assert_eq!(p.decide(&yields(0b0101, !0b01), &load, &TOPO), run(Region::Whole, false));
    assert_eq!(p.decide(&yields(0b1111, !0b11), &load, &TOPO), run(Region::Whole, false));
    // A plan for every one of those windows.
    let windows = p.windows(2, 4, TOPO.groups);
    for first in [8, 3, 5] {
        assert!(windows.contains(&GroupRange { first, count: TOPO.groups - first }), "{first}: {windows:?}");
    }
}

fn shares_strategy() -> impl Strategy<Value = (Vec<Share>, u64)> {
    let one = (any::<bool>(), proptest::option::of(1u32..20), any::<bool>()).prop_map(|(lc, quota, bounded)| Share {
        class: if lc { PriorityClass::LatencyCritical } else { PriorityClass::BestEffort },
        quota,
        bounded,
    });
    (proptest::collection::vec(one, 1..10), any::<u64>())
}

/// The invariants of [`krisp_layouts_partition_the_groups`] for one policy.
fn check_layouts(p: &KrispShare, shares: &[Share], bits: u64, groups: u32) -> Result<(), TestCaseError> {
    let n = shares.len() as u32;
    let active = bits & ((1u64 << n) - 1);
    let lay = p.layout(active, n, groups);
    // A launch's decision looks its own window up alone: the layout's.
    for t in 0..n {
        prop_assert_eq!(
            p.window_of(active, t, n, groups),
            lay.get(t as usize).copied().flatten(),
            "tenant {}'s window alone",
            t
        );
    }
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
            let ws = p.windows(t, n, groups);
            for o in 1u64..(1 << n) {
                let set = o | 1 << t;
                // Where it runs beside `set`: its window, or where it spills.
                let w = if p.on_whole_device(t as usize) {
                    p.spill_window(t, set, n, groups)
                } else {
                    p.layout(set, n, groups)[t as usize]
                };
                if let Some(w) = w {
                    prop_assert!(w.count >= groups || ws.contains(&w), "{w:?} not among {ws:?}");
                    prop_assert!(w.count >= 1 && w.end() <= groups, "{w:?}");
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
    /// alone among those that own more, and a plan set holds every window it can get (where it
    /// spills to its knee too); with either lending, and spilling or not.
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
        // And lent by speeds, and spilling to random knees.
        let knees = curves[..n as usize].iter().map(|c| c.as_ref().map(|c| c[0] as u32 % (groups + 2))).collect();
        for p in [
            KrispShare::new(shares.clone()),
            KrispShare::with_speeds(shares.clone(), speeds, n, &topo),
            KrispShare::new(shares.clone()).lending_by_speeds(n, &topo),
            KrispShare::new(shares.clone()).with_knees(knees).spilling_to_knees(),
        ] {
            check_layouts(&p, &shares, bits, groups)?;
        }
    }
}

#[test]
fn a_set_keeps_the_layout_its_requests_ran_faster_on() {
    use crate::runtime::timer::monotonic_ns;
    // A prefill that scales with SMs, and a decoder whose requests barely do: by the curves
    // the prefill gets most of the device, unlike equal parts.
    let (linear, flat) = prefill_and_decoder_curves();
    let speeds = vec![Speeds::from_times(&linear, &TOPO), Speeds::from_times(&flat, &TOPO)];
    let be = vec![share(false, None); 2];
    let curves = KrispShare::with_speeds(be.clone(), speeds.clone(), 2, &TOPO).untried().layout(0b11, 2, 15);
    let equal = KrispShare::new(be.clone()).layout(0b11, 2, 15);
    assert_ne!(curves, equal);
    let load = GroupLoad::new(TOPO.groups, 2);
    let busy = |t| Demand { active: 0b11, sustained: true, ..Demand::new(t, PriorityClass::BestEffort, None, 1024) };
    // Requests of both tenants one after the other, `us[t]` µs each (a launch each, placed
    // with the windows laid out), `rounds` times.
    let feed = |p: &KrispShare, at: &mut u64, us: [f64; 2], rounds: usize| {
        for _ in 0..rounds {
            for (t, &u) in us.iter().enumerate() {
                let began = *at;
                p.decide(&busy(t as TenantId), &load, &TOPO);
                *at += (u * 1e3) as u64;
                p.observe(t as TenantId, began, *at);
            }
        }
    };
    let windows = |p: &KrispShare| p.layout(0b11, 2, 15);
    // On the curves' layout the requests take 10 and 31 ms. Equal parts faster for the
    // decoder: equal parts. Equal parts slower for the prefill and as fast for the decoder:
    // the curves' layout. Slower for the prefill and a little faster for the decoder, a trade
    // (the sum by the curves favours the curves' layout): equal parts.
    for (on_equal, equal_kept) in
        [([13_000.0, 22_000.0], true), ([13_000.0, 31_000.0], false), ([13_000.0, 30_000.0], true)]
    {
        let p = KrispShare::with_speeds(be.clone(), speeds.clone(), 2, &TOPO);
        // Each tenant's plans include its window of both layouts, captured as its own (not
        // borrowed: resident blocks at its priority).
        for t in 0..2 {
            let ws = p.windows(t, 2, 15);
            assert!([curves[t as usize], equal[t as usize]].iter().all(|w| ws.contains(&w.unwrap())), "{ws:?}");
            for w in [curves[t as usize].unwrap(), equal[t as usize].unwrap()] {
                assert_eq!(p.place(&busy(t), &load, &TOPO, w), Decision::run(Region::Groups(w), false));
            }
        }
        p.decide(&busy(0), &load, &TOPO);
        let mut at = monotonic_ns() + 1_000;
        assert_eq!(windows(&p), curves, "the curves' layout first");
        // Each tenant's first request on a layout is not counted (it pays for the layout's
        // first use; the very first also loads the tenant's kernels).
        feed(&p, &mut at, [1e6, 1e6], 1);
        assert_eq!(p.trial_stage(0b11), Some(Stage::Curves));
        // TRIAL_REQUESTS of each tenant on each layout.
        feed(&p, &mut at, [10_000.0, 31_000.0], TRIAL_REQUESTS - 1);
        assert_eq!(p.trial_stage(0b11), Some(Stage::Curves));
        feed(&p, &mut at, [10_000.0, 31_000.0], 1);
        assert_eq!((p.trial_stage(0b11), windows(&p)), (Some(Stage::Equal), equal.clone()));
        // A request begun before the switch is not counted on equal parts, nor one of which
        // no launch saw the windows laid out (its tenant alone, say).
        p.decide(&busy(1), &load, &TOPO);
        p.observe(1, at - 40_000_000, at);
        for t in 0..2 {
            p.observe(t, at, at + 1_000_000);
        }
        feed(&p, &mut at, [1e6, 1e6], 1);
        assert_eq!(p.trial_stage(0b11), Some(Stage::Equal), "the first on equal parts not counted");
        feed(&p, &mut at, on_equal, TRIAL_REQUESTS - 1);
        assert_eq!(p.trial_stage(0b11), Some(Stage::Equal));
        feed(&p, &mut at, on_equal, 1);
        assert_eq!(p.trial_stage(0b11), Some(Stage::Kept { equal: equal_kept }));
        assert_eq!(windows(&p), if equal_kept { equal.clone() } else { curves.clone() });
        // The verdict stands.
        feed(&p, &mut at, [10_000.0, 31_000.0], 8);
        assert_eq!(p.trial_stage(0b11), Some(Stage::Kept { equal: equal_kept }));
    }
    // Requests that ran mostly alone (three launches of four without windows laid out) count
    // for no set, however many.
    let lonely = KrispShare::with_speeds(be.clone(), speeds.clone(), 2, &TOPO);
    let mut at = monotonic_ns() + 1_000;
    for _ in 0..=2 * TRIAL_REQUESTS {
        for t in 0..2u32 {
            let began = at;
            for _ in 0..3 {
                lonely.decide(&Demand { active: 1 << t, ..busy(t) }, &load, &TOPO);
            }
            lonely.decide(&busy(t), &load, &TOPO);
            at += 10_000_000;
            lonely.observe(t, began, at);
        }
    }
    assert_eq!(lonely.trial_stage(0b11), None);
    // Untried: the curves' layout whatever the requests.
    let untried = KrispShare::with_speeds(be.clone(), speeds.clone(), 2, &TOPO).untried();
    untried.decide(&busy(0), &load, &TOPO);
    feed(&untried, &mut (monotonic_ns() + 1_000), [10_000.0, 31_000.0], 20);
    assert_eq!((untried.trial_stage(0b11), windows(&untried)), (None, curves.clone()));
    // Beside a latency-critical tenant no set is tried: its requests change the set.
    let lc = vec![share(true, Some(4)), share(false, None), share(false, None)];
    let mut three = speeds.clone();
    three.insert(0, None);
    let p = KrispShare::with_speeds(lc, three, 3, &TOPO);
    let busy3 = Demand { active: 0b110, sustained: true, ..Demand::new(1, PriorityClass::BestEffort, None, 1024) };
    p.decide(&busy3, &GroupLoad::new(TOPO.groups, 3), &TOPO);
    let mut at = monotonic_ns() + 1_000;
    for _ in 0..10 {
        for t in 1..3 {
            let began = at;
            at += 10_000_000;
            p.observe(t, began, at);
        }
    }
    assert_eq!(p.trial_stage(0b110), None);
}

#[test]
fn a_neighbour_between_its_requests_does_not_take_a_request_from_the_set() {
    use crate::runtime::timer::monotonic_ns;
    let speeds = prefill_and_two_decoders();
    let shares = vec![share(false, None); 3];
    let p = KrispShare::with_speeds(shares.clone(), speeds, 3, &TOPO);
    assert_ne!(p.clone().untried().layout(0b111, 3, 15), KrispShare::new(shares.clone()).layout(0b111, 3, 15));
    let load = GroupLoad::new(TOPO.groups, 3);
    let busy = |t, active| Demand { active, sustained: true, ..Demand::new(t, PriorityClass::BestEffort, None, 1024) };
    let mut at = monotonic_ns() + 1_000;
    // Rounds of requests in which tenants 0 and 1 see tenant 2 between two of their requests
    // once (the set of the other two, for a launch), between launches that see the whole set
    // (`whole` of them).
    let rounds = |p: &KrispShare, at: &mut u64, whole: usize| {
        for _ in 0..=TRIAL_REQUESTS {
            for t in 0..3u32 {
                let began = *at;
                for k in 0..whole {
                    p.decide(&busy(t, 0b111), &load, &TOPO);
                    if k == 0 && t < 2 {
                        p.decide(&busy(t, 0b011), &load, &TOPO);
                    }
                }
                *at += 10_000_000;
                p.observe(t, began, *at);
            }
        }
    };
    rounds(&p, &mut at, 2);
    assert!(p.trial.as_ref().is_some_and(|t| t.tried(0b011)), "the smaller set is tried too");
    assert_eq!((p.trial_stage(0b111), p.trial_stage(0b011)), (Some(Stage::Equal), None));
    // A request that saw the smaller set as often as the whole one is counted for neither: only
    // tenant 2's count, so the trial does not move on.
    let q = KrispShare::with_speeds(shares, p.speeds.clone(), 3, &TOPO);
    rounds(&q, &mut at, 1);
    assert_eq!((q.trial_stage(0b111), q.trial_stage(0b011)), (Some(Stage::Curves), None));
    // The run's results say where it stands: tenant 2's first request settled the stage, its
    // other two counted.
    assert_eq!(
        q.notes(),
        vec!["layout trial of tenants 0+1+2: on the curves' layout, counting (requests counted of each tenant's 2: 0 0, 1 0, 2 2)"]
    );
}

#[test]
fn plans_captured_before_a_request_do_not_count_for_its_set() {
    use crate::runtime::timer::monotonic_ns;
    let (linear, flat) = prefill_and_decoder_curves();
    let speeds = vec![Speeds::from_times(&linear, &TOPO), Speeds::from_times(&flat, &TOPO)];
    let p = KrispShare::with_speeds(vec![share(false, None); 2], speeds, 2, &TOPO);
    let load = GroupLoad::new(TOPO.groups, 2);
    let busy = |t| Demand { active: 0b11, sustained: true, ..Demand::new(t, PriorityClass::BestEffort, None, 1024) };
    let whole = GroupRange { first: 0, count: TOPO.groups };
    let mut at = monotonic_ns() + 1_000;
    // Each tenant's plan, captured on the whole device as if alone (many kernels), then its
    // first request beside the other: that request counts for the pair (and settles its stage).
    for t in 0..2 {
        let began = at;
        for _ in 0..10 {
            p.place(&Demand { active: 0, plan: true, ..busy(t) }, &load, &TOPO, whole);
        }
        p.decide(&busy(t), &load, &TOPO);
        at += 10_000_000;
        p.observe(t, began, at);
    }
    assert_eq!(p.trial_stage(0b11), Some(Stage::Curves));
    for _ in 0..TRIAL_REQUESTS {
        for t in 0..2 {
            let began = at;
            p.decide(&busy(t), &load, &TOPO);
            at += 10_000_000;
            p.observe(t, began, at);
        }
    }
    assert_eq!(p.trial_stage(0b11), Some(Stage::Equal));
}

#[test]
fn solo_times_weigh_the_verdict_where_every_tenant_has_one() {
    // The same requests (ms, the first of each tenant on each layout not counted): the prefill
    // 8 on the curves' layout and 10 on equal parts, the decoder within its spread on both
    // (14.0 and 14.6 against 13.6 and 14.2: no slower).
    let verdict = |p: KrispShare| {
        let curves = [[8.0, 14.0], [8.0, 14.0], [8.0, 14.6]];
        let equal = [[10.0, 13.6], [10.0, 13.6], [10.0, 14.2]];
        run_pair(&p, curves.into_iter().chain(equal).map(|ms| ms.map(|m| m * 1e3)));
        p.trial_stage(0b11)
    };
    // By the curves (the prefill's speed on its window well above what the decoder's slowest
    // request loses), the curves' layout.
    assert_eq!(verdict(tried_pair()), Some(Stage::Kept { equal: false }));
    // By solo times of 2 and 13 ms the bounds keep equal parts: 2/8 + 13/14.6 = 1.140 on the
    // curves' layout against 2/10 + 13/13.6 = 1.156 on equal parts.
    let solo = tried_pair().with_solo_times(vec![Some(2e3), Some(13e3)]);
    assert_eq!(verdict(solo.clone()), Some(Stage::Kept { equal: true }));
    // The run's results say so; the medians alone would have kept the curves' layout (2/8 +
    // 13/14.3 = 1.159 against 2/10 + 13/13.9 = 1.135).
    assert_eq!(
        solo.notes(),
        vec![
            "layout trial of tenants 0+1: kept equal parts (Σ speed by solo times: curves' layout 1.159, equal parts 1.135; \
             by the curves' layout's slowest requests 1.140, equal parts' fastest 1.156)"
        ]
    );
    // A tenant without one: the curves for the whole set.
    let half = tried_pair().with_solo_times(vec![Some(2e3), None]);
    assert_eq!(verdict(half), Some(Stage::Kept { equal: false }));
}

#[test]
fn the_curves_layout_is_kept_only_where_it_wins_beyond_the_trials_spread() {
    // Each layout's requests, ms, the first of each tenant not counted (it pays for the layout).
    let verdict = |curves: [[f64; 2]; 3], equal: [[f64; 2]; 3]| {
        let p = tried_pair().with_solo_times(vec![Some(5e3), Some(13e3)]);
        run_pair(&p, curves.into_iter().chain(equal).map(|ms| ms.map(|m| m * 1e3)));
        (p.trial_stage(0b11), p.notes())
    };
    assert_eq!(TRIAL_REQUESTS, 2, "the requests below");
    // By the medians the curves' layout wins (5/9 + 13/14 = 1.484 against 5/10 + 13/13.5 =
    // 1.463), but its slowest requests (5/9.4 + 13/14.4 = 1.435) lose to equal parts' fastest
    // (5/9.8 + 13/13.2 = 1.495): equal parts.
    let (stage, notes) = verdict([[9.0, 14.0], [8.6, 13.6], [9.4, 14.4]], [[10.0, 13.5], [9.8, 13.2], [10.2, 13.8]]);
    assert_eq!(stage, Some(Stage::Kept { equal: true }), "{notes:?}");
    assert!(notes[0].contains("curves' layout 1.484, equal parts 1.463; by the curves' layout's slowest requests 1.435, equal parts' fastest 1.495"), "{notes:?}");
    // Where even its slowest requests beat equal parts' fastest, the curves' layout.
    let (stage, notes) = verdict([[9.0, 14.0], [9.0, 14.0], [9.2, 14.2]], [[12.0, 16.0], [12.0, 16.0], [12.4, 16.5]]);
    assert_eq!(stage, Some(Stage::Kept { equal: false }), "{notes:?}");
}

#[test]
fn the_curves_layout_is_not_kept_where_it_slows_a_tenant() {
    // A trial of a prefill beside a decoder modelled on one an H200 ran (ms; the first request
    // of each tenant on each layout not counted): the curves' layout gives the prefill
    // 10.0–10.1 ms against 13.3–13.4 and the decoder 25.7–25.8 against 22.0–22.5. By solo
    // times of 6.28 and 18.29 ms it wins even by the bounds (6.28/10.1 + 18.29/25.8 = 1.331
    // against 6.28/13.3 + 18.29/22.0 = 1.304), but only by slowing the decoder: equal parts.
    let p = tried_pair().with_solo_times(vec![Some(6.28e3), Some(18.29e3)]);
    let (curves, equal) = a_trade();
    run_pair(&p, curves.into_iter().chain(equal).map(|ms| ms.map(|m| m * 1e3)));
    assert_eq!(p.trial_stage(0b11), Some(Stage::Kept { equal: true }));
    let notes = p.notes();
    assert!(
        notes[0]
            .contains("by the curves' layout's slowest requests 1.331, equal parts' fastest 1.304; tenant 1 slower"),
        "{notes:?}"
    );
    // Where the decoder's requests on the two layouts overlap (25.7–25.8 against 25.75–26.0), no
    // tenant is slower and the prefill's gain keeps the curves' layout.
    let p = tried_pair().with_solo_times(vec![Some(6.28e3), Some(18.29e3)]);
    let equal = [[13.3, 25.75], [13.3, 25.75], [13.4, 26.0]];
    run_pair(&p, curves.into_iter().chain(equal).map(|ms| ms.map(|m| m * 1e3)));
    assert_eq!(p.trial_stage(0b11), Some(Stage::Kept { equal: false }), "{:?}", p.notes());
    // The other way round: the prefill slower on the curves' layout (13.3–13.4 ms against
    // 10.0–10.1), the decoder faster (22.0–22.5 against 25.7–25.8), and by solo times of 3 and
    // 18.29 ms the sums favour it even by the bounds: equal parts, tenant 0 named.
    let p = tried_pair().with_solo_times(vec![Some(3e3), Some(18.29e3)]);
    let (equal, curves) = a_trade();
    run_pair(&p, curves.into_iter().chain(equal).map(|ms| ms.map(|m| m * 1e3)));
    let notes = p.notes();
    assert_eq!(p.trial_stage(0b11), Some(Stage::Kept { equal: true }), "{notes:?}");
    assert!(notes[0].contains("tenant 0 slower on the curves' layout"), "{notes:?}");
}

/// Requests (ms) of a prefill and a decoder on two layouts, the first faster for the prefill
/// and slower for the decoder (a stage each: the first request of each not counted).
fn a_trade() -> ([[f64; 2]; 3], [[f64; 2]; 3]) {
    ([[10.0, 25.7], [10.0, 25.7], [10.1, 25.8]], [[13.3, 22.0], [13.3, 22.0], [13.4, 22.5]])
}

#[test]
fn of_three_tenants_any_one_slower_keeps_equal_parts() {
    // Three busy best-effort tenants (a prefill and two decoders) whose curves' layout is not
    // equal parts; by solo times each layout's sum is known. On the curves' layout tenants 0
    // and 1 are faster, tenant 2 (the last id) slower beyond its spread: equal parts.
    let speeds = prefill_and_two_decoders();
    let shares = vec![share(false, None); 3];
    let verdict = |slowest_last: f64| {
        let p = KrispShare::with_speeds(shares.clone(), speeds.clone(), 3, &TOPO).with_solo_times(vec![
            Some(5e3),
            Some(9e3),
            Some(9e3),
        ]);
        assert!(p.trial.as_ref().is_some_and(|t| t.tried(0b111)));
        let load = GroupLoad::new(TOPO.groups, 3);
        let mut at = crate::runtime::timer::monotonic_ns() + 1_000;
        // Each stage: a request of each tenant not counted, then TRIAL_REQUESTS counted.
        let curves = [8.0, 10.0, slowest_last];
        let equal = [10.0, 12.0, 12.0];
        for ms in std::iter::repeat_n(curves, 1 + TRIAL_REQUESTS).chain(std::iter::repeat_n(equal, 1 + TRIAL_REQUESTS))
        {
            for (t, &m) in ms.iter().enumerate() {
                let t = t as TenantId;
                let d =
                    Demand { active: 0b111, sustained: true, ..Demand::new(t, PriorityClass::BestEffort, None, 1024) };
                let began = at;
                p.decide(&d, &load, &TOPO);
                at += (m * 1e6) as u64;
                p.observe(t, began, at);
            }
        }
        (p.trial_stage(0b111), p.notes())
    };
    // Tenant 2 at 12.5 ms against 12: slower, though the sums favour the curves' layout.
    let (stage, notes) = verdict(12.5);
    assert_eq!(stage, Some(Stage::Kept { equal: true }), "{notes:?}");
    assert!(notes[0].contains("tenant 2 slower on the curves' layout"), "{notes:?}");
    // As fast on both: the curves' layout.
    let (stage, notes) = verdict(12.0);
    assert_eq!(stage, Some(Stage::Kept { equal: false }), "{notes:?}");
}

/// The speeds of a prefill (tenant 0) and two decoders (`prefill_and_decoder_curves`).
fn prefill_and_two_decoders() -> Vec<Option<Speeds>> {
    let (linear, flat) = prefill_and_decoder_curves();
    vec![Speeds::from_times(&linear, &TOPO), Speeds::from_times(&flat, &TOPO), Speeds::from_times(&flat, &TOPO)]
}

/// A prefill beside a decoder (`prefill_and_decoder_curves`), busy best-effort tenants 0 and 1
/// whose curves' layout is not equal parts, so the pair is tried.
fn tried_pair() -> KrispShare {
    let (linear, flat) = prefill_and_decoder_curves();
    let speeds = vec![Speeds::from_times(&linear, &TOPO), Speeds::from_times(&flat, &TOPO)];
    KrispShare::with_speeds(vec![share(false, None); 2], speeds, 2, &TOPO)
}

/// Requests of a pair's tenants 0 and 1 in turn, both busy, each request `requests_us[i][t]` µs
/// long, one after the other from now.
fn run_pair(p: &KrispShare, requests_us: impl IntoIterator<Item = [f64; 2]>) {
    use crate::runtime::timer::monotonic_ns;
    let load = GroupLoad::new(TOPO.groups, 2);
    let mut at = monotonic_ns() + 1_000;
    for us in requests_us {
        for (t, &u) in us.iter().enumerate() {
            let t = t as TenantId;
            let d = Demand { active: 0b11, sustained: true, ..Demand::new(t, PriorityClass::BestEffort, None, 1024) };
            let began = at;
            p.decide(&d, &load, &TOPO);
            at += (u * 1e3) as u64;
            p.observe(t, began, at);
        }
    }
}

/// A request curve: `(sms, µs)` on each profiled SM count.
type Curve = Vec<(u32, f64)>;

/// A prefill whose requests scale with SMs and a decoder whose requests barely do: request
/// curves on every group count and the whole device.
fn prefill_and_decoder_curves() -> (Curve, Curve) {
    let sms: Vec<u32> = (1..=15).map(|g| g * 8).chain([132]).collect();
    let linear = sms.iter().map(|&s| (s, 13_200.0 / f64::from(s))).collect();
    let flat = sms.iter().map(|&s| (s, 100.0 + 1_320.0 / f64::from(s))).collect();
    (linear, flat)
}

#[test]
fn an_unbounded_latency_critical_tenant_spills_to_its_knee_when_asked() {
    // A latency-critical tenant with a 4-group quota, not bounded, whose request's knee is 7
    // groups, beside two best-effort tenants.
    let shares = vec![share(true, Some(4)), share(false, None), share(false, None)];
    let knees = vec![Some(7), None, None];
    let whole = KrispShare::new(shares.clone()).with_knees(knees.clone());
    let knee = whole.clone().spilling_to_knees();
    let lc = |active| Demand { active, sustained: true, ..Demand::new(0, PriorityClass::LatencyCritical, None, 1024) };
    let load = GroupLoad::new(TOPO.groups, 3);
    let region = |p: &KrispShare, active| match p.decide(&lc(active), &load, &TOPO) {
        Decision::Run { region, high_priority: true, borrowed: false, .. } => region,
        d => panic!("{d:?}"),
    };
    let g = |first, count| Region::Groups(GroupRange { first, count });
    // By default: the whole device beside anyone.
    assert_eq!(region(&whole, 0b111), Region::Whole);
    // Spilling: its window grown to its knee beside others; alone, the whole device.
    assert_eq!(region(&knee, 0b111), g(0, 7));
    assert_eq!(region(&knee, 0b011), g(0, 7));
    assert_eq!(region(&knee, 0b001), Region::Whole);
    // A window larger than its knee stays its window.
    let small = KrispShare::new(shares.clone()).with_knees(vec![Some(2), None, None]).spilling_to_knees();
    assert_eq!(region(&small, 0b111), g(0, 4));
    // A knee of the whole device: the whole device.
    let all = KrispShare::new(shares.clone()).with_knees(vec![Some(15), None, None]).spilling_to_knees();
    assert_eq!(region(&all, 0b111), Region::Whole);
    // Its plans: the windows it spills to (by default none).
    assert!(whole.windows(0, 3, TOPO.groups).is_empty());
    assert_eq!(knee.windows(0, 3, TOPO.groups), vec![GroupRange { first: 0, count: 7 }]);
    // A bounded tenant keeps its window either way.
    let bounded = vec![Share { bounded: true, ..shares[0] }, shares[1], shares[2]];
    let b = KrispShare::new(bounded).with_knees(knees).spilling_to_knees();
    assert_eq!(region(&b, 0b111), g(0, 4));
}

#[test]
fn an_idle_latency_critical_tenants_groups_go_to_its_neighbour() {
    // A latency-critical tenant (4 groups), then best-effort tenants of 5 and 6 groups: their
    // homes tile the 15 groups.
    let shares = vec![share(true, Some(4)), share(false, Some(5)), share(false, Some(6))];
    let p = KrispShare::new(shares.clone());
    let w = |first, count| Some(GroupRange { first, count });
    assert_eq!(p.layout(0b111, 3, 15), vec![w(0, 4), w(4, 5), w(9, 6)]);
    // The latency-critical tenant idle: its home goes to tenant 1, laid next to it; tenant 2
    // keeps its window.
    assert_eq!(p.layout(0b110, 3, 15), vec![None, w(0, 9), w(9, 6)]);
    assert_eq!(p.layout(0b100, 3, 15), vec![None, None, w(0, 15)]);
    // A best-effort tenant's idle home goes as before (here in equal parts: none has speeds).
    assert_eq!(p.layout(0b101, 3, 15), vec![w(0, 4), None, w(4, 11)]);
    assert_eq!(p.layout(0b001, 3, 15), vec![w(0, 15)]);
    // Lent by speeds (as before), tenant 2's window moves with the latency-critical tenant.
    let q = KrispShare::new(shares).lending_by_speeds(3, &TOPO);
    assert_eq!(q.layout(0b110, 3, 15), vec![None, w(0, 7), w(7, 8)]);
    // Every window of every set holds its tenant's home, and they tile the device.
    for set in 1u64..8 {
        let lay = p.layout(set, 3, 15);
        assert_eq!(lay.iter().flatten().map(|g| g.count).sum::<u32>(), 15, "{set:03b}");
        for t in ids(set) {
            assert!(lay[t].unwrap().contains(&p.home(t as u32, 3, 15)), "{set:03b} {t}");
        }
    }
}

#[test]
fn lending_by_speeds_comes_before_or_after_the_trials_settings() {
    let (linear, flat) = prefill_and_decoder_curves();
    let speeds = |n: usize| {
        (0..n).map(|t| Speeds::from_times(if t % 2 == 0 { &linear } else { &flat }, &TOPO)).collect::<Vec<_>>()
    };
    let solo = vec![Some(5e3), Some(13e3), Some(9e3)];
    // With a latency-critical tenant (tenant 0): nothing tried, so either order lays out the
    // same windows for every set.
    let lc = vec![share(true, Some(4)), share(false, None), share(false, None)];
    let first = KrispShare::with_speeds(lc.clone(), speeds(3), 3, &TOPO).lending_by_speeds(3, &TOPO);
    let first = first.untried().with_solo_times(solo.clone());
    let last = KrispShare::with_speeds(lc, speeds(3), 3, &TOPO).untried().with_solo_times(solo.clone());
    let last = last.lending_by_speeds(3, &TOPO);
    assert!(first.trial.is_none() && last.trial.is_none());
    for set in 1u64..8 {
        assert_eq!(first.layout(set, 3, 15), last.layout(set, 3, 15), "{set:03b}");
    }
    // Without one: lending changes nothing, the trial and its solo times stay.
    let be = vec![share(false, None); 2];
    let p = KrispShare::with_speeds(be, speeds(2), 2, &TOPO).with_solo_times(solo[..2].to_vec());
    let lent = p.clone().lending_by_speeds(2, &TOPO);
    assert!(lent.trial.as_ref().is_some_and(|t| Arc::ptr_eq(t, p.trial.as_ref().unwrap())));
    assert_eq!(lent.layout(0b11, 2, 15), p.layout(0b11, 2, 15));
}

#[test]
fn lent_homes_leave_the_other_windows_as_with_the_latency_critical_tenant_active() {
    // Two best-effort tenants without quotas beside a latency-critical one (4 groups) and a
    // third best-effort one (3 groups) that goes idle too.
    let p = KrispShare::new(vec![share(true, Some(4)), share(false, None), share(false, None), share(false, Some(3))]);
    let w = |first, count| Some(GroupRange { first, count });
    let with_lc = p.layout(0b0111, 4, 15);
    let without = p.layout(0b0110, 4, 15);
    // Tenant 2 keeps the window it has beside the active latency-critical tenant; tenant 1,
    // next to it, takes its 4 groups.
    assert_eq!(without[2], with_lc[2]);
    assert_eq!(without[1], w(0, with_lc[1].unwrap().count + 4));
    // Two latency-critical tenants and more tenants than groups: the active latency-critical
    // tenant keeps the size it has when the idle one is active too (the lending cuts no one),
    // and the windows still fill the device.
    let q = KrispShare::new(vec![
        share(true, Some(3)),
        share(true, Some(3)),
        share(false, None),
        share(false, None),
        share(false, None),
        share(false, None),
    ]);
    let lay = q.layout(0b000110, 6, 4);
    let all = q.layout(0b000111, 6, 4);
    assert_eq!(lay[1].unwrap().count, all[1].unwrap().count, "{lay:?} {all:?}");
    assert_eq!(lay.iter().flatten().map(|g| g.count).sum::<u32>(), 4);
}

#[test]
fn a_spill_stops_short_of_the_next_latency_critical_window_and_needs_a_knee() {
    // Two latency-critical tenants, neither bounded (3 and 2 groups), the first with a knee of
    // 9 groups, the second of 4, beside a best-effort tenant.
    let shares = vec![share(true, Some(3)), share(true, Some(2)), share(false, None)];
    let p = KrispShare::new(shares.clone()).with_knees(vec![Some(9), Some(4), None]).spilling_to_knees();
    let lc =
        |t, active| Demand { active, sustained: true, ..Demand::new(t, PriorityClass::LatencyCritical, None, 1024) };
    let load = GroupLoad::new(TOPO.groups, 3);
    let region = |p: &KrispShare, t, active| match p.decide(&lc(t, active), &load, &TOPO) {
        Decision::Run { region, .. } => region,
        d => panic!("{d:?}"),
    };
    let g = |first, count| Region::Groups(GroupRange { first, count });
    // The first stops where the second's window begins; the second, from group 3, grows to
    // its knee.
    assert_eq!(region(&p, 0, 0b111), g(0, 3));
    assert_eq!(region(&p, 1, 0b111), g(3, 4));
    // The second idle: the first grows to its knee.
    assert_eq!(region(&p, 0, 0b101), g(0, 9));
    // Without a known knee: the whole device.
    let unknown = KrispShare::new(shares).spilling_to_knees();
    assert_eq!(region(&unknown, 0, 0b101), Region::Whole);
    // Every region it takes is among its plans' windows.
    for active in [0b111, 0b101, 0b011] {
        if let Region::Groups(w) = region(&p, 0, active) {
            assert!(p.plan_windows(0, 3, TOPO.groups).contains(&w), "{active:03b} {w:?}");
        }
    }
}

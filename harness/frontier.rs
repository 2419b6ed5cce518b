//! What fixed splits of whole requests can reach, read from the profiles: for a scenario's
//! closed loops, the best STP of any split of the device's groups into one window a tenant
//! (one window also taking the SMs outside the groups, as krisp lays them out), each tenant's
//! speed on its window read from its profiled request curve the way krisp reads it
//! ([`Speeds::from_times`]: linear between profiled SM counts) — on an idle device, and beside
//! the profiler's memory-streaming co-runner on the rest of the device. Where every tenant is
//! busy all the time there is one active set, so a policy that gives each tenant's requests a
//! window of their own is one such split, and a time-share of splits reaches no more than the
//! best of them: only SMs that move within a request, or tenants that slow each other less,
//! go beyond. `rightsize report` shows it per scenario (docs/harness-h200.md reads it).

use std::fmt::Write as _;

use crate::profiler::Profile;
use crate::runtime::policy::{Speeds, Topology};

/// A split: a window per tenant (SMs), each tenant's speed ÷ solo on it, and their sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Each tenant's window, SMs.
    pub sms: Vec<u32>,
    /// Each tenant's speed ÷ solo on it.
    pub speeds: Vec<f64>,
    /// Their sum.
    pub stp: f64,
}

/// The device a profile was measured on, as krisp splits it: its profiled SM counts below the
/// whole device are whole groups of `granularity` SMs, and what the largest leaves of
/// `sm_count` lies outside the groups. `None` where the curve says nothing of it.
pub fn topology(p: &Profile, sm_count: u32) -> Option<Topology> {
    let g = p.granularity;
    let largest = p.request_curve.iter().map(|q| q.sms).filter(|&s| s < sm_count && g > 0 && s % g == 0).max()?;
    Some(Topology { groups: largest / g, granularity: g, rest_sms: sm_count - largest })
}

/// The split of `topo`'s groups (at least one a tenant; at most one window with the SMs
/// outside them) with the highest STP among those that keep every tenant at `floor` or more
/// of its solo speed; `None` where no split does. Exact: a knapsack over groups, tenant by
/// tenant.
pub fn best_split(tenants: &[Speeds], topo: &Topology, floor: f64) -> Option<Split> {
    let (n, groups) = (tenants.len(), topo.groups as usize);
    // best[i][b][r]: the most STP tenants i.. reach on b groups, the rest SMs still theirs to
    // take (r = 1) or not (None: they cannot, at the floor).
    let mut best = vec![[vec![None::<f64>; groups + 1], vec![None::<f64>; groups + 1]]; n + 1];
    best[n][0].fill(Some(0.0));
    best[n][1].fill(Some(0.0));
    // Tenant i's choices on b groups with the rest available or not: (groups, rest, speed).
    let choices = |i: usize, b: usize, r: usize| {
        (1..=b).flat_map(move |g| [(g, false), (g, true)]).filter(move |&(_, rest)| !rest || r == 1).filter_map(
            move |(g, rest)| {
                let v = tenants[i].on(g as u32, rest);
                (v >= floor).then_some((g, rest, v))
            },
        )
    };
    for i in (0..n).rev() {
        for r in 0..2 {
            for b in 0..=groups {
                best[i][r][b] = choices(i, b, r)
                    .filter_map(|(g, rest, v)| Some(v + best[i + 1][r - usize::from(rest)][b - g]?))
                    .reduce(f64::max);
            }
        }
    }
    // Walk it forward: at each tenant the window that reaches the best of the rest.
    let (mut b, mut r) = (groups, 1usize);
    let mut split = Split { sms: Vec::new(), speeds: Vec::new(), stp: 0.0 };
    for i in 0..n {
        let target = best[i][r][b]?;
        let (g, rest, v) = choices(i, b, r).find(|&(g, rest, v)| {
            best[i + 1][r - usize::from(rest)][b - g].is_some_and(|left| v + left >= target - 1e-12)
        })?;
        split.sms.push(g as u32 * topo.granularity + if rest { topo.rest_sms } else { 0 });
        split.speeds.push(v);
        split.stp += v;
        b -= g;
        r -= usize::from(rest);
    }
    Some(split)
}

/// The split whose slowest tenant is fastest (the most STP among those): the highest floor
/// any split keeps, found among the tenants' speeds on every window.
pub fn fairest_split(tenants: &[Speeds], topo: &Topology) -> Option<Split> {
    let mut floors: Vec<f64> =
        tenants.iter().flat_map(|s| (1..=topo.groups).flat_map(move |g| [s.on(g, false), s.on(g, true)])).collect();
    floors.sort_by(|a, b| b.total_cmp(a));
    floors.dedup();
    floors.into_iter().find_map(|f| best_split(tenants, topo, f))
}

/// A Markdown table of the best and the fairest split by idle and by co-runner speeds, for
/// tenants `names` on `topo`; `None` where not every tenant has one window at least.
pub fn table(names: &[String], idle: &[Speeds], beside: &[Speeds], topo: &Topology) -> Option<String> {
    let cell = |s: &Split| {
        let windows = s.sms.iter().map(u32::to_string).collect::<Vec<_>>().join(" · ");
        let speeds = s.speeds.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(" · ");
        format!("{:.2} | {windows} | {speeds}", s.stp)
    };
    let mut out = String::new();
    let _ = writeln!(out, "| curves | split | STP | SMs ({}) | speed ÷ solo |", names.join(" · "));
    let _ = writeln!(out, "| --- | --- | ---: | --- | --- |");
    for (label, speeds) in [("idle", idle), ("beside a streamer", beside)] {
        let best = best_split(speeds, topo, 0.0)?;
        let fair = fairest_split(speeds, topo)?;
        let _ = writeln!(out, "| {label} | best | {} |", cell(&best));
        if fair != best {
            let _ = writeln!(out, "| {label} | fairest | {} |", cell(&fair));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::RequestPoint;

    /// Two groups of 8 and 4 SMs outside them: windows of 8, 12, 16 and 20 SMs.
    const TOPO: Topology = Topology { groups: 2, granularity: 8, rest_sms: 4 };

    fn speeds(times: &[(u32, f64)], topo: &Topology) -> Speeds {
        Speeds::from_times(times, topo).unwrap()
    }

    #[test]
    fn the_best_split_is_exact_and_gives_the_rest_to_one_window() {
        // Four groups; a saturates on one group, b scales with SMs.
        let topo = Topology { groups: 4, granularity: 8, rest_sms: 4 };
        let a = speeds(&[(8, 100.0), (36, 100.0)], &topo);
        let b = speeds(&[(8, 360.0), (16, 180.0), (24, 120.0), (36, 80.0)], &topo);
        let s = best_split(&[a.clone(), b.clone()], &topo, 0.0).unwrap();
        assert_eq!(s.sms, vec![8, 28], "b takes three groups and the rest");
        assert!((s.stp - (1.0 + b.on(3, true))).abs() < 1e-12, "{s:?}");
        // Against every split by brute force, three tenants.
        let c = speeds(&[(8, 50.0), (16, 40.0), (36, 35.0)], &topo);
        let t = [a, b, c];
        let mut brute = f64::MIN;
        for g in [(1u32, 1u32, 1u32), (2, 1, 1), (1, 2, 1), (1, 1, 2)] {
            for rest in 0..4 {
                let v = t[0].on(g.0, rest == 0) + t[1].on(g.1, rest == 1) + t[2].on(g.2, rest == 2);
                brute = brute.max(v);
            }
        }
        assert!((best_split(&t, &topo, 0.0).unwrap().stp - brute).abs() < 1e-12);
        assert_eq!(
            best_split(&[t[0].clone(), t[1].clone(), t[2].clone(), t[0].clone(), t[0].clone()], &topo, 0.0),
            None
        );
    }

    #[test]
    fn a_floor_rules_out_splits_and_the_fairest_lifts_the_lowest() {
        // a: 0.5 on one group, 0.8 on two; b: 0.6 on one group, 0.75 on two (20 SMs: 1.0 each).
        let a = speeds(&[(8, 200.0), (16, 125.0), (20, 100.0)], &TOPO);
        let b = speeds(&[(8, 500.0 / 3.0), (16, 400.0 / 3.0), (20, 100.0)], &TOPO);
        let t = [a, b];
        let best = best_split(&t, &TOPO, 0.0).unwrap();
        let fair = fairest_split(&t, &TOPO).unwrap();
        assert!(
            fair.speeds.iter().copied().fold(f64::MAX, f64::min)
                >= best.speeds.iter().copied().fold(f64::MAX, f64::min)
        );
        assert!(fair.stp <= best.stp + 1e-12);
        let lowest = fair.speeds.iter().copied().fold(f64::MAX, f64::min);
        assert_eq!(best_split(&t, &TOPO, lowest + 1e-9), None, "no split keeps more than the fairest's lowest");
    }

    #[test]
    fn the_topology_and_beside_times_come_from_the_profile() {
        let mut p = crate::profiler::tests::sample();
        p.granularity = 8;
        p.request_curve = vec![
            RequestPoint { sms: 8, us: 400.0, step_us: 0.0, co_us: 600.0, co_step_us: 0.0 },
            RequestPoint { sms: 16, us: 200.0, step_us: 0.0, co_us: 0.0, co_step_us: 0.0 },
            RequestPoint { sms: 20, us: 100.0, step_us: 0.0, co_us: 0.0, co_step_us: 0.0 },
        ];
        assert_eq!(topology(&p, 20), Some(TOPO));
        // 16 SMs was not measured beside the co-runner: not read as if it were.
        assert_eq!(p.request_us_beside(1), vec![(8, 600.0), (20, 100.0)]);
    }

    #[test]
    fn the_table_shows_idle_and_beside_rows() {
        let a = speeds(&[(8, 200.0), (20, 100.0)], &TOPO);
        let b = speeds(&[(8, 120.0), (20, 100.0)], &TOPO);
        let slow = speeds(&[(8, 300.0), (20, 100.0)], &TOPO);
        let t = table(&["a".into(), "b".into()], &[a.clone(), b.clone()], &[slow, b], &TOPO).unwrap();
        assert!(t.contains("| idle | best | "), "{t}");
        assert!(t.contains("| beside a streamer | best | "), "{t}");
        let one_group = Topology { groups: 1, granularity: 8, rest_sms: 4 };
        assert_eq!(table(&["a".into(), "a".into()], &[a.clone(), a.clone()], &[a.clone(), a], &one_group), None);
    }
}

//! What fixed splits of whole requests can reach, read from the profiles: for a scenario whose
//! tenants are all closed loops, the best STP of any split of the device into one window a
//! tenant, each tenant's speed on its window read from its profiled request curve — on an
//! idle device, and beside the profiler's memory-streaming co-runner on the rest of the device
//! (`Profile::request_us_beside`). A closed loop whose tenants are all busy all the time has one
//! active set, so a policy that gives whole requests windows (krisp's included) is one such
//! split, and a time-share of splits reaches no more than the best of them: only SMs that move
//! within a request, or tenants that slow each other less than the co-runner does, can go
//! beyond. `rightsize report` shows it per scenario (docs/harness-h200.md reads it).

use std::fmt::Write as _;

/// One tenant's speeds ÷ solo by window size: `(SMs, speed)`, the solo time being its request
/// curve's point of the most SMs (the whole device).
pub type Speeds = Vec<(u32, f64)>;

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

/// Speeds ÷ solo from a request curve (`(SMs, µs)`): its point of the most SMs over each
/// point's time; empty where the curve has no usable point.
pub fn speeds(curve: &[(u32, f64)]) -> Speeds {
    let Some(&(_, solo)) = curve.iter().filter(|p| p.1.is_finite() && p.1 > 0.0).max_by_key(|p| p.0) else {
        return Vec::new();
    };
    curve.iter().filter(|p| p.0 > 0 && p.1.is_finite() && p.1 > 0.0).map(|&(sms, us)| (sms, solo / us)).collect()
}

/// The split of at most `sms` SMs with the highest STP among those that keep every tenant at
/// `floor` or more of its solo speed, each window one of its tenant's profiled sizes; `None`
/// where no split does (or a tenant has no speeds). Exact: a knapsack over SMs, tenant by
/// tenant.
pub fn best_split(tenants: &[Speeds], sms: u32, floor: f64) -> Option<Split> {
    let n = tenants.len();
    let width = sms as usize + 1;
    // best[i][b]: the most STP tenants i.. reach on b SMs (None: they cannot, at the floor).
    let mut best = vec![vec![None::<f64>; width]; n + 1];
    best[n].fill(Some(0.0));
    for i in (0..n).rev() {
        for b in 0..width {
            best[i][b] = tenants[i]
                .iter()
                .filter(|&&(s, v)| s as usize <= b && v >= floor)
                .filter_map(|&(s, v)| Some(v + best[i + 1][b - s as usize]?))
                .reduce(f64::max);
        }
    }
    best[0][sms as usize]?;
    // Walk it forward: at each tenant the window that reaches the best of the rest.
    let (mut b, mut split) = (sms as usize, Split { sms: Vec::new(), speeds: Vec::new(), stp: 0.0 });
    for i in 0..n {
        let target = best[i][b]?;
        let &(s, v) = tenants[i].iter().find(|&&(s, v)| {
            s as usize <= b && v >= floor && best[i + 1][b - s as usize].is_some_and(|rest| v + rest >= target - 1e-12)
        })?;
        split.sms.push(s);
        split.speeds.push(v);
        split.stp += v;
        b -= s as usize;
    }
    Some(split)
}

/// The split whose lowest tenant is fastest (the most STP among those): the highest floor any
/// split keeps, found among the tenants' speeds.
pub fn fairest_split(tenants: &[Speeds], sms: u32) -> Option<Split> {
    let mut floors: Vec<f64> = tenants.iter().flatten().map(|p| p.1).collect();
    floors.sort_by(|a, b| b.total_cmp(a));
    floors.into_iter().find_map(|f| best_split(tenants, sms, f))
}

/// A Markdown table of the best and the fairest split by idle and by co-runner curves, for
/// tenants `names` on `sms` SMs; `None` where a tenant has no curve.
pub fn table(names: &[String], idle: &[Speeds], beside: &[Speeds], sms: u32) -> Option<String> {
    let cell = |s: &Split| {
        let windows = s.sms.iter().map(u32::to_string).collect::<Vec<_>>().join(" · ");
        let speeds = s.speeds.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(" · ");
        format!("{:.2} | {windows} | {speeds}", s.stp)
    };
    let mut out = String::new();
    let _ = writeln!(out, "| curves | split | STP | SMs ({}) | speed ÷ solo |", names.join(" · "));
    let _ = writeln!(out, "| --- | --- | ---: | --- | --- |");
    for (label, curves) in [("idle", idle), ("beside a streamer", beside)] {
        let best = best_split(curves, sms, 0.0)?;
        let fair = fairest_split(curves, sms)?;
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

    fn curve(points: &[(u32, f64)]) -> Speeds {
        speeds(points)
    }

    #[test]
    fn speeds_are_the_whole_device_time_over_each_points() {
        assert_eq!(curve(&[(32, 400.0), (132, 100.0), (64, 200.0)]), vec![(32, 0.25), (132, 1.0), (64, 0.5)]);
        assert!(curve(&[(32, 0.0), (64, f64::NAN)]).is_empty());
    }

    #[test]
    fn the_best_split_is_found_exactly_and_keeps_the_budget() {
        // a saturates at 32 SMs, b scales: b should get what a does not need.
        let a = curve(&[(32, 100.0), (64, 100.0), (96, 100.0), (128, 100.0)]);
        let b = curve(&[(32, 400.0), (64, 200.0), (96, 133.0), (128, 100.0)]);
        let s = best_split(&[a.clone(), b.clone()], 128, 0.0).unwrap();
        assert_eq!(s.sms, vec![32, 96]);
        assert!((s.stp - (1.0 + 100.0 / 133.0)).abs() < 1e-9, "{s:?}");
        // Against every pair by brute force, on an uneven budget.
        for budget in [64, 100, 128, 160, 256] {
            let brute = a
                .iter()
                .flat_map(|x| b.iter().map(move |y| (x, y)))
                .filter(|(x, y)| x.0 + y.0 <= budget)
                .map(|(x, y)| x.1 + y.1)
                .reduce(f64::max);
            assert_eq!(best_split(&[a.clone(), b.clone()], budget, 0.0).map(|s| s.stp), brute, "budget {budget}");
        }
        assert_eq!(best_split(&[a, b], 32, 0.0), None, "two windows do not fit in 32 SMs");
    }

    #[test]
    fn a_floor_rules_out_splits_and_the_fairest_lifts_the_lowest() {
        let a: Speeds = vec![(32, 0.5), (64, 0.8), (96, 1.0)];
        let b: Speeds = vec![(32, 0.6), (64, 0.75), (96, 0.9)];
        let t = [a, b];
        let best = best_split(&t, 128, 0.0).unwrap();
        assert_eq!((best.sms.clone(), best.speeds.clone()), (vec![96, 32], vec![1.0, 0.6]));
        let floored = best_split(&t, 128, 0.7).unwrap();
        assert_eq!(floored.sms, vec![64, 64]);
        assert!((floored.stp - 1.55).abs() < 1e-9 && floored.stp < best.stp);
        assert_eq!(best_split(&t, 128, 0.8), None, "a at 0.8 and b at 0.9 need 160 SMs");
        assert_eq!(fairest_split(&t, 128), Some(floored));
    }

    #[test]
    fn the_table_shows_idle_and_beside_rows() {
        let a = curve(&[(64, 200.0), (128, 100.0)]);
        let b = curve(&[(64, 120.0), (128, 100.0)]);
        let slow = curve(&[(64, 300.0), (128, 100.0)]);
        let t = table(&["a".into(), "b".into()], &[a.clone(), b.clone()], &[slow, b], 128).unwrap();
        assert!(t.contains("| idle | best | 1.33 | 64 · 64 | 0.50 · 0.83 |"), "{t}");
        assert!(t.contains("| beside a streamer | best | 1.17 | 64 · 64 | 0.33 · 0.83 |"), "{t}");
        assert_eq!(table(&["a".into()], &[Vec::new()], &[a], 128), None);
    }
}

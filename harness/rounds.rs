//! Comparisons run in rounds, judged together (`rightsize rounds DIR…`): one run of an open
//! loop's load sweep moves a mode's SLO goodput by a sweep step from one call to the next, so
//! a mode is judged by the median of its rounds, against the best mode's median.

use std::fmt::Write as _;

use super::output::{lowest_be, runs_of, score, worst_lc};
use super::results::{Report, Status};

/// The median of `v` (the mean of the middle two where their number is even); `None` if empty.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Values by round, "–" where a round has none.
fn by_round(v: &[Option<f64>], digits: usize) -> String {
    v.iter().map(|x| x.map_or("–".into(), |x| format!("{x:.digits$}"))).collect::<Vec<_>>().join(", ")
}

/// Per scenario of the rounds (`reports`, one comparison each, in the order given) and per
/// mode: each round's score (SLO goodput in offered requests/s where the scenario has a load
/// sweep, else STP), its median, that median ÷ the best mode's, and each round's
/// latency-critical p99 ÷ solo and lowest best-effort throughput ÷ solo, as Markdown.
pub fn rounds(reports: &[Report]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# rightsize rounds\n");
    for (k, r) in reports.iter().enumerate() {
        let _ = writeln!(s, "{}. {}, {} UTC: `{}`", k + 1, r.machine(), r.date, r.command);
    }
    let mut scenarios: Vec<&super::scenario::Scenario> = Vec::new();
    for sc in reports.iter().flat_map(|r| &r.scenarios) {
        if !scenarios.iter().any(|seen| seen.name == sc.name) {
            scenarios.push(sc);
        }
    }
    for sc in scenarios {
        // Every mode that ran, in the order modes first ran (some only in the sweep).
        let mut modes: Vec<&str> = Vec::new();
        let ran = reports.iter().flat_map(|r| {
            let runs = runs_of(r, &sc.name).map(|run| run.mode.as_str());
            runs.chain(r.sweeps.iter().filter(|p| p.scenario == sc.name).map(|p| p.mode.as_str()))
        });
        for mode in ran {
            if !modes.contains(&mode) {
                modes.push(mode);
            }
        }
        // A round's scores of the scenario's own runs only (another file may name it too).
        let in_round = |r: &Report| r.scenarios.iter().any(|x| x.name == sc.name);
        let scores: Vec<Vec<Option<f64>>> = modes
            .iter()
            .map(|m| reports.iter().map(|r| in_round(r).then(|| score(r, sc, m)).flatten()).collect())
            .collect();
        let medians: Vec<Option<f64>> = scores.iter().map(|v| median(v.iter().flatten().copied().collect())).collect();
        let best = medians.iter().flatten().copied().fold(0.0, f64::max);
        let what = if sc.sweep.is_some() { "SLO goodput req/s" } else { "STP" };
        let digits = if sc.sweep.is_some() { 0 } else { 2 };
        let _ = writeln!(s, "\n## {}\n", sc.name);
        let _ = writeln!(
            s,
            "| mode | {what}, by round | median | ÷ best median | LC p99 ÷ solo, by round | BE min throughput ÷ solo, by round |"
        );
        let _ = writeln!(s, "| --- | --- | ---: | ---: | --- | --- |");
        for ((mode, v), med) in modes.iter().zip(&scores).zip(&medians) {
            let runs: Vec<_> = reports
                .iter()
                .map(|r| runs_of(r, &sc.name).find(|run| run.mode == *mode && matches!(run.status, Status::Ok)))
                .collect();
            let lc: Vec<Option<f64>> = runs.iter().map(|run| run.and_then(worst_lc).map(|x| x.0)).collect();
            let be: Vec<Option<f64>> = runs.iter().map(|run| run.and_then(lowest_be)).collect();
            let ratio = med.filter(|_| best > 0.0).map_or("–".into(), |m| format!("{:.2}", m / best));
            let _ = writeln!(
                s,
                "| {mode} | {} | {} | {ratio} | {} | {} |",
                by_round(v, digits),
                med.map_or("–".into(), |m| format!("{m:.digits$}")),
                if lc.iter().any(Option::is_some) { by_round(&lc, 2) } else { "–".into() },
                if be.iter().any(Option::is_some) { by_round(&be, 2) } else { "–".into() },
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::output::tests::report;

    #[test]
    fn a_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn rounds_are_judged_by_their_median_against_the_best_modes() {
        // Without a sweep a scenario is judged by STP: the test comparison's MPS at 1.00 and
        // krisp-conserved at 1.60 in each of two rounds; a skipped mode has none.
        let closed = rounds(&[report(), report()]);
        assert!(closed.contains("| mps | 1.00, 1.00 | 1.00 | 0.63 | 2.00, 2.00 | 0.50, 0.50 |"), "{closed}");
        assert!(
            closed.contains("| krisp-conserved | 1.60, 1.60 | 1.60 | 1.00 | 1.25, 1.25 | 0.80, 0.80 |"),
            "{closed}"
        );
        assert!(closed.contains("| timeslice | –, – | – | – | – | – |"), "{closed}");
        assert!(closed.contains("1. GPU (132 SMs), driver ?, 2026-11-21 00:00:00 UTC: `rightsize compare`"));
        // With its sweep, by SLO goodput. Round 1 as the test comparison has it (krisp met
        // every run of ×1, 100 req/s); round 2 with one of krisp's runs at ×1 missing too;
        // round 3 like round 1.
        let mut one = report();
        one.scenarios[0].sweep = Some(vec![1.0, 2.0]);
        let mut two = one.clone();
        for p in two.sweeps.iter_mut().filter(|p| p.mode == "krisp" && p.scale == 1.0 && p.repeat == 1) {
            p.tenants[0].p99_ms = 9.0;
        }
        let t = rounds(&[one.clone(), two, one]);
        assert!(t.contains("## pair") && t.contains("| mode | SLO goodput req/s, by round |"), "{t}");
        // krisp's goodput 100, 0 (no scale met), 100: median 100, the best; MPS met none; a
        // mode with runs but no sweep points has no goodput.
        assert!(t.contains("| krisp | 100, 0, 100 | 100 | 1.00 | – | – |"), "{t}");
        assert!(t.contains("| mps | 0, 0, 0 | 0 | 0.00 | 2.00, 2.00, 2.00 |"), "{t}");
        assert!(t.contains("| krisp-conserved | –, –, – | – | – | 1.25, 1.25, 1.25 |"), "{t}");
    }
}

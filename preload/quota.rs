//! Whether a latency-critical process's quota earns its keep, judged by its own work on the GPU.
//!
//! While a latency-critical process is busy, the best-effort processes keep its quota's SMs
//! free (preload/board.rs). That costs them those SMs, and it buys the latency-critical process
//! something only where their blocks would otherwise hold SMs its kernels wait for. Its own
//! kernels already run where they were launched, at MPS's higher client priority where the
//! harness sets it, so the blocks of a kernel it launches take each SM as one frees. A
//! Python-bound decoder, whose kernels are small and far apart, gains nothing from the quota
//! (measured on an H100: docs/h100.md).
//!
//! So the quota is tried, per number of busy processes, by the process's *periods*, as
//! [`crate::starving`] reads them: its launches from one wait for the GPU to the end of the
//! next (a request, or a step of one), each against the least time a period of the same number
//! of launches took. A period's end is its wait: the GPU's work still to do when the host had
//! launched it all. No SM kept free can shorten a period by more than that wait, so a process
//! that waits for less than `1 − 1/GAIN` of its periods (bound by its host) cannot run
//! [`GAIN`] times faster with its quota.
//!
//! The first [`TRIAL`] periods ended beside others run with the quota released. If their median
//! wait leaves no room for a gain of [`GAIN`], the quota stays released. Otherwise the next
//! [`TRIAL`] run with it kept, and it is kept if their median period ran at least [`GAIN`] times
//! faster than the released ones' median (released otherwise). The verdict stands for that
//! number of busy processes while the process runs. Both windows are read against the least
//! times known at the verdict, so a least time found late moves both alike. Before its first
//! verdict among the processes busy now, a latency-critical process runs at MPS's client
//! priority only, with nothing kept free, except in the kept window of its trial.
//!
//! `RIGHTSIZE_QUOTA_TRIAL=0` keeps the quota whenever the process is busy, without a trial (the
//! rule before 2026-11-26).

use std::collections::HashMap;

use crate::board::Board;

/// Whether the process on `board` tries its quota: a latency-critical one with a quota, unless
/// `RIGHTSIZE_QUOTA_TRIAL=0`.
pub(crate) fn tried(board: &Board) -> bool {
    board.latency_critical() && board.quota() > 0 && super::setting("RIGHTSIZE_QUOTA_TRIAL") != Some(0)
}

/// Periods of each phase of a trial. Half the [`crate::starving::WINDOW`] that judges
/// starvation: a process that waits for the GPU once a request has a period per request, and
/// a latency-critical one may serve only a few a second (the PyTorch decoder of
/// torch-lc-decoder: 2), so a trial of two such windows would outlast a run of 15 s.
pub(crate) const TRIAL: usize = 8;

/// How many times faster a latency-critical process's median period must run with its quota
/// kept than without for the quota to be kept: a reservation that gains it less than a tenth
/// is not worth the SMs it takes from the others (17% of a best-effort process's throughput
/// on the H100, docs/h100.md), and a tenth is about the spread of a window's median.
pub(crate) const GAIN: f64 = 1.1;

/// One period of a trial: its launches, its ns, and the ns of its last part, the wait for the
/// GPU that ended it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Period {
    pub launches: u64,
    pub ns: u64,
    pub wait_ns: u64,
}

/// One trial of the quota, for one number of busy processes: the periods of each phase (the
/// released one first) and, once given, the verdict.
#[derive(Debug, Default, Clone)]
pub(crate) struct Trial {
    released: Vec<Period>,
    kept: Vec<Period>,
    verdict: Option<bool>,
}

impl Trial {
    /// A period ended, run as [`Trial::keeps`] said.
    pub(crate) fn ended(&mut self, p: Period) {
        if self.verdict.is_some() {
            return;
        }
        let phase = if self.released.len() < TRIAL { &mut self.released } else { &mut self.kept };
        if phase.len() < TRIAL {
            phase.push(p);
        }
    }

    /// Whether the quota is kept now, `best` being the least ns a period of so many launches
    /// took: released for the trial's first window, and kept for its second where the first's
    /// waits leave room for a gain; then the verdict, and (second) the verdict again where this
    /// call gave it.
    pub(crate) fn keeps(&mut self, best: &HashMap<u64, u64>) -> (bool, Option<bool>) {
        if let Some(v) = self.verdict {
            return (v, None);
        }
        if self.released.len() < TRIAL {
            return (false, None);
        }
        let released =
            median(&self.released, |p| p.ns as f64 / best.get(&p.launches).copied().unwrap_or(p.ns).max(1) as f64);
        // The most any SMs could speed a period up: to its host part, without its wait.
        let room = median(&self.released, |p| p.ns as f64 / p.ns.saturating_sub(p.wait_ns).max(1) as f64);
        let keep = if room < GAIN {
            false
        } else if self.kept.len() < TRIAL {
            return (true, None);
        } else {
            let kept =
                median(&self.kept, |p| p.ns as f64 / best.get(&p.launches).copied().unwrap_or(p.ns).max(1) as f64);
            kept * GAIN <= released
        };
        self.verdict = Some(keep);
        (keep, Some(keep))
    }

    /// The verdict, once given.
    #[cfg(test)]
    pub(crate) fn verdict(&self) -> Option<bool> {
        self.verdict
    }
}

/// The median of `of` over a full phase.
fn median(phase: &[Period], of: impl Fn(&Period) -> f64) -> f64 {
    let mut v: Vec<f64> = phase.iter().map(of).collect();
    v.sort_by(f64::total_cmp);
    (v[TRIAL / 2 - 1] + v[TRIAL / 2]) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(launches: u64, ns: u64, wait_ns: u64) -> Period {
        Period { launches, ns, wait_ns }
    }

    /// A trial's two windows: `without` and `with` ns for periods of 10 launches that end in a
    /// wait of half their time (and one of 40 launches in each, twice as slow as its least
    /// time of 1,000 ns).
    fn tried(without: u64, with: u64) -> (Trial, HashMap<u64, u64>) {
        let (mut t, best) = (Trial::default(), HashMap::from([(10, 100), (40, 1_000)]));
        for phase in [without, with] {
            t.ended(period(40, 2_000, 1_000));
            for _ in 1..TRIAL {
                t.ended(period(10, phase, phase / 2));
            }
        }
        (t, best)
    }

    #[test]
    fn the_quota_is_released_for_a_window_kept_for_the_next_then_judged() {
        let (mut t, best) = (Trial::default(), HashMap::from([(10, 100)]));
        for i in 0..TRIAL {
            assert_eq!(t.keeps(&best), (false, None), "period {i}: the first window releases it");
            t.ended(period(10, 300, 200));
        }
        for i in 0..TRIAL {
            assert_eq!(t.keeps(&best), (true, None), "period {i}: the second keeps it");
            t.ended(period(10, 100, 10));
        }
        assert_eq!(t.keeps(&best), (true, Some(true)), "3x slower without it: kept");
        t.ended(period(10, 10_000, 0));
        assert_eq!(t.keeps(&best), (true, None), "the verdict stands, given once");
        assert_eq!(t.verdict(), Some(true));
    }

    #[test]
    fn a_quota_is_kept_only_where_it_makes_the_work_run_a_tenth_faster() {
        let best = tried(0, 0).1;
        assert_eq!(tried(140, 120).0.keeps(&best).1, Some(true), "1.17x faster with it");
        assert_eq!(tried(130, 120).0.keeps(&best).1, Some(false), "1.08x: not worth it");
        assert_eq!(tried(132, 120).0.keeps(&best).1, Some(true), "1.1x: kept");
        assert_eq!(tried(120, 140).0.keeps(&best).1, Some(false), "slower with it");
        assert_eq!(tried(100, 100).0.keeps(&best).1, Some(false), "no gain");
    }

    #[test]
    fn a_process_that_hardly_waits_for_the_gpu_is_released_without_a_kept_window() {
        // Waits of 8% of each period: no SMs can make it 1.1x faster.
        let (mut t, best) = (Trial::default(), HashMap::from([(10, 100)]));
        for _ in 0..TRIAL {
            t.ended(period(10, 1_000, 80));
        }
        assert_eq!(t.keeps(&best), (false, Some(false)), "released at once");
        // Waits of 10%: room for 1.11x, so the kept window is tried.
        let mut t = Trial::default();
        for _ in 0..TRIAL {
            t.ended(period(10, 1_000, 100));
        }
        assert_eq!(t.keeps(&best), (true, None));
    }

    #[test]
    fn each_period_is_read_against_the_least_time_of_its_own_work() {
        // Periods of 40 launches, 10x as long as those of 10: read against their own least
        // times they are as slow, and a count never seen counts as its own least (1x).
        let (mut t, mut best) = (Trial::default(), HashMap::from([(10, 100), (40, 1_000)]));
        for (launches, ns) in [(10, 150), (40, 1_500)].repeat(TRIAL / 2) {
            t.ended(period(launches, ns, ns / 2));
        }
        for (launches, ns) in [(10, 120), (40, 1_200)].repeat(TRIAL / 2) {
            t.ended(period(launches, ns, ns / 2));
        }
        assert_eq!(t.clone().keeps(&best), (true, Some(true)), "1.5x against 1.2x");
        // Without the 40-launch least: those periods at 1x each way, the medians 1.25 and 1.1.
        best.remove(&40);
        assert_eq!(t.keeps(&best), (true, Some(true)));
        assert_eq!(t.released.len() + t.kept.len(), 2 * TRIAL);
    }
}

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
//! So the quota is tried, per number of busy processes, as [`crate::starving`] judges
//! starvation: by the process's *periods* (its launches from one wait for the GPU to the end of
//! the next: a request, or a step of one), each against the least time a period of the same
//! number of launches took (its work's time alone, or the best it got). The first [`TRIAL`]
//! periods ended beside others are run with the quota kept, the next [`TRIAL`] with it
//! released. The quota is then kept if the median period with it ran at least [`GAIN`] times
//! faster than the median period without, and released otherwise; the verdict stands for that
//! number of busy processes while the process runs. Each window is read against the least
//! times known when the verdict is given.
//!
//! Tried and not kept (docs/h100.md): the released window first, ending the trial there where
//! the periods' waits for the GPU were under a tenth of them. In its one round on an H100 it
//! released the GPU-bound encoder of torch-lc-open at once (p99 1.65× MPS's), so the waits it
//! read were not the GPU work its periods waited for (a wait inside the model's forward ends
//! a period early, say).
//!
//! `RIGHTSIZE_QUOTA_TRIAL=0` keeps the quota whenever the process is busy, without a trial (the
//! rule before 2026-11-26).

use std::collections::HashMap;

use crate::board::Board;
use crate::starving::median_of_last;

/// Whether the process on `board` tries its quota: a latency-critical one with a quota, unless
/// `RIGHTSIZE_QUOTA_TRIAL=0`.
pub(crate) fn tried(board: &Board) -> bool {
    board.latency_critical() && board.quota() > 0 && super::setting("RIGHTSIZE_QUOTA_TRIAL") != Some(0)
}

/// Periods of each phase of a trial. Half the [`crate::starving::WINDOW`] that judges
/// starvation: a process that waits for the GPU once a request has a period per request, and
/// a latency-critical one may serve only a few a second (the PyTorch decoder of
/// torch-lc-decoder: 2), so a trial of two such windows took 16 s of such a process's run
/// (measured on an H100: in one of two 15-s runs it gave no verdict).
pub(crate) const TRIAL: usize = 8;

/// How many times faster a latency-critical process's median period must run with its quota
/// kept than without for the quota to be kept: a reservation that gains it less than a tenth
/// is not worth the SMs it takes from the others (17% of a best-effort process's throughput
/// on the H100, docs/h100.md), and a tenth is about the spread of a window's median.
pub(crate) const GAIN: f64 = 1.1;

/// One trial of the quota, for one number of busy processes: the periods (launches, ns) of
/// each phase and, once both are full, the verdict.
#[derive(Debug, Default, Clone)]
pub(crate) struct Trial {
    kept: Vec<(u64, u64)>,
    released: Vec<(u64, u64)>,
    verdict: Option<bool>,
}

impl Trial {
    /// A period of `launches` launches took `ns`, run as [`Trial::keeps`] said.
    pub(crate) fn ended(&mut self, launches: u64, ns: u64) {
        if self.verdict.is_some() {
            return;
        }
        let phase = if self.kept.len() < TRIAL { &mut self.kept } else { &mut self.released };
        if phase.len() < TRIAL {
            phase.push((launches, ns));
        }
    }

    /// Whether the quota is kept now, `best` being the least ns a period of so many launches
    /// took: during the trial, kept for its first window and released for its second; then the
    /// verdict, given once (`Some(true)` or `Some(false)` as the second return when given by
    /// this call).
    pub(crate) fn keeps(&mut self, best: &HashMap<u64, u64>) -> (bool, Option<bool>) {
        if let Some(v) = self.verdict {
            return (v, None);
        }
        if self.kept.len() < TRIAL {
            return (true, None);
        }
        if self.released.len() < TRIAL {
            return (false, None);
        }
        // The median slowdown of a full phase.
        let slowdown = |periods: &[(u64, u64)]| {
            let ratios: Vec<f64> = periods
                .iter()
                .map(|&(launches, ns)| ns as f64 / best.get(&launches).copied().unwrap_or(ns).max(1) as f64)
                .collect();
            median_of_last(&ratios, TRIAL).unwrap_or(1.0)
        };
        let keep = slowdown(&self.kept) * GAIN <= slowdown(&self.released);
        self.verdict = Some(keep);
        (keep, Some(keep))
    }

    /// The verdict, once given.
    #[cfg(test)]
    pub(crate) fn verdict(&self) -> Option<bool> {
        self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trial's two windows: `with` and `without` ns for periods of 10 launches (and one of
    /// 40 launches in each, twice as slow as its least time of 1,000 ns).
    fn trial_of(with: u64, without: u64) -> (Trial, HashMap<u64, u64>) {
        let (mut t, best) = (Trial::default(), HashMap::from([(10, 100), (40, 1_000)]));
        for phase in [with, without] {
            t.ended(40, 2_000);
            for _ in 1..TRIAL {
                t.ended(10, phase);
            }
        }
        (t, best)
    }

    #[test]
    fn the_quota_is_kept_for_a_window_released_for_the_next_then_judged() {
        let (mut t, best) = (Trial::default(), HashMap::from([(10, 100)]));
        for i in 0..TRIAL {
            assert_eq!(t.keeps(&best), (true, None), "period {i}: the first window keeps it");
            t.ended(10, 100);
        }
        for i in 0..TRIAL {
            assert_eq!(t.keeps(&best), (false, None), "period {i}: the second releases it");
            t.ended(10, 300);
        }
        assert_eq!(t.keeps(&best), (true, Some(true)), "3x slower without it: kept");
        t.ended(10, 10_000);
        assert_eq!(t.keeps(&best), (true, None), "the verdict stands, given once");
        assert_eq!(t.verdict(), Some(true));
    }

    #[test]
    fn a_quota_is_kept_only_where_it_makes_the_work_run_a_tenth_faster() {
        assert_eq!(trial_of(120, 140).0.keeps(&trial_of(0, 0).1).1, Some(true), "1.17x faster with it");
        assert_eq!(trial_of(120, 130).0.keeps(&trial_of(0, 0).1).1, Some(false), "1.08x: not worth it");
        assert_eq!(trial_of(120, 132).0.keeps(&trial_of(0, 0).1).1, Some(true), "1.1x: kept");
        assert_eq!(trial_of(140, 120).0.keeps(&trial_of(0, 0).1).1, Some(false), "slower with it");
        assert_eq!(trial_of(100, 100).0.keeps(&trial_of(0, 0).1).1, Some(false), "no gain");
    }

    #[test]
    fn each_period_is_read_against_the_least_time_of_its_own_work() {
        // Periods of 40 launches, 10x as long as those of 10: read against their own least
        // times they are as slow as those, and a count never seen counts as its own least.
        let (mut t, mut best) = (Trial::default(), HashMap::from([(10, 100), (40, 1_000)]));
        for (launches, ns) in [(10, 120), (40, 1_200)].repeat(TRIAL / 2) {
            t.ended(launches, ns);
        }
        for (launches, ns) in [(10, 150), (40, 1_500)].repeat(TRIAL / 2) {
            t.ended(launches, ns);
        }
        assert_eq!(t.clone().keeps(&best), (true, Some(true)), "1.2x with, 1.5x without");
        // Without the 40-launch least: those periods at 1x each way, the medians 1.1 and 1.25.
        best.remove(&40);
        assert_eq!(t.keeps(&best), (true, Some(true)));
    }
}

//! Starvation, judged from the GPU side: whether this process's kernels run far slower beside
//! the other busy processes than alone, so that a process that sharing every SM would starve
//! gets a part of the device of its own.
//!
//! A sample of the process's launches that share every SM (those left where the application
//! put them; one confined to a part runs slower by design) is timed with a pair of CUDA events
//! each (one in [`SAMPLE_CONTENDED`] launches of a kernel and shape while another process is
//! busy, one in [`SAMPLE_ALONE`] while none is). A launch's *inflation* is its time over the least time seen
//! for the same kernel and shape (contention only adds time, so the least is its alone rate).
//! The process is *starving* when the median inflation of its last [`WINDOW`] launches timed
//! while the same number `n` of processes were busy exceeds `n`: its kernels then run slower
//! than they would alone on an equal part of the device had they scaled with SMs (kernels that
//! scale less would lose less there). It then says so on the board with that equal part (at
//! most what its recent launches need), and the other processes keep the part free while it
//! is busy, as they keep a latency-critical process's quota; its own kernels run where they
//! were launched. A busy latency-critical process's quota comes first: while one is busy, a
//! starving process shares what it leaves as the others do. The verdict is for the mix it was judged in: when the number of busy
//! processes changes it is dropped, and the process is judged anew.
//!
//! On by default on a board; `RIGHTSIZE_STARVING=0` turns it off (no launch is timed for it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use cudarc::driver::sys::CUevent;
use parking_lot::Mutex;

use crate::board::{self, Board};
use crate::sizing::{Shape, Timings};

/// Launches timed in a row, all with the same number of processes busy, that a verdict reads.
pub(crate) const WINDOW: usize = 16;

/// While another process is busy, a kernel's launches are timed one in this many.
pub(crate) const SAMPLE_CONTENDED: u64 = 8;

/// While no other process is busy (to learn its alone rate), one in this many.
pub(crate) const SAMPLE_ALONE: u64 = 64;

/// A kernel (function handle, or a library call's name's address) and its launch shape.
type Key = (usize, Shape);

/// Whether inflations `ratios` (at least [`WINDOW`], the last `WINDOW` read), all taken with
/// `busy` processes busy, say the process starves: their median exceeds `busy`.
pub(crate) fn starving(ratios: &[f64], busy: u32) -> bool {
    if busy < 2 || ratios.len() < WINDOW {
        return false;
    }
    let mut last = [0f64; WINDOW];
    last.copy_from_slice(&ratios[ratios.len() - WINDOW..]);
    last.sort_by(f64::total_cmp);
    let median = (last[WINDOW / 2 - 1] + last[WINDOW / 2]) / 2.0;
    median > f64::from(busy)
}

/// The equal part of `groups` groups of `granularity` SMs for one of `busy` processes, in SMs
/// (at least one group), at most `need` SMs rounded up to groups.
pub(crate) fn equal_part(groups: u32, granularity: u32, busy: u32, need: u32) -> u32 {
    let equal = (groups / busy.max(1)).max(1);
    let needed = need.div_ceil(granularity.max(1)).max(1);
    equal.min(needed) * granularity
}

/// This process's watch ([`watch`]).
pub(crate) struct Watch {
    /// The device's groups and their SMs (the equal part is counted in them).
    groups: u32,
    granularity: u32,
    state: Mutex<State>,
    /// The busy processes it was judged starving among (0: not starving), read on every
    /// launch without the lock.
    verdict: AtomicU32,
}

#[derive(Default)]
struct State {
    /// Each kernel's launches seen and least time.
    kernels: HashMap<Key, Seen>,
    /// Launches timed, with their kernel and the processes busy when they were launched.
    timings: Timings<(Key, u32)>,
    /// The latest inflations (at most [`WINDOW`] kept), all taken with `busy` processes busy.
    ratios: Vec<f64>,
    busy: u32,
}

#[derive(Default)]
struct Seen {
    launches: u64,
    /// Least µs of a timed launch (0: none read yet).
    best_us: f64,
}

/// What a judgement asks of the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Starving among this many busy processes.
    Starving(u32),
    /// Not starving (any more).
    Fed,
}

impl State {
    /// A timed launch of `key` took `us` with `busy` processes busy: its least time kept, and
    /// its inflation (if others were busy) among the ratios; says a verdict when one is due.
    fn completed(&mut self, key: Key, busy: u32, us: f64) -> Option<Verdict> {
        let seen = self.kernels.entry(key).or_default();
        if seen.best_us <= 0.0 || us < seen.best_us {
            seen.best_us = us;
        }
        if busy < 2 || seen.best_us <= 0.0 {
            return None;
        }
        let ratio = us / seen.best_us;
        if busy != self.busy {
            self.ratios.clear();
            self.busy = busy;
        }
        if self.ratios.len() == WINDOW {
            self.ratios.remove(0);
        }
        self.ratios.push(ratio);
        starving(&self.ratios, busy).then_some(Verdict::Starving(busy))
    }
}

impl Watch {
    fn new(groups: u32, granularity: u32) -> Watch {
        Watch { groups, granularity, state: Mutex::default(), verdict: AtomicU32::new(0) }
    }

    /// A launch of `key` with `busy` processes busy: `Some(busy)` when it is to be timed.
    /// `None` too when another thread holds the watch (the launch is not waited on).
    pub(crate) fn launched(&self, key: Key, busy: u32) -> Option<u32> {
        let mut st = self.state.try_lock()?;
        let seen = st.kernels.entry(key).or_default();
        seen.launches += 1;
        let every = if busy >= 2 { SAMPLE_CONTENDED } else { SAMPLE_ALONE };
        (seen.launches % every == 1).then_some(busy)
    }

    /// A free pair of timing events, unless another thread holds the watch.
    pub(crate) fn events(&self) -> Option<(CUevent, CUevent)> {
        self.state.try_lock().and_then(|mut st| st.timings.events())
    }

    /// Keeps a pair taken by [`Watch::events`] (as `key`'s launch when `timed`), reads the
    /// launches timed that have ended and says what they show on the board.
    pub(crate) fn keep(&self, key: (Key, u32), pair: (CUevent, CUevent), timed: bool) {
        let mut verdict = None;
        {
            let mut st = self.state.lock();
            st.timings.keep(key, pair, timed);
            let mut done = Vec::new();
            st.timings.drain(false, |&(k, busy), us| done.push((k, busy, us)));
            for (k, busy, us) in done {
                verdict = st.completed(k, busy, us).or(verdict);
            }
        }
        if let (Some(v), Some(b)) = (verdict, board::board()) {
            self.judge(b, v);
        }
    }

    /// Follows the board `v` a launch of this process sees: a verdict of another mix (another
    /// number of busy processes) is dropped.
    pub(crate) fn follow(&self, board: &Board, v: &board::View) {
        let n = self.verdict.load(Ordering::Relaxed);
        if n != 0 && n != v.busy {
            self.judge(board, Verdict::Fed);
            let mut st = self.state.lock();
            st.ratios.clear();
            st.busy = 0;
        }
    }

    /// Puts verdict `v` on the board: this process's equal part (at most its need) kept free
    /// for it, or nothing.
    fn judge(&self, board: &Board, v: Verdict) {
        match v {
            Verdict::Starving(n) => {
                if self.verdict.swap(n, Ordering::Relaxed) != n {
                    crate::stats::COUNTS.starved.fetch_add(1, Ordering::Relaxed);
                }
                let part = equal_part(self.groups, self.granularity, n, board.need());
                board.set_starving(Some(part));
            }
            Verdict::Fed => {
                self.verdict.store(0, Ordering::Relaxed);
                board.set_starving(None);
            }
        }
    }
}

/// The watch, on first use: for a best-effort process on a board whose device has partitions,
/// unless `RIGHTSIZE_STARVING=0`.
pub(crate) fn watch() -> Option<&'static Watch> {
    static WATCH: OnceLock<Option<Watch>> = OnceLock::new();
    WATCH
        .get_or_init(|| {
            if board::board()?.latency_critical() {
                return None;
            }
            if super::setting("RIGHTSIZE_STARVING") == Some(0) {
                return None;
            }
            let shares = crate::target::shares()?;
            Some(Watch::new(shares.groups, shares.granularity))
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_starves_when_its_kernels_run_slower_than_on_an_equal_part() {
        let window = |r: f64| vec![r; WINDOW];
        assert!(!starving(&window(2.9), 3), "2.9x among 3: no worse than a third of the device");
        assert!(starving(&window(3.1), 3));
        assert!(starving(&window(2.1), 2));
        assert!(!starving(&window(100.0), 1), "alone is never starving");
        assert!(!starving(&[9.0; WINDOW - 1], 2), "too few launches timed");
        // The median of the last window: a few slow launches do not make a verdict.
        let mut r = window(1.0);
        r[..WINDOW / 2 - 1].fill(50.0);
        assert!(!starving(&r, 2));
        let mut older = vec![50.0; 4];
        older.extend(window(1.2));
        assert!(!starving(&older, 2), "only the last window counts");
    }

    #[test]
    fn the_part_is_an_equal_share_at_most_what_the_process_needs() {
        assert_eq!(equal_part(15, 8, 3, u32::MAX), 40);
        assert_eq!(equal_part(15, 8, 2, u32::MAX), 56);
        assert_eq!(equal_part(15, 8, 3, 12), 16, "12 SMs needed: two groups");
        assert_eq!(equal_part(15, 8, 40, u32::MAX), 8, "at least one group");
        assert_eq!(equal_part(15, 8, 0, 0), 8);
    }

    #[test]
    fn inflation_is_against_the_least_time_and_taken_in_one_mix() {
        let mut st = State::default();
        let (a, b) = ((1usize, [1, 1, 1, 32, 1, 1]), (2usize, [4, 1, 1, 32, 1, 1]));
        // Alone: the least times, no inflation.
        assert_eq!(st.completed(a, 1, 10.0), None);
        assert_eq!(st.completed(b, 1, 100.0), None);
        assert!(st.ratios.is_empty());
        // Beside two others: 4x and 3.5x, but a verdict needs a whole window.
        for _ in 0..WINDOW / 2 - 1 {
            assert_eq!(st.completed(a, 3, 40.0), None);
            assert_eq!(st.completed(b, 3, 350.0), None);
        }
        assert_eq!(st.completed(a, 3, 40.0), None);
        assert_eq!(st.completed(b, 3, 350.0), Some(Verdict::Starving(3)));
        // Another mix starts over.
        assert_eq!(st.completed(a, 2, 40.0), None);
        assert_eq!(st.ratios, vec![4.0]);
        // A faster launch lowers the least time: its own inflation is 1.
        st.completed(a, 2, 5.0);
        assert_eq!(st.ratios, vec![4.0, 1.0]);
        assert_eq!(st.kernels[&a].best_us, 5.0);
    }

    #[test]
    fn launches_are_sampled_more_often_beside_others_than_alone() {
        let w = Watch::new(15, 8);
        let key = (7usize, [64, 1, 1, 256, 1, 1]);
        let beside = (0..2 * SAMPLE_CONTENDED).filter(|_| w.launched(key, 3).is_some()).count();
        assert_eq!(beside, 2);
        let other = (8usize, key.1);
        let alone = (0..2 * SAMPLE_ALONE).filter(|_| w.launched(other, 1).is_some()).count();
        assert_eq!(alone, 2);
        assert_eq!(w.launched((9, key.1), 2), Some(2), "a kernel's first launch is timed");
        let held = w.state.lock();
        assert_eq!(w.launched(key, 3), None, "another thread holds the watch");
        drop(held);
    }
}

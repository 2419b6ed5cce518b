//! Starvation, judged by how much slower the process's own work gets done beside the other
//! busy processes than alone, so that a process that sharing every SM would starve gets a part
//! of the device of its own.
//!
//! A *period* is the stretch from the process's first launch after it last waited for the GPU
//! (`cuStreamSynchronize`, `cuEventSynchronize`, `cuCtxSynchronize`, as the board sees them) to
//! the end of its next such wait: a request, or a step of one, as its program runs it. Periods
//! of the same number of launches are the same work; the least time one took is the process's
//! alone rate for that work, and a period's *slowdown* is its time over that least. The process
//! is *starving* when the median slowdown of its last [`WINDOW`] periods, all ended with the
//! same number `n` of processes busy and all of whose launches ran where the application put
//! them (a period confined to a part runs slower by design), exceeds `n`: it then gets its
//! work done slower than it would alone on an equal part of the device had that work scaled
//! with SMs (work that scales less would lose less there). A process bound by its host, whose
//! kernels are done before it waits, has periods that contention barely lengthens: however
//! long its kernels queue, only what slows its requests counts.
//!
//! A starving process says so on the board with its equal part (`1/n` of the groups, at most
//! what its recent launches need); the other best-effort processes keep that part free while it
//! is busy, as they keep a latency-critical quota (which comes first), and its own kernels run
//! where they were launched. The verdict is for the mix it was judged in: when the number of
//! busy processes changes it is dropped, and the process is judged anew.
//!
//! No GPU work is added: a launch and a wait each read the clock and touch a few atomics, and a
//! wait that ends a period takes a lock. On by default on a board; `RIGHTSIZE_STARVING=0` turns
//! it off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

use crate::board::{self, Board};

/// Periods in a row, ended with the same number of processes busy, that a verdict reads.
pub(crate) const WINDOW: usize = 16;

/// Whether slowdowns `ratios` (the last [`WINDOW`] read), all of periods ended with `busy`
/// processes busy, say the process starves: their median exceeds `busy`.
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

/// A verdict for the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Starving among this many busy processes.
    Starving(u32),
    /// Not starving (any more).
    Fed,
}

/// This process's watch ([`watch`]).
pub(crate) struct Watch {
    /// The device's groups and their SMs (the equal part is counted in them).
    groups: u32,
    granularity: u32,
    /// The open period: when its first launch was (0: none open), its launches, and whether
    /// one of them was placed on a part.
    start_ns: AtomicU64,
    launches: AtomicU64,
    placed: AtomicBool,
    state: Mutex<Periods>,
    /// The busy processes it was judged starving among (0: not starving), read on every
    /// launch without the lock.
    verdict: AtomicU32,
}

/// The periods that have ended.
#[derive(Debug, Default)]
struct Periods {
    /// The least ns a period of so many launches took.
    best: HashMap<u64, u64>,
    /// The latest slowdowns (at most [`WINDOW`] kept), all of periods ended with `busy`
    /// processes busy.
    ratios: Vec<f64>,
    busy: u32,
}

impl Periods {
    /// A period of `launches` launches took `ns`, ending with `busy` processes busy, all of
    /// them where the application put them unless `placed`: its work's least time kept, and
    /// its slowdown (where others were busy and nothing was placed) among the ratios; says a
    /// verdict when one is due.
    fn ended(&mut self, launches: u64, ns: u64, busy: u32, placed: bool) -> Option<Verdict> {
        let best = self.best.entry(launches).or_insert(ns);
        *best = (*best).min(ns).max(1);
        if busy < 2 || placed {
            return None;
        }
        let ratio = ns as f64 / *best as f64;
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

    /// Forgets the slowdowns (a new mix is judged from its own periods).
    fn restart(&mut self) {
        self.ratios.clear();
        self.busy = 0;
    }
}

impl Watch {
    fn new(groups: u32, granularity: u32) -> Watch {
        Watch {
            groups,
            granularity,
            start_ns: AtomicU64::new(0),
            launches: AtomicU64::new(0),
            placed: AtomicBool::new(false),
            state: Mutex::default(),
            verdict: AtomicU32::new(0),
        }
    }

    /// A launch at `now`, placed on a part or (not `placed`) left where it was launched.
    pub(crate) fn launched(&self, now: u64, placed: bool) {
        // The first launch since the last wait opens a period (another thread's racing open
        // keeps the earlier stamp or this one: either is a launch of the period).
        if self.start_ns.load(Ordering::Relaxed) == 0 {
            self.start_ns.store(now.max(1), Ordering::Relaxed);
        }
        self.launches.fetch_add(1, Ordering::Relaxed);
        if placed {
            self.placed.store(true, Ordering::Relaxed);
        }
    }

    /// A wait for the GPU ended at `now`, with `busy` processes busy: the open period ends.
    /// Returns the verdict it brings, if any.
    pub(crate) fn waited(&self, now: u64, busy: u32) -> Option<Verdict> {
        let start = self.start_ns.swap(0, Ordering::Relaxed);
        let launches = self.launches.swap(0, Ordering::Relaxed);
        let placed = self.placed.swap(false, Ordering::Relaxed);
        if start == 0 || launches == 0 || now <= start {
            return None;
        }
        self.state.lock().ended(launches, now - start, busy, placed)
    }

    /// Follows the board `v` a launch of this process sees: a verdict of another mix (another
    /// number of busy processes) is dropped.
    pub(crate) fn follow(&self, board: &Board, v: &board::View) {
        let n = self.verdict.load(Ordering::Relaxed);
        if n != 0 && n != v.busy {
            self.judge(board, Verdict::Fed);
            self.state.lock().restart();
        }
    }

    /// Puts verdict `v` on the board: this process's equal part (at most its need) kept free
    /// for it, or nothing.
    pub(crate) fn judge(&self, board: &Board, v: Verdict) {
        match v {
            Verdict::Starving(n) => {
                if self.verdict.swap(n, Ordering::Relaxed) != n {
                    crate::stats::COUNTS.starved.fetch_add(1, Ordering::Relaxed);
                }
                board.set_starving(Some(equal_part(self.groups, self.granularity, n, board.need())));
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
            if board::board()?.latency_critical() || super::setting("RIGHTSIZE_STARVING") == Some(0) {
                return None;
            }
            let shares = crate::target::shares()?;
            Some(Watch::new(shares.groups, shares.granularity))
        })
        .as_ref()
}

/// A wait for the GPU of this process ended: its period is judged (on a board, with a watch).
pub(crate) fn waited() {
    let (Some(w), Some(b)) = (watch(), board::board()) else { return };
    if let Some(v) = w.waited(board::now_ns(), b.busy_seen()) {
        w.judge(b, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_starves_when_its_work_runs_slower_than_on_an_equal_part() {
        let window = |r: f64| vec![r; WINDOW];
        assert!(!starving(&window(2.9), 3), "2.9x among 3: no worse than a third of the device");
        assert!(starving(&window(3.1), 3));
        assert!(starving(&window(2.1), 2));
        assert!(!starving(&window(100.0), 1), "alone is never starving");
        assert!(!starving(&[9.0; WINDOW - 1], 2), "too few periods");
        // The median of the last window: a few slow periods do not make a verdict.
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
    fn slowdown_is_against_the_least_time_of_the_same_work_in_one_mix() {
        let mut p = Periods::default();
        // Alone: a request of 40 launches and a step of 12, their least times.
        assert_eq!(p.ended(40, 1_000, 1, false), None);
        assert_eq!(p.ended(12, 100, 1, false), None);
        assert!(p.ratios.is_empty());
        // Beside two others: 4x and 3.5x, but a verdict needs a whole window.
        for _ in 0..WINDOW / 2 - 1 {
            assert_eq!(p.ended(40, 4_000, 3, false), None);
            assert_eq!(p.ended(12, 350, 3, false), None);
        }
        assert_eq!(p.ended(40, 4_000, 3, false), None);
        assert_eq!(p.ended(12, 350, 3, false), Some(Verdict::Starving(3)));
        // Another mix starts over; a period with a launch placed on a part does not count.
        assert_eq!(p.ended(40, 4_000, 2, false), None);
        assert_eq!(p.ratios, vec![4.0]);
        assert_eq!(p.ended(40, 9_000, 2, true), None);
        assert_eq!(p.ratios, vec![4.0]);
        // A faster period lowers the least time: its own slowdown is 1.
        p.ended(40, 500, 2, false);
        assert_eq!(p.ratios, vec![4.0, 1.0]);
        assert_eq!(p.best[&40], 500);
        p.restart();
        assert!(p.ratios.is_empty());
    }

    #[test]
    fn a_period_runs_from_the_first_launch_after_a_wait_to_the_end_of_the_next() {
        let w = Watch::new(15, 8);
        assert_eq!(w.waited(50, 2), None, "no launch since the last wait: no period");
        w.launched(100, false);
        w.launched(150, false);
        w.launched(170, true);
        assert_eq!(w.waited(400, 1), None);
        assert_eq!(w.state.lock().best[&3], 300, "three launches from 100 to 400");
        assert_eq!(w.waited(500, 1), None, "closed");
        w.launched(600, false);
        w.launched(650, false);
        w.launched(660, false);
        assert_eq!(w.waited(1_500, 2), None, "beside another: 3x, a window short");
        let p = w.state.lock();
        assert_eq!((p.ratios.clone(), p.busy), (vec![3.0], 2));
    }
}

//! Starvation, judged by how much slower the process's own work gets done beside the other
//! busy processes than alone, so that a process that sharing every SM would starve gets a part
//! of the device of its own.
//!
//! A *period* is the stretch from the process's first launch after it last waited for the GPU
//! (`cuStreamSynchronize`, `cuEventSynchronize`, `cuCtxSynchronize`, as the board sees them) to
//! the end of its next such wait: a request, or a step of one, as its program runs it. Periods
//! of the same number of launches are taken to be the same work (true of a program that runs
//! the same shapes; decode steps over a growing cache, say, are not quite); the least time one
//! took, alone or not, stands for the process's alone rate for that work, and a period's
//! *slowdown* is its time over that least (a process that never runs alone has only contended
//! times to compare with, so its slowdown reads low and it is judged starving late or never).
//! Each period is counted with `n`, the processes busy at the process's latest look at the
//! board before it ended; those with a launch placed on a part (slower by design), those that
//! ran under two words of its own on the board (its part set or released while the period was
//! open, or kept for another `n` than the one it ended with) and, once it was judged starving
//! among `n`, all of that `n`'s (they are its part's trial's) are left out of the window. Each
//! process says on the board the median slowdown of its last [`WINDOW`] periods counted with
//! the current `n` (after a verdict, the window's last, as it was judged). It is
//! *starving* among `n` when that median exceeds `n` (it gets its work done slower than an
//! equal part of the device would let it alone, had that work scaled with SMs) while another
//! busy best-effort process says a slowdown more than [`FAR`] times smaller: the device is
//! shared unevenly at its expense. Processes that all slow down alike share the device as well
//! as it can be shared, and nothing is confined for them. A process bound by its host, whose
//! kernels are done before it waits, has periods that contention barely lengthens: however
//! long its kernels queue, only what slows its requests counts.
//!
//! A process starving among the `n` processes busy now says so on the board with its equal
//! part (`1/n` of the groups, at most what its recent launches need); the other best-effort
//! processes keep that part free while it is busy, as they keep a latency-critical quota (which
//! comes first), and its own kernels run where they were launched. The verdict follows the mix:
//! each `n` has its own periods, and when the number of busy processes a launch or a period's
//! end sees changes, the part is set by that number's verdict.
//!
//! **The part is tried, as a latency-critical quota is** ([`crate::quota::Trial`]): keeping it
//! free costs the others its SMs, and buys the starving process something only where their
//! blocks were what slowed it (in torch-prefill-decode on an H200 the BERT-large prefill,
//! judged starving beside gpt2, got no more done with its part, 0.730× solo against 0.735×,
//! while gpt2, confined to the rest, lost 17%: docs/compare-pytorch-h200/README.md). So a
//! starving verdict keeps the part for its next
//! [`crate::quota::TRIAL`] periods, releases it for the next as many, and then keeps it only if
//! the process's median period ran at least [`crate::quota::GAIN`] times faster with it than
//! without; that verdict stands for that `n` while the process runs (released, it is not judged
//! starving among `n` again). Its periods that ran under two words (above) are not the trial's:
//! where the number of busy processes keeps changing, a trial may take long to end, keeping the
//! part meanwhile. While a latency-critical process is busy, the part is not kept
//! ([`crate::board`]), and the trial does not know it.
//!
//! No GPU work is added: a launch reads the clock and touches a few atomics, and takes a lock
//! when it sees another number of processes busy; a wait takes a lock and reads the other
//! slots. On by default on a board; `RIGHTSIZE_STARVING=0` turns it off.
//!
//! A latency-critical process with a quota is watched by the same periods for another verdict:
//! whether the others keep its quota free ([`crate::quota`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

use parking_lot::Mutex;

use crate::board::{self, Board};
#[cfg(test)]
use crate::quota::TRIAL;
use crate::quota::{Duty, Mark, Trial};

/// Periods, ended with the same number of processes busy, that a verdict reads.
pub(crate) const WINDOW: usize = 16;

/// How much faster another process must get its work done for the sharing to be uneven at
/// this one's expense.
pub(crate) const FAR: f64 = 2.0;

/// The median of the last [`WINDOW`] of `ratios` (`None`: fewer than that).
pub(crate) fn median(ratios: &[f64]) -> Option<f64> {
    median_of_last(ratios, WINDOW)
}

/// The median of the last `n` of `ratios`, `n` even and at most [`WINDOW`] (`None`: fewer
/// than `n`).
pub(crate) fn median_of_last(ratios: &[f64], n: usize) -> Option<f64> {
    debug_assert!(n % 2 == 0 && (2..=WINDOW).contains(&n));
    let from = ratios.len().checked_sub(n)?;
    let mut buf = [0f64; WINDOW];
    let last = &mut buf[..n];
    last.copy_from_slice(&ratios[from..]);
    last.sort_by(f64::total_cmp);
    Some((last[n / 2 - 1] + last[n / 2]) / 2.0)
}

/// Whether a process whose work is `slowdown` times slower than alone, with `busy` processes
/// busy and the least slowdown another of them says being `least_other`, starves: it runs
/// slower than it would alone on an equal part of the device (had its work scaled with SMs),
/// while another runs more than [`FAR`] times faster than it, so the device is shared unevenly
/// at its expense (processes that all slow down alike share it as well as it can be shared).
pub(crate) fn starving(slowdown: f64, busy: u32, least_other: Option<f64>) -> bool {
    busy >= 2 && slowdown > f64::from(busy) && least_other.is_some_and(|o| o * FAR < slowdown)
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
    /// The open period: when its first launch was (0: none open), its launches, and whether
    /// one of them was placed on a part.
    start_ns: AtomicU64,
    launches: AtomicU64,
    placed: AtomicBool,
    /// Set when the library stood aside ([`Watch::forget_period`]): the period the next wait
    /// ends began in a request whose earlier launches it did not see, so it is dropped too.
    tainted: AtomicBool,
    /// The board's word for this process changed while the period was open ([`Watch::follow`]):
    /// it ran partly with its part kept and partly without.
    mixed: AtomicBool,
    state: Mutex<Periods>,
    /// The number of busy processes the board's word was last set for (0: none yet), read on
    /// every launch without the lock.
    judged_for: AtomicU32,
    /// The device's groups and their SMs, looked up when a part is first owed (the device is
    /// opened only then).
    topology: OnceLock<Option<(u32, u32)>>,
    /// The process is latency-critical: its periods try its quota ([`crate::quota`]) instead
    /// of judging whether it starves.
    critical: bool,
}

/// The periods that have ended, and the verdicts they gave.
#[derive(Debug, Default)]
struct Periods {
    /// The least ns a period of so many launches took.
    best: HashMap<u64, u64>,
    /// By the number of processes busy when they ended: the latest slowdowns (at most
    /// [`WINDOW`] kept), and, once it was judged starving, the trial of its part.
    by_busy: HashMap<u32, (Vec<f64>, Option<Trial>)>,
    /// A latency-critical process's trials of its quota, by the number of processes busy
    /// (`None`: the process is best-effort).
    trials: Option<HashMap<u32, Trial>>,
    /// The most its kept quota may slow a best-effort process ([`crate::quota::cost_cap`]).
    cost_cap: Option<f64>,
    /// A latency-critical process's recent duty, which sizes its kept quota where the cost is
    /// weighed ([`crate::quota::sized`]).
    duty: Duty,
}

impl Periods {
    /// A period of `launches` launches took `ns`, ending with `busy` processes busy, all of
    /// them where the application put them and under one word of its own on the board unless
    /// `apart` (a launch placed on a part, or two words: then it counts for its work's least
    /// time only): its work's least time kept, and its slowdown, where it counts, among
    /// `busy`'s; `mark` reads the others' work where a trial weighs it.
    fn ended(&mut self, launches: u64, ns: u64, busy: u32, apart: bool, mark: impl FnOnce() -> Mark) {
        let best = self.best.entry(launches).or_insert(ns);
        *best = (*best).min(ns).max(1);
        let ratio = ns as f64 / *best as f64;
        if busy < 2 || apart {
            return;
        }
        if let Some(trials) = &mut self.trials {
            let cost_cap = self.cost_cap;
            let trial = trials.entry(busy).or_insert_with(|| {
                crate::stats::COUNTS.quota_trials.fetch_add(1, Ordering::Relaxed);
                Trial::new(cost_cap)
            });
            let mark = trial.marks_needed().then(mark);
            trial.ended(launches, ns, mark);
            return;
        }
        let (ratios, trial) = self.by_busy.entry(busy).or_default();
        if let Some(trial) = trial {
            // Judged starving: the period is its part's trial's (with the part, or without).
            trial.ended(launches, ns, None);
            return;
        }
        if ratios.len() == WINDOW {
            ratios.remove(0);
        }
        ratios.push(ratio);
    }

    /// Whether its part among `busy` is kept now, by the verdict or the trial's phase (read
    /// only: [`Periods::judge`] gives verdicts).
    fn keeping(&self, busy: u32) -> bool {
        self.by_busy.get(&busy).and_then(|(_, t)| t.as_ref()).is_some_and(Trial::keeping)
    }

    /// The median slowdown of the last window among `busy` busy processes, if it is full.
    fn slowdown(&self, busy: u32) -> Option<f64> {
        self.by_busy.get(&busy).and_then(|(r, _)| median(r))
    }

    /// Judges the process among `busy` busy processes, the least slowdown another says being
    /// `least_other`: whether its part is kept free among them now. Judged starving, its part's
    /// trial begins (the verdict stands); the trial keeps the part, releases it, and then keeps
    /// it only where it made the process's work [`crate::quota::GAIN`] times faster.
    fn judge(&mut self, busy: u32, least_other: Option<f64>) -> bool {
        let slowdown = self.slowdown(busy);
        let Some((_, trial)) = self.by_busy.get_mut(&busy) else { return false };
        let counts = &crate::stats::COUNTS;
        if trial.is_none() && slowdown.is_some_and(|s| starving(s, busy, least_other)) {
            counts.starving_trials.fetch_add(1, Ordering::Relaxed);
            *trial = Some(Trial::new(None));
        }
        let Some(trial) = trial else { return false };
        let (keep, verdict) = trial.keeps(&self.best);
        match verdict {
            Some(true) => counts.starving_kept.fetch_add(1, Ordering::Relaxed),
            Some(false) => counts.starving_released.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
        keep
    }
}

impl Watch {
    /// A watch of a best-effort process, or (`critical`) of a latency-critical one's quota.
    fn new(critical: bool) -> Watch {
        let cost_cap = if critical { crate::quota::cost_cap() } else { None };
        let state = Periods { trials: critical.then(HashMap::new), cost_cap, ..Periods::default() };
        Watch {
            start_ns: AtomicU64::new(0),
            launches: AtomicU64::new(0),
            placed: AtomicBool::new(false),
            tainted: AtomicBool::new(false),
            mixed: AtomicBool::new(false),
            state: Mutex::new(state),
            judged_for: AtomicU32::new(0),
            topology: OnceLock::new(),
            critical,
        }
    }

    /// The device's groups and SMs per group (`None`: it has no partitions).
    fn topology(&self) -> Option<(u32, u32)> {
        *self.topology.get_or_init(|| crate::target::shares().map(|s| (s.groups, s.granularity)))
    }

    /// A launch at `now` (left where it was launched, unless [`Watch::placed`] follows).
    pub(crate) fn launched(&self, now: u64) {
        // The first launch since the last wait opens a period (another thread's racing open
        // keeps the earlier stamp or this one: either is a launch of the period).
        if self.start_ns.load(Ordering::Relaxed) == 0 {
            self.start_ns.store(now.max(1), Ordering::Relaxed);
        }
        self.launches.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops the period open since the last wait, unjudged, and the one the next wait ends:
    /// the library is about to stand aside ([`crate::rightsize_preload_bypass`], or its
    /// alternation), and neither the waits nor the launches it then passes through are seen,
    /// so the open period would end with a gap in it and the next would begin mid-request.
    pub(crate) fn forget_period(&self) {
        self.start_ns.store(0, Ordering::Relaxed);
        self.launches.store(0, Ordering::Relaxed);
        self.placed.store(false, Ordering::Relaxed);
        self.mixed.store(false, Ordering::Relaxed);
        self.tainted.store(true, Ordering::Relaxed);
    }

    /// The launch just counted was placed on a part: its period runs slower by design.
    pub(crate) fn placed(&self) {
        self.placed.store(true, Ordering::Relaxed);
    }

    /// A wait for the GPU ended at `now`, with `busy` processes busy: the open period ends,
    /// and the board says this process's verdict among `busy`.
    pub(crate) fn waited(&self, board: &Board, now: u64, busy: u32) {
        let start = self.start_ns.swap(0, Ordering::Relaxed);
        let launches = self.launches.swap(0, Ordering::Relaxed);
        let placed = self.placed.swap(false, Ordering::Relaxed);
        let mixed = self.mixed.swap(false, Ordering::Relaxed);
        if self.tainted.swap(false, Ordering::Relaxed) {
            // The first wait since the library stood aside: its period is dropped.
            return;
        }
        let ended = start != 0 && launches != 0 && now > start;
        if !ended && self.judged_for.load(Ordering::Relaxed) == busy {
            // Nothing new to judge by (a wait with no launch since the last).
            return;
        }
        let mut st = self.state.lock();
        if ended {
            // It ran under the word set for the last number judged; ending with another whose
            // word differs, it ran under neither alone.
            let other_word = self.judged_for.load(Ordering::Relaxed) != busy && board.is_starving() != st.keeping(busy);
            let apart = placed || mixed || other_word;
            st.ended(launches, now - start, busy, apart, || Mark::read(board, now));
            if self.critical {
                // Its duty sizes the quota only where the others' cost is weighed.
                if st.cost_cap.is_some() {
                    st.duty.ended(start, now);
                }
            } else {
                // What it got done, which a latency-critical process's trial may weigh.
                board.done(launches);
                // The others judge by it: how much slower than alone this process gets its
                // work done in this mix.
                board.set_slowdown(st.slowdown(busy));
            }
        }
        self.judge(&mut st, board, now, busy);
    }

    /// The SMs of a latency-critical process's `quota` kept free while it keeps it: the whole
    /// quota, or where the others' cost is weighed, as much as its duty lets
    /// ([`crate::quota::sized`]; counted as `quota_sized_sms` where that is less).
    fn kept_sms(&self, st: &Periods, quota: u32) -> u32 {
        // The device is opened for its groups only once there is a duty to size by.
        let (Some(cap), Some(duty)) = (st.cost_cap, st.duty.get()) else {
            return quota;
        };
        let Some((groups, granularity)) = self.topology() else {
            return quota;
        };
        let sms = crate::quota::sized(quota, cap, Some(duty), groups * granularity, granularity);
        if sms < quota {
            crate::stats::COUNTS.quota_sized_sms.store(u64::from(sms), Ordering::Relaxed);
        }
        sms
    }

    /// Follows the board `v` a launch of this process sees at `now`: when the number of busy processes
    /// is not the one the board's word was set for, it is set for this one. Whether the word
    /// changed (then the launch looks at the board again).
    pub(crate) fn follow(&self, board: &Board, v: &board::View, now: u64) -> bool {
        if self.judged_for.load(Ordering::Relaxed) == v.busy {
            return false;
        }
        if self.critical {
            // Its own kernels run where they were launched whatever its word says.
            self.judge(&mut self.state.lock(), board, now, v.busy);
            return false;
        }
        let was = board.is_starving();
        let mut st = self.state.lock();
        self.judge(&mut st, board, now, v.busy);
        let changed = board.is_starving() != was;
        // The launch that saw it was counted first: with others before it, the open period
        // ran under the old word too.
        if changed && self.launches.load(Ordering::Relaxed) > 1 {
            self.mixed.store(true, Ordering::Relaxed);
        }
        changed
    }

    /// Sets the board's word at `now` for `busy` busy processes (under the lock, so a launch's
    /// and a wait's judgements cannot cross): this process's equal part kept free for it where
    /// it starves among them, else nothing.
    fn judge(&self, st: &mut Periods, board: &Board, now: u64, busy: u32) {
        if let Some(trials) = &mut st.trials {
            // A latency-critical process: its quota as its trial among `busy` says (kept
            // before a trial has begun, and alone, as before trials).
            let (keep, verdict) = trials.get_mut(&busy).map_or((true, None), |t| t.keeps(&st.best));
            if let Some(kept) = verdict {
                let counts = &crate::stats::COUNTS;
                let count = if kept { &counts.quota_kept } else { &counts.quota_released };
                count.fetch_add(1, Ordering::Relaxed);
            }
            board.keep_quota(if keep { self.kept_sms(st, board.quota()) } else { 0 });
            self.judged_for.store(busy, Ordering::Relaxed);
            return;
        }
        let part = st
            .judge(busy, board.least_other_slowdown(now))
            .then(|| self.topology())
            .flatten()
            .map(|(groups, granularity)| equal_part(groups, granularity, busy, board.need()));
        if part.is_some() && !board.is_starving() {
            crate::stats::COUNTS.starved.fetch_add(1, Ordering::Relaxed);
        }
        board.set_starving(part);
        self.judged_for.store(busy, Ordering::Relaxed);
    }
}

/// The watch, on first use, of a process on a board: a best-effort one's unless
/// `RIGHTSIZE_STARVING=0`, a latency-critical one's with a quota unless
/// `RIGHTSIZE_QUOTA_TRIAL=0` (its quota then kept whenever it is busy).
pub(crate) fn watch() -> Option<&'static Watch> {
    static WATCH: OnceLock<Option<Watch>> = OnceLock::new();
    WATCH
        .get_or_init(|| {
            let board = board::board()?;
            let critical = board.latency_critical();
            let on =
                if critical { crate::quota::tried(board) } else { super::setting("RIGHTSIZE_STARVING") != Some(0) };
            on.then(|| Watch::new(critical))
        })
        .as_ref()
}

/// A wait for the GPU of this process ended: its period is judged (on a board, with a watch).
pub(crate) fn waited() {
    let (Some(w), Some(b)) = (watch(), board::board()) else { return };
    w.waited(b, board::now_ns(), b.busy_seen());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A best-effort watch on 15 groups of 8 SMs, its process in slot 1 of a board of three,
    /// and another best-effort process in slot 0.
    fn best_effort_beside_one() -> (Watch, Board, Board) {
        let w = Watch::new(false);
        w.topology.set(Some((15, 8))).unwrap();
        let path = Board::test_file(3);
        let open = |i| Board::open(&path, i, 2_000_000, None).unwrap();
        (w, open(1), open(0))
    }

    #[test]
    fn a_process_starves_below_an_equal_part_while_another_runs_far_faster() {
        // Five times slower beside four processes, one of which is only 1.2 times slower.
        assert!(starving(5.0, 4, Some(1.2)));
        assert!(!starving(3.9, 4, Some(1.2)), "no slower than on an equal part");
        assert!(!starving(5.0, 4, Some(2.6)), "everyone slows alike: sharing, not starving");
        assert!(!starving(5.0, 4, None), "no other says how it fares");
        assert!(!starving(100.0, 1, Some(1.0)), "alone is never starving");
        // The median of the last window: a few slow periods do not move it.
        let window = |r: f64| vec![r; WINDOW];
        assert_eq!(median(&window(3.0)), Some(3.0));
        assert_eq!(median(&[9.0; WINDOW - 1]), None, "too few periods");
        let mut r = window(1.0);
        r[..WINDOW / 2 - 1].fill(50.0);
        assert_eq!(median(&r), Some(1.0));
        let mut older = vec![50.0; 4];
        older.extend(window(1.2));
        assert_eq!(median(&older), Some(1.2), "only the last window counts");
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
    fn slowdown_is_against_the_least_time_of_the_same_work_each_mix_on_its_own() {
        let mut p = Periods::default();
        // Alone: a request of 40 launches and a step of 12, their least times.
        p.ended(40, 1_000, 1, false, Mark::default);
        p.ended(12, 100, 1, false, Mark::default);
        assert!(p.by_busy.is_empty());
        // Beside two others: 8x and 6.5x, but a verdict needs a whole window; periods beside
        // one other, in between, are counted apart and do not break it.
        let another = Some(1.5);
        for _ in 0..WINDOW / 2 - 1 {
            p.ended(40, 8_000, 3, false, Mark::default);
            p.ended(12, 650, 3, false, Mark::default);
            p.ended(40, 1_500, 2, false, Mark::default);
        }
        p.ended(40, 8_000, 3, false, Mark::default);
        assert!(!p.judge(3, another));
        p.ended(12, 650, 3, false, Mark::default);
        assert_eq!(p.slowdown(3), Some(7.25));
        assert!(!p.judge(3, Some(4.0)), "another fares nearly as badly");
        assert!(p.judge(3, another) && !p.judge(2, another));
        assert_eq!(p.by_busy[&2].0, vec![1.5; WINDOW / 2 - 1]);
        // Kept its part among three, its periods there go to the part's trial, not the window.
        p.ended(40, 1_000, 3, false, Mark::default);
        assert!(p.judge(3, Some(9.0)) && p.by_busy[&3].0.len() == WINDOW);
        // A period with a launch placed on a part does not count; its least time does.
        p.ended(40, 9_000, 2, true, Mark::default);
        assert_eq!(p.by_busy[&2].0.len(), WINDOW / 2 - 1);
        p.ended(40, 500, 2, false, Mark::default);
        assert_eq!(p.best[&40], 500);
        assert_eq!(p.by_busy[&2].0.last(), Some(&1.0), "a faster period: its own slowdown is 1");
    }

    #[test]
    fn a_starving_process_keeps_its_part_only_where_its_trial_shows_it_helps() {
        use crate::quota::TRIAL;
        let mut p = Periods::default();
        p.ended(10, 1_000, 1, false, Mark::default);
        let starve = |p: &mut Periods, busy: u32| {
            for _ in 0..WINDOW {
                p.ended(10, 5_000, busy, false, Mark::default);
            }
        };
        let released_before = crate::stats::COUNTS.starving_released.load(Ordering::Relaxed);
        // 5x slower among two beside one at 1.2x: starving, and its part's trial begins.
        starve(&mut p, 2);
        for _ in 0..TRIAL {
            assert!(p.judge(2, Some(1.2)), "the trial's first window keeps the part");
            p.ended(10, 4_800, 2, false, Mark::default);
        }
        for _ in 0..TRIAL {
            assert!(!p.judge(2, Some(1.2)), "its second window releases it");
            p.ended(10, 5_000, 2, false, Mark::default);
        }
        assert!(!p.judge(2, Some(1.2)), "no faster with its part (4,800 ns against 5,000): released");
        assert!(crate::stats::COUNTS.starving_released.load(Ordering::Relaxed) > released_before);
        p.ended(10, 9_000, 2, false, Mark::default);
        assert!(!p.judge(2, Some(1.0)), "the verdict stands: not judged starving among two again");
        // Among three its part halves its periods: kept.
        starve(&mut p, 3);
        for _ in 0..TRIAL {
            assert!(p.judge(3, Some(1.2)));
            p.ended(10, 2_500, 3, false, Mark::default);
        }
        for _ in 0..TRIAL {
            assert!(!p.judge(3, Some(1.2)));
            p.ended(10, 5_000, 3, false, Mark::default);
        }
        assert!(p.judge(3, Some(9.0)), "twice as fast with its part: kept, whatever the others say now");
    }

    #[test]
    fn a_period_that_ran_under_two_words_is_not_its_parts_trials() {
        let (w, board, other) = best_effort_beside_one();
        let clock = std::cell::Cell::new(1_000u64);
        let view = |busy| board::View { busy, ..Default::default() };
        let trial_periods = || w.state.lock().by_busy.get(&2).and_then(|(_, t)| t.as_ref().map(Trial::periods));
        // Alone, then starving among two beside one at 1.2x: the part's trial begins.
        w.launched(clock.get());
        clock.set(clock.get() + 1_000);
        w.waited(&board, clock.get(), 1);
        other.launched(clock.get(), 132);
        other.set_slowdown(Some(1.2));
        for _ in 0..WINDOW {
            w.launched(clock.get());
            clock.set(clock.get() + 5_000);
            w.waited(&board, clock.get(), 2);
        }
        assert!(board.is_starving() && trial_periods() == Some(0));
        // A period of two launches, the second seeing three busy (no verdict among three: the
        // part is released mid-period), ending among two again: not the trial's.
        w.launched(clock.get());
        w.follow(&board, &view(2), clock.get());
        w.launched(clock.get());
        assert!(w.follow(&board, &view(3), clock.get()) && !board.is_starving());
        clock.set(clock.get() + 5_000);
        w.waited(&board, clock.get(), 2);
        assert_eq!(trial_periods(), Some(0), "ran with its part and without");
        assert!(board.is_starving(), "among two again: kept");
        // A word changed by a period's first launch: the whole period ran under the new one.
        w.launched(clock.get());
        w.follow(&board, &view(3), clock.get());
        clock.set(clock.get() + 5_000);
        w.waited(&board, clock.get(), 3);
        w.launched(clock.get());
        assert!(w.follow(&board, &view(2), clock.get()));
        clock.set(clock.get() + 5_000);
        w.waited(&board, clock.get(), 2);
        assert_eq!(trial_periods(), Some(1), "one word throughout: the trial's");
    }

    #[test]
    fn a_period_runs_from_the_first_launch_after_a_wait_to_the_end_of_the_next() {
        let w = Watch::new(false);
        let board = Board::for_test(3, 1);
        w.waited(&board, 50, 2);
        assert!(w.state.lock().best.is_empty(), "no launch since the last wait: no period");
        w.launched(100);
        w.launched(150);
        w.launched(170);
        w.placed();
        w.waited(&board, 400, 1);
        assert_eq!(w.state.lock().best[&3], 300, "three launches from 100 to 400");
        w.waited(&board, 500, 1);
        assert_eq!(w.state.lock().best.len(), 1, "closed");
        w.launched(600);
        w.launched(650);
        w.launched(660);
        w.waited(&board, 1_500, 2);
        assert_eq!(w.state.lock().by_busy[&2].0, vec![3.0], "beside another: 3x, a window short");
    }

    #[test]
    fn a_period_open_when_the_library_stands_aside_is_dropped_unjudged() {
        let w = Watch::new(false);
        let board = Board::for_test(3, 1);
        w.launched(100);
        w.launched(150);
        w.forget_period();
        // Standing aside, nothing is seen; then the rest of a request: launched, waited for.
        w.launched(5_000);
        w.waited(&board, 5_100, 1);
        assert!(w.state.lock().best.is_empty(), "neither the gap nor the part request judged");
        w.launched(6_000);
        w.waited(&board, 6_200, 1);
        assert_eq!(w.state.lock().best[&1], 200, "the next period judged as usual");
    }

    #[test]
    fn the_board_says_the_verdict_of_the_mix_of_the_moment() {
        let (w, board, other) = best_effort_beside_one();
        let (clock, alone) = (std::cell::Cell::new(1_000u64), 1_000u64);
        let period = |ns: u64, busy: u32| {
            w.launched(clock.get());
            clock.set(clock.get() + ns);
            w.waited(&board, clock.get(), busy);
            clock.set(clock.get() + 10);
        };
        period(alone, 1);
        for _ in 0..WINDOW {
            period(7 * alone, 3);
        }
        assert!(!board.is_starving(), "7x among three, but no other says how it fares");
        assert_eq!(board.least_other_slowdown(clock.get()), None);
        other.launched(clock.get(), 132);
        other.set_slowdown(Some(1.5));
        period(7 * alone, 3);
        assert!(board.is_starving(), "7x among three beside one at 1.5x: starving");
        assert_eq!(w.judged_for.load(Ordering::Relaxed), 3);
        assert!(crate::stats::COUNTS.starved.load(Ordering::Relaxed) > 0);
        // A launch that sees two busy processes: no verdict among two, no part.
        let view = |busy| board::View { busy, ..Default::default() };
        w.follow(&board, &view(2), clock.get());
        assert!(!board.is_starving());
        // Three again: the verdict among three stands.
        w.follow(&board, &view(3), clock.get());
        let own = board.view(clock.get());
        assert!(board.is_starving() && own.starving);
        assert_eq!(own.reserved_sms, 40, "its equal part among three: five of 15 groups");
    }

    #[test]
    fn a_best_effort_process_counts_its_work_done_and_a_trial_can_weigh_it() {
        let path = Board::test_file(2);
        let (lc, be) =
            (Board::open(&path, 0, 2_000_000, Some(48)).unwrap(), Board::open(&path, 1, 2_000_000, None).unwrap());
        let clock = std::cell::Cell::new(1_000u64);
        // A best-effort watch's ended periods are counted on its slot, placed ones included.
        let bw = Watch::new(false);
        for placed in [false, true] {
            bw.launched(clock.get());
            bw.launched(clock.get());
            if placed {
                bw.placed();
            }
            clock.set(clock.get() + 100);
            bw.waited(&be, clock.get(), 2);
        }
        assert_eq!(lc.others_done(), vec![(1, 4)]);
        // A latency-critical process twice as fast with its quota, while the best-effort one
        // gets its work done 10% slower with it: kept unless a 5% cap weighs that.
        for (cap, keeps) in [(None, true), (Some(0.05), false), (Some(0.2), true)] {
            let w = Watch::new(true);
            w.topology.set(Some((15, 8))).unwrap();
            w.state.lock().cost_cap = cap;
            let period = |ns: u64, be_work: f64| {
                w.launched(clock.get());
                lc.launched(clock.get(), 132);
                be.launched(clock.get(), 132);
                be.done((ns as f64 * be_work) as u64);
                clock.set(clock.get() + ns);
                w.waited(&lc, clock.get(), 2);
            };
            for _ in 0..TRIAL {
                period(1_000, 0.9);
            }
            for _ in 0..TRIAL {
                period(2_000, 1.0);
            }
            assert_eq!(lc.keeps_quota(), keeps, "cap {cap:?}");
            let costly = w.state.lock().trials.as_ref().is_some_and(|t| t.get(&2).is_some_and(Trial::costly));
            assert_eq!(costly, !keeps, "cap {cap:?}: released for the cost, and said so");
        }
    }

    #[test]
    fn where_the_cost_is_weighed_the_kept_quota_follows_the_duty() {
        let path = Board::test_file(2);
        let (lc, be) =
            (Board::open(&path, 0, 2_000_000, Some(48)).unwrap(), Board::open(&path, 1, 2_000_000, None).unwrap());
        let clock = std::cell::Cell::new(1_000u64);
        let w = Watch::new(true);
        w.topology.set(Some((15, 8))).unwrap();
        w.state.lock().cost_cap = Some(0.05);
        // Busy 1,000 ns of every 4,000: a duty of a quarter, so 5% of 120 SMs' time is 24
        // SMs, three groups (the first period's whole time over the span would read 4,000 of
        // 13,000 ns and keep two).
        let period = || {
            w.launched(clock.get());
            lc.launched(clock.get(), 132);
            be.launched(clock.get(), 132);
            clock.set(clock.get() + 1_000);
            w.waited(&lc, clock.get(), 2);
            clock.set(clock.get() + 3_000);
        };
        for _ in 0..3 {
            period();
            assert_eq!(be.view(clock.get()).reserved_sms, 48, "the duty not known yet: the whole quota");
        }
        period();
        assert_eq!(be.view(clock.get()).reserved_sms, 24, "the trial's kept window, sized by the duty");
        // Without the cost weighed, the whole quota.
        let w = Watch::new(true);
        w.topology.set(Some((15, 8))).unwrap();
        w.state.lock().cost_cap = None;
        for _ in 0..TRIAL / 2 {
            w.launched(clock.get());
            clock.set(clock.get() + 1_000);
            w.waited(&lc, clock.get(), 2);
            clock.set(clock.get() + 3_000);
        }
        assert_eq!(be.view(clock.get()).reserved_sms, 48);
    }

    #[test]
    fn a_latency_critical_process_keeps_its_quota_while_its_trial_says_so() {
        let w = Watch::new(true);
        let path = Board::test_file(3);
        let (lc, be) =
            (Board::open(&path, 0, 2_000_000, Some(48)).unwrap(), Board::open(&path, 1, 2_000_000, None).unwrap());
        let clock = std::cell::Cell::new(1_000u64);
        let period = |ns: u64, busy: u32| {
            w.launched(clock.get());
            lc.launched(clock.get(), 132);
            clock.set(clock.get() + ns);
            w.waited(&lc, clock.get(), busy);
            clock.set(clock.get() + 10);
        };
        let kept = || lc.keeps_quota();
        period(1_000, 1);
        assert!(kept(), "alone: no trial");
        be.launched(clock.get(), 132);
        let (trials_before, released_before) = (
            crate::stats::COUNTS.quota_trials.load(Ordering::Relaxed),
            crate::stats::COUNTS.quota_released.load(Ordering::Relaxed),
        );
        for _ in 0..TRIAL {
            assert!(kept(), "the trial's first window keeps it");
            assert_eq!(be.view(clock.get()).reserved_sms, 48);
            period(1_050, 2);
        }
        for _ in 0..TRIAL {
            assert!(!kept(), "its second window releases it");
            assert_eq!(be.view(clock.get()).reserved_sms, 0, "the best-effort one keeps nothing free");
            period(1_100, 2);
        }
        assert!(!kept(), "1.05x against 1.10x: not worth the quota");
        assert!(crate::stats::COUNTS.quota_released.load(Ordering::Relaxed) > released_before);
        assert!(crate::stats::COUNTS.quota_trials.load(Ordering::Relaxed) > trials_before);
        assert!(lc.latency_critical() && lc.view(clock.get()).critical, "latency-critical still");
        // Among three, a trial of its own: kept, then released, then kept by its verdict.
        let view = |busy| board::View { busy, ..Default::default() };
        assert!(!w.follow(&lc, &view(3), clock.get()) && kept(), "a new trial keeps it first");
        for _ in 0..TRIAL {
            period(1_000, 3);
        }
        assert!(!kept());
        for _ in 0..TRIAL {
            period(2_000, 3);
        }
        assert!(kept(), "2x slower without it among three: kept");
        w.follow(&lc, &view(2), clock.get());
        assert!(!kept(), "among two the verdict stands: released");
    }
}

//! Which of two layouts a set of busy best-effort tenants keeps, measured: the layout by the
//! tenants' request curves ([`super::KrispShare::with_speeds`]) or equal parts of what the
//! quotas leave. The curves are timed alone on each window; beside a neighbour a tenant can
//! slow by more on some windows than on others (on an H200 a decoder kept 0.89× of its idle
//! speed on 68 SMs beside a prefill and 0.77× on 44: docs/harness-h200.md), and then the
//! curves' layout runs slower than equal parts. So where the two layouts differ, the set runs
//! on each in turn and keeps the curves' layout only where it slows no tenant and wins by the
//! measure the comparison judges, throughput relative to solo summed over the tenants, both
//! beyond the trial's own spread (below); else equal parts.
//!
//! The trial of a set: [`TRIAL_REQUESTS`] requests of each of its tenants on the curves'
//! layout, then as many on equal parts. A request counts for the set more than half of its
//! tenant's placements saw (a placement without laid-out windows counts for no set), so a
//! neighbour between two of its requests, seen as a smaller set for a moment, does not take
//! the request away from the set; one that ran mostly without windows (its tenant alone, once
//! the others were done) does not count, nor one begun before the set's last switch (it
//! carries the switch), nor a tenant's first request begun on each layout: it pays for the
//! layout's first use (its windows' first launches, plans captured for them; a tenant's very
//! first request also loads its kernels), which a run that keeps the layout pays once. Plans
//! captured (placed as if alone) are no request's placements.
//!
//! The verdict keeps the curves' layout only where both hold:
//! - **No tenant slower on it**: no tenant's fastest counted request on the curves' layout is
//!   slower than its slowest on equal parts. A layout that takes speed from one tenant to give
//!   it to another is a trade the trial cannot price: the sum moves by much less than each
//!   tenant's speed does, so a verdict on the sum rides on the run's spread
//!   (docs/harness-h200.md, "The layout trial keeps no trade"). What the curves' layout may
//!   keep is SMs moved from a tenant that does not need them to one that does. With two
//!   requests a tenant the test is strict: a tenant whose speed the layout does not change
//!   reads as slower about one time in six, and one that loses any speed nearly always.
//! - **Its Σ speed wins beyond the spread**: with each tenant's slowest counted request on the
//!   curves' layout, above equal parts' with each one's fastest (docs/harness-h200.md, "The
//!   layout trial weighs its spread"). Where every tenant of the set has its solo time (the
//!   harness's solo baseline), each speed is that ÷ the tenant's request time on the layout;
//!   otherwise each tenant's speed on the curves' layout is its curve's (relative to the whole
//!   device alone) and on equal parts that times the ratio of its request times, so only
//!   ratios of times measured under the same neighbours enter it.
//!
//! The verdict stands for the run. A runtime with a latency-critical tenant tries no set: such
//! a tenant's requests come and go, and with them the contending set at each of its requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::sizes::ids;

/// Requests of each tenant counted on each layout.
pub const TRIAL_REQUESTS: usize = 2;

/// The trials of every set whose two layouts differ ([`super::KrispShare`]).
#[derive(Debug)]
pub(super) struct LayoutTrial {
    /// By set (a bit per tenant id): whether it runs on equal parts now.
    equal: Vec<AtomicBool>,
    /// By set: each tenant's speed (id, speed relative to the whole device alone) on its
    /// window of the curves' layout, where the set is tried; empty where it is not.
    weights: Vec<Vec<(usize, f64)>>,
    /// By tenant id: the sets its placements saw since its last request ended (set 0: none
    /// laid out) (locked by its own thread only, but for a tenant used from several).
    seen: Vec<Slot>,
    /// By tenant id: its mean request time alone on the whole device, µs, where known.
    solo_us: Vec<Option<f64>>,
    trials: Mutex<HashMap<u64, SetTrial>>,
}

/// The sets one tenant's placements saw during its request in flight; alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(Mutex<Seen>);

#[derive(Debug, Default)]
struct Seen {
    /// Up to eight sets with their placements (set 0: none laid out), and the placements on
    /// any other set.
    sets: [(u64, u32); 8],
    others: u32,
}

impl Seen {
    /// The set more than half of the placements saw, if any, and forgets them.
    fn take_majority(&mut self) -> Option<u64> {
        let total = self.sets.iter().map(|s| u64::from(s.1)).sum::<u64>() + u64::from(self.others);
        let best = self.sets.iter().copied().max_by_key(|s| s.1).filter(|s| s.1 > 0 && 2 * u64::from(s.1) > total);
        self.sets = Default::default();
        self.others = 0;
        best.map(|s| s.0)
    }
}

/// Where a set's trial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// On the curves' layout, counting.
    Curves,
    /// On equal parts, counting.
    Equal,
    /// Done: kept for the rest of the run.
    Kept {
        /// Equal parts (`true`) or the curves' layout.
        equal: bool,
    },
}

#[derive(Debug)]
struct SetTrial {
    stage: Stage,
    /// Σ speed on the curves' layout and on equal parts by each tenant's median request on
    /// each, once judged (the notes print it).
    sums: Option<(f64, f64)>,
    /// The same by each tenant's slowest request on the curves' layout and its fastest on
    /// equal parts, once judged: what the verdict weighs.
    bounds: Option<(f64, f64)>,
    /// A tenant slower on the curves' layout than on equal parts beyond the spread, once
    /// judged: such a verdict keeps equal parts whatever the sums.
    slower: Option<usize>,
    /// When the stage began (monotonic ns): a request counts only if it began after it.
    since_ns: u64,
    /// Tenants (a bit per id) whose first request begun on this stage's layout has ended.
    settled: u64,
    /// Per tenant id, the times counted on each layout (µs).
    curves: HashMap<usize, Vec<f64>>,
    equal: HashMap<usize, Vec<f64>>,
}

impl LayoutTrial {
    /// Trials for the sets whose `weights` are not empty (`weights[set]`: each tenant's
    /// speed on its window of the curves' layout).
    pub(super) fn new(weights: Vec<Vec<(usize, f64)>>) -> LayoutTrial {
        LayoutTrial {
            equal: weights.iter().map(|_| AtomicBool::new(false)).collect(),
            weights,
            seen: (0..64).map(|_| Slot::default()).collect(),
            solo_us: Vec::new(),
            trials: Mutex::new(HashMap::new()),
        }
    }

    /// Each tenant's mean request time alone on the whole device, µs (by id, where known).
    pub(super) fn set_solo_times(&mut self, solo_us: Vec<Option<f64>>) {
        self.solo_us = solo_us;
    }

    /// Whether `set` is tried.
    pub(super) fn tried(&self, set: u64) -> bool {
        self.weights.get(set as usize).is_some_and(|w| !w.is_empty())
    }

    /// Whether `set` runs on equal parts now (on the launch path: one load).
    pub(super) fn on_equal(&self, set: u64) -> bool {
        self.equal.get(set as usize).is_some_and(|e| e.load(Ordering::Relaxed))
    }

    /// A placement of `tenant` saw `set` contend (0: no windows laid out) (on the launch path:
    /// its own slot's lock, uncontended, and a few words of it).
    pub(super) fn saw(&self, tenant: usize, set: u64) {
        let Some(slot) = self.seen.get(tenant) else { return };
        let mut seen = slot.0.lock();
        if let Some(s) = seen.sets.iter_mut().find(|s| s.0 == set && s.1 > 0) {
            s.1 = s.1.saturating_add(1);
        } else if let Some(s) = seen.sets.iter_mut().find(|s| s.1 == 0) {
            *s = (set, 1);
        } else {
            seen.others = seen.others.saturating_add(1);
        }
    }

    /// Where the trial of `set` stands (`None`: not begun, or not tried).
    pub(super) fn stage(&self, set: u64) -> Option<Stage> {
        self.trials.lock().get(&set).map(|t| t.stage)
    }

    /// A request of `tenant` ran from `began_ns` to `ended_ns`: counted for the set most of
    /// its placements saw, where that set is tried; the trial moves on once each of the set's
    /// tenants has [`TRIAL_REQUESTS`] counted.
    pub(super) fn observe(&self, tenant: usize, began_ns: u64, ended_ns: u64) {
        let Some(slot) = self.seen.get(tenant) else { return };
        let set = slot.0.lock().take_majority();
        let bit = 1u64 << tenant;
        let Some(set) = set.filter(|&s| self.tried(s) && s & bit != 0) else { return };
        let mut trials = self.trials.lock();
        let t = trials.entry(set).or_insert_with(|| SetTrial {
            stage: Stage::Curves,
            sums: None,
            bounds: None,
            slower: None,
            since_ns: 0,
            settled: 0,
            curves: HashMap::new(),
            equal: HashMap::new(),
        });
        if began_ns < t.since_ns || matches!(t.stage, Stage::Kept { .. }) {
            return;
        }
        if t.settled & bit == 0 {
            t.settled |= bit;
            return;
        }
        let us = ended_ns.saturating_sub(began_ns) as f64 / 1e3;
        let times = if t.stage == Stage::Curves { &mut t.curves } else { &mut t.equal };
        times.entry(tenant).or_default().push(us);
        let full = ids(set).all(|i| times.get(&i).is_some_and(|v| v.len() >= TRIAL_REQUESTS));
        if !full {
            return;
        }
        t.stage = match t.stage {
            Stage::Curves => Stage::Equal,
            _ => {
                t.sums = self.sums(set, &t.curves, &t.equal, (Pick::Median, Pick::Median));
                // The curves' layout is kept only where it slows no tenant and wins beyond
                // the trial's own spread: its Σ speed with each tenant's slowest request
                // counted above equal parts' with each one's fastest. A trade between tenants,
                // a tie, or a win one request's luck could make keeps the fixed split, and so
                // does a trial without a verdict.
                t.bounds = self.sums(set, &t.curves, &t.equal, (Pick::Slowest, Pick::Fastest));
                t.slower = ids(set)
                    .find(|i| slower_on_curves(t.curves.get(i).map(Vec::as_slice), t.equal.get(i).map(Vec::as_slice)));
                Stage::Kept { equal: t.slower.is_some() || !t.bounds.is_some_and(|(c, e)| c > e) }
            }
        };
        t.since_ns = ended_ns;
        t.settled = 0;
        let equal = matches!(t.stage, Stage::Equal | Stage::Kept { equal: true });
        self.equal[set as usize].store(equal, Ordering::Relaxed);
    }

    /// Where each set's trial stands, a line each (tenant ids, the stage, the verdict's sums).
    pub(super) fn notes(&self) -> Vec<String> {
        let trials = self.trials.lock();
        let mut sets: Vec<_> = trials.iter().collect();
        sets.sort_by_key(|(set, _)| **set);
        sets.into_iter()
            .map(|(&set, t)| {
                let who = ids(set).map(|i| i.to_string()).collect::<Vec<_>>().join("+");
                let by = if self.by_solo(set) { "solo times" } else { "curves" };
                match (t.stage, t.sums) {
                    (Stage::Kept { equal }, Some((c, e))) => format!(
                        "layout trial of tenants {who}: kept {} (Σ speed by {by}: curves' layout {c:.3}, equal parts {e:.3}; \
                         by the curves' layout's slowest requests {}, equal parts' fastest {}{})",
                        if equal { "equal parts" } else { "the curves' layout" },
                        t.bounds.map_or("–".into(), |b| format!("{:.3}", b.0)),
                        t.bounds.map_or("–".into(), |b| format!("{:.3}", b.1)),
                        t.slower.map_or(String::new(), |i| format!("; tenant {i} slower on the curves' layout")),
                    ),
                    (Stage::Kept { equal }, None) => format!(
                        "layout trial of tenants {who}: kept {} (no verdict)",
                        if equal { "equal parts" } else { "the curves' layout" }
                    ),
                    (Stage::Curves, _) => format!(
                        "layout trial of tenants {who}: on the curves' layout, counting ({})",
                        counted(set, &t.curves)
                    ),
                    (Stage::Equal, _) => format!(
                        "layout trial of tenants {who}: on equal parts, counting, not judged ({})",
                        counted(set, &t.equal)
                    ),
                }
            })
            .collect()
    }

    /// Whether `set`'s verdict is weighed by solo times: every tenant of it has one.
    fn by_solo(&self, set: u64) -> bool {
        self.weights[set as usize].iter().all(|&(t, _)| self.solo(t).is_some())
    }

    fn solo(&self, t: usize) -> Option<f64> {
        self.solo_us.get(t).copied().flatten().filter(|&us| us > 0.0)
    }

    /// Σ speed over the set's tenants on the curves' layout and on equal parts (`None` where a
    /// tenant lacks a time), each tenant's time on a layout picked from its requests there.
    /// Where every tenant's solo time is known, its speed on each layout is its solo time ÷
    /// that time; else its speed is its curve's times its median time on the curves' layout ÷
    /// that time (its curve's speed at the median).
    fn sums(
        &self,
        set: u64,
        curves: &HashMap<usize, Vec<f64>>,
        equal: &HashMap<usize, Vec<f64>>,
        (on_curves_pick, on_equal_pick): (Pick, Pick),
    ) -> Option<(f64, f64)> {
        let by_solo = self.by_solo(set);
        let (mut on_curves, mut on_equal) = (0.0, 0.0);
        for &(t, w) in &self.weights[set as usize] {
            let (on_c, on_e) = (curves.get(&t)?, equal.get(&t)?);
            let (m, a, b) = (median(on_c), on_curves_pick.of(on_c), on_equal_pick.of(on_e));
            if !(m > 0.0 && a > 0.0 && b > 0.0) {
                return None;
            }
            // The time a speed of 1 would take: the solo time, or the curve's reading of it.
            let unit = if by_solo { self.solo(t).unwrap_or(0.0) } else { w * m };
            on_curves += unit / a;
            on_equal += unit / b;
        }
        Some((on_curves, on_equal))
    }
}

/// Whether a tenant ran slower on the curves' layout than on equal parts beyond its spread:
/// its fastest request counted there slower than its slowest on equal parts. (No requests
/// counted on one of them also reads as slower, keeping equal parts; a verdict is reached only
/// once every tenant of the set has its requests on both.)
fn slower_on_curves(curves: Option<&[f64]>, equal: Option<&[f64]>) -> bool {
    let (Some(c), Some(e)) = (curves, equal) else { return true };
    let (fastest, slowest) = (Pick::Fastest.of(c), Pick::Slowest.of(e));
    !matches!(fastest.partial_cmp(&slowest), Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal))
}

/// How many requests of each of `set`'s tenants a stage counted: "requests counted of each
/// tenant's 2: 0 1, 1 2" (ids, then counts).
fn counted(set: u64, times: &HashMap<usize, Vec<f64>>) -> String {
    let each = ids(set).map(|i| format!("{i} {}", times.get(&i).map_or(0, Vec::len))).collect::<Vec<_>>();
    format!("requests counted of each tenant's {TRIAL_REQUESTS}: {}", each.join(", "))
}

/// Which of a tenant's request times on a layout a Σ speed takes.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Median,
    Slowest,
    Fastest,
}

impl Pick {
    fn of(self, v: &[f64]) -> f64 {
        match self {
            Pick::Median => median(v),
            Pick::Slowest => v.iter().copied().fold(f64::NAN, f64::max),
            Pick::Fastest => v.iter().copied().fold(f64::NAN, f64::min),
        }
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

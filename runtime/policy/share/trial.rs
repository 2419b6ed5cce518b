//! Which of two layouts a set of busy best-effort tenants keeps, measured: the layout by the
//! tenants' request curves ([`super::KrispShare::with_speeds`]) or equal parts of what the
//! quotas leave. The curves are timed alone on each window; beside a neighbour a tenant can
//! slow by more on some windows than on others (on an H200 a decoder kept 0.89× of its idle
//! speed on 68 SMs beside a prefill and 0.77× on 44: docs/harness-h200.md), and then the
//! curves' layout runs slower than equal parts. So where the two layouts differ, the set runs
//! on each in turn and keeps the one under which the tenants' requests ran faster by the
//! measure the comparison judges, throughput relative to solo summed over the tenants.
//!
//! The trial of a set: [`TRIAL_REQUESTS`] requests of each of its tenants on the curves'
//! layout, then as many on equal parts; a request begun before the switch is not counted
//! (it carries the switch), nor one begun before the set last became the contending set, nor
//! one of which no placement saw the set's windows laid out (its tenant ran alone, say,
//! once the others were done). A tenant's moments alone between the others' requests do not
//! end the set's contention: they come with every request, under either layout.
//! The verdict compares Σ speed: each tenant's speed on the curves' layout is its curve's
//! (relative to the whole device alone) and on equal parts that times the ratio of its median
//! request times, so only ratios of times measured under the same neighbours enter it. The
//! verdict stands for the run. A runtime with a latency-critical tenant tries no set: such a
//! tenant's requests come and go, and with them the contending set at each of its requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
    /// The contending set the last placement with laid-out windows saw, and when it became
    /// that set (monotonic ns).
    current: AtomicU64,
    since_ns: AtomicU64,
    /// By tenant id: placements of it that saw windows laid out (each written by its
    /// tenant's thread, on a line of its own), and the count its last request ended at.
    laid: Vec<Slot>,
    trials: Mutex<HashMap<u64, SetTrial>>,
}

/// A tenant's count of laid-out placements, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot {
    laid: AtomicU64,
    at_last_request: AtomicU64,
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
    /// When the stage began (monotonic ns): a request counts only if it began after it.
    since_ns: u64,
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
            current: AtomicU64::new(0),
            since_ns: AtomicU64::new(0),
            laid: (0..64).map(|_| Slot::default()).collect(),
            trials: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `set` is tried.
    pub(super) fn tried(&self, set: u64) -> bool {
        self.weights.get(set as usize).is_some_and(|w| !w.is_empty())
    }

    /// Whether `set` runs on equal parts now (on the launch path: one load).
    pub(super) fn on_equal(&self, set: u64) -> bool {
        self.equal.get(set as usize).is_some_and(|e| e.load(Ordering::Relaxed))
    }

    /// A placement of `tenant` with laid-out windows saw `set` contend (on the launch path: a
    /// load and a store of its own line, a load, and the clock read and two stores when the set
    /// changed).
    pub(super) fn saw(&self, tenant: usize, set: u64, now_ns: impl FnOnce() -> u64) {
        if let Some(slot) = self.laid.get(tenant) {
            slot.laid.store(slot.laid.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
        }
        if self.current.load(Ordering::Relaxed) != set {
            // The start first, published by the set's store (read in that order by `observe`).
            self.since_ns.store(now_ns(), Ordering::Relaxed);
            self.current.store(set, Ordering::Release);
        }
    }

    /// Where the trial of `set` stands (`None`: not begun, or not tried).
    pub(super) fn stage(&self, set: u64) -> Option<Stage> {
        self.trials.lock().get(&set).map(|t| t.stage)
    }

    /// A request of `tenant` ran from `began_ns` to `ended_ns`: counted for the set that
    /// contends now if the set did not change meanwhile and it is tried; the trial moves on
    /// once each of the set's tenants has [`TRIAL_REQUESTS`] counted.
    pub(super) fn observe(&self, tenant: usize, began_ns: u64, ended_ns: u64) {
        let set = self.current.load(Ordering::Acquire);
        let Some(slot) = self.laid.get(tenant) else { return };
        let laid = slot.laid.load(Ordering::Relaxed);
        let before = slot.at_last_request.swap(laid, Ordering::Relaxed);
        if !self.tried(set) || set & 1u64 << tenant == 0 || laid == before {
            return;
        }
        let since = self.since_ns.load(Ordering::Relaxed);
        if began_ns < since {
            return;
        }
        let mut trials = self.trials.lock();
        let t = trials.entry(set).or_insert_with(|| SetTrial {
            stage: Stage::Curves,
            since_ns: since,
            curves: HashMap::new(),
            equal: HashMap::new(),
        });
        if began_ns < t.since_ns || matches!(t.stage, Stage::Kept { .. }) {
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
            _ => Stage::Kept { equal: self.equal_wins(set, &t.curves, &t.equal) },
        };
        t.since_ns = ended_ns;
        let equal = matches!(t.stage, Stage::Equal | Stage::Kept { equal: true });
        self.equal[set as usize].store(equal, Ordering::Relaxed);
    }

    /// Whether equal parts ran faster: Σ speed over the set's tenants, each tenant's speed on
    /// the curves' layout its curve's and on equal parts that times its median time there ÷
    /// its median time on equal parts.
    fn equal_wins(&self, set: u64, curves: &HashMap<usize, Vec<f64>>, equal: &HashMap<usize, Vec<f64>>) -> bool {
        let (mut on_curves, mut on_equal) = (0.0, 0.0);
        for &(t, w) in &self.weights[set as usize] {
            let (Some(a), Some(b)) = (curves.get(&t).map(|v| median(v)), equal.get(&t).map(|v| median(v))) else {
                return false;
            };
            if !(a > 0.0 && b > 0.0) {
                return false;
            }
            on_curves += w;
            on_equal += w * a / b;
        }
        on_equal > on_curves
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

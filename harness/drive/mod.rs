//! One tenant's request loop, the same in every mode: wait for the common start, issue
//! requests (closed loop, or open loop with Poisson arrivals), time each on the host, count
//! only once every tenant has issued its warm-up, and keep going — uncounted — until every
//! tenant has finished counting, so each tenant's counted requests all ran among the same
//! co-runners, beside their counted or later requests, never beside their warm-up.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::fault::{Faults, RequestFailed};
use super::metrics::Sample;
use super::spec::Phases;
use super::trace::TenantTrace;

/// What running a scenario gives: each tenant's counted samples and, when traced, its trace
/// (empty when not), in scenario order.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Counted samples per tenant.
    pub samples: Vec<Vec<Sample>>,
    /// Traces per tenant (empty unless traced).
    pub traces: Vec<TenantTrace>,
    /// The common start of the tenants' loops (what came before it was set-up).
    pub started: Option<Instant>,
    /// Each recovery from a lost context (one-process modes, and worker processes under MPS):
    /// seconds from the fault until every surviving tenant served again.
    pub outages_s: Vec<f64>,
    /// Per tenant, why its first failed request failed (none failed: `None`; empty when no
    /// tenant's failures were recorded).
    pub failures: Vec<Option<String>>,
    /// Per tenant, its duty at the end (one-process modes; empty otherwise): how much of its
    /// recent time it spent busy, which `krisp` reads to tell lasting contention from
    /// contention that comes and goes.
    pub duties: Vec<Option<f64>>,
    /// Set when the run's GPU context was lost (a kernel faulted; one-process modes): the
    /// tenants stopped where they stood, for a new process to go on from.
    pub interrupted: Option<Interruption>,
    /// Per tenant, when it first served a request in this process, seconds after the common
    /// start (one-process runs; empty otherwise): a host reports them for the harness to time
    /// the return from an outage.
    pub first_served: Vec<Option<f64>>,
    /// Per tenant, what the interposer did with its kernels (PyTorch tenants under `static`
    /// and `krisp`; empty otherwise).
    pub interposed: Vec<Option<crate::profiler::app::interposer_log::Interposed>>,
    /// PyTorch tenants under `krisp` whose processes stood aside in turn: when.
    pub aside: Option<crate::harness::results::AsidePhases>,
    /// What the policy learned in the run (one-process modes: `Policy::notes`).
    pub policy_notes: Vec<String>,
}

/// What one process, or one set of worker processes, of a run gave ([`run_in_parts`]).
#[derive(Debug, Default)]
pub(crate) struct Part {
    /// Counted samples per tenant.
    pub samples: Vec<Vec<Sample>>,
    /// Per tenant, why its first failed request failed.
    pub failures: Vec<Option<String>>,
    /// Where the tenants stood when the GPU context was lost, if it was.
    pub interrupted: Option<Interruption>,
    /// A part that went on from an interrupted one: when every tenant that still serves had
    /// served a request again, seconds after the common start.
    pub resumed_s: Option<f64>,
}

/// Runs a run of `n` tenants in parts: `part(resume, out)` runs one in new processes (from
/// each tenant's state in `resume`, when given; it merges into `out` what only it knows, and
/// sets `out.started`). After a part whose context was lost, the next goes on from where the
/// tenants stood, if a tenant's own kernel fault explains the loss (that tenant serves no
/// more); a loss nothing explains would only come back and ends the run. Each part's samples
/// and first failures are merged into `out` (sized for `n` tenants), and each outage, from
/// the loss until every surviving tenant served again, added to `out.outages_s`.
pub(crate) fn run_in_parts(
    n: usize,
    out: &mut Outcome,
    mut part: impl FnMut(Option<&[TenantState]>, &mut Outcome) -> anyhow::Result<Part>,
) -> anyhow::Result<()> {
    let mut resume: Option<Vec<TenantState>> = None;
    let mut lost_at: Option<f64> = None;
    // One part, and one more per tenant whose kernel can fault.
    for _ in 0..=n {
        let p = part(resume.as_deref(), out)?;
        for (mine, theirs) in out.samples.iter_mut().zip(p.samples) {
            mine.extend(theirs);
        }
        for (mine, theirs) in out.failures.iter_mut().zip(p.failures) {
            *mine = mine.take().or(theirs);
        }
        if let (Some(lost), Some(back)) = (lost_at, p.resumed_s) {
            out.outages_s.push((back - lost).max(0.0));
        }
        let Some(stop) = p.interrupted else {
            return Ok(());
        };
        let stopped_before = |i: usize| resume.as_ref().is_some_and(|r| r[i].faults.stopped());
        if !(0..n).any(|i| stop.tenants[i].faults.stopped() && !stopped_before(i)) {
            let why = out.failures.iter().flatten().next().cloned().unwrap_or_default();
            anyhow::bail!(
                "the GPU context was lost and no tenant's kernel fault explains it; the run cannot go on ({why})"
            );
        }
        lost_at = Some(stop.at_s);
        resume = Some(stop.tenants);
    }
    anyhow::bail!("the GPU context was lost more often than the scenario has tenants")
}

/// Where the tenants of a run whose GPU context was lost stood.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Interruption {
    /// When the loss was first seen, seconds after the common start.
    pub at_s: f64,
    /// Each tenant's loop and faults, in scenario order.
    pub tenants: Vec<TenantState>,
}

/// One tenant's state between two processes of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantState {
    /// Its request loop.
    pub position: Position,
    /// Its injected fault: requests issued, and whether its kernel faulted.
    pub faults: Faults,
}

/// Where a request loop stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Requests issued or shed so far, warm-up included.
    pub issued: u64,
    /// Open loop: arrivals drawn so far.
    pub drawn: u64,
    /// Open loop: arrivals drawn and not issued, oldest first (seconds after the start).
    pub waiting: Vec<f64>,
    /// Open loop with a queue limit: the next arrival, drawn before it arrived.
    pub upcoming: Option<f64>,
    /// It has counted all it counts (it goes on uncounted until the others have).
    pub done: bool,
    /// Every tenant had issued its warm-up: its requests since counted.
    #[serde(default)]
    pub counting: bool,
    /// Requests counted so far (served, failed or shed).
    #[serde(default)]
    pub counted: u64,
}

/// A request's error that stops its loop where it stands, neither counted nor failed: the
/// process lost its GPU context, and the process that goes on with the run issues it again.
#[derive(Debug, thiserror::Error)]
#[error("the run was interrupted: its GPU context was lost")]
pub struct Interrupted;

/// What one tenant's loop does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopSpec {
    /// Requests issued first and not counted.
    pub warmup: u32,
    /// Counted requests.
    pub requests: u32,
    /// Open loop at this many requests per second; closed loop if `None`.
    pub rate: Option<f64>,
    /// Seed of the arrival times.
    pub seed: u64,
    /// Counting stops this long after the start, even if fewer requests completed.
    pub duration: Option<Duration>,
    /// Busy and idle phases: requests are issued only in busy phases.
    pub phases: Option<Phases>,
    /// Open loop: the most arrived requests that wait for the one in service; one arriving
    /// when that many wait is shed (refused at once, counted). Unbounded if `None`.
    pub queue_limit: Option<u32>,
}

/// How the tenants of a run meet: a common start, and a common end once all have counted.
pub trait Gate {
    /// Waits until every tenant is ready and returns the common start (`Err` if the run was
    /// called off: another tenant failed to get ready).
    fn start(&self) -> anyhow::Result<Instant>;
    /// Says this tenant has finished counting (or failed); called once.
    fn finished(&self);
    /// Says this tenant has issued its warm-up (or ended before it did); called once, before
    /// [`Gate::finished`].
    fn warm(&self) {}
    /// Whether every tenant has issued its warm-up: requests are counted from then on.
    fn all_warm(&self) -> bool {
        true
    }
    /// Whether every tenant has finished (the loop then stops).
    fn stopped(&self) -> bool;
    /// Counted requests so far (for progress bars).
    fn progress(&self, _counted: u32) {}
    /// Whether the run was interrupted (its GPU context lost): every loop stops where it stands.
    fn interrupted(&self) -> bool {
        false
    }
    /// Seconds since the common start (0 before it): when a tenant first served, when a
    /// context was lost.
    fn since_start(&self) -> f64;
}

/// A small deterministic generator (splitmix64) for arrival times.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Seeded.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponentially distributed with the given rate.
    pub fn exponential(&mut self, rate: f64) -> f64 {
        -(1.0 - self.uniform()).ln() / rate
    }
}

/// Where a loop's counted samples go instead of its returned list (a long run that keeps
/// only aggregates, `rightsize soak`).
pub type Sink<'a> = &'a (dyn Fn(Sample) + Sync);

/// Runs one tenant's loop: `request` issues one request and returns once it has completed.
/// A request that returns [`RequestFailed`] is counted as failed and the loop goes on; any
/// other error ends it. Returns the counted samples, in issue order.
pub fn drive(
    spec: &LoopSpec,
    gate: &dyn Gate,
    request: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Sample>> {
    drive_into(spec, gate, None, request)
}

/// [`drive`], handing each counted sample to `sink` (when given) instead of returning it.
pub fn drive_into(
    spec: &LoopSpec,
    gate: &dyn Gate,
    sink: Option<Sink<'_>>,
    request: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Sample>> {
    drive_from(spec, gate, sink, &Position::default(), request, |_| {}).map(|(samples, _)| samples)
}

/// [`drive_into`] from `from` (where an interrupted run's loop stood: its arrivals and
/// counts go on from there, on the same clock when the gate's start is the first run's) to
/// the end, or to where it stands when the gate says the run was interrupted or a request
/// returns [`Interrupted`]. Returns the counted samples and that position. `served` is told
/// the latency of every request served (counted or not, from when it was due to its end, in
/// seconds) as it completes.
pub fn drive_from(
    spec: &LoopSpec,
    gate: &dyn Gate,
    sink: Option<Sink<'_>>,
    from: &Position,
    request: impl FnMut() -> anyhow::Result<()>,
    served: impl FnMut(f64),
) -> anyhow::Result<(Vec<Sample>, Position)> {
    drive_with(spec, gate, sink, from, request, served, None::<fn(bool)>)
}

/// [`drive_from`], telling `behind` (if given) before each open-loop request whether it is
/// behind: it arrived before the one before it ended (it queued), or the next one has
/// arrived by the time it starts (one queues behind it). Only what a server knows when the
/// request starts: arrivals so far, never later ones. To know whether the next has arrived
/// it draws it a request early (it waits in the position's queue).
pub fn drive_with(
    spec: &LoopSpec,
    gate: &dyn Gate,
    sink: Option<Sink<'_>>,
    from: &Position,
    mut request: impl FnMut() -> anyhow::Result<()>,
    mut served: impl FnMut(f64),
    mut behind: Option<impl FnMut(bool)>,
) -> anyhow::Result<(Vec<Sample>, Position)> {
    let mut previous_end = f64::NEG_INFINITY;
    let t0 = gate.start()?;
    let mut rng = SplitMix::new(spec.seed);
    let deadline = spec.duration.map(|d| t0 + d);
    // Past the run's end nothing counts any more: the loop issues nothing more, so the requests
    // still in flight elsewhere finish without its load (under a sanitizer, where a request
    // takes minutes, they would otherwise wait on every tenant's uncounted ones).
    let over = || deadline.is_some_and(|d| Instant::now() >= d);
    // A long run (a sink, or a duration with requests to spare) must not reserve for every
    // request it could count.
    let reserve = if sink.is_some() { 0 } else { (spec.requests as usize).min(1 << 16) };
    let mut counted = Vec::with_capacity(reserve);
    // Busy time of the next open-loop arrival (the same as its time without phases).
    let mut next_busy = 0.0f64;
    let mut drawn = 0u64;
    let mut arrival = |rate: f64| {
        drawn += 1;
        next_busy += rng.exponential(rate);
        spec.phases.map_or(next_busy, |p| p.at_busy_time(next_busy))
    };
    // Open loop: arrivals drawn and not yet issued — waiting (arrived, or put back by an
    // interruption), and with a queue limit the next one not yet arrived.
    let mut waiting: std::collections::VecDeque<f64> = from.waiting.iter().copied().collect();
    let mut upcoming: Option<f64> = from.upcoming;
    if let Some(rate) = spec.rate {
        // The arrivals an interrupted run already drew.
        for _ in 0..from.drawn {
            let _ = arrival(rate);
        }
    }
    let mut issued = from.issued as usize;
    // Warm once its warm-up is issued (or it ends before that); counting once every tenant is.
    let warm = std::cell::Cell::new(false);
    let warmed = || {
        if !warm.replace(true) {
            gate.warm();
        }
    };
    let finish = || {
        warmed();
        gate.finished();
    };
    if issued >= spec.warmup as usize {
        warmed();
    }
    let mut finished = from.done;
    if finished {
        finish();
    }
    let mut counting = from.counting;
    let mut n_counted = from.counted;
    // Counts a request (served or shed) as the loop's `index`-th, counted if every tenant was
    // warm when it started (`all_warm`), or if it failed after this tenant's warm-up (a failure
    // is never dropped); says whether counting is over.
    let mut count = |sample: Sample, finished: bool, all_warm: bool, counted: &mut Vec<Sample>| {
        let index = issued;
        issued += 1;
        if issued >= spec.warmup as usize {
            warmed();
        }
        if finished {
            return false;
        }
        let late = deadline.is_some_and(|d| Instant::now() > d);
        let past_warmup = index >= spec.warmup as usize;
        counting = counting || (past_warmup && all_warm);
        if (counting || (past_warmup && sample.failed)) && !late {
            match sink {
                Some(f) => f(sample),
                None => counted.push(sample),
            }
            n_counted += 1;
            gate.progress(u32::try_from(n_counted).unwrap_or(u32::MAX));
        }
        n_counted >= u64::from(spec.requests) || late
    };
    let result = loop {
        if (finished && gate.stopped()) || gate.interrupted() {
            break Ok(());
        }
        // When the next request is due: its arrival (open loop) or now (closed loop), moved to
        // the next busy phase if the tenant has phases.
        let due = match (spec.rate, spec.queue_limit) {
            (Some(rate), None) => waiting.pop_front().unwrap_or_else(|| arrival(rate)),
            (Some(rate), Some(limit)) => {
                // Arrivals up to now join the queue, or are shed when it is full.
                let now = t0.elapsed().as_secs_f64();
                loop {
                    let a = upcoming.take().unwrap_or_else(|| arrival(rate));
                    if a > now {
                        upcoming = Some(a);
                        break;
                    }
                    if waiting.len() < limit as usize {
                        waiting.push_back(a);
                    } else if count(Sample::shed(a), finished, gate.all_warm(), &mut counted) && !finished {
                        finished = true;
                        finish();
                    }
                }
                match waiting.pop_front() {
                    Some(a) => a,
                    None => upcoming.take().unwrap_or_else(|| arrival(rate)),
                }
            }
            (None, _) => {
                let now = t0.elapsed().as_secs_f64();
                spec.phases.map_or(now, |p| p.next_busy(now))
            }
        };
        // Sleep until then, in slices, so a stop is noticed.
        let at = t0 + Duration::from_secs_f64(due);
        loop {
            let now = Instant::now();
            if now >= at || (finished && gate.stopped()) || gate.interrupted() || over() {
                break;
            }
            std::thread::sleep((at - now).min(Duration::from_millis(5)));
        }
        if (finished && gate.stopped()) || over() {
            break Ok(());
        }
        let start = t0.elapsed().as_secs_f64();
        let mut was_behind = false;
        if let (Some(rate), Some(behind)) = (spec.rate, behind.as_mut()) {
            let next = match spec.queue_limit {
                None => {
                    if waiting.is_empty() {
                        let a = arrival(rate);
                        waiting.push_back(a);
                    }
                    waiting.front().copied()
                }
                Some(_) => {
                    if waiting.is_empty() && upcoming.is_none() {
                        upcoming = Some(arrival(rate));
                    }
                    waiting.front().copied().or(upcoming)
                }
            };
            was_behind = previous_end > due || next.is_some_and(|n| n <= start);
            behind(was_behind);
        }
        let all_warm = gate.all_warm();
        let r = if gate.interrupted() { Err(Interrupted.into()) } else { request() };
        let (failed, last) = match r {
            Ok(()) => (false, false),
            // Not counted: the next process issues it, as due as it was.
            Err(e) if e.is::<Interrupted>() => {
                if spec.rate.is_some() {
                    waiting.push_front(due);
                }
                break Ok(());
            }
            // A failed request is counted as failed; the loop goes on.
            Err(e) => match e.downcast_ref::<RequestFailed>() {
                Some(f) => (true, f.last),
                None => break Err(e),
            },
        };
        let end = t0.elapsed().as_secs_f64();
        previous_end = end;
        let sample = Sample { failed, behind: was_behind, ..Sample::served(due, start, end) };
        if sample.is_served() {
            served(sample.latency());
        }
        if count(sample, finished, all_warm, &mut counted) && !finished {
            finished = true;
            finish();
        }
        // A closed loop whose tenant serves no more issues nothing more; it waits for the others.
        if last && spec.rate.is_none() {
            if !finished {
                finished = true;
                finish();
            }
            while !gate.stopped() && !gate.interrupted() {
                std::thread::sleep(Duration::from_millis(5));
            }
            break Ok(());
        }
    };
    if !finished {
        finish();
        // A run that reached its end is done; an interrupted one goes on in the next process.
        finished = over();
    }
    let position = Position {
        issued: issued as u64,
        drawn,
        waiting: waiting.into(),
        upcoming,
        done: finished,
        counting,
        counted: n_counted,
    };
    result.map(|()| (counted, position))
}

#[cfg(test)]
mod tests;

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
    /// A run that went on from an interrupted one: when every tenant that still serves had
    /// served a request again, seconds after the common start.
    pub resumed_s: Option<f64>,
    /// Per tenant, what the interposer did with its kernels (PyTorch tenants under `static`
    /// and `krisp`; empty otherwise).
    pub interposed: Vec<Option<crate::profiler::app::interposer_log::Interposed>>,
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
    drive_from(spec, gate, sink, &Position::default(), request).map(|(samples, _)| samples)
}

/// [`drive_into`] from `from` (where an interrupted run's loop stood: its arrivals and
/// counts go on from there, on the same clock when the gate's start is the first run's) to
/// the end, or to where it stands when the gate says the run was interrupted or a request
/// returns [`Interrupted`]. Returns the counted samples and that position.
pub fn drive_from(
    spec: &LoopSpec,
    gate: &dyn Gate,
    sink: Option<Sink<'_>>,
    from: &Position,
    mut request: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(Vec<Sample>, Position)> {
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
        let sample = Sample { failed, ..Sample::served(due, start, end) };
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
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A gate for `n` tenants in threads of one test.
    struct Local {
        n: u32,
        done: AtomicU32,
        warmed: AtomicU32,
        start: Instant,
        interrupted: std::sync::atomic::AtomicBool,
    }

    impl Gate for Local {
        fn start(&self) -> anyhow::Result<Instant> {
            Ok(self.start)
        }
        fn finished(&self) {
            self.done.fetch_add(1, Ordering::SeqCst);
        }
        fn warm(&self) {
            self.warmed.fetch_add(1, Ordering::SeqCst);
        }
        fn all_warm(&self) -> bool {
            self.warmed.load(Ordering::SeqCst) >= self.n
        }
        fn stopped(&self) -> bool {
            self.done.load(Ordering::SeqCst) >= self.n
        }
        fn interrupted(&self) -> bool {
            self.interrupted.load(Ordering::SeqCst)
        }
    }

    fn gate(n: u32) -> Local {
        Local {
            n,
            done: AtomicU32::new(0),
            warmed: AtomicU32::new(0),
            start: Instant::now(),
            interrupted: Default::default(),
        }
    }

    /// A second process's gate for the same run: same start, nothing finished yet.
    fn again(g: &Local) -> Local {
        Local { start: g.start, ..gate(g.n) }
    }

    /// A closed loop of `warmup` and `requests` requests.
    fn closed(warmup: u32, requests: u32) -> LoopSpec {
        LoopSpec { warmup, requests, rate: None, seed: 1, duration: None, phases: None, queue_limit: None }
    }

    #[test]
    fn nobody_counts_until_every_tenant_has_issued_its_warm_up() {
        let g = gate(2);
        let serve = |ms| {
            move || {
                std::thread::sleep(Duration::from_millis(ms));
                Ok(())
            }
        };
        let (fast, slow) = std::thread::scope(|sc| {
            let fast = sc.spawn(|| drive(&closed(2, 10), &g, serve(1)).unwrap());
            let slow = sc.spawn(|| drive(&closed(3, 3), &g, serve(20)).unwrap());
            (fast.join().unwrap(), slow.join().unwrap())
        });
        assert_eq!((fast.len(), slow.len()), (10, 3));
        // The slow tenant's three warm-up requests take 60 ms; the fast one issued its two in
        // 2 ms and went on uncounted until then.
        let slow_warm = slow[0].start;
        assert!(slow_warm >= 0.06, "{slow_warm}");
        assert!(fast[0].start >= slow_warm - 0.021, "{} before the slow tenant was warm ({slow_warm})", fast[0].start);
        // Each counted as many as it should, the fast one beside the slow one's counted requests.
        assert!(fast.iter().all(|s| s.start < slow[2].end), "{fast:?}");
    }

    #[test]
    fn a_request_that_fails_before_the_others_are_warm_is_counted() {
        let g = gate(2);
        let (faulty, slow) = std::thread::scope(|sc| {
            // Its third request (past its warm-up of two) faults, long before the slow tenant
            // is warm; it issues nothing after.
            let faulty = sc.spawn(|| {
                let mut n = 0;
                drive(&closed(2, 5), &g, || {
                    n += 1;
                    match n {
                        3 => Err(RequestFailed { reason: "its kernel faulted".into(), last: true }.into()),
                        _ => Ok(()),
                    }
                })
                .unwrap()
            });
            let slow = sc.spawn(|| {
                drive(&closed(3, 2), &g, || {
                    std::thread::sleep(Duration::from_millis(20));
                    Ok(())
                })
                .unwrap()
            });
            (faulty.join().unwrap(), slow.join().unwrap())
        });
        assert_eq!(faulty.len(), 1, "{faulty:?}");
        assert!(faulty[0].failed);
        assert_eq!(slow.len(), 2);
    }

    /// The first `n` arrival times of an open loop of `spec` (no phases).
    fn arrivals(spec: &LoopSpec, n: usize) -> Vec<f64> {
        let mut rng = SplitMix::new(spec.seed);
        let mut t = 0.0;
        (0..n)
            .map(|_| {
                t += rng.exponential(spec.rate.unwrap());
                t
            })
            .collect()
    }

    #[test]
    fn an_interrupted_open_loop_goes_on_with_the_same_arrivals_in_a_new_process() {
        let spec = LoopSpec {
            warmup: 5,
            requests: 60,
            rate: Some(2000.0),
            seed: 7,
            duration: None,
            phases: None,
            queue_limit: None,
        };
        let g = gate(1);
        let calls = AtomicU32::new(0);
        // The 20th request finds the context lost: it is put back, not counted.
        let (first, at) =
            drive_from(&spec, &g, None, &Position::default(), || match calls.fetch_add(1, Ordering::SeqCst) {
                19 => Err(Interrupted.into()),
                _ => Ok(()),
            })
            .unwrap();
        assert_eq!((first.len(), at.issued, at.drawn, at.done), (14, 19, 20, false));
        assert_eq!(at.waiting.len(), 1, "the interrupted request waits for the next process");
        std::thread::sleep(Duration::from_millis(20));
        let (rest, end) = drive_from(&spec, &again(&g), None, &at, || Ok(())).unwrap();
        assert!(end.done && end.issued == 65, "{end:?}");
        // Together: every arrival after the warm-up once, in order, as due as without the loss.
        let dues: Vec<f64> = first.iter().chain(&rest).map(|s| s.due).collect();
        assert_eq!(dues, arrivals(&spec, 65)[5..].to_vec());
        // The one that waited through the outage was served late, not dropped.
        let late = &rest[0];
        assert!(late.start - late.due >= 0.015, "{late:?}");
    }

    #[test]
    fn an_interrupted_queue_limited_loop_counts_every_arrival_once() {
        let spec = LoopSpec {
            warmup: 0,
            requests: 120,
            rate: Some(4000.0),
            seed: 3,
            duration: None,
            phases: None,
            queue_limit: Some(3),
        };
        let g = gate(1);
        let calls = AtomicU32::new(0);
        // Overloaded (1 ms requests, 0.25 ms apart): arrivals are shed; the 15th issue is lost.
        let slow = || {
            std::thread::sleep(Duration::from_millis(1));
            match calls.fetch_add(1, Ordering::SeqCst) {
                14 => Err(Interrupted.into()),
                _ => Ok(()),
            }
        };
        let (first, at) = drive_from(&spec, &g, None, &Position::default(), slow).unwrap();
        assert!(first.iter().any(|s| s.shed), "overloaded");
        let (rest, end) = drive_from(&spec, &again(&g), None, &at, || {
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        })
        .unwrap();
        assert!(end.done && first.len() + rest.len() == 120);
        let all = arrivals(&spec, end.drawn as usize);
        let mut dues: Vec<f64> = first.iter().chain(&rest).map(|s| s.due).collect();
        dues.sort_by(f64::total_cmp);
        dues.dedup();
        assert_eq!(dues.len(), 120, "no arrival counted twice");
        assert!(dues.iter().all(|d| all.contains(d)), "only the loop's own arrivals");
    }

    #[test]
    fn an_interruption_stops_a_closed_loop_that_waits_and_its_successor_counts_nothing_more() {
        let spec =
            LoopSpec { warmup: 0, requests: 3, rate: None, seed: 1, duration: None, phases: None, queue_limit: None };
        // Two tenants; this one is done (3 counted) and waits for the other (warm, counting)
        // when the loss comes.
        let g = gate(2);
        g.warm();
        let (samples, at) = std::thread::scope(|s| {
            let t = s.spawn(|| drive_from(&spec, &g, None, &Position::default(), || Ok(())));
            std::thread::sleep(Duration::from_millis(30));
            g.interrupted.store(true, Ordering::SeqCst);
            t.join().unwrap().unwrap()
        });
        assert_eq!(samples.len(), 3);
        assert!(at.done && at.issued >= 3);
        // In the next process it counts nothing and stops once the other has finished.
        let g2 = again(&g);
        g2.finished();
        let (more, _) = drive_from(&spec, &g2, None, &at, || Ok(())).unwrap();
        assert!(more.is_empty());
    }

    #[test]
    fn closed_loop_counts_after_warmup_and_runs_on_until_all_finish() {
        let g = gate(2);
        let spec =
            LoopSpec { warmup: 3, requests: 5, rate: None, seed: 1, duration: None, phases: None, queue_limit: None };
        let (fast, slow) = (AtomicU32::new(0), AtomicU32::new(0));
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                drive(&spec, &g, || {
                    fast.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_micros(200));
                    Ok(())
                })
            });
            let b = s.spawn(|| {
                drive(&spec, &g, || {
                    slow.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(3));
                    Ok(())
                })
            });
            (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
        });
        assert_eq!((a.len(), b.len()), (5, 5));
        // The fast tenant kept issuing (uncounted) requests while the slow one counted.
        assert!(fast.load(Ordering::SeqCst) > 8, "{}", fast.load(Ordering::SeqCst));
        assert_eq!(slow.load(Ordering::SeqCst), 8);
        for s in a.iter().chain(&b) {
            assert!(s.due <= s.start && s.start < s.end);
        }
        assert!(b.iter().all(|s| s.latency() >= 0.003));
    }

    #[test]
    fn open_loop_follows_the_arrival_rate() {
        let g = gate(1);
        let spec = LoopSpec {
            warmup: 0,
            requests: 200,
            rate: Some(2000.0),
            seed: 7,
            duration: None,
            phases: None,
            queue_limit: None,
        };
        let samples = drive(&spec, &g, || Ok(())).unwrap();
        assert_eq!(samples.len(), 200);
        let span = samples.last().unwrap().due;
        // 200 arrivals at 2000/s: about 0.1 s (±30% for a Poisson count this small).
        assert!((0.07..0.13).contains(&span), "{span}");
        assert!(samples.windows(2).all(|w| w[0].due <= w[1].due));
    }

    #[test]
    fn an_overloaded_open_loop_sheds_what_its_queue_cannot_hold() {
        // 1 ms requests at 3000 arrivals/s: three times what it can serve.
        let spec = LoopSpec {
            warmup: 20,
            requests: 600,
            rate: Some(3000.0),
            seed: 5,
            duration: None,
            phases: None,
            queue_limit: Some(4),
        };
        // The longest a request took to serve: a loaded machine oversleeps.
        let longest = std::cell::Cell::new(0.0f64);
        let served = |limit| {
            let g = gate(1);
            drive(&LoopSpec { queue_limit: limit, ..spec }, &g, || {
                let t = std::time::Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                longest.set(longest.get().max(t.elapsed().as_secs_f64()));
                Ok(())
            })
            .unwrap()
        };
        let bounded = served(Some(4));
        assert_eq!(bounded.len(), 600, "shed requests are counted too");
        let shed = bounded.iter().filter(|s| s.shed).count();
        // About two in three shed; every admitted request waited for at most the 4 ahead of it
        // (each served in at most the longest time measured, and a millisecond to spare).
        assert!((300..500).contains(&shed), "{shed}");
        let worst = bounded.iter().filter(|s| !s.shed).map(Sample::latency).fold(0.0, f64::max);
        let bound = 5.0 * longest.get() + 0.001;
        assert!(worst < bound, "{worst} s, above {bound} s");
        assert!(bounded.iter().filter(|s| s.shed).all(|s| s.start == s.due && s.end == s.due));
        assert!(bounded.windows(2).all(|w| w[0].due <= w[1].due || w[1].shed || w[0].shed));
        // Unbounded, the same load's latency grows with every request.
        let unbounded = served(None);
        assert!(unbounded.iter().all(|s| !s.shed));
        let last = unbounded.last().unwrap().latency();
        assert!(last > 0.1, "{last}");
    }

    #[test]
    fn a_failing_request_ends_the_loop_and_releases_the_others() {
        let g = gate(1);
        let spec =
            LoopSpec { warmup: 0, requests: 10, rate: None, seed: 1, duration: None, phases: None, queue_limit: None };
        let mut n = 0;
        let e = drive(&spec, &g, || {
            n += 1;
            if n == 3 {
                anyhow::bail!("device lost")
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "device lost");
        assert!(g.stopped());
    }

    #[test]
    fn a_failed_request_is_counted_and_the_loop_goes_on() {
        let g = gate(1);
        let spec =
            LoopSpec { warmup: 1, requests: 6, rate: None, seed: 1, duration: None, phases: None, queue_limit: None };
        let mut n = 0;
        let samples = drive(&spec, &g, || {
            n += 1;
            if n % 3 == 0 {
                return Err(RequestFailed { reason: "too long".into(), last: false }.into());
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(samples.len(), 6);
        assert_eq!(samples.iter().map(|s| s.failed).collect::<Vec<_>>(), [false, true, false, false, true, false]);
        assert!(samples.iter().all(|s| !s.shed));
    }

    #[test]
    fn a_closed_loop_stops_issuing_after_its_last_request() {
        let g = gate(1);
        let spec =
            LoopSpec { warmup: 0, requests: 10, rate: None, seed: 1, duration: None, phases: None, queue_limit: None };
        let mut n = 0;
        let samples = drive(&spec, &g, || {
            n += 1;
            match n {
                4 => Err(RequestFailed { reason: "its kernel faulted".into(), last: true }.into()),
                _ => Ok(()),
            }
        })
        .unwrap();
        assert_eq!((n, samples.len()), (4, 4));
        assert!(samples[3].failed && g.stopped());
    }

    #[test]
    fn duration_caps_the_count() {
        let g = gate(1);
        let spec = LoopSpec {
            warmup: 0,
            requests: 1_000_000,
            rate: None,
            seed: 1,
            duration: Some(Duration::from_millis(50)),
            phases: None,
            queue_limit: None,
        };
        let samples = drive(&spec, &g, || {
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        })
        .unwrap();
        assert!((10..=60).contains(&samples.len()), "{}", samples.len());
    }

    #[test]
    fn past_the_end_a_loop_issues_nothing_more_while_others_finish() {
        let g = gate(2);
        let spec = |ms| LoopSpec {
            warmup: 0,
            requests: 1_000_000,
            rate: None,
            seed: 1,
            duration: Some(Duration::from_millis(ms)),
            phases: None,
            queue_limit: None,
        };
        let (fast, slow) = std::thread::scope(|sc| {
            let fast = sc.spawn(|| {
                let mut issued = 0;
                drive(&spec(40), &g, || {
                    issued += 1;
                    std::thread::sleep(Duration::from_millis(2));
                    Ok(())
                })
                .unwrap();
                (issued, g.start.elapsed())
            });
            // Its one request outlasts the run by far.
            let slow = sc.spawn(|| {
                drive(&spec(40), &g, || {
                    std::thread::sleep(Duration::from_millis(300));
                    Ok(())
                })
                .unwrap()
            });
            (fast.join().unwrap(), slow.join().unwrap())
        });
        // The fast tenant stopped at the end (40 ms of 2-ms requests, some slack for a busy
        // host), not when the slow one's request ended; that one is late, so uncounted.
        let (issued, stopped) = fast;
        assert!((5..=30).contains(&issued), "{issued} requests");
        assert!(stopped < Duration::from_millis(200), "{stopped:?}");
        assert!(slow.is_empty() && g.stopped());
    }

    #[test]
    fn exponential_has_the_right_mean() {
        let mut r = SplitMix::new(3);
        let mean: f64 = (0..100_000).map(|_| r.exponential(4.0)).sum::<f64>() / 1e5;
        assert!((mean - 0.25).abs() < 0.005, "{mean}");
    }

    #[test]
    fn phases_alternate_busy_and_idle() {
        let p = Phases { busy_s: 0.2, idle_s: 0.3, offset_s: 0.1 };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(p.next_busy(0.0), 0.1), "idle before the offset");
        assert!(close(p.next_busy(0.15), 0.15));
        assert!(close(p.next_busy(0.35), 0.6), "idle phase: the next busy one");
        assert!(close(p.at_busy_time(0.0), 0.1));
        assert!(close(p.at_busy_time(0.25), 0.65), "0.2 s in the first phase, 0.05 in the second");
        // Open-loop arrivals land in busy phases only.
        let g = gate(1);
        let spec = LoopSpec {
            warmup: 0,
            requests: 50,
            rate: Some(1000.0),
            seed: 3,
            duration: None,
            phases: Some(Phases { busy_s: 0.01, idle_s: 0.01, offset_s: 0.0 }),
            queue_limit: None,
        };
        let samples = drive(&spec, &g, || Ok(())).unwrap();
        assert!(samples.iter().all(|s| s.due % 0.02 < 0.01 + 1e-9), "{samples:?}");
    }
}

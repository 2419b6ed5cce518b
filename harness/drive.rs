//! One tenant's request loop, the same in every mode: wait for the common start, issue
//! requests (closed loop, or open loop with Poisson arrivals), time each on the host, and
//! keep going — uncounted — until every tenant has finished counting, so each tenant's counted
//! requests all ran among the same co-runners.

use std::time::{Duration, Instant};

use super::metrics::Sample;
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
}

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
}

/// How the tenants of a run meet: a common start, and a common end once all have counted.
pub trait Gate {
    /// Waits until every tenant is ready and returns the common start (`Err` if the run was
    /// called off: another tenant failed to get ready).
    fn start(&self) -> anyhow::Result<Instant>;
    /// Says this tenant has finished counting (or failed); called once.
    fn finished(&self);
    /// Whether every tenant has finished (the loop then stops).
    fn stopped(&self) -> bool;
    /// Counted requests so far (for progress bars).
    fn progress(&self, _counted: u32) {}
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

/// Runs one tenant's loop: `request` issues one request and returns once it has completed.
/// Returns the counted samples, in issue order.
pub fn drive(
    spec: &LoopSpec,
    gate: &dyn Gate,
    mut request: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Sample>> {
    let t0 = gate.start()?;
    let mut rng = SplitMix::new(spec.seed);
    let deadline = spec.duration.map(|d| t0 + d);
    let total = spec.warmup as usize + spec.requests as usize;
    let mut counted = Vec::with_capacity(spec.requests as usize);
    let mut next_due = 0.0f64;
    let mut finished = false;
    let mut issued = 0usize;
    let result = loop {
        if finished && gate.stopped() {
            break Ok(());
        }
        let due = match spec.rate {
            Some(rate) => {
                next_due += rng.exponential(rate);
                let at = t0 + Duration::from_secs_f64(next_due);
                // Sleep until the arrival, in slices, so a stop is noticed.
                loop {
                    let now = Instant::now();
                    if now >= at || (finished && gate.stopped()) {
                        break;
                    }
                    std::thread::sleep((at - now).min(Duration::from_millis(5)));
                }
                if finished && gate.stopped() {
                    break Ok(());
                }
                next_due
            }
            None => t0.elapsed().as_secs_f64(),
        };
        let start = t0.elapsed().as_secs_f64();
        if let Err(e) = request() {
            break Err(e);
        }
        let end = t0.elapsed().as_secs_f64();
        let index = issued;
        issued += 1;
        if finished {
            continue;
        }
        let late = deadline.is_some_and(|d| Instant::now() > d);
        if index >= spec.warmup as usize && !late {
            counted.push(Sample { due, start, end });
            gate.progress(counted.len() as u32);
        }
        if issued >= total || late {
            finished = true;
            gate.finished();
        }
    };
    if !finished {
        gate.finished();
    }
    result.map(|()| counted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A gate for `n` tenants in threads of one test.
    struct Local {
        n: u32,
        done: AtomicU32,
        start: Instant,
    }

    impl Gate for Local {
        fn start(&self) -> anyhow::Result<Instant> {
            Ok(self.start)
        }
        fn finished(&self) {
            self.done.fetch_add(1, Ordering::SeqCst);
        }
        fn stopped(&self) -> bool {
            self.done.load(Ordering::SeqCst) >= self.n
        }
    }

    fn gate(n: u32) -> Local {
        Local { n, done: AtomicU32::new(0), start: Instant::now() }
    }

    #[test]
    fn closed_loop_counts_after_warmup_and_runs_on_until_all_finish() {
        let g = gate(2);
        let spec = LoopSpec { warmup: 3, requests: 5, rate: None, seed: 1, duration: None };
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
        let spec = LoopSpec { warmup: 0, requests: 200, rate: Some(2000.0), seed: 7, duration: None };
        let samples = drive(&spec, &g, || Ok(())).unwrap();
        assert_eq!(samples.len(), 200);
        let span = samples.last().unwrap().due;
        // 200 arrivals at 2000/s: about 0.1 s (±30% for a Poisson count this small).
        assert!((0.07..0.13).contains(&span), "{span}");
        assert!(samples.windows(2).all(|w| w[0].due <= w[1].due));
    }

    #[test]
    fn a_failing_request_ends_the_loop_and_releases_the_others() {
        let g = gate(1);
        let spec = LoopSpec { warmup: 0, requests: 10, rate: None, seed: 1, duration: None };
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
    fn duration_caps_the_count() {
        let g = gate(1);
        let spec =
            LoopSpec { warmup: 0, requests: 1_000_000, rate: None, seed: 1, duration: Some(Duration::from_millis(50)) };
        let samples = drive(&spec, &g, || {
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        })
        .unwrap();
        assert!((10..=60).contains(&samples.len()), "{}", samples.len());
    }

    #[test]
    fn exponential_has_the_right_mean() {
        let mut r = SplitMix::new(3);
        let mean: f64 = (0..100_000).map(|_| r.exponential(4.0)).sum::<f64>() / 1e5;
        assert!((mean - 0.25).abs() < 0.005, "{mean}");
    }
}

//! Tests of [`super`].

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
    fn since_start(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
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

/// An open loop at 2,000 requests a second (arrival seed 7).
fn open(warmup: u32, requests: u32) -> LoopSpec {
    LoopSpec { warmup, requests, rate: Some(2000.0), seed: 7, duration: None, phases: None, queue_limit: None }
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
    let spec = open(5, 60);
    let g = gate(1);
    let calls = AtomicU32::new(0);
    // The 20th request finds the context lost: it is put back, not counted.
    let (first, at) = drive_from(
        &spec,
        &g,
        None,
        &Position::default(),
        || match calls.fetch_add(1, Ordering::SeqCst) {
            19 => Err(Interrupted.into()),
            _ => Ok(()),
        },
        |_| {},
    )
    .unwrap();
    assert_eq!((first.len(), at.issued, at.drawn, at.done), (14, 19, 20, false));
    assert_eq!(at.waiting.len(), 1, "the interrupted request waits for the next process");
    std::thread::sleep(Duration::from_millis(20));
    let (rest, end) = drive_from(&spec, &again(&g), None, &at, || Ok(()), |_| {}).unwrap();
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
    let (first, at) = drive_from(&spec, &g, None, &Position::default(), slow, |_| {}).unwrap();
    assert!(first.iter().any(|s| s.shed), "overloaded");
    let (rest, end) = drive_from(
        &spec,
        &again(&g),
        None,
        &at,
        || {
            std::thread::sleep(Duration::from_millis(1));
            Ok(())
        },
        |_| {},
    )
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
        let t = s.spawn(|| drive_from(&spec, &g, None, &Position::default(), || Ok(()), |_| {}));
        std::thread::sleep(Duration::from_millis(30));
        g.interrupted.store(true, Ordering::SeqCst);
        t.join().unwrap().unwrap()
    });
    assert_eq!(samples.len(), 3);
    assert!(at.done && at.issued >= 3);
    // In the next process it counts nothing and stops once the other has finished.
    let g2 = again(&g);
    g2.finished();
    let (more, _) = drive_from(&spec, &g2, None, &at, || Ok(()), |_| {}).unwrap();
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

#[test]
fn every_served_request_reports_its_latency_as_it_completes_warm_up_included() {
    // An open loop: 5 warm-up requests, then 20 counted; every 4th request fails.
    let spec = open(5, 20);
    let g = gate(1);
    let calls = AtomicU32::new(0);
    let mut seen = Vec::new();
    let (samples, _) = drive_from(
        &spec,
        &g,
        None,
        &Position::default(),
        || match calls.fetch_add(1, Ordering::SeqCst) % 4 {
            3 => Err(RequestFailed { reason: "failed".into(), last: false }.into()),
            _ => {
                std::thread::sleep(Duration::from_micros(200));
                Ok(())
            }
        },
        |latency| seen.push(latency),
    )
    .unwrap();
    let issued = calls.load(Ordering::SeqCst) as usize;
    assert_eq!(seen.len(), issued - issued / 4, "one report per served request, none for a failed one");
    assert!(seen.iter().all(|&l| l >= 200e-6), "from due to end, the request's own time included: {seen:?}");
    let counted: Vec<f64> = samples.iter().filter(|s| s.is_served()).map(Sample::latency).collect();
    assert!(counted.iter().all(|l| seen.contains(l)), "the counted samples' latencies were reported");
}

#[test]
fn a_request_is_behind_when_it_queued_or_the_next_has_arrived_when_it_starts() {
    // 2,000 arrivals a second, 2 ms a request: a queue forms, nearly every request is behind,
    // and drawing the next arrival early changes no arrival.
    let spec = open(2, 30);
    let (mut yes, mut no) = (0, 0);
    let slow = || {
        std::thread::sleep(Duration::from_millis(2));
        Ok(())
    };
    let (samples, _) = drive_with(
        &spec,
        &gate(1),
        None,
        &Position::default(),
        slow,
        |_| {},
        Some(|b: bool| if b { yes += 1 } else { no += 1 }),
    )
    .unwrap();
    assert!(yes >= 25 && no <= 2, "behind {yes}, not {no}");
    // The counted samples say so too (the two warm-up requests told but not counted).
    let marked = samples.iter().filter(|s| s.behind).count();
    assert!(marked + 2 >= yes && marked <= yes, "{marked} samples marked, {yes} told");
    let dues: Vec<f64> = samples.iter().map(|s| s.due).collect();
    assert_eq!(dues, arrivals(&spec, 32)[2..].to_vec());
    // 20 a second, requests at once: none queues, and the next has not arrived.
    let spec = LoopSpec { rate: Some(20.0), ..open(1, 6) };
    let (mut yes, mut no) = (0, 0);
    drive_with(
        &spec,
        &gate(1),
        None,
        &Position::default(),
        || Ok(()),
        |_| {},
        Some(|b: bool| if b { yes += 1 } else { no += 1 }),
    )
    .unwrap();
    // Behind only where two arrivals fall within a few milliseconds (a loaded host's wake-up),
    // the eighth, drawn early, included: a close pair may mark both of its requests (the
    // first, the next having arrived; the second, queued).
    let close = arrivals(&spec, 8).windows(2).filter(|w| w[1] - w[0] < 0.01).count();
    // Asked before every request, the warm-up one included.
    assert!(yes <= 2 * close && yes + no == 7, "behind {yes}, not {no}, close arrivals {close}");
}

#[test]
fn an_interrupted_open_loop_that_reads_its_next_arrival_goes_on_with_the_same_arrivals() {
    // As the test above, with `drive_with` asked who is behind: it draws each next arrival a
    // request early, and the arrivals stay those of the seed, each served once.
    let spec = open(5, 60);
    let g = gate(1);
    let calls = AtomicU32::new(0);
    let request = || match calls.fetch_add(1, Ordering::SeqCst) {
        19 => Err(Interrupted.into()),
        _ => Ok(()),
    };
    let (first, at) = drive_with(&spec, &g, None, &Position::default(), request, |_| {}, Some(|_: bool| {})).unwrap();
    assert!(!at.done && !at.waiting.is_empty(), "{at:?}");
    std::thread::sleep(Duration::from_millis(20));
    let (rest, end) = drive_with(&spec, &again(&g), None, &at, || Ok(()), |_| {}, Some(|_: bool| {})).unwrap();
    assert!(end.done && end.issued == 65, "{end:?}");
    let dues: Vec<f64> = first.iter().chain(&rest).map(|s| s.due).collect();
    assert_eq!(dues, arrivals(&spec, 65)[5..].to_vec());
}

//! One-process runs in a child process (`rightsize host`), restarted after a kernel fault.
//!
//! A kernel that faults loses the CUDA context of its process, and this driver then refuses
//! every CUDA call of that process — a new context included — so a one-process run cannot
//! recover where it runs. Hosted, the run lives in a child process: when the context is lost
//! the child stops every tenant where it stands ([`super::inproc::run`]) and reports it; the
//! harness starts a new child that reloads the surviving tenants' models and goes on from
//! there, on the same clock, with the tenant whose kernel faulted failing its later requests.
//! The outage — from the loss until every surviving tenant served a request again — is in the
//! outcome ([`Outcome::outages_s`]), and every request is counted: served, shed or failed.
//!
//! The harness speaks to the child in lines: it writes the spec (JSON); the child loads, says
//! `ready` and waits for `go <s>` (the common start lies `s` seconds back); it reports
//! `progress` as it counts and ends with its outcome (`hosted`), or an `error`.

use std::io::BufRead as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::child::{emit, Hosted, Message, Worker, READY_TIMEOUT, RUN_TIMEOUT};
use super::drive::{run_in_parts, Outcome, Part, TenantState};
use super::inproc::{self, Knees, RunOptions};
use super::scenario::{Mode, Scenario};
use crate::runtime::Device;

/// What a host child runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostSpec {
    /// The scenario.
    pub scenario: Scenario,
    /// Its one-process mode.
    pub mode: Mode,
    /// What the profiles say.
    pub knees: Knees,
    /// Go on from an interrupted run.
    pub resume: Option<Vec<TenantState>>,
}

/// `rightsize host`: reads its spec from the first line of stdin and runs it, speaking JSON
/// lines on stdout; errors are reported as a message.
pub fn host_main() -> anyhow::Result<()> {
    let r = (|| -> anyhow::Result<()> {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let spec: HostSpec = serde_json::from_str(&line).context("bad host spec")?;
        let device = Device::open(0).context("cannot open the GPU")?;
        let counted = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let progress = {
            let (counted, done) = (counted.clone(), done.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                while !done.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                    let now = counted.load(Ordering::Relaxed);
                    if now != last {
                        last = now;
                        emit(&Message::Progress { counted: u32::try_from(now).unwrap_or(u32::MAX) });
                    }
                }
            })
        };
        let open = || -> anyhow::Result<Duration> {
            emit(&Message::Ready);
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            match line.trim().strip_prefix("go ").map(str::parse::<f64>) {
                Some(Ok(s)) if s.is_finite() && s >= 0.0 => Ok(Duration::from_secs_f64(s)),
                _ => bail!("the harness called the run off"),
            }
        };
        let opts = RunOptions { counted, resume: spec.resume.as_deref(), open: Some(&open), ..RunOptions::default() };
        let out = inproc::run(device, &spec.scenario, spec.mode, spec.knees, opts);
        done.store(true, Ordering::SeqCst);
        let _ = progress.join();
        let out = out?;
        let hosted = Hosted {
            samples: out.samples,
            failures: out.failures,
            duties: out.duties,
            interrupted: out.interrupted,
            resumed_s: out.resumed_s,
        };
        emit(&Message::Hosted { outcome: hosted });
        Ok(())
    })();
    if let Err(e) = &r {
        emit(&Message::Error { message: format!("{e:#}") });
    }
    r
}

/// Runs `s` under the one-process mode `mode` in a child process (the program `exe`, usually
/// [`super::worker::worker_exe`]), and in a new one after each kernel fault that lost the
/// context; `counted` counts the requests as they complete.
pub fn run(
    exe: &std::path::Path,
    s: &Scenario,
    mode: Mode,
    knees: Knees,
    counted: Arc<AtomicU64>,
) -> anyhow::Result<Outcome> {
    let n = s.tenants.len();
    let mut out = Outcome { samples: vec![Vec::new(); n], failures: vec![None; n], ..Outcome::default() };
    run_in_parts(n, &mut out, |resume, out| {
        let spec = HostSpec { scenario: s.clone(), mode, knees: knees.clone(), resume: resume.map(<[_]>::to_vec) };
        let hosted = one(exe, &spec, &mut out.started, &counted)?;
        out.duties = hosted.duties;
        Ok(Part {
            samples: hosted.samples,
            failures: hosted.failures,
            interrupted: hosted.interrupted,
            resumed_s: hosted.resumed_s,
        })
    })?;
    Ok(out)
}

/// One host child: starts it, sends `spec`, starts its tenants at `started` (the first
/// child's start, set when it is the first) and waits for its outcome.
fn one(
    exe: &std::path::Path,
    spec: &HostSpec,
    started: &mut Option<Instant>,
    counted: &AtomicU64,
) -> anyhow::Result<Hosted> {
    let (tx, rx) = mpsc::channel();
    let mut child = Worker::spawn(exe, &["host".into()], &[], 0, &tx)?;
    drop(tx);
    child.say(&serde_json::to_string(spec)?);
    let fail = |child: &Worker, why: String| -> anyhow::Error {
        match child.stderr_tail() {
            tail if tail.is_empty() => anyhow::anyhow!("one-process run: {why}"),
            tail => anyhow::anyhow!("one-process run: {why} (stderr: {tail})"),
        }
    };
    let begun = Instant::now();
    let mut going = false;
    let mut last = 0u32;
    let mut result = None;
    loop {
        let limit = if going { RUN_TIMEOUT } else { READY_TIMEOUT.saturating_sub(begun.elapsed()) };
        let msg = match rx.recv_timeout(limit) {
            Ok((_, m)) => m,
            Err(_) => return Err(fail(&child, format!("no answer in {limit:?}"))),
        };
        match msg {
            Some(Message::Ready) => {
                let now = Instant::now();
                let back = started.get_or_insert(now).elapsed().as_secs_f64();
                child.say(&format!("go {back}"));
                going = true;
            }
            Some(Message::Progress { counted: c }) => {
                counted.fetch_add(u64::from(c.saturating_sub(last)), Ordering::Relaxed);
                last = c;
            }
            Some(Message::Hosted { outcome }) => result = Some(outcome),
            Some(Message::Error { message }) => return Err(fail(&child, message)),
            Some(other) => return Err(fail(&child, format!("unexpected {other:?}"))),
            None => break,
        }
    }
    let status = child.child.wait().map(|s| s.to_string()).unwrap_or_default();
    result.ok_or_else(|| fail(&child, format!("exited ({status}) without its outcome")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::drive::{Interruption, Position};
    use crate::harness::fault::Faults;
    use crate::harness::metrics::Sample;
    use crate::harness::worker::tests::{pair, script};

    fn state(issued: u64, stopped: bool) -> TenantState {
        let faults = match stopped {
            true => {
                r#"{"spec":null,"issued":3,"stopped":"its kernel faulted","first_failure":"an injected kernel fault"}"#
            }
            false => r#"{"spec":null,"issued":0,"stopped":null,"first_failure":null}"#,
        };
        TenantState {
            position: Position { issued, ..Position::default() },
            faults: serde_json::from_str::<Faults>(faults).unwrap(),
        }
    }

    fn sample(end: f64, failed: bool) -> Sample {
        Sample { failed, ..Sample::served(0.0, 0.0, end) }
    }

    /// A stand-in host: answers a fresh spec with `first`, a resumed one with `second`
    /// (checking that the start it is given lies in the past).
    fn host(first: &Hosted, second: &Hosted) -> std::path::PathBuf {
        let line = |h: &Hosted| serde_json::to_string(&Message::Hosted { outcome: h.clone() }).unwrap();
        script(&format!(
            r#"read spec
echo '{{"event":"ready"}}'
read go
case "$go" in "go "*) ;; *) exit 3;; esac
case "$spec" in
  *'"resume":null'*) echo '{}' ;;
  *'"resume":[{{'*) [ "$go" != "go 0" ] || exit 4; echo '{}' ;;
  *) exit 5 ;;
esac"#,
            line(first),
            line(second)
        ))
    }

    #[test]
    fn a_run_whose_context_was_lost_goes_on_in_a_new_process_and_its_outage_is_timed() {
        // Tenant 1's kernel faulted 0.5 s into the run; the second process had both serving
        // again at 1.7 s.
        let lost = Hosted {
            samples: vec![vec![sample(0.1, false)], vec![sample(0.2, false), sample(0.5, true)]],
            failures: vec![None, Some("an injected kernel fault".into())],
            duties: vec![None, None],
            interrupted: Some(Interruption { at_s: 0.5, tenants: vec![state(4, false), state(3, true)] }),
            resumed_s: None,
        };
        let back = Hosted {
            samples: vec![vec![sample(1.7, false)], vec![sample(1.8, true)]],
            failures: vec![None, None],
            duties: vec![Some(0.5), None],
            interrupted: None,
            resumed_s: Some(1.7),
        };
        let counted = Arc::new(AtomicU64::new(0));
        let mode: Mode = "streams".parse().unwrap();
        let out = run(&host(&lost, &back), &pair(), mode, Knees::default(), counted).unwrap();
        assert_eq!(out.samples.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 3], "every request of both");
        assert_eq!(out.failures[1].as_deref(), Some("an injected kernel fault"));
        assert_eq!(out.outages_s.len(), 1);
        assert!((out.outages_s[0] - 1.2).abs() < 1e-9, "{:?}", out.outages_s);
        assert_eq!(out.duties, vec![Some(0.5), None]);
    }

    #[test]
    fn a_loss_no_fault_explains_ends_the_run() {
        let lost = Hosted {
            samples: vec![vec![], vec![]],
            failures: vec![None, None],
            interrupted: Some(Interruption { at_s: 0.5, tenants: vec![state(4, false), state(3, false)] }),
            ..Hosted::default()
        };
        let mode: Mode = "streams".parse().unwrap();
        let e = run(&host(&lost, &lost), &pair(), mode, Knees::default(), Arc::default()).unwrap_err();
        assert!(e.to_string().contains("no tenant's kernel fault explains it"), "{e:#}");
    }

    #[test]
    fn a_host_that_dies_is_reported_with_its_stderr() {
        let exe = script("read spec; echo 'cannot open the GPU' >&2; exit 1");
        let mode: Mode = "krisp".parse().unwrap();
        let e = run(&exe, &pair(), mode, Knees::default(), Arc::default()).unwrap_err().to_string();
        assert!(e.contains("without its outcome") && e.contains("cannot open the GPU"), "{e}");
    }

    #[test]
    fn a_spec_survives_its_trip_through_json() {
        let mut knees = Knees::default();
        knees.min_sms.insert(crate::kernels::KernelId::LayerNorm, 42, 16);
        let spec = HostSpec {
            scenario: pair(),
            mode: "krisp-plan".parse().unwrap(),
            knees,
            resume: Some(vec![state(9, true)]),
        };
        let back: HostSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back.knees.min_sms.get(crate::kernels::KernelId::LayerNorm, 42), Some(16));
        assert_eq!((back.scenario, back.mode), (spec.scenario, spec.mode));
        assert!(back.resume.unwrap()[0].faults.stopped());
    }
}

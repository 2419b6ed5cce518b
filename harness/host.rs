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
//! The child speaks the workers' protocol ([`super::child`]), supervised as they are
//! (harness/supervisor.rs): the harness writes the spec (JSON); the child loads, says `ready`
//! and waits for `go` (or `go <s>`: the common start lies `s` seconds back); it reports
//! `progress` as it counts, then, when its context was lost, `lost`, and ends with a `result`
//! for each tenant, or an `error`.

use std::io::BufRead as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::child::{emit, go_start, Message};
use super::drive::{run_in_parts, Outcome, TenantState};
use super::inproc::{self, Knees, RunOptions};
use super::scenario::{Mode, Scenario};
use super::supervisor::{supervise, ChildSpec, PassOf};
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
        // Progress counts from where an interrupted run left it, as a worker's does.
        let before: u64 = spec.resume.iter().flatten().map(|t| t.position.counted).sum();
        let counted = Arc::new(AtomicU64::new(before));
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
            match go_start(&line) {
                Some(t0) => Ok(t0.elapsed()),
                None => bail!("the harness called the run off"),
            }
        };
        let opts = RunOptions { counted, resume: spec.resume.as_deref(), open: Some(&open), ..RunOptions::default() };
        let out = inproc::run(device, &spec.scenario, spec.mode, spec.knees, opts);
        done.store(true, Ordering::SeqCst);
        let _ = progress.join();
        let out = out?;
        let mut states = match out.interrupted {
            Some(stop) => {
                emit(&Message::Lost { at_s: stop.at_s });
                stop.tenants.into_iter().map(Some).collect()
            }
            None => Vec::new(),
        };
        states.resize(out.samples.len(), None);
        let duties = out.duties.into_iter().chain(std::iter::repeat(None));
        // When each tenant served again, in a process that goes on from an interrupted one.
        let resumed = out.first_served.into_iter().map(|t| t.filter(|_| spec.resume.is_some()));
        let tenants = out.samples.into_iter().zip(out.failures).zip(duties).zip(states).zip(resumed);
        for (tenant, ((((samples, failure), duty), state), resumed_s)) in tenants.enumerate() {
            emit(&Message::Result { tenant, samples, trace: None, failure, state, resumed_s, duty });
        }
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
        // Every tenant in one process: the most hardware queues, unless the user chose or the
        // host would be an MPS client (an MPS daemon serves this process's pipe directory).
        let several = !crate::runtime::queues::mps_daemon_serves_this_process();
        let queues = crate::runtime::queues::for_child(crate::runtime::queues::user().as_deref(), several);
        let host = ChildSpec {
            program: exe.to_path_buf(),
            args: vec!["host".into()],
            env: vec![(crate::runtime::queues::VAR.into(), queues.to_string_lossy().into_owned())],
            first_line: Some(serde_json::to_string(&spec)?),
            tenants: (0..n).collect(),
            name: "one-process run".into(),
        };
        let of = PassOf { tenants: n, resume, mps: None, counted: &counted };
        supervise(&[host], &of, &mut out.started)?.into_part(out)
    })?;
    Ok(out)
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

    /// What a stand-in host's run gave.
    #[derive(Default)]
    struct Gave {
        samples: Vec<Vec<Sample>>,
        failures: Vec<Option<String>>,
        duties: Vec<Option<f64>>,
        interrupted: Option<Interruption>,
        resumed_s: Option<f64>,
    }

    /// The lines a host says at the end of a run that gave `g`: `lost` if its context was, and
    /// each tenant's result.
    fn said(g: &Gave) -> String {
        let mut lines = Vec::new();
        if let Some(stop) = &g.interrupted {
            lines.push(Message::Lost { at_s: stop.at_s });
        }
        for (i, samples) in g.samples.iter().enumerate() {
            lines.push(Message::Result {
                tenant: i,
                samples: samples.clone(),
                trace: None,
                failure: g.failures[i].clone(),
                state: g.interrupted.as_ref().map(|x| x.tenants[i].clone()),
                resumed_s: g.resumed_s,
                duty: g.duties.get(i).copied().flatten(),
            });
        }
        lines.iter().map(|m| format!("echo '{}'\n", serde_json::to_string(m).unwrap())).collect()
    }

    /// A stand-in host: answers a fresh spec with `first`, a resumed one with `second`
    /// (checking that the start it is given lies in the past).
    fn host(first: &Gave, second: &Gave) -> std::path::PathBuf {
        script(&format!(
            r#"read spec
echo '{{"event":"ready"}}'
read go
case "$go" in go|"go "*) ;; *) exit 3;; esac
case "$spec" in
  *'"resume":null'*) {}
    ;;
  *'"resume":[{{'*) [ "$go" != "go 0" ] || exit 4
    {}
    ;;
  *) exit 5 ;;
esac"#,
            said(first),
            said(second)
        ))
    }

    #[test]
    fn a_run_whose_context_was_lost_goes_on_in_a_new_process_and_its_outage_is_timed() {
        // Tenant 1's kernel faulted 0.5 s into the run; the second process had both serving
        // again at 1.7 s.
        let lost = Gave {
            samples: vec![vec![sample(0.1, false)], vec![sample(0.2, false), sample(0.5, true)]],
            failures: vec![None, Some("an injected kernel fault".into())],
            duties: vec![None, None],
            interrupted: Some(Interruption { at_s: 0.5, tenants: vec![state(4, false), state(3, true)] }),
            resumed_s: None,
        };
        let back = Gave {
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
        let lost = Gave {
            samples: vec![vec![], vec![]],
            failures: vec![None, None],
            interrupted: Some(Interruption { at_s: 0.5, tenants: vec![state(4, false), state(3, false)] }),
            ..Gave::default()
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
        assert!(e.contains("without its results") && e.contains("cannot open the GPU"), "{e}");
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

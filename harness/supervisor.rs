//! The one supervisor of child processes: a pass of a run in children that speak the protocol
//! of [`super::child`], whether a worker per tenant (the multi-process modes, [`super::worker`])
//! or one host of every tenant (a one-process run that a kernel fault can end,
//! [`super::host`]). It starts the children, checks each worker's MPS attachment where asked,
//! starts them together (`go`, or `go <s>` for a pass that goes on from an interrupted one),
//! counts their progress, tells them when every one is warm and when every one has finished,
//! passes a lost context on to all (`interrupt`) and gathers each tenant's result.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::Context as _;

use super::child::{ChildProcess, Message, READY_TIMEOUT, RUN_TIMEOUT};
use super::drive::{Interruption, Outcome, Part, TenantState};
use super::metrics::Sample;
use super::trace::TenantTrace;

/// A child process of a pass: what to start, and which of the scenario's tenants it runs.
#[derive(Debug, Clone)]
pub(super) struct ChildSpec {
    /// Its program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its extra environment.
    pub env: Vec<(String, String)>,
    /// The first line it is told (a host's spec), if any.
    pub first_line: Option<String>,
    /// The scenario's tenants it runs, in the order its results name them (`tenant`).
    pub tenants: Vec<usize>,
    /// What errors call it ("worker 0 (gpt2)", "one-process run").
    pub name: String,
}

/// How a pass checks that a child that opened the GPU is attached to MPS as its mode needs:
/// called with the child's (first) tenant and what it said (`None`: it opened the GPU without
/// saying).
pub(super) type MpsCheck<'a> = &'a dyn Fn(usize, Option<bool>) -> anyhow::Result<()>;

/// What a pass is given besides its children.
pub(super) struct PassOf<'a> {
    /// Tenants in the scenario.
    pub tenants: usize,
    /// Where each tenant stood, for a pass that goes on from an interrupted one.
    pub resume: Option<&'a [TenantState]>,
    /// The MPS check of workers (a host's one process is never a client: `None`).
    pub mps: Option<MpsCheck<'a>>,
    /// Counts the requests as the children count them.
    pub counted: &'a AtomicU64,
}

/// What a child reported of one of its tenants in a pass.
#[derive(Debug, Default)]
pub(super) struct TenantReport {
    samples: Vec<Sample>,
    trace: Option<TenantTrace>,
    failure: Option<String>,
    state: Option<TenantState>,
    resumed_s: Option<f64>,
    duty: Option<f64>,
}

/// What a pass's children gave.
#[derive(Debug)]
pub(super) struct Pass {
    results: Vec<TenantReport>,
    /// When a child first saw the GPU context lost, seconds after the start.
    lost_s: Option<f64>,
    /// Every tenant's state, when the pass was interrupted.
    states: Option<Vec<TenantState>>,
    /// A pass that went on from an interrupted one: when every tenant that still serves had
    /// served a request again, seconds after the start.
    resumed_s: Option<f64>,
}

impl Pass {
    /// The pass as [`super::drive::run_in_parts`] merges it; the traces and duties it holds go
    /// straight into `out` (the last pass's duties are the run's; only a host reports any).
    pub(super) fn into_part(self, out: &mut Outcome) -> anyhow::Result<Part> {
        let interrupted = match self.lost_s {
            Some(at_s) => Some(Interruption {
                at_s,
                tenants: self.states.context("a child stopped without its tenants' positions")?,
            }),
            None => None,
        };
        let mut part = Part { interrupted, resumed_s: self.resumed_s, ..Part::default() };
        out.duties = self.results.iter().map(|r| r.duty).collect();
        for (i, r) in self.results.into_iter().enumerate() {
            part.samples.push(r.samples);
            part.failures.push(r.failure);
            if let (Some(t), Some(mine)) = (r.trace, out.traces.get_mut(i)) {
                *mine = t;
            }
        }
        Ok(part)
    }
}

/// When a pass that went on from `before` was back: when every tenant that still serves had
/// served a request again (`None` if one did not). A tenant whose kernel faulted, in an earlier
/// pass or in this one, serves no more.
fn return_time(before: &[TenantState], results: &[TenantReport]) -> Option<f64> {
    let stopped_now = |r: &TenantReport| r.state.as_ref().is_some_and(|s| s.faults.stopped());
    let serving = before.iter().zip(results).filter(|(b, r)| !b.faults.stopped() && !stopped_now(r));
    serving.map(|(_, r)| r.resumed_s).try_fold(0.0f64, |m, t| t.map(|t| m.max(t)))
}

/// Runs one pass of `children` (every tenant of `of` in exactly one of them), on the clock of
/// `started_at` (the first pass's start, set by it), and gathers each tenant's result. Every
/// child has exited when it returns: the MPS server serves new clients only once every client
/// a fault reached is gone.
pub(super) fn supervise(
    children: &[ChildSpec],
    of: &PassOf<'_>,
    started_at: &mut Option<Instant>,
) -> anyhow::Result<Pass> {
    let n = of.tenants;
    let (tx, rx) = mpsc::channel::<(usize, Option<Message>)>();
    let mut running = Vec::with_capacity(children.len());
    for (c, child) in children.iter().enumerate() {
        let mut w = ChildProcess::spawn(&child.program, &child.args, &child.env, &child.name, c, &tx)?;
        if let Some(line) = &child.first_line {
            w.say(line);
        }
        running.push(w);
    }
    drop(tx);
    let fail = |running: &[ChildProcess], c: usize, why: String| -> anyhow::Error {
        match running[c].stderr_tail() {
            tail if tail.is_empty() => anyhow::anyhow!("{}: {why}", children[c].name),
            tail => anyhow::anyhow!("{}: {why} (stderr: {tail})", children[c].name),
        }
    };
    let stopped_before = |i: usize| of.resume.is_some_and(|r| r[i].faults.stopped());
    // A child opens the GPU unless every tenant it runs faulted in an earlier pass (it loads
    // nothing then).
    let opens = |c: usize| !children[c].tenants.iter().all(|&i| stopped_before(i));
    let m = children.len();
    let (mut opened, mut ready, mut finished) = (vec![false; m], vec![false; m], vec![false; m]);
    // A child that finished is warm too (one that never says `warm` counts from its own
    // warm-up's end).
    let mut warm = vec![false; m];
    let mut all_warm = false;
    let mut results: Vec<Option<TenantReport>> = (0..n).map(|_| None).collect();
    let has_results =
        |results: &[Option<TenantReport>], c: usize| children[c].tenants.iter().all(|&i| results[i].is_some());
    // Progress counts from where an interrupted pass left it.
    let mut last: Vec<u32> = children
        .iter()
        .map(|child| {
            let from = |i: usize| of.resume.map_or(0, |r| r[i].position.counted);
            u32::try_from(child.tenants.iter().map(|&i| from(i)).sum::<u64>()).unwrap_or(u32::MAX)
        })
        .collect();
    let mut going: Option<Instant> = None;
    let mut lost_s: Option<f64> = None;
    let mut stopped = false;
    let begun = Instant::now();
    while results.iter().any(Option::is_none) {
        let limit = match going {
            None => READY_TIMEOUT.saturating_sub(begun.elapsed()),
            Some(t) => RUN_TIMEOUT.saturating_sub(t.elapsed()),
        };
        let (c, msg) = match rx.recv_timeout(limit) {
            Ok(x) => x,
            Err(_) => {
                // Named, with its stderr: the first child the pass still waits for.
                let (waiting, limit) = match going {
                    None => ("to get ready", READY_TIMEOUT),
                    Some(_) => ("to finish", RUN_TIMEOUT),
                };
                let late = (0..m).find(|&c| if going.is_none() { !ready[c] } else { !has_results(&results, c) });
                let why = format!("took too long {waiting} ({limit:?})");
                return Err(match late {
                    Some(c) => fail(&running, c, why),
                    None => anyhow::anyhow!("child processes {why}"),
                });
            }
        };
        match msg {
            Some(Message::Opened { mps }) => {
                if let Some(check) = of.mps {
                    check(children[c].tenants[0], Some(mps))?;
                }
                opened[c] = true;
            }
            Some(Message::Ready) => {
                if let (Some(check), true, false) = (of.mps, opens(c), opened[c]) {
                    check(children[c].tenants[0], None)?;
                }
                ready[c] = true;
            }
            Some(Message::Progress { counted: now }) => {
                of.counted.fetch_add(u64::from(now.saturating_sub(last[c])), Ordering::Relaxed);
                last[c] = now;
            }
            Some(Message::Warm) => warm[c] = true,
            Some(Message::Finished) => (warm[c], finished[c]) = (true, true),
            Some(Message::Lost { at_s }) => {
                if lost_s.is_none() {
                    for w in &mut running {
                        w.say("interrupt");
                    }
                }
                lost_s = Some(lost_s.map_or(at_s, |l| l.min(at_s)));
            }
            Some(Message::Result { tenant, samples, trace, failure, state, resumed_s, duty }) => {
                let Some(&i) = children[c].tenants.get(tenant) else {
                    return Err(fail(
                        &running,
                        c,
                        format!("sent the result of tenant {tenant}, which it does not run"),
                    ));
                };
                results[i] = Some(TenantReport { samples, trace, failure, state, resumed_s, duty });
            }
            Some(Message::Error { message }) => return Err(fail(&running, c, message)),
            // Its output ended after its results: it is exiting as it should.
            None if has_results(&results, c) => {}
            None => {
                let status = running[c].child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(fail(&running, c, format!("exited ({status}) without its results")));
            }
        }
        if going.is_none() && ready.iter().all(|&r| r) {
            going = Some(Instant::now());
            let back = started_at.get_or_insert_with(Instant::now).elapsed().as_secs_f64();
            for w in &mut running {
                w.say(&if of.resume.is_some() { format!("go {back}") } else { "go".to_string() });
            }
        }
        if going.is_some() && !all_warm && warm.iter().all(|&w| w) && !finished.iter().all(|&f| f) {
            all_warm = true;
            for w in &mut running {
                w.say("warm");
            }
        }
        if !stopped && finished.iter().all(|&f| f) {
            stopped = true;
            for w in &mut running {
                w.say("stop");
                w.stdin.take();
            }
        }
    }
    let results: Vec<TenantReport> = results.into_iter().map(Option::unwrap_or_default).collect();
    drop(running);
    let states = lost_s.and_then(|_| results.iter().map(|r| r.state.clone()).collect::<Option<Vec<_>>>());
    let resumed_s = of.resume.and_then(|before| return_time(before, &results));
    Ok(Pass { results, lost_s, states, resumed_s })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::fault::Faults;

    fn state(stopped: bool) -> TenantState {
        let stop = if stopped { r#""its kernel faulted""# } else { "null" };
        let faults = format!(r#"{{"spec":null,"issued":3,"stopped":{stop},"first_failure":null}}"#);
        TenantState { faults: serde_json::from_str::<Faults>(&faults).unwrap(), ..TenantState::default() }
    }

    fn report(resumed_s: Option<f64>, stopped_now: Option<bool>) -> TenantReport {
        TenantReport { resumed_s, state: stopped_now.map(state), ..TenantReport::default() }
    }

    #[test]
    fn a_pass_is_back_when_every_tenant_that_still_serves_has_served() {
        let before = [state(false), state(false), state(true)];
        // The third faulted in an earlier pass: it is left out, served again or not.
        let back = [report(Some(0.9), None), report(Some(1.4), None), report(None, None)];
        assert_eq!(return_time(&before, &back), Some(1.4));
        // One that still serves has not served again: the pass is not back.
        let waiting = [report(Some(0.9), None), report(None, None), report(None, None)];
        assert_eq!(return_time(&before, &waiting), None);
        // One whose own kernel faulted in this pass serves no more either.
        let faulted = [report(Some(0.9), Some(false)), report(None, Some(true)), report(None, Some(true))];
        assert_eq!(return_time(&before, &faulted), Some(0.9));
    }
}

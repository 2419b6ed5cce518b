//! The multi-process modes: a worker process per tenant (`rightsize worker`), talking to the
//! harness in JSON lines. The worker opens the GPU and says whether its driver shares its
//! contexts through MPS (`opened`; the harness fails the run unless that is what the mode
//! needs, [`super::mps::check_client`]), loads its model, says `ready`, waits for `go` on stdin,
//! runs its request loop, says `warm` once it has issued its warm-up and counts from when the
//! harness says `warm` (every worker is), says `finished` once it has counted its requests,
//! keeps going until `stop` (or end of input), then sends its samples and exits.
//!
//! Under MPS a kernel fault in one worker reaches every worker of the server (NVIDIA's error
//! containment: every client sees the fatal error, and the server serves new clients again
//! once all of them have exited). A worker that sees its context lost by another's fault says
//! `lost`; the harness then says `interrupt` to every worker, each stops where it stands and
//! sends its samples with its loop's position, and all exit. New workers go on from those
//! positions on the same clock (`go <s>`: the common start lies `s` seconds back), the one
//! whose kernel faulted loading nothing; the outage is from the loss until every surviving
//! tenant served again. Under time slicing no other worker sees the fault.

use std::io::BufRead as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::child::{emit, go_start, Message, PROTOCOL};
use super::drive::{drive_from, run_in_parts, Gate, Interrupted, Outcome, Position, TenantState};
use super::fault::{context_lost, RequestFailed};
use super::mps::check_client;
use super::scenario::{Engine, Mode, Scenario, Sharing, TenantSpec};
use super::serve::Served;
use super::session::{self, Session};
use super::supervisor::{supervise, ChildSpec, PassOf};
use super::trace::TenantTrace;
use crate::runtime::{Device, Placement, PoolSpec, Runtime, Tenant};

/// What a worker is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The harness's protocol ([`PROTOCOL`]; 0 from a harness older than the field).
    #[serde(default)]
    pub protocol: u32,
    /// Its tenant.
    pub tenant: TenantSpec,
    /// Replay requests from plans.
    pub plan: bool,
    /// Seed of its weights and ids.
    pub seed: u64,
    /// Its request loop.
    pub warmup: u32,
    /// Counted requests.
    pub requests: u32,
    /// Arrival seed.
    pub arrival_seed: u64,
    /// Counting stops after this many seconds.
    pub duration_s: Option<f64>,
    /// Trace its GPU work, keeping at most this many slices.
    #[serde(default)]
    pub trace_limit: Option<usize>,
    /// Its model's architecture (PyTorch tenants, which build the model from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<crate::engine::ModelConfig>,
    /// Go on from where an interrupted worker of the same tenant stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<TenantState>,
}

impl WorkerSpec {
    /// A spec from the harness's JSON, refused unless the harness speaks this worker's
    /// protocol.
    fn parse(json: &str) -> anyhow::Result<WorkerSpec> {
        let spec: WorkerSpec = serde_json::from_str(json).context("bad worker spec")?;
        if spec.protocol != PROTOCOL {
            bail!(
                "the harness speaks worker protocol {}, this worker {PROTOCOL}: build the rightsize binary and its \
                 Python package (`pip install .`) from the same sources",
                spec.protocol
            );
        }
        Ok(spec)
    }
}

/// The worker's side of the gate: stdin and stdout.
#[derive(Default)]
struct StdioGate {
    stop: Arc<AtomicBool>,
    /// The harness said every worker has issued its warm-up.
    all_warm: Arc<AtomicBool>,
    /// The harness said to stop where it stands (a worker's context was lost).
    interrupted: Arc<AtomicBool>,
    /// The common start, once `go` came.
    t0: std::sync::OnceLock<Instant>,
}

impl Gate for StdioGate {
    fn start(&self) -> anyhow::Result<Instant> {
        emit(&Message::Ready);
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let Some(t0) = go_start(&line) else {
            bail!("the harness called the run off");
        };
        let _ = self.t0.set(t0);
        let (stop, all_warm, interrupted) = (self.stop.clone(), self.all_warm.clone(), self.interrupted.clone());
        std::thread::spawn(move || {
            let mut line = String::new();
            // `warm`, `interrupt`; then `stop`, or end of input (the harness is gone): stop
            // either way.
            while matches!(std::io::stdin().lock().read_line(&mut line), Ok(n) if n > 0) && line.trim() != "stop" {
                match line.trim() {
                    "warm" => all_warm.store(true, Ordering::SeqCst),
                    "interrupt" => interrupted.store(true, Ordering::SeqCst),
                    _ => {}
                }
                line.clear();
            }
            all_warm.store(true, Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
        });
        Ok(t0)
    }
    fn finished(&self) {
        emit(&Message::Finished);
    }
    fn warm(&self) {
        emit(&Message::Warm);
    }
    fn all_warm(&self) -> bool {
        self.all_warm.load(Ordering::SeqCst)
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    fn progress(&self, counted: u32) {
        emit(&Message::Progress { counted });
    }
    fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
    fn since_start(&self) -> f64 {
        self.t0.get().map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}

/// Opens the GPU; a worker that goes on after a fault tries for a while, since the MPS server
/// serves new clients again only once every client the fault reached has exited.
fn open_device(resuming: bool) -> anyhow::Result<Device> {
    let until = Instant::now() + if resuming { Duration::from_secs(10) } else { Duration::ZERO };
    loop {
        match Device::open(0) {
            Ok(d) => return Ok(d),
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(anyhow::Error::from(e).context("cannot open the GPU")),
        }
    }
}

/// `rightsize worker`: runs one tenant as the harness asks; errors are reported as a message.
pub fn worker_main(spec_json: &str) -> anyhow::Result<()> {
    let r = (|| -> anyhow::Result<()> {
        let spec = WorkerSpec::parse(spec_json)?;
        let load = || -> anyhow::Result<(Tenant, Served)> {
            let device = open_device(spec.resume.is_some())?;
            let mps = device.mps_enabled().context("cannot read whether this worker is attached to MPS")?;
            emit(&Message::Opened { mps });
            let rt = Arc::new(Runtime::new(device, &PoolSpec::default())?);
            let t = Tenant::new(rt, 0, Placement::WHOLE)?;
            let mut served = Served::load(&t, &spec.tenant, spec.seed)?;
            if spec.plan {
                served.capture(&t, None)?;
            }
            Ok((t, served))
        };
        let mut session = Session::new(&spec.tenant, spec.resume.clone(), spec.trace_limit.is_some(), load)?;
        // From after the warm-up request (`Session::new` issued it): the trace leaves it out.
        if let (Some(limit), Some(t)) = (spec.trace_limit, session.tenant()) {
            t.runtime().start_timeline(limit)?;
        }
        let gate = StdioGate::default();
        let loop_spec =
            session::loop_spec(&spec.tenant, spec.warmup, spec.requests, spec.arrival_seed, spec.duration_s);
        let mut lost = false;
        let (samples, position) = session.drive(
            &loop_spec,
            &gate,
            None,
            |_| {},
            |e, faults| match e {
                // Its own kernel faulted: this process's context is lost and the tenant stops;
                // under time slicing the other processes never see it.
                e if faults.stopped() && e.downcast_ref::<RequestFailed>().is_none() => {
                    RequestFailed::from_error(&e, true).into()
                }
                // Another worker's kernel fault reached this one (MPS): stop where it stands.
                e if context_lost(&e) => {
                    lost = true;
                    emit(&Message::Lost { at_s: gate.since_start() });
                    Interrupted.into()
                }
                e => e,
            },
        )?;
        let interrupted = lost || gate.interrupted();
        // Its model outlives the result: the timeline is read from its runtime, and freeing
        // the model first would only delay the result.
        let held = session.unload();
        let ended = session.end(position);
        // After its context was lost, it holds no timeline to read.
        let trace = match held
            .as_ref()
            .and_then(|(t, _)| t.runtime().timeline())
            .filter(|_| !ended.state.faults.stopped() && !interrupted)
        {
            Some(tl) => {
                let (slices, dropped) = tl.take()?;
                Some(TenantTrace { slices, requests: ended.spans, dropped })
            }
            None => None,
        };
        let resumed_s = spec.resume.is_some().then_some(ended.first_served).flatten();
        let state = interrupted.then_some(ended.state);
        emit(&Message::Result { tenant: 0, samples, trace, failure: ended.failure, state, resumed_s, duty: None });
        Ok(())
    })();
    if let Err(e) = &r {
        emit(&Message::Error { message: format!("{e:#}") });
    }
    r
}

/// A PyTorch tenant's worker, once its Python side (`python/rightsize/torch_worker.py`, through
/// the package's native module) has opened the GPU, said `opened` and built and warmed up its
/// model: the loop of every worker, on this process's stdin and stdout, with `request` as one
/// request. Its samples go to the harness; an error is returned for the caller to report (a
/// request's error ends the loop, as a Python exception did).
pub fn serve_requests(spec_json: &str, request: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let spec = WorkerSpec::parse(spec_json)?;
    if spec.resume.is_some() {
        bail!("a PyTorch tenant does not go on from an interrupted worker (its scenario injects no fault)");
    }
    let gate = StdioGate::default();
    let loop_spec = session::loop_spec(&spec.tenant, spec.warmup, spec.requests, spec.arrival_seed, spec.duration_s);
    let (samples, _) = drive_from(&loop_spec, &gate, None, &Position::default(), request, |_| {})?;
    emit(&Message::Result { tenant: 0, samples, trace: None, failure: None, state: None, resumed_s: None, duty: None });
    Ok(())
}

/// The program a worker runs: `$RIGHTSIZE_WORKER_EXE`, else this executable.
pub fn worker_exe() -> anyhow::Result<std::path::PathBuf> {
    match std::env::var_os("RIGHTSIZE_WORKER_EXE") {
        Some(p) => Ok(p.into()),
        None => std::env::current_exe().context("cannot find the rightsize executable"),
    }
}

/// The Python program of a PyTorch tenant's worker (`python/rightsize/torch_worker.py`), run
/// as `python3 -c <program> <spec>`.
pub const TORCH_WORKER: &str = include_str!("../python/rightsize/torch_worker.py");

/// The Python that runs PyTorch tenants: `$RIGHTSIZE_PYTHON`, else `python3` on the path.
pub fn python() -> std::path::PathBuf {
    std::env::var_os("RIGHTSIZE_PYTHON").map_or_else(|| "python3".into(), Into::into)
}

/// The program and arguments of tenant `spec`'s worker: `exe worker --spec …`, or for a
/// PyTorch tenant the Python worker with its model's architecture in the spec.
fn worker_command(exe: &std::path::Path, mut spec: WorkerSpec) -> anyhow::Result<(std::path::PathBuf, Vec<String>)> {
    match spec.tenant.engine {
        Engine::Rightsize => {
            Ok((exe.to_path_buf(), vec!["worker".into(), "--spec".into(), serde_json::to_string(&spec)?]))
        }
        Engine::Torch => {
            spec.config = Some(crate::engine::ModelConfig::named(&spec.tenant.model)?);
            Ok((python(), vec!["-c".into(), TORCH_WORKER.into(), serde_json::to_string(&spec)?]))
        }
    }
}

/// Whether a run of `s` under `sharing` runs its worker processes under an MPS daemon: the MPS
/// modes, and PyTorch tenants placed by the interposer (their processes share the GPU through
/// MPS). Every worker of such a run must be attached to it, and no other worker may be.
pub fn under_mps(s: &Scenario, sharing: Sharing) -> bool {
    sharing.uses_mps() || super::torch::placed_by_interposer(s, sharing)
}

/// Runs `s` under `mode` with a worker process per tenant (the program `exe`, usually
/// [`worker_exe`]), tenant `i` with the extra environment `env[i]` (which puts it under the
/// MPS daemon where [`under_mps`] says so, else keeps it off any); returns each tenant's
/// counted samples and, with `trace` (the most GPU slices each keeps), their timelines. A
/// worker attached to MPS where it should not be, or not where it should, fails the run before
/// it loads its model ([`check_client`]). When a kernel fault in one worker loses the others'
/// contexts too (MPS), every worker stops where it stands and new workers go on from there
/// (the module's documentation); each outage is in the outcome.
pub fn run(
    exe: &std::path::Path,
    s: &Scenario,
    mode: Mode,
    env: &[Vec<(String, String)>],
    trace: Option<usize>,
    counted: Arc<AtomicU64>,
) -> anyhow::Result<Outcome> {
    let n = s.tenants.len();
    let mut out = Outcome {
        samples: vec![Vec::new(); n],
        traces: if trace.is_some() { vec![TenantTrace::default(); n] } else { Vec::new() },
        failures: vec![None; n],
        ..Outcome::default()
    };
    let attached = under_mps(s, mode.sharing);
    let check = |i: usize, observed: Option<bool>| {
        let tenant = format!("tenant {i} ({})", s.tenants[i].label());
        check_client(&tenant, mode, attached, observed).map_err(anyhow::Error::msg)
    };
    run_in_parts(n, &mut out, |resume, out| {
        let workers = s
            .tenants
            .iter()
            .enumerate()
            .map(|(i, tenant)| {
                let spec = WorkerSpec {
                    protocol: PROTOCOL,
                    tenant: tenant.clone(),
                    plan: mode.plan,
                    seed: s.seed + i as u64,
                    warmup: s.warmup,
                    requests: s.requests,
                    arrival_seed: s.arrival_seed(i),
                    duration_s: s.duration_s,
                    trace_limit: trace,
                    config: None,
                    resume: resume.map(|r| r[i].clone()),
                };
                let (program, args) = worker_command(exe, spec)?;
                let env = env.get(i).cloned().unwrap_or_default();
                let name = format!("worker {i} ({})", tenant.model);
                Ok(ChildSpec { program, args, env, first_line: None, tenants: vec![i], name })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let of = PassOf { tenants: n, resume, mps: Some(&check), counted: &counted };
        supervise(&workers, &of, &mut out.started)?.into_part(out)
    })?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::harness::scenario::ScenarioFile;

    /// A stand-in worker: a shell script speaking the protocol.
    pub(crate) fn script(body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = crate::harness::mps::private_dir("test-worker").unwrap();
        let path = dir.join("worker.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// The modes a pair of stand-in workers runs under: time slicing, or MPS.
    fn mode(name: &str) -> Mode {
        name.parse().unwrap()
    }

    pub(crate) fn pair() -> Scenario {
        let text = "[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\n[[scenario.tenant]]\nmodel = \"bert-base\"\n";
        ScenarioFile::parse(text, "t").unwrap().scenarios.remove(0)
    }

    #[test]
    fn workers_count_once_every_worker_has_issued_its_warm_up() {
        // Each says `warm`, then expects the harness's `warm` (sent once both have) before it
        // counts; the first takes a while to warm up.
        let exe = script(
            r#"echo '{"event":"opened","mps":false}'
echo '{"event":"ready"}'
read go; [ "$go" = go ] || exit 3
case "$3" in *'"model":"gpt2"'*) sleep 0.2;; esac
echo '{"event":"warm"}'
read warm; [ "$warm" = warm ] || exit 5
echo '{"event":"finished"}'
read stop; [ "$stop" = stop ] || exit 4
echo '{"event":"result","samples":[{"due":0.0,"start":0.001,"end":0.002}]}'"#,
        );
        let r = run(&exe, &pair(), mode("timeslice"), &[], None, Arc::default()).unwrap().samples;
        assert_eq!(r.len(), 2);
    }

    /// A stand-in pair under MPS: bert-base's kernel faults, gpt2 sees its context lost at
    /// 0.5 s; `explained` says whether bert-base's state says its kernel faulted. Every worker
    /// opens the GPU (attached to MPS) but the one that goes on for bert-base, which loads
    /// nothing.
    fn lost_pair(explained: bool) -> std::path::PathBuf {
        let stop = if explained { r#""its kernel faulted""# } else { "null" };
        script(&format!(
            r#"case "$3" in *'"model":"bert-base"'*'"resume"'*) ;;
  *) echo '{{"event":"opened","mps":true}}';; esac
echo '{{"event":"ready"}}'
read go
case "$3" in *'"resume"'*)
  case "$go" in "go "*) ;; *) exit 7;; esac
  echo '{{"event":"warm"}}'
  echo '{{"event":"finished"}}'
  while read line; do [ "$line" = stop ] && break; done
  case "$3" in *'"model":"gpt2"'*) R=0.9;; *) R=null;; esac
  echo '{{"event":"result","samples":[{{"due":1.0,"start":1.0,"end":1.001}}],"resumed_s":'$R'}}'
  exit 0;;
esac
[ "$go" = go ] || exit 3
echo '{{"event":"warm"}}'
read warm; [ "$warm" = warm ] || exit 5
case "$3" in *'"model":"gpt2"'*) echo '{{"event":"lost","at_s":0.5}}';; esac
read interrupt; [ "$interrupt" = interrupt ] || exit 6
case "$3" in *'"model":"bert-base"'*) S='{stop}';; *) S=null;; esac
echo '{{"event":"result","samples":[{{"due":0.0,"start":0.001,"end":0.002}}],"state":{{"position":{{"issued":5,"drawn":0,"waiting":[],"done":false}},"faults":{{"issued":5,"stopped":'$S'}}}}}}'"#
        ))
    }

    #[test]
    fn workers_whose_context_another_workers_fault_lost_go_on_in_new_workers() {
        let out = run(&lost_pair(true), &pair(), mode("mps"), &[], None, Arc::default()).unwrap();
        // Each tenant's samples from both passes; the outage from the loss (0.5 s) until
        // gpt2, the one that still serves, served again (0.9 s).
        assert!(out.samples.iter().all(|s| s.len() == 2), "{:?}", out.samples);
        assert_eq!(out.outages_s.len(), 1);
        assert!((out.outages_s[0] - 0.4).abs() < 1e-9, "{:?}", out.outages_s);
    }

    #[test]
    fn a_lost_context_no_fault_explains_ends_the_run() {
        let e = run(&lost_pair(false), &pair(), mode("mps"), &[], None, Arc::default()).unwrap_err().to_string();
        assert!(e.contains("no tenant's kernel fault explains it"), "{e}");
    }

    /// A stand-in worker that opens the GPU saying `opened` (a line, or nothing), then runs.
    fn opens_saying(opened: &str) -> std::path::PathBuf {
        script(&format!(
            r#"{opened}
echo '{{"event":"ready"}}'
read go; [ "$go" = go ] || exit 3
echo '{{"event":"finished"}}'
read stop
echo '{{"event":"result","samples":[{{"due":0.0,"start":0.001,"end":0.002}}]}}'"#
        ))
    }

    #[test]
    fn workers_attached_to_mps_exactly_where_their_mode_needs_it_run() {
        let attached = opens_saying(r#"echo '{"event":"opened","mps":true}'"#);
        let alone = opens_saying(r#"echo '{"event":"opened","mps":false}'"#);
        for (exe, mode) in [(&attached, mode("mps")), (&attached, mode("mps-limit-plan")), (&alone, mode("timeslice"))]
        {
            let r = run(exe, &pair(), mode, &[], None, Arc::default());
            assert_eq!(r.unwrap_or_else(|e| panic!("{mode}: {e:#}")).samples.len(), 2, "{mode}");
        }
        // PyTorch tenants placed by the interposer run under MPS too.
        let mut torch = pair();
        torch.tenants.iter_mut().for_each(|t| t.engine = Engine::Torch);
        assert!(under_mps(&torch, Sharing::Krisp) && !under_mps(&pair(), Sharing::Krisp));
        assert!(under_mps(&pair(), Sharing::Mps) && !under_mps(&torch, Sharing::Timeslice));
    }

    #[test]
    fn a_worker_that_fell_back_from_mps_fails_the_run_with_the_reason() {
        // Its client could not reach the daemon and runs time-sliced: the run fails (not
        // skipped: no `Unavailable`), naming the tenant, the mode, and what it saw.
        let exe = opens_saying(r#"echo '{"event":"opened","mps":false}'"#);
        let e = run(&exe, &pair(), mode("mps"), &[], None, Arc::default()).unwrap_err();
        assert!(e.downcast_ref::<crate::harness::mps::Unavailable>().is_none(), "a failure, not a skip");
        let e = e.to_string();
        assert!(e.contains("tenant 0 (gpt2)") || e.contains("tenant 1 (bert-base)"), "{e}");
        assert!(e.contains("under mps") && e.contains("not attached") && e.contains("MPS_ENABLED = 0"), "{e}");
    }

    #[test]
    fn a_time_sliced_worker_attached_to_some_mps_daemon_fails_the_run() {
        let exe = opens_saying(r#"echo '{"event":"opened","mps":true}'"#);
        let e = run(&exe, &pair(), mode("timeslice"), &[], None, Arc::default()).unwrap_err().to_string();
        assert!(e.contains("under timeslice is attached to an MPS daemon"), "{e}");
    }

    #[test]
    fn a_worker_that_does_not_say_whether_it_is_attached_to_mps_fails_the_run() {
        let exe = opens_saying("");
        let e = run(&exe, &pair(), mode("mps"), &[], None, Arc::default()).unwrap_err().to_string();
        assert!(e.contains("did not say whether it is attached") && e.contains("expected: attached"), "{e}");
    }

    #[test]
    fn go_gives_the_common_start() {
        let now = Instant::now();
        assert!(go_start("go\n").is_some_and(|t| t >= now));
        let back = go_start("go 2.5\n").unwrap();
        assert!((now.duration_since(back).as_secs_f64() - 2.5).abs() < 0.1);
        assert!(go_start("stop").is_none() && go_start("go -1").is_none() && go_start("go x").is_none());
    }

    #[test]
    fn workers_start_together_and_stop_together() {
        // Each worker checks the arguments and environment it was given, waits for go, reports
        // progress, waits for stop, and sends one sample tagged with its tenant's batch.
        let exe = script(
            r#"case "$3" in *'"model":"gpt2"'*|*'"model":"bert-base"'*) ;; *) exit 9;; esac
[ "$RS_TEST" = yes ] || exit 8
echo '{"event":"opened","mps":false}'
echo '{"event":"ready"}'
read go; [ "$go" = go ] || exit 3
echo '{"event":"progress","counted":1}'
echo 'a stray line'
echo '{"event":"finished"}'
read stop; [ "$stop" = stop ] || exit 4
echo '{"event":"result","samples":[{"due":0.0,"start":0.001,"end":0.002}]}'"#,
        );
        let env = vec![vec![("RS_TEST".to_string(), "yes".to_string())]; 2];
        let counted = Arc::new(AtomicU64::new(0));
        let r = run(&exe, &pair(), mode("timeslice"), &env, None, counted.clone()).unwrap().samples;
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|s| s.len() == 1 && s[0].end == 0.002));
        assert_eq!(counted.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_pytorch_tenant_runs_the_python_worker_with_its_models_architecture() {
        let mut s = pair();
        s.tenants[0].engine = Engine::Torch;
        let spec = |tenant: &TenantSpec| WorkerSpec {
            protocol: PROTOCOL,
            tenant: tenant.clone(),
            plan: false,
            seed: 1,
            warmup: 1,
            requests: 2,
            arrival_seed: 3,
            duration_s: None,
            trace_limit: None,
            config: None,
            resume: None,
        };
        let exe = std::path::Path::new("/opt/rightsize");
        let (program, args) = worker_command(exe, spec(&s.tenants[0])).unwrap();
        assert_eq!(program, python());
        assert_eq!((args[0].as_str(), args[1].as_str()), ("-c", TORCH_WORKER));
        let sent: WorkerSpec = serde_json::from_str(&args[2]).unwrap();
        let config = sent.config.expect("the architecture");
        assert_eq!((config.family, config.hidden, config.layers), (crate::engine::Family::Gpt2, 768, 12));
        let (program, args) = worker_command(exe, spec(&s.tenants[1])).unwrap();
        assert_eq!((program.as_path(), args[0].as_str()), (exe, "worker"));
        assert!(!args[2].contains("\"config\""));
    }

    #[test]
    fn a_worker_error_names_the_tenant_and_the_reason() {
        let exe = script(r#"echo '{"event":"error","message":"cannot open the GPU: no device"}'; exit 1"#);
        let e = run(&exe, &pair(), mode("timeslice"), &[], None, Arc::default()).unwrap_err().to_string();
        assert!(e.contains("worker 0 (gpt2)") || e.contains("worker 1 (bert-base)"), "{e}");
        assert!(e.contains("cannot open the GPU"), "{e}");
    }

    #[test]
    fn a_worker_that_dies_is_reported_with_its_stderr() {
        let exe = script("echo 'segmentation fault' >&2; sleep 0.2; exit 139");
        let e = run(&exe, &pair(), mode("timeslice"), &[], None, Arc::default()).unwrap_err().to_string();
        assert!(e.contains("without its results") && e.contains("segmentation fault"), "{e}");
    }
}

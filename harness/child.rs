//! The child-process protocol shared by the multi-process modes' workers ([`super::worker`])
//! and the one-process modes run in a child ([`super::host`]): the JSON lines a child says
//! ([`Message`], [`emit`]), the `go` line that starts it ([`go_start`]), a spawned child as the
//! harness holds it ([`ChildProcess`]: its stdin, its messages on a channel, its stderr kept for
//! errors), the children running now ([`kill_all`], for the Ctrl-C handler and the MPS
//! daemon's clean-up) and how long a child may take. harness/supervisor.rs is the harness's
//! side of it.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::drive::TenantState;
use super::metrics::Sample;
use super::trace::TenantTrace;

/// A line from a child (a worker or a host).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
// A child says a handful of these in a run; boxing the result's fields would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Message {
    /// Opened the GPU (before loading its model).
    Opened {
        /// Whether its driver shares its contexts through MPS
        /// (`CU_DEVICE_ATTRIBUTE_MPS_ENABLED`): whether it is attached to an MPS daemon.
        mps: bool,
    },
    /// Loaded and warmed up; waiting for `go`.
    Ready,
    /// Issued its warm-up; counts once the harness says every worker has.
    Warm,
    /// Counted requests so far.
    Progress {
        /// How many.
        counted: u32,
    },
    /// Done counting; still issuing requests until `stop`.
    Finished,
    /// Its GPU context was lost by another worker's kernel fault (MPS); it stops where it
    /// stands.
    Lost {
        /// When it saw the loss, seconds after the common start.
        at_s: f64,
    },
    /// One tenant's counted samples (a worker's one tenant, or each of a host's).
    Result {
        /// Which of the child's tenants (0 for a worker's).
        #[serde(default)]
        tenant: usize,
        /// Samples, in issue order.
        samples: Vec<Sample>,
        /// Its trace, when asked for one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace: Option<TenantTrace>,
        /// Why its first failed request failed, if one did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<String>,
        /// Where its loop stopped and its fault's state, when the run was interrupted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<TenantState>,
        /// A child that went on from an interrupted one: when this tenant first served a
        /// request, seconds after the common start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resumed_s: Option<f64>,
        /// Its duty at the end (a host's tenants, which krisp reads; none for a worker's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duty: Option<f64>,
    },
    /// It failed.
    Error {
        /// Why.
        message: String,
    },
}

/// The version of this protocol. The harness puts it in a worker's spec, and a worker built
/// apart from the harness (a PyTorch tenant's loop, in the Python package) refuses a spec of
/// another version rather than speak another protocol.
pub const PROTOCOL: u32 = 2;

/// Says `m` on stdout, one JSON line (a child's side of the protocol).
pub(super) fn emit(m: &Message) {
    let mut out = std::io::stdout().lock();
    // A closed stdout means the harness is gone; the loop ends at the next `stopped`.
    let _ = serde_json::to_writer(&mut out, m);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// The common start a `go` line gives: now, or `go <s>`, `s` seconds back; `None` for anything
/// else (the run was called off).
pub(super) fn go_start(line: &str) -> Option<Instant> {
    match line.trim().strip_prefix("go") {
        Some("") => Some(Instant::now()),
        Some(back) => {
            let s = back.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0)?;
            Instant::now().checked_sub(Duration::from_secs_f64(s))
        }
        None => None,
    }
}

/// Process ids of the children running now (for the Ctrl-C handler).
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every child still running.
pub fn kill_all() {
    for pid in CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
        // No signal API in std: ask `kill`, which every POSIX host has.
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
}

/// A child process (a worker or a host); killed on drop if still running.
pub(super) struct ChildProcess {
    pub(super) child: Child,
    pub(super) stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
    /// Set when its stderr has ended (it exited, or closed it).
    stderr_ended: Arc<AtomicBool>,
}

impl ChildProcess {
    /// Starts `exe args…` with the extra environment `env`; each line it prints that is a
    /// [`Message`] is sent to `tx` tagged `i` (anything else is passed on to stderr, after
    /// `name`), then `(i, None)` when its output ends; its stderr is kept for errors.
    pub(super) fn spawn(
        exe: &std::path::Path,
        args: &[String],
        env: &[(String, String)],
        name: &str,
        i: usize,
        tx: &mpsc::Sender<(usize, Option<Message>)>,
    ) -> anyhow::Result<ChildProcess> {
        let start = || {
            // What it needs of the hardware queues, whatever this process took (a one-process
            // host is told otherwise in `env`).
            crate::runtime::queues::for_single_tenant_child(&mut Command::new(exe))
                .args(args)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        };
        // A program just written may still be open for writing in a child another thread
        // forked meanwhile (ETXTBSY) until that child execs: try again briefly.
        let mut started = start();
        for _ in 0..50 {
            match &started {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(Duration::from_millis(10));
                    started = start();
                }
                _ => break,
            }
        }
        let mut child = started.with_context(|| format!("cannot start {}", exe.display()))?;
        CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).push(child.id());
        let stdout = child.stdout.take().context("child stdout")?;
        let stderr_pipe = child.stderr.take().context("child stderr")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, name) = (tx.clone(), name.to_string());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Message>(&line) {
                    Ok(m) => {
                        let _ = tx.send((i, Some(m)));
                    }
                    // Anything else a child prints is passed on.
                    Err(_) => eprintln!("{name}: {line}"),
                }
            }
            let _ = tx.send((i, None));
        });
        let sink = stderr.clone();
        let stderr_ended = Arc::new(AtomicBool::new(false));
        let ended = stderr_ended.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
                if s.len() > 16 << 10 {
                    let cut = s.len() - (8 << 10);
                    *s = s[s.char_indices().map(|(i, _)| i).find(|&i| i >= cut).unwrap_or(0)..].to_string();
                }
            }
            ended.store(true, Ordering::SeqCst);
        });
        let stdin = child.stdin.take();
        Ok(ChildProcess { child, stdin, stderr, stderr_ended })
    }

    pub(super) fn say(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{line}");
            let _ = s.flush();
        }
    }

    /// The last lines it wrote to stderr. Called when it failed: its stdout may end before
    /// its stderr has been read, so this waits briefly for stderr to end too.
    pub(super) fn stderr_tail(&self) -> String {
        let until = Instant::now() + Duration::from_millis(500);
        while !self.stderr_ended.load(Ordering::SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let s = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        let lines: Vec<&str> = s.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stdin.take();
        if matches!(self.child.try_wait(), Ok(None)) {
            // Give it a moment to exit on its own (end of input means stop).
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let pid = self.child.id();
        CHILDREN.lock().unwrap_or_else(|p| p.into_inner()).retain(|&p| p != pid);
    }
}

/// Longest a child may take to load its models and warm up.
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest a run may take once started.
pub(super) const RUN_TIMEOUT: Duration = Duration::from_secs(1800);

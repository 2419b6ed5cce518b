//! An MPS control daemon of the harness's own: private pipe and log directories (so it never
//! meets another daemon or its clients), stopped on drop, on error and on Ctrl-C; and the check
//! that a worker process is attached to MPS exactly when its run needs it ([`check_client`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::scenario::Mode;
use crate::runtime::mps_control_path;

/// Control programs and pipe directories of the daemons running now, for the Ctrl-C handler.
static RUNNING: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());

/// Why no MPS daemon could be started here (its modes are then skipped, with this reason).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// A running MPS control daemon; quits on drop.
#[derive(Debug)]
pub struct MpsDaemon {
    control: PathBuf,
    dir: PathBuf,
    stopped: bool,
}

/// A fresh private directory under the system's temporary directory.
pub fn private_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rightsize-{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Sends `command` to the control daemon whose pipes are in `pipe` and returns its answer.
fn control(control: &Path, pipe: &Path, command: &str, timeout: Duration) -> anyhow::Result<String> {
    let mut child = crate::runtime::queues::for_single_tenant_child(&mut Command::new(control))
        .env("CUDA_MPS_PIPE_DIRECTORY", pipe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", control.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = writeln!(stdin, "{command}");
    }
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let out = child.wait_with_output()?;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !status.success() {
                bail!("{command:?}: {status}: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            return Ok(text);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{command:?} got no answer within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl MpsDaemon {
    /// Starts a daemon, or says why it cannot run here (an [`Unavailable`] error).
    pub fn start() -> anyhow::Result<MpsDaemon> {
        let control_bin = mps_control_path().context("nvidia-cuda-mps-control is not on PATH")?;
        Self::start_with(&control_bin)
    }

    /// Starts a daemon with the control program `control_bin`, after stopping any daemon a
    /// run killed before it could stop it left behind ([`reap_leftovers`]).
    pub fn start_with(control_bin: &Path) -> anyhow::Result<MpsDaemon> {
        for dir in reap_leftovers(control_bin, &std::env::temp_dir()) {
            eprintln!("rightsize: stopped the MPS daemon a killed run left in {}", dir.display());
        }
        let control_bin = control_bin.to_path_buf();
        let dir = private_dir("mps")?;
        let (pipe, log) = (dir.join("pipe"), dir.join("log"));
        std::fs::create_dir_all(&pipe)?;
        std::fs::create_dir_all(&log)?;
        // The daemon and its server keep the user's queues (or the driver's), not this
        // process's: MPS clients of 32 queues each ran the server out of memory.
        let status = crate::runtime::queues::for_single_tenant_child(&mut Command::new(&control_bin))
            .arg("-d")
            .env("CUDA_MPS_PIPE_DIRECTORY", &pipe)
            .env("CUDA_MPS_LOG_DIRECTORY", &log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cannot run {}", control_bin.display()))?;
        if !status.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            let why = String::from_utf8_lossy(&status.stderr).trim().to_string();
            return Err(Unavailable(format!("the MPS daemon did not start: {why}")).into());
        }
        RUNNING.lock().unwrap_or_else(|p| p.into_inner()).push((control_bin.clone(), pipe.clone()));
        let daemon = MpsDaemon { control: control_bin, dir, stopped: false };
        // It answers once it is up.
        let started = Instant::now();
        loop {
            match control(&daemon.control, &pipe, "get_server_list", Duration::from_secs(5)) {
                Ok(_) => break,
                Err(e) if started.elapsed() > Duration::from_secs(10) => {
                    return Err(Unavailable(format!("the MPS daemon started but does not answer: {e:#}")).into());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        Ok(daemon)
    }

    /// Its pipe directory (clients find it through `CUDA_MPS_PIPE_DIRECTORY`).
    pub fn pipe_dir(&self) -> PathBuf {
        self.dir.join("pipe")
    }

    /// Its log directory.
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// The environment its clients need.
    pub fn client_env(&self) -> Vec<(String, String)> {
        vec![
            ("CUDA_MPS_PIPE_DIRECTORY".into(), self.pipe_dir().display().to_string()),
            ("CUDA_MPS_LOG_DIRECTORY".into(), self.log_dir().display().to_string()),
        ]
    }

    /// Quits the daemon (and its server) and removes its directories.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.quit()
    }

    fn quit(&mut self) -> anyhow::Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let pipe = self.pipe_dir();
        let r = quit_daemon(&self.control, &pipe);
        RUNNING.lock().unwrap_or_else(|p| p.into_inner()).retain(|(_, p)| p != &pipe);
        let _ = std::fs::remove_dir_all(&self.dir);
        r
    }
}

/// Whether a worker process's tie to MPS is what its run needs: `Ok`, or the reason to fail
/// the run with. `tenant` names it in the message; `attached` is whether `mode` runs its
/// workers as clients of the harness's daemon; `observed` is what the worker's driver said
/// (`CU_DEVICE_ATTRIBUTE_MPS_ENABLED`), `None` if it said nothing. A client that cannot reach
/// its daemon runs without MPS and says nothing, so without this a broken daemon would measure
/// time slicing under the name of MPS.
pub fn check_client(tenant: &str, mode: Mode, attached: bool, observed: Option<bool>) -> Result<(), String> {
    match (attached, observed) {
        (true, Some(true)) | (false, Some(false)) => Ok(()),
        (true, Some(false)) => Err(format!(
            "{tenant} under {mode} is not attached to the harness's MPS daemon: expected its contexts shared \
             through MPS, but its driver says they are not (CU_DEVICE_ATTRIBUTE_MPS_ENABLED = 0), so the run \
             would measure time slicing, not {mode}. A client that cannot reach its daemon runs without MPS \
             silently: check that CUDA_MPS_PIPE_DIRECTORY reaches the worker unchanged, that the worker runs \
             as the user who started the daemon, and the daemon's control.log and server.log \
             (CUDA_MPS_LOG_DIRECTORY)"
        )),
        (false, Some(true)) => Err(format!(
            "{tenant} under {mode} is attached to an MPS daemon: expected a context of its own without MPS, \
             but its driver says its contexts are shared through MPS (CU_DEVICE_ATTRIBUTE_MPS_ENABLED = 1), \
             so the run would measure MPS, not {mode}. The harness points CUDA_MPS_PIPE_DIRECTORY at an empty \
             directory: check what overrides it in the worker's environment, and whether a system-wide MPS \
             daemon serves this GPU (`echo get_server_list | nvidia-cuda-mps-control`)"
        )),
        (_, None) => Err(format!(
            "{tenant} under {mode} did not say whether it is attached to an MPS daemon (expected: {}), so the \
             run cannot tell MPS from time slicing: its worker program may predate this check; rebuild \
             rightsize (or the program $RIGHTSIZE_WORKER_EXE names)",
            if attached { "attached" } else { "not attached" }
        )),
    }
}

/// Tells the daemon at `pipe` to quit and waits until it has.
fn quit_daemon(control_bin: &Path, pipe: &Path) -> anyhow::Result<()> {
    control(control_bin, pipe, "quit", Duration::from_secs(10))?;
    // The daemon removes its pid file as it exits.
    let started = Instant::now();
    while pipe.join("nvidia-cuda-mps-control.pid").exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

impl Drop for MpsDaemon {
    fn drop(&mut self) {
        if let Err(e) = self.quit() {
            eprintln!("rightsize: stopping the MPS daemon: {e:#}");
        }
    }
}

/// Stops the daemons that runs of rightsize killed before they could stop them (SIGKILL, a
/// crash) left behind in `tmp`, and removes their directories; returns those directories.
/// Only its own private directories (`rightsize-mps-<pid>-<n>`) whose process is gone are
/// touched: a daemon another user or another live run started is never addressed, since only
/// pipes in those directories are written to.
pub fn reap_leftovers(control_bin: &Path, tmp: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(tmp) else { return Vec::new() };
    let mut reaped = Vec::new();
    for dir in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        let Some(pid) = dir.file_name().and_then(|n| n.to_str()).and_then(owner_pid) else { continue };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue; // its run is still going
        }
        let pipe = dir.join("pipe");
        if pipe.join("nvidia-cuda-mps-control.pid").exists() {
            if let Err(e) = quit_daemon(control_bin, &pipe) {
                eprintln!("rightsize: stopping a leftover MPS daemon in {}: {e:#}", dir.display());
                continue;
            }
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            reaped.push(dir);
        }
    }
    reaped
}

/// The process id in a daemon directory's name `rightsize-mps-<pid>-<n>`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("rightsize-mps-")?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Quits every daemon still running (the Ctrl-C path).
pub fn stop_all() {
    let running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|p| p.into_inner()));
    for (control_bin, pipe) in running {
        if let Err(e) = quit_daemon(&control_bin, &pipe) {
            eprintln!("rightsize: stopping the MPS daemon at {}: {e:#}", pipe.display());
        }
        if let Some(dir) = pipe.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Stops every daemon and exits when the user presses Ctrl-C (installed once).
pub fn install_interrupt_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            eprintln!("\nrightsize: interrupted; stopping MPS daemons and workers");
            super::child::kill_all();
            stop_all();
            std::process::exit(130);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for nvidia-cuda-mps-control: `-d` writes the pid file and returns; on stdin
    /// it answers `get_server_list` and, on `quit`, removes the pid file and logs the pipe next
    /// to itself.
    fn fake_control() -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = private_dir("test-mps-bin").unwrap();
        let path = dir.join("nvidia-cuda-mps-control");
        let script = r#"#!/bin/sh
pipe="$CUDA_MPS_PIPE_DIRECTORY"
if [ "$1" = "-d" ]; then
    [ -d "$CUDA_MPS_LOG_DIRECTORY" ] || exit 5
    echo 42 > "$pipe/nvidia-cuda-mps-control.pid"; exit 0
fi
[ -f "$pipe/nvidia-cuda-mps-control.pid" ] || { echo "no daemon" >&2; exit 1; }
read cmd
case "$cmd" in
    get_server_list) echo ;;
    quit) rm "$pipe/nvidia-cuda-mps-control.pid"; echo "quit $pipe" >> "$(dirname "$0")/quit.log" ;;
    *) exit 2 ;;
esac
"#;
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn a_daemon_gets_private_directories_and_is_always_stopped() {
        let bin = fake_control();
        // Stopped explicitly.
        let d = MpsDaemon::start_with(&bin).unwrap();
        let (pipe, dir) = (d.pipe_dir(), d.dir.clone());
        assert!(pipe.join("nvidia-cuda-mps-control.pid").is_file());
        assert!(d.client_env().iter().any(|(k, v)| k == "CUDA_MPS_PIPE_DIRECTORY" && v == &pipe.display().to_string()));
        assert!(RUNNING.lock().unwrap().iter().any(|(_, p)| p == &pipe));
        d.stop().unwrap();
        assert!(!dir.exists(), "its directories are removed");
        assert!(!RUNNING.lock().unwrap().iter().any(|(_, p)| p == &pipe));
        // Stopped on drop, as on an error path.
        let d = MpsDaemon::start_with(&bin).unwrap();
        let dir = d.dir.clone();
        drop(d);
        assert!(!dir.exists());
        // Stopped by the interrupt path.
        let d = MpsDaemon::start_with(&bin).unwrap();
        let dir = d.dir.clone();
        std::mem::forget(d);
        stop_all();
        assert!(!dir.exists());
        std::fs::remove_dir_all(bin.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_killed_runs_daemon_is_stopped_by_the_next_and_no_other_is_touched() {
        let bin = fake_control();
        let tmp = private_dir("test-reap").unwrap();
        // A run that is gone: a child that has exited.
        let dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        let mut dead = dead;
        dead.wait().unwrap();
        let daemon_dir = |name: String| {
            let d = tmp.join(name);
            std::fs::create_dir_all(d.join("pipe")).unwrap();
            std::fs::write(d.join("pipe/nvidia-cuda-mps-control.pid"), "42").unwrap();
            d
        };
        let leftover = daemon_dir(format!("rightsize-mps-{dead_pid}-0"));
        let live = daemon_dir(format!("rightsize-mps-{}-7", std::process::id()));
        let foreign = daemon_dir("mps-of-someone-else".into());
        let empty = tmp.join(format!("rightsize-mps-{dead_pid}-1"));
        std::fs::create_dir_all(&empty).unwrap();
        let reaped = reap_leftovers(&bin, &tmp);
        assert_eq!(reaped.len(), 2, "{reaped:?}");
        assert!(!leftover.exists() && !empty.exists());
        let quits = std::fs::read_to_string(bin.parent().unwrap().join("quit.log")).unwrap();
        let want = format!("quit {}\n", leftover.join("pipe").display());
        assert_eq!(quits, want, "only the leftover daemon was told to quit");
        assert!(live.join("pipe/nvidia-cuda-mps-control.pid").exists(), "a live run's daemon is left alone");
        assert!(foreign.join("pipe/nvidia-cuda-mps-control.pid").exists(), "a daemon not of rightsize is left alone");
        assert_eq!(owner_pid("rightsize-mps-123-4"), Some(123));
        assert_eq!(owner_pid("rightsize-mps-x-4"), None);
        assert_eq!(owner_pid("rightsize-no-mps-123-4"), None);
        std::fs::remove_dir_all(&tmp).unwrap();
        std::fs::remove_dir_all(bin.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_client_must_be_attached_to_mps_exactly_when_its_mode_runs_under_the_daemon() {
        let (mps, timeslice): (Mode, Mode) = ("mps-limit".parse().unwrap(), "timeslice".parse().unwrap());
        let tenant = "tenant 1 (gpt2)";
        assert_eq!(check_client(tenant, mps, true, Some(true)), Ok(()));
        assert_eq!(check_client(tenant, timeslice, false, Some(false)), Ok(()));
        // A client that fell back to time slicing: the run fails, saying who, where, what was
        // expected, what was seen and what to check.
        let e = check_client(tenant, mps, true, Some(false)).unwrap_err();
        for part in ["tenant 1 (gpt2)", "under mps-limit", "not attached", "MPS_ENABLED = 0", "CUDA_MPS_PIPE_DIRECTORY"]
        {
            assert!(e.contains(part), "{part:?} in {e}");
        }
        // A time-sliced worker that joined some daemon measures MPS instead.
        let e = check_client(tenant, timeslice, false, Some(true)).unwrap_err();
        for part in ["under timeslice", "is attached", "MPS_ENABLED = 1", "system-wide MPS daemon"] {
            assert!(e.contains(part), "{part:?} in {e}");
        }
        // A worker that says nothing is not taken on trust, in either mode.
        for (mode, attached) in [(mps, true), (timeslice, false)] {
            let e = check_client(tenant, mode, attached, None).unwrap_err();
            assert!(e.contains("did not say") && e.contains(tenant), "{e}");
        }
    }

    #[test]
    fn a_daemon_that_fails_to_start_says_why() {
        let dir = private_dir("test-mps-bad").unwrap();
        let bin = dir.join("control");
        std::fs::write(&bin, "#!/bin/sh\necho 'MPS is not supported on this GPU' >&2\nexit 1\n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = MpsDaemon::start_with(&bin).unwrap_err();
        assert!(err.downcast_ref::<Unavailable>().is_some(), "the harness skips MPS modes on this error");
        let e = err.to_string();
        assert!(e.contains("did not start") && e.contains("not supported"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

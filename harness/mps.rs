//! An MPS control daemon of the harness's own: private pipe and log directories (so it never
//! meets another daemon or its clients), stopped on drop, on error and on Ctrl-C.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

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
    let mut child = Command::new(control)
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

    /// Starts a daemon with the control program `control_bin`.
    pub fn start_with(control_bin: &Path) -> anyhow::Result<MpsDaemon> {
        let control_bin = control_bin.to_path_buf();
        let dir = private_dir("mps")?;
        let (pipe, log) = (dir.join("pipe"), dir.join("log"));
        std::fs::create_dir_all(&pipe)?;
        std::fs::create_dir_all(&log)?;
        let status = Command::new(&control_bin)
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
            super::worker::kill_all();
            stop_all();
            std::process::exit(130);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for nvidia-cuda-mps-control: `-d` writes the pid file and returns; on stdin
    /// it answers `get_server_list` and, on `quit`, removes the pid file and logs it.
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
    quit) rm "$pipe/nvidia-cuda-mps-control.pid"; echo quit >> "$pipe/../quit.log" ;;
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

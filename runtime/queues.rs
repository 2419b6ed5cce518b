//! How many hardware work queues (`CUDA_DEVICE_MAX_CONNECTIONS`) the processes of a run get.
//!
//! A runtime with a policy makes a stream per window, tenant and priority level (1,452 for four
//! tenants on an H200), and CUDA lays a process's streams on `CUDA_DEVICE_MAX_CONNECTIONS`
//! hardware queues, 8 unless set. With 8, a tenant's ready kernel waited now and then on
//! another tenant's work queued on another window's stream (eager krisp in study-7b: tens of
//! milliseconds; docs/runtime-h200.md, "Tenants waiting on each other's hardware queues"); with
//! 32, the most, it did not in any run measured. But an MPS client of 32 queues costs the MPS
//! server: four of them ran it out of memory. And the driver reads the variable in `cuInit`.
//!
//! So a program that runs several tenants in one process ([`raise_for_this_process`], first
//! thing in its `main`: the `rightsize` command, executable or Python script) asks for the most where its user set
//! nothing, and the processes it starts get what they need ([`for_child`]): the user's setting,
//! or where there is none, the most for a child that runs several tenants (the one-process
//! host) and the driver's default for any other (a worker of one tenant, an MPS daemon, an
//! application profiled). Library code never changes the environment: an application that
//! links the runtime and runs several tenants sets the variable itself, before CUDA starts.

use std::ffi::{OsStr, OsString};
use std::process::Command;
use std::sync::OnceLock;

/// The driver's setting.
pub const VAR: &str = "CUDA_DEVICE_MAX_CONNECTIONS";
/// The most queues the driver gives.
pub const MOST: &str = "32";
/// The driver's number where the variable is not set.
pub const DRIVER_DEFAULT: &str = "8";

/// The user's setting as the process started, once [`raise_for_this_process`] recorded it.
static USER: OnceLock<Option<OsString>> = OnceLock::new();

/// Records the user's setting and, where none is set (an empty value counts as none) and no
/// MPS daemon serves this process ([`mps_daemon_serves_this_process`]), sets [`MOST`] for this
/// process. Call it first thing in a program's `main`, before any other thread starts and
/// before any CUDA call (the driver reads it in `cuInit`); a second call changes nothing.
pub fn raise_for_this_process() {
    USER.get_or_init(|| {
        let user = std::env::var_os(VAR).filter(|v| !v.is_empty());
        if user.is_none() && !mps_daemon_serves_this_process() {
            std::env::set_var(VAR, MOST);
        }
        user
    });
}

/// The user's setting: as recorded by [`raise_for_this_process`], else the environment's now.
pub fn user() -> Option<OsString> {
    USER.get().cloned().unwrap_or_else(|| std::env::var_os(VAR)).filter(|v| !v.is_empty())
}

/// What a child process gets where the user's setting is `user`: that setting, or where there
/// is none, [`MOST`] for a child that runs `several_tenants` in one process (and is no MPS
/// client: the caller says so) and the driver's default for any other.
pub fn for_child(user: Option<&OsStr>, several_tenants: bool) -> OsString {
    match user.filter(|v| !v.is_empty()) {
        Some(v) => v.to_owned(),
        None if several_tenants => MOST.into(),
        None => DRIVER_DEFAULT.into(),
    }
}

/// `cmd` with what a child that does not run several tenants in one process gets
/// ([`for_child`]), whatever this process set for itself.
pub fn for_single_tenant_child(cmd: &mut Command) -> &mut Command {
    cmd.env(VAR, for_child(user().as_deref(), false))
}

/// Whether an MPS control daemon serves the pipe directory this process's CUDA clients would
/// use (`CUDA_MPS_PIPE_DIRECTORY`, else `/tmp/nvidia-mps`): its contexts would be MPS clients.
/// A directory a killed daemon left behind reads as served: this process then keeps the
/// driver's default, as an MPS client must.
pub fn mps_daemon_serves_this_process() -> bool {
    let dir = std::env::var_os("CUDA_MPS_PIPE_DIRECTORY").unwrap_or_else(|| "/tmp/nvidia-mps".into());
    std::path::Path::new(&dir).join("control").exists()
}

/// The hardware queues this process's contexts get and where the number came from, for
/// `rightsize info` (its driver reads the setting in `cuInit`, as this process started or as
/// [`raise_for_this_process`] left it).
pub fn in_effect() -> String {
    describe(std::env::var_os(VAR).as_deref(), user().as_deref(), mps_daemon_serves_this_process())
}

/// [`in_effect`]'s words for the setting `now` in the environment, the user's `user`, and
/// whether an MPS daemon serves the process.
fn describe(now: Option<&OsStr>, user: Option<&OsStr>, mps_served: bool) -> String {
    let number = |v: &OsStr| v.to_str().and_then(|t| t.trim().parse::<u32>().ok()).filter(|n| (1..=32).contains(n));
    match (user, now.filter(|v| !v.is_empty())) {
        (Some(v), _) => match number(v) {
            Some(n) => format!("{n}, as the user set {VAR}"),
            None => format!("the user's {VAR}={} (the driver takes 1 to 32)", v.to_string_lossy()),
        },
        (None, Some(v)) => format!("{}, set by rightsize for its tenants ({VAR} was unset)", v.to_string_lossy()),
        (None, None) if mps_served => {
            format!("{DRIVER_DEFAULT}, the driver's default (an MPS control daemon serves this process)")
        }
        (None, None) => format!("{DRIVER_DEFAULT}, the driver's default"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_gets_the_users_setting_or_what_it_runs_needs() {
        let four = OsStr::new("4");
        assert_eq!(for_child(Some(four), true), "4");
        assert_eq!(for_child(Some(four), false), "4");
        assert_eq!(for_child(None, true), MOST);
        assert_eq!(for_child(None, false), DRIVER_DEFAULT);
        // Set but empty: the driver's default, as unset.
        assert_eq!(for_child(Some(OsStr::new("")), true), MOST);
        assert_eq!(for_child(Some(OsStr::new("")), false), DRIVER_DEFAULT);
    }

    #[test]
    fn info_says_where_the_queue_count_came_from() {
        let (four, most) = (OsStr::new("4"), OsStr::new(MOST));
        assert_eq!(describe(Some(four), Some(four), false), format!("4, as the user set {VAR}"));
        assert!(describe(Some(OsStr::new("64")), Some(OsStr::new("64")), false).contains("1 to 32"));
        assert!(describe(Some(most), None, false).starts_with("32, set by rightsize"));
        assert_eq!(describe(None, None, false), "8, the driver's default");
        assert!(describe(None, None, true).contains("MPS control daemon"));
    }

    #[test]
    fn a_single_tenant_child_is_told_its_setting_outright() {
        let mut cmd = Command::new("true");
        let var = OsStr::new(VAR);
        let got = for_single_tenant_child(&mut cmd).get_envs().find(|(k, _)| *k == var).and_then(|(_, v)| v);
        let want = for_child(user().as_deref(), false);
        assert_eq!(got, Some(want.as_os_str()));
        assert!(want == DRIVER_DEFAULT || user().is_some(), "{want:?} without a user's setting");
    }
}

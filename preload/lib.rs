//! `librightsize_preload.so`: places every kernel an unmodified CUDA application launches on
//! an SM partition (a green context), with no change to the application.
//!
//! ```sh
//! RIGHTSIZE_SMS=64 LD_PRELOAD=target/release/librightsize_preload.so python3 app.py
//! ```
//!
//! How launches are seen: the CUDA runtime (and so PyTorch) reaches the driver through
//! `cuGetProcAddress`, which it looks up with `dlsym` in libcuda; this library's `dlsym` hands
//! back its own `cuGetProcAddress`, which hands back its own `cuLaunchKernel` and
//! `cuLaunchKernelEx` (both stream flavours). Programs linked against libcuda directly (Triton's
//! launchers) resolve those two names to this library first. cuBLAS launches by a path these
//! do not see, so its GEMM calls are stood in for one level up (`blas.rs`). Every other symbol
//! is the library's own.
//!
//! How a kernel is placed: it runs on a stream of the partition, ordered with the stream the
//! application launched it on by one event each way (the partition stream waits for the work
//! issued before it; the application's stream waits for the kernel), so the application sees
//! the order it asked for. A `CUkernel` (what the CUDA runtime launches) is resolved in the
//! partition's green context, with that context current for the launch: resolved in the
//! primary context it would run on every SM even from the partition's stream. Kernels launched
//! while their stream is being captured into a graph run where the application put them, in
//! its graph, unless `RIGHTSIZE_GRAPHS=1` places them there too (see `captured_placed`); a
//! graph launch runs where the application launched it.
//!
//! Settings (environment): `RIGHTSIZE_SMS` — SMs of the partition (rounded up to the device's
//! groups; unset: every kernel passes through, counted); `RIGHTSIZE_FIRST_GROUP` — its first
//! group (default 0); `RIGHTSIZE_DEVICE` — the GPU (default 0; kernels of other GPUs pass
//! through); `RIGHTSIZE_PRELOAD_LOG` — a file that gets, at exit, what was placed (JSON);
//! `RIGHTSIZE_PRELOAD_TRACE` — a file that gets every driver symbol looked up;
//! `RIGHTSIZE_REST=1` — the window also takes the SMs outside the device's groups (for the
//! window that reaches the last group).
//!
//! Following the load (`RIGHTSIZE_BOARD`, `RIGHTSIZE_SLOT`, `RIGHTSIZE_HOLD_US`; see
//! [`board`]; `RIGHTSIZE_SMS` is then not read): processes of a group say on a shared board
//! when they are busy and how many SMs their recent launches need ([`sizing`]: a launch's knee
//! from `RIGHTSIZE_PROFILE`, an application profile of `rightsize profile --app`, else its
//! blocks). A process's kernels stay where the application put them (the whole device, shared
//! as under MPS) unless SMs are kept free (below): then the groups beyond those are split among
//! the busy best-effort processes in proportion to their needs, in slot order, and each places
//! its kernels on its part (made on first use, then kept); equal needs make equal parts. A
//! kernel of no more blocks than that part has SMs is never placed: it cannot take more than
//! its share, and runs on whichever SMs are free, without the ordering's cost. A
//! latency-critical process (`RIGHTSIZE_CLASS=latency-critical`, `RIGHTSIZE_QUOTA_SMS=N`) leaves
//! its kernels where they were launched, and while it is busy the others' parts leave free the
//! groups of the SMs its recent kernels need, at most `N`, where its own work runs a tenth
//! faster with that quota kept than without ([`quota`], which tries both;
//! `RIGHTSIZE_QUOTA_TRIAL=0` keeps it always). A process that starves beside the others, judged
//! from how much slower its own work gets done between its waits for the GPU ([`starving`];
//! `RIGHTSIZE_STARVING=0` turns this off), is treated alike with its equal part of the device.
//!
//! Recording (`RIGHTSIZE_RECORD=FILE`, what `rightsize profile --app` sets): every launch is
//! also timed, by kernel name and launch shape ([`sizing`]).
//!
//! Standing aside (`rightsize_preload_bypass`, an exported function): while switched on, every
//! launch, cuBLAS call and wait goes straight through, so one process can time itself with and
//! without the interposer's work in turn (`scripts/preload_cost.py --in-process`). With
//! `RIGHTSIZE_ASIDE_MS` and `RIGHTSIZE_ASIDE_EPOCH_NS` it stands aside in every other period
//! of that many ms from that time (`Alternation`), every process of a run at once.
//!
//! Online fits (`RIGHTSIZE_FIT=1`): a kernel no profile has is sized by a fit of its latency
//! against its SMs, timed from its own launches ([`sizing`]).
//!
//! The crate by concern: [`abi`] (the symbols it exports and the driver's it keeps),
//! [`placement`] (where a launch runs, and why), [`target`] (the windows), [`board`] and
//! [`sizing`] (following the load), [`starving`] (who starves), [`quota`] (whether a quota
//! helps), [`blas`] (cuBLAS's stand-ins), [`stats`] (what it did, written at exit).

mod abi;
mod blas;
mod board;
mod placement;
mod quota;
mod sizing;
mod starving;
mod stats;
mod target;

pub use abi::{
    cuGetProcAddress, cuGetProcAddress_v2, cuLaunchKernel, cuLaunchKernelEx, cuLaunchKernelEx_ptsz,
    cuLaunchKernel_ptsz, dlsym,
};
pub use stats::report;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// Whether the interposer stands aside ([`rightsize_preload_bypass`]).
static BYPASS: AtomicBool = AtomicBool::new(false);

/// Whether every stand-in passes its call straight to the driver or cuBLAS, as if this
/// library were not loaded: switched so ([`rightsize_preload_bypass`]), or in a period the
/// run's [`Alternation`] stands aside.
pub(crate) fn bypassed() -> bool {
    if BYPASS.load(Ordering::Relaxed) {
        return true;
    }
    let Some(a) = alternation() else { return false };
    let Some(period) = a.period_at(board::now_ns()) else { return false };
    let aside = period % 2 == 1;
    if aside && a.seen.load(Ordering::Relaxed) != period && a.seen.swap(period, Ordering::Relaxed) != period {
        standing_aside();
    }
    aside
}

/// The library begins to stand aside: a starving watch's open period has a gap now.
fn standing_aside() {
    if let Some(w) = starving::watch() {
        w.forget_period();
    }
}

/// Every process of a run standing aside at once, in turn (`RIGHTSIZE_ASIDE_MS=P` with
/// `RIGHTSIZE_ASIDE_EPOCH_NS=T0`, which the harness sets for comparisons): periods of P ms
/// counted from T0 on the host's monotonic clock, the library taking part in the first, third,
/// … and standing aside in the second, fourth, … So one run measures the library against
/// itself standing aside, in the same processes. Each call then reads the clock (in both
/// kinds of period). What it learns, it learns in the periods it takes part in: as a
/// taking-part period begins, the board shows the others idle until they launch again (within
/// a hold), a quota's trial and a starving verdict take twice the wall time, and a duty or a
/// rate the quota's cost weighs spans the aside periods too.
pub(crate) struct Alternation {
    every_ns: u64,
    epoch_ns: u64,
    /// The last aside period a call saw.
    seen: AtomicU64,
}

impl Alternation {
    fn new(every_ms: u32, epoch_ns: u64) -> Option<Alternation> {
        (every_ms > 0).then(|| Alternation {
            every_ns: u64::from(every_ms) * 1_000_000,
            epoch_ns,
            seen: AtomicU64::new(0),
        })
    }

    /// The period `now` falls in (0 the first), or `None` before the epoch.
    fn period_at(&self, now: u64) -> Option<u64> {
        now.checked_sub(self.epoch_ns).map(|since| since / self.every_ns)
    }
}

/// The run's [`Alternation`], if its settings are there (a malformed one is reported once).
fn alternation() -> Option<&'static Alternation> {
    static ALTERNATION: OnceLock<Option<Alternation>> = OnceLock::new();
    ALTERNATION
        .get_or_init(|| {
            let every = setting("RIGHTSIZE_ASIDE_MS")?;
            let epoch = std::env::var("RIGHTSIZE_ASIDE_EPOCH_NS").ok();
            match epoch.as_deref().map(|e| e.trim().parse::<u64>()) {
                Some(Ok(epoch)) => Alternation::new(every, epoch),
                _ => {
                    eprintln!(
                        "rightsize preload: RIGHTSIZE_ASIDE_MS without a RIGHTSIZE_ASIDE_EPOCH_NS in ns; ignored"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// Has the interposer stand aside (`on` ≠ 0: every launch, cuBLAS call and wait goes straight
/// to the driver or cuBLAS, nothing placed, counted, timed or marked on a board; what is in
/// flight stays ordered) or take part again (`on` = 0); returns whether it stood aside before.
/// Standing aside, the library still hands out its own entry points (`dlsym`,
/// `cuGetProcAddress`) and remembers cuBLAS workspaces, so that it can take part again.
/// For measuring what it costs within one process (`scripts/torch_app.py --ab`): the two
/// settings in turn see the same process, host and GPU, which processes run one after another
/// do not. Called from any thread, at any time; a starving watch's period open when it stands
/// aside is dropped, not judged.
#[no_mangle]
pub extern "C" fn rightsize_preload_bypass(on: std::ffi::c_int) -> std::ffi::c_int {
    let was = BYPASS.swap(on != 0, Ordering::SeqCst);
    if on != 0 && !was {
        standing_aside();
    }
    std::ffi::c_int::from(was)
}

/// A setting from the environment; a malformed one is reported once and taken as unset.
fn setting(name: &str) -> Option<u32> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("rightsize preload: {name}={v:?} is not a number; ignored");
            None
        }
    }
}

/// Has `f` run at the process's exit (before the CUDA runtime's own teardown, which was
/// registered when it started, earlier).
fn at_exit(f: extern "C" fn()) {
    // SAFETY: registers a function that takes no arguments.
    unsafe { libc::atexit(f) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alternation_stands_aside_in_every_other_period_from_its_epoch() {
        assert!(Alternation::new(0, 5).is_none(), "no periods of 0 ms");
        let a = Alternation::new(2, 1_000).unwrap();
        assert_eq!(a.period_at(999), None, "before the epoch");
        assert_eq!(a.period_at(1_000), Some(0));
        assert_eq!(a.period_at(1_000 + 1_999_999), Some(0));
        assert_eq!(a.period_at(1_000 + 2_000_000), Some(1), "the first aside period");
        assert_eq!(a.period_at(1_000 + 4_000_000), Some(2));
    }
}

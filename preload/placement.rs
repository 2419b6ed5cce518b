//! Where each launch runs: on its window's stream, ordered with the stream the application
//! launched it on, or where the application put it, and why ([`Left`], each reason counted).
//! Kernels ([`place_kernel`]) and cuBLAS calls ([`crate::blas`]) are placed alike, by
//! [`place`].

use std::cell::Cell;
use std::ffi::c_uint;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use cudarc::driver::sys::{self, CUfunction, CUresult, CUstream};

use crate::abi::{PER_THREAD, STREAM_PER_THREAD};
use crate::stats::COUNTS;
use crate::target::{capture_stream, in_context, on_partition, on_target_device, shares, target, Target};
use crate::{board, setting, sizing};

thread_local! {
    /// This thread's event for ordering streams (made in its current context on first use).
    static EVENT: Cell<sys::CUevent> = const { Cell::new(std::ptr::null_mut()) };
}

/// Runs `work` on the partition's stream, ordered with `stream` (the application's, in
/// `flavour`): the partition's stream waits for what was issued to `stream` before, and
/// `stream` waits for the work (when `ok` says it was issued). `work` gets the target when it
/// runs on the partition, nothing when it runs on `stream` itself: no partition, another
/// GPU, a stream being captured (unless [`capture_rule`] captures the work on the window,
/// from the thread's own stream of it), or ordering that failed — and, on a board, no other
/// process busy, or a kernel of at most as many `blocks` as the window has SMs (it cannot
/// spread over more SMs than its share, so it runs where it was launched, without the
/// ordering's cost). `need` is the SMs the work needs ([`sizing`]), which the board sizes
/// parts by. Where it goes is [`destination`]'s to say.
pub(crate) fn place<R>(
    flavour: usize,
    stream: CUstream,
    blocks: Option<u64>,
    need: u32,
    ok: impl Fn(&R) -> bool,
    work: impl FnOnce(Option<&Target>, CUstream) -> R,
) -> R {
    COUNTS.launches.fetch_add(1, Ordering::Relaxed);
    let to = match destination(flavour, stream, blocks, need) {
        Ok(to) => to,
        Err(left) => {
            if let Some(count) = left.count() {
                count.fetch_add(1, Ordering::Relaxed);
            }
            return work(None, stream);
        }
    };
    // Under capture the two events fork the partition's stream into the application's capture
    // and join it back: the work becomes a node of the graph, captured in the green context.
    let r = work(Some(to.target), to.stream);
    if ok(&r) {
        // (Under capture nothing may be waited for: a join that failed ends the application's
        // capture with an error, which it sees.)
        if !order(to.event, to.stream, to.app) && !to.captured {
            // The application's stream could not be made to wait: wait here instead.
            // SAFETY: a live stream.
            unsafe { sys::cuStreamSynchronize(to.stream) };
        }
        COUNTS.placed.fetch_add(1, Ordering::Relaxed);
        if let Some(w) = crate::starving::watch() {
            w.placed();
        }
        if to.captured {
            COUNTS.captured_placed.fetch_add(1, Ordering::Relaxed);
        }
    }
    r
}

/// Where [`place`] runs a launch it places: on `stream` of `target` (the window's stream, or
/// the thread's stream of captured work when `captured`), which `event` has already ordered
/// after the application's stream `app`.
struct Destination {
    target: &'static Target,
    stream: CUstream,
    app: CUstream,
    event: sys::CUevent,
    captured: bool,
}

/// Where a launch of `flavour` issued to `stream` goes ([`place`]), or why it stays there. On
/// a board the launch and its `need` are said first.
fn destination(flavour: usize, stream: CUstream, blocks: Option<u64>, need: u32) -> Result<Destination, Left> {
    let board = board::board();
    let window = match board {
        Some(b) => {
            let now = board::now_ns();
            b.launched(now, need);
            let mut v = b.view(now);
            if let Some(w) = crate::starving::watch() {
                w.launched(now);
                if w.follow(b, &v, now) {
                    // This process's word changed: the launch goes where the new word says.
                    v = b.view(now);
                }
            }
            if let Some(left) = left_on_board(&v) {
                return Err(left);
            }
            shares().and_then(|s| s.window(&v))
        }
        None => target(),
    };
    let target = window.ok_or(Left::Unplaced)?;
    if !on_target_device(target) {
        return Err(Left::Fallback);
    }
    if board.is_some() && blocks.is_some_and(|n| n <= u64::from(target.sms)) {
        return Err(Left::Narrow);
    }
    let app = if stream.is_null() && flavour == PER_THREAD { STREAM_PER_THREAD } else { stream };
    let (stream, captured) = match capture_rule(capture_status(app), board.is_some(), captured_placed()) {
        CaptureRule::Eager => (target.stream, false),
        CaptureRule::Captured => (capture_stream(target).ok_or(Left::Fallback)?, true),
        CaptureRule::Leave => return Err(Left::Captured),
    };
    let event = thread_event().ok_or(Left::Fallback)?;
    if !order(event, app, stream) {
        return Err(Left::Fallback);
    }
    Ok(Destination { target, stream, app, event, captured })
}

/// The capture status of the application's `stream` (`None`: it could not be read).
fn capture_status(stream: CUstream) -> Option<sys::CUstreamCaptureStatus> {
    let mut capture = sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
    // SAFETY: a stream of the application's; writes one enum.
    let r = unsafe { sys::cuStreamIsCapturing(stream, &mut capture) };
    (r == CUresult::CUDA_SUCCESS).then_some(capture)
}

/// This thread's event for ordering streams (`None`: it could not be made).
fn thread_event() -> Option<sys::CUevent> {
    EVENT.with(|e| {
        if e.get().is_null() {
            let mut made = std::ptr::null_mut();
            // SAFETY: an event of the current context, kept for the thread's life.
            let r = unsafe { sys::cuEventCreate(&mut made, sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32) };
            if r == CUresult::CUDA_SUCCESS {
                e.set(made);
            }
        }
        Some(e.get()).filter(|e| !e.is_null())
    })
}

/// Has `to` wait for the work issued to `from` so far, through `event`; whether it could.
fn order(event: sys::CUevent, from: CUstream, to: CUstream) -> bool {
    // SAFETY: live streams and event of the same context; a wait takes the event's state at
    // the call, so one event serves both directions.
    unsafe {
        sys::cuEventRecord(event, from) == CUresult::CUDA_SUCCESS
            && sys::cuStreamWaitEvent(to, event, 0) == CUresult::CUDA_SUCCESS
    }
}

/// Why a launch stays where the application put it (on a board: the whole device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// There is no window: none is set, or it could not be made (not counted).
    Unplaced,
    /// On a board, no other process is busy.
    Alone,
    /// On a board, its process is latency-critical: the others keep what it needs (at most
    /// its quota) free.
    Critical,
    /// On a board, its process starves beside the others ([`crate::starving`]): they keep its
    /// part free.
    Starving,
    /// On a board, other processes are busy, but none of them latency-critical or starving:
    /// nothing needs protecting, so the processes share every SM as under MPS (confined, a
    /// Python-bound process's kernels would leave SMs idle that MPS fills with another's).
    Shared,
    /// On a board, a kernel of no more blocks than the window has SMs.
    Narrow,
    /// Its stream is being captured, and the capture is not placed ([`capture_rule`]).
    Captured,
    /// Placing it failed: another GPU's context is current, or the streams could not be
    /// ordered.
    Fallback,
}

impl Left {
    /// The count this reason adds to.
    fn count(self) -> Option<&'static AtomicU64> {
        match self {
            Left::Unplaced => None,
            Left::Alone => Some(&COUNTS.alone),
            Left::Critical => Some(&COUNTS.critical),
            Left::Starving => Some(&COUNTS.starving),
            Left::Shared => Some(&COUNTS.shared),
            Left::Narrow => Some(&COUNTS.narrow),
            Left::Captured => Some(&COUNTS.captured),
            Left::Fallback => Some(&COUNTS.fallback),
        }
    }
}

/// Whether a launch that sees `v` stays where the application put it, and why; `None`: it
/// goes to its part of the device (what a busy latency-critical process needs, at most its
/// quota, or a starving one's part, kept free).
fn left_on_board(v: &board::View) -> Option<Left> {
    if v.busy <= 1 {
        Some(Left::Alone)
    } else if v.critical {
        Some(Left::Critical)
    } else if v.starving {
        Some(Left::Starving)
    } else if v.reserved_sms == 0 {
        Some(Left::Shared)
    } else {
        None
    }
}

/// Places a kernel launch: `launch` runs function `f` on a stream; on the partition a
/// `CUkernel` is resolved in its green context, which is current while it is launched.
pub(crate) fn place_kernel(
    flavour: usize,
    f: CUfunction,
    grid: [c_uint; 3],
    block: [c_uint; 3],
    stream: CUstream,
    launch: impl Fn(CUfunction, CUstream) -> CUresult,
) -> CUresult {
    let blocks = grid.iter().map(|&d| u64::from(d)).product();
    let shape = sizing::kernel_shape(grid, block);
    let ok = |r: &CUresult| *r == CUresult::CUDA_SUCCESS;
    let (need, sample) = sizing::kernel_need(f, &shape, blocks);
    place(flavour, stream, Some(blocks), need, ok, |t, s| {
        let s_timed = if s.is_null() && flavour == PER_THREAD { STREAM_PER_THREAD } else { s };
        sizing::timed(
            s_timed,
            f as usize,
            shape,
            // Timed for its fit on its part's SMs, or (0) the whole device's.
            sample.then(|| t.map_or(0, |t| t.sms)),
            || sizing::function_name(f),
            ok,
            || match t.map(|t| (t, on_partition(t, f))) {
                Some((t, (g, true))) => in_context(t.context, || launch(g, s)),
                Some((_, (_, false))) | None => launch(f, s),
            },
        )
    })
}

/// Where work goes given its stream's capture status (`None`: it could not be read).
#[derive(Debug, PartialEq, Eq)]
enum CaptureRule {
    /// Not being captured: placed as launched work is.
    Eager,
    /// Being captured, and placed ([`captured_placed`]): captured on the window.
    Captured,
    /// Left where the application put it: being captured and not placed here, a capture
    /// already invalidated, or a status unknown.
    Leave,
}

fn capture_rule(status: Option<sys::CUstreamCaptureStatus>, on_board: bool, graphs: bool) -> CaptureRule {
    use sys::CUstreamCaptureStatus::{
        CU_STREAM_CAPTURE_STATUS_ACTIVE as ACTIVE, CU_STREAM_CAPTURE_STATUS_NONE as NONE,
    };
    match status {
        Some(NONE) => CaptureRule::Eager,
        Some(ACTIVE) if graphs && !on_board => CaptureRule::Captured,
        _ => CaptureRule::Leave,
    }
}

/// Whether work captured into a graph under a fixed window (`RIGHTSIZE_SMS`) is placed too
/// (`RIGHTSIZE_GRAPHS=1`, opt-in): the partition's stream joins the application's
/// capture, so the work is captured in the green context and its node runs on the window
/// wherever the graph is launched. The stream is the capturing thread's own
/// ([`capture_stream`]), so captures in several threads at once stay apart.
fn captured_placed() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| setting("RIGHTSIZE_GRAPHS").is_some_and(|g| g == 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_busy_latency_critical_or_starving_process_confines_the_others() {
        let v = |busy, critical, reserved_sms| board::View { busy, critical, reserved_sms, ..Default::default() };
        assert_eq!(left_on_board(&v(1, false, 0)), Some(Left::Alone));
        assert_eq!(left_on_board(&v(1, true, 32)), Some(Left::Alone));
        assert_eq!(left_on_board(&v(3, true, 32)), Some(Left::Critical));
        // Best-effort processes among themselves share every SM, as under MPS.
        assert_eq!(left_on_board(&v(4, false, 0)), Some(Left::Shared));
        // A busy latency-critical process's quota is kept free of the others' kernels.
        assert_eq!(left_on_board(&v(2, false, 32)), None);
        // A starving process runs where it launched; the others keep its part free.
        let starving = board::View { starving: true, ..v(3, false, 40) };
        assert_eq!(left_on_board(&starving), Some(Left::Starving));
        assert_eq!(left_on_board(&board::View { starving: true, ..v(1, false, 40) }), Some(Left::Alone));
    }

    #[test]
    fn captured_work_is_placed_only_under_a_fixed_window_with_graphs_on() {
        use sys::CUstreamCaptureStatus::*;
        let active = Some(CU_STREAM_CAPTURE_STATUS_ACTIVE);
        assert_eq!(capture_rule(Some(CU_STREAM_CAPTURE_STATUS_NONE), false, false), CaptureRule::Eager);
        assert_eq!(capture_rule(Some(CU_STREAM_CAPTURE_STATUS_NONE), true, true), CaptureRule::Eager);
        assert_eq!(capture_rule(active, false, true), CaptureRule::Captured);
        // A board's parts change while a graph keeps the window its nodes were captured on.
        assert_eq!(capture_rule(active, true, true), CaptureRule::Leave);
        assert_eq!(capture_rule(active, false, false), CaptureRule::Leave);
        assert_eq!(capture_rule(Some(CU_STREAM_CAPTURE_STATUS_INVALIDATED), false, true), CaptureRule::Leave);
        assert_eq!(capture_rule(None, false, true), CaptureRule::Leave);
    }
}

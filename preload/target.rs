//! The windows kernels are placed on: the one fixed window of `RIGHTSIZE_SMS`, or on a board
//! the windows of this process's parts of the device ([`board_part`]), each a partition
//! (green context) made on first use and kept for the process's life; and a launched function
//! as a function of a window's green context.

use std::cell::Cell;
use std::ffi::c_uint;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use cudarc::driver::sys::{self, CUfunction, CUresult, CUstream};
use rightsize::runtime::policy::{reserved_groups, GroupRange};
use rightsize::runtime::{Device, PartitionId, PartitionPool, PoolSpec};

use crate::stats::{write_log_at_exit, COUNTS};
use crate::{board, setting, sizing};

/// The partition kernels go to.
pub(crate) struct Target {
    // Dropped never (a static); kept for its stream and green context.
    _pool: PartitionPool,
    /// The partition's stream.
    pub(crate) stream: CUstream,
    device: sys::CUdevice,
    /// The green context as a context, current while its kernels are launched.
    pub(crate) context: sys::CUcontext,
    /// The green context, for each thread's stream of captured work ([`capture_stream`]).
    green: sys::CUgreenCtx,
    pub(crate) sms: u32,
}

// SAFETY: the pool's handles may be used from any thread.
unsafe impl Send for Target {}
// SAFETY: as above; the pool is immutable.
unsafe impl Sync for Target {}

/// `make` with the calling thread's current context kept as it was.
pub(crate) fn keeping_context<T>(make: impl FnOnce() -> T) -> T {
    let mut current = std::ptr::null_mut();
    // SAFETY: writes the calling thread's current context.
    unsafe { sys::cuCtxGetCurrent(&mut current) };
    let made = make();
    // SAFETY: the context that was current (or none).
    unsafe { sys::cuCtxSetCurrent(current) };
    made
}

/// `run` with `context` current, the calling thread's own restored after.
pub(crate) fn in_context<T>(context: sys::CUcontext, run: impl FnOnce() -> T) -> T {
    keeping_context(|| {
        // SAFETY: a live context of the interposer's (a partition's green context).
        unsafe { sys::cuCtxSetCurrent(context) };
        run()
    })
}

/// The partition of `RIGHTSIZE_SMS`, made on first use; `None` (kernels pass through) when
/// unset or when it cannot be made (said once on stderr).
pub(crate) fn target() -> Option<&'static Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let sms = setting("RIGHTSIZE_SMS")?;
            let first_group = setting("RIGHTSIZE_FIRST_GROUP").unwrap_or(0);
            let rest = setting("RIGHTSIZE_REST").is_some_and(|r| r != 0);
            let ordinal = setting("RIGHTSIZE_DEVICE").unwrap_or(0) as usize;
            match keeping_context(|| make_target(ordinal, sms, first_group, rest)) {
                Ok(t) => {
                    write_log_at_exit();
                    Some(t)
                }
                Err(e) => {
                    eprintln!("rightsize preload: no partition of {sms} SMs ({e}); kernels run where launched");
                    None
                }
            }
        })
        .as_ref()
}

/// The windows of a best-effort process on a board ([`board_part`]), each made on first use
/// and kept, looked up by its first group and its count without a lock on the launch path.
pub(crate) struct Shares {
    ordinal: usize,
    /// The device's groups, and SMs per group.
    pub(crate) groups: u32,
    pub(crate) granularity: u32,
    /// The window of `count` groups from group `first` at `first · groups + count − 1`.
    made: Vec<OnceLock<Option<&'static Target>>>,
}

/// The board's windows, or `None` (kernels pass through) when the device has no partitions
/// (said once on stderr).
pub(crate) fn shares() -> Option<&'static Shares> {
    static SHARES: OnceLock<Option<Shares>> = OnceLock::new();
    SHARES
        .get_or_init(|| {
            let ordinal = setting("RIGHTSIZE_DEVICE").unwrap_or(0) as usize;
            let topology = keeping_context(|| {
                let device = Device::open(ordinal).map_err(|e| e.to_string())?;
                device.info().partitions.topology().map_err(str::to_owned)
            });
            match topology {
                Ok(t) => {
                    let made = (0..t.groups as usize * t.groups as usize).map(|_| OnceLock::new()).collect();
                    Some(Shares { ordinal, groups: t.groups, granularity: t.granularity, made })
                }
                Err(e) => {
                    eprintln!("rightsize preload: no windows on device {ordinal} ({e}); kernels run where launched");
                    None
                }
            }
        })
        .as_ref()
}

impl Shares {
    /// This process's window as the board `v` lays the busy processes out (`None`: it could
    /// not be made).
    pub(crate) fn window(&self, v: &board::View) -> Option<&'static Target> {
        // What busy latency-critical processes need (at most their quotas), and busy starving
        // processes' parts, are kept free as a runtime's policy keeps a latency-critical quota.
        let g = reserved_groups(self.groups, self.granularity, v.reserved_sms);
        let kept = (v.best_effort as usize).min(board::MAX_SHARERS);
        let w = board_part(self.groups, self.granularity, g, v.best_effort, &v.demands[..kept], v.rank);
        let slot = self.made.get((w.first * self.groups + w.count - 1) as usize)?;
        // The part is laid out once, with its window (the launch path only looks it up).
        *slot.get_or_init(|| {
            let rest = w.end() == self.groups;
            let sms = w.count * self.granularity;
            match keeping_context(|| make_target(self.ordinal, sms, w.first, rest)) {
                Ok(t) => {
                    COUNTS.windows_made.fetch_add(1, Ordering::Relaxed);
                    // Kept for the process's life, as the one window without a board is.
                    Some(&*Box::leak(Box::new(t)))
                }
                Err(e) => {
                    eprintln!(
                        "rightsize preload: no window of groups {}..{} ({e}); its kernels run where launched",
                        w.first,
                        w.end()
                    );
                    None
                }
            }
        })
    }
}

/// Part `r` of `k` busy best-effort processes, the first of them needing `needs` SMs (in slot
/// order), on `groups` groups of `granularity` SMs, the first `g` kept free: the rest split in
/// proportion to their needs (each counted in whole groups, from one to all of the rest), at
/// least one group each, the groups rounding leaves to the largest remainders (the lower slot
/// on a tie), side by side in slot order. With more processes than groups, neighbours share
/// one; with more than `needs` holds (more than [`board::MAX_SHARERS`]), equal parts. Computed
/// at every contended launch: no allocation.
fn board_part(groups: u32, granularity: u32, g: u32, k: u32, needs: &[u32], r: u32) -> GroupRange {
    const MAX: usize = board::MAX_SHARERS;
    let rest = groups.saturating_sub(g).max(1);
    let k = (k as usize).max(1);
    let r = (r as usize).min(k - 1);
    if k > rest as usize {
        return GroupRange { first: g + (r as u32).min(rest - 1), count: 1 };
    }
    if k > needs.len() || k > MAX {
        let (rest, k, r) = (u64::from(rest), k as u64, r as u64);
        let first = rest * r / k;
        return GroupRange { first: g + first as u32, count: (rest * (r + 1) / k - first) as u32 };
    }
    let weight = |n: u32| f64::from(n.div_ceil(granularity.max(1)).clamp(1, rest));
    let total: f64 = needs[..k].iter().map(|&n| weight(n)).sum();
    let mut exact = [0f64; MAX];
    let mut counts = [0u32; MAX];
    for i in 0..k {
        exact[i] = f64::from(rest) * weight(needs[i]) / total;
        counts[i] = (exact[i].floor() as u32).max(1);
    }
    let mut sum: u32 = counts[..k].iter().sum();
    while sum > rest {
        // Too many (the ones raised to one group): the largest gives one back.
        let (i, _) = counts[..k].iter().enumerate().rev().max_by_key(|(_, &c)| c).expect("a process");
        counts[i] -= 1;
        sum -= 1;
    }
    while sum < rest {
        let remainder = |i: usize| exact[i] - f64::from(counts[i]);
        let i = (0..k).fold(0, |best, i| if remainder(i) > remainder(best) { i } else { best });
        counts[i] += 1;
        sum += 1;
    }
    GroupRange { first: g + counts[..r].iter().sum::<u32>(), count: counts[r] }
}

fn make_target(ordinal: usize, sms: u32, first_group: u32, rest: bool) -> Result<Target, String> {
    let device = Device::open(ordinal).map_err(|e| e.to_string())?;
    let mut spec = PoolSpec::window(&device.info().partitions, sms, first_group, None).map_err(|e| e.to_string())?;
    // A window reaching the last group takes the SMs outside the groups too.
    spec.rest = rest;
    let pool = PartitionPool::new(&device, &spec).map_err(|e| e.to_string())?;
    let part = pool.get(PartitionId::green(0)).map_err(|e| e.to_string())?;
    let stream = part.stream(0).map_err(|e| e.to_string())?;
    let (mut ctx, mut green, mut context) = (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: a live stream of a green context; writes two handles, then one.
    let r = unsafe {
        match sys::cuStreamGetCtx_v2(stream, &mut ctx, &mut green) {
            CUresult::CUDA_SUCCESS if !green.is_null() => sys::cuCtxFromGreenCtx(&mut context, green),
            CUresult::CUDA_SUCCESS => CUresult::CUDA_ERROR_INVALID_CONTEXT,
            e => e,
        }
    };
    if r != CUresult::CUDA_SUCCESS {
        return Err(format!("the partition's green context: {r:?}"));
    }
    let sms = part.sms();
    Ok(Target { stream, device: device.context().cu_device(), context, green, sms, _pool: pool })
}

thread_local! {
    /// This thread's stream of `RIGHTSIZE_GRAPHS` captures, made on first use.
    static CAPTURE_STREAM: Cell<CUstream> = const { Cell::new(std::ptr::null_mut()) };
}

/// This thread's stream in the fixed window's green context `t` (the only window captured
/// work is placed on: [`crate::placement::capture_rule`]) for work being captured: a capture the stream joins
/// is the thread's own, so another thread's launches on the window (on its shared stream)
/// never join it. Made with the thread's capture mode relaxed (a capture under way may forbid
/// it otherwise), and kept for the thread's life; `None` if it cannot be made.
pub(crate) fn capture_stream(t: &Target) -> Option<CUstream> {
    CAPTURE_STREAM.with(|made| {
        if made.get().is_null() {
            let mut s = std::ptr::null_mut();
            let flags = sys::CUstream_flags::CU_STREAM_NON_BLOCKING as c_uint;
            // SAFETY: the window's live green context; writes one stream.
            let r = sizing::relaxed(|| unsafe { sys::cuGreenCtxStreamCreate(&mut s, t.green, flags, 0) });
            if r == CUresult::CUDA_SUCCESS {
                made.set(s);
            }
        }
        Some(made.get()).filter(|s| !s.is_null())
    })
}
thread_local! {
    /// The partition's function of each function handle the application launched (0: keep
    /// it): the CUDA runtime launches context-independent kernels (`CUkernel`), which run in
    /// the context they are resolved in, so they are resolved in the green context.
    static FUNCTIONS: std::cell::RefCell<std::collections::HashMap<(usize, usize), usize>> = Default::default();
}

/// `f` as a function of the partition's green context (`t.context`): a `CUkernel` resolved
/// there (`true`), or a context's own `CUfunction` as it is (`false`; it runs on the stream's
/// SMs when launched from its own context, as the runtime's kernels are).
pub(crate) fn on_partition(t: &Target, f: CUfunction) -> (CUfunction, bool) {
    let resolved = FUNCTIONS.with(|m| {
        *m.borrow_mut().entry((f as usize, t.context as usize)).or_insert_with(|| {
            let mut g = std::ptr::null_mut();
            // SAFETY: the green context is current for the lookup; a handle that is not a
            // CUkernel is refused by the driver.
            let r = in_context(t.context, || unsafe { sys::cuKernelGetFunction(&mut g, f.cast()) });
            if r == CUresult::CUDA_SUCCESS && !g.is_null() {
                COUNTS.functions_resolved.fetch_add(1, Ordering::Relaxed);
                g as usize
            } else {
                COUNTS.functions_kept.fetch_add(1, Ordering::Relaxed);
                0
            }
        })
    });
    if resolved == 0 {
        (f, false)
    } else {
        (resolved as CUfunction, true)
    }
}

/// Whether the calling thread's current context is the target's device's.
pub(crate) fn on_target_device(t: &Target) -> bool {
    let mut dev = 0;
    // SAFETY: writes one int.
    unsafe { sys::cuCtxGetDevice(&mut dev) == CUresult::CUDA_SUCCESS && dev == t.device }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_effort_parts_leave_the_latency_critical_quota_free() {
        let g = |first, count| GroupRange { first, count };
        let all = u32::MAX;
        let part = |reserved_sms, needs: &[u32], r| {
            let reserved = reserved_groups(15, 8, reserved_sms);
            (reserved, board_part(15, 8, reserved, needs.len() as u32, needs, r))
        };
        // No reserve, equal needs: equal parts of the 15 groups.
        assert_eq!(part(0, &[all, all], 0), (0, g(0, 8)));
        assert_eq!(part(0, &[all, all], 1), (0, g(8, 7)));
        // 32 SMs kept free: four groups, the rest in equal parts.
        assert_eq!(part(32, &[all], 0), (4, g(4, 11)));
        assert_eq!(part(32, &[all, all], 0), (4, g(4, 6)));
        assert_eq!(part(32, &[all, all], 1), (4, g(10, 5)));
        // A quota that is not whole groups takes whole groups; one that takes the device
        // leaves one group, which processes beyond it share.
        assert_eq!(part(33, &[all], 0).0, 5);
        assert_eq!(part(500, &[all, all], 0), (14, g(14, 1)));
        assert_eq!(part(500, &[all, all], 1), (14, g(14, 1)));
    }

    #[test]
    fn parts_follow_what_each_process_needs() {
        let g = |first, count| GroupRange { first, count };
        let part = |needs: &[u32], r| board_part(15, 8, 0, needs.len() as u32, needs, r);
        // A process whose kernels need 16 SMs beside one that needs the device: 2 groups
        // against 15, in proportion.
        assert_eq!(part(&[16, u32::MAX], 0), g(0, 2));
        assert_eq!(part(&[16, u32::MAX], 1), g(2, 13));
        // Needs that fit side by side are scaled up to cover the device.
        assert_eq!(part(&[40, 40], 0), g(0, 8));
        assert_eq!(part(&[8, 24, 88], 0), g(0, 1));
        assert_eq!(part(&[8, 24, 88], 1), g(1, 3));
        assert_eq!(part(&[8, 24, 88], 2), g(4, 11));
        // Every process gets a group, with more processes than groups too.
        for r in 0..20 {
            let w = part(&[1; 20], r);
            assert!(w.count == 1 && w.end() <= 15, "{w:?}");
        }
        // The parts of any needs tile the groups without a gap, each at least one group.
        for needs in [&[3, 130, 17, 64][..], &[1; 15], &[1, 1, 1, 1, 1, 1, 1, u32::MAX], &[8, 9000, 8]] {
            let mut end = 0;
            for r in 0..needs.len() as u32 {
                let w = part(needs, r);
                assert!(w.first == end && w.count >= 1, "{needs:?} {r}: {w:?}");
                end = w.end();
            }
            assert_eq!(end, 15, "{needs:?}");
        }
        // More busy processes than a view keeps needs of: equal parts that tile the groups.
        let mut end = 0;
        for r in 0..18 {
            let w = board_part(40, 8, 0, 18, &[8; 16], r);
            assert!(w.first == end && (2..=3).contains(&w.count), "{r}: {w:?}");
            end = w.end();
        }
        assert_eq!(end, 40);
    }
}

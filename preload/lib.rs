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
//! blocks). A process alone leaves its kernels where the application put them (the whole
//! device); with several busy, the device's groups are split among them in proportion to their
//! needs, in slot order, and each places its kernels on its part (made on first use, then
//! kept); equal needs make equal parts. A kernel of no more blocks than that part has SMs is
//! never placed: it cannot take more than its share, and runs on whichever SMs are free,
//! without the ordering's cost. A latency-critical process (`RIGHTSIZE_CLASS=latency-critical`,
//! `RIGHTSIZE_QUOTA_SMS=N`) leaves its kernels where they were launched, and while it is busy
//! the others' parts leave its `N` SMs' groups free.
//!
//! Recording (`RIGHTSIZE_RECORD=FILE`, what `rightsize profile --app` sets): every launch is
//! also timed, by kernel name and launch shape ([`sizing`]).
//!
//! Online fits (`RIGHTSIZE_FIT=1`): a kernel no profile has is sized by a fit of its latency
//! against its SMs, timed from its own launches ([`sizing`]).

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::OnceLock;

use cudarc::driver::sys::{self, CUfunction, CUlaunchConfig, CUresult, CUstream};
use rightsize::runtime::policy::{reserved_groups, GroupRange};
use rightsize::runtime::{Device, PartitionId, PartitionPool, PoolSpec};

mod blas;
mod board;
mod sizing;

type Dlsym = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;
type GetProc = unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, u64) -> CUresult;
type GetProcV2 = unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, u64, *mut c_int) -> CUresult;
type Launch = unsafe extern "C" fn(
    CUfunction,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    CUstream,
    *mut *mut c_void,
    *mut *mut c_void,
) -> CUresult;
type LaunchEx = unsafe extern "C" fn(*const CUlaunchConfig, CUfunction, *mut *mut c_void, *mut *mut c_void) -> CUresult;
type StreamSync = unsafe extern "C" fn(CUstream) -> CUresult;
type EventSync = unsafe extern "C" fn(sys::CUevent) -> CUresult;
/// `cuCtxSynchronize` (no argument) and `cuCtxSynchronize_v2` (a context) share a name: the
/// stand-in takes one pointer and hands it on, which serves both (an argument the callee
/// does not take is ignored by the C calling conventions of x86-64 and AArch64).
type CtxSync = unsafe extern "C" fn(sys::CUcontext) -> CUresult;

/// The stream flavours of a launch entry point: the legacy default stream, or per thread.
const LEGACY: usize = 0;
const PER_THREAD: usize = 1;
/// `CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM`.
const PER_THREAD_FLAG: u64 = 2;
/// `CU_STREAM_PER_THREAD`: the per-thread default stream's handle.
const STREAM_PER_THREAD: CUstream = 2 as CUstream;

/// The driver's entry points this library stands in for, as the application asked for them.
static REAL_GET_PROC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static REAL_GET_PROC_V2: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static REAL_LAUNCH: [AtomicPtr<c_void>; 2] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 2];
static REAL_LAUNCH_EX: [AtomicPtr<c_void>; 2] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 2];
static REAL_STREAM_SYNC: [AtomicPtr<c_void>; 2] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 2];
static REAL_EVENT_SYNC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static REAL_CTX_SYNC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// What happened to the launches seen.
static SEEN: AtomicU64 = AtomicU64::new(0);
static PLACED: AtomicU64 = AtomicU64::new(0);
static CAPTURED: AtomicU64 = AtomicU64::new(0);
static FALLBACK: AtomicU64 = AtomicU64::new(0);
/// Launches through `cuLaunchKernelEx` (the rest came through `cuLaunchKernel`).
static VIA_EX: AtomicU64 = AtomicU64::new(0);
/// Launches run where the application put them because no other process of the board was
/// busy ([`board`]).
static ALONE: AtomicU64 = AtomicU64::new(0);
/// Launches of a latency-critical process left where launched while others were busy.
static CRITICAL: AtomicU64 = AtomicU64::new(0);
/// Launches of a best-effort process left where launched while others were busy, none of them
/// latency-critical ([`Left::Shared`]).
static SHARED: AtomicU64 = AtomicU64::new(0);
/// Kernels left where launched, on a board while another process was busy, because they had
/// no more blocks than the window has SMs.
static NARROW: AtomicU64 = AtomicU64::new(0);
/// Work captured into a graph from the partition's stream (`RIGHTSIZE_GRAPHS=1`).
static CAPTURED_PLACED: AtomicU64 = AtomicU64::new(0);
/// Distinct functions (per thread) resolved in the green context, and kept as they were.
static RESOLVED: AtomicU64 = AtomicU64::new(0);
static KEPT: AtomicU64 = AtomicU64::new(0);

/// With `RIGHTSIZE_PRELOAD_TRACE=FILE`, every driver symbol looked up (through `dlsym` or
/// `cuGetProcAddress`) is appended to FILE, for finding how a library reaches the driver.
fn trace_lookup(how: &str, symbol: *const c_char, detail: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    static FILE: OnceLock<Option<std::sync::Mutex<std::fs::File>>> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        let path = std::env::var_os("RIGHTSIZE_PRELOAD_TRACE")?;
        std::fs::OpenOptions::new().create(true).append(true).open(path).ok().map(std::sync::Mutex::new)
    });
    if let (Some(f), false) = (file, symbol.is_null()) {
        // SAFETY: a NUL-terminated name (checked non-null).
        let name = unsafe { CStr::from_ptr(symbol) }.to_string_lossy();
        if name.starts_with("cu") {
            if let Ok(mut f) = f.lock() {
                let _ = writeln!(f, "{how} {name} {detail}");
            }
        }
    }
}

/// libc's `dlsym` (the next one after this library's).
fn real_dlsym() -> Option<Dlsym> {
    static REAL: OnceLock<Option<Dlsym>> = OnceLock::new();
    *REAL.get_or_init(|| {
        for version in [c"GLIBC_2.34", c"GLIBC_2.2.5"] {
            // SAFETY: looks a versioned symbol up; both strings are NUL-terminated.
            let p = unsafe { libc::dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), version.as_ptr()) };
            if !p.is_null() {
                // SAFETY: glibc's dlsym has this signature.
                return Some(unsafe { std::mem::transmute::<*mut c_void, Dlsym>(p) });
            }
        }
        None
    })
}

/// The driver's own `name` (a NUL-terminated symbol of libcuda), looked up in libcuda itself.
fn driver_symbol(name: &CStr) -> *mut c_void {
    let Some(dlsym) = real_dlsym() else { return std::ptr::null_mut() };
    // SAFETY: dlopen of the driver library (already loaded by a CUDA application).
    let lib = unsafe { libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
    if lib.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: a live handle and a NUL-terminated name.
    unsafe { dlsym(lib, name.as_ptr()) }
}

/// The driver's entry point kept in `slot`, looked up in libcuda as `name` the first time the
/// application did not hand it over (null: none).
fn driver_entry(slot: &AtomicPtr<c_void>, name: &CStr) -> *mut c_void {
    let mut p = slot.load(Ordering::Acquire);
    if p.is_null() {
        p = driver_symbol(name);
        slot.store(p, Ordering::Release);
    }
    p
}

/// Stores `real` in `slot` (unless it is one of this library's own entry points) and returns
/// `ours` in its place.
fn stand_in(slot: &AtomicPtr<c_void>, real: *mut c_void, ours: *mut c_void) -> *mut c_void {
    if real != ours {
        slot.store(real, Ordering::Release);
    }
    ours
}

/// `dlsym`: as libc's, except that the driver's `cuGetProcAddress` is this library's.
///
/// # Safety
/// As libc's `dlsym`.
#[no_mangle]
pub unsafe extern "C" fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void {
    let Some(real) = real_dlsym() else { return std::ptr::null_mut() };
    // SAFETY: the caller's contract.
    let p = unsafe { real(handle, symbol) };
    if p.is_null() || symbol.is_null() {
        return p;
    }
    trace_lookup("dlsym", symbol, format_args!(""));
    // SAFETY: a NUL-terminated name (the caller's contract).
    match unsafe { CStr::from_ptr(symbol) }.to_bytes() {
        b"cuGetProcAddress" => stand_in(&REAL_GET_PROC, p, cuGetProcAddress as *mut c_void),
        b"cuGetProcAddress_v2" => stand_in(&REAL_GET_PROC_V2, p, cuGetProcAddress_v2 as *mut c_void),
        _ => p,
    }
}

/// Puts this library's launch entry points in place of the driver's in `*pfn`, for `symbol`
/// asked with `flags`.
///
/// # Safety
/// `symbol` is NUL-terminated; `pfn` is null or holds what the driver wrote.
unsafe fn substitute(symbol: *const c_char, pfn: *mut *mut c_void, flags: u64) {
    if symbol.is_null() || pfn.is_null() {
        return;
    }
    // SAFETY: the caller's contract.
    let (name, real) = unsafe { (CStr::from_ptr(symbol).to_bytes(), *pfn) };
    if real.is_null() {
        return;
    }
    trace_lookup("getproc", symbol, format_args!("flags {flags}"));
    let flavour = if flags & PER_THREAD_FLAG != 0 { PER_THREAD } else { LEGACY };
    let ours = match (name, flavour) {
        (b"cuLaunchKernel", LEGACY) => stand_in(&REAL_LAUNCH[LEGACY], real, cuLaunchKernel as *mut c_void),
        (b"cuLaunchKernel", _) => stand_in(&REAL_LAUNCH[PER_THREAD], real, cuLaunchKernel_ptsz as *mut c_void),
        (b"cuLaunchKernelEx", LEGACY) => stand_in(&REAL_LAUNCH_EX[LEGACY], real, cuLaunchKernelEx as *mut c_void),
        (b"cuLaunchKernelEx", _) => stand_in(&REAL_LAUNCH_EX[PER_THREAD], real, cuLaunchKernelEx_ptsz as *mut c_void),
        (b"cuGetProcAddress", _) => stand_in(&REAL_GET_PROC_V2, real, cuGetProcAddress_v2 as *mut c_void),
        // Waits say when this process is busy, on a board only.
        (b"cuStreamSynchronize", LEGACY) if board::board().is_some() => {
            stand_in(&REAL_STREAM_SYNC[LEGACY], real, stream_sync as *mut c_void)
        }
        (b"cuStreamSynchronize", _) if board::board().is_some() => {
            stand_in(&REAL_STREAM_SYNC[PER_THREAD], real, stream_sync_ptsz as *mut c_void)
        }
        (b"cuEventSynchronize", _) if board::board().is_some() => {
            stand_in(&REAL_EVENT_SYNC, real, event_sync as *mut c_void)
        }
        (b"cuCtxSynchronize", _) if board::board().is_some() => stand_in(&REAL_CTX_SYNC, real, ctx_sync as *mut c_void),
        _ => return,
    };
    // SAFETY: `pfn` is writable (the caller's contract).
    unsafe { *pfn = ours };
}

/// The driver's `cuGetProcAddress` (CUDA 11.3–12.x signature), with launches substituted.
///
/// # Safety
/// As the driver's.
#[no_mangle]
pub unsafe extern "C" fn cuGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
) -> CUresult {
    let real = driver_entry(&REAL_GET_PROC, c"cuGetProcAddress");
    if real.is_null() || real == cuGetProcAddress as *mut c_void {
        return CUresult::CUDA_ERROR_NOT_INITIALIZED;
    }
    // SAFETY: the driver's function, with the caller's arguments.
    let r = unsafe { std::mem::transmute::<*mut c_void, GetProc>(real)(symbol, pfn, cuda_version, flags) };
    if r == CUresult::CUDA_SUCCESS {
        // SAFETY: the caller's arguments; the driver wrote `*pfn`.
        unsafe { substitute(symbol, pfn, flags) };
    }
    r
}

/// The driver's `cuGetProcAddress_v2`, with launches substituted.
///
/// # Safety
/// As the driver's.
#[no_mangle]
pub unsafe extern "C" fn cuGetProcAddress_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    flags: u64,
    status: *mut c_int,
) -> CUresult {
    let real = driver_entry(&REAL_GET_PROC_V2, c"cuGetProcAddress_v2");
    if real.is_null() || real == cuGetProcAddress_v2 as *mut c_void {
        return CUresult::CUDA_ERROR_NOT_INITIALIZED;
    }
    // SAFETY: the driver's function, with the caller's arguments.
    let r = unsafe { std::mem::transmute::<*mut c_void, GetProcV2>(real)(symbol, pfn, cuda_version, flags, status) };
    if r == CUresult::CUDA_SUCCESS {
        // SAFETY: the caller's arguments; the driver wrote `*pfn`.
        unsafe { substitute(symbol, pfn, flags) };
    }
    r
}

/// `work` with this process marked busy on the board (if it has one) while it runs.
fn busy(work: impl FnOnce() -> CUresult) -> CUresult {
    let _waiting = board::board().map(board::Board::waiting);
    work()
}

fn stream_sync_of(flavour: usize, stream: CUstream) -> CUresult {
    let name = if flavour == LEGACY { c"cuStreamSynchronize" } else { c"cuStreamSynchronize_ptsz" };
    let p = driver_entry(&REAL_STREAM_SYNC[flavour], name);
    if p.is_null() {
        return CUresult::CUDA_ERROR_NOT_INITIALIZED;
    }
    // SAFETY: the driver's cuStreamSynchronize, with the application's stream.
    busy(|| unsafe { std::mem::transmute::<*mut c_void, StreamSync>(p)(stream) })
}

/// The driver's `cuStreamSynchronize`, the process marked busy while it waits.
extern "C" fn stream_sync(stream: CUstream) -> CUresult {
    stream_sync_of(LEGACY, stream)
}

/// The driver's `cuStreamSynchronize_ptsz`, the process marked busy while it waits.
extern "C" fn stream_sync_ptsz(stream: CUstream) -> CUresult {
    stream_sync_of(PER_THREAD, stream)
}

/// The driver's `cuEventSynchronize`, the process marked busy while it waits.
extern "C" fn event_sync(event: sys::CUevent) -> CUresult {
    let p = driver_entry(&REAL_EVENT_SYNC, c"cuEventSynchronize");
    if p.is_null() {
        return CUresult::CUDA_ERROR_NOT_INITIALIZED;
    }
    // SAFETY: the driver's cuEventSynchronize, with the application's event.
    busy(|| unsafe { std::mem::transmute::<*mut c_void, EventSync>(p)(event) })
}

/// The driver's `cuCtxSynchronize` as the application asked for it (either signature), the
/// process marked busy while it waits.
extern "C" fn ctx_sync(ctx: sys::CUcontext) -> CUresult {
    let p = REAL_CTX_SYNC.load(Ordering::Acquire);
    if p.is_null() {
        return CUresult::CUDA_ERROR_NOT_INITIALIZED;
    }
    // SAFETY: the entry point the driver handed the application for this name, called with
    // the argument the application passed (see `CtxSync`).
    busy(|| unsafe { std::mem::transmute::<*mut c_void, CtxSync>(p)(ctx) })
}

/// The partition kernels go to.
struct Target {
    // Dropped never (a static); kept for its stream and green context.
    _pool: PartitionPool,
    /// The partition's stream.
    stream: CUstream,
    device: sys::CUdevice,
    /// The green context as a context, current while its kernels are launched.
    context: sys::CUcontext,
    /// The green context, for each thread's stream of captured work ([`capture_stream`]).
    green: sys::CUgreenCtx,
    sms: u32,
}

// SAFETY: the pool's handles may be used from any thread.
unsafe impl Send for Target {}
// SAFETY: as above; the pool is immutable.
unsafe impl Sync for Target {}

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

/// `make` with the calling thread's current context kept as it was.
fn keeping_context<T>(make: impl FnOnce() -> T) -> T {
    let mut current = std::ptr::null_mut();
    // SAFETY: writes the calling thread's current context.
    unsafe { sys::cuCtxGetCurrent(&mut current) };
    let made = make();
    // SAFETY: the context that was current (or none).
    unsafe { sys::cuCtxSetCurrent(current) };
    made
}

/// `run` with `context` current, the calling thread's own restored after.
fn in_context<T>(context: sys::CUcontext, run: impl FnOnce() -> T) -> T {
    keeping_context(|| {
        // SAFETY: a live context of the interposer's (a partition's green context).
        unsafe { sys::cuCtxSetCurrent(context) };
        run()
    })
}

/// The partition of `RIGHTSIZE_SMS`, made on first use; `None` (kernels pass through) when
/// unset or when it cannot be made (said once on stderr).
fn target() -> Option<&'static Target> {
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
struct Shares {
    ordinal: usize,
    groups: u32,
    granularity: u32,
    /// The window of `count` groups from group `first` at `first · groups + count − 1`.
    made: Vec<OnceLock<Option<&'static Target>>>,
}

/// The board's windows, or `None` (kernels pass through) when the device has no partitions
/// (said once on stderr).
fn shares() -> Option<&'static Shares> {
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

/// Windows a process on a board made.
static WINDOWS: AtomicU64 = AtomicU64::new(0);

impl Shares {
    /// This process's window as the board `v` lays the busy processes out (`None`: it could
    /// not be made).
    fn window(&self, v: &board::View) -> Option<&'static Target> {
        // Busy latency-critical processes' quotas are kept free as a runtime's policy keeps them.
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
                    WINDOWS.fetch_add(1, Ordering::Relaxed);
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
/// work is placed on: [`capture_rule`]) for work being captured: a capture the stream joins
/// is the thread's own, so another thread's launches on the window (on its shared stream)
/// never join it. Made with the thread's capture mode relaxed (a capture under way may forbid
/// it otherwise), and kept for the thread's life; `None` if it cannot be made.
fn capture_stream(t: &Target) -> Option<CUstream> {
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
    /// This thread's event for ordering streams (made in its current context on first use).
    static EVENT: Cell<sys::CUevent> = const { Cell::new(std::ptr::null_mut()) };
    /// The partition's function of each function handle the application launched (0: keep
    /// it): the CUDA runtime launches context-independent kernels (`CUkernel`), which run in
    /// the context they are resolved in, so they are resolved in the green context.
    static FUNCTIONS: std::cell::RefCell<std::collections::HashMap<(usize, usize), usize>> = Default::default();
}

/// `f` as a function of the partition's green context (`t.context`): a `CUkernel` resolved
/// there (`true`), or a context's own `CUfunction` as it is (`false`; it runs on the stream's
/// SMs when launched from its own context, as the runtime's kernels are).
fn on_partition(t: &Target, f: CUfunction) -> (CUfunction, bool) {
    let resolved = FUNCTIONS.with(|m| {
        *m.borrow_mut().entry((f as usize, t.context as usize)).or_insert_with(|| {
            let mut g = std::ptr::null_mut();
            // SAFETY: the green context is current for the lookup; a handle that is not a
            // CUkernel is refused by the driver.
            let r = in_context(t.context, || unsafe { sys::cuKernelGetFunction(&mut g, f.cast()) });
            if r == CUresult::CUDA_SUCCESS && !g.is_null() {
                RESOLVED.fetch_add(1, Ordering::Relaxed);
                g as usize
            } else {
                KEPT.fetch_add(1, Ordering::Relaxed);
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
fn on_target_device(t: &Target) -> bool {
    let mut dev = 0;
    // SAFETY: writes one int.
    unsafe { sys::cuCtxGetDevice(&mut dev) == CUresult::CUDA_SUCCESS && dev == t.device }
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
/// parts by.
fn place<R>(
    flavour: usize,
    stream: CUstream,
    blocks: Option<u64>,
    need: u32,
    ok: impl Fn(&R) -> bool,
    work: impl FnOnce(Option<&Target>, CUstream) -> R,
) -> R {
    SEEN.fetch_add(1, Ordering::Relaxed);
    let board = board::board();
    let target = match board {
        Some(b) => {
            let now = board::now_ns();
            b.launched(now, need);
            let v = b.view(now);
            if let Some(why) = left_on_board(&v) {
                why.count().fetch_add(1, Ordering::Relaxed);
                return work(None, stream);
            }
            shares().and_then(|s| s.window(&v))
        }
        None => target(),
    };
    let Some(t) = target else { return work(None, stream) };
    if !on_target_device(t) {
        FALLBACK.fetch_add(1, Ordering::Relaxed);
        return work(None, stream);
    }
    if board.is_some() && blocks.is_some_and(|n| n <= u64::from(t.sms)) {
        NARROW.fetch_add(1, Ordering::Relaxed);
        return work(None, stream);
    }
    let app = if stream.is_null() && flavour == PER_THREAD { STREAM_PER_THREAD } else { stream };
    let mut capture = sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
    // SAFETY: a stream of the application's; writes one enum.
    let r = unsafe { sys::cuStreamIsCapturing(app, &mut capture) };
    let (part, captured) =
        match capture_rule((r == CUresult::CUDA_SUCCESS).then_some(capture), board.is_some(), captured_placed()) {
            CaptureRule::Eager => (t.stream, false),
            CaptureRule::Leave => {
                CAPTURED.fetch_add(1, Ordering::Relaxed);
                return work(None, stream);
            }
            CaptureRule::Captured => match capture_stream(t) {
                Some(s) => (s, true),
                None => {
                    FALLBACK.fetch_add(1, Ordering::Relaxed);
                    return work(None, stream);
                }
            },
        };
    let event = EVENT.with(|e| {
        if e.get().is_null() {
            let mut made = std::ptr::null_mut();
            // SAFETY: an event of the current context, kept for the thread's life.
            let r = unsafe { sys::cuEventCreate(&mut made, sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32) };
            if r == CUresult::CUDA_SUCCESS {
                e.set(made);
            }
        }
        e.get()
    });
    // SAFETY: live streams and event of the same context; a wait takes the event's state at
    // the call, so one event serves both directions.
    let ordered = |from: CUstream, to: CUstream| unsafe {
        sys::cuEventRecord(event, from) == CUresult::CUDA_SUCCESS
            && sys::cuStreamWaitEvent(to, event, 0) == CUresult::CUDA_SUCCESS
    };
    if event.is_null() || !ordered(app, part) {
        FALLBACK.fetch_add(1, Ordering::Relaxed);
        return work(None, stream);
    }
    // Under capture the two events fork the partition's stream into the application's capture
    // and join it back: the work becomes a node of the graph, captured in the green context.
    let r = work(Some(t), part);
    if ok(&r) {
        // (Under capture nothing may be waited for: a join that failed ends the application's
        // capture with an error, which it sees.)
        if !ordered(part, app) && !captured {
            // The application's stream could not be made to wait: wait here instead.
            // SAFETY: a live stream.
            unsafe { sys::cuStreamSynchronize(part) };
        }
        PLACED.fetch_add(1, Ordering::Relaxed);
        if captured {
            CAPTURED_PLACED.fetch_add(1, Ordering::Relaxed);
        }
    }
    r
}

/// Why a launch on a board stays where the application put it (the whole device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// No other process is busy.
    Alone,
    /// Its process is latency-critical: the others keep its quota free.
    Critical,
    /// Other processes are busy, but none of them latency-critical: nothing needs protecting,
    /// so the processes share every SM as under MPS (confined, a Python-bound process's
    /// kernels would leave SMs idle that MPS fills with another's).
    Shared,
}

impl Left {
    fn count(self) -> &'static AtomicU64 {
        match self {
            Left::Alone => &ALONE,
            Left::Critical => &CRITICAL,
            Left::Shared => &SHARED,
        }
    }
}

/// Whether a launch that sees `v` stays where the application put it, and why; `None`: it
/// goes to its part of the device (a busy latency-critical process's quota kept free).
fn left_on_board(v: &board::View) -> Option<Left> {
    if v.busy <= 1 {
        Some(Left::Alone)
    } else if v.critical {
        Some(Left::Critical)
    } else if v.reserved_sms == 0 {
        Some(Left::Shared)
    } else {
        None
    }
}

/// Places a kernel launch: `launch` runs function `f` on a stream; on the partition a
/// `CUkernel` is resolved in its green context, which is current while it is launched.
fn place_kernel(
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

/// The driver's `cuLaunchKernel` of `flavour`.
fn real_launch(flavour: usize) -> Option<Launch> {
    let name = if flavour == LEGACY { c"cuLaunchKernel" } else { c"cuLaunchKernel_ptsz" };
    let p = driver_entry(&REAL_LAUNCH[flavour], name);
    // SAFETY: the driver's cuLaunchKernel has this signature.
    (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, Launch>(p) })
}

/// The driver's `cuLaunchKernelEx` of `flavour`.
fn real_launch_ex(flavour: usize) -> Option<LaunchEx> {
    let name = if flavour == LEGACY { c"cuLaunchKernelEx" } else { c"cuLaunchKernelEx_ptsz" };
    let p = driver_entry(&REAL_LAUNCH_EX[flavour], name);
    // SAFETY: the driver's cuLaunchKernelEx has this signature.
    (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, LaunchEx>(p) })
}

#[allow(clippy::too_many_arguments)]
fn launch_kernel(
    flavour: usize,
    f: CUfunction,
    grid: [c_uint; 3],
    block: [c_uint; 3],
    shared: c_uint,
    stream: CUstream,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let Some(real) = real_launch(flavour) else { return CUresult::CUDA_ERROR_NOT_INITIALIZED };
    place_kernel(flavour, f, grid, block, stream, |f, s| {
        // SAFETY: the application's launch, on `s` (its stream or the partition's).
        unsafe { real(f, grid[0], grid[1], grid[2], block[0], block[1], block[2], shared, s, params, extra) }
    })
}

fn launch_kernel_ex(
    flavour: usize,
    config: *const CUlaunchConfig,
    f: CUfunction,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    let Some(real) = real_launch_ex(flavour) else { return CUresult::CUDA_ERROR_NOT_INITIALIZED };
    VIA_EX.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the application's configuration (null is the driver's to refuse).
    let Some(c) = (unsafe { config.as_ref() }) else {
        // SAFETY: passed on as given.
        return unsafe { real(config, f, params, extra) };
    };
    let (grid, block) = ([c.gridDimX, c.gridDimY, c.gridDimZ], [c.blockDimX, c.blockDimY, c.blockDimZ]);
    place_kernel(flavour, f, grid, block, c.hStream, |f, s| {
        let mut on = *c;
        on.hStream = s;
        // SAFETY: the application's launch, on `s`.
        unsafe { real(&on, f, params, extra) }
    })
}

/// Defines an exported stand-in for the driver's `cuLaunchKernel` of one stream flavour.
macro_rules! launch_kernel_entry {
    ($(#[$doc:meta])* $name:ident, $flavour:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As the driver's.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            f: CUfunction,
            gx: c_uint,
            gy: c_uint,
            gz: c_uint,
            bx: c_uint,
            by: c_uint,
            bz: c_uint,
            shared: c_uint,
            stream: CUstream,
            params: *mut *mut c_void,
            extra: *mut *mut c_void,
        ) -> CUresult {
            launch_kernel($flavour, f, [gx, gy, gz], [bx, by, bz], shared, stream, params, extra)
        }
    };
}

launch_kernel_entry!(
    /// The driver's `cuLaunchKernel`, placed on the partition.
    cuLaunchKernel,
    LEGACY
);
launch_kernel_entry!(
    /// The driver's `cuLaunchKernel_ptsz` (per-thread default stream), placed on the partition.
    cuLaunchKernel_ptsz,
    PER_THREAD
);

/// The driver's `cuLaunchKernelEx`, placed on the partition.
///
/// # Safety
/// As the driver's.
#[no_mangle]
pub unsafe extern "C" fn cuLaunchKernelEx(
    config: *const CUlaunchConfig,
    f: CUfunction,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    launch_kernel_ex(LEGACY, config, f, params, extra)
}

/// The driver's `cuLaunchKernelEx_ptsz`, placed on the partition.
///
/// # Safety
/// As the driver's.
#[no_mangle]
pub unsafe extern "C" fn cuLaunchKernelEx_ptsz(
    config: *const CUlaunchConfig,
    f: CUfunction,
    params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    launch_kernel_ex(PER_THREAD, config, f, params, extra)
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

/// What was placed, as JSON.
pub fn report() -> String {
    let sms = target().map_or(0, |t| t.sms);
    format!(
        "{{\"sms\": {sms}, \"board_slots\": {}, \"windows_made\": {}, \"launches\": {}, \"placed\": {}, \"alone\": {}, \"critical\": {}, \"shared\": {}, \"narrow\": {}, \"captured\": {}, \"fallback\": {}, \"via_ex\": {}, \"functions_resolved\": {}, \"functions_kept\": {}, \"blas_calls\": {}, \"captured_placed\": {}, \"fits\": {}}}",
        board::board().map_or(0, board::Board::len),
        WINDOWS.load(Ordering::Relaxed),
        SEEN.load(Ordering::Relaxed),
        PLACED.load(Ordering::Relaxed),
        ALONE.load(Ordering::Relaxed),
        CRITICAL.load(Ordering::Relaxed),
        SHARED.load(Ordering::Relaxed),
        NARROW.load(Ordering::Relaxed),
        CAPTURED.load(Ordering::Relaxed),
        FALLBACK.load(Ordering::Relaxed),
        VIA_EX.load(Ordering::Relaxed),
        RESOLVED.load(Ordering::Relaxed),
        KEPT.load(Ordering::Relaxed),
        blas::CALLS.load(Ordering::Relaxed),
        CAPTURED_PLACED.load(Ordering::Relaxed),
        sizing::fits_report()
    )
}

extern "C" fn write_log() {
    if let Some(path) = std::env::var_os("RIGHTSIZE_PRELOAD_LOG") {
        if let Err(e) = std::fs::write(&path, report() + "\n") {
            eprintln!("rightsize preload: cannot write {}: {e}", std::path::Path::new(&path).display());
        }
    }
}

/// Has the log written at exit (once, however often asked).
fn write_log_at_exit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| at_exit(write_log));
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
    fn only_a_busy_latency_critical_process_confines_the_others() {
        let v = |busy, critical, reserved_sms| board::View { busy, critical, reserved_sms, ..Default::default() };
        assert_eq!(left_on_board(&v(1, false, 0)), Some(Left::Alone));
        assert_eq!(left_on_board(&v(1, true, 32)), Some(Left::Alone));
        assert_eq!(left_on_board(&v(3, true, 32)), Some(Left::Critical));
        // Best-effort processes among themselves share every SM, as under MPS.
        assert_eq!(left_on_board(&v(4, false, 0)), Some(Left::Shared));
        // A busy latency-critical process's quota is kept free of the others' kernels.
        assert_eq!(left_on_board(&v(2, false, 32)), None);
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

    #[test]
    fn dlsym_hands_back_libcs_symbols_and_its_own_get_proc_address() {
        let libc_handle = unsafe { libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_LAZY) };
        assert!(!libc_handle.is_null());
        let ours = unsafe { dlsym(libc_handle, c"strlen".as_ptr()) };
        let theirs = unsafe { real_dlsym().unwrap()(libc_handle, c"strlen".as_ptr()) };
        assert!(!ours.is_null() && ours == theirs);
        assert!(unsafe { dlsym(libc_handle, c"no_such_symbol_anywhere".as_ptr()) }.is_null());
    }

    #[test]
    fn substitute_swaps_only_launch_entry_points() {
        let mut p = 0x1234usize as *mut c_void;
        unsafe { substitute(c"cuMemAlloc".as_ptr(), &mut p, 0) };
        assert_eq!(p as usize, 0x1234);
        unsafe { substitute(c"cuLaunchKernel".as_ptr(), &mut p, PER_THREAD_FLAG) };
        assert_eq!(p, cuLaunchKernel_ptsz as *mut c_void);
        assert_eq!(REAL_LAUNCH[PER_THREAD].load(Ordering::Acquire) as usize, 0x1234);
        // Asked again, it does not store itself as the driver's.
        unsafe { substitute(c"cuLaunchKernel".as_ptr(), &mut p, PER_THREAD_FLAG) };
        assert_eq!(REAL_LAUNCH[PER_THREAD].load(Ordering::Acquire) as usize, 0x1234);
        REAL_LAUNCH[PER_THREAD].store(std::ptr::null_mut(), Ordering::Release);
        // Graph launches are the driver's.
        let mut g = 0x5678usize as *mut c_void;
        unsafe { substitute(c"cuGraphLaunch".as_ptr(), &mut g, 0) };
        assert_eq!(g as usize, 0x5678);
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

    #[test]
    fn without_settings_nothing_is_placed() {
        assert!(report().contains("\"sms\": 0"));
    }
}

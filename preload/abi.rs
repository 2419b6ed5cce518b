//! The library's exported ABI surface: the symbols it puts in place of the driver's (and
//! libc's `dlsym`), where it keeps the real ones, and the launch entry points, which hand every
//! launch to [`crate::placement`]. How the application reaches them is in the crate's
//! documentation; cuBLAS's stand-ins are in [`crate::blas`].

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use cudarc::driver::sys::{self, CUfunction, CUlaunchConfig, CUresult, CUstream};

use crate::board;
use crate::placement::place_kernel;
use crate::stats::COUNTS;

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
pub(crate) const LEGACY: usize = 0;
pub(crate) const PER_THREAD: usize = 1;
/// `CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM`.
const PER_THREAD_FLAG: u64 = 2;
/// `CU_STREAM_PER_THREAD`: the per-thread default stream's handle.
pub(crate) const STREAM_PER_THREAD: CUstream = 2 as CUstream;

/// The driver's entry points this library stands in for, as the application asked for them.
static REAL_GET_PROC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static REAL_GET_PROC_V2: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static REAL_LAUNCH: [AtomicPtr<c_void>; 2] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 2];
static REAL_LAUNCH_EX: [AtomicPtr<c_void>; 2] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 2];
static REAL_STREAM_SYNC: [AtomicPtr<c_void>; 2] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 2];
static REAL_EVENT_SYNC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static REAL_CTX_SYNC: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

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
pub(crate) fn real_dlsym() -> Option<Dlsym> {
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

/// `work` with this process marked busy on the board (if it has one) while it runs; its end
/// ends the process's period of work ([`crate::starving`]).
fn busy(work: impl FnOnce() -> CUresult) -> CUresult {
    if crate::bypassed() {
        return work();
    }
    let waiting = board::board().map(board::Board::waiting);
    let r = work();
    drop(waiting);
    crate::starving::waited();
    r
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
    if crate::bypassed() {
        // SAFETY: the application's launch, as it made it.
        return unsafe {
            real(f, grid[0], grid[1], grid[2], block[0], block[1], block[2], shared, stream, params, extra)
        };
    }
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
    if crate::bypassed() {
        // SAFETY: the application's launch, as it made it.
        return unsafe { real(config, f, params, extra) };
    }
    COUNTS.via_ex.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

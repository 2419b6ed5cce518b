//! cuBLAS calls placed on the partition. cuBLAS launches its kernels by a path the driver-level
//! stand-ins do not see (docs/interposer-h200.md), but it runs them on the stream it is given
//! and resolves them in that stream's context: so the calls PyTorch makes for its GEMMs are
//! stood in for here, and run on the partition's stream, ordered with the application's like
//! a kernel. `cublasGemmEx` and `cublasGemmStridedBatchedEx` take their stream from the handle:
//! it is set to the partition's for the call and back after, and the workspace the application
//! gave the handle (which setting a stream resets) is given again each time.

use std::collections::HashMap;
use std::ffi::{c_int, c_longlong, c_void, CStr};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};

use cudarc::driver::sys::CUstream;

use crate::abi::{real_dlsym, LEGACY};
use crate::placement::place;
use crate::sizing;
use crate::stats::COUNTS;
use crate::target::Target;

/// `CUBLAS_STATUS_SUCCESS`.
const SUCCESS: c_int = 0;
/// `CUBLAS_STATUS_NOT_INITIALIZED`, when the library's own function cannot be found.
const NOT_INITIALIZED: c_int = 1;

type Handle = *mut c_void;

/// The libraries cuBLAS's functions may come from, as loaded (PyTorch loads them into a
/// local scope, which `RTLD_NEXT` does not search).
const LIBRARIES: [&CStr; 4] = [c"libcublas.so.13", c"libcublasLt.so.13", c"libcublas.so.12", c"libcublasLt.so.12"];

/// cuBLAS's own definition of `name` (the next after this library's, or the one in a loaded
/// cuBLAS library), found once.
fn next<F: Copy>(slot: &'static OnceLock<usize>, name: &CStr) -> Option<F> {
    let p = *slot.get_or_init(|| {
        let Some(dlsym) = real_dlsym() else { return 0 };
        // SAFETY: lookups of a NUL-terminated name; dlopen only finds libraries already loaded.
        unsafe {
            let p = dlsym(libc::RTLD_NEXT, name.as_ptr());
            if !p.is_null() {
                return p as usize;
            }
            for lib in LIBRARIES {
                let h = libc::dlopen(lib.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
                if !h.is_null() {
                    let p = dlsym(h, name.as_ptr());
                    if !p.is_null() {
                        return p as usize;
                    }
                }
            }
            0
        }
    });
    // SAFETY: `F` is the function's type (each caller names its own).
    (p != 0).then(|| unsafe { std::mem::transmute_copy::<usize, F>(&p) })
}

/// The workspace each handle was given by the application (pointer, bytes).
static WORKSPACES: Mutex<Option<HashMap<usize, (usize, usize)>>> = Mutex::new(None);

type SetWorkspace = unsafe extern "C" fn(Handle, *mut c_void, usize) -> c_int;
type SetStream = unsafe extern "C" fn(Handle, CUstream) -> c_int;
type GetStream = unsafe extern "C" fn(Handle, *mut CUstream) -> c_int;

fn set_workspace_fn() -> Option<SetWorkspace> {
    static F: OnceLock<usize> = OnceLock::new();
    next(&F, c"cublasSetWorkspace_v2")
}

/// `cublasSetWorkspace_v2`: as cuBLAS's, remembered for the handle — also while the library
/// stands aside ([`crate::bypassed`]), so that a call placed after it gives the handle back
/// the workspace it has then, not an older one.
///
/// # Safety
/// As cuBLAS's.
#[no_mangle]
pub unsafe extern "C" fn cublasSetWorkspace_v2(handle: Handle, workspace: *mut c_void, bytes: usize) -> c_int {
    let Some(real) = set_workspace_fn() else { return NOT_INITIALIZED };
    if let Ok(mut w) = WORKSPACES.lock() {
        w.get_or_insert_with(HashMap::new).insert(handle as usize, (workspace as usize, bytes));
    }
    // SAFETY: the caller's arguments.
    unsafe { real(handle, workspace, bytes) }
}

/// Sets the handle's stream to `stream` and gives it `workspace` (pointer, bytes) again,
/// which setting a stream resets.
fn set_stream(handle: Handle, stream: CUstream, workspace: Option<(usize, usize)>) -> c_int {
    static SET: OnceLock<usize> = OnceLock::new();
    let Some(set) = next::<SetStream>(&SET, c"cublasSetStream_v2") else { return NOT_INITIALIZED };
    // SAFETY: a live handle and stream.
    let r = unsafe { set(handle, stream) };
    if let (SUCCESS, Some((ptr, bytes)), Some(ws)) = (r, workspace, set_workspace_fn()) {
        // SAFETY: the workspace the application gave this handle.
        unsafe { ws(handle, ptr as *mut c_void, bytes) };
    }
    r
}

/// Places a cuBLAS call `name` of `shape` that runs on its handle's stream.
fn place_handle_call(handle: Handle, name: &'static str, shape: sizing::Shape, call: impl FnOnce() -> c_int) -> c_int {
    COUNTS.blas_calls.fetch_add(1, Ordering::Relaxed);
    static GET: OnceLock<usize> = OnceLock::new();
    let Some(get) = next::<GetStream>(&GET, c"cublasGetStream_v2") else { return call() };
    let mut app = std::ptr::null_mut();
    // SAFETY: a live handle; writes one stream.
    if unsafe { get(handle, &mut app) } != SUCCESS {
        return call();
    }
    place_call(name, shape, app, |t, s| match t {
        None => call(),
        Some(_) => {
            let workspace = WORKSPACES.lock().ok().and_then(|w| w.as_ref()?.get(&(handle as usize)).copied());
            let r = match set_stream(handle, s, workspace) {
                SUCCESS => call(),
                e => e,
            };
            set_stream(handle, app, workspace);
            r
        }
    })
}

/// Places cuBLAS call `name` of `shape`, issued to `stream`, as a kernel is placed: sized by
/// its need, timed when recording; `call` runs it on the stream it is given (the partition's,
/// when it gets a target).
fn place_call(
    name: &'static str,
    shape: sizing::Shape,
    stream: CUstream,
    call: impl FnOnce(Option<&Target>, CUstream) -> c_int,
) -> c_int {
    let ok = |r: &c_int| *r == SUCCESS;
    place(LEGACY, stream, None, sizing::call_need(name, &shape), ok, |t, s| {
        sizing::timed(s, name.as_ptr() as usize, shape, None, || Some(name.into()), ok, || call(t, s))
    })
}

/// A GEMM's shape: `m, n, k, batch, transa, transb` (each as given; negative ones as 0).
fn gemm_shape(m: c_int, n: c_int, k: c_int, batch: c_int, transa: c_int, transb: c_int) -> sizing::Shape {
    [m, n, k, batch, transa, transb].map(|v| u64::try_from(v).unwrap_or(0))
}

/// Defines the stand-in for a cuBLAS call that runs on its handle's stream: the same
/// signature, cuBLAS's own function called on the partition ([`place_handle_call`]).
macro_rules! handle_call {
    ($(#[$doc:meta])* $name:ident($handle:ident $(, $arg:ident: $ty:ty)* $(,)?), $shape:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As cuBLAS's.
        #[no_mangle]
        #[allow(clippy::too_many_arguments)]
        pub unsafe extern "C" fn $name($handle: Handle $(, $arg: $ty)*) -> c_int {
            type F = unsafe extern "C" fn(Handle $(, $ty)*) -> c_int;
            static REAL: OnceLock<usize> = OnceLock::new();
            let name = CStr::from_bytes_with_nul(concat!(stringify!($name), "\0").as_bytes()).expect("a name");
            let Some(real) = next::<F>(&REAL, name) else { return NOT_INITIALIZED };
            if crate::bypassed() {
                // SAFETY: the application's call, as it made it.
                return unsafe { real($handle $(, $arg)*) };
            }
            // SAFETY: the application's call.
            place_handle_call($handle, stringify!($name), $shape, || unsafe { real($handle $(, $arg)*) })
        }
    };
}

handle_call!(
    /// `cublasGemmEx`, on the partition.
    cublasGemmEx(
        handle, transa: c_int, transb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void,
        a: *const c_void, a_type: c_int, lda: c_int, b: *const c_void, b_type: c_int, ldb: c_int,
        beta: *const c_void, c: *mut c_void, c_type: c_int, ldc: c_int, compute: c_int, algo: c_int,
    ),
    gemm_shape(m, n, k, 1, transa, transb)
);

handle_call!(
    /// `cublasGemmStridedBatchedEx`, on the partition.
    cublasGemmStridedBatchedEx(
        handle, transa: c_int, transb: c_int, m: c_int, n: c_int, k: c_int, alpha: *const c_void,
        a: *const c_void, a_type: c_int, lda: c_int, stride_a: c_longlong, b: *const c_void,
        b_type: c_int, ldb: c_int, stride_b: c_longlong, beta: *const c_void, c: *mut c_void,
        c_type: c_int, ldc: c_int, stride_c: c_longlong, batch: c_int, compute: c_int, algo: c_int,
    ),
    gemm_shape(m, n, k, batch, transa, transb)
);

/// `cublasLtMatmul`, on the partition (its stream is an argument).
///
/// # Safety
/// As cuBLASLt's.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn cublasLtMatmul(
    light: Handle,
    desc: *mut c_void,
    alpha: *const c_void,
    a: *const c_void,
    a_desc: *mut c_void,
    b: *const c_void,
    b_desc: *mut c_void,
    beta: *const c_void,
    c: *const c_void,
    c_desc: *mut c_void,
    d: *mut c_void,
    d_desc: *mut c_void,
    algo: *const c_void,
    workspace: *mut c_void,
    workspace_bytes: usize,
    stream: CUstream,
) -> c_int {
    type F = unsafe extern "C" fn(
        Handle,
        *mut c_void,
        *const c_void,
        *const c_void,
        *mut c_void,
        *const c_void,
        *mut c_void,
        *const c_void,
        *const c_void,
        *mut c_void,
        *mut c_void,
        *mut c_void,
        *const c_void,
        *mut c_void,
        usize,
        CUstream,
    ) -> c_int;
    static REAL: OnceLock<usize> = OnceLock::new();
    let Some(real) = next::<F>(&REAL, c"cublasLtMatmul") else { return NOT_INITIALIZED };
    // The application's call on stream `s` (its own, or the partition's).
    let call = |s: CUstream| {
        // SAFETY: the application's arguments, with `s` a live stream: the application's, or
        // the partition's (of its green context).
        unsafe {
            real(
                light,
                desc,
                alpha,
                a,
                a_desc,
                b,
                b_desc,
                beta,
                c,
                c_desc,
                d,
                d_desc,
                algo,
                workspace,
                workspace_bytes,
                s,
            )
        }
    };
    if crate::bypassed() {
        return call(stream);
    }
    COUNTS.blas_calls.fetch_add(1, Ordering::Relaxed);
    let shape = lt_shape(a_desc, b_desc, d_desc);
    place_call(LT_MATMUL, shape, stream, |_, s| call(s))
}

/// The name `cublasLtMatmul` is recorded and sized under.
const LT_MATMUL: &str = "cublasLtMatmul";

type LayoutGet = unsafe extern "C" fn(*mut c_void, c_int, *mut c_void, usize, *mut usize) -> c_int;

/// A `cublasLtMatmul`'s shape: the rows and columns of A and B and the batch of D (zeros
/// where a layout cannot be read; nothing is read where no shape is used).
fn lt_shape(a: *mut c_void, b: *mut c_void, d: *mut c_void) -> sizing::Shape {
    // `CUBLASLT_MATRIX_LAYOUT_ROWS`, `_COLS`, `_BATCH_COUNT`.
    const ROWS: c_int = 2;
    const COLS: c_int = 3;
    const BATCH: c_int = 5;
    static GET: OnceLock<usize> = OnceLock::new();
    let get = match next::<LayoutGet>(&GET, c"cublasLtMatrixLayoutGetAttribute") {
        Some(get) if sizing::shapes_wanted() => get,
        _ => return [0; 6],
    };
    let read_u64 = |layout: *mut c_void, attr| {
        let (mut v, mut written) = (0u64, 0usize);
        // SAFETY: a live layout of the application's call; writes at most 8 bytes.
        let r = unsafe { get(layout, attr, (&mut v as *mut u64).cast(), 8, &mut written) };
        if r == SUCCESS {
            v
        } else {
            0
        }
    };
    let batch = {
        let (mut v, mut written) = (0i32, 0usize);
        // SAFETY: as above; the batch count is an int32.
        let r = unsafe { get(d, BATCH, (&mut v as *mut i32).cast(), 4, &mut written) };
        if r == SUCCESS {
            u64::try_from(v).unwrap_or(0)
        } else {
            0
        }
    };
    [read_u64(a, ROWS), read_u64(a, COLS), read_u64(b, ROWS), read_u64(b, COLS), batch, 0]
}

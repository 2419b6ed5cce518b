//! rightsize's C ABI (`librightsize_c.so`, `rightsize.h`): a runtime on one GPU whose policy
//! places every kernel of its tenants, the profiles its policy reads, tenants with a class and
//! a quota, kernels of the library launched by name through the runtime's one launch path,
//! device buffers, and per-tenant placement statistics.
//!
//! Every call returns an [`RsStatus`]; on failure [`rightsize_last_error`] says why, in full.
//! Nothing unwinds or aborts across the boundary: a panic inside is caught and reported as
//! [`RsStatus::Panic`]. A runtime handle may be used from any thread; a tenant handle from the
//! thread that made it (another thread's call is refused), as a tenant keeps per-thread state.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::ThreadId;

use parking_lot::Mutex;
use rightsize::kernels::{Kernel, KernelId, Params, WithParams};
use rightsize::profiler::Profile;
use rightsize::runtime::policy::{Full, KrispConserved, KrispShare, Policy, Prioritized, PriorityClass, Share, Static};
use rightsize::runtime::{Device, DeviceBuffer, Error, MinSms, Runtime, Tenant};

/// What a call did.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsStatus {
    /// Done.
    Ok = 0,
    /// An argument is wrong (a null pointer, an unknown name, a struct of the wrong size,
    /// kernel parameters that break the kernel's constraints, a tenant used from another
    /// thread).
    InvalidArgument = 1,
    /// No NVIDIA driver or no such GPU.
    NoGpu = 2,
    /// The CUDA driver (or cuBLASLt) failed.
    Cuda = 3,
    /// The device cannot make the SM partitions asked for, or has none.
    Partitions = 4,
    /// A profile could not be read or was measured elsewhere.
    Profile = 5,
    /// A bug inside rightsize (a panic, caught); the call had no effect it reports.
    Panic = 6,
}

/// A tenant's priority class.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsClass {
    /// Throughput work: borrows what is idle.
    BestEffort = 0,
    /// Latency-critical work: laid out first, at high stream priority.
    LatencyCritical = 1,
}

/// One tenant a runtime is made for.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RsTenantSpec {
    /// Its class.
    pub class: RsClass,
    /// SMs guaranteed to it whenever it contends (rounded up to the device's groups); 0: an
    /// equal part of what the others' quotas leave.
    pub quota_sms: u32,
}

/// What [`rightsize_runtime_create`] makes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RsRuntimeOptions {
    /// The CUDA device ordinal.
    pub device: u32,
    /// The policy: "krisp" (shares that follow the load), "krisp-conserved" (each kernel on
    /// its profiled knee), "static" (a fixed window per tenant: its quota, or an equal part)
    /// or "streams" (every kernel on the whole device).
    pub policy: *const c_char,
    /// The tenants, `tenant_count` of them; tenant ids are their indices.
    pub tenants: *const RsTenantSpec,
    /// How many.
    pub tenant_count: u32,
    /// Paths of profiles (`rightsize profile`) whose knees the policy reads, `profile_count`
    /// of them (may be null when 0).
    pub profiles: *const *const c_char,
    /// How many.
    pub profile_count: u32,
}

/// Placement statistics of a tenant.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RsTenantStats {
    /// Kernels launched.
    pub launches: u64,
    /// Of those, launched on fewer SMs than the whole device.
    pub on_partitions: u64,
    /// SMs its last kernel was placed on.
    pub last_sms: u32,
}

/// A runtime on one GPU (opaque).
pub struct RsRuntime {
    rt: Arc<Runtime>,
    specs: Vec<RsTenantSpec>,
}

/// A tenant of a runtime (opaque); used from the thread that made it.
pub struct RsTenant {
    tenant: Tenant,
    owner: ThreadId,
    stats: Cell<RsTenantStats>,
}

/// Device memory of a runtime (opaque); may be used from any thread.
pub struct RsBuffer {
    buf: Mutex<DeviceBuffer<u8>>,
}

// The handles C may share between threads are.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<RsRuntime>();
    shared::<RsBuffer>();
};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A failed call: its status and message.
type Failure = (RsStatus, String);

fn invalid(message: impl Into<String>) -> Failure {
    (RsStatus::InvalidArgument, message.into())
}

fn runtime_failure(e: Error) -> Failure {
    let status = match &e {
        e if e.is_no_gpu() => RsStatus::NoGpu,
        Error::Partition(_) => RsStatus::Partitions,
        Error::Params(_) | Error::Length { .. } | Error::Launch { .. } => RsStatus::InvalidArgument,
        _ => RsStatus::Cuda,
    };
    (status, e.to_string())
}

/// Runs `f`, catching panics, and records the message of a failure for this thread.
fn call(f: impl FnOnce() -> Result<(), Failure>) -> RsStatus {
    let (status, message) = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return RsStatus::Ok,
        Ok(Err(failure)) => failure,
        Err(_) => (RsStatus::Panic, "a panic inside rightsize (a bug); the call had no effect it reports".into()),
    };
    let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = message);
    status
}

/// `p` as a reference, or an invalid-argument failure naming `what`.
///
/// # Safety
/// `p` is null or points to a live `T`.
unsafe fn arg<'a, T>(p: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| invalid(format!("{what} is null")))
}

/// A C string argument as UTF-8.
///
/// # Safety
/// `p` is null or a NUL-terminated string.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(invalid(format!("{what} is null")));
    }
    // SAFETY: the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| invalid(format!("{what} is not UTF-8")))
}

/// `len` items at `p` (null allowed when `len` is 0).
///
/// # Safety
/// `p` points to `len` live items, or `len` is 0.
unsafe fn items<'a, T>(p: *const T, len: u32, what: &str) -> Result<&'a [T], Failure> {
    match (p.is_null(), len) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(invalid(format!("{what} is null but its count is {len}"))),
        // SAFETY: the caller's contract.
        (false, n) => Ok(unsafe { std::slice::from_raw_parts(p, n as usize) }),
    }
}

/// Writes `value` to `out`, a non-null pointer.
///
/// # Safety
/// `out` is null or writable.
unsafe fn put<T>(out: *mut T, value: T) -> Result<(), Failure> {
    if out.is_null() {
        return Err(invalid("the output pointer is null"));
    }
    // SAFETY: the caller's contract.
    unsafe { out.write(value) };
    Ok(())
}

/// Hands `value` to C as a new handle written to `out` (nothing is made when `out` is null).
///
/// # Safety
/// `out` is null or writable.
unsafe fn give<T>(out: *mut *mut T, value: T) -> Result<(), Failure> {
    if out.is_null() {
        return Err(invalid("the output pointer is null"));
    }
    // SAFETY: the caller's contract.
    unsafe { put(out, Box::into_raw(Box::new(value))) }
}

/// Frees a handle made by [`give`] (null: nothing); a panic while dropping it is caught.
///
/// # Safety
/// `handle` is null or a live handle of this type, not used again.
unsafe fn free<T>(handle: *mut T) {
    if !handle.is_null() {
        // SAFETY: the caller's contract.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(handle) })));
    }
}

/// Why the last failed call of this thread failed (empty before any): a NUL-terminated string
/// that stays valid until this thread's next failing call.
#[no_mangle]
pub extern "C" fn rightsize_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// The policy named `name` for `specs` on a device of `groups` groups of `granularity` SMs.
fn policy(name: &str, specs: &[RsTenantSpec], groups: u32, granularity: u32) -> Result<Box<dyn Policy>, Failure> {
    let quota = |s: &RsTenantSpec| (s.quota_sms > 0).then_some(s.quota_sms);
    Ok(match name {
        "streams" => Box::new(Prioritized { inner: Full, reserved_groups: 0 }),
        "static" => {
            let sizes: Vec<Option<u32>> = specs.iter().map(quota).collect();
            let inner = Static::side_by_side(&sizes, groups, granularity).map_err(|e| (RsStatus::Partitions, e))?;
            Box::new(Prioritized { inner, reserved_groups: 0 })
        }
        "krisp" => Box::new(KrispShare::new(
            specs
                .iter()
                .map(|s| Share {
                    class: class(s.class),
                    quota: quota(s).map(|sms| sms.div_ceil(granularity.max(1))),
                    bounded: false,
                })
                .collect(),
        )),
        "krisp-conserved" => Box::new(Prioritized { inner: KrispConserved, reserved_groups: 0 }),
        other => return Err(invalid(format!("unknown policy {other:?}: the policies are {}", POLICIES.join(", ")))),
    })
}

/// The policies a runtime can have.
const POLICIES: [&str; 4] = ["krisp", "krisp-conserved", "static", "streams"];

fn class(c: RsClass) -> PriorityClass {
    match c {
        RsClass::BestEffort => PriorityClass::BestEffort,
        RsClass::LatencyCritical => PriorityClass::LatencyCritical,
    }
}

/// Makes a runtime on a GPU as `options` say and writes its handle to `out`.
///
/// # Safety
/// `options` points to a valid [`RsRuntimeOptions`] whose pointers are valid for their counts;
/// `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rightsize_runtime_create(
    options: *const RsRuntimeOptions,
    out: *mut *mut RsRuntime,
) -> RsStatus {
    call(|| {
        // SAFETY (of each argument read): the caller's contract.
        let o = unsafe { arg(options, "options") }?;
        let name = unsafe { text(o.policy, "options.policy") }?;
        let specs = unsafe { items(o.tenants, o.tenant_count, "options.tenants") }?.to_vec();
        if specs.is_empty() {
            return Err(invalid("a runtime needs at least one tenant"));
        }
        let paths = unsafe { items(o.profiles, o.profile_count, "options.profiles") }?;
        if !POLICIES.contains(&name) {
            return Err(invalid(format!("unknown policy {name:?}: the policies are {}", POLICIES.join(", "))));
        }
        let device = Device::open(o.device as usize).map_err(runtime_failure)?;
        let mut min_sms = MinSms::default();
        for (i, &p) in paths.iter().enumerate() {
            let path = unsafe { text(p, &format!("options.profiles[{i}]")) }?;
            let profile = Profile::load(path.as_ref()).map_err(|e| (RsStatus::Profile, e.to_string()))?;
            profile.check(device.info()).map_err(|e| (RsStatus::Profile, format!("{path}: {e}")))?;
            profile.add_to(&mut min_sms);
        }
        let topo = device
            .info()
            .partitions
            .topology()
            .map_err(|reason| (RsStatus::Partitions, format!("SM partitions are unavailable: {reason}")))?;
        let policy = policy(name, &specs, topo.groups, topo.granularity)?;
        let rt = Runtime::with_policy(device, policy, min_sms, specs.len() as u32).map_err(runtime_failure)?;
        // SAFETY: the caller's contract.
        unsafe { give(out, RsRuntime { rt: Arc::new(rt), specs }) }
    })
}

/// Frees a runtime (null: nothing). Its tenants and buffers keep it alive until they are freed.
///
/// # Safety
/// `rt` is null or a handle from [`rightsize_runtime_create`], not used again.
#[no_mangle]
pub unsafe extern "C" fn rightsize_runtime_destroy(rt: *mut RsRuntime) {
    // SAFETY: the caller's contract.
    unsafe { free(rt) }
}

/// Writes the runtime's GPU's SM count to `out`.
///
/// # Safety
/// `rt` is a live runtime handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rightsize_runtime_sm_count(rt: *const RsRuntime, out: *mut u32) -> RsStatus {
    call(|| {
        // SAFETY: the caller's contract.
        let rt = unsafe { arg(rt, "runtime") }?;
        unsafe { put(out, rt.rt.device().info().sm_count) }
    })
}

/// Makes tenant `id` (an index of the runtime's tenants) of the calling thread and writes its
/// handle to `out`. Its kernels go where the runtime's policy places them.
///
/// # Safety
/// `rt` is a live runtime handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rightsize_tenant_create(rt: *const RsRuntime, id: u32, out: *mut *mut RsTenant) -> RsStatus {
    call(|| {
        // SAFETY: the caller's contract.
        let rt = unsafe { arg(rt, "runtime") }?;
        let spec = rt
            .specs
            .get(id as usize)
            .ok_or_else(|| invalid(format!("tenant {id}: the runtime was made for {} tenants", rt.specs.len())))?;
        let tenant = Tenant::scheduled(rt.rt.clone(), id, class(spec.class)).map_err(runtime_failure)?;
        let t = RsTenant { tenant, owner: std::thread::current().id(), stats: Cell::default() };
        // SAFETY: the caller's contract.
        unsafe { give(out, t) }
    })
}

/// The tenant behind `t`, if called from its thread.
///
/// # Safety
/// `t` is null or a live tenant handle.
unsafe fn tenant<'a>(t: *const RsTenant) -> Result<&'a RsTenant, Failure> {
    // SAFETY: the caller's contract.
    let t = unsafe { arg(t, "tenant") }?;
    if t.owner != std::thread::current().id() {
        return Err(invalid(format!(
            "tenant {} is used from the thread that made it, not from another",
            t.tenant.id()
        )));
    }
    Ok(t)
}

/// Frees a tenant after waiting for its work (null: nothing). From the thread that made it;
/// from another it is refused and the tenant stays.
///
/// # Safety
/// `t` is null or a live tenant handle, not used again once freed.
#[no_mangle]
pub unsafe extern "C" fn rightsize_tenant_destroy(t: *mut RsTenant) -> RsStatus {
    if t.is_null() {
        return RsStatus::Ok;
    }
    call(|| {
        // SAFETY: the caller's contract.
        let me = unsafe { tenant(t) }?;
        let waited = me.tenant.synchronize().map_err(runtime_failure);
        // SAFETY: a handle of this thread, not used again.
        unsafe { free(t) };
        waited
    })
}

/// Launches the library kernel whose symbol is `kernel` (e.g. "vector_add_f16") for tenant
/// `t`, with its parameter struct (as `kernels/abi.h` lays it out, `params_size` bytes),
/// through the runtime's launch path: the parameters are checked, the policy places the
/// kernel (partition, grid, priority) from the tenant's demand and the load, and it is issued
/// after the tenant's earlier work.
///
/// # Safety
/// `t` is a live tenant handle of this thread; `kernel` is a NUL-terminated string; `params`
/// points to `params_size` bytes; the device addresses in them are live buffers of this
/// runtime, sized as the kernel reads and writes them.
#[no_mangle]
pub unsafe extern "C" fn rightsize_launch(
    t: *const RsTenant,
    kernel: *const c_char,
    params: *const c_void,
    params_size: usize,
) -> RsStatus {
    call(|| {
        // SAFETY (of each argument read): the caller's contract.
        let me = unsafe { tenant(t) }?;
        let name = unsafe { text(kernel, "kernel") }?;
        let id = KernelId::from_name(name).ok_or_else(|| invalid(format!("no kernel named {name:?}")))?;
        if params.is_null() {
            return Err(invalid("params is null"));
        }
        let bytes = unsafe { std::slice::from_raw_parts(params.cast::<u8>(), params_size) };
        struct Launch<'a>(&'a Tenant);
        impl WithParams for Launch<'_> {
            type Out = rightsize::runtime::Result<u32>;
            fn call<P: Params>(self, kernel: Kernel<P>, params: &P) -> Self::Out {
                // SAFETY: the C caller vouches for the device addresses in the parameters.
                unsafe { self.0.launch(kernel, params) }
            }
        }
        let launched = id.with_params(bytes, Launch(&me.tenant)).ok_or_else(|| {
            invalid(format!("{name} takes a {}-byte parameter struct; {params_size} bytes given", id.params_size()))
        })?;
        launched.map_err(runtime_failure)?;
        let sms = me.tenant.sms_hint();
        let mut s = me.stats.get();
        s.launches += 1;
        s.on_partitions += u64::from(sms < me.tenant.runtime().device().info().sm_count);
        s.last_sms = sms;
        me.stats.set(s);
        Ok(())
    })
}

/// Waits for the tenant's launched work.
///
/// # Safety
/// `t` is a live tenant handle of this thread.
#[no_mangle]
pub unsafe extern "C" fn rightsize_tenant_synchronize(t: *const RsTenant) -> RsStatus {
    call(|| {
        // SAFETY: the caller's contract.
        let me = unsafe { tenant(t) }?;
        me.tenant.synchronize().map_err(runtime_failure)
    })
}

/// Writes the tenant's placement statistics to `out`.
///
/// # Safety
/// `t` is a live tenant handle of this thread; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rightsize_tenant_stats(t: *const RsTenant, out: *mut RsTenantStats) -> RsStatus {
    call(|| {
        // SAFETY: the caller's contract.
        let me = unsafe { tenant(t) }?;
        unsafe { put(out, me.stats.get()) }
    })
}

/// Allocates `bytes` of device memory (zeroed) on the runtime's GPU and writes its handle to
/// `out`; [`rightsize_buffer_address`] gives the address kernels take.
///
/// # Safety
/// `rt` is a live runtime handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rightsize_buffer_create(
    rt: *const RsRuntime,
    bytes: usize,
    out: *mut *mut RsBuffer,
) -> RsStatus {
    call(|| {
        // SAFETY: the caller's contract.
        let rt = unsafe { arg(rt, "runtime") }?;
        let buf = DeviceBuffer::<u8>::filled(rt.rt.device(), bytes, 0).map_err(runtime_failure)?;
        // SAFETY: the caller's contract.
        unsafe { give(out, RsBuffer { buf: Mutex::new(buf) }) }
    })
}

/// The device address of a buffer (0 for null).
///
/// # Safety
/// `b` is null or a live buffer handle.
#[no_mangle]
pub unsafe extern "C" fn rightsize_buffer_address(b: *const RsBuffer) -> u64 {
    // SAFETY: the caller's contract.
    unsafe { b.as_ref() }.map_or(0, |b| b.buf.lock().ptr())
}

/// Copies `bytes` (the buffer's whole size) from host memory `src` into the buffer.
///
/// # Safety
/// `b` is a live buffer handle; `src` points to `bytes` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn rightsize_buffer_write(b: *const RsBuffer, src: *const c_void, bytes: usize) -> RsStatus {
    call(|| {
        // SAFETY: the caller's contract.
        let b = unsafe { arg(b, "buffer") }?;
        if src.is_null() {
            return Err(invalid("src is null"));
        }
        let data = unsafe { std::slice::from_raw_parts(src.cast::<u8>(), bytes) };
        b.buf.lock().copy_from_host(data).map_err(runtime_failure)
    })
}

/// Copies the whole buffer (`bytes`, its size) into host memory `dst`, after the device's work.
///
/// # Safety
/// `b` is a live buffer handle; `dst` points to `bytes` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn rightsize_buffer_read(b: *const RsBuffer, dst: *mut c_void, bytes: usize) -> RsStatus {
    call(|| {
        // SAFETY: the caller's contract.
        let b = unsafe { arg(b, "buffer") }?;
        if dst.is_null() {
            return Err(invalid("dst is null"));
        }
        let host = b.buf.lock().to_host().map_err(runtime_failure)?;
        if host.len() != bytes {
            return Err(invalid(format!("the buffer holds {} bytes; {bytes} asked for", host.len())));
        }
        // SAFETY: the caller's contract; `host` holds `bytes` bytes.
        unsafe { std::ptr::copy_nonoverlapping(host.as_ptr(), dst.cast::<u8>(), bytes) };
        Ok(())
    })
}

/// Frees a buffer (null: nothing).
///
/// # Safety
/// `b` is null or a live buffer handle, not used again; no launched work uses it any more.
#[no_mangle]
pub unsafe extern "C" fn rightsize_buffer_destroy(b: *mut RsBuffer) {
    // SAFETY: the caller's contract.
    unsafe { free(b) }
}

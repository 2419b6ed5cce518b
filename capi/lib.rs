//! rightsize's C ABI (`librightsize_c.so`, `rightsize.h`): a runtime on one GPU whose policy
//! places every kernel of its tenants, the profiles its policy reads, tenants with a class and
//! a quota, kernels launched through the runtime's one launch path — the library's by name,
//! an engine's own from a module it hands over (cubin, fatbin or PTX) or as a `CUfunction` —,
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
use rightsize::runtime::policy::{PolicyKind, PolicySpec, PriorityClass, TenantSpec};
use rightsize::runtime::work::Foreign;
use rightsize::runtime::{
    Device, DeviceBuffer, Error, ForeignGrid, ForeignKernel, ForeignModule, MinSms, Runtime, Tenant,
};

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
    /// SMs guaranteed to it whenever it contends (rounded up to the device's groups); 0: a
    /// part of what the others' quotas leave (under `krisp`, sized by the request curves of
    /// the tenants' profiles where every tenant without a quota has one; else equal parts).
    pub quota_sms: u32,
    /// Its latency objective for one request, in µs (0: none). A latency-critical tenant with
    /// a quota whose profile says its request, beside a co-runner, takes at most half of it on
    /// the quota is *bounded* under `krisp`: it runs on its window (its quota while others
    /// contend, more as they go idle) at high priority instead of on the whole device, and
    /// leaves the rest to the others.
    pub slo_us: u32,
    /// Which of `RsRuntimeOptions::profiles` is this tenant's request (1 for the first; 0:
    /// none): under `krisp` its request curve sizes its part, bounds it by the objective above
    /// and gives the knee its window keeps while others come and go (a latency-critical
    /// tenant's). A decoder's request is read as its prefill (no token count is given here).
    pub profile: u32,
}

/// What [`rightsize_runtime_create`] makes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RsRuntimeOptions {
    /// The CUDA device ordinal.
    pub device: u32,
    /// The policy: "krisp" (shares that follow the load, sized by the profiles' request
    /// curves), "krisp-equal" (the same in equal parts), "krisp-conserved" (each kernel on its
    /// profiled knee), "static" (a fixed window per tenant: its quota, or an equal part) or
    /// "streams" (every kernel on the whole device).
    pub policy: *const c_char,
    /// The tenants, `tenant_count` of them; tenant ids are their indices.
    pub tenants: *const RsTenantSpec,
    /// How many.
    pub tenant_count: u32,
    /// Paths of profiles (`rightsize profile`) whose request curves and knees the policy
    /// reads, `profile_count` of them (may be null when 0).
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
    /// 1 when the policy bounds it to its window (see `RsTenantSpec::slo_us`), else 0.
    pub bounded: u32,
}

/// A runtime on one GPU (opaque).
pub struct RsRuntime {
    rt: Arc<Runtime>,
    specs: Vec<RsTenantSpec>,
    /// Per tenant, whether the policy bounds it to its window.
    bounded: Vec<bool>,
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

/// A module loaded into a runtime's GPU (opaque); may be used from any thread.
pub struct RsModule {
    module: ForeignModule,
    rt: Arc<Runtime>,
}

/// A kernel from outside the library, ready to launch (opaque); may be used from any thread.
pub struct RsKernel {
    kernel: ForeignKernel,
}

/// What [`rightsize_kernel_create`] makes: a function of a module loaded by
/// [`rightsize_module_load`] (`module` and `name`), or a `CUfunction` the caller loaded in the
/// device's primary context (`function`, with `module` null; `name` then names it in messages).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RsKernelSpec {
    /// The module to take the kernel from, or null.
    pub module: *const RsModule,
    /// Its symbol in the module (`extern "C"` names as written); with a `function`, a name
    /// for messages (may be null).
    pub name: *const c_char,
    /// A `CUfunction` of the device's primary context, used when `module` is null; it must stay
    /// loaded while the kernel lives.
    pub function: *mut c_void,
    /// Threads per block, x.
    pub block_x: u32,
    /// Threads per block, y (0 counts as 1).
    pub block_y: u32,
    /// Threads per block, z (0 counts as 1).
    pub block_z: u32,
    /// Dynamic shared memory per block, in bytes.
    pub shared_mem_bytes: u32,
    /// Its profiled minimum SM count for full speed, which the policy reads (0: not profiled).
    pub min_sms: u32,
}

/// How many blocks [`rightsize_launch_kernel`] launches.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RsGrid {
    /// Blocks in x, y, z, each ≥ 1, when `units` is 0.
    pub x: u32,
    /// Blocks in y.
    pub y: u32,
    /// Blocks in z.
    pub z: u32,
    /// 0: launch exactly x × y × z blocks. Otherwise the kernel loops over `units` work units
    /// (a grid-stride loop over x) and is correct at any grid: the runtime picks the number of
    /// blocks for the SMs it places the kernel on, and x, y, z are not read.
    pub units: u64,
}

// The handles C may share between threads are.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<RsRuntime>();
    shared::<RsBuffer>();
    shared::<RsModule>();
    shared::<RsKernel>();
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
        Error::Params(_) | Error::Length { .. } | Error::Launch { .. } | Error::Foreign { .. } | Error::Setting(_) => {
            RsStatus::InvalidArgument
        }
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

/// The policy named `name` for `specs` and the profiles they name, as data: a tenant's quota
/// is its static window too; its profile's request curves size its part (`krisp`), say
/// whether its quota meets its objective (beside a co-runner) and give the knee its guarded
/// window keeps, as the harness reads them, for a request of one new token: a C program
/// names no token count, so a decoder's part is sized by its prefill's curve.
fn policy_spec(name: &str, specs: &[RsTenantSpec], profiles: &[Profile]) -> Result<PolicySpec, Failure> {
    let kind = match name {
        "streams" => PolicyKind::Full,
        "static" => PolicyKind::Static,
        "krisp" => PolicyKind::Krisp { curves: true },
        "krisp-equal" => PolicyKind::Krisp { curves: false },
        "krisp-conserved" => PolicyKind::KrispConserved,
        other => return Err(invalid(format!("unknown policy {other:?}: the policies are {}", POLICIES.join(", ")))),
    };
    let tenants = specs
        .iter()
        .map(|s| {
            let quota_sms = (s.quota_sms > 0).then_some(s.quota_sms);
            let profile = (s.profile as usize).checked_sub(1).and_then(|i| profiles.get(i));
            TenantSpec {
                class: class(s.class),
                quota_sms,
                window_sms: quota_sms,
                slo_ms: (s.slo_us > 0).then(|| f64::from(s.slo_us) / 1e3),
                request_beside_us: profile.map(|p| p.request_us_beside(1)),
                request_us: profile.map(|p| p.request_us(1)).filter(|c| !c.is_empty()),
                request_knee_sms: profile.and_then(|p| p.request_knee_sms(1)),
                solo_us: None,
            }
        })
        .collect();
    Ok(PolicySpec::new(kind, tenants))
}

/// The policies a runtime can have.
const POLICIES: [&str; 5] = ["krisp", "krisp-equal", "krisp-conserved", "static", "streams"];

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
        if let Some((i, s)) = specs.iter().enumerate().find(|(_, s)| s.profile as usize > paths.len()) {
            return Err(invalid(format!("tenant {i} names profile {} of {} given", s.profile, paths.len())));
        }
        let device = Device::open(o.device as usize).map_err(runtime_failure)?;
        let mut min_sms = MinSms::default();
        let mut profiles = Vec::with_capacity(paths.len());
        for (i, &p) in paths.iter().enumerate() {
            let path = unsafe { text(p, &format!("options.profiles[{i}]")) }?;
            let profile = Profile::load(path.as_ref()).map_err(|e| (RsStatus::Profile, e.to_string()))?;
            profile.check(device.info()).map_err(|e| (RsStatus::Profile, format!("{path}: {e}")))?;
            profile.add_to(&mut min_sms);
            profiles.push(profile);
        }
        let topo = device
            .info()
            .partitions
            .topology()
            .map_err(|reason| (RsStatus::Partitions, format!("SM partitions are unavailable: {reason}")))?;
        let spec = policy_spec(name, &specs, &profiles)?;
        let bounded = spec.bounded(&topo);
        let policy = spec.build(&topo).map_err(|e| (RsStatus::Partitions, e))?;
        let rt = Runtime::with_policy(device, policy, min_sms, specs.len() as u32).map_err(runtime_failure)?;
        // SAFETY: the caller's contract.
        unsafe { give(out, RsRuntime { rt: Arc::new(rt), specs, bounded }) }
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
        let mut tenant = Tenant::scheduled(rt.rt.clone(), id, class(spec.class)).map_err(runtime_failure)?;
        if spec.slo_us > 0 {
            tenant = tenant.with_slo(std::time::Duration::from_micros(u64::from(spec.slo_us)));
        }
        let stats = RsTenantStats { bounded: u32::from(rt.bounded[id as usize]), ..RsTenantStats::default() };
        let t = RsTenant { tenant, owner: std::thread::current().id(), stats: Cell::new(stats) };
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
        me.count_launch();
        Ok(())
    })
}

impl RsTenant {
    /// Counts a launch in its statistics, where its tenant's last kernel went.
    fn count_launch(&self) {
        let sms = self.tenant.sms_hint();
        let mut s = self.stats.get();
        s.launches += 1;
        s.on_partitions += u64::from(sms < self.tenant.runtime().device().info().sm_count);
        s.last_sms = sms;
        self.stats.set(s);
    }
}

/// Loads a module image of `size` bytes — a cubin, a fatbin, or PTX text (which the driver
/// compiles for the GPU; a PTX that does not compile is refused with the compiler's log) —
/// into the runtime's GPU and writes its handle to `out`.
///
/// # Safety
/// `rt` is a live runtime handle; `image` points to `size` readable bytes; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rightsize_module_load(
    rt: *const RsRuntime,
    image: *const c_void,
    size: usize,
    out: *mut *mut RsModule,
) -> RsStatus {
    call(|| {
        // SAFETY (of each argument read): the caller's contract.
        let rt = unsafe { arg(rt, "runtime") }?;
        if image.is_null() || size == 0 {
            return Err(invalid("the module image is null or empty"));
        }
        let bytes = unsafe { std::slice::from_raw_parts(image.cast::<u8>(), size) };
        let module = ForeignModule::load(rt.rt.device(), bytes).map_err(runtime_failure)?;
        // SAFETY: the caller's contract.
        unsafe { give(out, RsModule { module, rt: rt.rt.clone() }) }
    })
}

/// Frees a module (null: nothing); kernels taken from it keep it loaded until they are freed.
///
/// # Safety
/// `m` is null or a live module handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn rightsize_module_destroy(m: *mut RsModule) {
    // SAFETY: the caller's contract.
    unsafe { free(m) }
}

/// Makes a kernel from outside the library as `spec` says and writes its handle to `out`:
/// refused when the module lacks the name or one block does not fit on an SM.
///
/// # Safety
/// `rt` is a live runtime handle; `spec` points to a valid [`RsKernelSpec`] (a non-null
/// `function` is a live `CUfunction` of the device's primary context that stays loaded while
/// the kernel lives); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rightsize_kernel_create(
    rt: *const RsRuntime,
    spec: *const RsKernelSpec,
    out: *mut *mut RsKernel,
) -> RsStatus {
    call(|| {
        // SAFETY (of each argument read): the caller's contract.
        let rt = unsafe { arg(rt, "runtime") }?;
        let spec = unsafe { arg(spec, "spec") }?;
        let device = rt.rt.device();
        let block = [spec.block_x, spec.block_y.max(1), spec.block_z.max(1)];
        let kernel = match unsafe { spec.module.as_ref() } {
            Some(m) => {
                if !Arc::ptr_eq(&m.rt, &rt.rt) {
                    return Err(invalid("the module was loaded by another runtime"));
                }
                let name = unsafe { text(spec.name, "spec.name") }?;
                m.module.kernel(device, name, block, spec.shared_mem_bytes)
            }
            None if spec.function.is_null() => return Err(invalid("spec has neither a module nor a function")),
            None => {
                let name = if spec.name.is_null() { "function" } else { unsafe { text(spec.name, "spec.name") }? };
                // SAFETY: the caller vouches for the function.
                unsafe { ForeignKernel::new(device, spec.function.cast(), name, block, spec.shared_mem_bytes) }
            }
        }
        .map_err(runtime_failure)?;
        let kernel = kernel.with_min_sms(Some(spec.min_sms));
        // SAFETY: the caller's contract.
        unsafe { give(out, RsKernel { kernel }) }
    })
}

/// Frees a kernel (null: nothing).
///
/// # Safety
/// `k` is null or a live kernel handle, not used again (work already launched may still run).
#[no_mangle]
pub unsafe extern "C" fn rightsize_kernel_destroy(k: *mut RsKernel) {
    // SAFETY: the caller's contract.
    unsafe { free(k) }
}

/// Launches kernel `k` for tenant `t` with the kernel arguments `params` (one pointer per
/// parameter, as `cuLaunchKernel` takes them) and the blocks `grid` says, through the
/// runtime's launch path: the policy places it (partition, priority, and the grid of a kernel
/// launched by `units`) from the tenant's demand and the load, and it is issued after the
/// tenant's earlier work.
///
/// # Safety
/// `t` is a live tenant handle of this thread; `k` a live kernel handle of the same runtime;
/// `grid` points to a valid [`RsGrid`]; `params` holds one pointer per parameter of the
/// kernel, each to a value of that parameter's type, and the device addresses among them are
/// live and sized as the kernel reads and writes them.
#[no_mangle]
pub unsafe extern "C" fn rightsize_launch_kernel(
    t: *const RsTenant,
    k: *const RsKernel,
    grid: *const RsGrid,
    params: *mut *mut c_void,
) -> RsStatus {
    call(|| {
        // SAFETY (of each argument read): the caller's contract.
        let me = unsafe { tenant(t) }?;
        let k = unsafe { arg(k, "kernel") }?;
        let g = unsafe { arg(grid, "grid") }?;
        let grid = match g.units {
            0 => ForeignGrid::Fixed([g.x, g.y, g.z]),
            units => ForeignGrid::Units(units),
        };
        if grid.units() == 0 {
            return Err(invalid(format!("a grid of {} × {} × {} blocks launches nothing", g.x, g.y, g.z)));
        }
        // SAFETY: the caller vouches for the arguments.
        unsafe { me.tenant.submit(Foreign { kernel: &k.kernel, grid, args: params }) }.map_err(runtime_failure)?;
        me.count_launch();
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

/// Reports how long one of the tenant's requests took, from when it was due (arrived) to when
/// it completed, in microseconds. krisp times the layouts it tries for a set of busy tenants
/// by these (docs/architecture.md, the share policy). With a latency objective (`slo_us`),
/// krisp also measures from them how close the tenant's last 128 requests come to it (their
/// 99th percentile), and gives the SMs a latency-critical tenant and a best-effort one
/// dispute to whichever is nearer its objective (docs/architecture.md, the guard).
///
/// # Safety
/// `t` is a live tenant handle of this thread.
#[no_mangle]
pub unsafe extern "C" fn rightsize_tenant_observe(t: *const RsTenant, latency_us: u64) -> RsStatus {
    call(|| {
        // SAFETY: the caller's contract.
        let me = unsafe { tenant(t) }?;
        me.tenant.observe(std::time::Duration::from_micros(latency_us));
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed profile of lc-serving's latency-critical tenant (bert-base, batch 1, on an
    /// H200): its request beside a co-runner takes about 1.5 ms on 32 SMs.
    fn bert_b1() -> Profile {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../profiles/nvidia-h200/bert-base-b1-s128.json");
        Profile::load(path.as_ref()).expect("the committed profile")
    }

    #[test]
    fn a_tenant_spec_says_what_the_policy_reads() {
        // When a tenant is bounded is the policy spec's to test; here, that the C ABI's fields
        // and the profile a tenant names reach it.
        let profiles = [bert_b1()];
        let spec = |class, slo_us, profile| RsTenantSpec { class, quota_sms: 32, slo_us, profile };
        let lc = RsClass::LatencyCritical;
        let topo = rightsize::runtime::policy::Topology { groups: 15, granularity: 8, rest_sms: 12 };
        let bounded = |name, s| policy_spec(name, &[s], &profiles).unwrap().bounded(&topo)[0];
        assert!(bounded("krisp", spec(lc, 4000, 1)), "half of 4 ms holds a 1.5 ms request");
        assert!(!bounded("krisp", spec(lc, 4000, 0)), "no profile");
        assert!(!bounded("krisp", spec(lc, 2000, 1)), "the objective in µs: half of 2 ms does not");
        assert!(!bounded("static", spec(lc, 4000, 1)), "only krisp bounds tenants");
        assert!(policy_spec("mps", &[spec(lc, 0, 0)], &profiles).is_err());
        let curve = |s| policy_spec("krisp", &[s], &profiles).unwrap().tenants[0].request_us.clone();
        assert!(curve(spec(lc, 0, 1)).is_some_and(|c| !c.is_empty()), "krisp sizes by the request curve");
        assert!(curve(spec(lc, 0, 0)).is_none(), "no profile, no curve");
        let knee = |s| policy_spec("krisp", &[s], &profiles).unwrap().tenants[0].request_knee_sms;
        assert_eq!(knee(spec(lc, 0, 1)), profiles[0].request_knee_sms(1), "the guard's knee, as the harness's");
        assert!(knee(spec(lc, 0, 1)).is_some() && knee(spec(lc, 0, 0)).is_none());
    }
}

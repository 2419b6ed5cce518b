//! The launch path: the one place that launches kernels, the library's and foreign ones
//! (`cuLaunchKernelEx`).
//!
//! Loads every module of the kernel library once into the primary context (the same
//! functions run on every partition's streams), reads each kernel's blocks per SM, sizes
//! grids for grid-agnostic kernels and issues the launch. Nothing here allocates or locks.
//!
//! On Hopper (compute capability 9.0, where the sm_90a code runs) every launch allows
//! programmatic dependent launch (PDL): a kernel may start while the previous kernel of its
//! stream is still running. Every kernel of the library waits for its predecessor
//! (`griddepcontrol.wait`, `rs::pdl_wait` in `kernels/common.cuh`) before it reads what that
//! kernel wrote or writes anything, so what overlaps is the launch itself and prologues that
//! read weights only. `RIGHTSIZE_PDL=0` turns it off (for comparisons). A launch whose blocks
//! need less dynamic shared memory than their kernel's own gets only that
//! ([`crate::kernels::Params::dynamic_smem`]), so its blocks fit beside the kernel before it;
//! `RIGHTSIZE_RING=full` gives every launch its kernel's own (for comparisons).

use std::ffi::{c_void, CStr, CString};
use std::fmt;

use cudarc::driver::{result, sys, DriverError};
use serde::{Deserialize, Serialize};

use super::device::Device;
use super::error::{DriverContext as _, Error, Result};
use crate::kernels::abi::{GemmParams, GemmTmaParams, RsTensorMap, RsTicket};
use crate::kernels::{Kernel, KernelId, Module, TensorMapSpec};

/// How many blocks to launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grid {
    /// `min(work units, SMs of the partition × blocks per SM)`: every block resident at once,
    /// no more blocks than work.
    Auto,
    /// Exactly this many blocks (≥ 1); kernels are correct at any grid.
    Fixed(u32),
    /// Short blocks, for work on borrowed SMs: [`spread_grid`](super::policy::spread_grid),
    /// so the SMs' owner gets them back within one short block.
    Short,
}

impl Grid {
    /// Blocks for `units` work units on `sms` SMs holding `blocks_per_sm` blocks each; `None`
    /// for a fixed grid outside 1..=`i32::MAX`.
    pub fn blocks(self, units: u64, sms: u32, blocks_per_sm: u32) -> Option<u32> {
        match self {
            Grid::Auto => Some(auto_grid(units, sms, blocks_per_sm)),
            Grid::Short => Some(super::policy::spread_grid(units, sms, blocks_per_sm)),
            Grid::Fixed(g) => (1..=i32::MAX as u32).contains(&g).then_some(g),
        }
    }
}

/// Where and how one launch runs: the runtime's decision for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The partition whose stream runs it.
    pub partition: super::PartitionId,
    /// Index into the pool's priorities.
    pub priority_level: usize,
    /// Grid size.
    pub grid: Grid,
}

impl Placement {
    /// The whole device at the first priority level, grid sized automatically.
    pub const WHOLE: Placement =
        Placement { partition: super::PartitionId::WHOLE, priority_level: 0, grid: Grid::Auto };

    /// Partition `partition`, first priority level, automatic grid.
    pub fn on(partition: super::PartitionId) -> Placement {
        Placement { partition, ..Placement::WHOLE }
    }
}

/// The grid [`Grid::Auto`] picks: `min(units, sms × blocks_per_sm)`, at least 1.
pub fn auto_grid(units: u64, sms: u32, blocks_per_sm: u32) -> u32 {
    let resident = u64::from(sms.max(1)) * u64::from(blocks_per_sm.max(1));
    units.min(resident).clamp(1, i32::MAX as u64) as u32
}

/// The rounds of a launch of `units` on `blocks` blocks: the most units a block takes
/// (`None`: no valid grid).
pub(super) fn rounds(units: u64, blocks: Option<u32>) -> Option<u64> {
    blocks.map(|b| units.div_ceil(u64::from(b.max(1))))
}

/// Whether a launch of `units` on `blocks` blocks (`None`: no valid grid) runs a kernel's
/// build by warps, where it has one ([`KernelTable::by_warps`]): each block gets
/// `RS_GEMM_P_WARP_UNITS` units or more.
pub(super) fn goes_by_warps(units: u64, blocks: Option<u32>) -> bool {
    rounds(units, blocks).is_some_and(|r| r >= u64::from(crate::kernels::abi::RS_GEMM_P_WARP_UNITS))
}

/// Whether launches take the shared memory their blocks need ([`crate::kernels::Params::dynamic_smem`])
/// rather than their kernel's own: unless `RIGHTSIZE_RING=full` (an A/B switch for measuring).
pub(super) fn sized_smem() -> bool {
    static SIZED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SIZED.get_or_init(|| std::env::var("RIGHTSIZE_RING").map_or(true, |v| v != "full"))
}

/// A kernel as loaded on the device.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    function: sys::CUfunction,
    /// Threads per block.
    pub block_threads: u32,
    /// Dynamic shared memory per block, in bytes.
    pub dynamic_smem_bytes: u32,
    /// Blocks of it one SM holds at once (from the occupancy calculator).
    pub blocks_per_sm: u32,
    /// Launched with programmatic dependent launch allowed.
    pub pdl: bool,
}

/// Whether launches on `device` use PDL: compute capability 9.0 (the kernels' sm_90a code,
/// which waits for its predecessor), unless `RIGHTSIZE_PDL=0`.
fn pdl_enabled(device: &Device) -> bool {
    device.info().compute_capability == (9, 0) && std::env::var("RIGHTSIZE_PDL").map_or(true, |v| v != "0")
}

/// Every kernel of the library, loaded: each in the plain unit order, and those of the
/// work-unit loop also counted (`<symbol>_counted`, kernels/common.cuh's RS_KERNEL_PAIR); a
/// kernel whose plain build leaves registers for fewer blocks an SM than it could hold also
/// dense (`<symbol>_dense`: the plain build's code and bits with its registers capped); the
/// Hopper GEMM also counted with tiles that pause (`<symbol>_paused`, kernels/gemm_sm90.cu);
/// the short-K packed decode GEMM also with warps that take whole units (`<symbol>_warps`,
/// kernels/gemm_packed.cu: the same bits).
pub struct KernelTable {
    kernels: Vec<LoadedKernel>,
    counted: Vec<Option<LoadedKernel>>,
    dense: Vec<Option<LoadedKernel>>,
    paused: Vec<Option<LoadedKernel>>,
    warps: Vec<Option<LoadedKernel>>,
    // After `kernels`: functions must not outlive their modules.
    _modules: Vec<super::handles::Module>,
}

// SAFETY: module and function handles may be used from any thread; the table is immutable.
unsafe impl Send for KernelTable {}
// SAFETY: as above.
unsafe impl Sync for KernelTable {}

impl fmt::Debug for KernelTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(KernelId::ALL.iter().zip(&self.kernels)).finish()
    }
}

impl KernelTable {
    /// Loads every module into the device's primary context.
    pub fn load(device: &Device) -> Result<KernelTable> {
        device.bind()?;
        let mut modules = Vec::with_capacity(Module::ALL.len());
        for &m in Module::ALL {
            // The image is a complete fatbin embedded at build time, 16-byte aligned.
            modules.push((m, super::handles::Module::load(m.image())?));
        }
        let pdl = pdl_enabled(device);
        let mut kernels = Vec::with_capacity(KernelId::ALL.len());
        let mut counted = Vec::with_capacity(KernelId::ALL.len());
        let mut dense = Vec::with_capacity(KernelId::ALL.len());
        let mut paused = Vec::with_capacity(KernelId::ALL.len());
        let mut warps = Vec::with_capacity(KernelId::ALL.len());
        for &k in KernelId::ALL {
            let module =
                modules.iter().find(|(m, _)| *m == k.module()).map(|(_, h)| h.raw()).unwrap_or(std::ptr::null_mut());
            let load = |symbol: &CStr| -> Result<Option<LoadedKernel>> {
                // SAFETY: `module` is loaded.
                let function = match unsafe { super::driver::module::function(module, symbol) } {
                    Err(DriverError(sys::CUresult::CUDA_ERROR_NOT_FOUND)) => return Ok(None),
                    r => r.call("cuModuleGetFunction")?,
                };
                let (block_threads, smem) = (k.block_threads(), k.dynamic_smem_bytes());
                // SAFETY: a function of a module loaded just above.
                let blocks = unsafe { blocks_per_sm(function, block_threads, smem) }?
                    .ok_or_else(|| Error::Launch { kernel: k.name(), reason: "does not fit on one SM".into() })?;
                Ok(Some(LoadedKernel { function, block_threads, dynamic_smem_bytes: smem, blocks_per_sm: blocks, pdl }))
            };
            let plain = load(k.symbol())?
                .ok_or_else(|| Error::Launch { kernel: k.name(), reason: "not in its module".into() })?;
            let variant = |suffix: &str| {
                CString::new(format!("{}_{suffix}", k.name()))
                    .map_err(|_| Error::Launch { kernel: k.name(), reason: "a NUL in its name".into() })
            };
            kernels.push(plain);
            counted.push(load(&variant("counted")?)?);
            dense.push(load(&variant("dense")?)?);
            paused.push(load(&variant("paused")?)?);
            warps.push(load(&variant("warps")?)?);
        }
        Ok(KernelTable {
            kernels,
            counted,
            dense,
            paused,
            warps,
            _modules: modules.into_iter().map(|(_, h)| h).collect(),
        })
    }

    /// The loaded kernel `id`, in the plain unit order.
    pub fn get(&self, id: KernelId) -> &LoadedKernel {
        &self.kernels[id.index()]
    }

    /// Whether kernel `id` has a build that takes its units from the ticket's counter.
    pub fn has_counted(&self, id: KernelId) -> bool {
        self.counted[id.index()].is_some()
    }

    /// The plain build of kernel `id` with more blocks an SM, where it has one.
    pub fn dense(&self, id: KernelId) -> Option<&LoadedKernel> {
        self.dense[id.index()].as_ref()
    }

    /// The plain build of kernel `id` whose warps each take whole units, where it has one: for
    /// blocks of many units (kernels/abi.h, RS_GEMM_P_WARP_UNITS).
    pub fn by_warps(&self, id: KernelId) -> Option<&LoadedKernel> {
        self.warps[id.index()].as_ref()
    }

    /// The counted build of kernel `id` whose claimed blocks pause their tiles between K steps,
    /// where it has one (kernels/abi.h, RS_PAUSE_*).
    pub fn paused(&self, id: KernelId) -> Option<&LoadedKernel> {
        self.paused[id.index()].as_ref()
    }

    /// The loaded kernel `id` that takes its units from the ticket's counter and reads claims,
    /// or the plain one where the kernel has no such variant (it orders its units itself).
    pub fn counted(&self, id: KernelId) -> &LoadedKernel {
        self.counted[id.index()].as_ref().unwrap_or(&self.kernels[id.index()])
    }
}

/// Blocks of `function` one SM holds at once with `block_threads` threads and `smem` bytes of
/// dynamic shared memory each (`None`: not one), after raising its opt-in shared-memory limit
/// when `smem` exceeds the 48 KiB every kernel may use.
///
/// # Safety
/// `function` is a live function of a module loaded in the current context.
pub(crate) unsafe fn blocks_per_sm(function: sys::CUfunction, block_threads: u32, smem: u32) -> Result<Option<u32>> {
    if smem > 48 * 1024 {
        let attribute = sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
        // SAFETY: the caller's contract.
        unsafe { result::function::set_function_attribute(function, attribute, smem as i32) }
            .call("cuFuncSetAttribute")?;
    }
    // SAFETY: the caller's contract.
    let blocks = unsafe {
        result::occupancy::max_active_block_per_multiprocessor(function, block_threads as i32, smem as usize)
    }
    .call("cuOccupancyMaxActiveBlocksPerMultiprocessor")?;
    Ok((blocks >= 1).then_some(blocks as u32))
}

/// The params of Hopper GEMM `kernel` for `g` (batch 1): checks them and encodes the tensor
/// maps of A and B for that kernel's tiles (on the host, through the driver library; no
/// context needed).
pub fn gemm_tma_params(g: &GemmParams, kernel: Kernel<GemmTmaParams>) -> Result<GemmTmaParams> {
    let [a, b] = GemmTmaParams::map_specs(g, kernel)?;
    let encode = |m: TensorMapSpec| -> Result<RsTensorMap> {
        let swizzle = if m.swizzle {
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B
        } else {
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_NONE
        };
        let (dims, strides, boxes) = m.view();
        let map = super::driver::tensor_map::encode_f16(m.ptr, &dims, &strides, &boxes, swizzle).map_err(|e| {
            let reason = format!("tensor map of {} ({}×{}, ld {}): {:?}", m.name, m.rows, m.cols, m.ld, e.0);
            Error::Launch { kernel: kernel.id().name(), reason }
        })?;
        Ok(RsTensorMap { opaque: map.opaque })
    };
    Ok(GemmTmaParams::with_maps(g, encode(a)?, encode(b)?))
}

/// Issues one launch of `kernel` with `grid` blocks of `smem` bytes of dynamic shared memory
/// on `stream`, passing `params` and `ticket` by value.
///
/// # Safety
/// - `P` is the parameter struct of the kernel behind `kernel` (guaranteed by
///   [`crate::kernels::Kernel`] at the public call sites).
/// - Every device address in `params` points to live memory of the sizes the kernel's
///   header documents, and nothing else writes the kernel's outputs meanwhile.
/// - `ticket`'s addresses are 0 or live as `RsTicket` (kernels/abi.h) says, and its counter
///   is used by no launch that may run at the same time.
/// - `stream` is a live stream of the device `kernel` was loaded on, and that device's
///   primary context is current.
/// - `smem` is what the kernel's code takes at `params` on `grid` blocks: its own
///   ([`LoadedKernel::dynamic_smem_bytes`]) or what [`crate::kernels::Params::dynamic_smem`]
///   says, at most its own (for which its occupancy was raised).
pub(crate) unsafe fn launch_raw<P>(
    kernel: &LoadedKernel,
    grid: u32,
    smem: u32,
    stream: sys::CUstream,
    params: &P,
    ticket: &RsTicket,
) -> Result<()> {
    // The driver copies the argument bytes before returning, so pointers to them suffice.
    let mut args = [params as *const P as *mut c_void, ticket as *const RsTicket as *mut c_void];
    let dims =
        Dims { grid: [grid, 1, 1], block: [kernel.block_threads, 1, 1], shared_mem_bytes: smem, pdl: kernel.pdl };
    // SAFETY: the caller upholds the contract above; `args` holds the kernel's two arguments.
    unsafe { launch_function(kernel.function, &dims, stream, args.as_mut_ptr()) }
}

/// The shape of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_mem_bytes: u32,
    /// Programmatic dependent launch allowed: only for kernels that wait for their
    /// predecessor (`griddepcontrol.wait`) before touching what it wrote.
    pub pdl: bool,
}

/// Issues `function` as `dims` says on `stream` with the kernel arguments `args`
/// (`cuLaunchKernelEx`): the one driver call every launch ends in.
///
/// # Safety
/// `function` is live in the current context, `stream` a live stream of its device, and
/// `args` holds one pointer per kernel parameter, each to a value of that parameter's type;
/// every device address among them is live and sized as the kernel uses it.
pub(crate) unsafe fn launch_function(
    function: sys::CUfunction,
    dims: &Dims,
    stream: sys::CUstream,
    args: *mut *mut c_void,
) -> Result<()> {
    // SAFETY: plain data; the union member set is the one the attribute id names.
    let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    let config = sys::CUlaunchConfig {
        gridDimX: dims.grid[0],
        gridDimY: dims.grid[1],
        gridDimZ: dims.grid[2],
        blockDimX: dims.block[0],
        blockDimY: dims.block[1],
        blockDimZ: dims.block[2],
        sharedMemBytes: dims.shared_mem_bytes,
        hStream: stream,
        attrs: &mut attr,
        numAttrs: u32::from(dims.pdl),
    };
    // SAFETY: the caller's contract; `config` and `attr` outlive the call.
    unsafe { super::driver::launch::kernel_ex(&config, function, args) }.call("cuLaunchKernelEx")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_of_many_units_go_by_warps() {
        // GPT-2's LM head (3,142 tiles): 24 a block on the whole device, 66 on 48 SMs.
        assert!(goes_by_warps(3142, Some(132)));
        assert!(goes_by_warps(3142, Some(48)));
        // gpt2-medium's QKV (192 tiles): 2 a block on the whole device, 4 on 48 SMs.
        assert!(!goes_by_warps(192, Some(132)));
        assert!(goes_by_warps(192, Some(48)));
        // GPT-2's QKV (144 tiles) on 48 SMs: 3 a block.
        assert!(!goes_by_warps(144, Some(48)));
        assert!(goes_by_warps(4, Some(1)) && !goes_by_warps(3, Some(1)));
        assert!(!goes_by_warps(3142, None), "no grid, no choice");
    }

    #[test]
    fn auto_grid_is_min_of_units_and_resident_blocks() {
        assert_eq!(auto_grid(10, 132, 4), 10);
        assert_eq!(auto_grid(10_000, 132, 4), 528);
        assert_eq!(auto_grid(10_000, 8, 2), 16);
        assert_eq!(auto_grid(0, 8, 2), 1, "at least one block");
        assert_eq!(auto_grid(u64::MAX, u32::MAX, u32::MAX), i32::MAX as u32);
    }
}

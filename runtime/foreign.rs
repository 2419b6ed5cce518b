//! Kernels from outside the library: a module an engine brings (cubin, fatbin or PTX), or a
//! function it loaded itself in the device's primary context, launched by a tenant through the
//! same placement step as the library's kernels ([`Tenant::submit`](super::Tenant::submit) of a [`super::work::Foreign`]).
//!
//! The runtime knows nothing of such a kernel's parameters, so it cannot check them; it keeps
//! its grid as given unless the kernel says it is correct at any grid ([`ForeignGrid::Units`]),
//! and launches it without programmatic dependent launch (it may not wait for its predecessor).

use std::ffi::{c_void, CString};
use std::sync::Arc;

use cudarc::driver::{sys, DriverError};

use super::device::Device;
use super::driver;
use super::error::{Error, Result};
use super::handles::Module;
use super::launch::{blocks_per_sm, launch_function, Dims};
use super::Grid;

/// A module loaded from an image the caller brings, kept alive by the kernels taken from it.
#[derive(Debug, Clone)]
pub struct ForeignModule {
    module: Arc<Module>,
}

/// The first bytes of an ELF file (a cubin).
const ELF_MAGIC: [u8; 4] = [0x7f, b'E', b'L', b'F'];
/// The first bytes of a fatbin (its magic 0xBA55ED50, little-endian).
const FATBIN_MAGIC: [u8; 4] = [0x50, 0xed, 0x55, 0xba];

/// The most threads a block may have (every GPU since compute capability 2.0).
const MAX_BLOCK_THREADS: u32 = 1024;

/// How big the driver's JIT error log may get in a message.
const JIT_LOG_BYTES: usize = 4096;

impl ForeignModule {
    /// Loads `image` — a cubin, a fatbin or PTX text (compiled by the driver for this GPU) —
    /// into `device`'s primary context; a PTX that does not compile is refused with the
    /// compiler's log.
    pub fn load(device: &Device, image: &[u8]) -> Result<ForeignModule> {
        let refuse = |reason: String| Error::Foreign { what: "module".into(), reason };
        let binary = image.starts_with(&ELF_MAGIC) || image.starts_with(&FATBIN_MAGIC);
        // PTX is text, read up to its NUL: end it with one where it has none.
        let text;
        let bytes = if binary {
            image
        } else {
            let body = image.split(|&b| b == 0).next().unwrap_or_default();
            if body.is_empty() || !body.is_ascii() {
                return Err(refuse(format!("{} bytes that are neither a cubin, a fatbin nor PTX text", image.len())));
            }
            text = CString::new(body).expect("no NUL before the end");
            text.as_bytes_with_nul()
        };
        device.bind()?;
        let mut log = vec![0u8; JIT_LOG_BYTES];
        let mut options =
            [sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER, sys::CUjit_option::CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES];
        let mut values = [log.as_mut_ptr().cast::<c_void>(), JIT_LOG_BYTES as *mut c_void];
        // SAFETY: `bytes` is a complete image (or NUL-terminated PTX) that outlives the call;
        // the options' values are the log buffer and its size.
        let loaded = unsafe { driver::module::load_data_ex(bytes.as_ptr().cast(), &mut options, &mut values) };
        let m = loaded.map_err(|DriverError(r)| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let log = String::from_utf8_lossy(&log[..end]);
            let log = log.trim();
            refuse(if log.is_empty() { format!("{r:?}") } else { format!("{r:?}: {log}") })
        })?;
        Ok(ForeignModule { module: Arc::new(Module::from_raw(m)) })
    }

    /// Its kernel `name` (the symbol: `extern "C"` names as written, C++ ones mangled), launched
    /// with `block` threads and `shared_mem_bytes` of dynamic shared memory per block.
    pub fn kernel(&self, device: &Device, name: &str, block: [u32; 3], shared_mem_bytes: u32) -> Result<ForeignKernel> {
        let refuse = |reason: String| Error::Foreign { what: format!("kernel {name:?}"), reason };
        let symbol = CString::new(name).map_err(|_| refuse("the name holds a NUL".into()))?;
        device.bind()?;
        // SAFETY: a loaded module.
        let function = unsafe { driver::module::function(self.module.raw(), &symbol) }
            .map_err(|DriverError(r)| refuse(format!("not in the module ({r:?})")))?;
        // SAFETY: a function of this module, which the kernel keeps loaded.
        let mut kernel = unsafe { ForeignKernel::new(device, function, name, block, shared_mem_bytes) }?;
        kernel.module = Some(self.module.clone());
        Ok(kernel)
    }
}

/// How many blocks a foreign kernel launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignGrid {
    /// Exactly these (x, y, z), each ≥ 1: the kernel's blocks each do a fixed part.
    Fixed([u32; 3]),
    /// A kernel that loops over this many work units (a grid-stride loop over x) and is
    /// correct at any grid: the runtime picks the grid for the SMs it places it on, no more
    /// blocks than units (y and z are 1).
    Units(u64),
}

impl ForeignGrid {
    /// Work units: the blocks of a fixed grid, or the units given.
    pub fn units(self) -> u64 {
        match self {
            ForeignGrid::Fixed([x, y, z]) => u64::from(x).saturating_mul(u64::from(y)).saturating_mul(u64::from(z)),
            ForeignGrid::Units(u) => u,
        }
    }
}

/// A kernel from outside the library, ready to launch: its function, block shape, dynamic
/// shared memory, how many blocks one SM holds, and its profiled minimum SMs if known.
#[derive(Debug, Clone)]
pub struct ForeignKernel {
    function: sys::CUfunction,
    name: String,
    block: [u32; 3],
    shared_mem_bytes: u32,
    blocks_per_sm: u32,
    min_sms: Option<u32>,
    /// The module it comes from, if the runtime loaded it.
    module: Option<Arc<Module>>,
}

// SAFETY: a function handle may be used from any thread; the struct is immutable once made.
unsafe impl Send for ForeignKernel {}
// SAFETY: as above.
unsafe impl Sync for ForeignKernel {}

impl ForeignKernel {
    /// `function`, named `name` in messages and traces, launched with `block` threads and
    /// `shared_mem_bytes` of dynamic shared memory per block (the opt-in limit is raised when
    /// that exceeds 48 KiB); refused when one block does not fit on an SM.
    ///
    /// # Safety
    /// `function` is a live function of a module loaded in `device`'s primary context, and
    /// stays loaded while this (or a clone) lives.
    pub unsafe fn new(
        device: &Device,
        function: sys::CUfunction,
        name: &str,
        block: [u32; 3],
        shared_mem_bytes: u32,
    ) -> Result<ForeignKernel> {
        let refuse = |reason: String| Error::Foreign { what: format!("kernel {name:?}"), reason };
        if function.is_null() {
            return Err(refuse("the function is null".into()));
        }
        let threads = block.iter().try_fold(1u32, |t, &b| t.checked_mul(b)).unwrap_or(0);
        if threads == 0 || threads > MAX_BLOCK_THREADS {
            return Err(refuse(format!("a block of {block:?} threads: 1 to {MAX_BLOCK_THREADS} threads per block")));
        }
        device.bind()?;
        // SAFETY: the caller's contract.
        let blocks_per_sm = unsafe { blocks_per_sm(function, threads, shared_mem_bytes) }?.ok_or_else(|| {
            refuse(format!(
                "one block of {threads} threads and {shared_mem_bytes} bytes of shared memory does not fit on an SM"
            ))
        })?;
        Ok(ForeignKernel {
            function,
            name: name.to_owned(),
            block,
            shared_mem_bytes,
            blocks_per_sm,
            min_sms: None,
            module: None,
        })
    }

    /// The same kernel with a profiled minimum SM count for full speed, which the policy reads
    /// as it reads the library's profiles (`None`: not profiled).
    pub fn with_min_sms(mut self, min_sms: Option<u32>) -> ForeignKernel {
        self.min_sms = min_sms.filter(|&s| s > 0);
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its profiled minimum SMs, if given.
    pub fn min_sms(&self) -> Option<u32> {
        self.min_sms
    }

    /// Blocks of it one SM holds at once.
    pub fn blocks_per_sm(&self) -> u32 {
        self.blocks_per_sm
    }

    /// The blocks a launch with `grid` issues on a partition of `sms` SMs, where the policy
    /// asked for `policy` (which sizes only grids of [`ForeignGrid::Units`]).
    pub fn grid(&self, grid: ForeignGrid, sms: u32, policy: Grid) -> Result<[u32; 3]> {
        match grid {
            ForeignGrid::Fixed(g) if g.iter().all(|&d| d >= 1) => Ok(g),
            ForeignGrid::Fixed(g) => Err(Error::Foreign {
                what: format!("kernel {:?}", self.name),
                reason: format!("a grid of {g:?} blocks"),
            }),
            ForeignGrid::Units(units) => {
                let x = policy.blocks(units, sms, self.blocks_per_sm).unwrap_or(1);
                Ok([x, 1, 1])
            }
        }
    }

    /// Issues it with `grid` on `stream`, a stream of a partition of `sms` SMs; returns the
    /// blocks launched.
    ///
    /// # Safety
    /// As submitting a [`super::work::Foreign`]; the device's primary
    /// context is current.
    pub(crate) unsafe fn issue(
        &self,
        grid: ForeignGrid,
        sms: u32,
        policy: Grid,
        stream: sys::CUstream,
        args: *mut *mut c_void,
    ) -> Result<u64> {
        let g = self.grid(grid, sms, policy)?;
        let dims = Dims { grid: g, block: self.block, shared_mem_bytes: self.shared_mem_bytes, pdl: false };
        // SAFETY: the caller's contract; the function is live while `self` is.
        unsafe { launch_function(self.function, &dims, stream, args) }?;
        Ok(g.iter().map(|&d| u64::from(d)).product())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_grid_counts_its_blocks_and_units_are_units() {
        assert_eq!(ForeignGrid::Fixed([4, 3, 2]).units(), 24);
        assert_eq!(ForeignGrid::Fixed([i32::MAX as u32, 65_535, 65_535]).units(), (i32::MAX as u64) * 65_535 * 65_535);
        assert_eq!(ForeignGrid::Fixed([u32::MAX, u32::MAX, 2]).units(), u64::MAX, "saturates");
        assert_eq!(ForeignGrid::Units(1000).units(), 1000);
    }

    fn kernel() -> ForeignKernel {
        ForeignKernel {
            function: std::ptr::NonNull::dangling().as_ptr(),
            name: "k".into(),
            block: [128, 1, 1],
            shared_mem_bytes: 0,
            blocks_per_sm: 4,
            min_sms: None,
            module: None,
        }
    }

    #[test]
    fn units_are_sized_for_the_partition_and_fixed_grids_kept() {
        let k = kernel();
        assert_eq!(k.grid(ForeignGrid::Units(10_000), 32, Grid::Auto).unwrap(), [128, 1, 1]);
        assert_eq!(k.grid(ForeignGrid::Units(10), 32, Grid::Auto).unwrap(), [10, 1, 1]);
        assert_eq!(k.grid(ForeignGrid::Fixed([7, 2, 1]), 32, Grid::Auto).unwrap(), [7, 2, 1]);
        let zero = k.grid(ForeignGrid::Fixed([7, 0, 1]), 32, Grid::Auto).unwrap_err().to_string();
        assert!(zero.contains("\"k\"") && zero.contains("[7, 0, 1]"), "{zero}");
        assert_eq!(k.clone().with_min_sms(Some(0)).min_sms(), None);
        assert_eq!(k.with_min_sms(Some(48)).min_sms(), Some(48));
    }
}

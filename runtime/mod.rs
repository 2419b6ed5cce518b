//! The runtime: the GPU, its SM partitions, the loaded kernels and the launch path every
//! kernel takes.
//!
//! Depends on [`crate::kernels`] only; never on the engine, profiler or harness.

mod blas;
mod device;
mod error;
mod launch;
mod memory;
mod partition;
mod tenant;

pub use blas::{BlasGemm, BlasLt};
pub use device::{mps_control_path, Device, DeviceInfo, PartitionSupport, PriorityRange};
pub use error::{Error, PartitionError, Result};
pub use launch::{auto_grid, Grid, KernelTable, LoadedKernel};
pub use memory::{DeviceBuffer, DeviceCopy};
pub use partition::{group_range, GroupRange, Partition, PartitionId, PartitionPool, PartitionRequest, PoolSpec};
pub use tenant::Tenant;

use crate::kernels::{Kernel, Params};
use serde::{Deserialize, Serialize};

/// Where and how one launch runs: the runtime's decision for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The partition whose stream runs it.
    pub partition: PartitionId,
    /// Index into the pool's priorities.
    pub priority_level: usize,
    /// Grid size.
    pub grid: Grid,
}

impl Placement {
    /// The whole device at the first priority level, grid sized automatically.
    pub const WHOLE: Placement = Placement { partition: PartitionId::WHOLE, priority_level: 0, grid: Grid::Auto };

    /// Partition `partition`, first priority level, automatic grid.
    pub fn on(partition: PartitionId) -> Placement {
        Placement { partition, ..Placement::WHOLE }
    }
}

/// An open device with its partitions and loaded kernels.
#[derive(Debug)]
pub struct Runtime {
    // Field order is drop order: kernels and partitions before the device's context.
    kernels: KernelTable,
    pool: PartitionPool,
    device: Device,
}

impl Runtime {
    /// Loads the kernels on `device` and makes the partitions of `spec`.
    pub fn new(device: Device, spec: &PoolSpec) -> Result<Runtime> {
        let pool = PartitionPool::new(&device, spec)?;
        let kernels = KernelTable::load(&device)?;
        Ok(Runtime { kernels, pool, device })
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The partitions.
    pub fn pool(&self) -> &PartitionPool {
        &self.pool
    }

    /// The loaded kernels.
    pub fn kernels(&self) -> &KernelTable {
        &self.kernels
    }

    /// Launches `kernel` with `params` as `placement` says and returns the grid it used.
    /// The params are checked against the kernel's constraints first; a launch with no work
    /// units launches nothing (and returns 0).
    ///
    /// # Safety
    /// Every device address in `params` points to live memory of the sizes the kernel's
    /// header (`kernels/*.cu`) documents for these params, and nothing else writes the
    /// kernel's outputs until the launch completes.
    pub unsafe fn launch<P: Params>(&self, kernel: Kernel<P>, params: &P, placement: Placement) -> Result<u32> {
        let id = kernel.id();
        params.check(id)?;
        let part = self.pool.get(placement.partition)?;
        let stream = part.stream(placement.priority_level)?;
        let units = params.units(id);
        if units == 0 {
            return Ok(0);
        }
        let loaded = self.kernels.get(id);
        let grid = match placement.grid {
            Grid::Auto => auto_grid(units, part.sms(), loaded.blocks_per_sm),
            Grid::Fixed(g) if (1..=i32::MAX as u32).contains(&g) => g,
            Grid::Fixed(g) => return Err(Error::Launch { kernel: id.name(), reason: format!("grid of {g} blocks") }),
        };
        self.device.bind()?;
        // SAFETY: `Kernel<P>` ties P to the kernel; the caller vouches for the addresses;
        // the stream belongs to this device and its primary context is current.
        unsafe { launch::launch_raw(loaded, grid, stream, params)? };
        Ok(grid)
    }

    /// Waits for all work on every partition.
    pub fn synchronize(&self) -> Result<()> {
        self.pool.synchronize()
    }
}

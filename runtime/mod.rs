//! The runtime: the GPU, its SM partitions, the loaded kernels and the launch path every
//! kernel takes.
//!
//! Depends on [`crate::kernels`] only; never on the engine, profiler or harness.

mod blas;
mod claims;
mod device;
mod driver;
mod error;
mod foreign;
mod handles;
mod hush;
mod launch;
mod memory;
mod partition;
mod plan;
pub mod policy;
pub mod queues;
mod rt;
mod scheduler;
pub(crate) mod sync;
mod tenant;
mod timer;
mod trace;
pub mod work;

pub use blas::{BlasGemm, BlasLt, BlasShape};
pub use claims::{claim_level, Chain, Claims, Ticket, UnitOrder};
pub use device::{mps_control_path, Device, DeviceInfo, PartitionSupport, PriorityRange};
pub(crate) use error::check;
pub use error::{is_sticky, Error, PartitionError, Result};
pub use foreign::{ForeignGrid, ForeignKernel, ForeignModule};
pub use handles::{Event, Stream};
pub use hush::Hush;
pub use launch::{auto_grid, gemm_tma_params, Grid, KernelTable, LoadedKernel, Placement};
pub use memory::{DeviceBuffer, DeviceCopy};
pub use partition::{group_range, Partition, PartitionId, PartitionPool, PartitionRequest, PoolSpec};
pub use plan::Plan;
pub use policy::GroupRange;
pub use rt::Runtime;
pub use scheduler::{MinSms, Scheduler};
pub(crate) use tenant::OrderEvent;
pub use tenant::{PlanSet, Recorded, Tenant};
pub use timer::{monotonic_ns, EventTimer};
pub use trace::{unix_ns, GpuSlice, LaunchRecord, Timeline, TraceSink};
pub use work::{Issued, Launch, Work};

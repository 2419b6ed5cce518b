//! Launch-trace hooks: a sink the runtime calls once per launch with what it decided. Off by
//! default; when off, a launch pays one atomic load.

use std::fmt;

use serde::Serialize;

use super::policy::TenantId;
use super::PartitionId;
use crate::kernels::KernelId;

/// One launch as the runtime issued it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LaunchRecord {
    /// Who launched it.
    pub tenant: TenantId,
    /// Which kernel.
    pub kernel: KernelId,
    /// The partition it went to.
    pub partition: PartitionId,
    /// SMs of that partition.
    pub sms: u32,
    /// Blocks launched.
    pub grid: u32,
    /// Priority of the stream it went to.
    pub priority: i32,
    /// Host time of the launch, in nanoseconds since the runtime was made.
    pub host_ns: u64,
}

/// Receives every launch record; called on the launching thread, so it must be quick.
pub trait TraceSink: Send + Sync {
    /// One launch.
    fn launch(&self, record: &LaunchRecord);
}

impl fmt::Debug for dyn TraceSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TraceSink")
    }
}

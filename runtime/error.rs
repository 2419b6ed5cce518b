//! The runtime's errors: each says what was asked and what the device offers.

use cudarc::driver::{sys, DriverError};

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong opening a GPU, making partitions or launching.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libcuda could not be loaded.
    #[error("no NVIDIA driver: libcuda.so could not be loaded")]
    NoDriver,
    /// The driver is there but has no such device.
    #[error("no CUDA device {ordinal}: the driver sees {count}")]
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// How many devices the driver reports.
        count: i32,
    },
    /// A shared library the operation needs could not be loaded.
    #[error("{0} could not be loaded (is it on the library path?)")]
    MissingLibrary(&'static str),
    /// A cuBLASLt call failed.
    #[error("{call}: {status}")]
    Blas {
        /// The cuBLASLt function that failed.
        call: &'static str,
        /// Its status.
        status: String,
    },
    /// A driver call failed.
    #[error("{call}: {source}")]
    Driver {
        /// The driver function that failed.
        call: &'static str,
        /// The driver's error.
        #[source]
        source: DriverError,
    },
    /// A partition request the device cannot satisfy.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// A host thread the runtime needs could not be started.
    #[error("cannot start {what}: {reason}")]
    Thread {
        /// The thread's job.
        what: &'static str,
        /// The system's answer.
        reason: String,
    },
    /// A host slice whose length does not match a device buffer.
    #[error("{what}: {got} elements given for a buffer of {expected}")]
    Length {
        /// The operation.
        what: &'static str,
        /// Elements in the buffer.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// Kernel params that break the kernel's documented constraints.
    #[error(transparent)]
    Params(#[from] crate::kernels::ParamError),
    /// A kernel or module from outside the library that cannot be loaded or launched as asked.
    #[error("{what}: {reason}")]
    Foreign {
        /// The module or kernel (its name).
        what: String,
        /// Why.
        reason: String,
    },
    /// An environment variable the runtime reads, set to a value it does not take.
    #[error("{0}")]
    Setting(String),
    /// A launch that cannot be issued as asked.
    #[error("launch of {kernel}: {reason}")]
    Launch {
        /// The kernel's symbol.
        kernel: &'static str,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// True when the machine has no usable GPU or driver (as opposed to a failure on one).
    pub fn is_no_gpu(&self) -> bool {
        match self {
            Error::NoDriver | Error::NoDevice { .. } => true,
            Error::Driver { source, .. } => matches!(
                source.0,
                sys::CUresult::CUDA_ERROR_NO_DEVICE
                    | sys::CUresult::CUDA_ERROR_STUB_LIBRARY
                    | sys::CUresult::CUDA_ERROR_SYSTEM_DRIVER_MISMATCH
            ),
            _ => false,
        }
    }
}

/// Driver results after which a context cannot be used again ("sticky" errors: a kernel
/// faulted, and every later call in the context fails the same way).
pub fn is_sticky(r: sys::CUresult) -> bool {
    use sys::CUresult::*;
    matches!(
        r,
        CUDA_ERROR_ILLEGAL_ADDRESS
            | CUDA_ERROR_LAUNCH_FAILED
            | CUDA_ERROR_ILLEGAL_INSTRUCTION
            | CUDA_ERROR_MISALIGNED_ADDRESS
            | CUDA_ERROR_INVALID_ADDRESS_SPACE
            | CUDA_ERROR_INVALID_PC
            | CUDA_ERROR_HARDWARE_STACK_ERROR
            | CUDA_ERROR_ASSERT
            | CUDA_ERROR_ECC_UNCORRECTABLE
            | CUDA_ERROR_CONTEXT_IS_DESTROYED
    )
}

/// Why a partition could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    /// The device or driver has no green contexts.
    #[error("SM partitions (green contexts) are not available: {0}")]
    Unsupported(String),
    /// The size is not a positive multiple of the granularity, or too large.
    #[error(
        "asked for a partition of {sms} SMs; this device partitions in steps of {granularity} SMs, \
         up to {max_sms} SMs ({groups} groups), besides the whole device of {total_sms} SMs"
    )]
    Size {
        /// SMs asked for.
        sms: u32,
        /// SMs per group.
        granularity: u32,
        /// Groups the device splits into.
        groups: u32,
        /// Largest partition made of groups.
        max_sms: u32,
        /// SMs of the whole device.
        total_sms: u32,
    },
    /// The groups asked for run past the last group.
    #[error(
        "asked for groups {first}..{end} ({sms} SMs from group {first}); this device has groups 0..{groups} \
         of {granularity} SMs"
    )]
    Range {
        /// First group asked for.
        first: u32,
        /// One past the last group asked for.
        end: u32,
        /// SMs asked for.
        sms: u32,
        /// Groups the device splits into.
        groups: u32,
        /// SMs per group.
        granularity: u32,
    },
    /// A stream priority outside the device's range.
    #[error("stream priority {priority} is outside this device's range {least} (least) to {greatest} (greatest)")]
    Priority {
        /// Priority asked for.
        priority: i32,
        /// Least priority (numerically largest).
        least: i32,
        /// Greatest priority (numerically smallest).
        greatest: i32,
    },
    /// No such partition or priority level in the pool.
    #[error("the pool has no {what} {index} (it has {len})")]
    Unknown {
        /// "partition" or "priority level".
        what: &'static str,
        /// Index asked for.
        index: usize,
        /// How many there are.
        len: usize,
    },
}

/// Adds the name of the driver call to a cudarc error.
pub(crate) trait DriverContext<T> {
    fn call(self, call: &'static str) -> Result<T>;
}

impl<T> DriverContext<T> for Result<T, DriverError> {
    fn call(self, call: &'static str) -> Result<T> {
        self.map_err(|source| Error::Driver { call, source })
    }
}

/// Checks a raw `CUresult` from a `sys` call.
pub(crate) fn check(call: &'static str, r: sys::CUresult) -> Result<()> {
    r.result().call(call)
}

//! Opening a GPU and reading what it offers: SMs, memory, stream priorities and the SM
//! partitions (green contexts) its driver can make.
//!
//! Owns the primary context. Knows nothing of kernels, partitions in use or tenants.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext};
use serde::Serialize;

use super::error::{check, DriverContext, Error, PartitionError, Result};
use super::policy::Topology;

/// An open GPU: its primary context and what it offers.
#[derive(Debug)]
pub struct Device {
    ctx: Arc<CudaContext>,
    info: DeviceInfo,
    /// The split partitions are made from, or why there is none.
    split: std::result::Result<SmSplit, String>,
}

/// What a device offers, as `rightsize info` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    /// Ordinal in the driver's enumeration.
    pub ordinal: usize,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// PCI bus id, e.g. "0000:3B:00.0" (how NVML finds the same GPU).
    pub pci_bus_id: Option<String>,
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Compute capability (major, minor).
    pub compute_capability: (u32, u32),
    /// CUDA version the driver implements, e.g. (13, 0).
    pub cuda_driver_version: (u32, u32),
    /// Kernel-module release, e.g. "580.159.04", where the OS exposes it.
    pub driver_release: Option<String>,
    /// Device memory in bytes.
    pub total_memory_bytes: u64,
    /// Free device memory in bytes when the device was opened.
    pub free_memory_bytes: u64,
    /// L2 cache in bytes.
    pub l2_cache_bytes: u64,
    /// Shared memory a block may opt in to, in bytes.
    pub max_shared_memory_per_block_optin: u32,
    /// Stream priorities the device supports.
    pub stream_priorities: PriorityRange,
    /// SM partitions (green contexts).
    pub partitions: PartitionSupport,
}

/// Stream priorities: lower numbers are greater priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PriorityRange {
    /// The least priority (numerically largest, usually 0).
    pub least: i32,
    /// The greatest priority (numerically smallest, e.g. -5).
    pub greatest: i32,
}

impl PriorityRange {
    /// Whether `p` is a valid priority on this device.
    pub fn contains(&self, p: i32) -> bool {
        self.greatest <= p && p <= self.least
    }
}

/// Whether and how the device can confine work to a subset of its SMs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PartitionSupport {
    /// Green contexts work.
    Supported {
        /// SMs per group: partitions come in multiples of this (read from the device by
        /// splitting its SM resource into the smallest groups the driver allows).
        granularity: u32,
        /// Groups of `granularity` SMs one split yields.
        groups: u32,
        /// SMs left over by that split (usable only through the whole device).
        remaining_sms: u32,
        /// `minSmPartitionSize` of the device's SM resource.
        min_partition_sms: u32,
        /// `smCoscheduledAlignment` of the device's SM resource.
        coscheduled_alignment: u32,
    },
    /// Green contexts are not available, and why.
    Unsupported {
        /// Why.
        reason: String,
    },
}

impl PartitionSupport {
    /// The device as the policies see it: its groups and the SMs outside them; the reason
    /// when there are no partitions.
    pub fn topology(&self) -> std::result::Result<Topology, &str> {
        match self {
            PartitionSupport::Supported { granularity, groups, remaining_sms, .. } => {
                Ok(Topology { groups: *groups, granularity: *granularity, rest_sms: *remaining_sms })
            }
            PartitionSupport::Unsupported { reason } => Err(reason),
        }
    }
}

impl Device {
    /// Opens GPU `ordinal` and reads its properties.
    ///
    /// Fails with [`Error::NoDriver`] or [`Error::NoDevice`] (see [`Error::is_no_gpu`]) on a
    /// machine without a usable GPU.
    pub fn open(ordinal: usize) -> Result<Device> {
        // SAFETY: only tries to dlopen libcuda; no CUDA call is made.
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::NoDriver);
        }
        result::init().call("cuInit")?;
        let count = result::device::get_count().call("cuDeviceGetCount")?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::NoDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal).call("cuDevicePrimaryCtxRetain")?;
        ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let dev = ctx.cu_device();
        let attr = |a: sys::CUdevice_attribute| -> Result<u32> {
            Ok(ctx.attribute(a).call("cuDeviceGetAttribute")?.max(0) as u32)
        };
        use sys::CUdevice_attribute as A;
        let sm_count = attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
        let cc = (
            attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        );
        let mut version = 0;
        // SAFETY: writes one int.
        check("cuDriverGetVersion", unsafe { sys::cuDriverGetVersion(&mut version) })?;
        let cuda_driver_version = (version as u32 / 1000, (version as u32 % 1000) / 10);
        let (free, total) = result::mem_get_info().call("cuMemGetInfo")?;
        let (least, greatest) = result::stream::get_priority_range().call("cuCtxGetStreamPriorityRange")?;

        // Green contexts need a CUDA 12.4 driver; asking an older one would fail to resolve.
        let split = if version < 12040 {
            Err(format!(
                "the driver implements CUDA {}.{}; green contexts need 12.4",
                cuda_driver_version.0, cuda_driver_version.1
            ))
        } else {
            SmSplit::query(dev).map_err(|e| e.to_string())
        };
        let partitions = match &split {
            Ok(s) => PartitionSupport::Supported {
                granularity: s.granularity,
                groups: s.group_count(),
                remaining_sms: s.remaining_sms(),
                min_partition_sms: s.min_partition_sms,
                coscheduled_alignment: s.coscheduled_alignment,
            },
            Err(reason) => PartitionSupport::Unsupported { reason: reason.clone() },
        };
        let info = DeviceInfo {
            ordinal,
            name: ctx.name().call("cuDeviceGetName")?,
            pci_bus_id: pci_bus_id(dev),
            sm_count,
            compute_capability: cc,
            cuda_driver_version,
            driver_release: driver_release(Path::new("/proc/driver/nvidia/version")),
            total_memory_bytes: total as u64,
            free_memory_bytes: free as u64,
            l2_cache_bytes: u64::from(attr(A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?),
            max_shared_memory_per_block_optin: attr(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?,
            stream_priorities: PriorityRange { least, greatest },
            partitions,
        };
        Ok(Device { ctx, info, split })
    }

    /// What the device offers.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The primary context, which owns all memory and modules.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Whether this process's contexts on the device are shared through MPS, i.e. it is a
    /// client of an MPS daemon (`CU_DEVICE_ATTRIBUTE_MPS_ENABLED`). A client that cannot reach
    /// the daemon its `CUDA_MPS_PIPE_DIRECTORY` names runs without MPS and says nothing: this
    /// is how to know.
    pub fn mps_enabled(&self) -> Result<bool> {
        let a = sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MPS_ENABLED;
        Ok(self.ctx.attribute(a).call("cuDeviceGetAttribute(MPS_ENABLED)")? != 0)
    }

    /// Makes the primary context current on the calling thread.
    pub fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")
    }

    /// The SM split partitions are made from, if the device has green contexts.
    pub(crate) fn split(&self) -> Result<&SmSplit> {
        self.split.as_ref().map_err(|reason| PartitionError::Unsupported(reason.clone()).into())
    }
}

/// The device's SM resource split into the smallest groups the driver makes.
#[derive(Clone)]
pub(crate) struct SmSplit {
    groups: Vec<sys::CUdevResource>,
    /// The SMs the split leaves outside its groups (a resource of 0 SMs when none).
    remaining: sys::CUdevResource,
    /// SMs per group.
    pub(crate) granularity: u32,
    remaining_sms: u32,
    /// `minSmPartitionSize` of the device's SM resource.
    pub(crate) min_partition_sms: u32,
    /// `smCoscheduledAlignment` of the device's SM resource.
    pub(crate) coscheduled_alignment: u32,
    total_sms: u32,
}

impl fmt::Debug for SmSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmSplit")
            .field("groups", &self.groups.len())
            .field("granularity", &self.granularity)
            .field("remaining_sms", &self.remaining_sms)
            .field("total_sms", &self.total_sms)
            .finish()
    }
}

pub(crate) fn sm_count(r: &sys::CUdevResource) -> u32 {
    // SAFETY: every resource here is of type CU_DEV_RESOURCE_TYPE_SM, whose union member is `sm`.
    unsafe { r.__bindgen_anon_1.sm.smCount }
}

impl SmSplit {
    /// Reads the device's SM resource and splits it with `minCount = 1`: the driver rounds
    /// groups up to the smallest size it can confine work to, which is the granularity.
    pub(crate) fn query(dev: sys::CUdevice) -> Result<SmSplit> {
        // SAFETY: CUdevResource is plain data; the driver fills it.
        let mut all: sys::CUdevResource = unsafe { std::mem::zeroed() };
        // SAFETY: `all` is a valid out-pointer.
        check("cuDeviceGetDevResource", unsafe {
            sys::cuDeviceGetDevResource(dev, &mut all, sys::CUdevResourceType::CU_DEV_RESOURCE_TYPE_SM)
        })?;
        // SAFETY: `all` is an SM resource.
        let sm = unsafe { all.__bindgen_anon_1.sm };
        let mut count: u32 = 0;
        // SAFETY: a null result array asks only for the number of groups.
        let mut remaining: sys::CUdevResource = unsafe { std::mem::zeroed() };
        check("cuDevSmResourceSplitByCount", unsafe {
            sys::cuDevSmResourceSplitByCount(std::ptr::null_mut(), &mut count, &all, &mut remaining, 0, 1)
        })?;
        let mut groups: Vec<sys::CUdevResource> = vec![unsafe { std::mem::zeroed() }; count as usize];
        // SAFETY: `groups` has room for `count` resources.
        check("cuDevSmResourceSplitByCount", unsafe {
            sys::cuDevSmResourceSplitByCount(groups.as_mut_ptr(), &mut count, &all, &mut remaining, 0, 1)
        })?;
        groups.truncate(count as usize);
        let granularity = groups.first().map(sm_count).unwrap_or(0);
        if granularity == 0 || groups.iter().any(|g| sm_count(g) != granularity) {
            return Err(PartitionError::Unsupported(format!(
                "the driver split {} SMs into {} groups of unequal or zero size",
                sm.smCount,
                groups.len()
            ))
            .into());
        }
        Ok(SmSplit {
            granularity,
            remaining_sms: sm_count(&remaining),
            remaining,
            min_partition_sms: sm.minSmPartitionSize,
            coscheduled_alignment: sm.smCoscheduledAlignment,
            total_sms: sm.smCount,
            groups,
        })
    }

    pub(crate) fn group_count(&self) -> u32 {
        self.groups.len() as u32
    }

    pub(crate) fn remaining_sms(&self) -> u32 {
        self.remaining_sms
    }

    pub(crate) fn total_sms(&self) -> u32 {
        self.total_sms
    }

    /// The resources of groups `groups` (and the SMs outside the groups with `rest`): what
    /// a green context of those SMs is made from.
    pub(crate) fn members(&self, groups: std::ops::Range<usize>, rest: bool) -> Vec<sys::CUdevResource> {
        let mut members = self.groups[groups].to_vec();
        if rest {
            members.push(self.remaining);
        }
        members
    }
}

/// Reads the kernel module's release from `/proc/driver/nvidia/version`.
/// The PCI bus id of `dev`, if the driver gives it.
fn pci_bus_id(dev: sys::CUdevice) -> Option<String> {
    let mut buf = [0 as std::ffi::c_char; 32];
    // SAFETY: writes at most `buf.len()` bytes, NUL-terminated.
    let r = unsafe { sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as i32, dev) };
    if r != sys::CUresult::CUDA_SUCCESS {
        return None;
    }
    // SAFETY: NUL-terminated by the driver on success.
    let id = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    id.to_str().ok().map(str::to_string)
}

fn driver_release(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_driver_release(&text)
}

fn parse_driver_release(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version"))?;
    line.split_whitespace()
        .find(|w| {
            w.split('.').count() >= 2 && w.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// Where `nvidia-cuda-mps-control` is, if it is on `PATH`.
pub fn mps_control_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("nvidia-cuda-mps-control")).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_driver_release() {
        let text = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U22)  Thu Oct  2 2025\nGCC version:  gcc version 12\n";
        assert_eq!(parse_driver_release(text).as_deref(), Some("580.159.04"));
        assert_eq!(parse_driver_release("garbage"), None);
    }

    #[test]
    fn priority_range_contains() {
        let r = PriorityRange { least: 0, greatest: -5 };
        assert!(r.contains(0) && r.contains(-5) && r.contains(-2));
        assert!(!r.contains(1) && !r.contains(-6));
    }

    #[test]
    fn open_without_gpu_is_a_clear_error() {
        // On a machine with a GPU this opens it; without one it must be a no-GPU error, not a panic.
        match Device::open(0) {
            Ok(d) => assert!(d.info().sm_count > 0),
            Err(e) => assert!(e.is_no_gpu(), "unexpected error: {e}"),
        }
    }
}

//! Device memory owned by the primary context, usable from every partition's streams.
//!
//! Copies here are synchronous (they have landed when they return) and meant for setup and
//! checking, not for the launch path.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext};
use half::f16;

use super::device::Device;
use super::error::{DriverContext, Error, Result};

/// Element types that may be copied to and from the device bit for bit.
///
/// # Safety
/// Every bit pattern must be a valid value (no padding, no invalid states).
pub unsafe trait DeviceCopy: Copy + Send + Sync + 'static {}

// SAFETY: plain numbers; every bit pattern is a value.
unsafe impl DeviceCopy for u8 {}
// SAFETY: as above.
unsafe impl DeviceCopy for u32 {}
// SAFETY: as above.
unsafe impl DeviceCopy for i32 {}
// SAFETY: as above.
unsafe impl DeviceCopy for u64 {}
// SAFETY: as above.
unsafe impl DeviceCopy for f32 {}
// SAFETY: as above.
unsafe impl DeviceCopy for f16 {}

/// `len` elements of `T` in device memory, freed on drop.
pub struct DeviceBuffer<T: DeviceCopy> {
    ptr: sys::CUdeviceptr,
    len: usize,
    ctx: Arc<CudaContext>,
    _t: PhantomData<T>,
}

impl<T: DeviceCopy> fmt::Debug for DeviceBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceBuffer<{}>({:#x}, len {})", std::any::type_name::<T>(), self.ptr, self.len)
    }
}

impl<T: DeviceCopy> DeviceBuffer<T> {
    /// Allocates `len` elements, every byte set to `fill` (poison outputs with 0xFF: all-ones
    /// halves are NaN, so an element a kernel fails to write cannot pass a check).
    pub fn filled(device: &Device, len: usize, fill: u8) -> Result<Self> {
        device.bind()?;
        let bytes = (len * std::mem::size_of::<T>()).max(1);
        // SAFETY: the primary context is current.
        let ptr = unsafe { result::malloc_sync(bytes) }.call("cuMemAlloc")?;
        let buf = DeviceBuffer { ptr, len, ctx: device.context().clone(), _t: PhantomData };
        // SAFETY: `ptr` holds `bytes` bytes.
        unsafe { result::memset_d8_sync(ptr, fill, bytes) }.call("cuMemsetD8")?;
        settle()?;
        Ok(buf)
    }

    /// Allocates and copies `data` to the device.
    pub fn from_host(device: &Device, data: &[T]) -> Result<Self> {
        let mut buf = Self::filled(device, data.len(), 0)?;
        buf.copy_from_host(data)?;
        Ok(buf)
    }

    /// Overwrites the buffer with `data` (same length).
    pub fn copy_from_host(&mut self, data: &[T]) -> Result<()> {
        if data.len() != self.len {
            return Err(Error::Length { what: "copy_from_host", expected: self.len, got: data.len() });
        }
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: the buffer holds exactly `data.len()` elements.
        unsafe { result::memcpy_htod_sync(self.ptr, data) }.call("cuMemcpyHtoD")?;
        settle()
    }

    /// Sets every byte to `fill`.
    pub fn fill_bytes(&mut self, fill: u8) -> Result<()> {
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        // SAFETY: the buffer holds this many bytes.
        unsafe { result::memset_d8_sync(self.ptr, fill, self.len * std::mem::size_of::<T>()) }.call("cuMemsetD8")?;
        settle()
    }

    /// Copies the buffer to the host, after all work already queued on the device by this
    /// context (synchronous copy; partition streams are non-blocking, so synchronize them first).
    pub fn to_host(&self) -> Result<Vec<T>> {
        self.prefix_to_host(self.len)
    }

    /// Copies the first `n` elements (at most the buffer's) to the host, as [`Self::to_host`].
    pub fn prefix_to_host(&self, n: usize) -> Result<Vec<T>> {
        self.ctx.bind_to_thread().call("cuCtxSetCurrent")?;
        let n = n.min(self.len);
        let mut out = Vec::<T>::with_capacity(n);
        // SAFETY: `T: DeviceCopy` makes any bytes a valid value; the copy fills all `n`, which
        // the buffer holds.
        unsafe {
            out.set_len(n);
            result::memcpy_dtoh_sync(&mut out, self.ptr)
        }
        .call("cuMemcpyDtoH")?;
        Ok(out)
    }

    /// The device address, for a kernel's params struct.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Waits until a "synchronous" copy or memset has really landed. From pageable host memory
/// `cuMemcpyHtoD` may return before its DMA completes, and `cuMemsetD8` may return before the
/// set; both run on the legacy stream, which the partitions' non-blocking streams do not wait
/// for. Without this, a kernel launched next could read the old contents.
fn settle() -> Result<()> {
    // SAFETY: synchronizes the current context's legacy default stream.
    unsafe { result::stream::synchronize(std::ptr::null_mut()) }.call("cuStreamSynchronize")
}

impl<T: DeviceCopy> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: allocated by cuMemAlloc in this context and freed once.
        let _ = unsafe { result::free_sync(self.ptr) };
    }
}

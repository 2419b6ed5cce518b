//! Fallible wrappers of the driver calls cudarc's `result` layer lacks, in its style: one
//! function per call, grouped by object, returning `Result`. Code above `handles`, `device`
//! and `partition` calls these or cudarc's `result`, not `sys`.

/// Streams.
pub(crate) mod stream {
    use cudarc::driver::{sys, DriverError};

    /// The priority `stream` was made with (`cuStreamGetPriority`).
    ///
    /// See [CUDA driver API: Stream Management](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__STREAM.html).
    ///
    /// # Safety
    /// `stream` is a live stream (or null, the legacy default stream).
    pub(crate) unsafe fn priority(stream: sys::CUstream) -> Result<i32, DriverError> {
        let mut p = 0;
        // SAFETY: the caller's contract; writes one int.
        unsafe { sys::cuStreamGetPriority(stream, &mut p) }.result()?;
        Ok(p)
    }
}

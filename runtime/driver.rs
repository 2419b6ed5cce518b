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

    /// Enqueues the memory operations `ops` on `stream`, in order (`cuStreamBatchMemOp`): they
    /// take effect without an SM.
    ///
    /// See [CUDA driver API: Stream Memory Operations](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__MEMOP.html).
    ///
    /// # Safety
    /// 1. `stream` is a live stream of the current context.
    /// 2. Every address in `ops` is device memory of that context, live until the ops ran.
    pub(crate) unsafe fn batch_mem_op(
        stream: sys::CUstream,
        ops: &mut [sys::CUstreamBatchMemOpParams],
    ) -> Result<(), DriverError> {
        let n = u32::try_from(ops.len()).map_err(|_| DriverError(sys::CUresult::CUDA_ERROR_INVALID_VALUE))?;
        // SAFETY: the caller's contract; `ops` is valid for `n` entries during the call.
        unsafe { sys::cuStreamBatchMemOp_v2(stream, n, ops.as_mut_ptr(), 0) }.result()
    }
}

/// Modules and their functions.
pub(crate) mod module {
    use std::ffi::{c_void, CStr};

    use cudarc::driver::{sys, DriverError};

    /// Loads the module image `image` (a cubin, fatbin or NUL-terminated PTX) into the current
    /// context with JIT options (`cuModuleLoadDataEx`).
    ///
    /// See [CUDA driver API: Module Management](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__MODULE.html).
    ///
    /// # Safety
    /// 1. `image` points to a complete image that outlives the call.
    /// 2. `values[i]` is what `options[i]` expects (a log buffer and its size, …), valid during
    ///    the call; the two slices have the same length.
    pub(crate) unsafe fn load_data_ex(
        image: *const c_void,
        options: &mut [sys::CUjit_option],
        values: &mut [*mut c_void],
    ) -> Result<sys::CUmodule, DriverError> {
        assert_eq!(options.len(), values.len(), "one value per JIT option");
        let n = u32::try_from(options.len()).map_err(|_| DriverError(sys::CUresult::CUDA_ERROR_INVALID_VALUE))?;
        let mut m = std::ptr::null_mut();
        // SAFETY: the caller's contract; writes one handle.
        unsafe { sys::cuModuleLoadDataEx(&mut m, image, n, options.as_mut_ptr(), values.as_mut_ptr()) }.result()?;
        Ok(m)
    }

    /// Function `name` of `module` (`cuModuleGetFunction`; `CUDA_ERROR_NOT_FOUND` when it has
    /// none of that name).
    ///
    /// See [CUDA driver API: Module Management](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__MODULE.html).
    ///
    /// # Safety
    /// `module` is a live module.
    pub(crate) unsafe fn function(module: sys::CUmodule, name: &CStr) -> Result<sys::CUfunction, DriverError> {
        let mut f = std::ptr::null_mut();
        // SAFETY: the caller's contract; a NUL-terminated name; writes one handle.
        unsafe { sys::cuModuleGetFunction(&mut f, module, name.as_ptr()) }.result()?;
        Ok(f)
    }
}

/// Launches.
pub(crate) mod launch {
    use std::ffi::c_void;

    use cudarc::driver::{sys, DriverError};

    /// Launches `function` as `config` says, with its parameters `args` (`cuLaunchKernelEx`).
    ///
    /// See [CUDA driver API: Execution Control](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__EXEC.html).
    ///
    /// # Safety
    /// 1. `function` is live in the context of `config.hStream`, and `args` points to one
    ///    pointer per kernel parameter, each to a value of that parameter's type and size.
    /// 2. `config` and the attributes it points to are valid during the call.
    /// 3. The kernel only touches memory that stays live until it completes.
    #[inline]
    pub(crate) unsafe fn kernel_ex(
        config: &sys::CUlaunchConfig,
        function: sys::CUfunction,
        args: *mut *mut c_void,
    ) -> Result<(), DriverError> {
        // SAFETY: the caller's contract.
        unsafe { sys::cuLaunchKernelEx(config, function, args, std::ptr::null_mut()) }.result()
    }
}

/// Tensor maps (TMA descriptors).
pub(crate) mod tensor_map {
    use std::ffi::c_void;

    use cudarc::driver::{sys, DriverError};

    /// An FP16 tensor map of `dims` elements (innermost first) at `base`, the outer dimensions
    /// `strides` bytes apart, copied in boxes of `boxes` elements, 256-byte L2 promotion, zero
    /// fill out of bounds (`cuTensorMapEncodeTiled`). Encoded on the host; no context needed.
    /// The driver checks ranks (1 to 5) and the sizes' alignment.
    ///
    /// See [CUDA driver API: Tensor Map Object Management](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__TENSOR__MEMORY.html).
    pub(crate) fn encode_f16(
        base: u64,
        dims: &[u64],
        strides: &[u64],
        boxes: &[u32],
        swizzle: sys::CUtensorMapSwizzle,
    ) -> Result<sys::CUtensorMap, DriverError> {
        // The driver reads as many of each as the rank says: a stride between dimensions, a
        // box extent each, at most five.
        if dims.is_empty() || dims.len() > 5 || strides.len() + 1 != dims.len() || boxes.len() != dims.len() {
            return Err(DriverError(sys::CUresult::CUDA_ERROR_INVALID_VALUE));
        }
        let mut map = sys::CUtensorMap { opaque: [0; 16] };
        let steps = [1u32; 5];
        // SAFETY: encodes a descriptor on the host from the slices above (the rank their
        // lengths); `base` is not dereferenced.
        unsafe {
            sys::cuTensorMapEncodeTiled(
                &mut map,
                sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                dims.len() as u32,
                base as *mut c_void,
                dims.as_ptr(),
                strides.as_ptr(),
                boxes.as_ptr(),
                steps.as_ptr(),
                sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
                swizzle,
                sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
            )
        }
        .result()?;
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::tensor_map::encode_f16;
    use cudarc::driver::sys;

    #[test]
    fn a_tensor_map_of_mismatched_extents_is_refused_before_the_driver_reads_them() {
        let none = sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_NONE;
        let refused =
            |dims: &[u64], strides: &[u64], boxes: &[u32]| encode_f16(0, dims, strides, boxes, none).err().map(|e| e.0);
        let invalid = Some(sys::CUresult::CUDA_ERROR_INVALID_VALUE);
        assert_eq!(refused(&[64, 8], &[], &[64, 8]), invalid, "a stride missing");
        assert_eq!(refused(&[64, 8], &[128], &[64]), invalid, "a box extent missing");
        assert_eq!(refused(&[], &[], &[]), invalid, "no dimension");
        assert_eq!(refused(&[1; 6], &[2; 5], &[1; 6]), invalid, "more than five");
    }
}

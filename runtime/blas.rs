//! cuBLASLt for `D = A·Bᵀ (+ bias) (+ R)` on row-major FP16 operands with FP32 accumulation:
//! the baseline the GEMM kernels are measured against and the engine's alternative GEMM
//! backend, launched on any partition's stream and told how many SMs it may use
//! (`CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET`).
//!
//! A [`BlasGemm`] is planned once (descriptors, layouts, algorithm) and run many times.
//! See [cublasLtMatmul](https://docs.nvidia.com/cuda/cublas/#cublasltmatmul).

use std::ffi::c_void;
use std::fmt;

use cudarc::cublaslt::{result as lt, sys as ltsys};
use cudarc::driver::sys;

use super::device::Device;
use super::error::{Error, Result};
use super::memory::DeviceBuffer;

fn blas<T>(call: &'static str, r: Result<T, lt::CublasError>) -> Result<T> {
    r.map_err(|e| Error::Blas { call, status: format!("{:?}", e.0) })
}

/// A cuBLASLt handle with its workspace.
pub struct BlasLt {
    handle: ltsys::cublasLtHandle_t,
    workspace: DeviceBuffer<u8>,
}

// SAFETY: a cuBLASLt handle may be used from any thread, one call at a time per stream; the
// handle itself is not mutated after creation.
unsafe impl Send for BlasLt {}
// SAFETY: as above.
unsafe impl Sync for BlasLt {}

impl fmt::Debug for BlasLt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlasLt").field("workspace_bytes", &self.workspace.len()).finish()
    }
}

impl Drop for BlasLt {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once.
        let _ = unsafe { lt::destroy_handle(self.handle) };
    }
}

/// A GEMM shape cuBLASLt plans for: `D[m×n] = A[m×k]·B[n×k]ᵀ (+ bias) (+ R)`, row-major
/// FP16 with leading dimensions (elements between rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlasShape {
    /// Rows of A and D.
    pub m: u32,
    /// Rows of B, columns of D.
    pub n: u32,
    /// The shared dimension.
    pub k: u32,
    /// Row stride of A.
    pub lda: u32,
    /// Row stride of B.
    pub ldb: u32,
    /// Row stride of D.
    pub ldd: u32,
    /// Row stride of R when a residual is added.
    pub ldr: Option<u32>,
    /// Whether a bias vector (n) is added.
    pub bias: bool,
}

impl BlasShape {
    /// Contiguous operands, no bias, no residual.
    pub fn plain(m: u32, n: u32, k: u32) -> BlasShape {
        BlasShape { m, n, k, lda: k, ldb: k, ldd: n, ldr: None, bias: false }
    }
}

/// One planned GEMM shape.
pub struct BlasGemm {
    desc: ltsys::cublasLtMatmulDesc_t,
    /// B, A, C (input: R, or D when there is no residual), D.
    layouts: [ltsys::cublasLtMatrixLayout_t; 4],
    algo: ltsys::cublasLtMatmulAlgo_t,
    /// The shape planned for.
    pub shape: BlasShape,
}

// SAFETY: descriptors are immutable after planning.
unsafe impl Send for BlasGemm {}
// SAFETY: as above.
unsafe impl Sync for BlasGemm {}

impl fmt::Debug for BlasGemm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlasGemm({:?})", self.shape)
    }
}

impl Drop for BlasGemm {
    fn drop(&mut self) {
        // SAFETY: created in `plan`, destroyed once.
        unsafe {
            if !self.desc.is_null() {
                let _ = lt::destroy_matmul_desc(self.desc);
            }
            for l in self.layouts.into_iter().filter(|l| !l.is_null()) {
                let _ = lt::destroy_matrix_layout(l);
            }
        }
    }
}

impl BlasLt {
    /// Loads cuBLASLt and makes a handle with a 32 MiB workspace (NVIDIA's advice for Hopper).
    pub fn new(device: &Device) -> Result<BlasLt> {
        // SAFETY: only tries to dlopen the library.
        if !unsafe { ltsys::is_culib_present() } {
            return Err(Error::MissingLibrary("libcublasLt (CUDA 13)"));
        }
        device.bind()?;
        let handle = blas("cublasLtCreate", lt::create_handle())?;
        let workspace = DeviceBuffer::filled(device, 32 << 20, 0)?;
        Ok(BlasLt { handle, workspace })
    }

    /// Plans a GEMM of this shape; `sm_count` limits the SMs cuBLAS plans for.
    pub fn plan(&self, shape: BlasShape, sm_count: Option<u32>) -> Result<BlasGemm> {
        let BlasShape { m, n, k, lda, ldb, ldd, ldr, bias } = shape;
        // Row-major C = A·Bᵀ is column-major Cᵀ = B·Aᵀ with B transposed: the "TN" case.
        use ltsys::cublasLtMatmulDescAttributes_t as D;
        let f16 = ltsys::cudaDataType::CUDA_R_16F;
        // `plan` owns every handle as soon as it is made, so an early return frees each once.
        let mut plan = BlasGemm {
            desc: std::ptr::null_mut(),
            layouts: [std::ptr::null_mut(); 4],
            // SAFETY: plain data, overwritten by the heuristic below.
            algo: unsafe { std::mem::zeroed() },
            shape,
        };
        // Column-major views: B is k×n (ld ldb), A is k×m (ld lda), C and D are n×m.
        let dims = [(k, n, ldb), (k, m, lda), (n, m, ldr.unwrap_or(ldd)), (n, m, ldd)];
        for (slot, (rows, cols, ld)) in plan.layouts.iter_mut().zip(dims) {
            *slot =
                blas("cublasLtMatrixLayoutCreate", lt::create_matrix_layout(f16, rows.into(), cols.into(), ld.into()))?;
        }
        plan.desc = blas(
            "cublasLtMatmulDescCreate",
            lt::create_matmul_desc(ltsys::cublasComputeType_t::CUBLAS_COMPUTE_32F, ltsys::cudaDataType::CUDA_R_32F),
        )?;
        let (desc, [layout_b, layout_a, layout_c, layout_d]) = (plan.desc, plan.layouts);
        // cublasOperation_t's CUBLAS_OP_T.
        let transpose: i32 = 1;
        // SAFETY: attribute buffers of the documented types and sizes.
        unsafe {
            blas(
                "cublasLtMatmulDescSetAttribute(TRANSA)",
                lt::set_matmul_desc_attribute(
                    desc,
                    D::CUBLASLT_MATMUL_DESC_TRANSA,
                    (&transpose as *const i32).cast(),
                    std::mem::size_of::<i32>(),
                ),
            )?;
            if bias {
                let epilogue = ltsys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS;
                blas(
                    "cublasLtMatmulDescSetAttribute(EPILOGUE)",
                    lt::set_matmul_desc_attribute(
                        desc,
                        D::CUBLASLT_MATMUL_DESC_EPILOGUE,
                        (&epilogue as *const ltsys::cublasLtEpilogue_t).cast(),
                        std::mem::size_of::<ltsys::cublasLtEpilogue_t>(),
                    ),
                )?;
            }
            if let Some(sms) = sm_count {
                let sms = sms as i32;
                blas(
                    "cublasLtMatmulDescSetAttribute(SM_COUNT_TARGET)",
                    lt::set_matmul_desc_attribute(
                        desc,
                        D::CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET,
                        (&sms as *const i32).cast(),
                        std::mem::size_of::<i32>(),
                    ),
                )?;
            }
        }
        let pref = blas("cublasLtMatmulPreferenceCreate", lt::create_matmul_pref())?;
        let bytes = self.workspace.len();
        // SAFETY: a preference of the documented type; descriptors made above.
        let heuristic = unsafe {
            let set = lt::set_matmul_pref_attribute(
                pref,
                ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&bytes as *const usize).cast(),
                std::mem::size_of::<usize>(),
            );
            let h = set.and_then(|()| {
                lt::get_matmul_algo_heuristic(self.handle, desc, layout_b, layout_a, layout_c, layout_d, pref)
            });
            let _ = lt::destroy_matmul_pref(pref);
            blas("cublasLtMatmulAlgoGetHeuristic", h)?
        };
        plan.algo = heuristic.algo;
        Ok(plan)
    }

    /// Runs a planned GEMM on `stream`: `d = a·bᵀ (+ bias) (+ r)`; `bias` and `r` are 0 when
    /// the shape has none.
    ///
    /// # Safety
    /// The addresses hold the matrices the plan's shape describes and stay live until the
    /// GEMM completes; `stream` is a live stream of this device; no other thread runs this
    /// plan at the same time (the bias pointer is set on its descriptor).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run(
        &self,
        g: &BlasGemm,
        a: u64,
        b: u64,
        bias: u64,
        r: u64,
        d: u64,
        stream: sys::CUstream,
    ) -> Result<()> {
        let alpha = 1.0f32;
        let beta = if g.shape.ldr.is_some() { 1.0f32 } else { 0.0 };
        let c = if g.shape.ldr.is_some() { r } else { d };
        let [lb, la, lc, ld] = g.layouts;
        if g.shape.bias {
            // SAFETY: a pointer-sized attribute on this plan's descriptor.
            blas("cublasLtMatmulDescSetAttribute(BIAS_POINTER)", unsafe {
                lt::set_matmul_desc_attribute(
                    g.desc,
                    ltsys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                    (&bias as *const u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            })?;
        }
        // SAFETY: the caller upholds the contract; layouts and algorithm were planned for it.
        let r = unsafe {
            lt::matmul(
                self.handle,
                g.desc,
                (&alpha as *const f32).cast(),
                (&beta as *const f32).cast(),
                b as *const c_void,
                lb,
                a as *const c_void,
                la,
                c as *const c_void,
                lc,
                d as *mut c_void,
                ld,
                &g.algo,
                self.workspace.ptr() as *mut c_void,
                self.workspace.len(),
                stream.cast(),
            )
        };
        blas("cublasLtMatmul", r)
    }
}

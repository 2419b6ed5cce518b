//! What each kernel's params mean to the runtime: how many work units a launch has, and
//! whether the params meet the constraints its `.cu` header documents. Pure code; the
//! runtime checks every launch with it, so a shape a kernel does not support is an error,
//! never a silently wrong result.
//!
//! This file holds the [`Params`] trait, [`ParamError`] and the checks every impl shares
//! (`ensure`, `pointers`, `optional`, the shape `key`); the impls live by kernel family:
//! - `gemm`: the GEMMs (`GemmParams`, `GemmTmaParams`), which kernel runs a GEMM, and the
//!   tensor maps of the Hopper ones;
//! - `attention`: prefill and decode attention, the KV-cache append and RoPE, and which
//!   attention kernel runs a head_dim;
//! - `decoder`: the fused decoder layers and their per-phase work units;
//! - `elementwise`: the kernels over elements or rows (vector ops, the SM-id probe, norms,
//!   embedding, activations, fill, argmax).

mod attention;
mod decoder;
mod elementwise;
mod gemm;

pub use attention::{
    attention_decode_kernel, attention_decode_unsplit, attention_prefill_kernel, attention_prefill_kernels,
    decode_attention_need, decode_attention_scratch, decode_chunks,
};
pub use decoder::decoder_phase_units;
pub use elementwise::{argmax_parts, argmax_scratch, vector_units};
pub use gemm::{
    fuses_norm, gemm_kernel, gemm_wgmma_kernel, hopper_gemm, packed_chunk, packed_decode_kernel, packs_decode_weights,
    TensorMapSpec, HOPPER_PREFILL_GEMMS, HOPPER_SMALL_GEMMS,
};

use super::KernelId;

/// Params refused before launch, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kernel}: {reason}")]
pub struct ParamError {
    /// The kernel.
    pub kernel: KernelId,
    /// What is wrong.
    pub reason: String,
}

/// A kernel parameter struct: its launch's work units and its constraints.
pub trait Params: Copy + Send + Sync + 'static {
    /// Work units of `kernel` launched with these params (grid-agnostic kernels loop over them).
    fn units(&self, kernel: KernelId) -> u64;
    /// Checks the documented constraints (shapes, strides, alignment, required pointers).
    fn check(&self, kernel: KernelId) -> Result<(), ParamError>;
    /// A key of the launch's shape: its dimensions and options, not its addresses, so the
    /// same layer of a model has the same key in every run (profiles are keyed by it).
    fn shape_key(&self) -> u64;
    /// The dynamic shared memory a launch of `kernel`'s plain build on `blocks` blocks needs,
    /// where it needs less than the kernel's own ([`KernelId::dynamic_smem_bytes`]); `None`:
    /// the kernel's own. A kernel whose blocks need less leaves room for the blocks of the
    /// kernel before it on the same SM, so that it starts (and reads what it may read early)
    /// before they end.
    fn dynamic_smem(&self, _kernel: KernelId, _blocks: u32) -> Option<u32> {
        None
    }
}

/// FNV-1a over dimension values.
fn key(values: &[u64]) -> u64 {
    values.iter().fold(super::image_hash::FNV_START, |h, v| super::image_hash::fnv_bytes(h, &v.to_le_bytes()))
}

/// 1 when an optional pointer is present, else 0 (presence changes the work, the address not).
fn has(ptr: u64) -> u64 {
    u64::from(ptr != 0)
}

fn ensure(ok: bool, kernel: KernelId, reason: impl FnOnce() -> String) -> Result<(), ParamError> {
    if ok {
        Ok(())
    } else {
        Err(ParamError { kernel, reason: reason() })
    }
}

fn aligned(ptr: u64, bytes: u64) -> bool {
    ptr % bytes == 0
}

/// Checks device pointers: none null, each aligned as given.
fn pointers(kernel: KernelId, list: &[(&str, u64, u64)]) -> Result<(), ParamError> {
    for &(name, ptr, align) in list {
        ensure(ptr != 0, kernel, || format!("{name} is null"))?;
        ensure(aligned(ptr, align), kernel, || format!("{name} ({ptr:#x}) is not {align}-byte aligned"))?;
    }
    Ok(())
}

/// Checks optional device pointers (0 = absent) for alignment.
fn optional(kernel: KernelId, list: &[(&str, u64, u64)]) -> Result<(), ParamError> {
    for &(name, ptr, align) in list {
        ensure(aligned(ptr, align), kernel, || format!("{name} ({ptr:#x}) is not {align}-byte aligned"))?;
    }
    Ok(())
}

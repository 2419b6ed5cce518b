//! Hushing: best-effort kernels that wait, before they start, while a latency-critical request
//! is in flight ([`Policy::hush_every`](super::policy::Policy::hush_every); krisp with
//! `RIGHTSIZE_HUSH=N`, an opt-in for comparisons).
//!
//! Why: a latency-critical request slows with the DRAM traffic of the kernels beside it, on
//! whatever SMs they run (docs/harness-h200.md: a batch-1 BERT-base request 1.40× its time
//! beside 2.98 TB/s of traffic on other SMs). Placing best-effort work elsewhere does not
//! stop its traffic, and its work is placed before it runs (a plan is a whole request). A
//! stream wait is judged when the GPU reaches it instead: each latency-critical tenant has a
//! word, set to 1 on its stream ahead of a request's first launch and to 0 behind its last
//! (as a claim is written, [`super::claims`]); every n-th launch of a best-effort tenant (n
//! from the policy; 1: each) is preceded on its stream by a wait for each such word to be 0,
//! captured into its plans too. Best-effort kernels already running finish (microseconds to a
//! few hundred); those behind a wait start as the request ends. Neither needs an SM; the wait
//! ends PDL's overlap of the kernel after it with the one before.

use cudarc::driver::sys;

use super::device::Device;
use super::error::{DriverContext as _, Result};
use super::memory::DeviceBuffer;

/// One word per tenant id: 1 while that latency-critical tenant has a request in flight.
#[derive(Debug)]
pub struct Hush {
    words: DeviceBuffer<u32>,
    every: u32,
}

impl Hush {
    /// Words for tenant ids below 64, all 0; a best-effort tenant's every `every`-th launch
    /// waits (at least each).
    pub fn new(device: &Device, every: u32) -> Result<Hush> {
        Ok(Hush { words: DeviceBuffer::filled(device, 64, 0)?, every: every.max(1) })
    }

    /// Whether a best-effort tenant's launch numbered `n` (from 0) waits.
    pub fn waits_at(&self, n: u64) -> bool {
        n % u64::from(self.every) == 0
    }

    fn word(&self, tenant: u32) -> u64 {
        self.words.ptr() + 4 * u64::from(tenant.min(63))
    }

    /// Sets tenant `tenant`'s word to `value` on `stream`, in stream order.
    ///
    /// # Safety
    /// `stream` is a live stream of this device and the device's primary context is current.
    pub(crate) unsafe fn write(&self, stream: sys::CUstream, tenant: u32, value: u32) -> Result<()> {
        // SAFETY: plain data, all zeros a valid value.
        let mut op: sys::CUstreamBatchMemOpParams = unsafe { std::mem::zeroed() };
        // The union member that `operation` names.
        op.writeValue.operation = sys::CUstreamBatchMemOpType::CU_STREAM_MEM_OP_WRITE_VALUE_32;
        op.writeValue.address = self.word(tenant);
        op.writeValue.__bindgen_anon_1.value = value;
        // SAFETY: the caller's contract; the address is one of `words`.
        unsafe { super::driver::stream::batch_mem_op(stream, std::slice::from_mut(&mut op)) }.call("cuStreamBatchMemOp")
    }

    /// Makes the work enqueued on `stream` after this wait until the words of the tenants of
    /// `set` (a bit per id) are all 0.
    ///
    /// # Safety
    /// As [`Hush::write`].
    pub(crate) unsafe fn wait(&self, stream: sys::CUstream, set: u64) -> Result<()> {
        // SAFETY: plain data, all zeros a valid value.
        let mut ops: [sys::CUstreamBatchMemOpParams; 64] = unsafe { std::mem::zeroed() };
        let mut n = 0;
        for t in (0..64u32).filter(|&t| set & (1 << t) != 0) {
            ops[n].waitValue.operation = sys::CUstreamBatchMemOpType::CU_STREAM_MEM_OP_WAIT_VALUE_32;
            ops[n].waitValue.address = self.word(t);
            ops[n].waitValue.__bindgen_anon_1.value = 0;
            ops[n].waitValue.flags = sys::CUstreamWaitValue_flags::CU_STREAM_WAIT_VALUE_EQ as u32;
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        // SAFETY: the caller's contract; every address is one of `words`.
        unsafe { super::driver::stream::batch_mem_op(stream, &mut ops[..n]) }.call("cuStreamBatchMemOp")
    }

    /// The words as they are now (for tests).
    pub fn words(&self) -> Result<Vec<u32>> {
        self.words.to_host()
    }
}

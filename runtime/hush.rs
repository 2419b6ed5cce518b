//! Hushing: best-effort kernels that wait, before they start, while a latency-critical request
//! is in flight ([`Policy::hush_every`](super::policy::Policy::hush_every); krisp with
//! `RIGHTSIZE_HUSH=N`, an opt-in for comparisons).
//!
//! Why: a latency-critical request slows with the DRAM traffic of the kernels beside it, on
//! whatever SMs they run (docs/harness-h200.md: a batch-1 BERT-base request 1.40× its time
//! beside 2.98 TB/s of traffic on other SMs). Placing best-effort work elsewhere does not
//! stop its traffic, and its work is placed before it runs (a plan is a whole request). A
//! stream wait is judged when the GPU reaches it instead: a latency-critical tenant has a
//! word for each best-effort tenant, set to 1 on its stream ahead of a request's first launch
//! for those that give way to it then (no nearer their own objective, as the guard's rule
//! says: [`crate::runtime::policy::Demand::yields_to`]) and to 0 behind its last (as a claim
//! is written, [`super::claims`]); every n-th launch of a best-effort tenant (n from the
//! policy; 1: each) is preceded on its stream by a wait for its words to be 0, captured into
//! its plans too. Best-effort kernels already running finish (microseconds to a
//! few hundred); those behind a wait start as the request ends. Neither needs an SM; the wait
//! ends PDL's overlap of the kernel after it with the one before.

use cudarc::driver::sys;

use super::device::Device;
use super::error::{DriverContext as _, Result};
use super::memory::DeviceBuffer;

/// A word per (latency-critical tenant, best-effort tenant) pair of ids below 64: 1 while the
/// former has a request in flight that quiets the latter.
#[derive(Debug)]
pub struct Hush {
    words: DeviceBuffer<u32>,
    every: u32,
}

impl Hush {
    /// Words for tenant ids below 64, all 0; a best-effort tenant's every `every`-th launch
    /// waits (at least each).
    pub fn new(device: &Device, every: u32) -> Result<Hush> {
        Ok(Hush { words: DeviceBuffer::filled(device, 64 * 64, 0)?, every: every.max(1) })
    }

    /// Whether a best-effort tenant's launch numbered `n` (from 0) waits.
    pub fn waits_at(&self, n: u64) -> bool {
        n % u64::from(self.every) == 0
    }

    /// The word of latency-critical tenant `lc` for best-effort tenant `be` (both below 64).
    fn word(&self, lc: u32, be: u32) -> u64 {
        self.words.ptr() + 4 * u64::from(lc.min(63) * 64 + be.min(63))
    }

    /// Sets latency-critical tenant `lc`'s words for the best-effort tenants of `quiet` (a bit
    /// per id) to `value` on `stream`, in stream order.
    ///
    /// # Safety
    /// `stream` is a live stream of this device and the device's primary context is current.
    pub(crate) unsafe fn write(&self, stream: sys::CUstream, lc: u32, quiet: u64, value: u32) -> Result<()> {
        // SAFETY: the caller's contract.
        unsafe {
            self.issue(stream, quiet, |op, be| {
                // The union member that `operation` names.
                op.writeValue.operation = sys::CUstreamBatchMemOpType::CU_STREAM_MEM_OP_WRITE_VALUE_32;
                op.writeValue.address = self.word(lc, be);
                op.writeValue.__bindgen_anon_1.value = value;
            })
        }
    }

    /// Makes the work enqueued on `stream` after this wait until best-effort tenant `be`'s
    /// words of the latency-critical tenants of `critical` (a bit per id) are all 0.
    ///
    /// # Safety
    /// As [`Hush::write`].
    pub(crate) unsafe fn wait(&self, stream: sys::CUstream, be: u32, critical: u64) -> Result<()> {
        // SAFETY: the caller's contract.
        unsafe {
            self.issue(stream, critical, |op, lc| {
                op.waitValue.operation = sys::CUstreamBatchMemOpType::CU_STREAM_MEM_OP_WAIT_VALUE_32;
                op.waitValue.address = self.word(lc, be);
                op.waitValue.__bindgen_anon_1.value = 0;
                op.waitValue.flags = sys::CUstreamWaitValue_flags::CU_STREAM_WAIT_VALUE_EQ as u32;
            })
        }
    }

    /// Enqueues on `stream` one stream memory operation per tenant of `set` (a bit per id),
    /// each made by `fill`, a few to a call (the launch path runs it: no allocation).
    ///
    /// # Safety
    /// As [`Hush::write`]; `fill` makes operations on `words` only.
    unsafe fn issue(
        &self,
        stream: sys::CUstream,
        set: u64,
        fill: impl Fn(&mut sys::CUstreamBatchMemOpParams, u32),
    ) -> Result<()> {
        const BATCH: usize = 8;
        let mut ids = (0..64u32).filter(|&t| set & (1 << t) != 0).peekable();
        while ids.peek().is_some() {
            // SAFETY: plain data, all zeros a valid value.
            let mut ops: [sys::CUstreamBatchMemOpParams; BATCH] = unsafe { std::mem::zeroed() };
            let mut n = 0;
            for t in ids.by_ref().take(BATCH) {
                fill(&mut ops[n], t);
                n += 1;
            }
            // SAFETY: the caller's contract; every address is one of `words`.
            unsafe { super::driver::stream::batch_mem_op(stream, &mut ops[..n]) }.call("cuStreamBatchMemOp")?;
        }
        Ok(())
    }

    /// Latency-critical tenant `lc`'s words, by best-effort tenant id, as they are now (for
    /// tests; read unordered with the streams that write them).
    pub fn words(&self, lc: u32) -> Result<Vec<u32>> {
        let all = self.words.to_host()?;
        let lc = lc.min(63) as usize;
        Ok(all[lc * 64..(lc + 1) * 64].to_vec())
    }
}

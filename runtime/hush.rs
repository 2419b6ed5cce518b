//! Hushing: best-effort kernels that wait, before they start, while a latency-critical request
//! that is behind is in flight ([`Policy::hush_every`](super::policy::Policy::hush_every); krisp
//! with `RIGHTSIZE_HUSH=N`, an opt-in for comparisons).
//!
//! Why: a latency-critical request slows with the DRAM traffic of the kernels beside it, on
//! whatever SMs they run (docs/harness-h200.md), and its p99 is a queue of its own requests
//! behind service times so slowed: only the requests that queued, or that others will queue
//! behind, need quiet (a replay of a run's samples: the same p99 as quieting every one, for a
//! third of the time; measured on the H200 in docs/harness-h200.md).
//!
//! How: a word per (latency-critical tenant, best-effort tenant) pair in pinned host memory
//! the GPU reads. The latency-critical tenant's *host thread* sets its words, for the
//! best-effort tenants that give way to it (the guard's rule,
//! [`crate::runtime::policy::Demand::yields_to`]), before the first launch of a request its
//! caller asked to protect ([`crate::runtime::Tenant::protect_next`]: the harness asks for the
//! requests that are behind), and clears them itself in its synchronize, once its work
//! completes or [`HOLD_LIMIT`] after it set them, whichever comes first. Every n-th
//! launch of a best-effort tenant is preceded on its stream by a wait for its words to be 0
//! (`cuStreamBatchMemOp`, captured into its plans too). CUDA does not see the order such a
//! wait sets up and may queue other work behind it; with a clear made by the host, never by a
//! stream, and bounded in time, that costs at most a delay, never the process (stream-ordered
//! clears hung three of nineteen runs: docs/harness-h200.md).

use std::sync::atomic::{AtomicU32, Ordering};

use cudarc::driver::{result, sys};

use super::device::Device;
use super::error::{DriverContext as _, Result};

/// How long a latency-critical request's words stay set at most once its tenant waits for it:
/// its synchronize clears them then though its work has not completed (a request longer than
/// this is protected for this long).
pub(crate) const HOLD_LIMIT: std::time::Duration = std::time::Duration::from_millis(5);

/// Words per side: tenant ids below 64.
const IDS: usize = 64;

/// A word per (latency-critical tenant, best-effort tenant) pair of ids below 64, in pinned
/// host memory mapped for the device: 1 while the former's request quiets the latter.
#[derive(Debug)]
pub struct Hush {
    host: *mut u32,
    device: u64,
    every: u32,
}

// SAFETY: the words are only read and written through atomics; the allocation lives as long as
// the value.
unsafe impl Send for Hush {}
// SAFETY: as above.
unsafe impl Sync for Hush {}

impl Hush {
    /// Words for tenant ids below 64, all 0; a best-effort tenant's every `every`-th launch
    /// waits (at least each).
    pub fn new(device: &Device, every: u32) -> Result<Hush> {
        device.bind()?;
        let bytes = IDS * IDS * 4;
        // SAFETY: the context is current; pinned memory mapped into its address space.
        let host = unsafe { result::malloc_host(bytes, sys::CU_MEMHOSTALLOC_DEVICEMAP | sys::CU_MEMHOSTALLOC_PORTABLE) }
            .call("cuMemHostAlloc")? as *mut u32;
        // SAFETY: `bytes` bytes just allocated.
        unsafe { std::ptr::write_bytes(host, 0, IDS * IDS) };
        let mut ptr: sys::CUdeviceptr = 0;
        // SAFETY: `host` is mapped pinned memory of the current context.
        let mapped = unsafe { sys::cuMemHostGetDevicePointer_v2(&mut ptr, host.cast(), 0) }.result();
        if let Err(e) = mapped.call("cuMemHostGetDevicePointer") {
            // SAFETY: allocated above, unused.
            let _ = unsafe { result::free_host(host.cast()) };
            return Err(e);
        }
        Ok(Hush { host, device: ptr, every: every.max(1) })
    }

    /// Whether a best-effort tenant's launch numbered `n` (from 0) waits.
    pub fn waits_at(&self, n: u64) -> bool {
        n % u64::from(self.every) == 0
    }

    fn index(lc: u32, be: u32) -> usize {
        lc.min(63) as usize * IDS + be.min(63) as usize
    }

    fn word(&self, lc: u32, be: u32) -> &AtomicU32 {
        // SAFETY: in bounds of the allocation, which lives as long as `self`; only accessed
        // atomically (the device reads it).
        unsafe { AtomicU32::from_ptr(self.host.add(Self::index(lc, be))) }
    }

    /// Sets latency-critical tenant `lc`'s words for the best-effort tenants of `quiet` (a bit
    /// per id) to `value`, from the host, at once.
    pub(crate) fn set(&self, lc: u32, quiet: u64, value: u32) {
        for be in (0..64u32).filter(|&t| quiet & (1 << t) != 0) {
            self.word(lc, be).store(value, Ordering::Release);
        }
    }

    /// Makes the work enqueued on `stream` after this wait until best-effort tenant `be`'s
    /// words of the latency-critical tenants of `critical` (a bit per id) are all 0.
    ///
    /// # Safety
    /// `stream` is a live stream of this device and the device's primary context is current.
    pub(crate) unsafe fn wait(&self, stream: sys::CUstream, be: u32, critical: u64) -> Result<()> {
        const BATCH: usize = 8;
        let mut ids = (0..64u32).filter(|&t| critical & (1 << t) != 0).peekable();
        while ids.peek().is_some() {
            // SAFETY: plain data, all zeros a valid value.
            let mut ops: [sys::CUstreamBatchMemOpParams; BATCH] = unsafe { std::mem::zeroed() };
            let mut n = 0;
            for lc in ids.by_ref().take(BATCH) {
                // The union member that `operation` names.
                let op = &mut ops[n];
                op.waitValue.operation = sys::CUstreamBatchMemOpType::CU_STREAM_MEM_OP_WAIT_VALUE_32;
                op.waitValue.address = self.device + 4 * Self::index(lc, be) as u64;
                op.waitValue.__bindgen_anon_1.value = 0;
                op.waitValue.flags = sys::CUstreamWaitValue_flags::CU_STREAM_WAIT_VALUE_EQ as u32;
                n += 1;
            }
            // SAFETY: the caller's contract; every address is one of the mapped words.
            unsafe { super::driver::stream::batch_mem_op(stream, &mut ops[..n]) }.call("cuStreamBatchMemOp")?;
        }
        Ok(())
    }

    /// Latency-critical tenant `lc`'s words, by best-effort tenant id, as they are now.
    pub fn words(&self, lc: u32) -> Vec<u32> {
        (0..64).map(|be| self.word(lc, be).load(Ordering::Acquire)).collect()
    }
}

impl Drop for Hush {
    fn drop(&mut self) {
        // SAFETY: allocated by `new`; the runtime drops it after its partitions, whose streams
        // (the only ones that wait on it) are synchronized as they go (field order).
        let _ = unsafe { result::free_host(self.host.cast()) };
    }
}

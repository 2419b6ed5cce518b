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
//! requests that are behind), and clears them itself in its synchronize once its work
//! completes; a watchdog thread clears any words set longer than [`HOLD_LIMIT`] ago. Every
//! n-th launch of a best-effort tenant is preceded on its stream by a wait for its words to
//! be 0 (`cuStreamBatchMemOp`, captured into its plans too). CUDA does not see the order such
//! a wait sets up and may queue other work behind it; with clears made by the host, never by
//! a stream, and bounded in time, that costs at most a delay, never the process
//! (stream-ordered clears hung three of nineteen runs: docs/harness-h200.md).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{result, sys};

use super::device::Device;
use super::error::{DriverContext as _, Result};

/// How long a latency-critical request's words stay set at most: a watchdog thread clears
/// them past it whatever the tenant's thread is doing (waiting on work that CUDA queued behind
/// a best-effort wait, say), and the tenant's synchronize does as it waits. A request longer
/// than this is protected for this long.
pub(crate) const HOLD_LIMIT: Duration = Duration::from_millis(5);

/// How often the watchdog looks.
const WATCH_EVERY: Duration = Duration::from_millis(1);

/// Words per side: tenant ids below 64.
const IDS: usize = 64;

/// A word per (latency-critical tenant, best-effort tenant) pair of ids below 64, in pinned
/// host memory mapped for the device: 1 while the former's request quiets the latter.
#[derive(Debug)]
pub struct Hush {
    held: Arc<Held>,
    device: u64,
    every: u32,
    watchdog: Option<std::thread::JoinHandle<()>>,
}

/// The words and, per latency-critical tenant, whom its request quiets and since when.
#[derive(Debug)]
struct Held {
    /// The words' host address (pinned, `IDS * IDS` of them).
    host: usize,
    /// Per latency-critical tenant: nanoseconds since `epoch` when its words were set, 0 when
    /// they are not.
    since: [AtomicU64; IDS],
    /// Per latency-critical tenant: the best-effort tenants its words were set for.
    quiet: [AtomicU64; IDS],
    epoch: Instant,
    stop: AtomicBool,
}

impl Held {
    fn word(&self, lc: usize, be: usize) -> &AtomicU32 {
        // SAFETY: in bounds of the pinned allocation, which outlives every `Held` user (the
        // watchdog is joined before it is freed); only accessed atomically.
        unsafe { AtomicU32::from_ptr((self.host as *mut u32).add(lc * IDS + be)) }
    }

    fn store(&self, lc: usize, quiet: u64, value: u32) {
        for be in (0..IDS).filter(|&t| quiet & (1 << t) != 0) {
            self.word(lc, be).store(value, Ordering::Release);
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    /// Clears the words of every latency-critical tenant set longer than `limit` ago (each
    /// once: a set made since is not touched); returns those tenants, a bit per id.
    fn expire(&self, limit: Duration) -> u64 {
        let now = self.now();
        let limit = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
        let mut expired = 0;
        for lc in 0..IDS {
            let at = self.since[lc].load(Ordering::Acquire);
            if at != 0
                && now.saturating_sub(at) > limit
                && self.since[lc].compare_exchange(at, 0, Ordering::AcqRel, Ordering::Acquire).is_ok()
            {
                self.store(lc, self.quiet[lc].load(Ordering::Acquire), 0);
                expired |= 1 << lc;
            }
        }
        expired
    }
}

impl Hush {
    /// Words for tenant ids below 64, all 0, and their watchdog; a best-effort tenant's every
    /// `every`-th launch waits (at least each).
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
        let held = Arc::new(Held {
            host: host as usize,
            since: std::array::from_fn(|_| AtomicU64::new(0)),
            quiet: std::array::from_fn(|_| AtomicU64::new(0)),
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
        });
        let watched = held.clone();
        let watchdog = std::thread::Builder::new().name("rightsize-hush".into()).spawn(move || {
            while !watched.stop.load(Ordering::Acquire) {
                std::thread::sleep(WATCH_EVERY);
                watched.expire(HOLD_LIMIT);
            }
        });
        let watchdog = match watchdog {
            Ok(w) => Some(w),
            Err(e) => {
                // SAFETY: allocated above; no thread uses it.
                let _ = unsafe { result::free_host(host.cast()) };
                return Err(super::error::Error::Thread { what: "hushing's watchdog", reason: e.to_string() });
            }
        };
        Ok(Hush { held, device: ptr, every: every.max(1), watchdog })
    }

    /// Whether a best-effort tenant's launch numbered `n` (from 0) waits.
    pub fn waits_at(&self, n: u64) -> bool {
        n % u64::from(self.every) == 0
    }

    fn index(lc: u32, be: u32) -> usize {
        lc.min(63) as usize * IDS + be.min(63) as usize
    }

    /// Sets latency-critical tenant `lc`'s words for the best-effort tenants of `quiet` (a bit
    /// per id), from the host, at once (cleared by [`Hush::clear`] or, past [`HOLD_LIMIT`],
    /// by the watchdog).
    pub(crate) fn set(&self, lc: u32, quiet: u64) {
        let lc = lc.min(63) as usize;
        self.held.quiet[lc].store(quiet, Ordering::Release);
        self.held.store(lc, quiet, 1);
        self.held.since[lc].store(self.held.now(), Ordering::Release);
    }

    /// Clears latency-critical tenant `lc`'s words, from the host, at once.
    pub(crate) fn clear(&self, lc: u32) {
        let lc = lc.min(63) as usize;
        self.held.since[lc].store(0, Ordering::Release);
        self.held.store(lc, self.held.quiet[lc].load(Ordering::Acquire), 0);
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
        (0..IDS).map(|be| self.held.word(lc.min(63) as usize, be).load(Ordering::Acquire)).collect()
    }
}

impl Drop for Hush {
    fn drop(&mut self) {
        self.held.stop.store(true, Ordering::Release);
        if let Some(w) = self.watchdog.take() {
            let _ = w.join();
        }
        // SAFETY: allocated by `new`; the watchdog is gone, and the runtime drops this after
        // its partitions, whose streams (the only ones that wait on it) are synchronized as
        // they go (field order).
        let _ = unsafe { result::free_host(self.held.host as *mut std::ffi::c_void) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_clears_words_held_too_long_and_only_those() {
        let mut words = vec![0u32; IDS * IDS];
        let held = Held {
            host: words.as_mut_ptr() as usize,
            since: std::array::from_fn(|_| AtomicU64::new(0)),
            quiet: std::array::from_fn(|_| AtomicU64::new(0)),
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
        };
        // Tenant 0 quiets 1 and 2; tenant 3 quiets 1.
        held.quiet[0].store(0b110, Ordering::Release);
        held.store(0, 0b110, 1);
        held.since[0].store(held.now(), Ordering::Release);
        std::thread::sleep(Duration::from_millis(120));
        held.quiet[3].store(0b10, Ordering::Release);
        held.store(3, 0b10, 1);
        held.since[3].store(held.now(), Ordering::Release);
        assert_eq!(held.expire(Duration::from_secs(60)), 0, "nothing held that long");
        assert_eq!(held.expire(Duration::from_millis(60)), 0b1, "only tenant 0's");
        assert_eq!((held.word(0, 1).load(Ordering::Acquire), held.word(0, 2).load(Ordering::Acquire)), (0, 0));
        assert_eq!(held.word(3, 1).load(Ordering::Acquire), 1, "tenant 3's set later stays");
        assert_eq!(held.since[0].load(Ordering::Acquire), 0);
        assert_eq!(held.expire(Duration::from_millis(60)), 0, "once");
        // `held` points into `words`: both go at the end of the scope, `held` first.
    }
}

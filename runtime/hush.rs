//! Hushing: best-effort kernels that wait, before they start, while a latency-critical request
//! that is behind is in flight ([`Policy::hush_every`](super::policy::Policy::hush_every); krisp
//! with `RIGHTSIZE_HUSH=N`, an opt-in for comparisons).
//!
//! Why: a latency-critical request slows with the DRAM traffic of the kernels beside it, on
//! whatever SMs they run (docs/harness-h200.md), and its p99 is a queue of its own requests
//! behind service times so slowed: only the requests that queued, or that others will queue
//! behind, need quiet (a replay of a run's samples: the same p99 as quieting every one, for
//! 5–11% of the run's time instead of 17–25%; measured on the H200 in docs/harness-h200.md).
//!
//! How: a word per (latency-critical tenant, best-effort tenant) pair in pinned host memory
//! the GPU reads. The latency-critical tenant's *host thread* sets its words, for the
//! best-effort tenants that give way to it (the guard's rule,
//! [`crate::runtime::policy::Demand::yields_to`]), before the first launch of a request its
//! caller asked to protect ([`crate::runtime::Tenant::protect_next`]: the harness asks for the
//! requests that are behind), and clears them itself in its synchronize once its work
//! completes; a watchdog thread clears any words set longer than [`HOLD_LIMIT`] ago. The
//! first launch of a best-effort request (after each synchronize) and every n-th after it are
//! preceded on its stream by a wait for its words to be 0 (`cuStreamBatchMemOp`, captured
//! into its plans too): a request that starts during a protected one starts none of its work.
//! A latency-critical tenant's requests keep others waiting at most [`DUTY_LIMIT`] of the
//! time, past one hold (an overloaded one would mark every request behind). CUDA does not see
//! the order such a wait sets up and may queue other work behind it; with clears made by the
//! host, never by a stream, and bounded in time, that costs at most a delay, never the process
//! (stream-ordered clears hung three of nineteen runs: docs/harness-h200.md).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::{result, sys, DriverError};
use parking_lot::Mutex;

use super::device::Device;
use super::error::{DriverContext as _, Result};

/// How long a latency-critical request's words stay set, about, at most: a watchdog thread
/// that looks every millisecond clears them past it whatever the tenant's thread is doing
/// (waiting on work that CUDA queued behind a best-effort wait, say). A request longer than
/// this is protected for this long.
const HOLD_LIMIT: Duration = Duration::from_millis(5);

/// How often the watchdog looks.
const WATCH_EVERY: Duration = Duration::from_millis(1);

/// The share of its time a latency-critical tenant's requests may keep best-effort work
/// waiting, over any span (past one hold): a tenant loaded past what it can serve marks every
/// request behind, and without a bound the others would wait nearly always. Measured duties
/// of protection stay under a tenth (docs/harness-h200.md); past this a request runs
/// unprotected.
const DUTY_LIMIT: f64 = 0.25;

/// The most hold time a tenant saves up while it holds nothing (a budget refilled at
/// [`DUTY_LIMIT`] of the time, from which each hold takes its length): a quarter of 100 ms.
const DUTY_BURST: Duration = Duration::from_millis(25);

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

/// Where the word of (latency-critical tenant `lc`, best-effort tenant `be`) is, in words.
fn index(lc: usize, be: usize) -> usize {
    lc * IDS + be
}

/// The words and, per latency-critical tenant, whom its request quiets and since when.
#[derive(Debug)]
struct Held {
    /// The words (pinned host memory, `IDS * IDS` of them).
    host: NonNull<u32>,
    /// Per latency-critical tenant, under a lock that setting, clearing and the watchdog take.
    slots: [Mutex<Slot>; IDS],
    stop: AtomicBool,
}

/// One latency-critical tenant's request: whom it quiets, and since when (none: not set);
/// and its duty budget in seconds (negative after a hold longer than it), as of when.
#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    quiet: u64,
    since: Option<Instant>,
    budget: f64,
    refilled: Option<Instant>,
}

impl Slot {
    /// Refills the budget for the time since it was last refilled ([`DUTY_LIMIT`] of it, up
    /// to [`DUTY_BURST`]; full the first time).
    fn refill(&mut self, now: Instant) {
        let burst = DUTY_BURST.as_secs_f64();
        self.budget = match self.refilled {
            None => burst,
            Some(at) => (self.budget + DUTY_LIMIT * now.saturating_duration_since(at).as_secs_f64()).min(burst),
        };
        self.refilled = Some(now);
    }

    /// Ends a hold, if one is under way: its length comes out of the budget, refilled to `now`.
    fn end(&mut self, now: Instant) {
        self.refill(now);
        if let Some(at) = self.since.take() {
            self.budget -= now.saturating_duration_since(at).as_secs_f64();
        }
    }
}

// SAFETY: the words are only read and written through atomics, and the allocation outlives
// every user of `Held` (the watchdog is joined before `Hush` frees it).
unsafe impl Send for Held {}
// SAFETY: as above.
unsafe impl Sync for Held {}

impl Held {
    fn new(host: NonNull<u32>) -> Held {
        Held { host, slots: std::array::from_fn(|_| Mutex::new(Slot::default())), stop: AtomicBool::new(false) }
    }

    fn word(&self, lc: usize, be: usize) -> &AtomicU32 {
        // SAFETY: in bounds of the allocation, which outlives `self`'s users; only accessed
        // atomically (the device reads it).
        unsafe { AtomicU32::from_ptr(self.host.as_ptr().add(index(lc, be))) }
    }

    fn store(&self, lc: usize, quiet: u64, value: u32) {
        for be in (0..IDS).filter(|&t| quiet & (1 << t) != 0) {
            self.word(lc, be).store(value, Ordering::Release);
        }
    }

    /// Sets `lc`'s words for `quiet` (a bit per id); refused (false, nothing set) where it
    /// quiets nobody or its duty budget is spent ([`DUTY_LIMIT`]).
    fn set(&self, lc: usize, quiet: u64) -> bool {
        let now = Instant::now();
        let mut slot = self.slots[lc].lock();
        slot.end(now);
        // A hold may start while the budget, refilled to now, is not spent.
        if quiet == 0 || slot.budget <= 0.0 {
            self.store(lc, slot.quiet, 0);
            return false;
        }
        self.store(lc, slot.quiet & !quiet, 0);
        self.store(lc, quiet, 1);
        slot.quiet = quiet;
        slot.since = Some(now);
        true
    }

    fn clear(&self, lc: usize) {
        let mut slot = self.slots[lc].lock();
        self.store(lc, slot.quiet, 0);
        slot.end(Instant::now());
    }

    /// Clears the words of every latency-critical tenant set longer than `limit` ago; returns
    /// those tenants, a bit per id.
    fn expire(&self, limit: Duration) -> u64 {
        let mut expired = 0;
        for lc in 0..IDS {
            let mut slot = self.slots[lc].lock();
            if slot.since.is_some_and(|at| at.elapsed() > limit) {
                self.store(lc, slot.quiet, 0);
                slot.end(Instant::now());
                expired |= 1 << lc;
            }
        }
        expired
    }
}

impl Hush {
    /// Words for tenant ids below 64, all 0, and their watchdog; a best-effort tenant's first
    /// launch after each synchronize (or capture start) and every `every`-th after it wait.
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
        let held = Arc::new(Held::new(
            NonNull::new(host).ok_or(DriverError(sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY)).call("cuMemHostAlloc")?,
        ));
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

    /// Whether a best-effort tenant's launch numbered `n` (from 0, counted from its last
    /// synchronize) waits.
    pub fn waits_at(&self, n: u64) -> bool {
        n % u64::from(self.every) == 0
    }

    /// Sets latency-critical tenant `lc`'s words for the best-effort tenants of `quiet` (a bit
    /// per id), from the host, at once (cleared by [`Hush::clear`] or, past [`HOLD_LIMIT`],
    /// by the watchdog). Refused (false, nothing held) where `quiet` is empty or its requests
    /// have spent their duty budget ([`DUTY_LIMIT`]).
    pub(crate) fn set(&self, lc: u32, quiet: u64) -> bool {
        self.held.set(lc.min(63) as usize, quiet)
    }

    /// Clears latency-critical tenant `lc`'s words, from the host, at once.
    pub(crate) fn clear(&self, lc: u32) {
        self.held.clear(lc.min(63) as usize);
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
                op.waitValue.address = self.device + 4 * index(lc.min(63) as usize, be.min(63) as usize) as u64;
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
        let _ = unsafe { result::free_host(self.held.host.as_ptr().cast()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_clears_words_held_too_long_and_only_those() {
        let mut words = vec![0u32; IDS * IDS];
        let held = Held::new(NonNull::new(words.as_mut_ptr()).unwrap());
        // Tenant 0 quiets 1 and 2; tenant 3, later, quiets 1.
        held.set(0, 0b110);
        std::thread::sleep(Duration::from_millis(120));
        held.set(3, 0b10);
        assert_eq!(held.expire(Duration::from_secs(60)), 0, "nothing held that long");
        assert_eq!(held.expire(Duration::from_millis(60)), 0b1, "only tenant 0's");
        assert_eq!((held.word(0, 1).load(Ordering::Acquire), held.word(0, 2).load(Ordering::Acquire)), (0, 0));
        assert_eq!(held.word(3, 1).load(Ordering::Acquire), 1, "tenant 3's set later stays");
        assert_eq!(held.expire(Duration::from_millis(60)), 0, "once");
        // A new set for fewer tenants clears the ones it no longer quiets; clear clears the rest.
        held.set(3, 0b1000);
        assert_eq!((held.word(3, 1).load(Ordering::Acquire), held.word(3, 3).load(Ordering::Acquire)), (0, 1));
        held.clear(3);
        assert!(words_of(&held, 3).iter().all(|&w| w == 0));
        // `held` points into `words`: both go at the end of the scope, `held` first.
    }

    #[test]
    fn a_tenant_whose_requests_spent_their_duty_budget_quiets_none_until_it_refills() {
        let mut words = vec![0u32; IDS * IDS];
        let held = Held::new(NonNull::new(words.as_mut_ptr()).unwrap());
        // Quieting nobody is no hold: it costs no budget.
        assert!(!held.set(0, 0));
        // A hold longer than the budget spends it.
        assert!(held.set(0, 0b10));
        std::thread::sleep(DUTY_BURST.mul_f64(1.2));
        held.clear(0);
        // Spent: refused, nothing set; another tenant's budget is its own.
        assert!(!held.set(0, 0b10));
        assert_eq!(held.word(0, 1).load(Ordering::Acquire), 0);
        assert!(held.set(1, 0b10));
        held.clear(1);
        // It refills at a quarter of the time: after about 100 ms it holds again. A hold still
        // under way counts as it ends: set again past the budget, it is cleared.
        std::thread::sleep(DUTY_BURST.div_f64(DUTY_LIMIT));
        assert!(held.set(0, 0b100), "refilled");
        std::thread::sleep(DUTY_BURST.mul_f64(1.5));
        assert!(!held.set(0, 0b100));
        assert!(words_of(&held, 0).iter().all(|&w| w == 0), "the hold that spent the budget ended");
    }

    fn words_of(held: &Held, lc: usize) -> Vec<u32> {
        (0..IDS).map(|be| held.word(lc, be).load(Ordering::Acquire)).collect()
    }
}

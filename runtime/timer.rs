//! The one GPU timer: a pair of CUDA events around work enqueued on a stream. The profiler,
//! the benches and the timing tests all measure with it. And the host clock that processes of
//! one host share ([`monotonic_ns`]).

use std::fmt;

use cudarc::driver::result::event;
use cudarc::driver::sys;

use super::device::Device;
use super::error::{DriverContext, Error, Result};
use super::handles::Event;

/// Two timing events, reused for every measurement.
pub struct EventTimer {
    start: Event,
    end: Event,
}

impl fmt::Debug for EventTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventTimer")
    }
}

impl EventTimer {
    /// Creates the events in the device's primary context.
    pub fn new(device: &Device) -> Result<EventTimer> {
        device.bind()?;
        Ok(EventTimer { start: Event::new(true)?, end: Event::new(true)? })
    }

    /// Milliseconds of GPU time from before `enqueue`'s work to after it, both events on
    /// `stream`; waits for the work to finish. Host time spent enqueueing counts when the GPU
    /// waits for it.
    ///
    /// # Safety
    /// `stream` is a live stream of the device the timer was made on, and `enqueue`'s work
    /// ends on it.
    pub unsafe fn time_ms<E: From<Error>>(
        &self,
        stream: sys::CUstream,
        enqueue: impl FnOnce() -> std::result::Result<(), E>,
    ) -> std::result::Result<f64, E> {
        // SAFETY: live events; the caller vouches for the stream.
        unsafe { event::record(self.start.raw(), stream) }.call("cuEventRecord")?;
        enqueue()?;
        // SAFETY: as above.
        let ms = unsafe {
            event::record(self.end.raw(), stream).call("cuEventRecord")?;
            event::synchronize(self.end.raw()).call("cuEventSynchronize")?;
            event::elapsed(self.start.raw(), self.end.raw()).call("cuEventElapsedTime")?
        };
        Ok(f64::from(ms))
    }
}

/// Now on the host's monotonic clock (`CLOCK_MONOTONIC`), ns: one clock for every process of
/// the host, so a time one process reads means the same in another (the interposer's board
/// and its alternation, and the harness that sets the alternation's epoch).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

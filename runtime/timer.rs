//! The one GPU timer: a pair of CUDA events around work enqueued on a stream. The profiler,
//! the benches and the timing tests all measure with it.

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

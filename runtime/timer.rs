//! The one GPU timer: a pair of CUDA events around work enqueued on a stream. The profiler,
//! the benches and the timing tests all measure with it.

use std::fmt;

use cudarc::driver::sys;

use super::device::Device;
use super::error::{check, Error, Result};

/// Two timing events, reused for every measurement.
pub struct EventTimer {
    start: sys::CUevent,
    end: sys::CUevent,
}

impl fmt::Debug for EventTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventTimer")
    }
}

impl Drop for EventTimer {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed once.
        unsafe {
            sys::cuEventDestroy_v2(self.start);
            sys::cuEventDestroy_v2(self.end);
        }
    }
}

impl EventTimer {
    /// Creates the events in the device's primary context.
    pub fn new(device: &Device) -> Result<EventTimer> {
        device.bind()?;
        let (mut start, mut end) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: the primary context is current; valid out-pointers.
        unsafe {
            check("cuEventCreate", sys::cuEventCreate(&mut start, 0))?;
            if let Err(e) = check("cuEventCreate", sys::cuEventCreate(&mut end, 0)) {
                sys::cuEventDestroy_v2(start);
                return Err(e);
            }
        }
        Ok(EventTimer { start, end })
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
        let mut ms = 0f32;
        // SAFETY: live events; the caller vouches for the stream.
        unsafe { check("cuEventRecord", sys::cuEventRecord(self.start, stream)) }?;
        enqueue()?;
        // SAFETY: as above.
        unsafe {
            check("cuEventRecord", sys::cuEventRecord(self.end, stream))?;
            check("cuEventSynchronize", sys::cuEventSynchronize(self.end))?;
            check("cuEventElapsedTime", sys::cuEventElapsedTime_v2(&mut ms, self.start, self.end))?;
        }
        Ok(f64::from(ms))
    }
}

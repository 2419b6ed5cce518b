//! Launch-trace hooks: a sink the runtime tells of every launch before issuing it, and of a
//! library kernel's launch what it decided. Off by default; when off, a launch pays one or two
//! atomic loads.

use std::borrow::Cow;
use std::fmt;

use cudarc::driver::{result, sys, DriverError};
use serde::Serialize;

use super::error::DriverContext as _;
use super::handles::Event;
use super::policy::TenantId;
use super::PartitionId;
use crate::kernels::KernelId;

/// One launch as the runtime issued it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LaunchRecord {
    /// Who launched it.
    pub tenant: TenantId,
    /// Which kernel.
    pub kernel: KernelId,
    /// The partition it went to.
    pub partition: PartitionId,
    /// SMs of that partition.
    pub sms: u32,
    /// Blocks launched.
    pub grid: u32,
    /// Priority of the stream it went to.
    pub priority: i32,
    /// Host time of the launch, in nanoseconds since the runtime was made.
    pub host_ns: u64,
}

/// Receives every launch record; called on the launching thread, so it must be quick.
pub trait TraceSink: Send + Sync {
    /// One launch.
    fn launch(&self, record: &LaunchRecord);

    /// `tenant` is about to issue work named `name` (a library kernel, a foreign kernel,
    /// "cublasLt" or "plan"): called before the launch call, which may block (under
    /// `compute-sanitizer --force-blocking-launches` it returns once the kernel has run).
    fn issuing(&self, _tenant: TenantId, _name: Cow<'static, str>) {}
}

/// A sink shared with whoever reads what it gathered.
impl<T: TraceSink + ?Sized> TraceSink for std::sync::Arc<T> {
    fn launch(&self, record: &LaunchRecord) {
        (**self).launch(record);
    }

    fn issuing(&self, tenant: TenantId, name: Cow<'static, str>) {
        (**self).issuing(tenant, name);
    }
}

impl fmt::Debug for dyn TraceSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TraceSink")
    }
}

/// One piece of a tenant's GPU work on the timeline: a kernel, a cuBLASLt call or a plan
/// replay, from when its stream reached it to when it completed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct GpuSlice {
    /// Who launched it.
    pub tenant: TenantId,
    /// The kernel's name, `cublasLt` or `plan`.
    pub name: std::borrow::Cow<'static, str>,
    /// The partition whose stream ran it.
    pub partition: u16,
    /// SMs of that partition.
    pub sms: u32,
    /// Blocks launched (0 for a plan or a cuBLASLt call).
    pub grid: u32,
    /// Priority of the stream.
    pub priority: i32,
    /// The request it belongs to ([`crate::runtime::Tenant::set_request`]).
    pub request: u64,
    /// GPU start and end, nanoseconds since the Unix epoch (aligned to the host clock).
    pub start_ns: u64,
    /// See `start_ns`.
    pub end_ns: u64,
}

/// Where a launch about to be issued stands on the timeline: its start event is recorded.
#[derive(Debug)]
pub(crate) struct Mark {
    start: sys::CUevent,
    end: sys::CUevent,
}

struct Pending {
    mark: Mark,
    slice: GpuSlice,
}

struct TimelineState {
    free: Vec<sys::CUevent>,
    pending: Vec<Pending>,
    done: Vec<GpuSlice>,
    dropped: u64,
    made: Vec<Event>,
}

/// GPU start and end times of every traced launch, from a pair of timing events around each,
/// aligned to the host's clock by an origin event recorded when the timeline was made. Costs
/// two event records per launch while on; off unless [`super::Runtime::start_timeline`] is
/// called. Start times are offsets from the origin in `f32` milliseconds (CUDA's event
/// resolution), so they are exact to about 1 µs over 10 s and 4 µs over 60 s; durations are
/// measured between the launch's own events.
pub struct Timeline {
    origin: Event,
    origin_ns: u64,
    limit: usize,
    state: parking_lot::Mutex<TimelineState>,
}

// SAFETY: event handles may be used from any thread; mutable state is behind the mutex.
unsafe impl Send for Timeline {}
// SAFETY: as above.
unsafe impl Sync for Timeline {}

impl fmt::Debug for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeline").field("origin_ns", &self.origin_ns).field("limit", &self.limit).finish()
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Launches traced before the timeline resolves those that completed.
const HARVEST_EVERY: usize = 2048;

impl Timeline {
    /// Records the origin on the device's default stream (the device's primary context must
    /// be current) and keeps at most `limit` slices (later ones are counted as dropped).
    pub(crate) fn new(limit: usize) -> super::Result<Timeline> {
        // The caller made the primary context current.
        let origin = Event::new(true)?;
        let before = unix_ns();
        // SAFETY: a live event; the null stream of the current context.
        unsafe {
            result::event::record(origin.raw(), std::ptr::null_mut()).call("cuEventRecord")?;
            result::event::synchronize(origin.raw()).call("cuEventSynchronize")?;
        }
        let after = unix_ns();
        let state =
            TimelineState { free: Vec::new(), pending: Vec::new(), done: Vec::new(), dropped: 0, made: Vec::new() };
        Ok(Timeline { origin, origin_ns: before + (after - before) / 2, limit, state: parking_lot::Mutex::new(state) })
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, TimelineState> {
        self.state.lock()
    }

    /// Records a start event on `stream` before a launch; `None` once the limit is reached.
    /// The launching thread's context must be current.
    pub(crate) fn begin(&self, stream: sys::CUstream) -> super::Result<Option<Mark>> {
        let mut st = self.lock();
        if st.done.len() + st.pending.len() >= self.limit {
            st.dropped += 1;
            return Ok(None);
        }
        let take = |st: &mut TimelineState| -> super::Result<sys::CUevent> {
            if let Some(e) = st.free.pop() {
                return Ok(e);
            }
            // The context is current.
            let e = Event::new(true)?;
            let raw = e.raw();
            st.made.push(e);
            Ok(raw)
        };
        let mark = Mark { start: take(&mut st)?, end: take(&mut st)? };
        drop(st);
        // SAFETY: a live event and a live stream of this device.
        unsafe { result::event::record(mark.start, stream) }.call("cuEventRecord")?;
        Ok(Some(mark))
    }

    /// Records the end event of `mark` on `stream` after the launch it began; `slice` says what
    /// ran (its times are filled in once it completes).
    pub(crate) fn end(&self, mark: Mark, stream: sys::CUstream, slice: GpuSlice) -> super::Result<()> {
        // SAFETY: a live event and a live stream of this device.
        let recorded = unsafe { result::event::record(mark.end, stream) }.call("cuEventRecord");
        let mut st = self.lock();
        if recorded.is_err() {
            st.free.extend([mark.start, mark.end]);
            return recorded;
        }
        st.pending.push(Pending { mark, slice });
        if st.pending.len() % HARVEST_EVERY == 0 {
            self.harvest(&mut st, false)?;
        }
        Ok(())
    }

    /// Counts a launch that was not issued after all (its events go back to the pool).
    pub(crate) fn cancel(&self, mark: Mark) {
        self.lock().free.extend([mark.start, mark.end]);
    }

    /// Moves completed launches (all, waiting for them, with `wait`) from pending to done.
    fn harvest(&self, st: &mut TimelineState, wait: bool) -> super::Result<()> {
        let TimelineState { free, pending, done, .. } = st;
        let mut err = Ok(());
        pending.retain_mut(|p| {
            if err.is_err() {
                return true;
            }
            // SAFETY: live recorded events of this timeline.
            let status = unsafe {
                if wait {
                    result::event::synchronize(p.mark.end)
                } else {
                    result::event::query(p.mark.end)
                }
            };
            if status == Err(DriverError(sys::CUresult::CUDA_ERROR_NOT_READY)) {
                return true;
            }
            // SAFETY: live events, both completed.
            let r = status.call("cuEventSynchronize").and_then(|()| unsafe {
                let offset = result::event::elapsed(self.origin.raw(), p.mark.start).call("cuEventElapsedTime")?;
                let duration = result::event::elapsed(p.mark.start, p.mark.end).call("cuEventElapsedTime")?;
                Ok((offset, duration))
            });
            let (offset, duration) = match r {
                Ok(times) => times,
                Err(e) => {
                    err = Err(e);
                    return true;
                }
            };
            let start = self.origin_ns as i64 + (f64::from(offset) * 1e6) as i64;
            let mut s = std::mem::take(&mut p.slice);
            s.start_ns = start.max(0) as u64;
            s.end_ns = s.start_ns + (f64::from(duration.max(0.0)) * 1e6) as u64;
            done.push(s);
            free.extend([p.mark.start, p.mark.end]);
            false
        });
        err
    }

    /// Waits for every traced launch and returns the slices so far (in completion order) and
    /// how many launches were not traced because the limit was reached; the timeline goes on
    /// empty.
    pub fn take(&self) -> super::Result<(Vec<GpuSlice>, u64)> {
        let mut st = self.lock();
        self.harvest(&mut st, true)?;
        let dropped = std::mem::take(&mut st.dropped);
        Ok((std::mem::take(&mut st.done), dropped))
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        for p in &st.pending {
            // SAFETY: a live recorded event; its work must finish before the events (`made`,
            // `origin`) are destroyed with the timeline.
            let _ = unsafe { result::event::synchronize(p.mark.end) };
        }
    }
}

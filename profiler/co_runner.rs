//! A co-runner for curves measured beside other work: `vector_add` streaming 3 × 128 MiB of
//! device memory (far more than the L2 holds) on the groups a profiling partition leaves, in a
//! runtime of its own with one window per such size, launched back to back for as long as
//! the timed work runs. A pure memory stream is a harsh neighbour: it takes the SMs the
//! partition leaves and the memory bandwidth the partition's work shares with it.

use std::sync::Arc;

use super::measure::rest_pool;
use crate::kernels::abi::VectorAddParams;
use crate::kernels::VECTOR_ADD_F16;
use crate::runtime::{
    Device, DeviceBuffer, EventTimer, PartitionId, PartitionSupport, Placement, Result, Runtime, UnitOrder,
};

/// Halves per co-runner buffer (128 MiB).
const LEN: usize = 64 << 20;

/// Each launch adds one of this many consecutive chunks of the buffers, the next launch the
/// next chunk: short launches (so a short kernel is not held up waiting for the stream to
/// end) that still stream every byte of the buffers before coming back to the first.
const CHUNKS: usize = 8;

/// The co-runner; see the module's documentation.
pub struct CoRunner {
    rt: Arc<Runtime>,
    bufs: [DeviceBuffer<half::f16>; 3],
    /// Its window beginning at each group, by group.
    windows: Vec<Option<PartitionId>>,
    /// Times one of its launches ([`CoRunner::launches_for`]).
    timer: EventTimer,
    /// The chunk the next launch adds.
    next: std::cell::Cell<usize>,
}

impl std::fmt::Debug for CoRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CoRunner({} windows)", self.windows.iter().flatten().count())
    }
}

impl CoRunner {
    /// A co-runner on the device of `rt`; `None` where the device has no partitions or a
    /// single group (no partition leaves groups to run beside).
    pub fn new(rt: &Runtime) -> Result<Option<CoRunner>> {
        let (granularity, groups) = match &rt.device().info().partitions {
            PartitionSupport::Supported { granularity, groups, .. } if *groups > 1 => (*granularity, *groups),
            _ => return Ok(None),
        };
        // Its windows run to the device's end and take the SMs the groups leave over; the
        // plain kernels, as the profiles' kernel hash names them (kernels/image_hash.rs).
        let spec = rest_pool(granularity, groups);
        let co = Runtime::new(Device::open(rt.device().info().ordinal)?, &spec)?.with_units(UnitOrder::Plain);
        let co = Arc::new(co);
        let mut windows = vec![None; groups as usize];
        for (id, p) in co.pool().iter() {
            if let Some(g) = p.groups() {
                windows[g.first as usize] = Some(id);
            }
        }
        let buf = || DeviceBuffer::<half::f16>::filled(co.device(), LEN, 0);
        let bufs = [buf()?, buf()?, buf()?];
        let timer = EventTimer::new(co.device())?;
        rt.device().bind()?;
        Ok(Some(CoRunner { bufs, rt: co, windows, timer, next: std::cell::Cell::new(0) }))
    }

    /// Its window from group `from` (to the device's last SM), if it has one.
    fn window(&self, from: u32) -> Option<PartitionId> {
        self.windows.get(from as usize).copied().flatten()
    }

    /// Whether it can run from group `from`: a partition that ends there leaves it room.
    pub fn fits(&self, from: u32) -> bool {
        self.window(from).is_some()
    }

    fn launch(&self, from: u32) -> Result<()> {
        let Some(id) = self.window(from) else {
            return Err(
                crate::runtime::PartitionError::Unsupported(format!("no co-runner window from group {from}")).into()
            );
        };
        let chunk = self.next.get();
        self.next.set((chunk + 1) % CHUNKS);
        let (len, at) = (LEN / CHUNKS, (chunk * LEN / CHUNKS * 2) as u64);
        let [a, b, c] = &self.bufs;
        let p = VectorAddParams { a: a.ptr() + at, b: b.ptr() + at, c: c.ptr() + at, n: len as u64 };
        // SAFETY: the chunk lies within three live buffers of LEN halves.
        unsafe { self.rt.launch(VECTOR_ADD_F16, &p, Placement::on(id)) }?;
        Ok(())
    }

    /// How many of its launches on the window from group `from` outlast `us` µs of other
    /// work, twice over (one launch timed there; at least 2, at most 1 << 16).
    pub fn launches_for(&self, from: u32, us: f64) -> Result<u32> {
        let id = self.window(from).ok_or_else(|| {
            crate::runtime::PartitionError::Unsupported(format!("no co-runner window from group {from}"))
        })?;
        let stream = self.rt.pool().get(id)?.stream(0)?;
        self.launch(from)?;
        // SAFETY: the launch goes to `stream`, a live stream of the co-runner's runtime.
        let ms = unsafe { self.timer.time_ms(stream, || self.launch(from)) }?;
        Ok(((2.0 * us / (1e3 * ms).max(0.1)).ceil() as u32).clamp(2, 1 << 16))
    }

    /// Enqueues `launches` of it on the window from group `from` (they start at once).
    pub fn start(&self, from: u32, launches: u32) -> Result<()> {
        (0..launches).try_for_each(|_| self.launch(from))
    }

    /// Waits for what [`CoRunner::start`] enqueued.
    pub fn wait(&self) -> Result<()> {
        self.rt.synchronize()
    }
}

//! A co-runner for curves measured beside other work, on the groups a profiling partition
//! leaves, in a runtime of its own with one window per such size, launched back to back for
//! as long as the timed work runs. By default ([`CoKind::Stream`]) `vector_add` streaming
//! 3 × 128 MiB of device memory (far more than the L2 holds): a harsh neighbour that takes the
//! SMs the partition leaves and the memory bandwidth the partition's work shares with it.
//! [`CoKind::Gemm`] runs a compute-bound GEMM instead, the kind of neighbour a prefill is.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::kernels::abi::{GemmParams, VectorAddParams};
use crate::kernels::{GEMM_LARGE, VECTOR_ADD_F16};
use crate::runtime::{
    Device, DeviceBuffer, EventTimer, PartitionId, PartitionRequest, PartitionSupport, Placement, PoolSpec, Result,
    Runtime, UnitOrder,
};

/// Halves per co-runner buffer (128 MiB).
const LEN: usize = 64 << 20;

/// Each launch adds one of this many consecutive chunks of the buffers, the next launch the
/// next chunk: short launches (so a short kernel is not held up waiting for the stream to
/// end) that still stream every byte of the buffers before coming back to the first.
const CHUNKS: usize = 8;

/// The GEMM of [`CoKind::Gemm`]: M × N × K (its operands, 40 MiB, about what the L2 holds).
const GEMM_MNK: (u32, u32, u32) = (4096, 2048, 2048);
const _: () =
    assert!((GEMM_MNK.0 as usize * GEMM_MNK.2 as usize) <= LEN && (GEMM_MNK.0 as usize * GEMM_MNK.1 as usize) <= LEN);

/// What a [`CoRunner`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoKind {
    /// `vector_add` streaming memory.
    #[default]
    Stream,
    /// A 4096 × 2048 × 2048 FP16 GEMM in 128×128 tiles: compute-bound, as a prefill's GEMMs are.
    Gemm,
}

impl CoKind {
    /// Whether it is the default, [`CoKind::Stream`] (not written in a profile).
    pub fn is_stream(&self) -> bool {
        *self == CoKind::Stream
    }

    /// What it runs, in words.
    pub fn describe(self) -> &'static str {
        match self {
            CoKind::Stream => "streaming memory",
            CoKind::Gemm => "running a compute-bound GEMM",
        }
    }
}

impl std::str::FromStr for CoKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<CoKind, String> {
        match s {
            "stream" => Ok(CoKind::Stream),
            "gemm" => Ok(CoKind::Gemm),
            other => Err(format!("unknown co-runner {other:?}: stream or gemm")),
        }
    }
}

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
    /// What it runs.
    kind: CoKind,
}

impl std::fmt::Debug for CoRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CoRunner({} windows)", self.windows.iter().flatten().count())
    }
}

impl CoRunner {
    /// A co-runner of `kind` on the device of `rt`; `None` where the device has no partitions
    /// or a single group (no partition leaves groups to run beside).
    pub fn new(rt: &Runtime, kind: CoKind) -> Result<Option<CoRunner>> {
        let (granularity, groups) = match &rt.device().info().partitions {
            PartitionSupport::Supported { granularity, groups, .. } if *groups > 1 => (*granularity, *groups),
            _ => return Ok(None),
        };
        let partitions = (1..groups)
            .map(|first| PartitionRequest { first_group: first, sms: (groups - first) * granularity })
            .collect();
        // `rest`: the window from the last group also takes the SMs the groups leave over.
        let spec = PoolSpec { partitions, priorities: Vec::new(), lanes: 1, rest: true };
        // The plain kernels, as the profiles' kernel hash names them (kernels/image_hash.rs).
        let co = Runtime::new(Device::open(rt.device().info().ordinal)?, &spec)?.with_units(UnitOrder::Plain);
        let co = Arc::new(co);
        let mut windows = vec![None; groups as usize];
        for (id, p) in co.pool().iter() {
            if let Some(g) = p.groups() {
                windows[g.first as usize] = Some(id);
            }
        }
        // A GEMM of zeros would draw less power than a prefill's: its operands are small
        // values (bytes 0x20 make halves of about 0.008).
        let fill = if kind == CoKind::Gemm { 0x20 } else { 0 };
        let buf = || DeviceBuffer::<half::f16>::filled(co.device(), LEN, fill);
        let bufs = [buf()?, buf()?, buf()?];
        let timer = EventTimer::new(co.device())?;
        rt.device().bind()?;
        Ok(Some(CoRunner { bufs, rt: co, windows, timer, next: std::cell::Cell::new(0), kind }))
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
        let [a, b, c] = &self.bufs;
        if self.kind == CoKind::Gemm {
            let (m, n, k) = GEMM_MNK;
            let p = GemmParams::dense(a.ptr(), b.ptr(), c.ptr(), m, n, k);
            // SAFETY: A (m×k), B (n×k) and C (m×n) lie within three live buffers of LEN halves.
            unsafe { self.rt.launch(GEMM_LARGE, &p, Placement::on(id)) }?;
            return Ok(());
        }
        let chunk = self.next.get();
        self.next.set((chunk + 1) % CHUNKS);
        let (len, at) = (LEN / CHUNKS, (chunk * LEN / CHUNKS * 2) as u64);
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

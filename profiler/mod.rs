//! The offline profiler: for every (kernel, shape) a request launches, its latency on every
//! partition size the device offers and with grid-only sizing on the whole device, and its
//! knee — the fewest SMs whose latency there, counting the switch of partition it takes to
//! get there, is within ε of the kernel's full speed (the whole device's latency, or a
//! partition's where that measured less: see [`knee`]).
//!
//! The switch is measured once per profile on the request itself ([`switch_cost_us`]): between
//! two dependent kernels of a replayed plan, a change of partition costs about a microsecond
//! or two, which is the difference between right-sizing a 5 µs decode kernel and not.
//!
//! Input is a request recorded through a tenant ([`crate::runtime::Tenant::record`]), on the
//! whole device and on each partition (where the engine picks a kernel's tiles and grid for
//! the SMs it gets, each partition's recording has the kernels chosen for it). Each distinct
//! launch is replayed on partitions of 1, 2, … groups (first group first) and on the whole
//! device, timed with CUDA events, the median of `repeats`, with the L2 cache flushed before
//! every repeat; and once more on each partition beside a [`CoRunner`] that streams memory on
//! the groups the partition leaves, so each kernel has knees on an idle device and knees
//! beside other work. One profile format ([`Profile`], JSON with a schema version); the
//! runtime's policies read it through [`Profile::min_sms`], after [`Profile::check`].
//!
//! Depends on the runtime only; the CLI records the engine's requests and passes them here.

pub mod app;
mod co_runner;
pub mod fit;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use cudarc::driver::sys;
use serde::{Deserialize, Serialize};

pub use app::AppKernel;
pub use co_runner::CoRunner;

use crate::kernels::{KernelId, IMAGE_HASH};
use crate::runtime::{
    check, DeviceBuffer, DeviceInfo, EventTimer, Grid, MinSms, PartitionId, Placement, Recorded, Runtime,
};

/// Version of the profile file format. 2: the shape keys of decode attention and KV append no
/// longer include the cache's capacity. 3: `switch_us`, counted in the knees. 4: the request's
/// own curve (`request_curve`). 5: each kernel's curve beside a co-runner and its knee
/// there (`beside`, `min_sms_beside`); the curve's kernels chosen for each partition; an
/// application's kernels by name and launch shape (`app_kernels`, optional).
pub const SCHEMA_VERSION: u32 = 5;

/// One point of a request's curve: the request run on a partition, with the kernels (tiles,
/// grids) chosen for that partition's SMs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RequestPoint {
    /// SMs of the partition (or the whole device).
    pub sms: u32,
    /// Median time of an encoder forward, or of a decoder's prefill, µs.
    pub us: f64,
    /// Median time of one decode step, µs (0 for encoders).
    pub step_us: f64,
    /// As `us`, beside a co-runner streaming memory on the rest of the device (0 where
    /// there is no rest: the whole device).
    #[serde(default)]
    pub co_us: f64,
    /// As `step_us`, beside that co-runner.
    #[serde(default)]
    pub co_step_us: f64,
}

/// One point of a latency curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// SMs the kernel could use (partition size, or grid ÷ blocks per SM for grid-only sizing).
    pub sms: u32,
    /// Median latency in microseconds.
    pub us: f64,
}

/// The profile of one (kernel, shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelProfile {
    /// The kernel.
    pub kernel: KernelId,
    /// Its shape key, hex ([`crate::kernels::Params::shape_key`]).
    pub shape_key: String,
    /// Work units of the launch.
    pub units: u64,
    /// Times the request launches it.
    pub calls: u32,
    /// Latency on the whole device, µs.
    pub full_us: f64,
    /// Latency on each partition size (green contexts), ascending SMs, then the whole device;
    /// on a partition, the kernel the engine chooses for its SMs (same operation and shape,
    /// its tiles and grid picked for that many SMs).
    pub curve: Vec<Point>,
    /// Latency on each partition smaller than the device beside a [`CoRunner`] streaming
    /// memory on the groups it leaves, ascending SMs (no whole-device point: the whole device
    /// leaves none); empty where the device has no room for one.
    pub beside: Vec<Point>,
    /// The other kernels (and their shape keys, hex) the engine chooses for this launch on
    /// the partitions of the curve, where they differ from this one: the runtime looks their
    /// knees up under these keys too.
    pub variants: Vec<(KernelId, String)>,
    /// Latency on the whole device with the grid limited to that many SMs' worth of blocks.
    pub grid_only: Vec<Point>,
    /// The latency knee: fewest SMs (a partition size, or the whole device) whose latency,
    /// plus [`Profile::switch_us`] on a partition, is within ε of its full speed ([`knee`]).
    pub min_sms: u32,
    /// The latency knee beside the co-runner: fewest SMs whose latency there is within ε of
    /// the least on [`KernelProfile::beside`] (the best a kernel can do while other work holds
    /// the rest of the device); 0 where not measured.
    pub min_sms_beside: u32,
}

impl KernelProfile {
    /// The efficiency knee: the most SMs whose SM·time (SMs × latency) stays within ε of the
    /// least on the curve — beyond it, more SMs buy less than their share of speed. Below it
    /// a kernel gives back SMs in proportion to the time it loses.
    pub fn efficiency_sms(&self, epsilon: f64) -> u32 {
        efficiency_knee(&self.curve, epsilon)
    }

    /// The efficiency knee beside the co-runner (0 where not measured).
    pub fn efficiency_sms_beside(&self, epsilon: f64) -> u32 {
        efficiency_knee(&self.beside, epsilon)
    }
}

/// The most SMs of `curve` whose SM·time is within ε of the curve's least (its first point if
/// the curve is empty of positive times).
pub fn efficiency_knee(curve: &[Point], epsilon: f64) -> u32 {
    let cost = |p: &Point| f64::from(p.sms) * p.us;
    let least = curve.iter().map(cost).filter(|c| *c > 0.0).fold(f64::INFINITY, f64::min);
    curve.iter().filter(|p| cost(p) <= least * (1.0 + epsilon)).map(|p| p.sms).max().unwrap_or(0)
}

/// What [`profile_launches`] measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// Every distinct (kernel, shape), in first-launch order.
    pub kernels: Vec<KernelProfile>,
    /// The cost of a partition switch between dependent kernels of a plan, µs.
    pub switch_us: f64,
}

/// A profile: the device and kernels it was measured on, and every kernel's curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// GPU name, e.g. "NVIDIA H200".
    pub gpu: String,
    /// SMs of that GPU.
    pub sm_count: u32,
    /// SMs per partition group.
    pub granularity: u32,
    /// Driver release.
    pub driver: Option<String>,
    /// Hash of the kernels it was measured with ([`crate::kernels::IMAGE_HASH`]: their sources,
    /// nvcc's version and flags), hex.
    pub kernel_image_hash: String,
    /// Model name.
    pub model: String,
    /// The request profiled, e.g. "prefill 8×128 + decode step (cache 128)".
    pub request: String,
    /// ε of the knee.
    pub epsilon: f64,
    /// Absolute tolerance of the knee, µs (timing noise floor).
    #[serde(default)]
    pub abs_tol_us: f64,
    /// Timed repeats per point.
    pub repeats: u32,
    /// A partition switch between two dependent kernels of a replayed plan, µs (measured on
    /// this request, see [`switch_cost_us`]); added to every partition's latency for the knee.
    pub switch_us: f64,
    /// Every distinct (kernel, shape) of the request, in first-launch order.
    pub kernels: Vec<KernelProfile>,
    /// The whole request on every partition size, ascending SMs, then the whole device: what
    /// a tenant's throughput is on a window of that size (the krisp policy sizes windows by it).
    pub request_curve: Vec<RequestPoint>,
    /// An unmodified application's kernels and cuBLAS calls by name and launch shape
    /// (`rightsize profile --app`; [`app`]); empty in a profile of the engine's models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_kernels: Vec<AppKernel>,
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Reading or writing the file failed.
    #[error("profile {path}: {reason}")]
    Io {
        /// File.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The profile was measured elsewhere.
    #[error("profile was measured {measured}; this is {here}: profile again on this device and build")]
    Mismatch {
        /// What the profile says.
        measured: String,
        /// What this device and build are.
        here: String,
    },
    /// The runtime failed while profiling.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::Error),
}

/// Options of a profiling run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// A kernel's knee is the fewest SMs with latency ≤ (1 + ε) × full-device latency …
    pub epsilon: f64,
    /// … or within this many µs of it, whichever is larger: differences below the timing
    /// noise (event resolution, launch jitter) do not count, so a kernel whose latency is
    /// its launch latency gets the fewest SMs rather than a knee set by noise.
    pub abs_tol_us: f64,
    /// Timed repeats per point (the median is kept).
    pub repeats: u32,
    /// Also time every kernel beside a [`CoRunner`] (its `beside` curve and knees).
    pub beside: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { epsilon: 0.05, abs_tol_us: 0.5, repeats: 11, beside: true }
    }
}

/// The fewest SMs of `curve` (ascending, the whole device last) whose latency — plus
/// `switch_us` for a partition, what getting onto it costs — is ≤ max((1 + ε) × best,
/// best + `abs_tol_us`); the last point's SMs (the whole device) when none is. `best` is the
/// kernel's full speed: `full_us`, or a partition's latency where that measured less. A
/// partition's SMs are some of the device's and its grid one the device could run too, so a
/// faster partition says what the whole device can do; a whole-device median that noise put
/// above it would otherwise move the limit, and on a flat curve the knee with it (by several
/// steps, between the first SM count the curve is flat from and the whole device).
pub fn knee(curve: &[Point], full_us: f64, epsilon: f64, abs_tol_us: f64, switch_us: f64) -> u32 {
    let best = curve.iter().map(|p| p.us).fold(full_us, f64::min);
    let limit = ((1.0 + epsilon) * best).max(best + abs_tol_us);
    let last = curve.len().saturating_sub(1);
    let cost = |i: usize, p: &Point| if i < last { p.us + switch_us } else { p.us };
    curve.iter().enumerate().find(|&(i, p)| cost(i, p) <= limit).map(|(_, p)| p).or(curve.last()).map_or(0, |p| p.sms)
}

/// A file-name-safe form of a name ("NVIDIA H200" → "nvidia-h200").
pub fn slug(name: &str) -> String {
    let s: String = name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-")
}

/// The median of `v` (the upper one of an even count); sorts `v`.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times recorded launches on every partition of `rt` and with grid-only sizing.
struct Timer<'a> {
    rt: &'a Runtime,
    flush: DeviceBuffer<u8>,
    events: EventTimer,
}

/// Work to run beside a timed launch: the co-runner, the group its window starts at, and how
/// many of its launches to enqueue before each repeat.
type Beside<'a> = (&'a CoRunner, u32, u32);

impl<'a> Timer<'a> {
    fn new(rt: &'a Runtime) -> Result<Timer<'a>, ProfileError> {
        let l2 = rt.device().info().l2_cache_bytes as usize;
        let flush = DeviceBuffer::<u8>::filled(rt.device(), 2 * l2.max(1 << 20), 0)?;
        Ok(Timer { rt, flush, events: EventTimer::new(rt.device())? })
    }

    /// Median µs of `launch` on `placement`, L2 flushed before each repeat; with `beside`,
    /// the co-runner started after the flush and before the launch, and waited for after.
    fn time(
        &self,
        launch: &Recorded,
        placement: Placement,
        repeats: u32,
        beside: Option<Beside<'_>>,
    ) -> Result<f64, ProfileError> {
        let stream = self
            .rt
            .pool()
            .get(placement.partition)
            .map_err(crate::runtime::Error::from)?
            .stream(0)
            .map_err(crate::runtime::Error::from)?;
        let mut samples = Vec::with_capacity(repeats as usize);
        for _ in 0..repeats.max(1) {
            // SAFETY: a live buffer and stream of this device.
            unsafe { check("cuMemsetD8Async", sys::cuMemsetD8Async(self.flush.ptr(), 1, self.flush.len(), stream))? };
            if let Some((co, from, launches)) = beside {
                // The flush done first, so the co-runner's launches need outlast the kernel only.
                // SAFETY: a live stream of this device.
                unsafe { check("cuStreamSynchronize", sys::cuStreamSynchronize(stream))? };
                co.start(from, launches)?;
                self.rt.device().bind()?;
            }
            // SAFETY: a live stream; the recorded launch's buffers outlive the profiling run
            // (the caller keeps the model and workspace).
            let ms = unsafe { self.events.time_ms(stream, || launch.replay(self.rt, placement).map(|_| ())) }?;
            if let Some((co, ..)) = beside {
                co.wait()?;
                self.rt.device().bind()?;
            }
            samples.push(ms * 1e3);
        }
        Ok(median(&mut samples))
    }
}

/// Profiles the distinct launches of `launches` (a request recorded on the whole device) on
/// `rt`, whose pool must hold partitions of 1, 2, …, n groups starting at group 0
/// ([`prefix_pool`]). `sized` holds the same request recorded on partitions of that pool
/// (launch for launch, the kernels chosen for each partition's SMs): a kernel's point on such
/// a partition times that partition's launch; a partition not in it, or whose recording does
/// not match launch for launch, replays the whole device's. `progress(done, total)` is called
/// after each distinct launch.
///
/// # Safety
/// The buffers the recorded launches use are live for the whole call.
pub unsafe fn profile_launches(
    rt: &Runtime,
    launches: &[Recorded],
    sized: &[(PartitionId, Vec<Recorded>)],
    opts: Options,
    mut progress: impl FnMut(usize, usize),
) -> Result<Sweep, ProfileError> {
    let timer = Timer::new(rt)?;
    // SAFETY: forwarded contract.
    let switch_us = unsafe { switch_cost_us(rt, launches, opts.repeats) }?;
    let co = if opts.beside { CoRunner::new(rt)? } else { None };
    // Distinct (kernel, shape) in first-launch order, with their first index and call counts.
    let mut order: Vec<(KernelId, u64)> = Vec::new();
    let mut first: HashMap<(KernelId, u64), (usize, u32)> = HashMap::new();
    for (i, l) in launches.iter().enumerate() {
        let entry = first.entry((l.kernel, l.shape_key)).or_insert_with(|| {
            order.push((l.kernel, l.shape_key));
            (i, 0)
        });
        entry.1 += 1;
    }
    let sized_at = |id: PartitionId| sized.iter().find(|(p, v)| *p == id && v.len() == launches.len()).map(|(_, v)| v);
    // (partition, SMs, the group a co-runner beside it starts at).
    let partitions: Vec<(PartitionId, u32, Option<u32>)> = rt
        .pool()
        .iter()
        .filter(|(_, p)| !p.is_whole_device())
        .map(|(id, p)| {
            (id, p.sms(), p.groups().map(|g| g.end()).filter(|&end| co.as_ref().is_some_and(|c| c.fits(end))))
        })
        .collect();
    let sm_count = rt.device().info().sm_count;
    let mut out = Vec::with_capacity(order.len());
    for (n, key) in order.iter().enumerate() {
        let (i, calls) = first[key];
        let launch = &launches[i];
        // Warm up (module load, first-touch) before timing.
        // SAFETY: forwarded contract.
        unsafe { launch.replay(rt, Placement::WHOLE)? };
        let full_us = timer.time(launch, Placement::WHOLE, opts.repeats, None)?;
        let (mut curve, mut beside) = (Vec::with_capacity(partitions.len() + 1), Vec::new());
        let mut variants = Vec::new();
        for &(id, sms, co_from) in &partitions {
            let on = sized_at(id).map_or(launch, |v| &v[i]);
            let variant = (on.kernel, format!("{:016x}", on.shape_key));
            if (on.kernel, on.shape_key) != *key && !variants.contains(&variant) {
                variants.push(variant);
                // Warm up the variant too.
                // SAFETY: forwarded contract.
                unsafe { on.replay(rt, Placement::on(id))? };
            }
            let us = timer.time(on, Placement::on(id), opts.repeats, None)?;
            curve.push(Point { sms, us });
            if let (Some(from), Some(co)) = (co_from, co.as_ref()) {
                let n = co.launches_for(from, us)?;
                rt.device().bind()?;
                beside.push(Point { sms, us: timer.time(on, Placement::on(id), opts.repeats, Some((co, from, n)))? });
            }
        }
        curve.sort_by_key(|p| p.sms);
        beside.sort_by_key(|p| p.sms);
        curve.push(Point { sms: sm_count, us: full_us });
        let per_sm = rt.kernels().get(launch.kernel).blocks_per_sm;
        let mut grid_only = Vec::with_capacity(partitions.len());
        for &(_, sms, _) in &partitions {
            let grid = (sms * per_sm).min(launch.units.min(u64::from(u32::MAX)) as u32).max(1);
            let placement = Placement { grid: Grid::Fixed(grid), ..Placement::WHOLE };
            grid_only.push(Point { sms, us: timer.time(launch, placement, opts.repeats, None)? });
        }
        grid_only.sort_by_key(|p| p.sms);
        out.push(KernelProfile {
            kernel: key.0,
            shape_key: format!("{:016x}", key.1),
            units: launch.units,
            calls,
            full_us,
            min_sms: knee(&curve, full_us, opts.epsilon, opts.abs_tol_us, switch_us),
            min_sms_beside: knee_beside(&beside, opts.epsilon, opts.abs_tol_us),
            curve,
            beside,
            variants,
            grid_only,
        });
        progress(n + 1, order.len());
    }
    Ok(Sweep { kernels: out, switch_us })
}

/// The latency knee of a curve measured beside a co-runner (every point a partition): the
/// fewest SMs within max((1 + ε) × least, least + `abs_tol_us`) of the least latency on it;
/// 0 for an empty curve.
pub fn knee_beside(beside: &[Point], epsilon: f64, abs_tol_us: f64) -> u32 {
    if beside.is_empty() {
        return 0;
    }
    knee(beside, f64::INFINITY, epsilon, abs_tol_us, 0.0)
}

/// What a change of partition costs between two dependent kernels of a replayed plan, in µs.
///
/// The recorded request is captured twice as a CUDA graph: every launch on the whole device,
/// and with every other launch that fits it (no more blocks than it has SMs, so each block has
/// an SM of its own either way) on the widest partition instead. The difference of the two graphs' median replay times, over the
/// number of partition changes in the second, is the cost of one change. Both graphs run the
/// same kernels in the same order, each block on an SM of its own, so what differs is the
/// switching. When no kernel of the request fits, a chain of 64 one-block kernels stands in.
///
/// # Safety
/// As [`profile_launches`].
pub unsafe fn switch_cost_us(rt: &Runtime, launches: &[Recorded], repeats: u32) -> Result<f64, ProfileError> {
    let widest = rt.pool().iter().filter(|(_, p)| !p.is_whole_device()).max_by_key(|(_, p)| p.sms());
    let Some((widest, part)) = widest else {
        return Ok(0.0);
    };
    // At most one block per SM on either side, so the kernel itself runs alike.
    let width = u64::from(part.sms());
    type Launch<'a> = Box<dyn Fn(Placement) -> crate::runtime::Result<u32> + 'a>;
    let mut chain: Vec<(bool, Launch)> = launches
        .iter()
        // SAFETY (of each replay): forwarded contract.
        .map(|l| (l.units <= width, Box::new(move |pl| unsafe { l.replay(rt, pl) }) as Launch))
        .collect();
    // A request none of whose kernels fits (every one has more blocks than the partition has
    // SMs) is measured on a chain of one-block kernels instead.
    let fits_none = !chain.iter().any(|(fits, _)| *fits);
    let probe = if fits_none { Some(DeviceBuffer::<u32>::filled(rt.device(), 1, 0)?) } else { None };
    if let Some(probe) = &probe {
        let p = crate::kernels::abi::SetU32Params { x: probe.ptr(), n: 1, value: 1, _pad: 0 };
        chain = (0..64)
            .map(|_| {
                // SAFETY: a live one-element buffer.
                (true, Box::new(move |pl| unsafe { rt.launch(crate::kernels::SET_U32, &p, pl) }) as Launch)
            })
            .collect();
    }
    let whole = rt.pool().get(PartitionId::WHOLE).map_err(crate::runtime::Error::from)?;
    let (s0, s1) =
        (whole.stream(0).map_err(crate::runtime::Error::from)?, part.stream(0).map_err(crate::runtime::Error::from)?);
    let event = crate::runtime::OrderEvent::new(rt.device())?;
    let capture = |alternate: bool| -> Result<(crate::runtime::Plan, usize), ProfileError> {
        let mut switches = 0usize;
        let plan = crate::runtime::Plan::capture(rt, s0, || {
            let (mut cur, mut flip) = (s0, false);
            let mut order = |to: sys::CUstream, switches: &mut usize| -> Result<(), ProfileError> {
                if to != cur {
                    event.order(cur, to)?;
                    cur = to;
                    *switches += 1;
                }
                Ok(())
            };
            for (fits, launch) in &chain {
                let on_part = alternate && *fits && {
                    flip = !flip;
                    flip
                };
                let (stream, placement) = if on_part { (s1, Placement::on(widest)) } else { (s0, Placement::WHOLE) };
                order(stream, &mut switches)?;
                launch(placement)?;
            }
            order(s0, &mut switches)
        })?;
        Ok((plan, switches))
    };
    let (same, _) = capture(false)?;
    let (alt, switches) = capture(true)?;
    if switches == 0 {
        return Ok(0.0);
    }
    let events = EventTimer::new(rt.device())?;
    let time = |plan: &crate::runtime::Plan| -> Result<f64, ProfileError> {
        // SAFETY: a plan captured on s0, replayed there.
        Ok(unsafe { events.time_ms(s0, || plan.launch(rt, s0)) }? * 1e3)
    };
    for _ in 0..2 {
        time(&same)?;
        time(&alt)?;
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..repeats.max(3) {
        a.push(time(&same)?);
        b.push(time(&alt)?);
    }
    Ok(((median(&mut b) - median(&mut a)) / switches as f64).max(0.0))
}

/// The pool a profiling runtime needs: partitions of 1, 2, …, all groups from group 0.
pub fn prefix_pool(granularity: u32, groups: u32) -> crate::runtime::PoolSpec {
    crate::runtime::PoolSpec {
        partitions: (1..=groups)
            .map(|g| crate::runtime::PartitionRequest { first_group: 0, sms: g * granularity })
            .collect(),
        priorities: Vec::new(),
        lanes: 1,
        rest: false,
    }
}

impl Profile {
    /// A profile of `kernels` measured on `info`.
    pub fn new(
        info: &DeviceInfo,
        granularity: u32,
        model: &str,
        request: &str,
        opts: Options,
        sweep: Sweep,
    ) -> Profile {
        Profile {
            schema_version: SCHEMA_VERSION,
            gpu: info.name.clone(),
            sm_count: info.sm_count,
            granularity,
            driver: info.driver_release.clone(),
            kernel_image_hash: format!("{IMAGE_HASH:016x}"),
            model: model.into(),
            request: request.into(),
            epsilon: opts.epsilon,
            abs_tol_us: opts.abs_tol_us,
            repeats: opts.repeats,
            switch_us: sweep.switch_us,
            kernels: sweep.kernels,
            request_curve: Vec::new(),
            app_kernels: Vec::new(),
        }
    }

    /// The time of a request generating `new_tokens` tokens (the first by the prefill; 0 or
    /// 1 for one forward) on each profiled SM count, ascending: the request curve's prefill
    /// plus that many decode steps less one.
    pub fn request_us(&self, new_tokens: u32) -> Vec<(u32, f64)> {
        self.request_times(new_tokens, false)
    }

    /// As [`Profile::request_us`], beside the co-runner on the rest of the device where it
    /// was measured (the whole device, and any point without it, alone).
    pub fn request_us_beside(&self, new_tokens: u32) -> Vec<(u32, f64)> {
        self.request_times(new_tokens, true)
    }

    fn request_times(&self, new_tokens: u32, beside: bool) -> Vec<(u32, f64)> {
        let steps = f64::from(new_tokens.saturating_sub(1));
        let time = |p: &RequestPoint| match beside && p.co_us > 0.0 {
            true => p.co_us + steps * p.co_step_us,
            false => p.us + steps * p.step_us,
        };
        self.request_curve.iter().map(|p| (p.sms, time(p))).collect()
    }

    /// Writes it as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), ProfileError> {
        let io = |reason: String| ProfileError::Io { path: path.display().to_string(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(e.to_string()))?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| io(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|e| io(e.to_string()))
    }

    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProfileError::Io { path: path.display().to_string(), reason: e.to_string() })?;
        Profile::from_json(&text, &path.display().to_string())
    }

    /// A profile from its JSON text (read from `origin`, named in errors).
    pub fn from_json(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let io = |reason: String| ProfileError::Io { path: origin.to_string(), reason };
        // The version first, so a profile of another format says so rather than which field
        // it lacks.
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let v: Version = serde_json::from_str(text).map_err(|e| io(e.to_string()))?;
        if v.schema_version != SCHEMA_VERSION {
            return Err(io(format!(
                "schema version {} (this build reads {SCHEMA_VERSION}): profile again",
                v.schema_version
            )));
        }
        serde_json::from_str(text).map_err(|e| io(e.to_string()))
    }

    /// Refuses a profile measured on another GPU model (what an application's profile needs).
    pub fn check_device(&self, info: &DeviceInfo) -> Result<(), ProfileError> {
        if self.gpu != info.name || self.sm_count != info.sm_count {
            return Err(ProfileError::Mismatch {
                measured: format!("on {} with {} SMs", self.gpu, self.sm_count),
                here: format!("{} with {} SMs", info.name, info.sm_count),
            });
        }
        Ok(())
    }

    /// Refuses a profile measured on another GPU model or with other kernel images.
    pub fn check(&self, info: &DeviceInfo) -> Result<(), ProfileError> {
        let here_hash = format!("{IMAGE_HASH:016x}");
        if self.gpu != info.name || self.sm_count != info.sm_count || self.kernel_image_hash != here_hash {
            return Err(ProfileError::Mismatch {
                measured: format!(
                    "on {} with {} SMs, kernel images {}",
                    self.gpu, self.sm_count, self.kernel_image_hash
                ),
                here: format!("{} with {} SMs, kernel images {here_hash}", info.name, info.sm_count),
            });
        }
        Ok(())
    }

    /// The knees as the table the scheduler reads.
    pub fn min_sms(&self) -> MinSms {
        let mut m = MinSms::default();
        self.add_to(&mut m);
        m
    }

    /// Adds its knees to `table` (several profiles, one table), each under its kernel's key
    /// and its variants'.
    pub fn add_to(&self, table: &mut MinSms) {
        for k in &self.kernels {
            let keys = std::iter::once((k.kernel, &k.shape_key)).chain(k.variants.iter().map(|(id, s)| (*id, s)));
            for (kernel, shape) in keys {
                if let Ok(key) = u64::from_str_radix(shape, 16) {
                    table.insert(kernel, key, k.min_sms);
                }
            }
        }
    }

    /// Share of the request's full-device time spent in each kernel profile, in order.
    fn shares(&self) -> Vec<f64> {
        let total: f64 = self.kernels.iter().map(|k| f64::from(k.calls) * k.full_us).sum();
        self.kernels.iter().map(|k| f64::from(k.calls) * k.full_us / total.max(f64::MIN_POSITIVE)).collect()
    }

    /// SM-time right-sizing frees: Σ share × (1 − min SMs / all SMs).
    pub fn sm_time_freed(&self) -> f64 {
        self.kernels
            .iter()
            .zip(self.shares())
            .map(|(k, s)| s * (1.0 - f64::from(k.min_sms) / f64::from(self.sm_count)))
            .sum()
    }

    /// A Markdown table: kernel, units, calls, full-device µs, latency and efficiency knees
    /// (on an idle device, and beside the co-runner), share of request time, SM-time freed;
    /// then the request's own curve.
    pub fn summary(&self) -> String {
        let mut t = format!(
            "{} — {} on {} ({} SMs), ε = {}, absolute tolerance {} µs, partition switch {:.2} µs\n\nKnees in SMs: *latency*, the fewest SMs within ε of the kernel's best (idle: of the whole device, counting the switch); *efficiency*, the most SMs whose SM·time stays within ε of its least. *Beside*: measured while a co-runner streams memory on the SMs the partition leaves.\n\n| kernel | units | calls | full-GPU µs | latency knee | efficiency knee | latency knee beside | efficiency knee beside | share of request | SM-time freed |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.model, self.request, self.gpu, self.sm_count, self.epsilon, self.abs_tol_us, self.switch_us
        );
        let or_dash = |sms: u32| if sms > 0 { sms.to_string() } else { "–".into() };
        for (k, share) in self.kernels.iter().zip(self.shares()) {
            let freed = share * (1.0 - f64::from(k.min_sms) / f64::from(self.sm_count));
            let _ = writeln!(
                t,
                "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {:.1}% | {:.1}% |",
                k.kernel,
                k.units,
                k.calls,
                k.full_us,
                k.min_sms,
                k.efficiency_sms(self.epsilon),
                or_dash(k.min_sms_beside),
                or_dash(k.efficiency_sms_beside(self.epsilon)),
                100.0 * share,
                100.0 * freed
            );
        }
        let _ = writeln!(t, "\nSM-time freed over the request: {:.1}%", 100.0 * self.sm_time_freed());
        if let Some(whole) = self.request_curve.last().filter(|w| w.us > 0.0) {
            let _ = writeln!(
                t,
                "\nThe request on a partition (kernels chosen for its SMs), alone and beside a co-runner streaming memory on the rest of the device; speed ÷ the whole device alone:\n\n| SMs | forward or prefill µs | decode step µs | speed | beside: forward or prefill µs | beside: decode step µs | speed beside |\n|---:|---:|---:|---:|---:|---:|---:|"
            );
            for p in &self.request_curve {
                let (a, b, c) = (whole.us + whole.step_us, p.us + p.step_us, p.co_us + p.co_step_us);
                let speed = |x: f64| a / x.max(f64::MIN_POSITIVE);
                let beside = if c > 0.0 {
                    format!("{:.1} | {:.1} | {:.2}", p.co_us, p.co_step_us, speed(c))
                } else {
                    "– | – | –".to_string()
                };
                let _ = writeln!(t, "| {} | {:.1} | {:.1} | {:.2} | {beside} |", p.sms, p.us, p.step_us, speed(b));
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(u32, f64)]) -> Vec<Point> {
        v.iter().map(|&(sms, us)| Point { sms, us }).collect()
    }

    #[test]
    fn committed_profiles_are_of_this_builds_kernels() {
        // The default comparison refuses a profile of other kernels: any edit under kernels/
        // (the hash covers the sources, build.rs) must come with re-measured profiles
        // (`rightsize profile`, docs/profiles-h200.md).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        let mut seen = 0;
        for gpu in std::fs::read_dir(&dir).unwrap() {
            for file in std::fs::read_dir(gpu.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                let p = Profile::load(&path).unwrap();
                if !p.app_kernels.is_empty() {
                    // An application's profile (`profile --app`) times its own kernels.
                    continue;
                }
                assert_eq!(
                    p.kernel_image_hash,
                    format!("{IMAGE_HASH:016x}"),
                    "{}: measured with other kernels; re-profile",
                    path.display()
                );
                seen += 1;
            }
        }
        assert!(seen >= 5, "{seen} profiles");
    }

    #[test]
    fn knee_is_the_fewest_sms_within_epsilon() {
        let c = pts(&[(8, 50.0), (16, 26.0), (24, 21.5), (32, 20.1), (132, 20.0)]);
        assert_eq!(knee(&c, 20.0, 0.05, 0.0, 0.0), 32);
        assert_eq!(knee(&c, 20.0, 0.25, 0.0, 0.0), 24);
        assert_eq!(knee(&c, 20.0, 2.0, 0.0, 0.0), 8);
        // Nothing within ε (noise made every partition slower): the whole device.
        assert_eq!(knee(&pts(&[(8, 30.0), (132, 20.0)]), 10.0, 0.05, 0.0, 0.0), 132);
        // A 3 µs kernel whose curve is launch latency plus noise: the absolute tolerance wins.
        let flat = pts(&[(8, 3.4), (16, 3.45), (24, 3.5), (132, 3.2)]);
        assert_eq!(knee(&flat, 3.2, 0.05, 0.0, 0.0), 132);
        assert_eq!(knee(&flat, 3.2, 0.05, 0.5, 0.0), 8);
        // A switch of 1.5 µs outweighs what right-sizing the 3 µs kernel frees: it stays on
        // the whole device, whose own latency pays no switch.
        assert_eq!(knee(&flat, 3.2, 0.05, 0.5, 1.5), 132);
        // On a 20 µs kernel, a 0.5 µs switch only moves the knee up a step.
        assert_eq!(knee(&c, 20.0, 0.05, 0.0, 0.5), 32);
        assert_eq!(knee(&c, 20.0, 0.10, 0.0, 0.5), 24);
        assert_eq!(knee(&c, 20.0, 0.10, 0.0, 1.5), 32);
        // A kernel of 96 tiles: as fast on 96 SMs as on 132. With a 1.7 µs switch it belongs
        // on the whole device, whether the device's median came out at 18.5 or (noise) 19.2 µs;
        // against the device's own median the second would put its knee at 96.
        let tiles = |full: f64| pts(&[(88, 30.0), (96, 18.56), (120, 18.55), (132, full)]);
        assert_eq!(knee(&tiles(18.5), 18.5, 0.05, 0.5, 1.7), 132);
        assert_eq!(knee(&tiles(19.2), 19.2, 0.05, 0.5, 1.7), 132);
        assert_eq!(knee(&tiles(19.2), 19.2, 0.05, 0.5, 0.5), 96);
    }

    #[test]
    fn the_knee_beside_a_co_runner_is_against_the_best_there() {
        // Beside the co-runner nothing reaches the idle device's 10 µs; the knee is the fewest
        // SMs within ε of the best beside it (17.5 µs on 120 SMs): 18.0 on 64.
        let c = pts(&[(8, 40.0), (16, 20.0), (64, 18.0), (120, 17.5)]);
        assert_eq!(knee_beside(&c, 0.05, 0.0), 64);
        assert_eq!(knee_beside(&c, 0.2, 0.0), 16);
        // The absolute tolerance counts as on the idle curve; not measured: 0.
        assert_eq!(knee_beside(&pts(&[(8, 3.4), (64, 3.1)]), 0.05, 0.5), 8);
        assert_eq!(knee_beside(&[], 0.05, 0.5), 0);
    }

    fn kp(kernel: KernelId, calls: u32, full_us: f64, min_sms: u32) -> KernelProfile {
        KernelProfile {
            kernel,
            shape_key: format!("{:016x}", 42 + calls),
            units: 10,
            calls,
            full_us,
            curve: vec![],
            beside: vec![],
            variants: vec![],
            grid_only: vec![],
            min_sms,
            min_sms_beside: 0,
        }
    }

    fn sample() -> Profile {
        Profile {
            schema_version: SCHEMA_VERSION,
            gpu: "NVIDIA H200".into(),
            sm_count: 132,
            granularity: 8,
            driver: None,
            kernel_image_hash: format!("{IMAGE_HASH:016x}"),
            model: "gpt2".into(),
            request: "test".into(),
            epsilon: 0.05,
            abs_tol_us: 0.5,
            repeats: 3,
            switch_us: 1.2,
            kernels: vec![kp(KernelId::GemmLarge, 1, 30.0, 132), kp(KernelId::LayerNorm, 2, 5.0, 33)],
            request_curve: vec![
                RequestPoint { sms: 64, us: 200.0, step_us: 12.0, co_us: 250.0, co_step_us: 20.0 },
                RequestPoint { sms: 132, us: 100.0, step_us: 10.0, co_us: 0.0, co_step_us: 0.0 },
            ],
            app_kernels: Vec::new(),
        }
    }

    #[test]
    fn request_time_counts_the_decode_steps_after_the_prefill() {
        let p = sample();
        assert_eq!(p.request_us(1), vec![(64, 200.0), (132, 100.0)]);
        assert_eq!(p.request_us(0), vec![(64, 200.0), (132, 100.0)]);
        assert_eq!(p.request_us(64), vec![(64, 200.0 + 63.0 * 12.0), (132, 100.0 + 630.0)]);
        assert_eq!(p.request_us_beside(64), vec![(64, 250.0 + 63.0 * 20.0), (132, 100.0 + 630.0)]);
        let s = p.summary();
        assert!(s.contains("| 64 | 200.0 | 12.0 | 0.52 | 250.0 | 20.0 | 0.41 |"), "{s}");
        assert!(s.contains("| 132 | 100.0 | 10.0 | 1.00 | – | – | – |"), "{s}");
    }

    #[test]
    fn efficiency_knee_is_the_most_sms_before_sm_time_rises() {
        // Perfect scaling to 32 SMs (SM·time 320), then flat: the knee is 32.
        let c = pts(&[(8, 40.0), (16, 20.0), (24, 13.4), (32, 10.0), (64, 10.0), (132, 10.0)]);
        assert_eq!(efficiency_knee(&c, 0.05), 32);
        // A looser ε reaches further; a latency-bound (flat) curve's knee is its fewest SMs.
        assert_eq!(efficiency_knee(&c, 1.0), 64);
        assert_eq!(efficiency_knee(&pts(&[(8, 5.0), (64, 5.0), (132, 5.0)]), 0.05), 8);
        // A step edge: two waves up to 120 SMs, one on 132: the knee is the edge.
        let waves = pts(&[(64, 20.0), (120, 20.0), (132, 10.0)]);
        assert_eq!(efficiency_knee(&waves, 0.05), 132);
        assert_eq!(efficiency_knee(&[], 0.05), 0);
    }

    #[test]
    fn shares_and_freed_sm_time() {
        let p = sample();
        // Shares 0.75 and 0.25; the norm frees 3/4 of its SM-time.
        assert!((p.sm_time_freed() - 0.25 * 0.75).abs() < 1e-9);
        let s = p.summary();
        assert!(s.contains("| layer_norm_f16 | 10 | 2 | 5.0 | 33 | 0 | – | – | 25.0% | 18.8% |"), "{s}");
        // Measured beside the co-runner: both of its knees there, in their columns.
        let mut q = sample();
        q.kernels[1].beside = pts(&[(8, 40.0), (16, 20.0), (64, 18.0), (120, 17.5)]);
        q.kernels[1].min_sms_beside = knee_beside(&q.kernels[1].beside, q.epsilon, q.abs_tol_us);
        let s = q.summary();
        assert!(s.contains("| layer_norm_f16 | 10 | 2 | 5.0 | 33 | 0 | 64 | 16 | 25.0% | 18.8% |"), "{s}");
        let m = p.min_sms();
        assert_eq!(m.get(KernelId::LayerNorm, 44), Some(33));
        assert_eq!(m.get(KernelId::LayerNorm, 45), None);
        // A launch the engine makes with another kernel on smaller partitions: its knee is
        // found under that kernel's key too.
        let mut q = sample();
        q.kernels[0].variants = vec![(KernelId::GemmWgmmaSlim, format!("{:016x}", 7))];
        assert_eq!(q.min_sms().get(KernelId::GemmWgmmaSlim, 7), Some(132));
    }

    pub(crate) fn device(name: &str, sms: u32) -> DeviceInfo {
        DeviceInfo {
            ordinal: 0,
            name: name.into(),
            pci_bus_id: None,
            sm_count: sms,
            compute_capability: (9, 0),
            cuda_driver_version: (13, 0),
            driver_release: None,
            total_memory_bytes: 1,
            free_memory_bytes: 1,
            l2_cache_bytes: 1,
            max_shared_memory_per_block_optin: 1,
            stream_priorities: crate::runtime::PriorityRange { least: 0, greatest: -5 },
            partitions: crate::runtime::PartitionSupport::Unsupported { reason: String::new() },
        }
    }

    #[test]
    fn profiles_from_another_device_or_build_are_refused() {
        let p = sample();
        assert!(p.check(&device("NVIDIA H200", 132)).is_ok());
        let e = p.check(&device("NVIDIA H100 80GB HBM3", 132)).unwrap_err().to_string();
        assert!(e.contains("NVIDIA H200") && e.contains("H100") && e.contains("profile again"), "{e}");
        assert!(p.check(&device("NVIDIA H200", 114)).is_err());
        let other_build = Profile { kernel_image_hash: "0000000000000000".into(), ..p };
        assert!(other_build.check(&device("NVIDIA H200", 132)).is_err());
    }

    #[test]
    fn files_round_trip_and_mismatches_are_refused() {
        let p = sample();
        let dir = std::env::temp_dir().join(format!("rightsize-profile-{}", std::process::id()));
        let path = dir.join("p.json");
        p.save(&path).unwrap();
        assert_eq!(Profile::load(&path).unwrap(), p);
        let mut old = p.clone();
        old.schema_version = 0;
        old.save(&path).unwrap();
        assert!(Profile::load(&path).unwrap_err().to_string().contains("schema version 0"));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(Profile::load(&path), Err(ProfileError::Io { .. })));
        std::fs::remove_dir_all(&dir).ok();
        assert!(Profile::load(&path).is_err());
    }
}

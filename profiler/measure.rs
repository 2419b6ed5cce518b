//! The timed sweep: every distinct launch of a recorded request replayed on each partition,
//! on the whole device and with grid-only sizing (and beside a [`CoRunner`]), L2 flushed
//! before each repeat; its [`Options`], what it returns ([`Sweep`]), the pool it needs
//! ([`prefix_pool`]), and the [`Profile`] made of it.

use std::collections::HashMap;

use cudarc::driver::sys;

use super::co_runner::CoRunner;
use super::knees::{knee, knee_beside};
use super::median;
use super::profile::{KernelProfile, Point, Profile, ProfileError, SCHEMA_VERSION};
use super::switch::switch_cost_us;
use crate::kernels::KernelId;
use crate::runtime::{check, DeviceBuffer, DeviceInfo, EventTimer, Grid, PartitionId, Placement, Recorded, Runtime};

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

/// What [`profile_launches`] measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// Every distinct (kernel, shape), in first-launch order.
    pub kernels: Vec<KernelProfile>,
    /// The cost of a partition switch between dependent kernels of a plan, µs.
    pub switch_us: f64,
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

/// Every window from a group to the device's end short of the whole split: the last 1, 2, …,
/// `groups - 1` groups, each with the SMs the split leaves outside its groups (`rest`). The
/// sizes a layout's last tenant gets, which a request curve holds rather than reading them
/// between group counts, and where the [`CoRunner`] runs beside a partition from group 0.
pub fn rest_pool(granularity: u32, groups: u32) -> crate::runtime::PoolSpec {
    crate::runtime::PoolSpec {
        partitions: (1..groups)
            .map(|first| crate::runtime::PartitionRequest { first_group: first, sms: (groups - first) * granularity })
            .collect(),
        priorities: Vec::new(),
        lanes: 1,
        rest: true,
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
        let mut p = Profile {
            schema_version: SCHEMA_VERSION,
            gpu: info.name.clone(),
            sm_count: info.sm_count,
            granularity,
            driver: info.driver_release.clone(),
            kernel_image_hash: String::new(),
            model: model.into(),
            request: request.into(),
            epsilon: opts.epsilon,
            abs_tol_us: opts.abs_tol_us,
            repeats: opts.repeats,
            switch_us: sweep.switch_us,
            kernels: sweep.kernels,
            request_curve: Vec::new(),
            app_kernels: Vec::new(),
        };
        p.kernel_image_hash = p.kernels_hash();
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::PartitionRequest;

    #[test]
    fn the_rest_pool_has_every_window_from_a_group_to_the_end_short_of_the_whole_split() {
        let p = rest_pool(8, 4);
        assert!(p.rest, "each window reaches the last group and so takes the SMs outside the groups");
        let want = [(1, 24), (2, 16), (3, 8)].map(|(first_group, sms)| PartitionRequest { first_group, sms });
        assert_eq!(p.partitions, want);
        assert!(rest_pool(8, 1).partitions.is_empty(), "one group: its window with the rest is the device");
    }
}

//! SM partitions: safe wrappers over the green-context driver calls, and the pool of
//! partitions a runtime makes once at start.
//!
//! A partition is a set of SMs kernels can be confined to: a green context made from a
//! union of consecutive groups of one split of the device's SM resource, or the whole
//! device (the primary context, unconfined). Each has one non-blocking stream per priority
//! level. Green contexts cost ~1 ms to make, so they are never made on the launch path.
//!
//! This module and the SM split in [`super::device`] are the only ones that call the green-context API
//! ([CUDA driver API: Green Contexts](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__GREEN__CONTEXTS.html)).

use std::fmt;
use std::sync::Arc;

use cudarc::driver::{sys, CudaContext};
use serde::{Deserialize, Serialize};

use super::device::{Device, PartitionSupport, SmSplit};
use super::error::{check, PartitionError, Result};
use super::handles::{GreenContext, Stream};
use super::memory::DeviceBuffer;
use super::policy::GroupRange;
use crate::kernels::abi::{RS_PAUSE_HEADER_BYTES, RS_PAUSE_MAX_SLOTS, RS_PAUSE_SLOT_BYTES, RS_UNIT_AREA_BYTES};

/// A partition asked for: `sms` SMs starting at group `first_group` of the device's split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRequest {
    /// First group (groups are numbered from 0 in the driver's split order).
    pub first_group: u32,
    /// SMs: a positive multiple of the device's granularity.
    pub sms: u32,
}

/// Checks a request against a split of `groups` groups of `granularity` SMs.
pub fn group_range(
    request: PartitionRequest,
    granularity: u32,
    groups: u32,
    total_sms: u32,
) -> Result<GroupRange, PartitionError> {
    let PartitionRequest { first_group, sms } = request;
    let max_sms = granularity * groups;
    if granularity == 0 || sms == 0 || sms % granularity != 0 || sms > max_sms {
        return Err(PartitionError::Size { sms, granularity, groups, max_sms, total_sms });
    }
    let count = sms / granularity;
    let end = first_group.saturating_add(count);
    if end > groups {
        return Err(PartitionError::Range { first: first_group, end, sms, groups, granularity });
    }
    Ok(GroupRange { first: first_group, count })
}

/// Which partitions a pool makes, and the stream priorities each gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// Green-context partitions, besides the whole device (which every pool has).
    pub partitions: Vec<PartitionRequest>,
    /// Stream priorities, one stream each per partition and lane; empty means the least
    /// priority only.
    pub priorities: Vec<i32>,
    /// Independent streams per priority on each partition (one per scheduled tenant, so
    /// tenants never serialize on, or capture, each other's streams); 0 means 1.
    #[serde(default)]
    pub lanes: u32,
    /// Whether a partition that reaches the split's last group also takes the SMs the split
    /// leaves outside its groups (12 on a 132-SM Hopper), so windows laid side by side cover
    /// the whole device. Its [`Partition::sms`] then counts them; its request still names
    /// groups only.
    #[serde(default)]
    pub rest: bool,
}

impl PoolSpec {
    /// Every window of consecutive groups (`groups·(groups+1)/2` partitions), for policies
    /// that place each kernel on any window.
    pub fn all_windows(groups: u32, granularity: u32, priorities: Vec<i32>) -> PoolSpec {
        let partitions = (1..=groups)
            .flat_map(|count| {
                (0..=groups - count).map(move |first| PartitionRequest { first_group: first, sms: count * granularity })
            })
            .collect();
        PoolSpec { partitions, priorities, lanes: 1, rest: false }
    }

    /// One window of at least `sms` SMs (rounded up to whole groups) from group `first_group`
    /// of a device that partitions as `support` says, its streams at `priority` (`None`: the
    /// least): the partition a process or a block of code asks for. Refused with the device's
    /// limits when there are no partitions or the window does not fit.
    pub fn window(
        support: &PartitionSupport,
        sms: u32,
        first_group: u32,
        priority: Option<i32>,
    ) -> Result<PoolSpec, PartitionError> {
        let (granularity, groups, remaining_sms) = match support {
            PartitionSupport::Supported { granularity, groups, remaining_sms, .. } => {
                (*granularity, *groups, *remaining_sms)
            }
            PartitionSupport::Unsupported { reason } => return Err(PartitionError::Unsupported(reason.clone())),
        };
        let rounded = sms.div_ceil(granularity.max(1)).saturating_mul(granularity);
        let request = PartitionRequest { first_group, sms: rounded };
        group_range(request, granularity, groups, granularity * groups + remaining_sms).map_err(|e| match e {
            // Name the size asked for, not the rounded one.
            PartitionError::Size { granularity, groups, max_sms, total_sms, .. } => {
                PartitionError::Size { sms, granularity, groups, max_sms, total_sms }
            }
            e => e,
        })?;
        Ok(PoolSpec { partitions: vec![request], priorities: priority.into_iter().collect(), lanes: 1, rest: false })
    }

    /// Partitions of `sms` SMs each, laid side by side from group 0 (disjoint).
    pub fn disjoint(sms: &[u32], granularity: u32) -> PoolSpec {
        let mut first_group = 0;
        let partitions = sms
            .iter()
            .map(|&sms| {
                let r = PartitionRequest { first_group, sms };
                first_group += sms / granularity.max(1);
                r
            })
            .collect();
        PoolSpec { partitions, priorities: Vec::new(), lanes: 1, rest: false }
    }
}

/// Names a partition of a pool: its index in the order made, the whole device first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionId(pub u16);

impl PartitionId {
    /// The whole device: every pool's first partition.
    pub const WHOLE: PartitionId = PartitionId(0);

    /// The `i`-th green-context partition of the pool's spec.
    pub fn green(i: usize) -> PartitionId {
        PartitionId(i as u16 + 1)
    }
}

/// A set of SMs with one stream per priority level.
pub struct Partition {
    // Field order is drop order: streams before the green context they belong to.
    streams: Vec<Stream>,
    /// Each stream's unit counter (`RsTicket.counter`, the first word of the stream's unit
    /// area in the pool's buffer).
    counters: Vec<u64>,
    green: Option<GreenContext>,
    sms: u32,
    groups: Option<GroupRange>,
    /// Priority levels per lane (`streams` is lane-major).
    levels: usize,
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("sms", &self.sms)
            .field("groups", &self.groups)
            .field("streams", &self.streams.len())
            .finish()
    }
}

impl Partition {
    /// SMs kernels on this partition may use.
    pub fn sms(&self) -> u32 {
        self.sms
    }

    /// Its groups, or `None` for the whole device.
    pub fn groups(&self) -> Option<GroupRange> {
        self.groups
    }

    /// Whether this is the whole device.
    pub fn is_whole_device(&self) -> bool {
        self.green.is_none()
    }

    /// The raw stream of priority level `level` (an index into the pool's priorities) on lane 0.
    pub fn stream(&self, level: usize) -> Result<sys::CUstream, PartitionError> {
        self.stream_in(0, level)
    }

    /// The unit counter of the launches on `stream` (`RsTicket.counter`: launches on one
    /// stream run one after another, so they share it), or 0 for a stream of no partition
    /// (units are then assigned by block index, and claims are not read).
    pub fn counter_of(&self, stream: sys::CUstream) -> u64 {
        self.streams.iter().position(|s| s.raw() == stream).map_or(0, |i| self.counters[i])
    }

    /// The raw stream of `lane` at priority level `level`.
    pub fn stream_in(&self, lane: usize, level: usize) -> Result<sys::CUstream, PartitionError> {
        if level >= self.levels {
            return Err(PartitionError::Unknown { what: "priority level", index: level, len: self.levels });
        }
        self.streams.get(lane * self.levels + level).map(Stream::raw).ok_or(PartitionError::Unknown {
            what: "lane",
            index: lane,
            len: self.streams.len() / self.levels.max(1),
        })
    }
}

/// Partitions made once: the whole device, then one per request of a [`PoolSpec`].
pub struct PartitionPool {
    partitions: Vec<Partition>,
    priorities: Vec<i32>,
    // A unit area per stream (kernels/abi.h, RS_UNIT_AREA_BYTES): the counter and the pause
    // list, zero before and after every launch.
    _counters: Option<DeviceBuffer<u64>>,
    /// The slots of paused tiles and how many (kernels/abi.h, RS_PAUSE_*).
    pause: Option<(DeviceBuffer<u8>, u32)>,
    // Dropped last: the primary context outlives every stream and green context.
    ctx: Arc<CudaContext>,
}

impl fmt::Debug for PartitionPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionPool")
            .field("partitions", &self.partitions)
            .field("priorities", &self.priorities)
            .finish()
    }
}

impl PartitionPool {
    /// Makes the whole-device partition and every partition of `spec`, each with a
    /// non-blocking stream per priority.
    pub fn new(device: &Device, spec: &PoolSpec) -> Result<PartitionPool> {
        device.bind()?;
        let range = device.info().stream_priorities;
        let priorities = if spec.priorities.is_empty() { vec![range.least] } else { spec.priorities.clone() };
        if let Some(&priority) = priorities.iter().find(|p| !range.contains(**p)) {
            return Err(PartitionError::Priority { priority, least: range.least, greatest: range.greatest }.into());
        }
        let mut pool = PartitionPool {
            partitions: Vec::with_capacity(spec.partitions.len() + 1),
            priorities,
            _counters: None,
            pause: None,
            ctx: device.context().clone(),
        };

        let lanes = spec.lanes.max(1) as usize;
        let levels = pool.priorities.len();
        let mut whole = Partition {
            streams: Vec::new(),
            counters: Vec::new(),
            green: None,
            sms: device.info().sm_count,
            groups: None,
            levels,
        };
        for &p in pool.priorities.iter().cycle().take(lanes * levels) {
            whole.streams.push(Stream::new(p)?);
        }
        pool.partitions.push(whole);

        if !spec.partitions.is_empty() {
            let split = device.split()?;
            pool.make_partitions(device, split, spec, lanes)?;
        }
        let streams: usize = pool.partitions.iter().map(|p| p.streams.len()).sum();
        // The slots of paused tiles, two per SM (so every block of a launch and of its
        // continuation can pause one), and each stream's unit area: its counter, the slots'
        // address and count, then its list of paused tiles (kernels/abi.h).
        let slots = (2 * device.info().sm_count).min(RS_PAUSE_MAX_SLOTS);
        let pause =
            DeviceBuffer::<u8>::filled(device, (RS_PAUSE_HEADER_BYTES + slots * RS_PAUSE_SLOT_BYTES) as usize, 0)?;
        let area = RS_UNIT_AREA_BYTES as u64;
        let mut words = vec![0u64; streams * (area / 8) as usize];
        for header in words.chunks_mut((area / 8) as usize) {
            header[1] = pause.ptr();
            header[2] = u64::from(slots);
        }
        let counters = DeviceBuffer::from_host(device, &words)?;
        let mut next = counters.ptr();
        for p in &mut pool.partitions {
            p.counters = (0..p.streams.len()).map(|i| next + area * i as u64).collect();
            next += area * p.streams.len() as u64;
        }
        pool._counters = Some(counters);
        pool.pause = Some((pause, slots));
        Ok(pool)
    }

    /// How many slots of paused tiles are in use now (read from the device): 0 whenever no
    /// launch runs, since every paused tile is resumed and its slot freed before its launch
    /// (or its continuation) ends.
    pub fn pause_slots_in_use(&self) -> Result<u32> {
        let Some((pause, slots)) = &self.pause else { return Ok(0) };
        let words = (*slots as usize).div_ceil(64);
        Ok(pause.prefix_to_host(8 * words)?.iter().map(|b| b.count_ones()).sum())
    }

    /// Makes the green-context partitions of `spec` from `split`.
    fn make_partitions(&mut self, device: &Device, split: &SmSplit, spec: &PoolSpec, lanes: usize) -> Result<()> {
        let pool = self;
        for &request in &spec.partitions {
            let groups = group_range(request, split.granularity, split.group_count(), split.total_sms())?;
            let rest = spec.rest && groups.end() == split.group_count() && split.remaining_sms() > 0;
            let part = make_green(device.context().cu_device(), split, groups, rest, &pool.priorities, lanes)?;
            let want = request.sms + if rest { split.remaining_sms() } else { 0 };
            if part.sms != want {
                return Err(PartitionError::Unsupported(format!(
                    "asked the driver for {want} SMs (groups {}..{}{}) and got a green context of {}",
                    groups.first,
                    groups.end(),
                    if rest { " and the rest" } else { "" },
                    part.sms
                ))
                .into());
            }
            pool.partitions.push(part);
        }
        Ok(())
    }

    /// The partition `id`.
    pub fn get(&self, id: PartitionId) -> Result<&Partition, PartitionError> {
        self.partitions.get(usize::from(id.0)).ok_or(PartitionError::Unknown {
            what: "partition",
            index: usize::from(id.0),
            len: self.partitions.len(),
        })
    }

    /// Every partition with its id, the whole device first.
    pub fn iter(&self) -> impl Iterator<Item = (PartitionId, &Partition)> {
        self.partitions.iter().enumerate().map(|(i, p)| (PartitionId(i as u16), p))
    }

    /// Number of partitions, the whole device included.
    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    /// Always false: every pool has the whole device.
    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Stream priority of each level.
    pub fn priorities(&self) -> &[i32] {
        &self.priorities
    }

    /// Waits for every stream of every partition.
    pub fn synchronize(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|source| super::Error::Driver { call: "cuCtxSetCurrent", source })?;
        for p in &self.partitions {
            for s in &p.streams {
                // SAFETY: a live stream of this pool.
                check("cuStreamSynchronize", unsafe { sys::cuStreamSynchronize(s.raw()) })?;
            }
        }
        Ok(())
    }
}

impl Drop for PartitionPool {
    fn drop(&mut self) {
        // Let queued work finish before streams and green contexts go; errors are moot here.
        let _ = self.synchronize();
    }
}

/// The SMs of each group of the device's split, then (when the split leaves any) of the SMs
/// outside its groups: for each, a green context of those SMs alone is made and `record` runs
/// on its stream, given how many SMs it holds, and returns the `%smid`s its blocks ran on.
/// Each set is checked: as many distinct SMs as the group holds, none in two groups.
pub(crate) fn group_sms(
    device: &Device,
    record: impl Fn(sys::CUstream, u32) -> Result<Vec<u32>>,
) -> Result<Vec<Vec<u32>>> {
    let split = device.split()?;
    let dev = device.context().cu_device();
    let mut sets: Vec<Vec<u32>> = Vec::new();
    let groups = split.group_count();
    let sets_to_measure = groups + u32::from(split.remaining_sms() > 0);
    for g in 0..sets_to_measure {
        let (range, rest) = if g < groups {
            (GroupRange { first: g, count: 1 }, false)
        } else {
            (GroupRange { first: 0, count: 0 }, true)
        };
        let part = make_green(dev, split, range, rest, &[device.info().stream_priorities.least], 1)?;
        let mut sms = record(part.stream(0)?, part.sms)?;
        sms.sort_unstable();
        sms.dedup();
        let clash = sms.iter().find(|sm| sets.iter().any(|s| s.contains(sm)));
        if sms.len() != part.sms as usize || clash.is_some() {
            return Err(PartitionError::Unsupported(format!(
                "SM set {g} of the split holds {} SMs; its blocks ran on {sms:?}{}",
                part.sms,
                clash.map_or(String::new(), |sm| format!(" (SM {sm} also in another set)"))
            ))
            .into());
        }
        sets.push(sms);
    }
    Ok(sets)
}

/// A green context on `groups` of the split (and its remaining SMs with `rest`).
fn make_green(
    dev: sys::CUdevice,
    split: &SmSplit,
    groups: GroupRange,
    rest: bool,
    priorities: &[i32],
    lanes: usize,
) -> Result<Partition> {
    let mut members = split.members(groups.first as usize..groups.end() as usize, rest);
    let mut desc = std::ptr::null_mut();
    // SAFETY: `members` holds SM resources that are all outputs of one split call (groups or
    // its remainder), as the driver requires.
    check("cuDevResourceGenerateDesc", unsafe {
        sys::cuDevResourceGenerateDesc(&mut desc, members.as_mut_ptr(), members.len() as u32)
    })?;
    let green = GreenContext::new(desc, dev)?;
    // SAFETY: plain data filled by the driver.
    let mut got: sys::CUdevResource = unsafe { std::mem::zeroed() };
    // SAFETY: `green` is live; `got` is a valid out-pointer.
    check("cuGreenCtxGetDevResource", unsafe {
        sys::cuGreenCtxGetDevResource(green.raw(), &mut got, sys::CUdevResourceType::CU_DEV_RESOURCE_TYPE_SM)
    })?;
    let mut part = Partition {
        streams: Vec::with_capacity(priorities.len() * lanes),
        counters: Vec::new(),
        green: None,
        sms: super::device::sm_count(&got),
        groups: Some(groups),
        levels: priorities.len(),
    };
    for &p in priorities.iter().cycle().take(lanes * priorities.len()) {
        part.streams.push(Stream::on_green(&green, p)?);
    }
    part.green = Some(green);
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_rounded_up_to_groups_and_refused_where_it_does_not_fit() {
        let h200 = PartitionSupport::Supported {
            granularity: 8,
            groups: 15,
            remaining_sms: 12,
            min_partition_sms: 8,
            coscheduled_alignment: 8,
        };
        let w = PoolSpec::window(&h200, 17, 2, None).unwrap();
        assert_eq!(w.partitions, vec![PartitionRequest { first_group: 2, sms: 24 }]);
        assert!(w.priorities.is_empty() && w.lanes == 1 && !w.rest);
        assert_eq!(PoolSpec::window(&h200, 8, 0, Some(-5)).unwrap().priorities, vec![-5]);
        let zero = PoolSpec::window(&h200, 0, 0, None).unwrap_err().to_string();
        assert!(zero.contains("0 SMs") && zero.contains("steps of 8"), "{zero}");
        let big = PoolSpec::window(&h200, 1320, 0, None).unwrap_err().to_string();
        assert!(big.contains("1320 SMs") && big.contains("15 groups"), "{big}");
        let past = PoolSpec::window(&h200, 64, 10, None).unwrap_err().to_string();
        assert!(past.contains("groups 10..18") && past.contains("groups 0..15"), "{past}");
        let none = PartitionSupport::Unsupported { reason: "no green contexts".into() };
        assert!(PoolSpec::window(&none, 8, 0, None).unwrap_err().to_string().contains("no green contexts"));
    }

    fn req(first_group: u32, sms: u32) -> PartitionRequest {
        PartitionRequest { first_group, sms }
    }

    #[test]
    fn ranges_in_steps_of_the_granularity() {
        // 132-SM Hopper: 15 groups of 8 (+12 remaining).
        assert_eq!(group_range(req(0, 8), 8, 15, 132), Ok(GroupRange { first: 0, count: 1 }));
        assert_eq!(group_range(req(2, 64), 8, 15, 132), Ok(GroupRange { first: 2, count: 8 }));
        assert_eq!(group_range(req(0, 120), 8, 15, 132), Ok(GroupRange { first: 0, count: 15 }));
    }

    #[test]
    fn bad_sizes_say_what_the_device_offers() {
        for sms in [0, 12, 128, 132] {
            let e = group_range(req(0, sms), 8, 15, 132).unwrap_err();
            assert!(matches!(e, PartitionError::Size { .. }), "{sms}: {e}");
            let msg = e.to_string();
            assert!(msg.contains("steps of 8 SMs") && msg.contains("up to 120 SMs"), "{msg}");
        }
        let e = group_range(req(10, 48), 8, 15, 132).unwrap_err();
        assert!(matches!(e, PartitionError::Range { end: 16, .. }), "{e}");
        assert!(group_range(req(u32::MAX, 8), 8, 15, 132).is_err());
    }

    #[test]
    fn disjoint_spec_lays_partitions_side_by_side() {
        let spec = PoolSpec::disjoint(&[16, 64, 8], 8);
        let ranges: Vec<_> = spec.partitions.iter().map(|&r| group_range(r, 8, 15, 132).unwrap()).collect();
        assert_eq!(ranges[0], GroupRange { first: 0, count: 2 });
        assert_eq!(ranges[1], GroupRange { first: 2, count: 8 });
        assert_eq!(ranges[2], GroupRange { first: 10, count: 1 });
        for i in 0..ranges.len() {
            for j in 0..i {
                assert!(!ranges[i].overlaps(&ranges[j]));
            }
        }
        assert!(GroupRange { first: 0, count: 2 }.overlaps(&GroupRange { first: 1, count: 1 }));
    }

    #[test]
    fn partition_ids() {
        assert_eq!(PartitionId::green(0), PartitionId(1));
        assert_eq!(PartitionId::WHOLE, PartitionId(0));
    }
}

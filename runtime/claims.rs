//! Claimable SMs: the tables the library's kernels read between work units, and the stream
//! operations that claim and release SM groups.
//!
//! Every launch of the library passes an [`RsTicket`] (kernels/abi.h): its blocks take work
//! units from a counter of its stream and, before each unit after the first, read the claim
//! level of their SM's group. A claim is a stream memory write (no SM needed) of the claimer's
//! level into the words of the groups it claims; a block of a launch of a lower level on one
//! of them leaves after the unit in hand, and the launch's blocks elsewhere take its remaining
//! units (the last block out takes what is left, so any claims give the same output). A release
//! writes zero. Which SMs a group holds is measured once, when the runtime is made: a kernel
//! recording `%smid` runs on a green context of each group alone.
//!
//! A launch issued while SMs it may run on are claimed would be finished by whichever of its
//! blocks is the last out, alone, if the claim covers them all. Such a launch of a scheduled
//! tenant is therefore followed by a *continuation* ([`Chain`]): the same kernel with the same
//! params and counter, on the whole device at the least priority, which takes what the
//! claimed blocks left (kernels/common.cuh, `RsTicket.chain`).

use std::sync::atomic::{AtomicU32, Ordering};

use cudarc::driver::{result, sys};

use super::device::Device;
use super::error::{DriverContext as _, Error, Result};
use super::memory::DeviceBuffer;
use super::partition::{group_sms, Partition};
use super::policy::PriorityClass;
use super::LoadedKernel;
use crate::kernels::abi::{RsTicket, SmidParams, RS_CHAIN_FOLLOWS, RS_MAX_GROUPS, RS_MAX_SMS, RS_NO_GROUP};

/// A launch's claim level: 0 for launches of no tenant, 1 for best-effort tenants, 2 for
/// latency-critical ones. A launch yields the SMs of groups claimed above its level.
pub fn claim_level(class: Option<PriorityClass>) -> u32 {
    match class {
        None => 0,
        Some(PriorityClass::BestEffort) => 1,
        Some(PriorityClass::LatencyCritical) => 2,
    }
}

/// How a runtime's launches take their work units after each block's first
/// (`RIGHTSIZE_UNITS=plain|counted|auto`, auto unless set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnitOrder {
    /// Block b takes units b, b + grid, …: what the kernels did before claims, and what they
    /// cost then. A claim does not vacate the SMs of such a launch before it ends.
    Plain,
    /// From the stream's counter, reading claims between units: a claimed SM is vacated
    /// within the unit in hand.
    Counted,
    /// Plain until the runtime knows a claimer ([`super::Runtime::expect_claims`]: a
    /// latency-critical tenant of a policy that claims, or a tenant's first claim), counted
    /// from then on, so that no launch pays for claims nobody makes.
    #[default]
    Auto,
}

impl UnitOrder {
    /// The order `RIGHTSIZE_UNITS` names, or why the value is not one.
    pub fn from_env() -> std::result::Result<UnitOrder, String> {
        match std::env::var("RIGHTSIZE_UNITS").as_deref() {
            Err(_) | Ok("auto") => Ok(UnitOrder::Auto),
            Ok("plain") => Ok(UnitOrder::Plain),
            Ok("counted") => Ok(UnitOrder::Counted),
            Ok(other) => Err(format!("RIGHTSIZE_UNITS={other}: expected plain, counted or auto")),
        }
    }
}

/// Whether counted launches of the Hopper GEMM run the build whose claimed blocks pause their
/// tiles between K steps (`RIGHTSIZE_PAUSE=on|off`, on unless set; kernels/abi.h,
/// RS_PAUSE_*): a claim then vacates an SM within a few K steps rather than a tile. Off, a
/// claimed block leaves after its tile, and the counted build runs (what each costs:
/// docs/claims-h200.md).
pub(super) fn pauses_from_env() -> std::result::Result<bool, String> {
    pauses_from(std::env::var("RIGHTSIZE_PAUSE").ok().as_deref())
}

/// [`pauses_from_env`] of the variable's value (`None`: unset).
fn pauses_from(value: Option<&str>) -> std::result::Result<bool, String> {
    match value {
        None | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => Err(format!("RIGHTSIZE_PAUSE={other}: expected on or off")),
    }
}

/// How one launch takes part in claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ticket {
    /// Its level ([`claim_level`]): it yields the SMs of groups claimed above it.
    pub level: u32,
    /// Where its blocks record when they start and leave and why (`RsTicket.trace`: three
    /// words per block of the launch's grid), or 0.
    pub trace: u64,
    /// Whether a continuation follows it, or it is one.
    pub chain: Chain,
}

/// How a launch stands to a continuation (`RsTicket.chain`, kernels/common.cuh).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Chain {
    /// A launch alone: the last of its blocks out does what blocks that left for a claim left.
    #[default]
    Alone,
    /// A continuation will follow it, where its blocks take their units from a counter (the
    /// runtime's issue step decides and says so): its blocks take every unit from the counter,
    /// reading the claim before each take, so one that starts on a claimed SM does nothing
    /// there; they leave a claimed SM whatever they leave undone, and the last one out leaves
    /// the counter to the continuation.
    Followed,
    /// The continuation of a launch of `grid` blocks whose counter is `counter`: its blocks
    /// take the tickets that launch left, laid out by its grid.
    Continues {
        /// The first launch's counter.
        counter: u64,
        /// The first launch's grid.
        grid: u32,
    },
}

impl Chain {
    /// The chain a launch asking for `self` goes out with. A continuation follows only a
    /// launch whose blocks take units from a counter (`counter`, a counted build) and read
    /// claims (the runtime has claim tables), and only one of more units than blocks: a launch
    /// of one round is not worth a second launch (its blocks on claimed SMs do their one unit,
    /// a few µs for the library's one-round kernels). Otherwise it goes alone.
    pub(crate) fn granted(self, counter: u64, counted_build: bool, units: u64, blocks: u32, claims: bool) -> Chain {
        match self {
            Chain::Followed if counter != 0 && counted_build && units > u64::from(blocks) && claims => self,
            Chain::Followed | Chain::Alone => Chain::Alone,
            Chain::Continues { .. } => self,
        }
    }

    /// `RsTicket.chain`.
    fn word(self) -> u32 {
        match self {
            Chain::Alone => 0,
            Chain::Followed => RS_CHAIN_FOLLOWS,
            Chain::Continues { grid, .. } => grid,
        }
    }
}

/// How one launch takes its work units: the issue step's choice ([`unit_order`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// The plain build at the grid asked for: block b takes b, b + grid, ….
    Plain,
    /// The plain build, a block a unit (as many blocks as units).
    BlockPerUnit,
    /// The counted build: units from the stream's counter, claims read between them.
    Counted,
}

/// The order of a launch of `units` whose plain build the grid asked for (`auto`: the
/// resident grid, [`super::Grid::Auto`]) gives `plain_blocks` blocks (a traced launch: its
/// counted build, which it runs), asking for `chain`, on a
/// runtime whose launches count their units now (`counts`, [`super::Runtime::counts_units`]),
/// of a kernel whose units stand alone or not (`alone`,
/// [`crate::kernels::KernelId::units_stand_alone`]; false for a traced launch).
///
/// A continuation is counted (it takes from its first launch's counter), and nothing else is
/// while no claimer is known. A launch of one round (a unit for every block) is plain: no
/// block has a second unit to leave. So is a launch of the resident grid of at most two rounds
/// of a kernel whose units stand alone, not asked to be followed (`Chain::Alone`: a scheduled
/// tenant's launch where no claim above it is up, or a launch that is never followed), with a
/// block for each unit: once the first round's blocks have ended the second round has been
/// handed out, so with units of about one length a claimed SM is held for about two units'
/// time, no longer than by a counted block, which may still do the units in hand and those it
/// took ahead (one each, or a group each for kernels that take them in groups:
/// kernels/common.cuh, `rs::Units`); and the launch takes no counter and no block barrier
/// (docs/claims-h200.md). A kernel whose blocks copy the next unit's operands during
/// one (the GEMMs) loses that overlap a block a unit, so it stays counted; so does a launch to
/// be followed (`Chain::Followed`, placed where a claim is up), whose blocks then leave a
/// claimed SM without starting a unit there.
pub(crate) fn unit_order(
    units: u64,
    plain_blocks: Option<u32>,
    auto: bool,
    alone: bool,
    chain: Chain,
    counts: bool,
) -> Order {
    if matches!(chain, Chain::Continues { .. }) {
        return Order::Counted;
    }
    if !counts {
        return Order::Plain;
    }
    match plain_blocks.map(u64::from) {
        Some(b) if units <= b => Order::Plain,
        Some(b) if auto && alone && chain == Chain::Alone && units <= 2 * b && units <= i32::MAX as u64 => {
            Order::BlockPerUnit
        }
        _ => Order::Counted,
    }
}

/// The kernel argument of a launch `t` whose counter is `counter`, for a runtime without claim
/// tables: no claim is read, units are taken from the counter where there is one.
pub(crate) fn ticket_without_claims(counter: u64, t: Ticket) -> RsTicket {
    RsTicket { counter, trace: t.trace, chain: t.chain.word(), ..RsTicket::default() }
}

/// The claim tables of one device: a level per SM set (the split's groups, then the SMs
/// outside them) and the set of every SM.
#[derive(Debug)]
pub struct Claims {
    levels: DeviceBuffer<u32>,
    group_of: DeviceBuffer<u8>,
    sets: Vec<Vec<u32>>,
    /// Sets that are groups of the split (the first ones); a further one is the rest.
    groups: usize,
    /// The level last written into each set's word, as issued on the host (the device's word
    /// takes it when the claimer's stream gets there).
    issued: Vec<AtomicU32>,
}

impl Claims {
    /// Measures which SMs each group of `device`'s split holds (with `smid`, the library's
    /// `smid_record`) and makes the tables, with no claims.
    pub(crate) fn measure(device: &Device, smid: &LoadedKernel) -> Result<Claims> {
        let sets = group_sms(device, |stream, sms| {
            let blocks = sms * smid.blocks_per_sm;
            let units = 4 * blocks;
            let out = DeviceBuffer::<u32>::filled(device, units as usize, 0xFF)?;
            // ~25 µs of spinning per unit, so every resident block is busy while the others start.
            let params = SmidParams { sm: out.ptr(), spin_cycles: 50_000, units, _pad: 0 };
            // SAFETY: `out` holds `units` words; a zero ticket assigns units by block index.
            unsafe {
                super::launch::launch_raw(smid, blocks, smid.dynamic_smem_bytes, stream, &params, &RsTicket::default())?
            };
            // SAFETY: a live stream of a green context of this device.
            unsafe { result::stream::synchronize(stream) }.call("cuStreamSynchronize")?;
            out.to_host()
        })?;
        if sets.len() > RS_MAX_GROUPS as usize || sets.iter().flatten().any(|&sm| sm >= RS_MAX_SMS) {
            return Err(Error::Launch {
                kernel: "smid_record",
                reason: format!("{} SM sets (SMs {sets:?}) do not fit the claim tables", sets.len()),
            });
        }
        let mut group_of = vec![RS_NO_GROUP as u8; RS_MAX_SMS as usize];
        for (g, set) in sets.iter().enumerate() {
            for &sm in set {
                group_of[sm as usize] = g as u8;
            }
        }
        Ok(Claims {
            // A word for every group index a kernel may read, RS_NO_GROUP's never written.
            levels: DeviceBuffer::filled(device, RS_NO_GROUP as usize + 1, 0)?,
            group_of: DeviceBuffer::from_host(device, &group_of)?,
            issued: sets.iter().map(|_| AtomicU32::new(0)).collect(),
            sets,
            groups: device.split()?.group_count() as usize,
        })
    }

    /// The device address of set `set`'s claim word (a watcher may poll it).
    pub fn word(&self, set: usize) -> u64 {
        self.levels.ptr() + 4 * set as u64
    }

    /// Each set's claim level now (0: unclaimed), read from the device.
    pub fn levels(&self) -> Result<Vec<u32>> {
        let mut levels = self.levels.to_host()?;
        levels.truncate(self.sets.len());
        Ok(levels)
    }

    /// The SMs of each set: the split's groups in order, then those outside them.
    pub fn sets(&self) -> &[Vec<u32>] {
        &self.sets
    }

    /// The kernel argument of a launch `t` whose stream's counter is `counter`.
    pub fn ticket(&self, counter: u64, t: Ticket) -> RsTicket {
        RsTicket {
            counter,
            claims: self.levels.ptr(),
            group_of: self.group_of.ptr(),
            trace: t.trace,
            level: t.level,
            chain: t.chain.word(),
        }
    }

    /// Whether a claim above `level` is up, as issued on the host, on a set `part` may run on
    /// (any set for the whole device).
    pub fn claimed_above(&self, part: &Partition, level: u32) -> bool {
        let above = |s: usize| self.issued.get(s).is_some_and(|l| l.load(Ordering::Relaxed) > level);
        match part.groups() {
            None => (0..self.issued.len()).any(above),
            Some(_) => self.set_indices(part).any(above),
        }
    }

    /// The sets `part` holds: its groups, and the SMs outside the groups when it has them
    /// too; none for the whole device (it is not claimed).
    pub fn sets_of(&self, part: &Partition) -> Vec<usize> {
        self.set_indices(part).collect()
    }

    /// [`Claims::sets_of`] without allocating (the launch path reads it).
    fn set_indices(&self, part: &Partition) -> impl Iterator<Item = usize> + '_ {
        let g = part.groups().unwrap_or(super::GroupRange { first: 0, count: 0 });
        let groups = (g.first as usize..g.end() as usize).filter(|&i| i < self.groups);
        let in_groups: usize = groups.clone().map(|i| self.sets[i].len()).sum();
        let rest = part.groups().is_some() && self.sets.len() > self.groups && part.sms() as usize > in_groups;
        groups.chain(rest.then_some(self.groups))
    }

    /// Writes `level` into the claim word of each set `part` holds ([`Claims::sets_of`]) on
    /// `stream`, in stream order: a claim (the claimer's level) or a release (0). Batches of
    /// stream memory writes built on the stack (a claim moves with a latency-critical
    /// tenant's kernels, on the launch path); they need no SM and may be captured into a plan.
    ///
    /// # Safety
    /// `stream` is a live stream of this device and the device's primary context is current.
    pub(crate) unsafe fn write(&self, stream: sys::CUstream, part: &Partition, level: u32) -> Result<()> {
        const BATCH: usize = 32;
        let mut sets = self.set_indices(part).peekable();
        while sets.peek().is_some() {
            // SAFETY: plain data, all zeros a valid value.
            let mut ops: [sys::CUstreamBatchMemOpParams; BATCH] = unsafe { std::mem::zeroed() };
            let mut written = [0usize; BATCH];
            let mut n = 0;
            for s in sets.by_ref().take(BATCH) {
                // The union member that `operation` names.
                ops[n].writeValue.operation = sys::CUstreamBatchMemOpType::CU_STREAM_MEM_OP_WRITE_VALUE_32;
                ops[n].writeValue.address = self.word(s);
                ops[n].writeValue.__bindgen_anon_1.value = level;
                written[n] = s;
                n += 1;
            }
            // SAFETY: the caller's contract; every address is a word of `levels`.
            unsafe { super::driver::stream::batch_mem_op(stream, &mut ops[..n]) }.call("cuStreamBatchMemOp")?;
            for &s in &written[..n] {
                if let Some(l) = self.issued.get(s) {
                    l.store(level, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rightsize_pause_is_on_unless_set_off_and_names_a_bad_value() {
        assert_eq!(pauses_from(None), Ok(true));
        assert_eq!(pauses_from(Some("on")), Ok(true));
        assert_eq!(pauses_from(Some("off")), Ok(false));
        let err = pauses_from(Some("1")).unwrap_err();
        assert!(err.contains("RIGHTSIZE_PAUSE=1") && err.contains("on or off"), "{err}");
    }

    #[test]
    fn a_continuation_follows_only_a_launch_that_takes_units_from_a_counter_and_reads_claims() {
        let f = Chain::Followed;
        assert_eq!(f.granted(0x100, true, 1000, 132, true), f);
        assert_eq!(f.granted(0, true, 1000, 132, true), Chain::Alone, "no counter: the plain order");
        assert_eq!(f.granted(0x100, false, 1000, 132, true), Chain::Alone, "no counted build");
        assert_eq!(f.granted(0x100, true, 132, 132, true), Chain::Alone, "one unit a block: no counter taken");
        assert_eq!(f.granted(0x100, true, 1000, 132, false), Chain::Alone, "no claim tables: no claim read");
        assert_eq!(Chain::Alone.granted(0x100, true, 1000, 132, true), Chain::Alone);
        let c = Chain::Continues { counter: 0x100, grid: 132 };
        assert_eq!(c.granted(0x100, true, 1000, 66, true), c);
        assert_eq!((Chain::Alone.word(), Chain::Followed.word(), c.word()), (0, RS_CHAIN_FOLLOWS, 132));
    }

    #[test]
    fn a_launch_of_at_most_two_rounds_with_no_claim_up_goes_a_block_a_unit() {
        let (a, f) = (Chain::Alone, Chain::Followed);
        let c = Chain::Continues { counter: 0x100, grid: 264 };
        // No claimer known: the plain order at any size; a continuation always counts.
        assert_eq!(unit_order(1000, Some(264), true, true, a, false), Order::Plain);
        assert_eq!(unit_order(1000, Some(264), true, true, c, false), Order::Counted);
        assert_eq!(unit_order(100, Some(264), true, true, c, true), Order::Counted);
        // One round: plain, claim up or not.
        assert_eq!(unit_order(264, Some(264), true, true, a, true), Order::Plain);
        assert_eq!(unit_order(200, Some(264), true, true, f, true), Order::Plain);
        // Two rounds: a block a unit while no claim is up; counted where one is, past two
        // rounds, or on a grid asked for.
        assert_eq!(unit_order(265, Some(264), true, true, a, true), Order::BlockPerUnit);
        assert_eq!(unit_order(528, Some(264), true, true, a, true), Order::BlockPerUnit);
        assert_eq!(unit_order(512, Some(264), true, true, f, true), Order::Counted);
        assert_eq!(unit_order(529, Some(264), true, true, a, true), Order::Counted);
        assert_eq!(unit_order(512, Some(264), false, true, a, true), Order::Counted);
        assert_eq!(unit_order(512, None, true, true, a, true), Order::Counted);
        // A kernel whose blocks carry operands from one unit into the next stays counted.
        assert_eq!(unit_order(512, Some(264), true, false, a, true), Order::Counted);
        assert_eq!(unit_order(200, Some(264), true, false, a, true), Order::Plain);
        // No more blocks than a launch may have.
        let big = i32::MAX as u64 + 1;
        assert_eq!(unit_order(big, Some(i32::MAX as u32), true, true, a, true), Order::Counted);
    }
}

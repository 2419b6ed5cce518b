//! The runtime: an open device with its partitions, loaded kernels, optional scheduler,
//! trace sink and timeline, and the two steps every kernel launch ends with
//! ([`Runtime::units`], [`Runtime::issue`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use cudarc::driver::sys;
use parking_lot::Mutex;

use super::claims::Order;
use super::launch::{self, Grid, KernelTable, Placement};
use super::policy;
use super::{
    BlasGemm, BlasLt, BlasShape, Chain, Claims, Device, Error, LaunchRecord, MinSms, Partition, PartitionError,
    PartitionId, PartitionPool, PoolSpec, Result, Scheduler, Ticket, Timeline, TraceSink, UnitOrder,
};
use crate::kernels::abi::{GemmParams, RS_ACT_NONE};
use crate::kernels::{Kernel, KernelId, Params};

/// cuBLASLt, loaded on first use, with its plans by shape and SM-count target.
#[derive(Debug)]
struct Blas {
    lt: BlasLt,
    plans: Mutex<HashMap<(BlasShape, Option<u32>), BlasGemm>>,
}

/// An open device with its partitions and loaded kernels.
#[derive(Debug)]
pub struct Runtime {
    // Field order is drop order: scheduler events, cuBLASLt, kernels and partitions before the
    // device's context.
    scheduler: Option<Scheduler>,
    timeline: OnceLock<Timeline>,
    trace: OnceLock<Box<dyn TraceSink>>,
    epoch: std::time::Instant,
    blas: OnceLock<std::result::Result<Blas, String>>,
    claims: std::result::Result<Claims, String>,
    units: UnitOrder,
    /// Whether counted launches of the Hopper GEMM run its build whose tiles pause
    /// (`RIGHTSIZE_PAUSE`, [`Runtime::with_pauses`]).
    pauses: bool,
    /// A claimer is known ([`Runtime::expect_claims`]): launches of [`UnitOrder::Auto`] count.
    claimers: AtomicBool,
    /// Continuations issued ([`Chain`]).
    continuations: AtomicU64,
    kernels: KernelTable,
    pool: PartitionPool,
    /// The latency-critical tenants' words for protected requests, where the policy hushes
    /// ([`super::Hush`]): freed after the partitions' streams, whose waits read them.
    hush: Option<super::Hush>,
    device: Device,
}

impl Runtime {
    /// Loads the kernels on `device` and makes the partitions of `spec`.
    pub fn new(device: Device, spec: &PoolSpec) -> Result<Runtime> {
        let pool = PartitionPool::new(&device, spec)?;
        let kernels = KernelTable::load(&device)?;
        // Claims need partitions to claim with; where the SM sets cannot be measured, claims
        // are refused with the reason and launches run without them.
        let units = UnitOrder::from_env().map_err(Error::Setting)?;
        let pauses = super::claims::pauses_from_env().map_err(Error::Setting)?;
        let claims = if spec.partitions.is_empty() {
            Err("the runtime was made without partitions".to_string())
        } else {
            Claims::measure(&device, kernels.get(KernelId::SmidRecord)).map_err(|e| e.to_string())
        };
        Ok(Runtime {
            claims,
            hush: None,
            units,
            pauses,
            claimers: AtomicBool::new(false),
            continuations: AtomicU64::new(0),
            scheduler: None,
            timeline: OnceLock::new(),
            trace: OnceLock::new(),
            epoch: std::time::Instant::now(),
            blas: OnceLock::new(),
            kernels,
            pool,
            device,
        })
    }

    /// A runtime whose scheduled tenants (up to `tenants` of them) are placed kernel by kernel
    /// by `policy`: makes a partition for every window of SM groups (those reaching the last
    /// group with the split's remaining SMs too), each with a stream per tenant at every
    /// priority level of [`policy::priority_level`].
    pub fn with_policy(
        device: Device,
        policy: Box<dyn policy::Policy>,
        min_sms: MinSms,
        tenants: u32,
    ) -> Result<Runtime> {
        let topo = device.info().partitions.topology().map_err(|reason| PartitionError::Unsupported(reason.into()))?;
        let policy::Topology { granularity, groups, .. } = topo;
        let range = device.info().stream_priorities;
        // The priority levels of policy::priority_level: borrowed, owned, latency-critical.
        let middle = range.least + (range.greatest - range.least) / 2;
        // Windows reaching the last group take the split's remaining SMs: a layout of
        // windows side by side then covers the whole device.
        let spec = PoolSpec {
            lanes: tenants.max(1),
            rest: true,
            ..PoolSpec::all_windows(groups, granularity, vec![range.least, middle, range.greatest])
        };
        let mut rt = Runtime::new(device, &spec)?;
        if policy.hush_every() > 0 {
            rt.hush = Some(super::Hush::new(&rt.device, policy.hush_every())?);
        }
        let windows = rt.pool.iter().filter_map(|(id, p)| p.groups().map(|g| (g, id))).collect();
        rt.device.bind()?;
        rt.scheduler = Some(Scheduler::new(policy, topo, min_sms, windows, tenants.max(1))?);
        Ok(rt)
    }

    /// Sends every later launch's record to `sink`. Set once; a second call is refused.
    pub fn set_trace(&self, sink: Box<dyn TraceSink>) -> Result<()> {
        self.trace.set(sink).map_err(|_| Error::Launch { kernel: "-", reason: "a trace sink is already set".into() })
    }

    /// Starts timing every later launch of its tenants on the GPU, keeping at most `limit`
    /// slices (see [`Timeline`]). Started once; a second call returns the first timeline.
    pub fn start_timeline(&self, limit: usize) -> Result<&Timeline> {
        if let Some(t) = self.timeline.get() {
            return Ok(t);
        }
        self.device.bind()?;
        let t = Timeline::new(limit)?;
        Ok(self.timeline.get_or_init(|| t))
    }

    /// The timeline, once started.
    pub fn timeline(&self) -> Option<&Timeline> {
        self.timeline.get()
    }

    /// Reports a launch to the trace sink, if one is set.
    pub(crate) fn traced(&self, make: impl FnOnce(u64) -> LaunchRecord) {
        if let Some(sink) = self.trace.get() {
            sink.launch(&make(self.epoch.elapsed().as_nanos() as u64));
        }
    }

    /// Tells the trace sink, if one is set, that `tenant` is about to issue `name`.
    pub(crate) fn issuing(
        &self,
        tenant: super::policy::TenantId,
        name: impl FnOnce() -> std::borrow::Cow<'static, str>,
    ) {
        if let Some(sink) = self.trace.get() {
            sink.issuing(tenant, name());
        }
    }

    /// The scheduler, when the runtime was made with a policy.
    pub fn scheduler(&self) -> Option<&Scheduler> {
        self.scheduler.as_ref()
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The partitions.
    pub fn pool(&self) -> &PartitionPool {
        &self.pool
    }

    /// The loaded kernels.
    pub fn kernels(&self) -> &KernelTable {
        &self.kernels
    }

    /// Launches `kernel` with `params` as `placement` says and returns the grid it used.
    /// The params are checked against the kernel's constraints first; a launch with no work
    /// units launches nothing (and returns 0).
    ///
    /// # Safety
    /// Every device address in `params` points to live memory of the sizes the kernel's
    /// header (`kernels/*.cu`) documents for these params, and nothing else writes the
    /// kernel's outputs until the launch completes.
    pub unsafe fn launch<P: Params>(&self, kernel: Kernel<P>, params: &P, placement: Placement) -> Result<u32> {
        // SAFETY: forwarded contract.
        unsafe { self.launch_at(kernel, params, placement, Ticket::default()) }
    }

    /// [`Runtime::launch`] with `ticket`'s claim level and trace: the launch's blocks leave
    /// SMs of groups claimed above its level.
    ///
    /// # Safety
    /// As [`Runtime::launch`].
    pub unsafe fn launch_at<P: Params>(
        &self,
        kernel: Kernel<P>,
        params: &P,
        placement: Placement,
        ticket: Ticket,
    ) -> Result<u32> {
        // A placement the pool lacks is an error even with nothing to launch.
        let part = self.pool.get(placement.partition)?;
        let stream = part.stream(placement.priority_level)?;
        let Some(units) = Self::units(kernel, params)? else {
            return Ok(0);
        };
        self.device.bind()?;
        // SAFETY: forwarded contract; the context is current.
        unsafe {
            self.issue(kernel, params, units, part, stream, placement.grid, Ticket { chain: Chain::Alone, ..ticket })
        }
        .map(|(grid, _)| grid)
    }

    /// Whether a claim above `level` is up (as issued) on SMs `part` may run on: a launch of
    /// that level there is followed by a continuation ([`Chain`]).
    pub(crate) fn claimed_above(&self, part: &Partition, level: u32) -> bool {
        self.claims.as_ref().is_ok_and(|c| c.claimed_above(part, level))
    }

    /// How many continuations its tenants have issued ([`Chain`]).
    pub fn continuations(&self) -> u64 {
        self.continuations.load(Ordering::Relaxed)
    }

    pub(crate) fn count_continuation(&self) {
        self.continuations.fetch_add(1, Ordering::Relaxed);
    }

    /// The same runtime with its launches' units taken in `order` (instead of
    /// `RIGHTSIZE_UNITS`'s): for comparisons, such as what taking units from a counter and
    /// reading claims costs ([`UnitOrder::Plain`] against [`UnitOrder::Counted`]).
    pub fn with_units(mut self, order: UnitOrder) -> Runtime {
        self.units = order;
        self
    }

    /// The same runtime with its counted launches of the Hopper GEMM pausing tiles where claimed
    /// or not (instead of `RIGHTSIZE_PAUSE`'s): a claim vacates an SM within a few K steps, at a
    /// cost in the GEMM's speed (docs/claims-h200.md).
    pub fn with_pauses(mut self, on: bool) -> Runtime {
        self.pauses = on;
        self
    }

    /// Tells the runtime that claims will be made: from now on its launches of
    /// [`UnitOrder::Auto`] take their units from counters, so a claim vacates their SMs within
    /// a unit. Tenants that claim call it when they are made or first claim; call it before
    /// capturing plans that should yield to claims of tenants made later.
    pub fn expect_claims(&self) {
        self.claimers.store(true, Ordering::Relaxed);
    }

    /// Whether launches now take their units from counters (those of more units than their
    /// plain grid has blocks: [`Runtime::issue`]).
    pub fn counts_units(&self) -> bool {
        match self.units {
            UnitOrder::Plain => false,
            UnitOrder::Counted => true,
            UnitOrder::Auto => self.claimers.load(Ordering::Relaxed),
        }
    }

    /// The latency-critical tenants' words for protected requests, where its policy hushes
    /// best-effort kernels ([`super::Hush`]).
    pub fn hush(&self) -> Option<&super::Hush> {
        self.hush.as_ref()
    }

    /// The claim tables, or why this runtime has none.
    pub fn claims(&self) -> std::result::Result<&Claims, &str> {
        self.claims.as_ref().map_err(String::as_str)
    }

    /// Claims the SMs of `placement`'s partition at `level` ([`super::claim_level`]) on its
    /// stream, in stream order: the library's kernels of lower levels running there leave
    /// them after the work unit in hand, until [`Runtime::release`] on the same stream.
    /// The whole device is not claimed (nothing happens).
    pub fn claim(&self, placement: Placement, level: u32) -> Result<()> {
        self.write_claims(placement, level)
    }

    /// Releases what [`Runtime::claim`] claimed, in stream order.
    pub fn release(&self, placement: Placement) -> Result<()> {
        self.write_claims(placement, 0)
    }

    pub(crate) fn write_claims(&self, placement: Placement, level: u32) -> Result<()> {
        let stream = self.pool.get(placement.partition)?.stream(placement.priority_level)?;
        self.device.bind()?;
        // SAFETY: a stream of this runtime's pool; the context is current.
        unsafe { self.write_claims_on(stream, placement.partition, level) }
    }

    /// Writes `level` into the claim words of `partition`'s SMs on `stream`, in stream order:
    /// a claim, or a release (0). Nothing for the whole device.
    ///
    /// # Safety
    /// `stream` is a stream of this runtime's pool and the device's primary context is current.
    pub(crate) unsafe fn write_claims_on(
        &self,
        stream: sys::CUstream,
        partition: PartitionId,
        level: u32,
    ) -> Result<()> {
        let claims = self.claims().map_err(|reason| PartitionError::Unsupported(format!("no claims: {reason}")))?;
        self.expect_claims();
        // SAFETY: the caller's contract.
        unsafe { claims.write(stream, self.pool.get(partition)?, level) }
    }

    /// The first step of every launch: checks `params` against the kernel's constraints and
    /// counts its work units (`None`: nothing to launch).
    pub(crate) fn units<P: Params>(kernel: Kernel<P>, params: &P) -> Result<Option<u64>> {
        params.check(kernel.id())?;
        Ok(Some(params.units(kernel.id())).filter(|&u| u > 0))
    }

    /// The last step of every launch, whoever placed it ([`Runtime::launch`] or a tenant): sizes
    /// the grid for `units` on `part`'s SMs and issues the kernel on `stream`, one of `part`'s.
    /// Returns the grid and, where `ticket` asks for a continuation ([`Chain::Followed`]) and
    /// the launch takes its units from a counter, that counter: the caller then issues the
    /// continuation ([`Chain::Continues`]) after it. A continuation takes its units from the
    /// counter it names.
    ///
    /// # Safety
    /// As [`Runtime::launch`]; `params` passed [`Runtime::units`]; the caller has bound the
    /// device's primary context to this thread ([`Device::bind`], once per launch).
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn issue<P: Params>(
        &self,
        kernel: Kernel<P>,
        params: &P,
        units: u64,
        part: &Partition,
        stream: sys::CUstream,
        grid: Grid,
        ticket: Ticket,
    ) -> Result<(u32, Option<u64>)> {
        let id = kernel.id();
        let continued = match ticket.chain {
            // (With a trace its blocks would write over the first launch's, in a buffer sized
            // for that grid.)
            Chain::Continues { counter, .. } if counter != 0 && self.kernels.has_counted(id) && ticket.trace == 0 => {
                Some(counter)
            }
            Chain::Continues { .. } => {
                return Err(Error::Launch {
                    kernel: id.name(),
                    reason: "a continuation needs a counted kernel's counter, and no trace".into(),
                })
            }
            _ => None,
        };
        // Counted (a counter, claims, a trace) or the plain unit order and its code
        // (`claims::unit_order`). A launch of one round runs the plain code, which costs small
        // kernels less (docs/claims-h200.md), and so does one of two rounds a block a unit
        // where the kernel's units stand alone and it is not to be followed; no continuation
        // follows either (`Chain::granted`), so their blocks do their unit where they land. A
        // traced launch runs the counted build, and takes its units from the counter whenever
        // it has more than that build's blocks, so that its trace says which blocks left for a
        // claim.
        let plain = self.kernels.get(id);
        let plain_blocks = grid.blocks(units, part.sms(), plain.blocks_per_sm);
        let traced = ticket.trace != 0;
        let rounds_of =
            if traced { grid.blocks(units, part.sms(), self.kernels.counted(id).blocks_per_sm) } else { plain_blocks };
        let alone = id.units_stand_alone() && !traced;
        let auto = grid == Grid::Auto;
        let order = super::claims::unit_order(units, rounds_of, auto, alone, ticket.chain, self.counts_units());
        let counts = order == Order::Counted;
        let counted = counts || traced;
        // Where pauses are on and the kernel has a build whose tiles pause, a launch that takes
        // its units from the counter runs it (a traced launch of the plain order has none to pause).
        let paused = if counts && self.pauses && self.claims.is_ok() { self.kernels.paused(id) } else { None };
        // The build whose warps take whole units (the same bits) where each block has many: in
        // the plain order, and in the counted one for a kernel that orders its units itself.
        let by_warps = self.kernels.by_warps(id).filter(|_| launch::goes_by_warps(units, plain_blocks));
        let (loaded, blocks) = if counted {
            let own_order = by_warps.filter(|_| !self.kernels.has_counted(id));
            let loaded = paused.or(own_order).unwrap_or_else(|| self.kernels.counted(id));
            (loaded, grid.blocks(units, part.sms(), loaded.blocks_per_sm))
        } else if order == Order::BlockPerUnit {
            // At most 2^31 - 1 units (`unit_order`).
            (plain, Some(units as u32))
        } else {
            // The dense build (the same bits, more blocks an SM) where its grid takes the units
            // in fewer rounds: on partitions too small for them all at the plain build's
            // occupancy; the build by warps where each block has many units.
            let rounds = |blocks| launch::rounds(units, blocks);
            match (by_warps, self.kernels.dense(id)) {
                (Some(by_warps), _) => (by_warps, plain_blocks),
                (None, Some(dense)) => {
                    let dense_blocks = grid.blocks(units, part.sms(), dense.blocks_per_sm);
                    if matches!((rounds(dense_blocks), rounds(plain_blocks)), (Some(d), Some(p)) if d < p) {
                        (dense, dense_blocks)
                    } else {
                        (plain, plain_blocks)
                    }
                }
                (None, None) => (plain, plain_blocks),
            }
        };
        let Some(blocks) = blocks else {
            return Err(Error::Launch { kernel: id.name(), reason: format!("{grid:?}: not 1 to 2^31 - 1 blocks") });
        };
        let counter = continued.unwrap_or(if counts { part.counter_of(stream) } else { 0 });
        // A continuation follows a launch whose blocks take units from a counter and read
        // claims: a counted kernel with more units than blocks, on a runtime with claim tables.
        let chain = ticket.chain.granted(counter, self.kernels.has_counted(id), units, blocks, self.claims.is_ok());
        let follows = chain == Chain::Followed;
        let ticket = Ticket { chain, ..ticket };
        let ticket = match &self.claims {
            Ok(claims) if counted => claims.ticket(counter, ticket),
            _ => super::claims::ticket_without_claims(counter, ticket),
        };
        // The plain build's blocks take the shared memory they need where it is less than the
        // kernel's own (`Params::dynamic_smem`); the other builds take their own.
        let smem = if std::ptr::eq(loaded, plain) && launch::sized_smem() {
            params.dynamic_smem(id, blocks).unwrap_or(loaded.dynamic_smem_bytes)
        } else {
            loaded.dynamic_smem_bytes
        };
        // SAFETY: `Kernel<P>` ties P to the kernel (both variants take it); the caller vouches
        // for the addresses and made the primary context current; the stream belongs to this
        // device, and the counter is this stream's, whose launches run one after another (or
        // the continued launch's, which ran before this one and whose stream waits for it);
        // `smem` is the build's own or, for the plain build, what its params say it reads.
        unsafe { launch::launch_raw(loaded, blocks, smem, stream, params, &ticket)? };
        Ok((blocks, follows.then_some(counter)))
    }

    /// Loads cuBLASLt and allocates its workspace if that has not been done yet. The first
    /// [`super::work::Blas`] does it too, but a capture (a plan) cannot allocate memory, so
    /// call this before capturing launches that go through cuBLASLt.
    pub fn prepare_blas(&self) -> Result<()> {
        self.blas().map(|_| ()).map_err(|e| Error::Launch { kernel: "cublasLtMatmul", reason: e.into() })
    }

    fn blas(&self) -> std::result::Result<&Blas, &str> {
        self.blas
            .get_or_init(|| {
                let lt = BlasLt::new(&self.device).map_err(|e| e.to_string())?;
                Ok(Blas { lt, plans: Mutex::new(HashMap::new()) })
            })
            .as_ref()
            .map_err(String::as_str)
    }

    /// Runs a GEMM through cuBLASLt instead of the library's kernels, on `stream` (one of
    /// `part`'s) and planned for `part`'s SMs (`SM_COUNT_TARGET`): the issue step of a
    /// [`super::work::Blas`]. Bias and residual are supported, activations are not (apply
    /// them with a separate kernel). Plans are cached per shape; the cache's lock is held
    /// across the cuBLASLt call.
    ///
    /// # Safety
    /// As [`Runtime::launch`] for the addresses in `p`.
    pub(crate) unsafe fn blas_gemm(&self, p: &GemmParams, part: &Partition, stream: sys::CUstream) -> Result<()> {
        p.check(KernelId::GemmLarge)?;
        let refuse = |reason: &str| Error::Launch { kernel: "cublasLtMatmul", reason: reason.into() };
        if p.batch != 1 || p.act != RS_ACT_NONE {
            return Err(refuse("the cuBLASLt backend takes one GEMM without activation"));
        }
        let sms = (!part.is_whole_device()).then(|| part.sms());
        let shape = BlasShape {
            m: p.m,
            n: p.n,
            k: p.k,
            lda: p.lda,
            ldb: p.ldb,
            ldd: p.ldc,
            ldr: (p.residual != 0).then_some(p.ldr),
            bias: p.bias != 0,
        };
        let blas = self.blas().map_err(refuse)?;
        let mut plans = blas.plans.lock();
        let plan = match plans.entry((shape, sms)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(blas.lt.plan(shape, sms)?),
        };
        self.device.bind()?;
        // SAFETY: the caller vouches for the addresses; the plan is used under the lock.
        unsafe { blas.lt.run(plan, p.a, p.b, p.bias, p.residual, p.c, stream) }
    }

    /// Waits for all work on every partition.
    pub fn synchronize(&self) -> Result<()> {
        self.pool.synchronize()
    }
}

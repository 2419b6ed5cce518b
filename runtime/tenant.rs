//! Tenants: one handle per model instance, used from one thread at a time. Every launch a
//! model makes goes through its tenant, which either uses a fixed placement (the whole device
//! or a static partition) or asks the runtime's scheduler per kernel. A tenant is an in-order
//! logical stream: when two consecutive kernels land on different partitions' streams, the
//! second waits for the first through an event.

use std::cell::Cell;
use std::sync::Arc;

use cudarc::driver::sys;

use super::error::{check, Error, Result};
use super::policy::{priority_level, Blocks, Demand, Duty, PriorityClass, Region, TenantId};
use super::{Grid, GroupRange, PartitionError, Placement, Plan, Runtime};
use crate::kernels::{Kernel, Params};

#[derive(Debug, Clone, Copy)]
enum Mode {
    Fixed(Placement),
    Scheduled,
}

/// Where the placement step put one launch.
struct Placed<'a> {
    partition: super::PartitionId,
    part: &'a super::Partition,
    stream: sys::CUstream,
    grid: Grid,
    /// The scheduler, the groups it counted and whether it tracks the kernel's completion.
    scheduled: Option<(&'a super::Scheduler, Region, bool)>,
}

/// An event without timing, for ordering one stream after another (a tenant's kernels across
/// partitions, the profiler's switch measurement).
#[derive(Debug)]
pub(crate) struct OrderEvent(super::Event);

impl OrderEvent {
    /// A new event on `device`.
    pub(crate) fn new(device: &super::Device) -> Result<OrderEvent> {
        device.bind()?;
        Ok(OrderEvent(super::Event::new(false)?))
    }

    /// Makes `to` wait for the work enqueued on `from` so far.
    pub(crate) fn order(&self, from: sys::CUstream, to: sys::CUstream) -> Result<()> {
        // SAFETY: a live event; the streams belong to the device it was made on.
        unsafe {
            check("cuEventRecord", sys::cuEventRecord(self.0.raw(), from))?;
            check("cuStreamWaitEvent", sys::cuStreamWaitEvent(to, self.0.raw(), 0))
        }
    }
}

/// Issues a recorded launch again on a placement.
type Relaunch = std::rc::Rc<dyn Fn(&Runtime, Placement) -> Result<u32>>;

/// One launch recorded by [`Tenant::record`]: the kernel, its shape and a closure that issues
/// the same launch (same params, same buffers) again on any placement.
#[derive(Clone)]
pub struct Recorded {
    /// The kernel.
    pub kernel: crate::kernels::KernelId,
    /// Its shape key ([`Params::shape_key`]).
    pub shape_key: u64,
    /// Its work units.
    pub units: u64,
    launch: Relaunch,
}

impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recorded({}, shape {:016x}, {} units)", self.kernel, self.shape_key, self.units)
    }
}

impl Recorded {
    /// Issues the recorded launch again as `placement` says.
    ///
    /// # Safety
    /// The buffers the recorded launch used are still live (the model and workspace it was
    /// recorded from have not been dropped), and nothing else writes them meanwhile.
    pub unsafe fn replay(&self, rt: &Runtime, placement: Placement) -> Result<u32> {
        (self.launch)(rt, placement)
    }
}

/// Plans of one request captured within different windows of SM groups.
#[derive(Debug)]
pub struct PlanSet {
    /// The window of each plan, as the scheduler counts it.
    regions: Vec<Region>,
    /// Each window's plan, and for the whole device a best-effort tenant's second plan, captured
    /// as a borrowing tenant's (short blocks): whether a tenant borrows there depends on the
    /// load when it replays, while a plan's grids are fixed when it is captured.
    plans: Vec<(Plan, Option<Plan>)>,
}

/// A model instance's handle on the runtime.
#[derive(Debug)]
pub struct Tenant {
    // Dropped first: the event belongs to the runtime's context, which `rt` may be the last
    // to keep alive.
    order: OrderEvent,
    rt: Arc<Runtime>,
    id: TenantId,
    class: PriorityClass,
    mode: Mode,
    /// Where its work starts (captures) and what `synchronize` waits on at first.
    origin: sys::CUstream,
    /// The stream of its last launch: the tail of its logical stream.
    last: Cell<sys::CUstream>,
    /// While capturing: the groups kernels are placed within (as on an idle device).
    capturing: Cell<Option<GroupRange>>,
    /// While capturing: whether to place kernels as for a tenant that stays busy
    /// ([`Demand::sustained`]) or not, instead of as its duty says.
    capture_sustained: Cell<Option<bool>>,
    recording: std::cell::RefCell<Option<Vec<Recorded>>>,
    slo: Option<std::time::Duration>,
    /// The request its launches belong to; only launches of a request go on the timeline.
    request: Cell<Option<u64>>,
    /// Where its last policy-placed kernel ran, and the stream it went to (current only while
    /// that stream is still the tail).
    placed: Cell<Option<(Region, sys::CUstream)>>,
    /// Whether the scheduler counts it as having work outstanding.
    busy: Cell<bool>,
    /// How much of its time it spends busy; when it last went idle and when busy.
    duty: Cell<(Duty, Option<std::time::Instant>, Option<std::time::Instant>)>,
}

// SAFETY: the stream and event handles may move between threads; a tenant is not `Sync`
// (its `Cell`s), so one thread uses it at a time.
unsafe impl Send for Tenant {}

impl Tenant {
    /// A tenant whose kernels all run as `placement` says.
    pub fn new(rt: Arc<Runtime>, id: TenantId, placement: Placement) -> Result<Tenant> {
        let origin = rt.pool().get(placement.partition)?.stream(placement.priority_level)?;
        Self::make(rt, id, PriorityClass::BestEffort, Mode::Fixed(placement), origin)
    }

    /// A tenant whose kernels the runtime's scheduler places one by one (the runtime must have
    /// been made with [`Runtime::with_policy`]).
    pub fn scheduled(rt: Arc<Runtime>, id: TenantId, class: PriorityClass) -> Result<Tenant> {
        let sched = rt.scheduler().ok_or_else(|| {
            PartitionError::Unsupported("this runtime was made without a policy (use Runtime::with_policy)".into())
        })?;
        if id >= sched.tenants() {
            return Err(Error::Launch {
                kernel: "-",
                reason: format!("tenant id {id} ≥ the scheduler's {} tenants", sched.tenants()),
            });
        }
        if !sched.claim(id) {
            return Err(Error::Launch {
                kernel: "-",
                reason: format!("tenant id {id} is held by another live tenant of this runtime"),
            });
        }
        let level = priority_level(class == PriorityClass::LatencyCritical, false);
        let made = (|| -> Result<Tenant> {
            let origin = rt.pool().get(super::PartitionId::WHOLE)?.stream_in(id as usize, level)?;
            Self::make(rt.clone(), id, class, Mode::Scheduled, origin)
        })();
        if made.is_err() {
            sched.unclaim(id);
        }
        made
    }

    fn make(rt: Arc<Runtime>, id: TenantId, class: PriorityClass, mode: Mode, origin: sys::CUstream) -> Result<Tenant> {
        let order = OrderEvent::new(rt.device())?;
        Ok(Tenant {
            rt,
            id,
            class,
            mode,
            origin,
            last: Cell::new(origin),
            capturing: Cell::new(None),
            capture_sustained: Cell::new(None),
            order,
            recording: std::cell::RefCell::new(None),
            slo: None,
            request: Cell::new(None),
            placed: Cell::new(None),
            busy: Cell::new(false),
            duty: Cell::new((Duty::default(), None, None)),
        })
    }

    /// Its id.
    pub fn id(&self) -> TenantId {
        self.id
    }

    /// Its priority class.
    pub fn class(&self) -> PriorityClass {
        self.class
    }

    /// The runtime it launches on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// The SMs its next kernel will most likely get, for kernels whose variant (tile size,
    /// grid) depends on it: a fixed tenant's partition; while capturing within a window
    /// smaller than the device, that window; a scheduled tenant, where its last kernel ran (a
    /// policy moves a tenant only when the load changes); else the whole device.
    pub fn sms_hint(&self) -> u32 {
        let whole = self.rt.device().info().sm_count;
        let sms = |id| self.rt.pool().get(id).map_or(whole, |p| p.sms());
        match (self.mode, self.rt.scheduler()) {
            (Mode::Fixed(p), _) => sms(p.partition),
            (Mode::Scheduled, Some(sched)) => match (self.capturing.get(), self.placed.get()) {
                (Some(w), _) if w.count < sched.topology().groups => sms(sched.partition(Region::Groups(w))),
                (_, Some((region, _))) => sms(sched.partition(region)),
                (_, None) => whole,
            },
            (Mode::Scheduled, None) => whole,
        }
    }

    /// How much of its time it spends busy ([`Duty`]), as of when it last waited for its work.
    pub fn duty(&self) -> f64 {
        self.duty.get().0.value()
    }

    /// Tells the scheduler this tenant has work outstanding (once, until it next waits).
    fn mark_busy(&self, sched: &super::Scheduler) {
        if !self.busy.get() {
            self.turn(true);
            sched.set_active(self.id, true);
            self.busy.set(true);
        }
    }

    /// Forgets its duty: it counts as busy again until its requests show otherwise, and the
    /// time since its last request is not idleness between requests. For a tenant that waited
    /// for something other than its own arrivals (its co-runners loading, before a run starts),
    /// which would otherwise count as idle time for its next requests.
    pub fn restart_duty(&self) {
        self.duty.set((Duty::default(), None, None));
        if let (Mode::Scheduled, Some(sched)) = (self.mode, self.rt.scheduler()) {
            sched.set_duty(self.id, Duty::default().value());
        }
    }

    /// Notes that it goes busy (`busy`) or idle now; going idle ends a request, which its duty
    /// counts. Returns the duty.
    fn turn(&self, busy: bool) -> f64 {
        let (mut duty, idle_at, busy_at) = self.duty.get();
        let now = std::time::Instant::now();
        if busy {
            self.duty.set((duty, idle_at, Some(now)));
        } else {
            let secs = |from: Option<std::time::Instant>, to: std::time::Instant| {
                from.map_or(0.0, |f| to.duration_since(f).as_secs_f64())
            };
            duty.cycle(busy_at.map_or(0.0, |b| secs(idle_at, b)), secs(busy_at, now));
            self.duty.set((duty, Some(now), None));
        }
        duty.value()
    }

    /// Makes `stream` the tail of the logical stream: it waits for the previous tail.
    fn order_to(&self, stream: sys::CUstream) -> Result<()> {
        let last = self.last.get();
        if last != stream {
            self.order.order(last, stream)?;
            self.last.set(stream);
        }
        Ok(())
    }

    /// Launches `kernel` for this tenant and returns the grid used.
    ///
    /// # Safety
    /// As [`Runtime::launch`]: the device addresses in `params` are live and sized for them.
    pub unsafe fn launch<P: Params>(&self, kernel: Kernel<P>, params: &P) -> Result<u32> {
        if let Some(rec) = self.recording.borrow_mut().as_mut() {
            let p = *params;
            rec.push(Recorded {
                kernel: kernel.id(),
                shape_key: params.shape_key(),
                units: params.units(kernel.id()),
                // SAFETY (of the closure's launch): `Recorded::replay`'s contract.
                launch: std::rc::Rc::new(move |rt: &Runtime, pl: Placement| unsafe { rt.launch(kernel, &p, pl) }),
            });
        }
        // Check and count, place, then issue: the steps of every launch (Runtime::launch too).
        let Some(units) = Runtime::units(kernel, params)? else {
            return Ok(0);
        };
        let id = kernel.id();
        let placed = self.place(|s| s.min_sms(id, params.shape_key()), units)?;
        // SAFETY: forwarded contract; `placed.stream` is one of `placed.part`'s.
        let launched = self.timed(
            placed.stream,
            || id.name().into(),
            placed.partition,
            || unsafe { self.rt.issue(kernel, params, units, placed.part, placed.stream, placed.grid) },
        );
        if let Ok(grid) = launched {
            self.trace(id, placed.partition, grid);
        }
        self.placed(placed, launched)
    }

    /// Launches a kernel from outside the library (`kernel`, with the arguments `args`) for
    /// this tenant: placed by the same step as the library's kernels (its profiled minimum SMs
    /// are `kernel`'s own), after the tenant's earlier work, with the grid `grid` asks for.
    /// Returns the blocks launched (x × y × z).
    ///
    /// # Safety
    /// `args` holds one pointer per parameter of `kernel`'s function, each to a value of that
    /// parameter's type; every device address among them is live and sized as the kernel uses
    /// it, and nothing else writes its outputs until it completes.
    pub unsafe fn launch_foreign(
        &self,
        kernel: &super::ForeignKernel,
        grid: super::ForeignGrid,
        args: *mut *mut std::ffi::c_void,
    ) -> Result<u64> {
        if self.recording.borrow().is_some() {
            return Err(Error::Launch {
                kernel: "foreign kernel",
                reason: format!("{}: a recording for the profiler holds the library's kernels only", kernel.name()),
            });
        }
        let units = grid.units();
        if units == 0 {
            return Ok(0);
        }
        let placed = self.place(|_| kernel.min_sms(), units)?;
        let mut blocks = 0;
        // SAFETY: forwarded contract; `placed.stream` is one of `placed.part`'s.
        let launched = self.timed(
            placed.stream,
            || kernel.name().to_owned().into(),
            placed.partition,
            || unsafe {
                blocks = kernel.issue(grid, placed.part.sms(), placed.grid, placed.stream, args)?;
                Ok(u32::try_from(blocks).unwrap_or(u32::MAX))
            },
        );
        self.placed(placed, launched).map(|_| blocks)
    }

    /// The placement step of every launch of this tenant: its fixed placement, or the
    /// scheduler's decision for a kernel of `units` work units whose profiled minimum SMs
    /// `min_sms` says (asked only of a scheduled tenant); the tenant's logical stream is ordered
    /// onto the stream chosen.
    fn place(&self, min_sms: impl FnOnce(&super::Scheduler) -> Option<u32>, units: u64) -> Result<Placed<'_>> {
        self.rt.device().bind()?;
        match self.mode {
            Mode::Fixed(p) => {
                let part = self.rt.pool().get(p.partition)?;
                let stream = part.stream(p.priority_level)?;
                Ok(Placed { partition: p.partition, part, stream, grid: p.grid, scheduled: None })
            }
            Mode::Scheduled => {
                let sched = self.rt.scheduler().ok_or(PartitionError::Unsupported("no scheduler".into()))?;
                let current = self.placed.get().filter(|&(_, s)| s == self.last.get()).map(|(r, _)| r);
                let capturing = self.capturing.get();
                if capturing.is_none() {
                    self.mark_busy(sched);
                }
                let (active, sustained) = sched.activity(self.id);
                let sustained = self.capture_sustained.get().unwrap_or(sustained);
                let demand =
                    Demand { current, active, sustained, ..Demand::new(self.id, self.class, min_sms(sched), units) };
                let (region, level, blocks) = sched.admit(&demand, capturing);
                let partition = sched.partition(region);
                let placed = (|| -> Result<_> {
                    let part = self.rt.pool().get(partition)?;
                    let stream = part.stream_in(self.id as usize, level)?;
                    self.order_to(stream)?;
                    Ok((part, stream))
                })();
                let tracked = capturing.is_none() && sched.tracks();
                let (part, stream) = placed.inspect_err(|_| {
                    if tracked {
                        sched.release(self.id, region);
                    }
                })?;
                self.placed.set(Some((region, stream)));
                let grid = match blocks {
                    Blocks::Resident => Grid::Auto,
                    Blocks::Short => Grid::Short,
                };
                Ok(Placed { partition, part, stream, grid, scheduled: Some((sched, region, tracked)) })
            }
        }
    }

    /// After the issue step: tracks a scheduled kernel's completion, or gives its groups back
    /// when nothing was launched.
    fn placed<T>(&self, placed: Placed<'_>, launched: Result<T>) -> Result<T> {
        match (placed.scheduled, launched) {
            (Some((sched, region, true)), Ok(r)) => sched.track(self.id, region, placed.stream).map(|()| r),
            (Some((sched, region, true)), Err(e)) => {
                // Nothing was launched on these groups: give them back now.
                sched.release(self.id, region);
                Err(e)
            }
            (_, launched) => launched,
        }
    }

    /// Runs `issue`, which enqueues work on `stream` and returns its grid, between a pair of
    /// timeline events when the runtime has a timeline and the launch belongs to a request
    /// ([`Tenant::set_request`]); never while capturing a plan. `name` (made only when needed)
    /// names the slice, and the work to the trace sink beforehand.
    fn timed(
        &self,
        stream: sys::CUstream,
        name: impl Fn() -> std::borrow::Cow<'static, str>,
        partition: super::PartitionId,
        issue: impl FnOnce() -> Result<u32>,
    ) -> Result<u32> {
        if self.capturing.get().is_none() {
            self.rt.issuing(self.id, &name);
        }
        let (Some(tl), Some(request), None) = (self.rt.timeline(), self.request.get(), self.capturing.get()) else {
            return issue();
        };
        let Some(mark) = tl.begin(stream)? else {
            return issue();
        };
        match issue() {
            Ok(grid) => {
                let mut priority = 0;
                // SAFETY: a live stream; writes one int.
                unsafe { sys::cuStreamGetPriority(stream, &mut priority) };
                let slice = super::GpuSlice {
                    tenant: self.id,
                    name: name(),
                    partition: partition.0,
                    sms: self.rt.pool().get(partition).map_or(0, |p| p.sms()),
                    grid,
                    priority,
                    request,
                    start_ns: 0,
                    end_ns: 0,
                };
                tl.end(mark, stream, slice)?;
                Ok(grid)
            }
            Err(e) => {
                tl.cancel(mark);
                Err(e)
            }
        }
    }

    /// Tags its later launches as belonging to request `id` (`None`: to no request); the
    /// timeline shows only launches that belong to a request.
    pub fn set_request(&self, id: Option<u64>) {
        self.request.set(id);
    }

    fn trace(&self, kernel: crate::kernels::KernelId, partition: super::PartitionId, grid: u32) {
        self.rt.traced(|host_ns| super::LaunchRecord {
            tenant: self.id,
            kernel,
            partition,
            sms: self.rt.pool().get(partition).map_or(0, |p| p.sms()),
            grid,
            priority: self.last_stream_priority().unwrap_or(0),
            host_ns,
        });
    }

    /// Its latency objective, if it has one.
    pub fn slo(&self) -> Option<std::time::Duration> {
        self.slo
    }

    /// Sets its latency objective (what the harness counts SLO attainment against).
    pub fn with_slo(mut self, slo: std::time::Duration) -> Tenant {
        self.slo = Some(slo);
        self
    }

    /// The tail of its logical stream: the stream of its last launch (or of its placement,
    /// or its origin before any launch). Work enqueued there runs after all of its kernels.
    pub fn stream(&self) -> Result<sys::CUstream> {
        Ok(self.last.get())
    }

    /// Runs a GEMM through cuBLASLt for this tenant (see [`Runtime::launch_blas`]); a scheduled
    /// tenant runs it on the whole device.
    ///
    /// # Safety
    /// As [`Runtime::launch`].
    pub unsafe fn launch_blas(&self, p: &crate::kernels::abi::GemmParams) -> Result<()> {
        let placement = match self.mode {
            Mode::Fixed(pl) => pl,
            Mode::Scheduled => {
                if let (Some(sched), None) = (self.rt.scheduler(), self.capturing.get()) {
                    self.mark_busy(sched);
                }
                // cuBLASLt runs on the whole device, on this tenant's origin stream.
                self.order_to(self.origin)?;
                let level = priority_level(self.class == PriorityClass::LatencyCritical, false);
                Placement { partition: super::PartitionId::WHOLE, priority_level: level, grid: Grid::Auto }
            }
        };
        let stream = self.rt.pool().get(placement.partition)?.stream(placement.priority_level)?;
        // SAFETY: forwarded contract.
        self.timed(
            stream,
            || "cublasLt".into(),
            placement.partition,
            || unsafe { self.rt.launch_blas(p, placement).map(|()| 0) },
        )?;
        if let (Mode::Scheduled, None) = (self.mode, self.capturing.get()) {
            if let Some(s) = self.rt.scheduler().filter(|s| s.tracks()) {
                s.acquire(self.id, Region::Whole);
                s.track(self.id, Region::Whole, self.last.get())?;
            }
        }
        Ok(())
    }

    /// Captures the launches `record` makes for this tenant as a [`Plan`]; a scheduled tenant
    /// places each kernel as on an idle device, and the plan keeps those partitions.
    pub fn capture<E: From<Error>>(
        &self,
        record: impl FnOnce() -> std::result::Result<(), E>,
    ) -> std::result::Result<Plan, E> {
        let all = self.rt.scheduler().map_or(GroupRange { first: 0, count: 0 }, |s| s.all_groups());
        self.capture_within(all, record)
    }

    /// Like [`Tenant::capture`], with a scheduled tenant's kernels placed within `window`.
    pub fn capture_within<E: From<Error>>(
        &self,
        window: GroupRange,
        record: impl FnOnce() -> std::result::Result<(), E>,
    ) -> std::result::Result<Plan, E> {
        self.rt.device().bind()?;
        self.order_to(self.origin)?;
        self.capturing.set(Some(window));
        // Tiles in the capture follow its own placements, not those of earlier work.
        self.placed.set(None);
        let origin = self.origin;
        let plan = Plan::capture(&self.rt, origin, || {
            let r = record();
            // Join the tail back to the origin before the capture ends.
            self.order_to(origin).map_err(E::from)?;
            r
        });
        self.capturing.set(None);
        self.last.set(origin);
        plan
    }

    /// Runs `f` and returns every launch it made through this tenant, in order (they also
    /// run as usual).
    pub fn record<E>(&self, f: impl FnOnce() -> std::result::Result<(), E>) -> std::result::Result<Vec<Recorded>, E> {
        *self.recording.borrow_mut() = Some(Vec::new());
        let r = f();
        let recorded = self.recording.borrow_mut().take().unwrap_or_default();
        r.map(|()| recorded)
    }

    /// Replays a plan captured by this tenant, after its earlier work.
    pub fn replay(&self, plan: &Plan) -> Result<()> {
        self.replay_on(plan, self.origin, super::PartitionId::WHOLE)
    }

    /// Replays `plan` on `stream` (a whole-device stream: the plan's kernels keep the
    /// partitions they were captured on, and run at `stream`'s priority), after its earlier
    /// work, shown on the timeline as running on `partition`.
    fn replay_on(&self, plan: &Plan, stream: sys::CUstream, partition: super::PartitionId) -> Result<()> {
        self.order_to(stream)?;
        self.timed(stream, || "plan".into(), partition, || plan.launch(&self.rt, stream).map(|()| 0)).map(|_| ())
    }

    /// Captures one plan of the same request per window (a scheduled tenant's alternatives),
    /// so [`Tenant::replay_set`] can pick one by the current load. Within the whole device a
    /// best-effort tenant gets two: its own (resident blocks, as when others come and go) and
    /// a borrowing one (short blocks, as when it stays busy alone).
    pub fn capture_set<E: From<Error>>(
        &self,
        windows: &[GroupRange],
        record: impl Fn() -> std::result::Result<(), E>,
    ) -> std::result::Result<PlanSet, E> {
        let groups = self.rt.scheduler().map_or(0, |s| s.topology().groups);
        let plans = windows
            .iter()
            .map(|&w| {
                if w.count < groups {
                    return Ok((self.capture_within(w, &record)?, None));
                }
                let own = self.capture_as(w, Some(false), &record)?;
                let borrowing = (self.class != PriorityClass::LatencyCritical)
                    .then(|| self.capture_as(w, Some(true), &record))
                    .transpose()?;
                Ok((own, borrowing))
            })
            .collect::<std::result::Result<_, E>>()?;
        Ok(PlanSet { regions: windows.iter().map(|&w| Region::Groups(w)).collect(), plans })
    }

    /// [`Tenant::capture_within`], placing kernels as for a tenant that stays busy
    /// (`Some(true)`), one that does not (`Some(false)`), or as its duty says (`None`).
    fn capture_as<E: From<Error>>(
        &self,
        window: GroupRange,
        sustained: Option<bool>,
        record: impl FnOnce() -> std::result::Result<(), E>,
    ) -> std::result::Result<Plan, E> {
        self.capture_sustained.set(sustained);
        let plan = self.capture_within(window, record);
        self.capture_sustained.set(None);
        plan
    }

    /// Replays the plan of `set` the runtime's policy picks for the current load
    /// ([`Policy::pick_plan`](super::policy::Policy::pick_plan)), at the priority it says;
    /// counts it on that plan's window until it completes and returns the index chosen.
    pub fn replay_set(&self, set: &PlanSet) -> Result<usize> {
        let sched = self.rt.scheduler().ok_or(PartitionError::Unsupported("no scheduler".into()))?;
        self.mark_busy(sched);
        let (i, level, borrowed) = sched.pick_plan(self.id, self.class, &set.regions);
        let stream = self.rt.pool().get(super::PartitionId::WHOLE)?.stream_in(self.id as usize, level)?;
        let plan = match &set.plans[i] {
            (_, Some(borrowing)) if borrowed => borrowing,
            (own, _) => own,
        };
        self.replay_on(plan, stream, sched.partition(set.regions[i]))?;
        if sched.tracks() {
            sched.acquire(self.id, set.regions[i]);
            sched.track(self.id, set.regions[i], stream)?;
        }
        Ok(i)
    }

    /// Waits for everything it launched (its logical stream is in order, so its tail); a
    /// scheduled tenant then counts as idle until its next launch.
    pub fn synchronize(&self) -> Result<()> {
        self.rt.device().bind()?;
        // SAFETY: a live stream of the pool.
        check("cuStreamSynchronize", unsafe { sys::cuStreamSynchronize(self.last.get()) })?;
        if let (true, Some(sched)) = (self.busy.get(), self.rt.scheduler()) {
            sched.set_duty(self.id, self.turn(false));
            sched.set_active(self.id, false);
            self.busy.set(false);
        }
        Ok(())
    }

    /// The priority of the stream its last kernel went to.
    pub fn last_stream_priority(&self) -> Result<i32> {
        let mut p = 0;
        // SAFETY: a live stream; writes one int.
        check("cuStreamGetPriority", unsafe { sys::cuStreamGetPriority(self.last.get(), &mut p) })?;
        Ok(p)
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        // A tenant that goes away has no work the scheduler should make room for.
        if let (true, Some(sched)) = (self.busy.get(), self.rt.scheduler()) {
            sched.set_active(self.id, false);
        }
        if let (Mode::Scheduled, Some(sched)) = (self.mode, self.rt.scheduler()) {
            sched.unclaim(self.id);
        }
    }
}

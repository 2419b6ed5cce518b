//! Tenants: one handle per model instance, used from one thread at a time. Every launch a
//! model makes goes through its tenant, which either uses a fixed placement (the whole device
//! or a static partition) or asks the runtime's scheduler per kernel. A tenant is an in-order
//! logical stream: when two consecutive kernels land on different partitions' streams, the
//! second waits for the first through an event.

use std::cell::Cell;
use std::sync::Arc;

use cudarc::driver::{result, sys};

use super::driver;
use super::error::{DriverContext, Error, Result};
use super::policy::{priority_level, Blocks, Demand, Duty, PriorityClass, Region, TenantId};
use super::work::{Ask, Launch, Target, Work};
use super::{Chain, Grid, GroupRange, PartitionError, Placement, Plan, Runtime};
use crate::kernels::{Kernel, Params};

mod claims;

#[derive(Debug, Clone, Copy)]
enum Mode {
    Fixed(Placement),
    Scheduled,
}

/// Where the placement step put one piece of work.
struct Placed<'a> {
    /// The partition it runs on, as the timeline and trace show it.
    partition: super::PartitionId,
    /// What its issue step gets.
    target: Target<'a>,
    /// The scheduler, the groups it counted and whether it tracks the work's completion.
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
            result::event::record(self.0.raw(), from).call("cuEventRecord")?;
            result::stream::wait_event(to, self.0.raw(), sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT)
                .call("cuStreamWaitEvent")
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
    pub(crate) fn new(kernel: crate::kernels::KernelId, shape_key: u64, units: u64, launch: Relaunch) -> Recorded {
        Recorded { kernel, shape_key, units, launch }
    }

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

impl PlanSet {
    /// The window of each plan.
    pub(crate) fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Plan `i`, its borrowing variant where `borrowed` and it has one.
    pub(crate) fn plan(&self, i: usize, borrowed: bool) -> &Plan {
        match &self.plans[i] {
            (_, Some(borrowing)) if borrowed => borrowing,
            (own, _) => own,
        }
    }
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
    /// The partition whose SMs it claims (a latency-critical tenant of a policy that claims),
    /// until it synchronizes.
    claimed: Cell<Option<super::PartitionId>>,
    /// Whether the scheduler counts it as having work outstanding.
    busy: Cell<bool>,
    /// Whether its request has set its words (a latency-critical tenant of a policy that
    /// hushes: at the request's first launch; cleared at synchronize).
    hushed: Cell<bool>,
    /// Its launches since its last synchronize, where the policy hushes (a best-effort
    /// tenant's first and every n-th after wait).
    hush_launches: Cell<u64>,
    /// Whether its requests hush best-effort work ([`Tenant::hush_while_serving`]).
    serving: Cell<bool>,
    /// Whether its next request hushes ([`Tenant::protect_next`]).
    protect: Cell<bool>,
    /// How much of its time it spends busy; when it last went idle and when busy.
    duty: Cell<(Duty, Option<std::time::Instant>, Option<std::time::Instant>)>,
    /// Its last requests' latencies ÷ its objective, oldest first ([`Tenant::observe`]).
    recent: std::cell::RefCell<std::collections::VecDeque<f32>>,
}

/// Requests a tenant's pressure is measured over ([`Tenant::observe`]): its last 128, enough
/// for a 99th percentile, the tail an objective judges (a window of 32 measured how its
/// latest requests went; a latency-critical decoder then missed its objective where it did
/// not with the guard always kept, likely because its window was given away between the
/// bursts its tail comes from: docs/harness-h200.md).
const PRESSURE_WINDOW: usize = 128;

/// Fewest requests a pressure is measured over.
const PRESSURE_MIN: usize = 8;

/// The pressure of a tenant whose last requests took `recent` (latency ÷ objective): the
/// second largest, the window's 99th percentile (nearest rank) when full, so a single outlier
/// does not decide it; `None` below [`PRESSURE_MIN`] requests.
fn pressure_of(recent: &std::collections::VecDeque<f32>) -> Option<f32> {
    if recent.len() < PRESSURE_MIN {
        return None;
    }
    let (mut first, mut second) = (f32::MIN, f32::MIN);
    for &r in recent {
        if r > first {
            second = first;
            first = r;
        } else if r > second {
            second = r;
        }
    }
    Some(second)
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
        if class == PriorityClass::LatencyCritical && sched.claims() && rt.claims().is_ok() {
            rt.expect_claims();
        }
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
            claimed: Cell::new(None),
            busy: Cell::new(false),
            hushed: Cell::new(false),
            hush_launches: Cell::new(0),
            serving: Cell::new(false),
            protect: Cell::new(false),
            duty: Cell::new((Duty::default(), None, None)),
            recent: std::cell::RefCell::new(std::collections::VecDeque::with_capacity(PRESSURE_WINDOW)),
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

    /// Launches `kernel` for this tenant and returns the grid used: [`Tenant::submit`] of a
    /// [`Launch`].
    ///
    /// # Safety
    /// As [`Runtime::launch`]: the device addresses in `params` are live and sized for them.
    pub unsafe fn launch<P: Params>(&self, kernel: Kernel<P>, params: &P) -> Result<u32> {
        // SAFETY: forwarded contract.
        unsafe { self.submit(Launch { kernel, params }) }
    }

    /// Submits a piece of work (a library kernel, a foreign kernel, a cuBLASLt GEMM, a plan):
    /// the one way work reaches the device. It is checked, placed as its kind asks (by the
    /// policy for a scheduled tenant), ordered after the tenant's earlier work, issued (timed
    /// when it belongs to a request) and, where the scheduler counts it, tracked until it
    /// completes.
    ///
    /// # Safety
    /// The contract of the work's kind (see [`Launch`], [`super::work::Foreign`],
    /// [`super::work::Blas`]): the device addresses it uses are live and sized for it.
    pub unsafe fn submit<W: Work>(&self, work: W) -> Result<W::Output> {
        if let Some(rec) = self.recording.borrow_mut().as_mut() {
            rec.extend(work.recorded()?);
        }
        // Check and count, place, then issue: the steps of every launch (Runtime::launch too).
        let Some(units) = work.units()? else {
            return Ok(W::Output::default());
        };
        let placed = self.place(&work, units)?;
        let hushed_before = self.hushed.get();
        if let Err(e) = self.hush(placed.target.stream) {
            return self.placed(placed, Err(e));
        }
        let mut output = W::Output::default();
        let launched = self.timed(
            placed.target.stream,
            || work.name(),
            placed.partition,
            // SAFETY: forwarded contract; the context is current and the stream is the target's.
            || {
                let (issued, out) = unsafe { work.issue(&self.rt, &placed.target) }?;
                output = out;
                if let Some(counter) = issued.follow {
                    // At once, before any bookkeeping that may fail: until it runs, the
                    // launch's units are not all done and its counter is not back at zero.
                    // SAFETY: forwarded contract: the same work, after the launch it continues.
                    unsafe { self.continue_after(&work, &placed.target, counter, issued.grid) }?;
                }
                Ok(issued.grid)
            },
        );
        if let (Ok(grid), Some(kernel)) = (&launched, work.kernel()) {
            self.trace(kernel, placed.partition, *grid);
        }
        if launched.is_err() && !hushed_before && self.hushed.get() {
            // This call set its words and launched nothing: clear them, so best-effort work
            // does not wait on a request that has no work in flight.
            self.unhush();
        }
        self.placed(placed, launched).map(|_| output)
    }

    /// Where the policy hushes (runtime/hush.rs), before work goes to `stream`: the first
    /// launch of a latency-critical request its caller asked to protect
    /// ([`Tenant::protect_next`]), while it serves ([`Tenant::hush_while_serving`]), sets its
    /// words, from the host, for the best-effort tenants that give way to it now (cleared by
    /// [`Tenant::synchronize`]); a best-effort tenant's work (the first launch after each
    /// synchronize and every n-th after, as the policy says) waits there, also in a plan being
    /// captured, until no latency-critical tenant's word for it is set.
    fn hush(&self, stream: sys::CUstream) -> Result<()> {
        let (Mode::Scheduled, Some(sched), Some(hush)) = (self.mode, self.rt.scheduler(), self.rt.hush()) else {
            return Ok(());
        };
        if self.class == PriorityClass::LatencyCritical {
            // Only while serving, only ids with words, once a request, only where asked, and
            // only the best-effort tenants that give way to it (no nearer their own
            // objectives: the guard's rule, Demand::yields_to).
            if self.serving.get()
                && self.id < 64
                && self.capturing.get().is_none()
                && !self.hushed.get()
                && self.protect.replace(false)
            {
                let held = hush.set(self.id, sched.giving_way_to(self.id));
                self.hushed.set(held);
            }
            return Ok(());
        }
        let n = self.hush_launches.get();
        self.hush_launches.set(n + 1);
        if !hush.waits_at(n) {
            return Ok(());
        }
        if self.id >= 64 {
            return Ok(());
        }
        // SAFETY: a stream of the pool; the context is current (placed).
        unsafe { hush.wait(stream, self.id, sched.guaranteed() & !(1 << self.id)) }
    }

    /// Clears the words its request set, from the host, at once, and forgets the request.
    fn unhush(&self) {
        if let (true, Some(hush)) = (self.hushed.replace(false), self.rt.hush()) {
            hush.clear(self.id);
        }
    }

    /// Whether its requests hush best-effort work from now on (a latency-critical tenant under
    /// a policy that hushes, runtime/hush.rs; off until asked). Off clears its words. A caller
    /// turns it on once it serves requests, not while it loads.
    pub fn hush_while_serving(&self, on: bool) {
        self.serving.set(on);
        if !on {
            self.unhush();
            self.protect.set(false);
        }
    }

    /// Asks that its next request (its launches up to the next [`Tenant::synchronize`]) quiet
    /// the best-effort tenants that give way to it, where the policy hushes: its caller says
    /// so for a request that queued behind earlier ones or that others queue behind.
    pub fn protect_next(&self) {
        self.protect.set(true);
    }

    /// The placement step of every piece of work of this tenant, as `work` asks: its fixed
    /// placement; the scheduler's decision for a kernel of `units` work units (its profiled
    /// minimum SMs as `work` says); the whole device at its own priority; its origin; or the
    /// plan of a set the policy picks. The tenant's logical stream is ordered onto the stream
    /// chosen; the groups the scheduler counts are acquired here, and released by
    /// [`Tenant::placed`].
    fn place<W: Work>(&self, work: &W, units: u64) -> Result<Placed<'_>> {
        self.rt.device().bind()?;
        let pool = self.rt.pool();
        let whole = super::PartitionId::WHOLE;
        let level = super::claims::claim_level(Some(self.class));
        let at =
            |part, stream, grid| Target { part, stream, grid, units, pick: (0, false), level, chain: Chain::Alone };
        let own_level = priority_level(self.class == PriorityClass::LatencyCritical, false);
        match (work.ask(), self.mode) {
            (Ask::Origin, _) => {
                self.order_to(self.origin)?;
                let target = at(pool.get(whole)?, self.origin, Grid::Auto);
                Ok(Placed { partition: whole, target, scheduled: None })
            }
            (Ask::Policy | Ask::Whole, Mode::Fixed(p)) => {
                let part = pool.get(p.partition)?;
                let stream = part.stream(p.priority_level)?;
                Ok(Placed { partition: p.partition, target: at(part, stream, p.grid), scheduled: None })
            }
            (Ask::Whole, Mode::Scheduled) => {
                // Nothing is asked of the policy: cuBLASLt runs on the whole device, on this
                // tenant's origin stream.
                let sched = self.rt.scheduler().ok_or(PartitionError::Unsupported("no scheduler".into()))?;
                let capturing = self.capturing.get();
                if capturing.is_none() {
                    self.mark_busy(sched);
                }
                let tracked = capturing.is_none() && sched.tracks();
                if tracked {
                    sched.acquire(self.id, Region::Whole);
                }
                self.released_on_error(sched, Region::Whole, tracked, || {
                    let part = pool.get(whole)?;
                    let stream = part.stream_in(self.id as usize, own_level)?;
                    self.order_to(stream)?;
                    Ok(Placed { partition: whole, target: at(part, stream, Grid::Auto), scheduled: None })
                })
            }
            (Ask::Plans(regions), _) => {
                let sched = self.rt.scheduler().ok_or(PartitionError::Unsupported("no scheduler".into()))?;
                self.mark_busy(sched);
                let (i, level, borrowed) = sched.pick_plan(self.id, self.class, regions);
                let (region, tracked) = (regions[i], sched.tracks());
                if tracked {
                    sched.acquire(self.id, region);
                }
                self.released_on_error(sched, region, tracked, || {
                    let part = pool.get(whole)?;
                    let stream = part.stream_in(self.id as usize, level)?;
                    self.order_to(stream)?;
                    let partition = sched.partition(region);
                    self.claim_for(sched, partition, stream)?;
                    let target = Target { pick: (i, borrowed), ..at(part, stream, Grid::Auto) };
                    Ok(Placed { partition, target, scheduled: None })
                })
            }
            (Ask::Policy, Mode::Scheduled) => {
                let sched = self.rt.scheduler().ok_or(PartitionError::Unsupported("no scheduler".into()))?;
                let current = self.placed.get().filter(|&(_, s)| s == self.last.get()).map(|(r, _)| r);
                let capturing = self.capturing.get();
                if capturing.is_none() {
                    self.mark_busy(sched);
                }
                let (active, sustained, yields_to) = sched.activity(self.id);
                let sustained = self.capture_sustained.get().unwrap_or(sustained);
                let demand = Demand {
                    current,
                    active,
                    sustained,
                    yields_to,
                    ..Demand::new(self.id, self.class, work.min_sms(sched), units)
                };
                let (region, priority, blocks) = sched.admit(&demand, capturing);
                let partition = sched.partition(region);
                let grid = match blocks {
                    Blocks::Resident => Grid::Auto,
                    Blocks::Short => Grid::Short,
                };
                // `admit` acquired the groups already where the scheduler tracks them.
                let tracked = capturing.is_none() && sched.tracks();
                let placed = self.released_on_error(sched, region, tracked, || {
                    let part = pool.get(partition)?;
                    let stream = part.stream_in(self.id as usize, priority)?;
                    self.order_to(stream)?;
                    if capturing.is_none() {
                        self.claim_for(sched, partition, stream)?;
                    }
                    // Where another tenant claims SMs this kernel may run on, a continuation
                    // takes what its blocks there leave (`Tenant::continue_after`).
                    let chain = if capturing.is_none() && self.rt.claimed_above(part, level) {
                        Chain::Followed
                    } else {
                        Chain::Alone
                    };
                    Ok(Placed { partition, target: Target { chain, ..at(part, stream, grid) }, scheduled: None })
                })?;
                self.placed.set(Some((region, placed.target.stream)));
                Ok(placed)
            }
        }
    }

    /// Runs `make`, the rest of the placement step after `region`'s groups were acquired
    /// (where `tracked`): gives them back if it fails, else notes them for [`Tenant::placed`].
    fn released_on_error<'a>(
        &'a self,
        sched: &'a super::Scheduler,
        region: Region,
        tracked: bool,
        make: impl FnOnce() -> Result<Placed<'a>>,
    ) -> Result<Placed<'a>> {
        match make() {
            Ok(placed) => Ok(Placed { scheduled: Some((sched, region, tracked)), ..placed }),
            Err(e) => {
                if tracked {
                    sched.release(self.id, region);
                }
                Err(e)
            }
        }
    }

    /// After the issue step: tracks a scheduled kernel's completion, or gives its groups back
    /// when nothing was launched.
    fn placed<T>(&self, placed: Placed<'_>, launched: Result<T>) -> Result<T> {
        match (placed.scheduled, launched) {
            (Some((sched, region, true)), Ok(r)) => sched.track(self.id, region, placed.target.stream).map(|()| r),
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
                // SAFETY: a live stream. A priority not read shows as 0, as it always has.
                let priority = unsafe { driver::stream::priority(stream) }.unwrap_or(0);
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

    /// Tells its scheduler how long one of its requests took, from when it was due to when it
    /// completed (waiting included); its policy hears of each one ([`super::policy::Policy::observe`]: krisp
    /// times the layouts it tries by them). Against its latency objective ([`Tenant::with_slo`]) its
    /// last 128 requests (`PRESSURE_WINDOW`; measured from the 8th on) give its *pressure*: how
    /// close their tail came to the objective (the second largest latency ÷ objective, their
    /// 99th percentile once there are 128). Where a
    /// best-effort tenant's pressure is above a latency-critical tenant's, krisp keeps no window
    /// of the latter's free of the former's kernels
    /// ([`crate::runtime::policy::Demand::yields_to`]): the SMs in dispute go to whichever is
    /// the more pressed. No pressure without an objective; nothing without a scheduler.
    pub fn observe(&self, latency: std::time::Duration) {
        let (Mode::Scheduled, Some(sched)) = (self.mode, self.rt.scheduler()) else {
            return;
        };
        let ended = super::timer::monotonic_ns();
        let took = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        sched.observe(self.id, ended.saturating_sub(took), ended);
        let Some(slo) = self.slo.filter(|slo| !slo.is_zero()) else {
            return;
        };
        let mut recent = self.recent.borrow_mut();
        if recent.len() == PRESSURE_WINDOW {
            recent.pop_front();
        }
        recent.push_back((latency.as_secs_f64() / slo.as_secs_f64()) as f32);
        sched.set_pressure(self.id, pressure_of(&recent));
    }

    /// Sets its latency objective, which [`Tenant::observe`] measures its pressure by.
    pub fn with_slo(mut self, slo: std::time::Duration) -> Tenant {
        self.slo = Some(slo);
        self
    }

    /// Sets the priority class of a tenant with a fixed placement (best-effort unless set):
    /// it sets the level of its claims and of its kernels' ([`super::claim_level`]). A
    /// scheduled tenant's class is given when it is made.
    pub fn with_class(mut self, class: PriorityClass) -> Tenant {
        if matches!(self.mode, Mode::Fixed(_)) {
            self.class = class;
        }
        self
    }

    /// The tail of its logical stream: the stream of its last launch (or of its placement,
    /// or its origin before any launch). Work enqueued there runs after all of its kernels.
    pub fn stream(&self) -> Result<sys::CUstream> {
        Ok(self.last.get())
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
        // Tiles in the capture follow its own placements, not those of earlier work; a plan
        // starts as a request does (its first launch waits, where the policy hushes), and the
        // tenant's own launches go on counting where they were after it.
        self.placed.set(None);
        let launches = self.hush_launches.replace(0);
        let origin = self.origin;
        let plan = Plan::capture(&self.rt, origin, || {
            let r = record();
            // Join the tail back to the origin before the capture ends.
            self.order_to(origin).map_err(E::from)?;
            r
        });
        self.capturing.set(None);
        self.hush_launches.set(launches);
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

    /// Replays a plan captured by this tenant, after its earlier work: [`Tenant::submit`] of a
    /// [`super::work::Replay::Plan`].
    pub fn replay(&self, plan: &Plan) -> Result<()> {
        // SAFETY: a plan's buffers are its tenant's, kept live by its model.
        unsafe { self.submit(super::work::Replay::Plan(plan)) }.map(|_| ())
    }

    /// Captures one plan of the same request per window (a scheduled tenant's alternatives),
    /// so [`Tenant::replay_set`] can pick one by the current load. Within the whole device a
    /// best-effort tenant gets two: its own (resident blocks, as when others come and go) and
    /// a borrowing one (short blocks, as when it stays busy alone). Beside a latency-critical
    /// tenant its own is captured borrowing too (a plan on a guarded window borrows while that
    /// tenant is idle, as a capture's is: `KrispShare::guarded`).
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
    /// counts it on that plan's window until it completes and returns the index chosen:
    /// [`Tenant::submit`] of a [`super::work::Replay::Set`].
    pub fn replay_set(&self, set: &PlanSet) -> Result<usize> {
        // SAFETY: as for `Tenant::replay`.
        unsafe { self.submit(super::work::Replay::Set(set)) }
    }

    /// Waits for everything it launched (its logical stream is in order, so its tail); a
    /// scheduled tenant then counts as idle until its next launch.
    pub fn synchronize(&self) -> Result<()> {
        self.rt.device().bind()?;
        if let Some(claimed) = self.claimed.take() {
            // Released in stream order, as its last kernel completes (only a runtime with
            // claim tables claims).
            // SAFETY: its tail is a stream of the pool; the context is current.
            unsafe { self.rt.write_claims_on(self.last.get(), claimed, 0) }?;
        }
        // A request's protection ends with it, asked for or used; its words are cleared once
        // its work completes (or, should CUDA queue that work behind a best-effort wait, by
        // hushing's watchdog first: runtime/hush.rs).
        self.protect.set(false);
        // SAFETY: a live stream of the pool.
        let synced = unsafe { result::stream::synchronize(self.last.get()) }.call("cuStreamSynchronize");
        self.unhush();
        // A best-effort tenant's next request waits at its first launch where the policy
        // hushes (one starting during a protected request starts none of its work).
        self.hush_launches.set(0);
        synced?;
        if let (true, Some(sched)) = (self.busy.get(), self.rt.scheduler()) {
            sched.set_duty(self.id, self.turn(false));
            sched.set_active(self.id, false);
            self.busy.set(false);
        }
        Ok(())
    }

    /// The priority of the stream its last kernel went to.
    pub fn last_stream_priority(&self) -> Result<i32> {
        // SAFETY: a live stream.
        unsafe { driver::stream::priority(self.last.get()) }.call("cuStreamGetPriority")
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        // Best-effort work waits while its words are set: clear them (from the host, at once).
        self.unhush();
        // A tenant that goes away has no work the scheduler should make room for.
        if let (true, Some(sched)) = (self.busy.get(), self.rt.scheduler()) {
            sched.set_active(self.id, false);
        }
        if let (Mode::Scheduled, Some(sched)) = (self.mode, self.rt.scheduler()) {
            sched.unclaim(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::{pressure_of, PRESSURE_MIN, PRESSURE_WINDOW};

    #[test]
    fn a_pressure_is_the_second_largest_of_the_recent_requests() {
        let window = |v: &[f32]| v.iter().copied().collect::<VecDeque<f32>>();
        assert_eq!(pressure_of(&window(&[0.5; PRESSURE_MIN - 1])), None, "too few requests");
        // One outlier does not decide it; two do.
        let mut v = vec![0.3f32; PRESSURE_WINDOW];
        v[7] = 4.0;
        assert_eq!(pressure_of(&window(&v)), Some(0.3));
        v[20] = 1.5;
        assert_eq!(pressure_of(&window(&v)), Some(1.5));
        v[3] = 2.0;
        assert_eq!(pressure_of(&window(&v)), Some(2.0));
        assert_eq!(pressure_of(&window(&[0.7; PRESSURE_MIN])), Some(0.7));
    }
}

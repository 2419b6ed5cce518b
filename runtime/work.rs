//! What a tenant submits ([`Work`]): a library kernel ([`Launch`]), a kernel from outside the
//! library ([`Foreign`]), a cuBLASLt GEMM ([`Blas`]) or a plan, alone or picked from a set
//! ([`Replay`]). Each kind says how the placement step is to place it ([`Ask`]) and
//! how it is issued on the stream that step chose; [`Tenant::submit`](super::Tenant::submit)
//! is the one function that places, orders, times, issues and tracks every kind.
//!
//! Nothing here allocates or locks on the way to the driver (a recording for the profiler
//! aside), so the launch path keeps its host cost.

use std::borrow::Cow;
use std::ffi::c_void;

use cudarc::driver::sys;

use super::policy::Region;
use super::{
    Chain, Error, ForeignGrid, ForeignKernel, Grid, Partition, Placement, Plan, PlanSet, Recorded, Result, Runtime,
    Ticket,
};
use crate::kernels::abi::GemmParams;
use crate::kernels::{Kernel, KernelId, Params};

/// How the placement step places a piece of work.
#[derive(Debug, Clone, Copy)]
pub enum Ask<'w> {
    /// As the policy decides for a kernel (a scheduled tenant), or on the tenant's fixed
    /// placement.
    Policy,
    /// On the whole device at the tenant's own priority, or on its fixed placement: cuBLASLt
    /// picks its algorithm for the SMs it is given, so a partition chosen per call would
    /// change what it computes, not only where.
    Whole,
    /// On the tenant's origin stream: a plan's kernels keep the partitions they were captured
    /// on.
    Origin,
    /// One of these windows' plans, as the policy picks it for the load
    /// ([`Policy::pick_plan`](super::policy::Policy::pick_plan)).
    Plans(&'w [Region]),
}

/// Where the placement step put a piece of work: what its issue step needs.
#[derive(Debug)]
pub struct Target<'a> {
    /// The partition whose stream it goes to.
    pub part: &'a Partition,
    /// That stream.
    pub stream: sys::CUstream,
    /// How its grid is sized.
    pub grid: Grid,
    /// Its work units.
    pub units: u64,
    /// With [`Ask::Plans`]: the plan picked, and whether it borrows SMs.
    pub pick: (usize, bool),
    /// The claim level of the library's kernels ([`claim_level`](super::claim_level)).
    pub level: u32,
    /// Whether a library kernel is to be followed by a continuation (SMs it may run on are
    /// claimed), or is one ([`Chain`]).
    pub chain: Chain,
}

/// What issuing a piece of work launched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Issued {
    /// Its grid (0 where it has none).
    pub grid: u32,
    /// The unit counter a continuation is to take from ([`Chain::Followed`] granted by
    /// the runtime's issue step), or `None`.
    pub follow: Option<u64>,
}

impl Issued {
    /// A launch of `grid` blocks that no continuation follows.
    fn alone(grid: u32) -> Issued {
        Issued { grid, follow: None }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A piece of work a tenant submits. Implemented by the kinds of this module only.
pub trait Work: sealed::Sealed {
    /// What issuing it returns (the grid, the blocks, the plan picked).
    type Output: Default;
    /// Its name on the timeline and to the trace sink.
    fn name(&self) -> Cow<'static, str>;
    /// Checks it and counts its work units (`None`: nothing to issue); by default one call,
    /// checked where it is issued.
    fn units(&self) -> Result<Option<u64>> {
        Ok(Some(1))
    }
    /// How it is placed.
    fn ask(&self) -> Ask<'_> {
        Ask::Policy
    }
    /// Its profiled minimum SMs, as the scheduler's profiles or the work itself say.
    fn min_sms(&self, _: &super::Scheduler) -> Option<u32> {
        None
    }
    /// The library kernel it is, for the trace sink's launch records.
    fn kernel(&self) -> Option<KernelId> {
        None
    }
    /// Its record for the profiler, while the tenant records (`None`: not recorded; an error
    /// where it cannot be recorded).
    fn recorded(&self) -> Result<Option<Recorded>> {
        Ok(None)
    }
    /// Enqueues it on `at.stream`, whose context is current; returns what it launched and its
    /// output.
    ///
    /// # Safety
    /// The submitter's contract for this kind (see each kind).
    unsafe fn issue(&self, rt: &Runtime, at: &Target<'_>) -> Result<(Issued, Self::Output)>;
}

/// A kernel of the library with its params.
///
/// Safety of submitting it: every device address in `params` points to live memory of the
/// sizes the kernel's header (`kernels/*.cu`) documents, and nothing else writes its outputs
/// until it completes.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'p, P> {
    /// The kernel.
    pub kernel: Kernel<P>,
    /// Its params.
    pub params: &'p P,
}

impl<P: Params> sealed::Sealed for Launch<'_, P> {}

impl<P: Params> Work for Launch<'_, P> {
    type Output = u32;
    fn name(&self) -> Cow<'static, str> {
        self.kernel.id().name().into()
    }
    fn units(&self) -> Result<Option<u64>> {
        Runtime::units(self.kernel, self.params)
    }
    fn min_sms(&self, sched: &super::Scheduler) -> Option<u32> {
        sched.min_sms(self.kernel.id(), self.params.shape_key())
    }
    fn kernel(&self) -> Option<KernelId> {
        Some(self.kernel.id())
    }
    fn recorded(&self) -> Result<Option<Recorded>> {
        let (kernel, p) = (self.kernel, *self.params);
        // SAFETY (of the closure's launch): `Recorded::replay`'s contract.
        let launch = std::rc::Rc::new(move |rt: &Runtime, pl: Placement| unsafe { rt.launch(kernel, &p, pl) });
        Ok(Some(Recorded::new(kernel.id(), p.shape_key(), p.units(kernel.id()), launch)))
    }
    unsafe fn issue(&self, rt: &Runtime, at: &Target<'_>) -> Result<(Issued, u32)> {
        // SAFETY: the submitter's contract; the stream is one of `at.part`'s.
        let (grid, follow) = unsafe {
            rt.issue(
                self.kernel,
                self.params,
                at.units,
                at.part,
                at.stream,
                at.grid,
                Ticket { level: at.level, trace: 0, chain: at.chain },
            )
        }?;
        Ok((Issued { grid, follow }, grid))
    }
}

/// A kernel from outside the library, placed by the same step as the library's (its profiled
/// minimum SMs are its own), with the grid `grid` asks for; issuing it returns the blocks
/// launched (x × y × z).
///
/// Safety of submitting it: `args` holds one pointer per parameter of `kernel`'s function,
/// each to a value of that parameter's type; every device address among them is live and
/// sized as the kernel uses it, and nothing else writes its outputs until it completes.
#[derive(Debug, Clone, Copy)]
pub struct Foreign<'k> {
    /// The kernel.
    pub kernel: &'k ForeignKernel,
    /// Its grid.
    pub grid: ForeignGrid,
    /// Its arguments.
    pub args: *mut *mut c_void,
}

impl sealed::Sealed for Foreign<'_> {}

impl Work for Foreign<'_> {
    type Output = u64;
    fn name(&self) -> Cow<'static, str> {
        self.kernel.name().to_owned().into()
    }
    fn units(&self) -> Result<Option<u64>> {
        Ok(Some(self.grid.units()).filter(|&u| u > 0))
    }
    fn min_sms(&self, _: &super::Scheduler) -> Option<u32> {
        self.kernel.min_sms()
    }
    fn recorded(&self) -> Result<Option<Recorded>> {
        Err(Error::Launch {
            kernel: "foreign kernel",
            reason: format!("{}: a recording for the profiler holds the library's kernels only", self.kernel.name()),
        })
    }
    unsafe fn issue(&self, _: &Runtime, at: &Target<'_>) -> Result<(Issued, u64)> {
        // SAFETY: the submitter's contract; the context is current.
        let blocks = unsafe { self.kernel.issue(self.grid, at.part.sms(), at.grid, at.stream, self.args) }?;
        Ok((Issued::alone(u32::try_from(blocks).unwrap_or(u32::MAX)), blocks))
    }
}

/// A GEMM through cuBLASLt instead of the library's kernels (see [`Runtime::prepare_blas`]):
/// one GEMM, bias and residual allowed, no activation.
///
/// Safety of submitting it: as [`Launch`] for the addresses in the params.
#[derive(Debug, Clone, Copy)]
pub struct Blas<'p>(pub &'p GemmParams);

impl sealed::Sealed for Blas<'_> {}

impl Work for Blas<'_> {
    type Output = ();
    fn name(&self) -> Cow<'static, str> {
        "cublasLt".into()
    }
    fn ask(&self) -> Ask<'_> {
        Ask::Whole
    }
    unsafe fn issue(&self, rt: &Runtime, at: &Target<'_>) -> Result<(Issued, ())> {
        // SAFETY: the submitter's contract.
        unsafe { rt.blas_gemm(self.0, at.part, at.stream) }.map(|()| (Issued::alone(0), ()))
    }
}

/// A plan captured by the submitting tenant, replayed after its earlier work: the plan
/// itself, on the tenant's origin stream ([`Replay::Plan`]), or the plan of a set the policy
/// picks for the current load, at the priority it says ([`Replay::Set`]). Issuing it returns
/// the index of the plan replayed (0 for a lone plan).
#[derive(Debug, Clone, Copy)]
pub enum Replay<'p> {
    /// This plan.
    Plan(&'p Plan),
    /// The plan of this set the policy picks.
    Set(&'p PlanSet),
}

impl sealed::Sealed for Replay<'_> {}

impl Work for Replay<'_> {
    type Output = usize;
    fn name(&self) -> Cow<'static, str> {
        "plan".into()
    }
    fn ask(&self) -> Ask<'_> {
        match self {
            Replay::Plan(_) => Ask::Origin,
            Replay::Set(set) => Ask::Plans(set.regions()),
        }
    }
    unsafe fn issue(&self, rt: &Runtime, at: &Target<'_>) -> Result<(Issued, usize)> {
        let (i, borrowed) = at.pick;
        let plan = match self {
            Replay::Plan(plan) => plan,
            Replay::Set(set) => set.plan(i, borrowed),
        };
        plan.launch(rt, at.stream).map(|()| (Issued::alone(0), i))
    }
}

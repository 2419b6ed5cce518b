//! A tenant's claims: the SMs a latency-critical tenant of a claiming policy claims ahead of
//! its work, a fixed tenant's own claims, and the continuation of a launch made while SMs it
//! may run on were claimed (docs/architecture.md, "Continuations").

use cudarc::driver::sys;

use super::{Mode, Tenant};
use crate::runtime::error::{Error, Result};
use crate::runtime::policy::{priority_level, PriorityClass};
use crate::runtime::work::{Target, Work};
use crate::runtime::{Chain, Grid, PartitionError, PartitionId, Scheduler};

impl Tenant {
    /// Issues the continuation of a library launch on `first` made while SMs it may run on
    /// were claimed ([`Chain`]): the same work again, after it, on the whole device at the
    /// least priority, taking from `counter` the units that its blocks which left for the
    /// claim did not take, laid out by its `grid`. The first launch's stream
    /// then waits for it, so nothing queued there later (this tenant's work, or a launch of
    /// lane 0 that is not this tenant's) takes from the counter while it runs. Where it cannot
    /// be issued there, it goes on the first launch's own stream, whose blocks on claimed SMs
    /// leave the rest to the last of them.
    ///
    /// # Safety
    /// The contract of the work's kind, as for the launch it continues; the context is current.
    pub(super) unsafe fn continue_after<W: Work>(
        &self,
        work: &W,
        first: &Target<'_>,
        counter: u64,
        grid: u32,
    ) -> Result<()> {
        let chain = Chain::Continues { counter, grid };
        let elsewhere = || -> Result<()> {
            let part = self.rt.pool().get(PartitionId::WHOLE)?;
            let stream = part.stream_in(self.id as usize, priority_level(false, true))?;
            self.order_to(stream)?;
            let target = Target { part, stream, grid: Grid::Auto, chain, pick: (0, false), ..*first };
            // SAFETY: the caller's contract; the stream is the target's.
            unsafe { work.issue(&self.rt, &target) }?;
            self.order_to(first.stream)
        };
        if let Err(e) = elsewhere() {
            // The counter holds the first launch's leftover units until some continuation runs.
            self.order_to(first.stream)?;
            let target = Target { chain, pick: (0, false), ..*first };
            // SAFETY: as above, on the stream the first launch went to.
            unsafe { work.issue(&self.rt, &target) }.map_err(|again| Error::Launch {
                kernel: "continuation",
                reason: format!("{e}; on its own stream: {again}"),
            })?;
        }
        self.rt.count_continuation();
        Ok(())
    }

    /// A latency-critical tenant of a policy that claims ([`crate::runtime::policy::Policy::claims`])
    /// claims the SMs of `partition`, where its next work goes, on `stream` ahead of it: lower
    /// tenants' kernels running there leave them within a work unit. The claim moves with its
    /// work and is released when it synchronizes (its request is done); a plan's replay
    /// claims its window ahead of it the same way (captures claim nothing). Claims of the
    /// whole device are none (nothing else is confined away from it), and a runtime without
    /// claim tables runs without them.
    pub(super) fn claim_for(&self, sched: &Scheduler, partition: PartitionId, stream: sys::CUstream) -> Result<()> {
        if self.class != PriorityClass::LatencyCritical || !sched.claims() || self.claimed.get() == Some(partition) {
            return Ok(());
        }
        if self.rt.claims().is_err() {
            return Ok(());
        }
        // SAFETY: a stream of the pool; the placement step made the context current.
        unsafe {
            if let Some(old) = self.claimed.get() {
                self.rt.write_claims_on(stream, old, 0)?;
            }
            self.rt.write_claims_on(stream, partition, crate::runtime::claims::claim_level(Some(self.class)))?;
        }
        self.claimed.set(Some(partition));
        Ok(())
    }

    /// Claims the SMs of this tenant's partition (a fixed placement) at its class's level
    /// ([`crate::runtime::claim_level`]), in the order of its work: the library's kernels of tenants of
    /// lower classes running there leave those SMs after the work unit in hand, until
    /// [`Tenant::release`]. Refused for a scheduled tenant (its policy places claims) and
    /// where the runtime has no claim tables (it says why).
    pub fn claim(&self) -> Result<()> {
        self.write_claim(crate::runtime::claims::claim_level(Some(self.class)))
    }

    /// Releases what [`Tenant::claim`] claimed, in the order of its work.
    pub fn release(&self) -> Result<()> {
        self.write_claim(0)
    }

    fn write_claim(&self, level: u32) -> Result<()> {
        match self.mode {
            Mode::Fixed(p) => self.rt.write_claims(p, level),
            Mode::Scheduled => {
                Err(PartitionError::Unsupported("a scheduled tenant's claims are its policy's to place".into()).into())
            }
        }
    }
}

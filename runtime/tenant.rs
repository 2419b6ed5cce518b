//! Tenants: one handle per model instance. Every launch a model makes goes through its
//! tenant, which asks the runtime where to run it; today the tenant carries one fixed
//! placement (the whole device, or a static partition).

use std::sync::Arc;

use cudarc::driver::sys;

use super::{Error, Placement, Plan, Result, Runtime};
use crate::kernels::{Kernel, Params};

/// A model instance's handle on the runtime.
#[derive(Debug, Clone)]
pub struct Tenant {
    rt: Arc<Runtime>,
    id: u32,
    placement: Placement,
}

impl Tenant {
    /// A tenant whose kernels all run as `placement` says.
    pub fn new(rt: Arc<Runtime>, id: u32, placement: Placement) -> Result<Tenant> {
        // Refuse a placement the pool cannot serve now rather than at the first launch.
        rt.pool().get(placement.partition)?.stream(placement.priority_level)?;
        Ok(Tenant { rt, id, placement })
    }

    /// Its id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The runtime it launches on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// Where its kernels run.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Launches `kernel` for this tenant.
    ///
    /// # Safety
    /// As [`Runtime::launch`]: the device addresses in `params` are live and sized for them.
    pub unsafe fn launch<P: Params>(&self, kernel: Kernel<P>, params: &P) -> Result<u32> {
        // SAFETY: forwarded contract.
        unsafe { self.rt.launch(kernel, params, self.placement) }
    }

    /// Runs a GEMM through cuBLASLt for this tenant (see [`Runtime::launch_blas`]).
    ///
    /// # Safety
    /// As [`Runtime::launch`].
    pub unsafe fn launch_blas(&self, p: &crate::kernels::abi::GemmParams) -> Result<()> {
        // SAFETY: forwarded contract.
        unsafe { self.rt.launch_blas(p, self.placement) }
    }

    /// The stream its launches go to (for capturing them into a graph).
    pub fn stream(&self) -> Result<sys::CUstream> {
        Ok(self.rt.pool().get(self.placement.partition)?.stream(self.placement.priority_level)?)
    }

    /// Captures the launches `record` makes for this tenant as a [`Plan`].
    pub fn capture<E: From<Error>>(
        &self,
        record: impl FnOnce() -> std::result::Result<(), E>,
    ) -> std::result::Result<Plan, E> {
        let stream = self.stream()?;
        Plan::capture(&self.rt, stream, record)
    }

    /// Replays a plan captured by this tenant.
    pub fn replay(&self, plan: &Plan) -> Result<()> {
        plan.launch(&self.rt, self.stream()?)
    }

    /// Waits for everything it launched.
    pub fn synchronize(&self) -> Result<()> {
        let stream = self.stream()?;
        self.rt.device().bind()?;
        // SAFETY: a live stream of the pool.
        super::error::check("cuStreamSynchronize", unsafe { sys::cuStreamSynchronize(stream) })
    }
}

//! Faults a scenario can inject into a tenant (the tenant option `fault`), and what a tenant
//! does about them: a request that fails is counted as failed and the loop goes on; a tenant
//! whose kernel faulted is stopped (each of its later requests fails at once, counted); in the
//! one-process modes the others are resumed on a new context (see [`super::inproc`]).

use anyhow::Context as _;

use super::serve::Served;
use super::spec::{FaultKind, FaultSpec};
use crate::kernels::abi::SmidParams;
use crate::kernels::{KernelId, SMID_RECORD};
use crate::runtime::{DeviceBuffer, Tenant};

/// A request that failed while its tenant goes on: counted as failed, not served.
#[derive(Debug, thiserror::Error)]
#[error("request failed: {reason}")]
pub struct RequestFailed {
    /// Why, in full.
    pub reason: String,
    /// The tenant serves no more: a closed loop stops issuing (an open loop's later arrivals
    /// still come, and fail).
    pub last: bool,
}

impl RequestFailed {
    /// From an error, with its whole chain.
    pub fn from_error(e: &anyhow::Error, last: bool) -> RequestFailed {
        RequestFailed { reason: format!("{e:#}"), last }
    }
}

/// Whether `e` left the CUDA context unusable (a kernel faulted). The driver's error is in the
/// chain wherever it was wrapped (runtime errors keep it as their source; engine errors are
/// transparent).
pub fn context_lost(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<cudarc::driver::DriverError>().is_some_and(|d| crate::runtime::is_sticky(d.0)))
}

/// One tenant's injected fault, and whether its kernel has faulted (carried to the process
/// that goes on with a one-process run whose context its fault lost).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Faults {
    spec: Option<FaultSpec>,
    issued: u32,
    /// Set once the tenant's own kernel faulted: it serves no more.
    stopped: Option<String>,
    /// Why its first failed request failed.
    first_failure: Option<String>,
}

impl Faults {
    /// For a tenant with `spec`'s fault (none: never injects).
    pub fn new(spec: Option<FaultSpec>) -> Faults {
        Faults { spec, ..Faults::default() }
    }

    /// Whether the tenant's own kernel faulted.
    pub fn stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// The failure of a request of a stopped tenant.
    pub fn refusal(&self) -> RequestFailed {
        RequestFailed { reason: self.stopped.clone().unwrap_or_else(|| "the tenant stopped".into()), last: true }
    }

    /// Why its first failed request failed, if one did.
    pub fn first_failure(&self) -> Option<&str> {
        self.first_failure.as_deref()
    }

    /// Runs one request of `served` on `t`, injecting the fault when its turn comes. Errors:
    /// [`RequestFailed`] for a request that failed while the tenant goes on (or, once stopped,
    /// each later one); any other error (the lost context of a faulted kernel included) ends
    /// the tenant's loop unless the caller recovers from it.
    pub fn request(&mut self, t: &Tenant, served: &Served) -> anyhow::Result<()> {
        if self.stopped() {
            return Err(self.refusal().into());
        }
        self.issued += 1;
        let r = match self.spec {
            Some(f) if f.at == self.issued => self.inject(f.kind, t, served),
            _ => served.request(t),
        };
        // A failed request's reason (the tenant goes on, or its own kernel faulted); not an
        // error that ends the loop or that another tenant's fault caused.
        if let Err(e) = &r {
            if self.first_failure.is_none() && (e.is::<RequestFailed>() || self.stopped()) {
                self.first_failure = Some(format!("{e:#}"));
            }
        }
        r
    }

    fn inject(&mut self, kind: FaultKind, t: &Tenant, served: &Served) -> anyhow::Result<()> {
        let failed = |e: anyhow::Error| -> anyhow::Error { RequestFailed::from_error(&e, false).into() };
        match kind {
            FaultKind::Invalid => Err(failed(served.request_too_large(t).err().context("an oversized request ran")?)),
            FaultKind::Oom => {
                let info = t.runtime().device().info();
                let bytes = info.total_memory_bytes + (1 << 30);
                let e = DeviceBuffer::<u8>::filled(t.runtime().device(), bytes as usize, 0)
                    .err()
                    .context("an allocation larger than the GPU succeeded")?;
                Err(failed(anyhow::Error::new(e).context(format!(
                    "out of GPU memory: the request asked for {} MiB; the GPU has {} MiB",
                    bytes >> 20,
                    info.total_memory_bytes >> 20
                ))))
            }
            FaultKind::Kernel => {
                let e = fault_kernel(t).err().context("a kernel writing out of bounds did not fault")?;
                self.stopped = Some(format!("the tenant stopped: its kernel faulted ({e:#})"));
                Err(e.context("an injected kernel fault"))
            }
        }
    }
}

/// Launches the test-only SM-probe kernel on `t` with its output far outside any allocation,
/// and waits: the kernel faults and the context is lost.
fn fault_kernel(t: &Tenant) -> anyhow::Result<()> {
    let rt = t.runtime();
    let units = rt.kernels().get(KernelId::SmidRecord).blocks_per_sm;
    let out = DeviceBuffer::<u32>::filled(rt.device(), units as usize, 0)?;
    // 1 TiB past a small buffer: no allocation of this process is there.
    let p = SmidParams { sm: out.ptr() + (1 << 40), spin_cycles: 0, units, _pad: 0 };
    // SAFETY: not safe by design — the kernel writes out of bounds so that the device reports
    // the fault; nothing of this process is at that address.
    unsafe { t.launch(SMID_RECORD, &p) }?;
    t.synchronize()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_written_as_its_kind_and_request() {
        let f: FaultSpec = toml::from_str("kind = \"oom\"\nat = 40").unwrap();
        assert_eq!(f, FaultSpec { kind: FaultKind::Oom, at: 40 });
        assert!(toml::from_str::<FaultSpec>("kind = \"segfault\"\nat = 1").is_err());
        assert!(toml::from_str::<FaultSpec>("kind = \"kernel\"").is_err(), "`at` is required");
    }

    #[test]
    fn the_fault_scenarios_parse() {
        let file =
            crate::harness::ScenarioFile::parse(include_str!("../scenarios/faults.toml"), "faults.toml").unwrap();
        let kinds: Vec<_> =
            file.scenarios.iter().flat_map(|s| &s.tenants).filter_map(|t| t.fault).map(|f| f.kind).collect();
        assert_eq!(kinds, [FaultKind::Kernel, FaultKind::Oom, FaultKind::Invalid]);
        assert!(crate::harness::ScenarioFile::parse(
            "[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nfault = { kind = \"oom\", at = 0 }\n",
            "t"
        )
        .is_err());
    }

    #[test]
    fn only_driver_errors_that_lose_the_context_are_sticky() {
        use cudarc::driver::{sys::CUresult, DriverError};
        let lost = anyhow::Error::new(DriverError(CUresult::CUDA_ERROR_ILLEGAL_ADDRESS)).context("tenant 1");
        assert!(context_lost(&lost));
        let engine = anyhow::Error::new(crate::engine::EngineError::Runtime(crate::runtime::Error::Driver {
            call: "cuStreamSynchronize",
            source: DriverError(CUresult::CUDA_ERROR_LAUNCH_FAILED),
        }));
        assert!(context_lost(&engine));
        assert!(!context_lost(&anyhow::Error::new(DriverError(CUresult::CUDA_ERROR_OUT_OF_MEMORY))));
        assert!(!context_lost(&anyhow::anyhow!("bad request")));
    }
}

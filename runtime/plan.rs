//! Plans: a request's launches captured once as a CUDA graph and replayed, removing the host
//! cost of each launch. Placements are fixed at capture (each kernel node keeps the partition
//! of the stream it was captured on).
//!
//! See [CUDA graphs](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__GRAPH.html).

use std::fmt;

use cudarc::driver::sys;

use super::error::{check, Error, Result};
use super::Runtime;

/// A captured, instantiated graph.
pub struct Plan {
    exec: sys::CUgraphExec,
    nodes: usize,
}

// SAFETY: an instantiated graph may be launched from any thread (one launch at a time per
// stream is the caller's ordering, as for kernels).
unsafe impl Send for Plan {}
// SAFETY: as above; the handle is never mutated.
unsafe impl Sync for Plan {}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plan({} nodes)", self.nodes)
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: instantiated in `capture`, destroyed once.
        unsafe { sys::cuGraphExecDestroy(self.exec) };
    }
}

impl Plan {
    /// Captures everything `record` enqueues on `stream` (and on streams joined to it) into a
    /// graph. `record` must only enqueue work: no synchronization, no allocation.
    pub(crate) fn capture<E: From<Error>>(
        rt: &Runtime,
        stream: sys::CUstream,
        record: impl FnOnce() -> std::result::Result<(), E>,
    ) -> std::result::Result<Plan, E> {
        rt.device().bind()?;
        // SAFETY: a live stream of this device; thread-local mode lets other threads keep
        // launching on their own streams meanwhile.
        check("cuStreamBeginCapture", unsafe {
            sys::cuStreamBeginCapture_v2(stream, sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        })?;
        let recorded = record();
        let mut graph = std::ptr::null_mut();
        // SAFETY: ends the capture begun above, whatever `record` did.
        let ended = check("cuStreamEndCapture", unsafe { sys::cuStreamEndCapture(stream, &mut graph) });
        recorded?;
        ended?;
        let mut nodes = 0usize;
        let mut exec = std::ptr::null_mut();
        // SAFETY: `graph` was produced by the capture; it is destroyed after instantiation.
        let made = unsafe {
            check("cuGraphGetNodes", sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut nodes))
                .and_then(|()| check("cuGraphInstantiate", sys::cuGraphInstantiateWithFlags(&mut exec, graph, 0)))
        };
        // SAFETY: the graph is no longer needed once instantiated (or on failure).
        unsafe { sys::cuGraphDestroy(graph) };
        made?;
        Ok(Plan { exec, nodes })
    }

    /// Launches the graph on `stream`.
    pub(crate) fn launch(&self, rt: &Runtime, stream: sys::CUstream) -> Result<()> {
        rt.device().bind()?;
        // SAFETY: a live instantiated graph and stream of this device.
        check("cuGraphLaunch", unsafe { sys::cuGraphLaunch(self.exec, stream) })
    }

    /// Nodes in the graph (kernels and dependencies).
    pub fn nodes(&self) -> usize {
        self.nodes
    }
}

//! Plans: a request's launches captured once as a CUDA graph and replayed, removing the host
//! cost of each launch. Placements are fixed at capture (each kernel node keeps the partition
//! of the stream it was captured on).
//!
//! See [CUDA graphs](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__GRAPH.html).

use std::fmt;

use cudarc::driver::{result, sys};

use super::error::{DriverContext, Error, Result};
use super::handles::{Graph, GraphExec};
use super::Runtime;

/// A captured, instantiated graph.
pub struct Plan {
    exec: GraphExec,
    nodes: usize,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plan({} nodes)", self.nodes)
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
        unsafe { result::stream::begin_capture(stream, sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL) }
            .call("cuStreamBeginCapture")?;
        let recorded = record();
        // Ends the capture begun above, whatever `record` did.
        let graph = Graph::end_capture(stream);
        recorded?;
        let graph = graph?;
        // The graph goes once instantiated (or on failure).
        Ok(Plan { exec: graph.instantiate()?, nodes: graph.nodes()? })
    }

    /// Launches the graph on `stream`.
    pub(crate) fn launch(&self, rt: &Runtime, stream: sys::CUstream) -> Result<()> {
        rt.device().bind()?;
        // SAFETY: a live instantiated graph and stream of this device.
        unsafe { result::graph::launch(self.exec.raw(), stream) }.call("cuGraphLaunch")
    }

    /// Nodes in the graph (kernels and dependencies).
    pub fn nodes(&self) -> usize {
        self.nodes
    }
}

//! The multi-tenant harness: scenarios, workloads, sharing modes (time slicing, MPS, streams,
//! static partitions, kernel-wise right-sizing) and the one metrics module.
//!
//! Nothing here yet: the harness is built on the engine, runtime and profiler (see the project's issues).

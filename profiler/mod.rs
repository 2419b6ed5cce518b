//! The offline profiler: each kernel's latency curve over SM counts and its minimum SMs
//! within ε of full-device latency, stored in one profile format.
//!
//! Nothing here yet: the profiler is built on the runtime and the engine (see the project's issues).

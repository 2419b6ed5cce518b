//! rightsize: kernel-wise right-sizing of DNN inference tenants that share one NVIDIA GPU.
//!
//! Layers, each depending only on those before it:
//! - [`kernels`]: the CUDA kernel library as data (images, parameter structs, CPU references);
//! - [`runtime`]: the device, its SM partitions (green contexts) and the launch path;
//! - [`profiler`] and [`engine`]: per-kernel latency curves; the FP16 transformer models;
//! - [`harness`]: multi-tenant experiments and their metrics;
//! - [`cli`]: the command line.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![deny(unused_must_use, unsafe_op_in_unsafe_fn)]

pub mod cli;
pub mod engine;
pub mod harness;
pub mod kernels;
pub mod profiler;
pub mod runtime;

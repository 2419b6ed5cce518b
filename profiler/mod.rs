//! The offline profiler: for every (kernel, shape) a request launches, its latency on every
//! partition size the device offers and with grid-only sizing on the whole device, and its
//! knee — the fewest SMs whose latency there, counting the switch of partition it takes to
//! get there, is within ε of the kernel's full speed (the whole device's latency, or a
//! partition's where that measured less: see [`knee`]).
//!
//! The switch is measured once per profile on the request itself ([`switch_cost_us`]): between
//! two dependent kernels of a replayed plan, a change of partition costs about a microsecond
//! or two, which is the difference between right-sizing a 5 µs decode kernel and not.
//!
//! Input is a request recorded through a tenant ([`crate::runtime::Tenant::record`]), on the
//! whole device and on each partition (where the engine picks a kernel's tiles and grid for
//! the SMs it gets, each partition's recording has the kernels chosen for it). Each distinct
//! launch is replayed on partitions of 1, 2, … groups (first group first) and on the whole
//! device, timed with CUDA events, the median of `repeats`, with the L2 cache flushed before
//! every repeat; and once more on each partition beside a [`CoRunner`] that streams memory on
//! the groups the partition leaves, so each kernel has knees on an idle device and knees
//! beside other work. One profile format ([`Profile`], JSON with a schema version); the
//! runtime's policies read it through [`Profile::min_sms`], after [`Profile::check`].
//!
//! Depends on the runtime only; the CLI records the engine's requests and passes them here.
//!
//! The parts: `profile`, the file format ([`Profile`] and its kernels' curves) and what the
//! runtime and the harness read from it (the request's time, the knees table); `knees`, the
//! latency and efficiency knees of a curve; `measure`, the timed sweep over partitions
//! ([`profile_launches`]); `switch`, the cost of a partition switch; `summary`, the Markdown
//! table of a profile; [`app`], profiles of unmodified applications; [`fit`], online fits of
//! a kernel's latency.

pub mod app;
mod co_runner;
pub mod fit;
mod knees;
mod measure;
mod profile;
mod summary;
mod switch;
#[cfg(test)]
pub(crate) mod tests;

pub use app::AppKernel;
pub use co_runner::CoRunner;
pub use knees::{efficiency_knee, knee, knee_beside};
pub use measure::{prefix_pool, profile_launches, rest_pool, Options, Sweep};
pub use profile::{KernelProfile, Point, Profile, ProfileError, RequestPoint, SCHEMA_VERSION};
pub use switch::switch_cost_us;

/// A file-name-safe form of a name ("NVIDIA H200" → "nvidia-h200").
pub fn slug(name: &str) -> String {
    let s: String = name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-")
}

/// The median of `v` (the upper one of an even count); sorts `v`.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

//! Plots of a comparison (plotters; every plot as SVG and PNG): per-tenant latency CDFs per
//! mode, STP and throughput bars per mode, a pairwise slowdown heatmap (model × co-runner) per
//! mode, and kernel latency-vs-SMs curves from a profile.
//!
//! Text is drawn with a TrueType font found on the system (DejaVu Sans or Liberation Sans, as
//! Debian's fonts-dejavu-core installs it) or named by `$RIGHTSIZE_FONT`.
//!
//! The parts: `draw`, what every plot shares (the font, the `Plot` trait and `save`, colours,
//! axes, legends, panel grids, file names); then a module per plot, its data, how it is drawn
//! and the function that makes it: `cdfs` (latency CDFs), `bars` (STP and throughput),
//! `heatmap` (pairwise slowdown), `curves` (a profile's kernel curves), `load_sweep` (SLO
//! attainment and p99 against load) and `soak` (memory and p99 over a soak).

mod bars;
mod cdfs;
mod curves;
mod draw;
mod heatmap;
mod load_sweep;
mod soak;
#[cfg(test)]
mod tests;

pub use bars::throughput_bars;
pub use cdfs::latency_cdfs;
pub use curves::kernel_curves;
pub use heatmap::slowdown_heatmap;
pub use load_sweep::sweep_plot;
pub use soak::soak_plot;

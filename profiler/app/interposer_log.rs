//! The interposer's exit log (`RIGHTSIZE_PRELOAD_LOG`): what `librightsize_preload.so` did
//! with one process's kernels. One type for both sides: the interposer counts into a
//! [`Counts<AtomicU64>`] and writes an [`Interposed`] at exit; the harness reads the same
//! type back.
//!
//! Fields a log may lack (older logs, or counts the harness did not read before) default to
//! zero; `sms`, `launches`, `placed`, `captured` and `fallback` are in every log.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// What happened to the launches one process's interposer saw. `N` is `AtomicU64` while the
/// interposer counts (from any thread), `u64` once read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts<N = u64> {
    /// Windows it made (`krisp`: one per share of the device it ran on).
    #[serde(default)]
    pub windows_made: N,
    /// Launches seen (kernels and stood-in cuBLAS calls).
    pub launches: N,
    /// Placed on its window.
    pub placed: N,
    /// Left on the whole device because no other process was busy (`krisp`).
    #[serde(default)]
    pub alone: N,
    /// Left where launched, while another process was busy, because its process is
    /// latency-critical (`krisp`; the others keep its quota free).
    #[serde(default)]
    pub critical: N,
    /// Left where launched, while other processes were busy, because its process starved
    /// beside them (`krisp`; the others keep its part free).
    #[serde(default)]
    pub starving: N,
    /// Times its process's part was set, judged starving or kept by the part's trial
    /// (`krisp`).
    #[serde(default)]
    pub starved: N,
    /// Trials of its process's part begun, one each time it was judged starving (one per
    /// number of busy processes; preload/starving.rs).
    #[serde(default)]
    pub starving_trials: N,
    /// Those whose verdict kept the part (its work ran 1.1 times faster with it).
    #[serde(default)]
    pub starving_kept: N,
    /// Those whose verdict released it (its work ran no faster with it). A trial with neither
    /// verdict ended with the run.
    #[serde(default)]
    pub starving_released: N,
    /// Trials of its process's quota begun (`krisp`, a latency-critical process: one per
    /// number of busy processes it ran beside; preload/quota.rs).
    #[serde(default)]
    pub quota_trials: N,
    /// Those trials whose verdict kept the quota.
    #[serde(default)]
    pub quota_kept: N,
    /// Those whose verdict released it (its work ran no faster with it). A trial with neither
    /// verdict ended with the run, in its kept window or its released one.
    #[serde(default)]
    pub quota_released: N,
    /// Of those released, the ones whose work did run faster with it, released because a
    /// best-effort process's work ran more than `RIGHTSIZE_QUOTA_COST`% slower meanwhile.
    #[serde(default)]
    pub quota_costly: N,
    /// The SMs its process's quota was last sized to by the others' cost while kept, where
    /// that was less than the quota (`RIGHTSIZE_QUOTA_COST`; preload/quota.rs `sized`; 0:
    /// never). A size, not a count: it stays after a verdict releases the quota.
    #[serde(default)]
    pub quota_sized_sms: N,
    /// Left where launched, while other processes were busy, because none of them was
    /// latency-critical (`krisp`: best-effort processes share every SM, as under MPS).
    #[serde(default)]
    pub shared: N,
    /// Left where launched, while another process was busy, because they had no more blocks
    /// than the window has SMs (`krisp`).
    #[serde(default)]
    pub narrow: N,
    /// Left where launched because their stream was being captured.
    pub captured: N,
    /// Left where launched because placing them failed.
    pub fallback: N,
    /// Launches through `cuLaunchKernelEx` (the rest came through `cuLaunchKernel`).
    #[serde(default)]
    pub via_ex: N,
    /// Distinct functions (per thread) resolved in the window's green context.
    #[serde(default)]
    pub functions_resolved: N,
    /// Distinct functions (per thread) kept as they were (not a `CUkernel`).
    #[serde(default)]
    pub functions_kept: N,
    /// cuBLAS calls stood in for (each also counted as a launch).
    #[serde(default)]
    pub blas_calls: N,
    /// Work captured into a graph from the window's stream (`RIGHTSIZE_GRAPHS=1`).
    #[serde(default)]
    pub captured_placed: N,
}

impl Counts<AtomicU64> {
    /// All zero.
    pub const fn new() -> Self {
        Counts {
            windows_made: AtomicU64::new(0),
            launches: AtomicU64::new(0),
            placed: AtomicU64::new(0),
            alone: AtomicU64::new(0),
            critical: AtomicU64::new(0),
            starving: AtomicU64::new(0),
            starved: AtomicU64::new(0),
            starving_trials: AtomicU64::new(0),
            starving_kept: AtomicU64::new(0),
            starving_released: AtomicU64::new(0),
            quota_trials: AtomicU64::new(0),
            quota_kept: AtomicU64::new(0),
            quota_released: AtomicU64::new(0),
            quota_costly: AtomicU64::new(0),
            quota_sized_sms: AtomicU64::new(0),
            shared: AtomicU64::new(0),
            narrow: AtomicU64::new(0),
            captured: AtomicU64::new(0),
            fallback: AtomicU64::new(0),
            via_ex: AtomicU64::new(0),
            functions_resolved: AtomicU64::new(0),
            functions_kept: AtomicU64::new(0),
            blas_calls: AtomicU64::new(0),
            captured_placed: AtomicU64::new(0),
        }
    }

    /// The counts now (each read on its own: counting may go on).
    pub fn load(&self) -> Counts {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            windows_made: n(&self.windows_made),
            launches: n(&self.launches),
            placed: n(&self.placed),
            alone: n(&self.alone),
            critical: n(&self.critical),
            starving: n(&self.starving),
            starved: n(&self.starved),
            starving_trials: n(&self.starving_trials),
            starving_kept: n(&self.starving_kept),
            starving_released: n(&self.starving_released),
            quota_trials: n(&self.quota_trials),
            quota_kept: n(&self.quota_kept),
            quota_released: n(&self.quota_released),
            quota_costly: n(&self.quota_costly),
            quota_sized_sms: n(&self.quota_sized_sms),
            shared: n(&self.shared),
            narrow: n(&self.narrow),
            captured: n(&self.captured),
            fallback: n(&self.fallback),
            via_ex: n(&self.via_ex),
            functions_resolved: n(&self.functions_resolved),
            functions_kept: n(&self.functions_kept),
            blas_calls: n(&self.blas_calls),
            captured_placed: n(&self.captured_placed),
        }
    }
}

/// What the interposer did with one process's kernels (its log, written at exit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interposed {
    /// SMs of its window (`static`; 0 on a board, whose windows follow the load).
    pub sms: u32,
    /// Slots of its board (`krisp`; 0 without one).
    #[serde(default)]
    pub board_slots: u64,
    /// What happened to its launches.
    #[serde(flatten)]
    pub counts: Counts,
    /// Its online fits (`RIGHTSIZE_FIT=1`; `None` without them).
    #[serde(default)]
    pub fits: Option<FitsSeen>,
}

/// What a process's online fits saw (`RIGHTSIZE_FIT=1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FitsSeen {
    /// Kernels, by function and launch shape.
    pub kernels: u64,
    /// Those with a model of their latency against SMs (seen on two SM counts), so a knee.
    pub modelled: u64,
    /// Launches timed and read back.
    pub completions: u64,
    /// How many kernels have each knee (SMs).
    #[serde(default)]
    pub knees: BTreeMap<u32, u64>,
}

impl Interposed {
    /// The log's text: JSON on one line, `": "` and `", "` between keys and values (as the
    /// interposer has always written it).
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, Spaced);
        self.serialize(&mut ser).expect("counts serialize");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

/// serde_json's compact format with a space after each `:` and `,`.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_object_key<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn begin_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        self.begin_object_key(writer, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_reads_back_as_written() {
        let counts = Counts::<AtomicU64>::new();
        counts.launches.fetch_add(10, Ordering::Relaxed);
        counts.placed.fetch_add(4, Ordering::Relaxed);
        counts.blas_calls.fetch_add(2, Ordering::Relaxed);
        let fits = FitsSeen { kernels: 9, modelled: 5, completions: 40, knees: [(16, 3), (132, 2)].into() };
        let log = Interposed { sms: 64, board_slots: 2, counts: counts.load(), fits: Some(fits) };
        let text = log.to_json();
        assert_eq!(
            text,
            "{\"sms\": 64, \"board_slots\": 2, \"windows_made\": 0, \"launches\": 10, \"placed\": 4, \"alone\": 0, \
             \"critical\": 0, \"starving\": 0, \"starved\": 0, \"starving_trials\": 0, \"starving_kept\": 0, \"starving_released\": 0, \"quota_trials\": 0, \"quota_kept\": 0, \"quota_released\": 0, \"quota_costly\": 0, \"quota_sized_sms\": 0, \"shared\": 0, \"narrow\": 0, \"captured\": 0, \"fallback\": 0, \"via_ex\": 0, \
             \"functions_resolved\": 0, \"functions_kept\": 0, \"blas_calls\": 2, \"captured_placed\": 0, \
             \"fits\": {\"kernels\": 9, \"modelled\": 5, \"completions\": 40, \"knees\": {\"16\": 3, \"132\": 2}}}"
        );
        assert_eq!(serde_json::from_str::<Interposed>(&text).unwrap(), log);
        let none = Interposed { fits: None, ..log };
        assert!(none.to_json().ends_with("\"captured_placed\": 0, \"fits\": null}"));
        let empty = FitsSeen::default();
        assert!(Interposed { fits: Some(empty), ..none }.to_json().ends_with("\"knees\": {}}}"));
    }
}

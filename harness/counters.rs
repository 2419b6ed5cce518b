//! GPU counters sampled through NVML while a run goes on: utilization, SM clock, memory,
//! PCIe throughput and power, and on Hopper and newer the GPM metrics (SM utilization and
//! occupancy, tensor-core activity, DRAM bandwidth). A counter the driver refuses is listed
//! with the reason instead of a value.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvml_wrapper::enum_wrappers::device::{Clock, PcieUtilCounter};
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::Nvml;
use serde::{Deserialize, Serialize};

/// One counter over a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// Mean of its samples.
    pub mean: f64,
    /// Largest sample.
    pub max: f64,
    /// How many samples.
    pub samples: u32,
}

/// Every counter over a run, by name (the name ends with its unit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    /// Milliseconds between samples.
    pub period_ms: u32,
    /// Counters that gave values.
    pub values: BTreeMap<String, Stat>,
    /// Counters the driver refused, with its reason.
    pub refused: BTreeMap<String, String>,
}

/// The plain NVML counters, in the order reports list them.
pub const NVML_COUNTERS: &[&str] = &[
    "gpu utilization %",
    "memory utilization %",
    "sm clock MHz",
    "memory used GiB",
    "pcie tx GB/s",
    "pcie rx GB/s",
    "power W",
];

/// The GPM metrics sampled, with their names.
const GPM: &[(GpmMetricId, &str)] = &[
    (GpmMetricId::SmUtil, "gpm sm utilization %"),
    (GpmMetricId::SmOccupancy, "gpm sm occupancy %"),
    (GpmMetricId::AnyTensorUtil, "gpm tensor activity %"),
    (GpmMetricId::DramBwUtil, "gpm dram bandwidth %"),
];

/// Collects timed samples and summarizes them into [`Counters`].
#[derive(Debug, Default)]
struct Acc {
    samples: Vec<(Instant, &'static str, f64)>,
    refused: BTreeMap<String, String>,
}

impl Acc {
    fn add(&mut self, name: &'static str, v: Result<f64, String>) {
        match v {
            Ok(v) if v.is_finite() => self.samples.push((Instant::now(), name, v)),
            Ok(_) => {}
            Err(why) => {
                self.refused.entry(name.to_string()).or_insert(why);
            }
        }
    }

    /// Mean and max of each counter over the samples taken at or after `from` (all, if none).
    fn finish(self, period: Duration, from: Option<Instant>) -> Counters {
        let mut sums: BTreeMap<String, (f64, f64, u32)> = BTreeMap::new();
        for &(at, name, v) in &self.samples {
            if from.is_some_and(|f| at < f) {
                continue;
            }
            let e = sums.entry(name.to_string()).or_insert((0.0, f64::NEG_INFINITY, 0));
            e.0 += v;
            e.1 = e.1.max(v);
            e.2 += 1;
        }
        let mut refused = self.refused;
        // A counter that gave values at some point is not refused.
        refused.retain(|k, _| !self.samples.iter().any(|s| s.1 == k));
        Counters {
            period_ms: period.as_millis() as u32,
            values: sums
                .into_iter()
                .map(|(k, (sum, max, n))| (k, Stat { mean: sum / f64::from(n), max, samples: n }))
                .collect(),
            refused,
        }
    }
}

/// Samples the counters of the GPU at PCI bus id `bus` (NVML's first GPU if unknown) every
/// `period` on a thread until stopped.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Acc>,
    period: Duration,
}

impl Sampler {
    /// Starts sampling. If NVML cannot be loaded, the result says so (every counter refused).
    pub fn start(bus: Option<String>, period: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || sample(bus.as_deref(), period, &flag));
        Sampler { stop, handle, period }
    }

    /// Stops sampling (taking one last sample) and returns the counters over the samples taken
    /// from `from` on (over all samples if `None`): a run's measured part, not its set-up.
    pub fn stop(self, from: Option<Instant>) -> Counters {
        self.stop.store(true, Ordering::SeqCst);
        let acc = self.handle.join().unwrap_or_else(|_| {
            let mut acc = Acc::default();
            acc.add("nvml", Err("the sampling thread panicked".into()));
            acc
        });
        acc.finish(self.period, from)
    }
}

fn sample(bus: Option<&str>, period: Duration, stop: &AtomicBool) -> Acc {
    let mut acc = Acc::default();
    let nvml = match Nvml::init() {
        Ok(n) => n,
        Err(e) => {
            acc.add("nvml", Err(format!("NVML is unavailable: {e}")));
            return acc;
        }
    };
    let device = match bus {
        Some(bus) => nvml.device_by_pci_bus_id(bus),
        None => nvml.device_by_index(0),
    };
    let device = match device {
        Ok(d) => d,
        Err(e) => {
            acc.add("nvml", Err(format!("NVML cannot find the GPU ({}): {e}", bus.unwrap_or("index 0"))));
            return acc;
        }
    };
    let gpm = match device.gpm_support() {
        Ok(true) => Ok(()),
        Ok(false) => Err("this GPU does not support GPM".to_string()),
        Err(e) => Err(e.to_string()),
    };
    let mut previous = match &gpm {
        Ok(()) => device.gpm_sample().map_err(|e| e.to_string()),
        Err(why) => Err(why.clone()),
    };
    let mut next = Instant::now() + period;
    loop {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(10)));
            if !stop.load(Ordering::SeqCst) {
                continue;
            }
        }
        next += period;
        let why = |e: nvml_wrapper::error::NvmlError| e.to_string();
        let util = device.utilization_rates().map_err(why);
        acc.add(NVML_COUNTERS[0], util.as_ref().map(|u| f64::from(u.gpu)).map_err(Clone::clone));
        acc.add(NVML_COUNTERS[1], util.as_ref().map(|u| f64::from(u.memory)).map_err(Clone::clone));
        acc.add(NVML_COUNTERS[2], device.clock_info(Clock::SM).map(f64::from).map_err(why));
        acc.add(NVML_COUNTERS[3], device.memory_info().map(|m| m.used as f64 / (1u64 << 30) as f64).map_err(why));
        // NVML reports PCIe throughput in KB/s.
        let pcie = |c| device.pcie_throughput(c).map(|kb| f64::from(kb) * 1e3 / 1e9).map_err(why);
        acc.add(NVML_COUNTERS[4], pcie(PcieUtilCounter::Send));
        acc.add(NVML_COUNTERS[5], pcie(PcieUtilCounter::Receive));
        acc.add(NVML_COUNTERS[6], device.power_usage().map(|mw| f64::from(mw) / 1e3).map_err(why));
        match device.gpm_sample() {
            Ok(current) => {
                if let Ok(prev) = &previous {
                    let ids: Vec<GpmMetricId> = GPM.iter().map(|(id, _)| *id).collect();
                    match nvml_wrapper::gpm::gpm_metrics_get(&nvml, prev, &current, &ids) {
                        Ok(results) => {
                            for ((_, name), r) in GPM.iter().zip(results) {
                                acc.add(name, r.map(|m| m.value).map_err(why));
                            }
                        }
                        Err(e) => GPM.iter().for_each(|(_, name)| acc.add(name, Err(e.to_string()))),
                    }
                }
                previous = Ok(current);
            }
            Err(e) => {
                let reason = match &gpm {
                    Err(why) => why.clone(),
                    Ok(()) => e.to_string(),
                };
                GPM.iter().for_each(|(_, name)| acc.add(name, Err(reason.clone())));
            }
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_are_mean_and_max_and_a_counter_with_values_is_not_refused() {
        let mut acc = Acc::default();
        acc.add("power W", Ok(100.0));
        acc.add("power W", Ok(300.0));
        acc.add("power W", Err("transient".into()));
        acc.add("gpm sm occupancy %", Err("Not supported".into()));
        acc.add("sm clock MHz", Ok(f64::NAN));
        let c = acc.finish(Duration::from_millis(50), None);
        assert_eq!(c.period_ms, 50);
        assert_eq!(c.values["power W"], Stat { mean: 200.0, max: 300.0, samples: 2 });
        assert!(!c.refused.contains_key("power W"));
        assert_eq!(c.refused["gpm sm occupancy %"], "Not supported");
        assert!(!c.values.contains_key("sm clock MHz"));
    }

    #[test]
    fn only_samples_from_the_start_of_the_measured_part_count() {
        let mut acc = Acc::default();
        acc.add("power W", Ok(500.0));
        std::thread::sleep(Duration::from_millis(2));
        let start = Instant::now();
        acc.add("power W", Ok(100.0));
        acc.add("power W", Ok(200.0));
        let c = acc.finish(Duration::from_millis(50), Some(start));
        assert_eq!(c.values["power W"], Stat { mean: 150.0, max: 200.0, samples: 2 });
    }

    #[test]
    fn without_a_driver_every_counter_is_reported_refused_not_lost() {
        // On a machine with a GPU this samples for real; either way it returns, and every
        // counter is either a value or a reason.
        let s = Sampler::start(None, Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(20));
        let c = s.stop(None);
        if c.refused.contains_key("nvml") {
            assert!(c.values.is_empty());
            assert!(c.refused["nvml"].contains("NVML"), "{:?}", c.refused);
        } else {
            for name in NVML_COUNTERS.iter().chain(GPM.iter().map(|(_, n)| n)) {
                assert!(c.values.contains_key(*name) || c.refused.contains_key(*name), "{name}");
            }
        }
    }
}

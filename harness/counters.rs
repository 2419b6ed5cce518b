//! What is sampled of the GPU (through NVML) and of the host while a run goes on:
//!
//! - [`Sampler`]: a run's counters — utilization, SM clock, memory, PCIe throughput and
//!   power, and on Hopper and newer the GPM metrics (SM utilization and occupancy,
//!   tensor-core activity, DRAM bandwidth) — sampled on a thread, their mean and max over the
//!   run. A counter the driver refuses is listed with the reason instead of a value.
//! - [`Machine`]: what a soak window's end reads — this process's resident memory, the GPU's
//!   used memory, SM clock, temperature and processes, the host's load — and the window's
//!   share of the host's counters ([`HostTotals`]: context switches, CPU time elsewhere and
//!   stolen).
//!
//! Both find the GPU and read the counters they share (SM clock, used memory) the same way.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvml_wrapper::enum_wrappers::device::{Clock, PcieUtilCounter, TemperatureSensor};
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
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

/// The GPU at PCI bus id `bus` (NVML's first GPU if unknown).
fn gpu<'n>(nvml: &'n Nvml, bus: Option<&str>) -> Result<Device<'n>, NvmlError> {
    match bus {
        Some(bus) => nvml.device_by_pci_bus_id(bus),
        None => nvml.device_by_index(0),
    }
}

/// The GPU's used memory, every process's, bytes.
fn used_bytes(device: &Device<'_>) -> Result<f64, NvmlError> {
    device.memory_info().map(|m| m.used as f64)
}

/// The GPU's SM clock, MHz.
fn sm_clock_mhz(device: &Device<'_>) -> Result<f64, NvmlError> {
    device.clock_info(Clock::SM).map(f64::from)
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
    let device = match gpu(&nvml, bus) {
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
        acc.add(NVML_COUNTERS[2], sm_clock_mhz(&device).map_err(why));
        acc.add(NVML_COUNTERS[3], used_bytes(&device).map(|b| b / (1u64 << 30) as f64).map_err(why));
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

/// What a soak window's end samples of the machine (none once the tenants finished); the
/// host's counters are the window's share.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Machine {
    pub(crate) rss_mib: Option<f64>,
    pub(crate) gpu_used_mib: Option<f64>,
    pub(crate) sm_clock_mhz: Option<f64>,
    pub(crate) temperature_c: Option<f64>,
    pub(crate) involuntary_switches: Option<u64>,
    pub(crate) load1: Option<f64>,
    pub(crate) other_cpu: Option<f64>,
    pub(crate) steal_cpu: Option<f64>,
    pub(crate) gpu_processes: Option<u32>,
}

/// The host's counters so far, of which a window takes its share.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostTotals {
    at: Instant,
    /// Involuntary context switches of this process's threads (those that exited included).
    switches: Option<u64>,
    /// This process's CPU time, user and system, s.
    own_s: Option<f64>,
    /// The host's busy and stolen CPU time, s.
    cpu: Option<CpuTimes>,
    /// The system clock, µs from the epoch (NVML's samples are stamped on it).
    epoch_us: u64,
}

impl Machine {
    /// The machine at the end of a window whose host counters were `then` at its start and
    /// are `now` (read just before): the window's share of them, and the rest read now (the
    /// GPU's processes since the window's start).
    pub(crate) fn at_end(nvml: &Option<Nvml>, then: &HostTotals, now: &HostTotals) -> Machine {
        let (involuntary_switches, other_cpu, steal_cpu) = now.since(then);
        Machine { involuntary_switches, other_cpu, steal_cpu, ..machine(nvml, then.epoch_us) }
    }
}

impl HostTotals {
    pub(crate) fn now() -> HostTotals {
        let usage = rusage();
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        HostTotals {
            at: Instant::now(),
            switches: usage.and_then(|u| u64::try_from(u.ru_nivcsw).ok()),
            own_s: usage.map(|u| seconds(u.ru_utime) + seconds(u.ru_stime)),
            cpu: std::fs::read_to_string("/proc/stat").ok().and_then(|t| CpuTimes::parse(&t, clock_ticks()?)),
            epoch_us: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        }
    }

    /// The switches since `before`, and the cores busy elsewhere and stolen meanwhile.
    fn since(&self, before: &HostTotals) -> (Option<u64>, Option<f64>, Option<f64>) {
        let dt = (self.at - before.at).as_secs_f64();
        let per_s = |x: f64| (dt > 0.0).then(|| x / dt);
        let cpu = self.cpu.zip(before.cpu);
        let own = self.own_s.zip(before.own_s).map(|(now, then)| now - then);
        let other = cpu.zip(own).and_then(|((now, then), own)| per_s((now.busy_s - then.busy_s - own).max(0.0)));
        (
            self.switches.zip(before.switches).map(|(now, then)| now.saturating_sub(then)),
            other,
            cpu.and_then(|(now, then)| per_s(now.steal_s - then.steal_s)),
        )
    }
}

/// The host's CPU time over every core, from `/proc/stat`'s first line, s.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CpuTimes {
    /// User (guests included), nice, system, interrupts and soft interrupts.
    busy_s: f64,
    /// Taken by the hypervisor for others.
    steal_s: f64,
}

impl CpuTimes {
    /// Reads `/proc/stat`'s text, whose times are in `ticks` a second.
    fn parse(text: &str, ticks: f64) -> Option<CpuTimes> {
        let mut fields = text.lines().next()?.split_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let t: Vec<f64> = fields.map_while(|f| f.parse::<u64>().ok()).map(|n| n as f64 / ticks).collect();
        // user nice system idle iowait irq softirq steal …
        (t.len() >= 8).then(|| CpuTimes { busy_s: t[0] + t[1] + t[2] + t[5] + t[6], steal_s: t[7] })
    }
}

/// The kernel's clock ticks a second, in which `/proc/stat` counts.
fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (n > 0).then_some(n as f64)
}

/// The resident memory of this process, MiB (Linux).
fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// This process's resource usage so far, every thread's (those that exited included).
fn rusage() -> Option<libc::rusage> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid place for one `rusage`, which getrusage fills on success.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    // SAFETY: filled when getrusage succeeded (and zeroed, a valid `rusage`, in any case).
    ok.then(|| unsafe { usage.assume_init() })
}

/// The host's one-minute load average (Linux).
fn load1() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// This process's resident memory and, from NVML, the GPU's used memory (every process's),
/// SM clock and temperature, and the processes on it since `since_us` (µs from the epoch); the
/// host's load; what cannot be read is `None`. The host's counters are left for the caller,
/// which takes the window's share.
fn machine(nvml: &Option<Nvml>, since_us: u64) -> Machine {
    let gpu = nvml.as_ref().and_then(|n| gpu(n, None).ok());
    Machine {
        rss_mib: rss_mib(),
        gpu_used_mib: gpu.as_ref().and_then(|d| used_bytes(d).ok()).map(|b| b / f64::from(1u32 << 20)),
        sm_clock_mhz: gpu.as_ref().and_then(|d| sm_clock_mhz(d).ok()),
        temperature_c: gpu.as_ref().and_then(|d| d.temperature(TemperatureSensor::Gpu).ok()).map(f64::from),
        load1: load1(),
        gpu_processes: gpu.as_ref().and_then(|d| gpu_processes(d, since_us)),
        ..Machine::default()
    }
}

/// The processes NVML sampled using the device's SMs since `since_us`, with those holding a
/// context on it now (`None` where it cannot tell).
fn gpu_processes(device: &Device<'_>, since_us: u64) -> Option<u32> {
    let samples = match device.process_utilization_stats(since_us) {
        Ok(samples) => samples,
        // No sample since then.
        Err(NvmlError::NotFound) => Vec::new(),
        Err(_) => return None,
    };
    // Where the list of contexts is refused (a container may be), the samples alone.
    let running = device.running_compute_processes().unwrap_or_default();
    let busy = samples.iter().filter(|s| s.sm_util > 0 && s.timestamp >= since_us).map(|s| s.pid);
    Some(distinct(busy.chain(running.iter().map(|p| p.pid))))
}

/// How many distinct process ids.
fn distinct(pids: impl Iterator<Item = u32>) -> u32 {
    let set: std::collections::BTreeSet<u32> = pids.collect();
    u32::try_from(set.len()).unwrap_or(u32::MAX)
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

    #[test]
    fn host_cpu_times_come_from_proc_stat_and_a_window_takes_its_share() {
        let stat = "cpu  1000 20 300 50000 40 5 7 60 0 0\ncpu0 500 10 150 25000 20 2 3 30 0 0\nintr 1\n";
        assert_eq!(CpuTimes::parse(stat, 100.0), Some(CpuTimes { busy_s: 13.32, steal_s: 0.6 }));
        assert_eq!(CpuTimes::parse("cpu 1 2 3\n", 100.0), None, "too few fields");
        assert_eq!(CpuTimes::parse("intr 1 2 3 4 5 6 7 8\n", 100.0), None, "not the cpu line");
        // Ten seconds in which the host was busy 25 core-seconds, 5 of them this process's.
        let at = Instant::now();
        let then = HostTotals {
            at,
            switches: Some(3),
            own_s: Some(2.0),
            cpu: Some(CpuTimes { busy_s: 100.0, steal_s: 1.0 }),
            epoch_us: 1,
        };
        let now = HostTotals {
            at: at + Duration::from_secs(10),
            switches: Some(10),
            own_s: Some(7.0),
            cpu: Some(CpuTimes { busy_s: 125.0, steal_s: 6.0 }),
            epoch_us: 10_000_001,
        };
        let (switches, other, steal) = now.since(&then);
        assert_eq!(switches, Some(7));
        assert!((other.unwrap() - 2.0).abs() < 1e-12 && (steal.unwrap() - 0.5).abs() < 1e-12, "{other:?} {steal:?}");
        assert_eq!(now.since(&HostTotals { cpu: None, ..then }), (Some(7), None, None), "no /proc/stat");
        // Read here, on Linux: the host's totals grow.
        let (a, b) = (HostTotals::now(), HostTotals::now());
        assert!(a.cpu.is_some() && a.own_s.is_some() && b.cpu.unwrap().busy_s >= a.cpu.unwrap().busy_s);
        assert!(a.epoch_us > 1_700_000_000_000_000 && b.epoch_us >= a.epoch_us, "{}", a.epoch_us);
        // This process sampled twice and holding a context, another once: two.
        assert_eq!(distinct([7, 9, 7].into_iter().chain([7])), 2);
        assert_eq!(distinct(std::iter::empty()), 0);
    }
}

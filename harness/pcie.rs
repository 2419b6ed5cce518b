//! PCIe pressure: background threads copying between pinned host memory and the device, each
//! on its own stream, busy for a chosen share of the time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::sys;

use super::scenario::PcieLoad;
use crate::runtime::{check, Device, DeviceBuffer, Stream};

/// Pinned host memory, freed on drop.
struct Pinned {
    ptr: *mut std::ffi::c_void,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: allocated by cuMemAllocHost, freed once.
        unsafe { sys::cuMemFreeHost(self.ptr) };
    }
}

/// A running background load; stops (and joins its threads) on [`Pressure::stop`] or drop.
#[derive(Debug)]
pub struct Pressure {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    started: Instant,
    threads: Vec<std::thread::JoinHandle<anyhow::Result<()>>>,
}

/// What a background load achieved.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct PressureReport {
    /// Bytes moved per second, both directions together, GB/s.
    pub gb_per_s: f64,
}

impl Pressure {
    /// Starts `load` on `device` (its primary context).
    pub fn start(device: &Device, load: PcieLoad) -> anyhow::Result<Pressure> {
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let n = (load.mib as usize) << 20;
        let mut threads = Vec::new();
        for _ in 0..load.threads {
            device.bind()?;
            let dev_buf = DeviceBuffer::<u8>::filled(device, n, 1)?;
            let mut host = std::ptr::null_mut();
            // SAFETY: the primary context is current; writes one pointer.
            check("cuMemAllocHost", unsafe { sys::cuMemAllocHost_v2(&mut host, n) })?;
            let host = Pinned { ptr: host };
            let stream = Stream::new(0)?;
            let ctx = device.context().clone();
            let (stop, bytes) = (stop.clone(), bytes.clone());
            threads.push(std::thread::spawn(move || -> anyhow::Result<()> {
                let (host, dev_buf, stream) = (host, dev_buf, stream);
                ctx.bind_to_thread().map_err(|e| anyhow::anyhow!("cuCtxSetCurrent: {e:?}"))?;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    // SAFETY: a pinned host buffer and a device buffer of n bytes each, and
                    // a live stream; the copies finish before the next iteration.
                    unsafe {
                        check(
                            "cuMemcpyHtoDAsync",
                            sys::cuMemcpyHtoDAsync_v2(dev_buf.ptr(), host.ptr, n, stream.raw()),
                        )?;
                        check(
                            "cuMemcpyDtoHAsync",
                            sys::cuMemcpyDtoHAsync_v2(host.ptr, dev_buf.ptr(), n, stream.raw()),
                        )?;
                        check("cuStreamSynchronize", sys::cuStreamSynchronize(stream.raw()))?;
                    }
                    bytes.fetch_add(2 * n as u64, Ordering::Relaxed);
                    if load.level < 1.0 {
                        let busy = t.elapsed().as_secs_f64();
                        let idle = busy * (1.0 - load.level) / load.level;
                        let until = Instant::now() + Duration::from_secs_f64(idle);
                        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                            std::thread::sleep(Duration::from_millis(1).min(until - Instant::now()));
                        }
                    }
                }
                Ok(())
            }));
        }
        Ok(Pressure { stop, bytes, started: Instant::now(), threads })
    }

    /// Stops the copies and reports the bandwidth they used.
    pub fn stop(mut self) -> anyhow::Result<PressureReport> {
        self.stop.store(true, Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        for t in self.threads.drain(..) {
            t.join().map_err(|_| anyhow::anyhow!("a PCIe load thread panicked"))??;
        }
        Ok(PressureReport { gb_per_s: self.bytes.load(Ordering::Relaxed) as f64 / secs / 1e9 })
    }
}

impl Drop for Pressure {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

// SAFETY: the pinned pointer is only used by the thread that owns it.
unsafe impl Send for Pinned {}

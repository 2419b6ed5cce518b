//! What the benches share: checking driver calls, the DRAM bandwidth they compare against,
//! medians, and writing their tables.

use cudarc::driver::sys;
use rightsize::runtime::{Device, DeviceBuffer, EventTimer};

/// Panics with `what` unless `r` is success.
pub fn check(r: sys::CUresult, what: &str) {
    assert_eq!(r, sys::CUresult::CUDA_SUCCESS, "{what}");
}

/// DRAM bandwidth in bytes/s: a 2 GiB device-to-device copy on `stream`, bytes read plus
/// written, the median of 5.
pub fn dram_bandwidth(device: &Device, stream: sys::CUstream) -> f64 {
    let n = 2usize << 30;
    let (a, b) = (DeviceBuffer::<u8>::filled(device, n, 1).unwrap(), DeviceBuffer::<u8>::filled(device, n, 0).unwrap());
    let timer = EventTimer::new(device).expect("timer");
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let copy = || {
                // SAFETY: two live buffers of n bytes on this device.
                check(unsafe { sys::cuMemcpyDtoDAsync_v2(b.ptr(), a.ptr(), n, stream) }, "copy");
                Ok::<(), rightsize::runtime::Error>(())
            };
            // SAFETY: the copy is enqueued on `stream` and ends there.
            unsafe { timer.time_ms(stream, copy) }.expect("timing")
        })
        .collect();
    2.0 * n as f64 / (median(&mut v) / 1e3)
}

/// The median, or NaN when there are no samples (a criterion filter left the case out).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Prints a bench's Markdown table, and writes it to `$RIGHTSIZE_BENCH_TABLE` when set.
pub fn emit(table: &str) {
    println!("\n{table}");
    if let Ok(path) = std::env::var("RIGHTSIZE_BENCH_TABLE") {
        std::fs::write(&path, table).unwrap_or_else(|e| eprintln!("cannot write {path}: {e}"));
    }
}

//! Host cost of the interposer: an empty kernel launched through the driver's `cuLaunchKernel`
//! against the interposer's (placed on a 16-SM partition: two event records, two waits, and
//! for a `CUkernel` two context switches), for a module's `CUfunction` (as Triton launches)
//! and a library's `CUkernel` (as the CUDA runtime does). Prints the difference per launch.
//!
//! `cargo bench -p rightsize-preload` on a GPU host (or `gpu-bin/bench-interpose --bench`).

use std::ffi::c_void;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use cudarc::driver::sys::{self, CUresult};
use rightsize::runtime::Device;

const PTX: &std::ffi::CStr = c".version 7.0\n.target sm_70\n.address_size 64\n.visible .entry empty()\n{\n  ret;\n}\n";

/// Launches between synchronizations, so the queue never fills and blocks the host.
const CHUNK: u64 = 256;

fn ok(what: &str, r: CUresult) {
    assert_eq!(r, CUresult::CUDA_SUCCESS, "{what}");
}

fn bench(c: &mut Criterion) {
    let _device = match Device::open(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("interposer bench skipped: {e}");
            return;
        }
    };
    // SAFETY: set before the interposer reads its settings (first placed launch), one thread.
    unsafe { std::env::set_var("RIGHTSIZE_SMS", "16") };
    let (mut module, mut function, mut library, mut kernel, mut stream) =
        (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: loads the PTX above into the primary context (current) and as a library.
    unsafe {
        ok("cuModuleLoadData", sys::cuModuleLoadData(&mut module, PTX.as_ptr().cast()));
        ok("cuModuleGetFunction", sys::cuModuleGetFunction(&mut function, module, c"empty".as_ptr()));
        ok(
            "cuLibraryLoadData",
            sys::cuLibraryLoadData(
                &mut library,
                PTX.as_ptr().cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            ),
        );
        ok("cuLibraryGetKernel", sys::cuLibraryGetKernel(&mut kernel, library, c"empty".as_ptr()));
        ok("cuStreamCreate", sys::cuStreamCreate(&mut stream, 1));
    }
    type Launch = unsafe extern "C" fn(
        sys::CUfunction,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        u32,
        sys::CUstream,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> CUresult;
    // SAFETY: the driver's own cuLaunchKernel, looked up in libcuda (loaded by Device::open).
    let driver: Launch = unsafe {
        let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        let p = libc::dlsym(lib, c"cuLaunchKernel".as_ptr());
        assert!(!p.is_null(), "the driver's cuLaunchKernel");
        std::mem::transmute::<*mut c_void, Launch>(p)
    };
    let interposed: Launch = rightsize_preload::cuLaunchKernel;
    let mut g = c.benchmark_group("interpose");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let mut means = Vec::new();
    for (what, f) in [("module function", function), ("library kernel", kernel.cast())] {
        for (how, launch) in [("driver", driver), ("interposed, 16 SMs", interposed)] {
            let name = format!("{how}: {what}");
            let mut per = Duration::ZERO;
            g.bench_function(&name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut done = 0;
                    while done < iters {
                        let n = CHUNK.min(iters - done);
                        let t0 = Instant::now();
                        for _ in 0..n {
                            // SAFETY: an empty kernel without parameters on a live stream.
                            let r = unsafe {
                                launch(f, 1, 1, 1, 32, 1, 1, 0, stream, std::ptr::null_mut(), std::ptr::null_mut())
                            };
                            ok(&name, r);
                        }
                        total += t0.elapsed();
                        // SAFETY: a live stream.
                        ok("cuStreamSynchronize", unsafe { sys::cuStreamSynchronize(stream) });
                        done += n;
                    }
                    per = total / iters.max(1) as u32;
                    total
                })
            });
            means.push((name, per));
        }
    }
    g.finish();
    for pair in means.chunks(2) {
        let ((a, da), (b, db)) = (&pair[0], &pair[1]);
        println!(
            "{b}: {:.2} µs per launch against {a}: {:.2} µs — {:+.2} µs",
            db.as_secs_f64() * 1e6,
            da.as_secs_f64() * 1e6,
            (db.as_secs_f64() - da.as_secs_f64()) * 1e6
        );
    }
    println!("{}", rightsize_preload::report());
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);

//! Host cost of the launch path: a bare `cuLaunchKernel` against `Runtime::launch` on the
//! whole device and on a green-context partition, same kernel and arguments; then the
//! scheduled path (policy decision, completion tracking, a partition switch per launch) and
//! the host cost of replaying a plan, per kernel.
//!
//! Run on a GPU host: `cargo bench --bench launch` (or the binary from scripts/gpu-build.sh
//! with `--bench`). Without a GPU it prints why and exits.

use std::ffi::c_void;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use cudarc::driver::sys;
use half::f16;
use rightsize::kernels::{
    abi::{RsTicket, VectorAddParams},
    KernelId, VECTOR_ADD_F16,
};
use rightsize::runtime::{Device, DeviceBuffer, Grid, PartitionId, Placement, PoolSpec, Runtime};

#[path = "common/speeds.rs"]
mod speeds;

/// Launches between synchronizations, so the queue never fills and blocks the host.
const CHUNK: u64 = 256;

fn timed(iters: u64, sync: &dyn Fn(), mut launch: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = CHUNK.min(iters - done);
        let t0 = Instant::now();
        for _ in 0..n {
            launch();
        }
        total += t0.elapsed();
        sync();
        done += n;
    }
    total
}

fn bench(c: &mut Criterion) {
    let device = match Device::open(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("launch bench skipped: {e}");
            return;
        }
    };
    let spec = match &device.info().partitions {
        rightsize::runtime::PartitionSupport::Supported { granularity, .. } => {
            PoolSpec::disjoint(&[2 * granularity], *granularity)
        }
        _ => PoolSpec::default(),
    };
    let rt = Runtime::new(device, &spec).expect("runtime");
    let n = 2048usize;
    let a = DeviceBuffer::from_host(rt.device(), &vec![f16::ONE; n]).expect("alloc");
    let out = DeviceBuffer::<f16>::filled(rt.device(), n, 0xff).expect("alloc");
    let params = VectorAddParams { a: a.ptr(), b: a.ptr(), c: out.ptr(), n: n as u64 };
    let sync = || rt.synchronize().expect("sync");

    let mut g = c.benchmark_group("launch");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));

    // Baseline: the same kernel launched straight through the driver on the whole device.
    let loaded = rt.kernels().get(KernelId::VectorAddF16);
    let whole = rt.pool().get(PartitionId::WHOLE).expect("whole").stream(0).expect("stream");
    let function = bare_function();
    g.bench_function("bare cuLaunchKernel", |b| {
        b.iter_custom(|iters| {
            timed(iters, &sync, || {
                // Every kernel's second argument is its ticket; a zero one runs the plain order.
                let ticket = RsTicket::default();
                let mut args =
                    [&params as *const VectorAddParams as *mut c_void, &ticket as *const RsTicket as *mut c_void];
                // SAFETY: the function's parameters and ticket; buffers live for the bench.
                let r = unsafe {
                    sys::cuLaunchKernel(
                        function,
                        1,
                        1,
                        1,
                        loaded.block_threads,
                        1,
                        1,
                        0,
                        whole,
                        args.as_mut_ptr(),
                        std::ptr::null_mut(),
                    )
                };
                assert_eq!(r, sys::CUresult::CUDA_SUCCESS);
            })
        })
    });
    for (name, partition) in
        [("runtime, whole device", PartitionId::WHOLE), ("runtime, green partition", PartitionId::green(0))]
    {
        if rt.pool().get(partition).is_err() {
            continue;
        }
        let placement = Placement { grid: Grid::Fixed(1), ..Placement::on(partition) };
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                timed(iters, &sync, || {
                    // SAFETY: buffers of n elements live for the bench.
                    unsafe { rt.launch(VECTOR_ADD_F16, &params, placement) }.expect("launch");
                })
            })
        });
    }
    g.finish();
    drop(rt);
    scheduled(c, n);
}

/// The scheduled launch path (policy decision, completion tracking, ordering across
/// partitions) and plan replay, on a runtime made with the krisp-conserved policy.
fn scheduled(c: &mut Criterion, n: usize) {
    use rightsize::kernels::Params;
    use rightsize::runtime::policy::{KrispConserved, PriorityClass};
    use rightsize::runtime::{MinSms, Tenant};
    use std::sync::Arc;

    let device = Device::open(0).expect("device");
    // Two shapes of one kernel, profiled at 16 and 32 SMs: alternating them switches partition.
    let small = VectorAddParams { n: n as u64, ..Default::default() };
    let large = VectorAddParams { n: 2 * n as u64, ..Default::default() };
    let mut min_sms = MinSms::default();
    min_sms.insert(KernelId::VectorAddF16, small.shape_key(), 16);
    min_sms.insert(KernelId::VectorAddF16, large.shape_key(), 32);
    let rt = Arc::new(Runtime::with_policy(device, Box::new(KrispConserved), min_sms, 2).expect("runtime"));
    let a = DeviceBuffer::from_host(rt.device(), &vec![f16::ONE; 2 * n]).expect("alloc");
    let out = DeviceBuffer::<f16>::filled(rt.device(), 2 * n, 0xff).expect("alloc");
    let small = VectorAddParams { a: a.ptr(), b: a.ptr(), c: out.ptr(), ..small };
    let large = VectorAddParams { a: a.ptr(), b: a.ptr(), c: out.ptr(), ..large };
    let t = Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).expect("tenant");
    let sync = || t.synchronize().expect("sync");

    let mut g = c.benchmark_group("launch");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    {
        // The scheduled path without completion tracking: the full policy reads no load.
        let rt_full = Arc::new(
            Runtime::with_policy(
                Device::open(0).expect("device"),
                Box::new(rightsize::runtime::policy::Full),
                MinSms::default(),
                1,
            )
            .expect("runtime"),
        );
        let tf = Tenant::scheduled(rt_full, 0, PriorityClass::BestEffort).expect("tenant");
        let sync_f = || tf.synchronize().expect("sync");
        g.bench_function("scheduled, policy decision only (full policy, no tracking)", |b| {
            b.iter_custom(|iters| {
                timed(iters, &sync_f, || {
                    // SAFETY: buffers of 2n halves.
                    unsafe { tf.launch(VECTOR_ADD_F16, &small) }.expect("launch");
                })
            })
        });
    }
    g.bench_function("scheduled, same partition (decision + completion tracking)", |b| {
        b.iter_custom(|iters| {
            timed(iters, &sync, || {
                // SAFETY: buffers of 2n halves.
                unsafe { t.launch(VECTOR_ADD_F16, &small) }.expect("launch");
            })
        })
    });
    {
        // The eager launch paths of a tenant beside another with work outstanding (launched,
        // not waited for), each on its window: krisp (which tenants are active comes from the
        // tenants, nothing is tracked; also timed alone, before the other launches), static's
        // fixed windows, and krisp with request curves (a prefill's and a decoder's, so the
        // pair's layout is tried: each launch is also counted for the trial).
        use rightsize::runtime::policy::{KrispShare, Policy, Share, Static};
        let topo = rt.device().info().partitions.topology().expect("partitions");
        let fixed = Static::side_by_side(&[None, None], topo.groups, topo.granularity).expect("static windows");
        let tried = KrispShare::with_speeds(vec![Share::default(); 2], speeds::prefill_and_decoder(&topo), 2, &topo);
        // (name, policy, also timed alone)
        let policies: [(&str, Box<dyn Policy>, bool); 3] = [
            ("krisp", Box::new(KrispShare::default()), true),
            ("static", Box::new(fixed), false),
            ("krisp with curves, tried", Box::new(tried), false),
        ];
        for (name, policy, alone) in policies {
            let rt = Arc::new(
                Runtime::with_policy(Device::open(0).expect("device"), policy, MinSms::default(), 2).expect("runtime"),
            );
            let tp = Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).expect("tenant");
            let sync_p = || tp.synchronize().expect("sync");
            let mut time = |what: String| {
                g.bench_function(what, |b| {
                    b.iter_custom(|iters| {
                        timed(iters, &sync_p, || {
                            // SAFETY: buffers of 2n halves.
                            unsafe { tp.launch(VECTOR_ADD_F16, &small) }.expect("launch");
                        })
                    })
                });
            };
            if alone {
                time(format!("scheduled, {name} alone (whole device, borrowed)"));
            }
            let other = Tenant::scheduled(rt, 1, PriorityClass::BestEffort).expect("tenant");
            // SAFETY: as above.
            unsafe { other.launch(VECTOR_ADD_F16, &small) }.expect("launch");
            time(format!("scheduled, {name} beside an active tenant (its window)"));
            other.synchronize().expect("sync");
        }
    }
    let mut flip = false;
    g.bench_function("scheduled, partition switch every launch", |b| {
        b.iter_custom(|iters| {
            timed(iters, &sync, || {
                flip = !flip;
                // SAFETY: as above.
                unsafe { t.launch(VECTOR_ADD_F16, if flip { &small } else { &large }) }.expect("launch");
            })
        })
    });
    // A plan of 256 kernels alternating partitions, replayed: host time per replayed kernel.
    let plan = t
        .capture(|| {
            for i in 0..256 {
                // SAFETY: as above.
                unsafe { t.launch(VECTOR_ADD_F16, if i % 2 == 0 { &small } else { &large }) }?;
            }
            Ok::<(), rightsize::runtime::Error>(())
        })
        .expect("capture");
    g.bench_function("plan replay, per kernel (256 kernels, alternating partitions)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                t.replay(&plan).expect("replay");
                total += t0.elapsed();
                sync();
            }
            total / 256
        })
    });
    g.finish();
}

/// Loads the vector module a second time, outside the runtime, for the bare baseline.
fn bare_function() -> sys::CUfunction {
    let mut module = std::ptr::null_mut();
    let mut f = std::ptr::null_mut();
    // SAFETY: the embedded fatbin; the primary context is current (the runtime bound it).
    unsafe {
        assert_eq!(
            sys::cuModuleLoadData(&mut module, KernelId::VectorAddF16.module().image().as_ptr().cast()),
            sys::CUresult::CUDA_SUCCESS
        );
        assert_eq!(
            sys::cuModuleGetFunction(&mut f, module, KernelId::VectorAddF16.symbol().as_ptr()),
            sys::CUresult::CUDA_SUCCESS
        );
    }
    f
}

criterion_group! {
    name = benches;
    // Our own tables, not criterion's plots (which need a system font).
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);

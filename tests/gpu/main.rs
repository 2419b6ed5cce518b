//! GPU integration tests. Every test needs a CUDA GPU and is ignored elsewhere; on a GPU host
//! run them with `--include-ignored --test-threads=1` (tests that count SMs must have the
//! GPU to themselves). `scripts/gpu-run.sh` does.

use std::collections::BTreeSet;

mod claims;
mod engine;
mod faults;
mod harness;
mod kernels;
mod profiler;
mod scheduler;

use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rightsize::kernels::abi::{SmidParams, VectorAddParams};
use rightsize::kernels::{reference, KernelId, SMID_RECORD, VECTOR_ADD_F16};
use rightsize::runtime::{
    Device, DeviceBuffer, Grid, PartitionError, PartitionId, PartitionRequest, PartitionSupport, Placement, PoolSpec,
    Runtime,
};

fn device() -> Device {
    Device::open(0).expect("open GPU 0")
}

/// (granularity, groups) of the device's SM split; the tests need green contexts.
fn split(device: &Device) -> (u32, u32) {
    match &device.info().partitions {
        PartitionSupport::Supported { granularity, groups, .. } => (*granularity, *groups),
        PartitionSupport::Unsupported { reason } => panic!("green contexts unavailable: {reason}"),
    }
}

fn fresh_rng(test: &str) -> StdRng {
    let seed: u64 = rand::random();
    println!("{test}: seed {seed}");
    StdRng::seed_from_u64(seed)
}

/// Runs `smid_record` with enough spinning work units to reach every SM the partition allows
/// and returns the set of SMs that ran them. Every unit must have written its entry.
fn launch_smid(rt: &Runtime, partition: PartitionId, spin_cycles: u64) -> (DeviceBuffer<u32>, u64) {
    let sms = rt.pool().get(partition).unwrap().sms();
    let per_sm = rt.kernels().get(KernelId::SmidRecord).blocks_per_sm;
    let units = 4 * u64::from(sms * per_sm);
    let out = DeviceBuffer::<u32>::filled(rt.device(), units as usize, 0xff).unwrap();
    let params = SmidParams { sm: out.ptr(), spin_cycles, units: units as u32, _pad: 0 };
    // SAFETY: `out` holds `units` entries.
    unsafe { rt.launch(SMID_RECORD, &params, Placement::on(partition)) }.unwrap();
    (out, units)
}

fn sm_set(out: &DeviceBuffer<u32>) -> BTreeSet<u32> {
    let ids = out.to_host().unwrap();
    assert!(ids.iter().all(|&s| s != u32::MAX), "a work unit left its entry unwritten");
    ids.into_iter().collect()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn device_reports_consistent_facts() {
    let d = device();
    let info = d.info();
    println!("{info:#?}");
    assert!(info.sm_count > 0 && !info.name.is_empty());
    assert!(info.compute_capability >= (8, 0), "kernels target sm_80 and newer");
    assert!(info.stream_priorities.greatest <= info.stream_priorities.least);
    assert!(info.free_memory_bytes <= info.total_memory_bytes && info.total_memory_bytes > 0);
    let PartitionSupport::Supported { granularity, groups, remaining_sms, .. } = info.partitions.clone() else {
        panic!("green contexts unavailable: {:?}", info.partitions);
    };
    assert_eq!(granularity * groups + remaining_sms, info.sm_count, "groups and remainder cover the device");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn partition_of_k_sms_runs_on_exactly_k_sms() {
    let d = device();
    let (g, groups) = split(&d);
    let total = d.info().sm_count;
    // 8, 16 and 64 SMs on Hopper (granularity 8); the same multiples of other granularities.
    let sizes: Vec<u32> = [1, 2, 8].iter().map(|m| m * g).filter(|&k| k <= g * groups).collect();
    let spec = PoolSpec {
        partitions: sizes.iter().map(|&sms| PartitionRequest { first_group: 0, sms }).collect(),
        priorities: vec![],
        lanes: 1,
        rest: false,
    };
    let rt = Runtime::new(d, &spec).unwrap();
    for (i, &k) in sizes.iter().enumerate() {
        let id = PartitionId::green(i);
        assert_eq!(rt.pool().get(id).unwrap().sms(), k);
        let (out, units) = launch_smid(&rt, id, 100_000);
        rt.synchronize().unwrap();
        let set = sm_set(&out);
        println!("partition of {k} SMs: {units} units ran on {} distinct SMs", set.len());
        assert_eq!(set.len() as u32, k, "partition of {k} SMs ran on {set:?}");
    }
    let (out, units) = launch_smid(&rt, PartitionId::WHOLE, 100_000);
    rt.synchronize().unwrap();
    let set = sm_set(&out);
    println!("whole device ({total} SMs): {units} units ran on {} distinct SMs", set.len());
    assert_eq!(set.len() as u32, total);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn disjoint_partitions_running_together_share_no_sm() {
    let d = device();
    let (g, groups) = split(&d);
    let half = groups / 2 * g;
    let rt = Runtime::new(d, &PoolSpec::disjoint(&[half, half], g)).unwrap();
    // Long spins: both launches are queued before either finishes, so they run at once.
    let (a, _) = launch_smid(&rt, PartitionId::green(0), 2_000_000);
    let (b, _) = launch_smid(&rt, PartitionId::green(1), 2_000_000);
    rt.synchronize().unwrap();
    let (sa, sb) = (sm_set(&a), sm_set(&b));
    println!("A ran on {} SMs, B on {} SMs, shared {}", sa.len(), sb.len(), sa.intersection(&sb).count());
    assert_eq!(sa.len() as u32, half);
    assert_eq!(sb.len() as u32, half);
    assert_eq!(sa.intersection(&sb).count(), 0, "A {sa:?} B {sb:?}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn windows_side_by_side_with_the_rest_cover_the_device() {
    let d = device();
    let (g, groups) = split(&d);
    let total = d.info().sm_count;
    let rest = total - g * groups;
    let (first, second) = (groups / 2, groups - groups / 2);
    let spec = PoolSpec { rest: true, ..PoolSpec::disjoint(&[first * g, second * g], g) };
    let rt = Runtime::new(d, &spec).unwrap();
    // Only the window reaching the last group takes the rest.
    assert_eq!(rt.pool().get(PartitionId::green(0)).unwrap().sms(), first * g);
    assert_eq!(rt.pool().get(PartitionId::green(1)).unwrap().sms(), second * g + rest);
    let (a, _) = launch_smid(&rt, PartitionId::green(0), 2_000_000);
    let (b, _) = launch_smid(&rt, PartitionId::green(1), 2_000_000);
    rt.synchronize().unwrap();
    let (sa, sb) = (sm_set(&a), sm_set(&b));
    println!("A ran on {} SMs, B (with the {rest} remaining) on {} SMs", sa.len(), sb.len());
    assert_eq!(sa.len() as u32, first * g);
    assert_eq!(sb.len() as u32, second * g + rest);
    assert_eq!(sa.intersection(&sb).count(), 0, "A {sa:?} B {sb:?}");
    assert_eq!(sa.union(&sb).count() as u32, total, "together they cover the device");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn vector_add_matches_reference_at_every_grid() {
    let d = device();
    let (g, _) = split(&d);
    let sms = d.info().sm_count;
    let rt = Runtime::new(d, &PoolSpec::disjoint(&[2 * g], g)).unwrap();
    let mut rng = fresh_rng("vector_add");
    // Sizes that are not multiples of the work unit (2048) or of the 8-element vectors.
    for n in [1usize, 7, 2047, 3 * 2048 + 5, (1 << 20) + 3] {
        let a: Vec<f16> = (0..n).map(|_| f16::from_f32(rng.random_range(-4.0..4.0))).collect();
        let b: Vec<f16> = (0..n).map(|_| f16::from_f32(rng.random_range(-4.0..4.0))).collect();
        let want = reference::vector_add(&a, &b);
        let (da, db) =
            (DeviceBuffer::from_host(rt.device(), &a).unwrap(), DeviceBuffer::from_host(rt.device(), &b).unwrap());
        let mut out = DeviceBuffer::<f16>::filled(rt.device(), n, 0xff).unwrap();
        let mut first: Option<Vec<f16>> = None;
        let placements = [1, 7, sms, 4 * sms]
            .map(|grid| Placement { grid: Grid::Fixed(grid), ..Placement::WHOLE })
            .into_iter()
            .chain([Placement::WHOLE, Placement::on(PartitionId::green(0))]);
        for placement in placements {
            out.fill_bytes(0xff).unwrap();
            let params = VectorAddParams { a: da.ptr(), b: db.ptr(), c: out.ptr(), n: n as u64 };
            // SAFETY: all three buffers hold n halves.
            unsafe { rt.launch(VECTOR_ADD_F16, &params, placement) }.unwrap();
            rt.synchronize().unwrap();
            let got = out.to_host().unwrap();
            let err = reference::relative_error(&got, &want);
            assert!(err <= 1e-2, "n {n} {placement:?}: relative error {err}");
            // One f32 add of two halves is exact, then one rounding: the result is bitwise the reference's.
            assert!(
                got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                "n {n} {placement:?}: differs from reference"
            );
            match &first {
                None => first = Some(got),
                Some(f) => {
                    assert!(f.iter().zip(&got).all(|(x, y)| x.to_bits() == y.to_bits()), "n {n}: grids disagree")
                }
            }
        }
        // Misaligned addresses take the element-wise path.
        if n > 1 {
            out.fill_bytes(0xff).unwrap();
            let m = n - 1;
            let params = VectorAddParams { a: da.ptr() + 2, b: db.ptr(), c: out.ptr() + 2, n: m as u64 };
            // SAFETY: each buffer holds at least m halves past the offsets.
            unsafe { rt.launch(VECTOR_ADD_F16, &params, Placement::WHOLE) }.unwrap();
            rt.synchronize().unwrap();
            let got = out.to_host().unwrap();
            let want = reference::vector_add(&a[1..], &b[..m]);
            assert!(got[0].is_nan(), "wrote before its output");
            assert!(
                got[1..].iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                "n {n}: misaligned path differs"
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn streams_at_every_priority_launch() {
    let d = device();
    let (g, _) = split(&d);
    let range = d.info().stream_priorities;
    let spec = PoolSpec { priorities: vec![range.least, range.greatest], ..PoolSpec::disjoint(&[g], g) };
    let rt = Runtime::new(d, &spec).unwrap();
    assert_eq!(rt.pool().priorities(), &[range.least, range.greatest]);
    let n = 4096;
    let ones = DeviceBuffer::from_host(rt.device(), &vec![f16::ONE; n]).unwrap();
    for partition in [PartitionId::WHOLE, PartitionId::green(0)] {
        for level in 0..2 {
            let out = DeviceBuffer::<f16>::filled(rt.device(), n, 0xff).unwrap();
            let params = VectorAddParams { a: ones.ptr(), b: ones.ptr(), c: out.ptr(), n: n as u64 };
            let placement = Placement { priority_level: level, ..Placement::on(partition) };
            // SAFETY: buffers of n halves.
            unsafe { rt.launch(VECTOR_ADD_F16, &params, placement) }.unwrap();
            rt.synchronize().unwrap();
            assert!(out.to_host().unwrap().iter().all(|x| x.to_f32() == 2.0));
        }
    }
    // A level the pool lacks is an error, not a launch.
    let params = VectorAddParams { a: ones.ptr(), b: ones.ptr(), c: ones.ptr(), n: 0 };
    let bad = Placement { priority_level: 2, ..Placement::WHOLE };
    // SAFETY: the launch is refused before it reaches the driver.
    assert!(unsafe { rt.launch(VECTOR_ADD_F16, &params, bad) }.is_err());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn impossible_partitions_are_refused_with_what_the_device_offers() {
    let d = device();
    let (g, groups) = split(&d);
    let range = d.info().stream_priorities;
    let cases = [
        PoolSpec {
            partitions: vec![PartitionRequest { first_group: 0, sms: g + 1 }],
            priorities: vec![],
            lanes: 1,
            rest: false,
        },
        PoolSpec {
            partitions: vec![PartitionRequest { first_group: 0, sms: g * (groups + 1) }],
            priorities: vec![],
            lanes: 1,
            rest: false,
        },
        PoolSpec {
            partitions: vec![PartitionRequest { first_group: groups, sms: g }],
            priorities: vec![],
            lanes: 1,
            rest: false,
        },
        PoolSpec { partitions: vec![], priorities: vec![range.greatest - 1], lanes: 1, rest: false },
    ];
    for spec in cases {
        let err = rightsize::runtime::PartitionPool::new(&d, &spec).unwrap_err();
        println!("{spec:?}: {err}");
        assert!(
            matches!(err, rightsize::runtime::Error::Partition(ref p) if !matches!(p, PartitionError::Unsupported(_))),
            "{err}"
        );
        assert!(err.to_string().contains(&g.to_string()) || err.to_string().contains("priority"), "{err}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn grid_auto_fills_the_partition_and_no_more() {
    let d = device();
    let (g, _) = split(&d);
    let rt = Runtime::new(d, &PoolSpec::disjoint(&[g], g)).unwrap();
    let per_sm = rt.kernels().get(KernelId::VectorAddF16).blocks_per_sm;
    let n = 64 << 20;
    let buf = DeviceBuffer::<f16>::filled(rt.device(), n, 0).unwrap();
    let params = VectorAddParams { a: buf.ptr(), b: buf.ptr(), c: buf.ptr(), n: n as u64 };
    // SAFETY: in place on one buffer of n halves (each element read before it is written by the same thread).
    let grid = unsafe { rt.launch(VECTOR_ADD_F16, &params, Placement::on(PartitionId::green(0))) }.unwrap();
    assert_eq!(grid, g * per_sm);
    let three_units = VectorAddParams { n: 3 * 2048, ..params };
    // SAFETY: as above, on the first 3 units.
    let grid = unsafe { rt.launch(VECTOR_ADD_F16, &three_units, Placement::WHOLE) }.unwrap();
    assert_eq!(grid, 3);
    rt.synchronize().unwrap();
}

/// How green contexts share the GPU in time: two spinning kernels (~2 ms each, one block per
/// SM of their partition, so two of them fit on an SM side by side) launched together, against
/// one alone. Disjoint partitions run
/// side by side (the static and krisp-isolated modes rely on it); the test prints what two
/// different green contexts over the same SMs, and a green context beside the whole device,
/// do (docs/device-h200.md records it).
#[test]
#[ignore = "needs a CUDA GPU"]
fn disjoint_green_contexts_run_side_by_side() {
    let d = device();
    let (g, groups) = split(&d);
    assert!(groups >= 12, "needs 12 groups");
    let range = d.info().stream_priorities;
    let spec = PoolSpec {
        partitions: vec![
            PartitionRequest { first_group: 0, sms: 6 * g },
            PartitionRequest { first_group: 6, sms: 6 * g },
            PartitionRequest { first_group: 3, sms: 6 * g },
        ],
        priorities: vec![range.least, range.greatest],
        lanes: 1,
        rest: false,
    };
    let rt = Runtime::new(d, &spec).unwrap();
    let (a, b, over) = (PartitionId::green(0), PartitionId::green(1), PartitionId::green(2));
    let per_sm = rt.kernels().get(KernelId::SmidRecord).blocks_per_sm;
    assert!(per_sm >= 2, "two blocks must fit on an SM");
    let spin = 4_000_000u64; // ~2 ms at 2 GHz
    let bufs: Vec<DeviceBuffer<u32>> =
        (0..2).map(|_| DeviceBuffer::<u32>::filled(rt.device(), 132 * per_sm as usize, 0xff).unwrap()).collect();
    let run = |launches: &[(PartitionId, usize)]| -> f64 {
        rt.synchronize().unwrap();
        let t = std::time::Instant::now();
        for (i, &(p, level)) in launches.iter().enumerate() {
            let sms = rt.pool().get(p).unwrap().sms();
            let units = sms;
            let params = SmidParams { sm: bufs[i].ptr(), spin_cycles: spin, units, _pad: 0 };
            let placement = Placement { partition: p, priority_level: level, grid: Grid::Fixed(units) };
            // SAFETY: each buffer holds 132 · blocks-per-SM entries.
            unsafe { rt.launch(SMID_RECORD, &params, placement) }.unwrap();
        }
        rt.synchronize().unwrap();
        t.elapsed().as_secs_f64() * 1e3
    };
    run(&[(a, 0)]);
    let median = |launches: &[(PartitionId, usize)]| {
        let mut v: Vec<f64> = (0..5).map(|_| run(launches)).collect();
        v.sort_by(f64::total_cmp);
        v[2]
    };
    let alone = median(&[(a, 0)]);
    let cases = [
        ("same green context, two streams", median(&[(a, 0), (a, 1)])),
        ("disjoint green contexts", median(&[(a, 0), (b, 0)])),
        ("overlapping green contexts (3 of 6 groups shared)", median(&[(a, 0), (over, 0)])),
        ("a green context and the whole device", median(&[(a, 0), (PartitionId::WHOLE, 0)])),
    ];
    println!("one spinning kernel alone: {alone:.2} ms ({per_sm} blocks fit per SM)");
    for (name, ms) in cases {
        println!("two at once, {name}: {ms:.2} ms ({:.2}× alone)", ms / alone);
    }
    assert!(cases[0].1 <= 1.3 * alone, "two streams of one green context did not share its SMs");
    assert!(cases[1].1 <= 1.3 * alone, "disjoint partitions did not run side by side");
}

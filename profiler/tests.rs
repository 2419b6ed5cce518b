//! Helpers the profiler's tests share: curves, a sample profile and a device to check one
//! against.

use super::{KernelProfile, Point, Profile, RequestPoint, SCHEMA_VERSION};
use crate::kernels::KernelId;
use crate::runtime::DeviceInfo;

pub(crate) fn pts(v: &[(u32, f64)]) -> Vec<Point> {
    v.iter().map(|&(sms, us)| Point { sms, us }).collect()
}

fn kp(kernel: KernelId, calls: u32, full_us: f64, min_sms: u32) -> KernelProfile {
    KernelProfile {
        kernel,
        shape_key: format!("{:016x}", 42 + calls),
        units: 10,
        calls,
        full_us,
        curve: vec![],
        beside: vec![],
        variants: vec![],
        grid_only: vec![],
        min_sms,
        min_sms_beside: 0,
    }
}

pub(crate) fn sample() -> Profile {
    let p = Profile {
        schema_version: SCHEMA_VERSION,
        gpu: "NVIDIA H200".into(),
        sm_count: 132,
        granularity: 8,
        driver: None,
        kernel_image_hash: String::new(),
        model: "gpt2".into(),
        request: "test".into(),
        epsilon: 0.05,
        abs_tol_us: 0.5,
        repeats: 3,
        switch_us: 1.2,
        kernels: vec![kp(KernelId::GemmLarge, 1, 30.0, 132), kp(KernelId::LayerNorm, 2, 5.0, 33)],
        request_curve: vec![
            RequestPoint { sms: 64, us: 200.0, step_us: 12.0, co_us: 250.0, co_step_us: 20.0 },
            RequestPoint { sms: 132, us: 100.0, step_us: 10.0, co_us: 0.0, co_step_us: 0.0 },
        ],
        app_kernels: Vec::new(),
    };
    Profile { kernel_image_hash: p.kernels_hash(), ..p }
}

pub(crate) fn device(name: &str, sms: u32) -> DeviceInfo {
    DeviceInfo {
        ordinal: 0,
        name: name.into(),
        pci_bus_id: None,
        sm_count: sms,
        compute_capability: (9, 0),
        cuda_driver_version: (13, 0),
        driver_release: None,
        total_memory_bytes: 1,
        free_memory_bytes: 1,
        l2_cache_bytes: 1,
        max_shared_memory_per_block_optin: 1,
        stream_priorities: crate::runtime::PriorityRange { least: 0, greatest: -5 },
        partitions: crate::runtime::PartitionSupport::Unsupported { reason: String::new() },
    }
}

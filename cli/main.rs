//! `rightsize`: the command-line front end.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rightsize::kernels::{KernelId, Module, IMAGE_HASH};
use rightsize::runtime::{mps_control_path, Device, DeviceInfo, PartitionSupport};

#[derive(Parser, Debug)]
#[command(name = "rightsize", version, about = "Kernel-wise right-sizing of inference tenants sharing one NVIDIA GPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print what the GPU offers: SMs, memory, driver, stream priorities, SM partitions, MPS.
    Info {
        /// GPU ordinal.
        #[arg(long, default_value_t = 0)]
        device: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { device, json } => info(device, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rightsize: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn info(ordinal: usize, json: bool) -> anyhow::Result<()> {
    let device = Device::open(ordinal).context("cannot open the GPU")?;
    let info = device.info();
    let mps = mps_control_path();
    if json {
        let value = serde_json::json!({
            "device": info,
            "mps_control": mps.as_ref().map(|p| p.display().to_string()),
            "kernels": KernelId::ALL.len(),
            "modules": Module::ALL.len(),
            "kernel_image_hash": format!("{IMAGE_HASH:016x}"),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    print!("{}", render(info));
    match mps {
        Some(p) => println!("  {:<20} installed ({})", "MPS control daemon", p.display()),
        None => println!("  {:<20} not installed (nvidia-cuda-mps-control is not on PATH)", "MPS control daemon"),
    }
    println!(
        "  {:<20} {} in {} modules, image hash {IMAGE_HASH:016x}",
        "kernels",
        KernelId::ALL.len(),
        Module::ALL.len()
    );
    Ok(())
}

fn render(info: &DeviceInfo) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let row = |k: &str, v: String| format!("  {k:<20} {v}\n");
    let mut s = format!("device {}: {}\n", info.ordinal, info.name);
    s += &row("compute capability", format!("{}.{}", info.compute_capability.0, info.compute_capability.1));
    s += &row("SMs", info.sm_count.to_string());
    s += &row(
        "memory",
        format!(
            "{:.1} GiB total, {:.1} GiB free",
            info.total_memory_bytes as f64 / GIB,
            info.free_memory_bytes as f64 / GIB
        ),
    );
    s += &row("L2 cache", format!("{:.1} MiB", info.l2_cache_bytes as f64 / MIB));
    s += &row("shared memory/block", format!("{} KiB (opt-in)", info.max_shared_memory_per_block_optin / 1024));
    let (maj, min) = info.cuda_driver_version;
    s += &row(
        "driver",
        match &info.driver_release {
            Some(r) => format!("{r} (CUDA {maj}.{min})"),
            None => format!("CUDA {maj}.{min}"),
        },
    );
    s += &row(
        "stream priorities",
        format!("{} (least) to {} (greatest)", info.stream_priorities.least, info.stream_priorities.greatest),
    );
    match &info.partitions {
        PartitionSupport::Supported {
            granularity,
            groups,
            remaining_sms,
            min_partition_sms,
            coscheduled_alignment,
        } => {
            s += &row(
                "SM partitions",
                format!(
                    "green contexts: {groups} groups of {granularity} SMs (+{remaining_sms} remaining); \
                     partitions of {granularity} to {} SMs in steps of {granularity}, or the whole device",
                    granularity * groups
                ),
            );
            s += &row("", format!("SM resource: minSmPartitionSize {min_partition_sms}, smCoscheduledAlignment {coscheduled_alignment}"));
        }
        PartitionSupport::Unsupported { reason } => s += &row("SM partitions", format!("unavailable: {reason}")),
    }
    s
}

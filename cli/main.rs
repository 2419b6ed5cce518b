//! `rightsize`: the command-line front end.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

use rightsize::engine::{checkpoint, Model, ModelConfig, ModelWeights};
use rightsize::kernels::{KernelId, Module, IMAGE_HASH};
use rightsize::profiler::{prefix_pool, profile_launches, Options, Profile};
use rightsize::runtime::{mps_control_path, Device, DeviceInfo, PartitionSupport, Placement, Runtime, Tenant};

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
    /// Profile one request of a model: every kernel's latency over SM counts and its minimum SMs.
    Profile {
        /// A named model (bert-base, gpt2, llama-3.2-1b, …) with synthetic weights.
        #[arg(long, default_value = "gpt2")]
        model: String,
        /// A Hugging Face checkpoint directory (config.json + safetensors) instead of --model.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Sequences per request.
        #[arg(long, default_value_t = 8)]
        batch: u32,
        /// Tokens per sequence (the prompt, for decoders).
        #[arg(long, default_value_t = 128)]
        seq: u32,
        /// A kernel's knee is the fewest SMs within (1 + ε) of full-GPU latency.
        #[arg(long, default_value_t = 0.05)]
        epsilon: f64,
        /// … or within this many µs of it (timing noise floor), whichever is larger.
        #[arg(long, default_value_t = 0.5)]
        abs_tol_us: f64,
        /// Timed repeats per point (the median is kept).
        #[arg(long, default_value_t = 11)]
        repeats: u32,
        /// Seed of the synthetic weights and token ids.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file (default: profiles/<gpu>/<model>-b<batch>-s<seq>.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { device, json } => info(device, json),
        Command::Profile { model, checkpoint, batch, seq, epsilon, abs_tol_us, repeats, seed, out } => {
            profile(&model, checkpoint.as_deref(), batch, seq, Options { epsilon, abs_tol_us, repeats }, seed, out)
        }
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

/// A file-name-safe form of a GPU name ("NVIDIA H200" → "nvidia-h200").
fn slug(name: &str) -> String {
    let s: String = name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    s.split('-').filter(|p| !p.is_empty()).collect::<Vec<_>>().join("-")
}

fn profile(
    model_name: &str,
    ckpt: Option<&std::path::Path>,
    batch: u32,
    seq: u32,
    opts: Options,
    seed: u64,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    use anyhow::bail;
    if batch == 0
        || seq == 0
        || opts.repeats == 0
        || opts.epsilon.is_nan()
        || opts.epsilon < 0.0
        || opts.abs_tol_us.is_nan()
        || opts.abs_tol_us < 0.0
    {
        bail!("batch, seq and repeats must be positive; epsilon and abs-tol-us non-negative");
    }
    let device = Device::open(0).context("cannot open the GPU")?;
    let info = device.info().clone();
    let (granularity, groups) = match &info.partitions {
        PartitionSupport::Supported { granularity, groups, .. } => (*granularity, *groups),
        PartitionSupport::Unsupported { reason } => bail!("cannot profile without SM partitions: {reason}"),
    };
    let rt = Arc::new(Runtime::new(device, &prefix_pool(granularity, groups))?);
    let t = Tenant::new(rt.clone(), 0, Placement::WHOLE)?;
    let (config, weights) = match ckpt {
        Some(dir) => {
            let (c, w) = checkpoint::load(dir)?;
            (c, ModelWeights::upload(&t, w)?)
        }
        None => {
            let c = ModelConfig::named(model_name)?;
            let w = ModelWeights::synthetic(&t, &c, seed)?;
            (c, w)
        }
    };
    let model = Model::new(&t, config, weights)?;
    let positions = if model.config().is_decoder() { seq + 1 } else { seq };
    let mut ws = model.workspace(&t, batch, positions)?;
    let vocab = u64::from(model.config().vocab);
    let ids: Vec<u32> =
        (0..ws.ids.len() as u64).map(|i| ((i + seed).wrapping_mul(2_654_435_761) % vocab) as u32).collect();
    ws.ids.copy_from_host(&ids)?;
    // Warm up, then record the request's launches.
    model.request(&t, &ws, batch, seq)?;
    t.synchronize()?;
    let launches = t.record(|| model.request(&t, &ws, batch, seq))?;
    t.synchronize()?;
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("profiling {bar:40} {pos}/{len} kernels {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    // SAFETY: the model and workspace the launches were recorded from live until the end.
    let kernels = unsafe {
        profile_launches(&rt, &launches, opts, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
    }?;
    bar.finish_and_clear();
    let request = model.describe_request(batch, seq);
    let profile = Profile::new(&info, granularity, &model.config().name, &request, opts, kernels);
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!("profiles/{}/{}-b{batch}-s{seq}.json", slug(&info.name), slug(&model.config().name)))
    });
    profile.save(&out)?;
    println!("{}", profile.summary());
    println!(
        "{} launches, {} distinct kernels, profiled in {:.1} s; wrote {}",
        launches.len(),
        profile.kernels.len(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

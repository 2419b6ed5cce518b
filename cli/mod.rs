//! `rightsize`: the command-line front end ([`run`]; the `rightsize` executable and the
//! Python package's `rightsize` command both run it).

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

use crate::harness::compare::TraceOptions;
use crate::harness::output::summary;
use crate::harness::results::default_out;
use crate::harness::scenario::parse_modes;
use crate::harness::serve::{check_profile_args, profile_model, profile_path, ModelSource};
use crate::harness::{compare, CompareOptions, Mode, Scenario, ScenarioFile};
use crate::kernels::{KernelId, Module, IMAGE_HASH};
use crate::profiler::Options;
use crate::runtime::{mps_control_path, Device, DeviceInfo, PartitionSupport};

pub mod text;

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
    /// With --app, profile an unmodified CUDA application instead (run once per SM count under
    /// the interposer).
    Profile {
        /// List the model profiles of this folder (a profiles/<gpu> folder) measured with other
        /// kernels than this build's, or (where this host has a GPU) on another GPU model, a path
        /// a line, and exit: those the comparison refuses, and scripts/reprofile.sh measures again.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["app", "checkpoint", "out"])]
        stale: Option<PathBuf>,
        /// An application to profile: a shell command run once on the whole GPU and once on
        /// each --sms partition under the interposer, which times every kernel and cuBLAS call
        /// by name and launch shape; its profile is what RIGHTSIZE_PROFILE sizes launches by.
        #[arg(long, conflicts_with_all = ["checkpoint", "no_beside", "repeats"])]
        app: Option<String>,
        /// With --app: the partition sizes, in SMs, comma-separated (default: 1, 2, 4, 8 groups
        /// and the largest partition; the whole GPU is always run).
        #[arg(long, requires = "app")]
        sms: Option<String>,
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
        /// A kernel's knee is the fewest SMs whose latency, with a partition switch, is within
        /// (1 + ε) of its full speed (the whole GPU's latency, or a partition's where less).
        #[arg(long, default_value_t = 0.05)]
        epsilon: f64,
        /// … or within this many µs of it (timing noise floor), whichever is larger.
        #[arg(long, default_value_t = 0.5)]
        abs_tol_us: f64,
        /// Timed repeats per point (the median is kept).
        #[arg(long, default_value_t = 11)]
        repeats: u32,
        /// Skip the curves beside a co-runner streaming memory on the SMs each partition
        /// leaves (faster; the profile then has no knees beside other work).
        #[arg(long)]
        no_beside: bool,
        /// Seed of the synthetic weights and token ids.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file (default: profiles/<gpu>/<model>-b<batch>-s<seq>.json; with --app,
        /// profiles/<gpu>/app-<program>.json).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the scenarios of a TOML file under each mode, after solo baselines; tables on the
    /// terminal, results.json, runs.csv, tenants.csv and summary.md in the results directory.
    Run {
        /// Scenario file (see scenarios/default.toml).
        file: PathBuf,
        #[command(flatten)]
        args: RunArgs,
    },
    /// The default comparison: the embedded scenario set (solo baselines; the classic closed
    /// loops; open-loop, latency-critical, long-decode and busy/idle serving mixes) under every
    /// mode.
    Compare {
        /// A scenario file instead of the embedded set.
        #[arg(long = "file")]
        file: Option<PathBuf>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// A long run of many open-loop tenants (eight batch-1 encoders and decoders by default)
    /// under one mode, reporting per window each tenant's p99 and shed requests, the host's
    /// resident memory and the GPU's used memory (soak.csv, summary.md).
    Soak {
        /// Minutes the tenants run.
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        /// Seconds per reporting window.
        #[arg(long, default_value_t = 60.0)]
        window_s: f64,
        /// The mode (one process: streams, static, krisp, krisp-equal, …, or their -plan).
        #[arg(long, default_value = "krisp")]
        mode: String,
        /// A scenario file whose first scenario runs instead of the embedded one (open loops).
        #[arg(long = "file")]
        file: Option<PathBuf>,
        /// Results directory (default: results/soak-<date>-<time>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also print, as each window closes, every tenant's kernel launches so far and its
        /// last (a record taken per launch: for runs under a sanitizer, to see which launch
        /// holds them).
        #[arg(long)]
        launches: bool,
        /// Run nothing: draw DIR/soak.svg and .png from DIR/soak.csv (a soak's results
        /// directory from a machine without a font).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["minutes", "window_s", "mode", "file", "out", "launches"])]
        replot: Option<PathBuf>,
    },
    /// Write DIR/report.md: plots (SVG and PNG under DIR/plots), GPU counters per mode, kernel
    /// curves and the tables of a results directory.
    Report {
        /// A results directory (of `run` or `compare`).
        dir: PathBuf,
        /// Where committed profiles are, for kernel curves the run did not profile itself.
        #[arg(long, default_value = "profiles")]
        profiles: PathBuf,
    },
    /// Judge comparisons run in rounds (the same scenarios and modes, e.g. with the modes'
    /// order alternated and `--solos` of the first): per scenario and mode, each round's SLO
    /// goodput (or STP), the median, ÷ the best mode's median, and the latency-critical p99 ÷
    /// solo. One run of a load sweep moves a goodput by a sweep step from one call to the next.
    Rounds {
        /// Results directories (of `run` or `compare`) or their results.json, one per round.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
    /// Embed texts with an encoder checkpoint (mean pooling, L2-normalised, as
    /// sentence-transformers does): one JSON object per text.
    Embed {
        /// A Hugging Face model directory: config.json, safetensors weights, tokenizer.json.
        #[arg(long)]
        model: PathBuf,
        /// Texts to embed; with none, one per line of stdin.
        texts: Vec<String>,
        /// Tokens per text at most (special tokens included); longer texts are cut, with a
        /// warning.
        #[arg(long, default_value_t = 256)]
        max_tokens: u32,
        /// Print the texts' pairwise cosine similarities instead of the vectors.
        #[arg(long)]
        similarity: bool,
    },
    /// Continue a prompt with a decoder checkpoint (greedy decoding).
    Generate {
        /// A Hugging Face model directory: config.json, safetensors weights, tokenizer.json.
        #[arg(long)]
        model: PathBuf,
        /// The prompt.
        prompt: String,
        /// New tokens to generate.
        #[arg(long, default_value_t = 32)]
        tokens: u32,
    },
    /// Print a named model's architecture as JSON (what a PyTorch tenant builds its
    /// transformers model from; scripts/torch_app.py reads it).
    #[command(hide = true)]
    ModelConfig {
        /// A named model (bert-base, gpt2, …).
        name: String,
    },
    /// One tenant of a multi-process run (started by the harness; speaks JSON lines).
    #[command(hide = true)]
    Worker {
        /// The worker's spec, JSON.
        #[arg(long)]
        spec: String,
    },
    /// A one-process run in a child process (started by the harness; reads its spec from
    /// stdin, speaks JSON lines).
    #[command(hide = true)]
    Host,
}

/// Runs the command line `args` (the program's name first) and returns its exit status (0:
/// done; 1: failed, why printed to stderr; 2: a usage error).
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with status 0, usage errors to stderr with 2.
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Info { device, json } => info(device, json),
        Command::Profile { stale: Some(dir), .. } => stale_profiles(&dir),
        Command::Profile { app: Some(app), sms, epsilon, abs_tol_us, out, .. } => {
            profile_app(&app, sms.as_deref(), epsilon, abs_tol_us, out)
        }
        Command::Profile {
            model, checkpoint, batch, seq, epsilon, abs_tol_us, repeats, no_beside, seed, out, ..
        } => {
            let opts = Options { epsilon, abs_tol_us, repeats, beside: !no_beside };
            profile(&model, checkpoint.as_deref(), batch, seq, opts, seed, out)
        }
        Command::Run { file, args } => ScenarioFile::load(&file).and_then(|f| {
            let name = file.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned());
            run_scenarios(f, &name, args)
        }),
        Command::Compare { file, args } => match file {
            Some(path) => ScenarioFile::load(&path).and_then(|f| run_scenarios(f, "compare", args)),
            None => run_scenarios(ScenarioFile::defaults(), "compare", args),
        },
        Command::Soak { replot: Some(dir), .. } => soak_replot(&dir),
        Command::Soak { minutes, window_s, mode, file, out, launches, replot: None } => {
            soak(minutes, window_s, &mode, file, out, launches)
        }
        Command::Report { dir, profiles } => {
            crate::harness::report::write_report(&dir, &profiles).map(|p| println!("report: {}", p.display()))
        }
        Command::Rounds { dirs } => rounds_of(&dirs),
        Command::Embed { model, texts, max_tokens, similarity } => text::embed(&model, texts, max_tokens, similarity),
        Command::Generate { model, prompt, tokens } => text::generate(&model, &prompt, tokens),
        Command::ModelConfig { name } => crate::engine::ModelConfig::named(&name)
            .map_err(anyhow::Error::from)
            .and_then(|c| Ok(serde_json::to_string(&c)?))
            .map(|json| println!("{json}")),
        Command::Worker { spec } => crate::harness::worker::worker_main(&spec),
        Command::Host => crate::harness::host::host_main(),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("rightsize: {e:#}");
            1
        }
    }
}

fn soak(
    minutes: f64,
    window_s: f64,
    mode: &str,
    file: Option<PathBuf>,
    out: Option<PathBuf>,
    launches: bool,
) -> anyhow::Result<()> {
    use crate::harness::soak::{launches_line, soak, soak_mode, SoakOptions};
    let secs = |what: &str, s: f64| -> anyhow::Result<std::time::Duration> {
        std::time::Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero())
            .with_context(|| format!("{what} must be positive"))
    };
    let out = out.unwrap_or_else(|| default_out("soak"));
    let opts = SoakOptions {
        duration: secs("--minutes", minutes * 60.0)?,
        window: secs("--window-s", window_s)?,
        mode: soak_mode(mode)?,
        file,
        out: out.clone(),
        launches,
    };
    let run_s = opts.duration.as_secs_f64();
    let report = soak(&opts, &|p| {
        let rows = p.rows;
        let worst = rows.iter().filter_map(|r| r.p99_ms).fold(0.0, f64::max);
        let served: usize = rows.iter().map(|r| r.requests).sum();
        let shed: usize = rows.iter().map(|r| r.shed).sum();
        let mib = |v: Option<f64>| v.map_or("–".into(), |x| format!("{x:.0} MiB"));
        let r0 = rows.first();
        let end_s = r0.map_or(0.0, |r| r.end_s);
        // Past the run's end the tenants only finish their requests in flight (under a
        // sanitizer that can take minutes).
        let draining = if end_s > run_s { " (finishing the requests in flight)" } else { "" };
        eprintln!(
            "soak: {end_s:>6.0} s: {served} served, {shed} shed, worst p99 {worst:.2} ms, RSS {}, GPU {}{draining}",
            mib(r0.and_then(|r| r.rss_mib)),
            mib(r0.and_then(|r| r.gpu_used_mib))
        );
        if let Some(l) = &p.launches {
            eprintln!("soak: {end_s:>6.0} s: {}", launches_line(p.labels, l));
        }
    })?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join("soak.csv"), report.csv())?;
    std::fs::write(out.join("summary.md"), report.summary(&opts))?;
    if let Err(e) = report.plot(&out) {
        eprintln!("rightsize: no soak plot: {e:#}");
    }
    println!("{}", report.summary(&opts));
    println!("results in {}", out.display());
    match report.error {
        Some(e) => anyhow::bail!("the soak stopped early: {e}"),
        None => Ok(()),
    }
}

fn soak_replot(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("soak.csv");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let report = crate::harness::soak::read_csv(&text, &path.display().to_string())?;
    for file in report.plot(dir)? {
        println!("{}", file.display());
    }
    Ok(())
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
            "hardware_queues": crate::runtime::queues::in_effect(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    print!("{}", render(info));
    println!("  {:<20} {}", "hardware queues", crate::runtime::queues::in_effect());
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

fn profile(
    model_name: &str,
    ckpt: Option<&std::path::Path>,
    batch: u32,
    seq: u32,
    opts: Options,
    seed: u64,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let source = match ckpt {
        Some(dir) => ModelSource::Checkpoint(dir.to_path_buf()),
        None => ModelSource::Named(model_name.to_string(), seed),
    };
    check_profile_args(&source, batch, seq, opts)?;
    let device = Device::open(0).context("cannot open the GPU")?;
    let gpu = device.info().name.clone();
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("profiling {bar:40} {pos}/{len} kernels {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let profiled = profile_model(device, &source, batch, seq, opts, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let p = &profiled.profile;
    let out = out.unwrap_or_else(|| profile_path(std::path::Path::new("profiles"), &gpu, &p.model, batch, seq));
    p.save(&out)?;
    println!("{}", p.summary());
    println!(
        "{} launches, {} distinct kernels, profiled in {:.1} s; wrote {}",
        profiled.launches,
        p.kernels.len(),
        profiled.seconds,
        out.display()
    );
    Ok(())
}

/// `rounds DIR…`: the rounds' table, each results file read once (the same one named twice,
/// under any name, would count as two rounds).
fn rounds_of(dirs: &[PathBuf]) -> anyhow::Result<()> {
    use crate::harness::results::same_results_file;
    for (i, d) in dirs.iter().enumerate() {
        if let Some(first) = dirs[..i].iter().find(|e| same_results_file(e, d)) {
            anyhow::bail!("{} and {} are the same results: a round counts once", first.display(), d.display());
        }
    }
    let reports =
        dirs.iter().map(|d| crate::harness::results::Report::load_from(d)).collect::<anyhow::Result<Vec<_>>>()?;
    print_quietly(&crate::harness::rounds::rounds(&reports))
}

/// Writes `text` to standard output; a reader that stopped reading (`| head`) ends it quietly.
fn print_quietly(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `profile --stale DIR`: the model profiles of DIR measured with other kernels than this
/// build's, or, where this host has a GPU, on another GPU model (this GPU has none of them
/// yet), a path a line.
fn stale_profiles(dir: &Path) -> anyhow::Result<()> {
    let profiles = crate::profiler::Profile::models_in(dir)?;
    // No output means "none stale": a directory without model profiles (say `profiles`
    // instead of `profiles/<gpu>`) must not read as one whose profiles are all fresh.
    anyhow::ensure!(
        !profiles.is_empty(),
        "--stale {}: no model profiles there (they lie in profiles/<gpu>, e.g. profiles/nvidia-h200)",
        dir.display()
    );
    let device = Device::open(0).ok();
    let mut lines = String::new();
    for (path, p) in profiles {
        let stale = match &device {
            Some(d) => p.check(d.info()).is_err(),
            None => p.is_stale(),
        };
        if stale {
            lines += &format!("{}\n", path.display());
        }
    }
    print_quietly(&lines)
}

/// `profile --app`: runs `command` on each SM count under the interposer and writes the
/// application's profile.
fn profile_app(
    command: &str,
    sms: Option<&str>,
    epsilon: f64,
    abs_tol_us: f64,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    use crate::profiler::app;
    if command.trim().is_empty() {
        anyhow::bail!("--app: no command given");
    }
    if !(epsilon.is_finite() && epsilon >= 0.0 && abs_tol_us.is_finite() && abs_tol_us >= 0.0) {
        anyhow::bail!("--epsilon and --abs-tol-us must be finite and ≥ 0 (got {epsilon} and {abs_tol_us})");
    }
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let preload = app::preload_library(&exe).map_err(|e| anyhow::anyhow!("profile --app: {e}"))?;
    // The device's description, then the device let go: the application has it to itself.
    let info = Device::open(0).context("cannot open the GPU")?.info().clone();
    let sms = match sms {
        Some(list) => app::parse_sms(list, info.sm_count).map_err(anyhow::Error::msg)?,
        None => app::default_sms(&info),
    };
    let started = std::time::Instant::now();
    let p = app::profile_app(&info, command, &sms, &preload, epsilon, abs_tol_us, |i, n, k| {
        eprintln!("profile --app: run {}/{n} on {k} SMs ({:.0} s)", i + 1, started.elapsed().as_secs_f64());
    })?;
    let out = out.unwrap_or_else(|| app::app_profile_path(std::path::Path::new("profiles"), &info.name, command));
    p.save(&out)?;
    println!("{}", app::summary(&p));
    println!(
        "{} kernels and calls over {} runs, profiled in {:.1} s; wrote {} (use it: RIGHTSIZE_PROFILE={})",
        p.app_kernels.len(),
        p.request_curve.len(),
        started.elapsed().as_secs_f64(),
        out.display(),
        out.display()
    );
    Ok(())
}

/// Arguments shared by `run` and `compare`.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Modes, comma-separated: timeslice, mps, mps-limit, streams, static, krisp, krisp-equal,
    /// krisp-conserved, krisp-isolated, each also as <mode>-plan; "default" for the default set. Given,
    /// they replace a scenario file's own `modes`, in the order named; else a scenario runs
    /// its own, or the default set.
    #[arg(long)]
    modes: Option<String>,
    /// Only these scenarios (by name; repeatable).
    #[arg(long = "scenario")]
    scenarios: Vec<String>,
    /// Results directory (default: results/<name>-<date>-<time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where committed profiles are (<dir>/<gpu>/<model>-b<batch>-s<seq>.json).
    #[arg(long, default_value = "profiles")]
    profiles: PathBuf,
    /// Override every scenario's counted requests per tenant.
    #[arg(long)]
    requests: Option<u32>,
    /// Override every scenario's warm-up requests per tenant.
    #[arg(long)]
    warmup: Option<u32>,
    /// Write a timeline of the shared runs to FILE (Chrome trace-event JSON; open it in
    /// ui.perfetto.dev). Costs two CUDA event records per launch while on.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// The most GPU slices the trace keeps per run (per tenant under worker processes).
    #[arg(long, default_value_t = 200_000, value_name = "N")]
    trace_limit: usize,
    /// Take the solo baselines from an earlier comparison on this GPU (its results directory
    /// or results.json) instead of measuring them again; those it lacks are measured (an open
    /// loop's baseline is of its own run's length and arrivals: one of another length is not
    /// taken, and the line that says so names it). For rounds of one comparison: two modes'
    /// ratio in a round does not depend on when the baselines ran, and each round then costs
    /// its shared runs only.
    #[arg(long, value_name = "RESULTS")]
    solos: Option<PathBuf>,
    /// Go on from a comparison cut short (its results directory or results.json, on this
    /// GPU, with the same `RIGHTSIZE_*` settings; `--out` another directory): its solo
    /// baselines, the shared runs that finished (run again where a solo baseline of theirs is
    /// measured again) and the sweep points that ran are taken, the rest run; the results'
    /// command line names the comparison resumed. With the same
    /// scenarios and modes, this finishes what the first run began. (Its solo baselines are
    /// the ones its runs were judged by, so `--solos` does not go with it.)
    #[arg(long, value_name = "RESULTS", conflicts_with = "solos")]
    resume: Option<PathBuf>,
}

/// The modes to run `scenarios` under: those `asked` for on the command line, which replace
/// each scenario's own list, in their order; else the default set, for scenarios that list
/// none.
fn asked_modes(scenarios: &mut [Scenario], asked: Option<&str>) -> anyhow::Result<Vec<Mode>> {
    let modes = parse_modes(asked.unwrap_or("default"))?;
    if asked.is_some() {
        for s in scenarios {
            s.modes = None;
        }
    }
    Ok(modes)
}

fn run_scenarios(file: ScenarioFile, name: &str, args: RunArgs) -> anyhow::Result<()> {
    let mut scenarios = file.select(&args.scenarios)?;
    let modes = asked_modes(&mut scenarios, args.modes.as_deref())?;
    for s in &mut scenarios {
        if let Some(r) = args.requests {
            anyhow::ensure!(r > 0, "--requests must be at least 1");
            s.requests = r;
        }
        if let Some(w) = args.warmup {
            s.warmup = w;
        }
        if args.requests.is_some() || args.warmup.is_some() {
            // What the file's own values were checked for at load, these are checked for here.
            s.validate().with_context(|| format!("scenario {} with --requests or --warmup", s.name))?;
        }
    }
    let out = args.out.unwrap_or_else(|| default_out(name));
    let command = command_line(std::env::vars_os(), std::env::args_os());
    anyhow::ensure!(args.trace_limit > 0, "--trace-limit must be at least 1");
    let trace = args.trace.map(|path| TraceOptions { path, limit: args.trace_limit });
    let opts = CompareOptions {
        modes,
        out: out.clone(),
        profiles: args.profiles,
        command,
        worker: None,
        trace,
        solos_from: args.solos,
        resume_from: args.resume,
    };
    let report = compare(&scenarios, &opts)?;
    println!("{}", summary(&report));
    println!("results in {}", out.display());
    Ok(())
}

/// The command line a results directory records: the `RIGHTSIZE_*` variables set (several
/// change what runs, e.g. `RIGHTSIZE_GUARD` or `RIGHTSIZE_PRESSURE`), sorted, then the
/// arguments, each quoted for a shell where it needs it, so the line runs the same again.
fn command_line(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> String {
    let word = |s: &std::ffi::OsStr| {
        let s = s.to_string_lossy();
        let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:@%+".contains(c));
        if plain {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let mut set: Vec<String> = vars
        .into_iter()
        .filter(|(k, _)| k.to_str().is_some_and(|k| k.starts_with("RIGHTSIZE_")))
        .map(|(k, v)| format!("{}={}", k.to_string_lossy(), word(&v)))
        .collect();
    set.sort();
    set.into_iter().chain(args.into_iter().map(|a| word(&a))).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_asked_for_replace_a_scenario_files_own() {
        let text = "[[scenario]]\nname = \"a\"\nmodes = [\"timeslice\", \"mps\", \"static\"]\n\
                    [[scenario.tenant]]\nmodel = \"gpt2\"\n\
                    [[scenario]]\nname = \"b\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\n";
        let file = ScenarioFile::parse(text, "test").unwrap();
        // Not asked: a scenario keeps its own list; one without runs the default set.
        let mut own = file.select(&[]).unwrap();
        assert_eq!(asked_modes(&mut own, None).unwrap(), Mode::defaults());
        assert_eq!(own[0].modes.as_ref().map(Vec::len), Some(3));
        assert!(own[1].modes.is_none());
        // Asked: every scenario runs those, in the order named.
        let mut asked = file.select(&[]).unwrap();
        let modes = asked_modes(&mut asked, Some("mps,timeslice")).unwrap();
        assert_eq!(modes, parse_modes("mps,timeslice").unwrap());
        assert!(asked.iter().all(|s| s.modes.is_none()));
        assert!(asked_modes(&mut asked, Some("mig")).is_err(), "an unknown mode is refused");
    }

    #[test]
    fn compare_takes_an_earlier_comparisons_solos_when_asked() {
        let solos = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Compare { args, .. } => args.solos,
            _ => unreachable!("a compare command"),
        };
        assert_eq!(solos(&["rightsize", "compare"]), None);
        assert_eq!(solos(&["rightsize", "compare", "--solos", "results/a"]), Some(PathBuf::from("results/a")));
        assert!(Cli::try_parse_from(["rightsize", "compare", "--solos"]).is_err(), "a path is needed");
        let resume = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Compare { args, .. } => args.resume,
            _ => unreachable!("a compare command"),
        };
        assert_eq!(resume(&["rightsize", "compare"]), None);
        assert_eq!(resume(&["rightsize", "compare", "--resume", "results/a"]), Some(PathBuf::from("results/a")));
        assert!(Cli::try_parse_from(["rightsize", "compare", "--resume", "a", "--solos", "b"]).is_err());
    }

    #[test]
    fn a_results_directory_records_the_settings_its_command_ran_with() {
        let os = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let vars = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.into(), v.into())).collect::<Vec<_>>();
        let args = os(&["gpu-bin/rightsize", "compare", "--out", "results/default"]);
        assert_eq!(command_line(vars(&[]), args.clone()), "gpu-bin/rightsize compare --out results/default");
        // Only the tool's own variables, sorted; values and arguments quoted where a shell needs it.
        let set = vars(&[("RIGHTSIZE_PRESSURE", "0"), ("HOME", "/root"), ("RIGHTSIZE_GUARD", "off")]);
        assert_eq!(
            command_line(set, args.clone()),
            "RIGHTSIZE_GUARD=off RIGHTSIZE_PRESSURE=0 gpu-bin/rightsize compare --out results/default"
        );
        let odd = command_line(vars(&[("RIGHTSIZE_X", "a b")]), os(&["rightsize", "--with", "it's", "", "$HOME"]));
        assert_eq!(odd, r"RIGHTSIZE_X='a b' rightsize --with 'it'\''s' '' '$HOME'");
    }
}

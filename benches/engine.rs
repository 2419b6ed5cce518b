//! The engine against PyTorch, same shapes, measured in the same run: BERT-base forward at
//! batch 8, seq 128; distilgpt2 and gpt2 prefill of 128 tokens and 32 greedy decode steps at
//! batch 8. Each case runs eager and as a plan (CUDA graph), with the library's GEMMs and with
//! cuBLASLt; a decode step with the library's GEMMs runs its layers in the decoder kernel and,
//! for comparison, a kernel per operation. A decode step is also compared with its weight-read
//! floor: the bytes of weights a step must read over the DRAM bandwidth measured here (a
//! device-to-device copy). Last, the decode issue's models (mistral-7b, llama-3.2-1b,
//! gpt2-medium) at batch 8 and Llama-3.2-1B at batch 1 over a 4,096-token cache: a decode step
//! against its floor on the whole device, and on 48 SMs (`RIGHTSIZE_BENCH_DECODE_SMS`, a
//! multiple of the partition granularity) against its whole-device time.
//!
//! `cargo bench --bench engine` on a GPU host with python3 + torch + transformers (for the
//! baseline; without them the PyTorch column is empty). `RIGHTSIZE_BENCH_TABLE=FILE` writes
//! the table as Markdown; `RIGHTSIZE_BENCH_DECODE=1` runs only the decode issue's table (of
//! the cases `RIGHTSIZE_BENCH_DECODE_MODELS=a,b/b1/s4064,…` names, if set: a model at batch 8
//! after a prefill of 128 tokens, or at batch B after S tokens). `RIGHTSIZE_BENCH_INTERFERENCE=1`
//! runs only the interference table: a latency-critical request (BERT-base at batch 1, from a
//! plan) on a partition of its own, alone and beside co-runners on the other SMs that each
//! stress one shared resource (kernel launches, memory, both, a best-effort model).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::{dram_bandwidth, emit, median};
use criterion::{criterion_group, criterion_main, Criterion};
use cudarc::driver::sys;
use rightsize::engine::weights::Spec;
use rightsize::engine::{DecodePath, GemmBackend, Mode, Model, ModelConfig, ModelWeights, Workspace};
use rightsize::kernels::abi::{SmidParams, VectorAddParams};
use rightsize::kernels::{KernelId, SMID_RECORD, VECTOR_ADD_F16};
use rightsize::runtime::{
    Device, DeviceBuffer, EventTimer, PartitionId, PartitionRequest, PartitionSupport, Placement, PoolSpec, Runtime,
    Tenant,
};

const BATCH: u32 = 8;
const SEQ: u32 = 128;
const NEW: u32 = 32;

/// Milliseconds of GPU time of `f`'s work on `stream`.
fn timed(timer: &EventTimer, stream: sys::CUstream, f: impl FnOnce()) -> f64 {
    // SAFETY: the tenant's live stream, on which each measured request ends.
    unsafe {
        timer.time_ms(stream, || {
            f();
            Ok::<(), rightsize::runtime::Error>(())
        })
    }
    .expect("timing")
}

/// Bytes of weights one decode step reads: every matrix and vector except the position and
/// token-type tables (one row each), the token table counted once (as the LM head if tied).
fn decode_weight_bytes(c: &ModelConfig) -> f64 {
    let specs = ModelWeights::specs(c);
    let mut total = 0usize;
    let _ = specs.clone().map(|s: Spec| {
        total += s.len;
        Ok::<_, ()>(())
    });
    let skip = specs.pos.map_or(0, |s| s.len) + specs.type_row.map_or(0, |s| s.len);
    let tok_once = if c.tie_embeddings { 0 } else { specs.tok.len };
    2.0 * (total - skip - tok_once) as f64
}

/// The decode issue's models (batch 8, a cache of SEQ to SEQ + NEW positions), a long-context
/// step (Llama-3.2-1B at batch 1 over a cache of 4,064 to 4,096: decode attention split into
/// chunks), and the SMs of the partition its targets name (a third of an H200).
const DECODE_CASES: [DecodeCase; 4] = [
    DecodeCase { model: "mistral-7b", batch: BATCH, prompt: SEQ },
    DecodeCase { model: "llama-3.2-1b", batch: BATCH, prompt: SEQ },
    DecodeCase { model: "gpt2-medium", batch: BATCH, prompt: SEQ },
    DecodeCase { model: "llama-3.2-1b", batch: 1, prompt: 4096 - NEW },
];
const DECODE_SMS: u32 = 48;

/// The partition's SMs for the decode table: `RIGHTSIZE_BENCH_DECODE_SMS`, else DECODE_SMS
/// (a value that is not a number of SMs is said and ignored).
fn decode_sms() -> u32 {
    match std::env::var("RIGHTSIZE_BENCH_DECODE_SMS") {
        Ok(v) => v.trim().parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
            eprintln!("RIGHTSIZE_BENCH_DECODE_SMS={v}: not a number of SMs; {DECODE_SMS} it is");
            DECODE_SMS
        }),
        Err(_) => DECODE_SMS,
    }
}

/// A decode step of the decode table: `model` at `batch` after a prefill of `prompt` tokens.
#[derive(Clone, Copy)]
struct DecodeCase<'a> {
    model: &'a str,
    batch: u32,
    prompt: u32,
}

impl<'a> DecodeCase<'a> {
    /// `model`, or `model/bB/sS` (batch B after a prefill of S tokens).
    fn parse(spec: &'a str) -> Result<Self, String> {
        let mut parts = spec.split('/');
        let model = parts.next().unwrap_or_default();
        let mut case = DecodeCase { model, batch: BATCH, prompt: SEQ };
        for part in parts {
            let number = |p: &str| p.parse::<u32>().ok().filter(|&n| n > 0);
            match (part.strip_prefix('b').and_then(number), part.strip_prefix('s').and_then(number)) {
                (Some(b), _) => case.batch = b,
                (_, Some(s)) => case.prompt = s,
                _ => return Err(format!("`{part}` in `{spec}` is neither bN (batch) nor sN (prompt tokens)")),
            }
        }
        Ok(case)
    }

    fn label(&self) -> String {
        format!("{} b{} cache {}..{}", self.model, self.batch, self.prompt, self.prompt + NEW)
    }
}

/// Milliseconds of one of NEW decode steps (`step`) by tenant `t`, after a fresh prefill of
/// `case`'s prompt.
fn decode_steps_ms(
    t: &Tenant,
    timer: &EventTimer,
    model: &Model,
    ws: &Workspace,
    case: DecodeCase,
    step: impl Fn(),
) -> f64 {
    model.prefill(t, ws, case.batch, case.prompt).expect("prefill");
    t.synchronize().expect("sync");
    timed(timer, t.stream().expect("stream"), || (0..NEW).for_each(|_| step())) / f64::from(NEW)
}

/// Milliseconds of one decode step replayed from a plan captured by `t` (so its kernels are
/// those for `t`'s SMs): the median of 5 timings of [`decode_steps_ms`].
fn decode_step_ms(t: &Tenant, timer: &EventTimer, model: &Model, ws: &Workspace, case: DecodeCase) -> f64 {
    let plan = model.capture_decode_step(t, ws, case.batch).expect("capture");
    let replay = || t.replay(&plan).expect("replay");
    let mut v: Vec<f64> = (0..6).map(|_| decode_steps_ms(t, timer, model, ws, case, replay)).skip(1).collect();
    median(&mut v)
}

/// Bytes of KV cache a decode step of `case` reads on average over its NEW steps.
fn decode_cache_bytes(c: &ModelConfig, case: DecodeCase) -> f64 {
    let per_position = 2.0 * 2.0 * f64::from(c.layers * c.kv_heads * c.head_dim);
    per_position * f64::from(case.batch) * (f64::from(case.prompt) + f64::from(NEW) / 2.0)
}

/// The decode issue's table: each case's decode step (plan) against its read floor on the whole
/// device, and on a partition of 48 SMs against its whole-device time. The floor is the step's
/// weight bytes (the floor) and, for caches longer than SEQ + NEW, its cache bytes, over
/// the copy bandwidth of this run. Targets: mistral-7b ≤ 1.3× its floor and ≤ 1.25× on 48 SMs;
/// llama-3.2-1b ≤ 1.5×; gpt2-medium ≤ 2× (batch 8).
fn decode_floors(rt: &Arc<Runtime>, timer: &EventTimer, bandwidth: f64) -> Result<String, String> {
    let sms = decode_sms();
    let third = rt.pool().iter().find(|(_, p)| !p.is_whole_device() && p.sms() == sms).map(|(id, _)| id);
    let mut table = format!(
        "\nDecode steps, replayed from plans, each the mean of {NEW} after a prefill, against the read floor \
         (weight bytes, and a long cache's bytes, over the copy bandwidth of this run) and, on a green-context \
         partition of {sms} SMs, against the whole device's step.\n\n\
         | model | step (ms) | floor (ms) | step / floor | step on {sms} SMs (ms) | ÷ whole device |\n|---|---:|---:|---:|---:|---:|\n"
    );
    // `RIGHTSIZE_BENCH_DECODE_MODELS=a,b/b1/s4064` runs those cases instead.
    let chosen = std::env::var("RIGHTSIZE_BENCH_DECODE_MODELS").ok().filter(|l| !l.trim().is_empty());
    let cases: Vec<DecodeCase> = match &chosen {
        Some(list) => {
            list.split(',').map(str::trim).filter(|m| !m.is_empty()).map(DecodeCase::parse).collect::<Result<_, _>>()?
        }
        None => DECODE_CASES.to_vec(),
    };
    for case in cases {
        let label = case.label();
        let cfg = match ModelConfig::named(case.model) {
            Ok(c) => c,
            Err(e) => {
                table += &format!("| {label} | not run: {e} | | | | |\n");
                continue;
            }
        };
        let whole = Tenant::new(rt.clone(), 0, Placement::WHOLE).expect("tenant");
        let weights = match ModelWeights::synthetic(&whole, &cfg, 3) {
            Ok(w) => w,
            Err(e) => {
                table += &format!("| {label} | not run: {e} | | | | |\n");
                continue;
            }
        };
        let model = Model::new(&whole, cfg.clone(), weights).expect("model");
        let mut ws = match model.workspace(&whole, case.batch, case.prompt + NEW) {
            Ok(ws) => ws,
            Err(e) => {
                table += &format!("| {label} | not run: {e} | | | | |\n");
                continue;
            }
        };
        let prompts: Vec<u32> = (0..ws.ids.len() as u32).map(|i| (i * 7919) % cfg.vocab).collect();
        ws.ids.copy_from_host(&prompts).expect("ids");
        let cache = if case.prompt > SEQ { decode_cache_bytes(&cfg, case) } else { 0.0 };
        let floor = (decode_weight_bytes(&cfg) + cache) / bandwidth * 1e3;
        let step = decode_step_ms(&whole, timer, &model, &ws, case);
        let confined = third.map(|id| {
            let on = Tenant::new(rt.clone(), 0, Placement::on(id)).expect("tenant");
            decode_step_ms(&on, timer, &model, &ws, case)
        });
        let (on_ms, ratio) =
            confined.map_or((String::new(), String::new()), |c| (format!("{c:.3}"), format!("{:.2}", c / step)));
        table += &format!("| {label} | {step:.3} | {floor:.3} | {:.2} | {on_ms} | {ratio} |\n", step / floor);
        rt.synchronize().expect("sync");
    }
    Ok(table)
}

/// SMs of the latency-critical partition of the interference table (the knee of BERT-base's
/// batch-1 request on an H200, profiles/nvidia-h200/bert-base-b1-s128.json).
const INTERFERENCE_SMS: u32 = 64;

/// What runs beside the latency-critical request in the interference table.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CoRunner {
    Nothing,
    /// Kernels that spin for about a millisecond a unit: SMs busy, few launches, no memory.
    SpinLong,
    /// Kernels of one short spinning unit a block: launches, no memory.
    SpinShort,
    /// Vector adds over 128-MiB arrays: DRAM traffic, few launches.
    StreamLong,
    /// Vector adds over 2-MiB arrays (L2-resident): launches and L2 traffic.
    StreamShort,
    /// BERT-large at batch 8, seq 128, replayed from a plan: a best-effort encoder.
    BertLarge,
    /// GPT-2 medium's decode step at batch 8 over a 128-token cache, replayed from a plan: a
    /// best-effort decoder.
    Gpt2MediumDecode,
}

/// Bytes of DRAM traffic of one vector add of `n` halves (a read, c written; b is a).
fn stream_bytes(n: usize) -> f64 {
    4.0 * n as f64
}

/// Milliseconds (GPU) of each of `n` back-to-back replays of `plan` by `t`.
fn replays_ms(t: &Tenant, timer: &EventTimer, plan: &rightsize::runtime::Plan, n: usize) -> Vec<f64> {
    let stream = t.stream().expect("stream");
    (0..n).map(|_| timed(timer, stream, || t.replay(plan).expect("replay"))).collect()
}

/// How the measuring thread and a co-runner start and stop each other.
#[derive(Default)]
struct Signals {
    /// The co-runner is set up (a model captured) and waits for `go`.
    ready: AtomicBool,
    go: AtomicBool,
    stop: AtomicBool,
}

/// Sets `stop` when dropped, so a co-runner ends even where the measuring thread panics.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `what` on tenant `t` (on a partition of `sms` SMs) from `go` until `stop`, at most
/// four launches ahead of the GPU; returns its launches (a decode's: steps, a prefill every
/// 60 among them) a second and, for the vector adds, the bytes they move a second.
fn co_run(t: &Tenant, sms: u32, what: CoRunner, signals: &Signals) -> (f64, f64) {
    let rt = t.runtime();
    let blocks_per_sm = rt.kernels().get(KernelId::SmidRecord).blocks_per_sm;
    let (go, stop) = (&signals.go, &signals.stop);
    let run = |launch: &dyn Fn()| {
        signals.ready.store(true, Ordering::Release);
        while !go.load(Ordering::Acquire) && !stop.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let (start, mut launches) = (std::time::Instant::now(), 0u64);
        while !stop.load(Ordering::Acquire) {
            for _ in 0..4 {
                launch();
            }
            launches += 4;
            t.synchronize().expect("sync");
        }
        launches as f64 / start.elapsed().as_secs_f64()
    };
    let rate = match what {
        CoRunner::Nothing => {
            signals.ready.store(true, Ordering::Release);
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            0.0
        }
        CoRunner::SpinLong | CoRunner::SpinShort => {
            let (units, spin) = if what == CoRunner::SpinLong {
                (4 * sms * blocks_per_sm, 1 << 21)
            } else {
                (sms * blocks_per_sm, 4096)
            };
            let out = DeviceBuffer::<u32>::filled(rt.device(), units as usize, 0).expect("buffer");
            let p = SmidParams { sm: out.ptr(), spin_cycles: spin, units, _pad: 0 };
            // SAFETY: `out` holds `units` words.
            run(&|| unsafe { t.launch(SMID_RECORD, &p) }.map(|_| ()).expect("launch"))
        }
        CoRunner::StreamLong | CoRunner::StreamShort => {
            let n = stream_len(what);
            let a = DeviceBuffer::<half::f16>::filled(rt.device(), n, 0).expect("buffer");
            let c = DeviceBuffer::<half::f16>::filled(rt.device(), n, 0).expect("buffer");
            let p = VectorAddParams { a: a.ptr(), b: a.ptr(), c: c.ptr(), n: n as u64 };
            // SAFETY: buffers of n halves.
            run(&|| unsafe { t.launch(VECTOR_ADD_F16, &p) }.map(|_| ()).expect("launch"))
        }
        CoRunner::BertLarge => {
            let cfg = ModelConfig::named("bert-large").expect("config");
            let model =
                Model::new(t, cfg.clone(), ModelWeights::synthetic(t, &cfg, 5).expect("weights")).expect("model");
            let ws = model.workspace(t, BATCH, SEQ).expect("workspace");
            let plan = model.capture_encode(t, &ws, BATCH, SEQ).expect("capture");
            run(&|| t.replay(&plan).expect("replay"))
        }
        CoRunner::Gpt2MediumDecode => {
            let cfg = ModelConfig::named("gpt2-medium").expect("config");
            let model =
                Model::new(t, cfg.clone(), ModelWeights::synthetic(t, &cfg, 5).expect("weights")).expect("model");
            let ws = model.workspace(t, BATCH, SEQ + 64).expect("workspace");
            model.prefill(t, &ws, BATCH, SEQ).expect("prefill");
            let plan = model.capture_decode_step(t, &ws, BATCH).expect("capture");
            // Steps over a cache of 128 to 191 positions, a prefill after every 60.
            let steps = std::cell::Cell::new(0u32);
            run(&|| {
                if steps.get() == 60 {
                    model.prefill(t, &ws, BATCH, SEQ).expect("prefill");
                    steps.set(0);
                }
                t.replay(&plan).expect("replay");
                steps.set(steps.get() + 1);
            })
        }
    };
    t.synchronize().expect("sync");
    let bytes = match what {
        CoRunner::StreamLong | CoRunner::StreamShort => rate * stream_bytes(stream_len(what)),
        _ => f64::NAN,
    };
    (rate, bytes)
}

/// Halves of each vector of a streaming co-runner.
fn stream_len(what: CoRunner) -> usize {
    if what == CoRunner::StreamLong {
        64 << 20
    } else {
        1 << 20
    }
}

/// The interference table: BERT-base's batch-1 request (plan) on a partition of
/// [`INTERFERENCE_SMS`] SMs, alone and beside each [`CoRunner`] on a partition of other groups
/// (all the others, or fewer): the request's GPU time (median, p90 and p99 of back-to-back
/// replays), its median against alone, and the co-runner's launches (or replays) a second and,
/// for the vector adds, DRAM bytes a second.
fn interference(device: Device) -> Result<String, String> {
    let (granularity, groups) = match &device.info().partitions {
        PartitionSupport::Supported { granularity, groups, .. } => (*granularity, *groups),
        other => return Err(format!("no green-context partitions: {other:?}")),
    };
    let lc_groups = INTERFERENCE_SMS / granularity;
    if INTERFERENCE_SMS % granularity != 0 || lc_groups + 2 > groups {
        return Err(format!("{INTERFERENCE_SMS} SMs are not whole groups of {granularity} short of {groups} - 1"));
    }
    // The co-runner's partitions, ending at the last group: all the groups the request's leave,
    // half of them, and two groups.
    let rest = groups - lc_groups;
    let sizes = [rest, rest.div_ceil(2), 2];
    let spec = PoolSpec {
        partitions: std::iter::once(PartitionRequest { first_group: 0, sms: INTERFERENCE_SMS })
            .chain(sizes.iter().map(|&g| PartitionRequest { first_group: groups - g, sms: g * granularity }))
            .collect(),
        ..PoolSpec::default()
    };
    let rt = Arc::new(Runtime::new(device, &spec).map_err(|e| e.to_string())?);
    let lc = Tenant::new(rt.clone(), 0, Placement::on(PartitionId::green(0))).map_err(|e| e.to_string())?;
    let timer = EventTimer::new(rt.device()).map_err(|e| e.to_string())?;
    let cfg = ModelConfig::named("bert-base").map_err(|e| e.to_string())?;
    let model = Model::new(&lc, cfg.clone(), ModelWeights::synthetic(&lc, &cfg, 3).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let ws = model.workspace(&lc, 1, SEQ).map_err(|e| e.to_string())?;
    let plan = model.capture_encode(&lc, &ws, 1, SEQ).map_err(|e| e.to_string())?;
    let mut table = format!(
        "\nBERT-base's batch-1 request (seq {SEQ}, a plan) on a partition of {INTERFERENCE_SMS} SMs (groups 0–{}), \
         400 back-to-back replays, alone and beside a co-runner on a partition of the last groups.\n\n\
         | co-runner | its SMs | median (µs) | p90 (µs) | p99 (µs) | median ÷ alone | co-runner launches/s | its GB/s moved (DRAM, or L2 for the short adds) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        lc_groups - 1
    );
    use CoRunner::*;
    let cases = [
        (Nothing, 0),
        (SpinLong, 0),
        (SpinShort, 0),
        (StreamShort, 0),
        (StreamLong, 0),
        (StreamLong, 1),
        (StreamLong, 2),
        (BertLarge, 0),
        (Gpt2MediumDecode, 0),
        (Gpt2MediumDecode, 1),
        (Gpt2MediumDecode, 2),
        (Nothing, 0),
    ];
    let mut alone = f64::NAN;
    for (what, size) in cases {
        let signals = Signals::default();
        let sms = sizes[size] * granularity;
        let (mut v, (rate, bytes)) = std::thread::scope(|s| {
            let co = s.spawn(|| {
                let t = Tenant::new(rt.clone(), 1, Placement::on(PartitionId::green(1 + size))).expect("tenant");
                co_run(&t, sms, what, &signals)
            });
            let stop = StopOnDrop(&signals.stop);
            // Its set-up (a model's capture) done, then a moment of its loop before timing.
            while !signals.ready.load(Ordering::Acquire) && !co.is_finished() {
                std::thread::sleep(Duration::from_millis(1));
            }
            signals.go.store(true, Ordering::Release);
            std::thread::sleep(Duration::from_millis(50));
            replays_ms(&lc, &timer, &plan, 30);
            let v = replays_ms(&lc, &timer, &plan, 400);
            drop(stop);
            (v, co.join().expect("co-runner"))
        });
        let p50 = median(&mut v) * 1e3;
        let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize] * 1e3;
        if alone.is_nan() {
            alone = p50;
        }
        let (sms, bw) = match what {
            Nothing => (String::from("–"), String::new()),
            _ if bytes.is_nan() => (sms.to_string(), String::new()),
            _ => (sms.to_string(), format!("{:.0}", bytes / 1e9)),
        };
        table += &format!(
            "| {what:?} | {sms} | {p50:.1} | {:.1} | {:.1} | {:.2} | {rate:.0} | {bw} |\n",
            at(0.9),
            at(0.99),
            p50 / alone
        );
    }
    Ok(table)
}

fn torch_baseline() -> Option<serde_json::Value> {
    let out = std::process::Command::new("python3").arg("scripts/torch_bench.py").output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            text.lines().last().and_then(|l| serde_json::from_str(l).ok())
        }
        Ok(o) => {
            eprintln!("PyTorch baseline failed: {}", String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or(""));
            None
        }
        Err(e) => {
            eprintln!("PyTorch baseline skipped: {e}");
            None
        }
    }
}

struct Row {
    case: String,
    ours_ms: f64,
    torch_key: Option<&'static str>,
}

fn bench(c: &mut Criterion) {
    let device = match Device::open(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("engine bench skipped: {e}");
            return;
        }
    };
    let title = format!("{}, driver {}", device.info().name, device.info().driver_release.clone().unwrap_or_default());
    if std::env::var_os("RIGHTSIZE_BENCH_INTERFERENCE").is_some() {
        match interference(device) {
            Ok(table) => emit(&format!("Engine on {title}.\n{table}")),
            Err(e) => eprintln!("interference table skipped: {e}"),
        }
        return;
    }
    // A partition of 48 SMs for the decode issue's table (tenants elsewhere run on the whole
    // device).
    let sms = decode_sms();
    let spec = match &device.info().partitions {
        PartitionSupport::Supported { granularity, groups, .. }
            if sms % granularity == 0 && sms / granularity <= *groups =>
        {
            PoolSpec { partitions: vec![PartitionRequest { first_group: 0, sms }], ..PoolSpec::default() }
        }
        _ => PoolSpec::default(),
    };
    let rt = Arc::new(Runtime::new(device, &spec).expect("runtime"));
    let t = Tenant::new(rt.clone(), 0, Placement::WHOLE).expect("tenant");
    let stream = t.stream().expect("stream");
    let timer = EventTimer::new(rt.device()).expect("timer");
    let bandwidth = dram_bandwidth(t.runtime().device(), t.stream().expect("stream"));
    if std::env::var_os("RIGHTSIZE_BENCH_DECODE").is_some() {
        match decode_floors(&rt, &timer, bandwidth) {
            Ok(table) => emit(&format!("Engine on {title}.\n{table}")),
            Err(e) => eprintln!("RIGHTSIZE_BENCH_DECODE_MODELS: {e}"),
        }
        return;
    }
    let torch = torch_baseline();
    let mut rows: Vec<Row> = Vec::new();
    let mut floors = Vec::new();

    let mut g = c.benchmark_group("engine");
    g.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));

    // BERT-base forward.
    {
        let cfg = ModelConfig::named("bert-base").unwrap();
        let mut model = Model::new(&t, cfg.clone(), ModelWeights::synthetic(&t, &cfg, 1).unwrap()).unwrap();
        let mut ws = model.workspace(&t, BATCH, SEQ).unwrap();
        let ids: Vec<u32> = (0..BATCH * SEQ).map(|i| (i * 7919) % cfg.vocab).collect();
        ws.ids.copy_from_host(&ids).unwrap();
        for backend in [GemmBackend::Rightsize, GemmBackend::CublasLt] {
            model.set_backend(&t, backend).unwrap();
            for mode in [Mode::Eager, Mode::Plan] {
                let plan = (mode == Mode::Plan).then(|| model.capture_encode(&t, &ws, BATCH, SEQ).unwrap());
                let run = || match &plan {
                    Some(p) => t.replay(p).unwrap(),
                    None => model.encode(&t, &ws, BATCH, SEQ).unwrap(),
                };
                let samples = RefCell::new(Vec::new());
                let name = format!("bert-base b{BATCH} s{SEQ} forward, {backend:?}, {mode:?}");
                g.bench_function(&name, |b| {
                    b.iter_custom(|iters| {
                        let ms: f64 = (0..iters).map(|_| timed(&timer, stream, run)).sum();
                        samples.borrow_mut().push(ms / iters as f64);
                        Duration::from_secs_f64(ms / 1e3)
                    })
                });
                rows.push(Row {
                    case: name,
                    ours_ms: median(&mut samples.into_inner()),
                    torch_key: Some("bert_eager_ms"),
                });
            }
        }
    }

    // Decoders: prefill 128, then 32 decode steps.
    for name in ["distilgpt2", "gpt2"] {
        let cfg = ModelConfig::named(name).unwrap();
        let mut model = Model::new(&t, cfg.clone(), ModelWeights::synthetic(&t, &cfg, 2).unwrap()).unwrap();
        // Packed where the GPU and RIGHTSIZE_PACK say (the layered step's layout).
        let packs = model.packed();
        let mut ws = model.workspace(&t, BATCH, SEQ + NEW).unwrap();
        let prompts: Vec<u32> =
            (0..BATCH * SEQ).map(|i| (i * 7919) % cfg.vocab).chain(std::iter::repeat(0)).take(ws.ids.len()).collect();
        let floor_ms = decode_weight_bytes(&cfg) / bandwidth * 1e3;
        let mut best_step = f64::MAX;
        for backend in [GemmBackend::Rightsize, GemmBackend::CublasLt] {
            model.set_backend(&t, backend).unwrap();
            let prefill_name = format!("{name} b{BATCH} prefill {SEQ}, {backend:?}");
            let samples = RefCell::new(Vec::new());
            g.bench_function(&prefill_name, |b| {
                b.iter_custom(|iters| {
                    let mut total = 0.0;
                    for _ in 0..iters {
                        ws.ids.copy_from_host(&prompts).unwrap();
                        total += timed(&timer, stream, || model.prefill(&t, &ws, BATCH, SEQ).unwrap());
                    }
                    samples.borrow_mut().push(total / iters as f64);
                    Duration::from_secs_f64(total / 1e3)
                })
            });
            let torch_prefill = if name == "gpt2" { "gpt2_prefill_ms" } else { "distilgpt2_prefill_ms" };
            rows.push(Row {
                case: prefill_name,
                ours_ms: median(&mut samples.into_inner()),
                torch_key: Some(torch_prefill),
            });

            // The decoder kernel applies with the library's GEMMs only.
            let paths: &[DecodePath] = match backend {
                GemmBackend::Rightsize => &[DecodePath::Fused, DecodePath::Layered],
                GemmBackend::CublasLt => &[DecodePath::Layered],
            };
            for (&path, mode) in paths.iter().flat_map(|p| [(p, Mode::Eager), (p, Mode::Plan)]) {
                model.set_decode_path(path);
                // The decoder kernel reads row-major weights, the layered step the default
                // layout; a workspace's decoder table names the weights it was made for.
                let pack = packs && path == DecodePath::Layered;
                if backend == GemmBackend::Rightsize && model.packed() != pack {
                    model.set_packed(&t, pack).unwrap();
                    ws = model.workspace(&t, BATCH, SEQ + NEW).unwrap();
                }
                let plan = (mode == Mode::Plan).then(|| model.capture_decode_step(&t, &ws, BATCH).unwrap());
                let step_name = format!(
                    "{name} b{BATCH} decode step (cache {SEQ}..{}), {backend:?}, {mode:?}, {path:?}",
                    SEQ + NEW
                );
                let samples = RefCell::new(Vec::new());
                g.bench_function(&step_name, |b| {
                    b.iter_custom(|iters| {
                        let mut total = 0.0;
                        for _ in 0..iters {
                            ws.ids.copy_from_host(&prompts).unwrap();
                            let case = DecodeCase { model: name, batch: BATCH, prompt: SEQ };
                            total += decode_steps_ms(&t, &timer, &model, &ws, case, || match &plan {
                                Some(p) => t.replay(p).unwrap(),
                                None => model.decode_step(&t, &ws, BATCH).unwrap(),
                            });
                        }
                        samples.borrow_mut().push(total / iters as f64);
                        Duration::from_secs_f64(total / 1e3)
                    })
                });
                let step = median(&mut samples.into_inner());
                best_step = best_step.min(step);
                let torch_step = if name == "gpt2" { "gpt2_decode_step_ms" } else { "distilgpt2_decode_step_ms" };
                rows.push(Row { case: step_name, ours_ms: step, torch_key: Some(torch_step) });
            }
        }
        floors.push((name, best_step, floor_ms));
    }
    g.finish();

    let mut table = format!(
        "Engine on {title}; DRAM bandwidth measured here: {:.2} TB/s (2 GiB device-to-device copy, read + write). \
         PyTorch {} (FP16, eager), same shapes, same run.\n\n| case | ours (ms) | PyTorch eager (ms) | PyTorch / ours |\n|---|---:|---:|---:|\n",
        bandwidth / 1e12,
        torch.as_ref().and_then(|v| v["torch"].as_str()).unwrap_or("not run")
    );
    for r in rows.iter().filter(|r| !r.ours_ms.is_nan()) {
        let base = r.torch_key.and_then(|k| torch.as_ref().and_then(|v| v[k].as_f64()));
        let (b, ratio) = match base {
            Some(b) => (format!("{b:.3}"), format!("{:.2}", b / r.ours_ms)),
            None => (String::new(), String::new()),
        };
        table += &format!("| {} | {:.3} | {b} | {ratio} |\n", r.case, r.ours_ms);
    }
    if let Some(v) = &torch {
        table += &format!(
            "\nPyTorch BERT-base replayed from a CUDA graph: {:.3} ms.\n",
            v["bert_graph_ms"].as_f64().unwrap_or(f64::NAN)
        );
    }
    table += "\n| decoder | fastest decode step (ms) | weight-read floor (ms) | step / floor |\n|---|---:|---:|---:|\n";
    for (name, step, floor) in floors.into_iter().filter(|f| f.1 < f64::MAX) {
        table += &format!("| {name} | {step:.3} | {floor:.3} | {:.2} |\n", step / floor);
    }
    match decode_floors(&rt, &timer, bandwidth) {
        Ok(decode) => table += &decode,
        Err(e) => eprintln!("RIGHTSIZE_BENCH_DECODE_MODELS: {e}"),
    }
    emit(&table);
}

criterion_group! {
    name = benches;
    // Our own tables, not criterion's plots (which need a system font).
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);

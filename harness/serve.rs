//! A tenant's model on the GPU, and what one request of it is: an encoder forward, or a
//! decoder prefill followed by greedy decode steps. Eager, or replayed from plans.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};

use super::scenario::TenantSpec;
use crate::engine::{checkpoint, Model, ModelConfig, ModelWeights, Workspace};
use crate::profiler::{median, prefix_pool, profile_launches, rest_pool, CoRunner, Options, Profile, RequestPoint};
use crate::runtime::{
    Device, EventTimer, GroupRange, PartitionSupport, Placement, Plan, PlanSet, Runtime, Tenant, UnitOrder,
};

/// Synthetic token ids for a workspace: deterministic, spread over the vocabulary.
pub fn token_ids(len: usize, vocab: u32, seed: u64) -> Vec<u32> {
    (0..len as u64).map(|i| ((i + seed).wrapping_mul(2_654_435_761) % u64::from(vocab)) as u32).collect()
}

/// The captured work of one request.
#[derive(Debug)]
enum Plans {
    /// Eager: launches decided as they go.
    None,
    /// One plan per phase, partitions fixed at capture.
    Single { first: Plan, step: Option<Plan> },
    /// One plan per phase and window; each replay takes the least loaded window.
    Sets { first: PlanSet, step: Option<PlanSet> },
}

/// A tenant's model, workspace and (optionally) plans.
#[derive(Debug)]
pub struct Served {
    model: Model,
    ws: Workspace,
    batch: u32,
    seq: u32,
    /// Decode steps after the prefill (0 for encoders).
    steps: u32,
    plans: Plans,
}

impl Served {
    /// Loads `spec`'s model with synthetic weights from `seed`, and its workspace.
    pub fn load(t: &Tenant, spec: &TenantSpec, seed: u64) -> anyhow::Result<Served> {
        let c = ModelConfig::named(&spec.model)?;
        let weights = ModelWeights::synthetic(t, &c, seed).with_context(|| format!("{}: weights", spec.model))?;
        let model = Model::new(t, c, weights)?;
        let decoder = model.config().is_decoder();
        let positions = if decoder { spec.seq + spec.new_tokens } else { spec.seq };
        let mut ws = model.workspace(t, spec.batch, positions)?;
        ws.ids.copy_from_host(&token_ids(ws.ids.len(), model.config().vocab, seed))?;
        let steps = if decoder { spec.new_tokens.saturating_sub(1) } else { 0 };
        Ok(Served { model, ws, batch: spec.batch, seq: spec.seq, steps, plans: Plans::None })
    }

    fn first(&self, t: &Tenant) -> Result<(), crate::engine::EngineError> {
        if self.model.config().is_decoder() {
            self.model.prefill(t, &self.ws, self.batch, self.seq)
        } else {
            self.model.encode(t, &self.ws, self.batch, self.seq)
        }
    }

    /// Captures the request as plans: one per phase, or with `windows`, one per phase and
    /// window (replays then take the least loaded window).
    pub fn capture(&mut self, t: &Tenant, windows: Option<&[GroupRange]>) -> anyhow::Result<()> {
        let has_steps = self.steps > 0;
        self.plans = match windows {
            None => Plans::Single {
                first: t.capture(|| self.first(t))?,
                step: has_steps.then(|| self.model.capture_decode_step(t, &self.ws, self.batch)).transpose()?,
            },
            Some(w) => Plans::Sets {
                first: t.capture_set(w, || self.first(t))?,
                step: has_steps
                    .then(|| t.capture_set(w, || self.model.decode_step(t, &self.ws, self.batch)))
                    .transpose()?,
            },
        };
        Ok(())
    }

    /// Runs a request of one sequence more than the tenant's batch (the engine refuses it:
    /// the workspace holds `batch` sequences).
    pub fn request_too_large(&self, t: &Tenant) -> anyhow::Result<()> {
        let batch = self.batch + 1;
        if self.model.config().is_decoder() {
            self.model.prefill(t, &self.ws, batch, self.seq)?;
        } else {
            self.model.encode(t, &self.ws, batch, self.seq)?;
        }
        t.synchronize()?;
        Ok(())
    }

    /// Runs one request and waits for it.
    pub fn request(&self, t: &Tenant) -> anyhow::Result<()> {
        match &self.plans {
            Plans::None => {
                self.first(t)?;
                for _ in 0..self.steps {
                    self.model.decode_step(t, &self.ws, self.batch)?;
                }
            }
            Plans::Single { first, step } => {
                t.replay(first)?;
                if let Some(step) = step {
                    for _ in 0..self.steps {
                        t.replay(step)?;
                    }
                }
            }
            Plans::Sets { first, step } => {
                t.replay_set(first)?;
                if let Some(step) = step {
                    for _ in 0..self.steps {
                        t.replay_set(step)?;
                    }
                }
            }
        }
        t.synchronize()?;
        Ok(())
    }
}

/// Where a model to profile comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A named architecture with synthetic weights from a seed.
    Named(String, u64),
    /// A Hugging Face checkpoint directory.
    Checkpoint(PathBuf),
}

/// A profile and how it was made.
#[derive(Debug)]
pub struct Profiled {
    /// The profile.
    pub profile: Profile,
    /// Launches in the request.
    pub launches: usize,
    /// Seconds spent timing.
    pub seconds: f64,
}

/// Refuses profiling arguments that cannot work, before any GPU work.
pub fn check_profile_args(source: &ModelSource, batch: u32, seq: u32, opts: Options) -> anyhow::Result<()> {
    for (flag, v) in [("--batch", batch), ("--seq", seq), ("--repeats", opts.repeats)] {
        anyhow::ensure!(v > 0, "{flag} must be at least 1");
    }
    for (flag, v) in [("--epsilon", opts.epsilon), ("--abs-tol-us", opts.abs_tol_us)] {
        anyhow::ensure!(v.is_finite() && v >= 0.0, "{flag} must be a finite number ≥ 0 (got {v})");
    }
    if let ModelSource::Checkpoint(dir) = source {
        anyhow::ensure!(dir.is_dir(), "--checkpoint {}: not a directory (a Hugging Face checkpoint's)", dir.display());
    }
    if let ModelSource::Named(name, _) = source {
        let c = ModelConfig::named(name)?;
        // A decoder's request is its prefill and one decode step: one position more.
        let positions = if c.is_decoder() { u64::from(seq) + 1 } else { u64::from(seq) };
        anyhow::ensure!(
            positions <= u64::from(c.max_positions),
            "--seq {seq}: {positions} tokens exceed {name}'s {} positions",
            c.max_positions
        );
    }
    Ok(())
}

/// Profiles one request of a model (an encoder forward, or a decoder prefill of `seq` tokens
/// and one decode step) on `device`: every distinct kernel on every partition size.
pub fn profile_model(
    device: Device,
    source: &ModelSource,
    batch: u32,
    seq: u32,
    opts: Options,
    progress: impl FnMut(usize, usize),
) -> anyhow::Result<Profiled> {
    check_profile_args(source, batch, seq, opts)?;
    let info = device.info().clone();
    let (granularity, groups, rest_sms) = match &info.partitions {
        PartitionSupport::Supported { granularity, groups, remaining_sms, .. } => {
            (*granularity, *groups, *remaining_sms)
        }
        PartitionSupport::Unsupported { reason } => bail!("cannot profile without SM partitions: {reason}"),
    };
    // Profiles time the plain builds of the kernels, which their kernel hash names
    // (kernels/image_hash.rs), whatever RIGHTSIZE_UNITS says.
    let rt = Arc::new(Runtime::new(device, &prefix_pool(granularity, groups))?.with_units(UnitOrder::Plain));
    let t = Tenant::new(rt.clone(), 0, Placement::WHOLE)?;
    let (config, weights, seed) = match source {
        ModelSource::Checkpoint(dir) => {
            let (c, w) = checkpoint::load(dir)?;
            (c, ModelWeights::upload(&t, w)?, 1)
        }
        ModelSource::Named(name, seed) => {
            let c = ModelConfig::named(name)?;
            let w = ModelWeights::synthetic(&t, &c, *seed)?;
            (c, w, *seed)
        }
    };
    let model = Model::new(&t, config, weights)?;
    let positions = if model.config().is_decoder() { seq + 1 } else { seq };
    let mut ws = model.workspace(&t, batch, positions)?;
    ws.ids.copy_from_host(&token_ids(ws.ids.len(), model.config().vocab, seed))?;
    // Warm up, then record the request's launches.
    model.request(&t, &ws, batch, seq)?;
    t.synchronize()?;
    let launches = t.record(|| model.request(&t, &ws, batch, seq))?;
    t.synchronize()?;
    // The same request on each partition, its kernels chosen for the partition's SMs.
    let mut sized = Vec::new();
    for (id, _) in rt.pool().iter().filter(|(_, p)| !p.is_whole_device()) {
        let on = Tenant::new(rt.clone(), 0, Placement::on(id))?;
        sized.push((id, on.record(|| model.request(&on, &ws, batch, seq))?));
        on.synchronize()?;
    }
    let started = std::time::Instant::now();
    // SAFETY: the model and workspace the launches were recorded from live until the end.
    let sweep = unsafe { profile_launches(&rt, &launches, &sized, opts, progress) }?;
    let request = model.describe_request(batch, seq);
    let mut profile = Profile::new(&info, granularity, &model.config().name, &request, opts, sweep);
    profile.request_curve = request_curve(&rt, &model, &ws, batch, seq, opts, true)?;
    if rest_sms > 0 && groups > 1 {
        // The windows a layout's last tenant gets take the SMs outside the groups too: the
        // request on each of those sizes, on a runtime whose pool has them (alone only: the
        // co-runner's windows run to the device's end). Without them the curve still holds
        // every group count, which krisp reads between: not worth the rest of the profile.
        let at_end = || -> anyhow::Result<Vec<RequestPoint>> {
            let rt = Runtime::new(Device::open(info.ordinal)?, &rest_pool(granularity, groups))?;
            let rt = Arc::new(rt.with_units(UnitOrder::Plain));
            request_curve(&rt, &model, &ws, batch, seq, Options { beside: false, ..opts }, false)
        };
        match at_end() {
            Ok(points) => profile.request_curve.extend(points),
            Err(e) => eprintln!(
                "rightsize profile: the request was not timed on the windows with the SMs outside the groups: {e:#}"
            ),
        }
        rt.device().bind()?;
        profile.request_curve.sort_by_key(|p| p.sms);
    }
    Ok(Profiled { profile, launches: launches.len(), seconds: started.elapsed().as_secs_f64() })
}

/// The request on every partition of `rt`'s pool and, with `whole`, on the whole device,
/// ascending SMs: a tenant placed there runs it (so its kernels are chosen for those SMs);
/// medians of `repeats` timed runs after one to warm up. A decoder's prefill and one decode
/// step are timed apart. With `beside`, on each partition smaller than the device that leaves
/// groups after it, it is timed again beside a co-runner that streams memory there
/// ([`CoRunner`]).
fn request_curve(
    rt: &Arc<Runtime>,
    model: &Model,
    ws: &Workspace,
    batch: u32,
    seq: u32,
    Options { repeats, beside, .. }: Options,
    whole: bool,
) -> anyhow::Result<Vec<RequestPoint>> {
    let timer = EventTimer::new(rt.device())?;
    let co = if beside { CoRunner::new(rt)? } else { None };
    let mut out = Vec::with_capacity(rt.pool().len());
    for (id, part) in rt.pool().iter().filter(|(_, p)| whole || !p.is_whole_device()) {
        let t = Tenant::new(rt.clone(), 0, Placement::on(id))?;
        let (us, step_us) = time_request(&timer, &t, model, ws, (batch, seq), repeats, &mut |_| Ok(()))?;
        let mut point = RequestPoint { sms: part.sms(), us, step_us, co_us: 0.0, co_step_us: 0.0 };
        // Beside the co-runner where this partition leaves groups for it.
        if let (Some(g), Some(co)) =
            (part.groups().filter(|g| co.as_ref().is_some_and(|c| c.fits(g.end()))), co.as_ref())
        {
            let launches = co.launches_for(g.end(), us + step_us)?;
            let mut beside = |start: bool| Ok(if start { co.start(g.end(), launches) } else { co.wait() }?);
            (point.co_us, point.co_step_us) = time_request(&timer, &t, model, ws, (batch, seq), repeats, &mut beside)?;
        }
        out.push(point);
    }
    rt.device().bind()?;
    out.sort_by_key(|p| p.sms);
    Ok(out)
}

/// Medians of `repeats` timed runs, after one to warm up, of the request by `t`: (forward or
/// prefill µs, decode step µs). `beside(true)` enqueues co-running work before each run and
/// `beside(false)` waits for it after.
fn time_request(
    timer: &EventTimer,
    t: &Tenant,
    model: &Model,
    ws: &Workspace,
    (batch, seq): (u32, u32),
    repeats: u32,
    beside: &mut dyn FnMut(bool) -> anyhow::Result<()>,
) -> anyhow::Result<(f64, f64)> {
    let decoder = model.config().is_decoder();
    let stream = t.stream()?;
    let (mut first, mut step) = (Vec::new(), Vec::new());
    for i in 0..=repeats.max(1) {
        beside(true)?;
        t.runtime().device().bind()?;
        let run = || -> anyhow::Result<()> {
            if decoder {
                model.prefill(t, ws, batch, seq)?;
            } else {
                model.encode(t, ws, batch, seq)?;
            }
            Ok(())
        };
        // SAFETY: the tenant's work goes to `stream`, a live stream of its runtime.
        let a = unsafe { timer.time_ms(stream, run) }?;
        let b = if decoder {
            // SAFETY: as above.
            unsafe { timer.time_ms(stream, || model.decode_step(t, ws, batch).map_err(anyhow::Error::from)) }?
        } else {
            0.0
        };
        beside(false)?;
        if i > 0 {
            first.push(1e3 * a);
            step.push(1e3 * b);
        }
    }
    Ok((median(&mut first), median(&mut step)))
}

pub use crate::profiler::slug;

/// Where a profile of `model` at `batch`×`seq` on `gpu` lives under `dir`:
/// `dir/<gpu>/<model>-b<batch>-s<seq>.json`.
pub fn profile_path(dir: &Path, gpu: &str, model: &str, batch: u32, seq: u32) -> PathBuf {
    dir.join(slug(gpu)).join(format!("{}-b{batch}-s{seq}.json", slug(model)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_profile_paths() {
        assert_eq!(slug("NVIDIA H200"), "nvidia-h200");
        assert_eq!(slug("  NVIDIA  H100 80GB HBM3 "), "nvidia-h100-80gb-hbm3");
        assert_eq!(
            profile_path(Path::new("profiles"), "NVIDIA H200", "gpt2-medium", 8, 128),
            Path::new("profiles/nvidia-h200/gpt2-medium-b8-s128.json")
        );
    }

    #[test]
    fn token_ids_stay_in_the_vocabulary() {
        let ids = token_ids(1000, 50257, 3);
        assert!(ids.iter().all(|&i| i < 50257));
        assert!(ids.iter().collect::<std::collections::HashSet<_>>().len() > 900);
    }
}

//! Every kernel at BERT-base and GPT-2 shapes (batch 8, seq 128; decode at batch 8), plus the
//! Llama-only kernels at Llama-3.2-1B shapes, with the GEMMs next to cuBLASLt measured in the
//! same run on the same inputs.
//!
//! Timing: each case's launches are captured in a CUDA graph that cycles through enough copies
//! of its inputs to exceed 3× the L2 cache (so weights come from DRAM, as in a real model), and
//! the graph's replays are timed with CUDA events. Criterion reports the time per replay; the
//! table printed at the end gives the median time per launch and the achieved rate.
//!
//! `cargo bench --bench kernels` on a GPU host (or `gpu-bin/bench-kernels --bench`). Set
//! `RIGHTSIZE_BENCH_TABLE=FILE` to also write the table as Markdown, and
//! `RIGHTSIZE_BENCH_GEMMS=M×N×K,…` (or `MxNxK`) to time only those GEMMs, as the matrix does
//! (for a quick look or under ncu), `RIGHTSIZE_BENCH_GEMMS=decode` for only the decode GEMMs'
//! table (share of the copy bandwidth on the whole device and on 48 SMs, against cuBLASLt), or
//! `RIGHTSIZE_BENCH_GEMMS=tiles` for only the prefill tiles on partitions (every tile width on
//! 16 … 96 SMs and the whole device, the picked one marked).
//! Without a GPU it says why.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

mod common;

use common::{check, dram_bandwidth, emit, median};
use criterion::{criterion_group, criterion_main, Criterion};
use cudarc::driver::sys;
use half::f16;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rightsize::kernels::abi::*;
use rightsize::kernels::reference::rope_inv_freq;
use rightsize::kernels::{
    self as k, attention_decode_kernel, attention_prefill_kernel, attention_prefill_kernels, decode_attention_scratch,
    gemm_kernel, hopper_gemm, packs_decode_weights, Kernel, Params,
};
use rightsize::runtime::{
    BlasLt, BlasShape, Device, DeviceBuffer, DeviceCopy, EventTimer, PartitionId, PartitionRequest, PartitionSupport,
    Placement, PoolSpec, Runtime,
};

/// What one launch of a case must do: for the rate columns.
#[derive(Clone, Copy)]
enum Work {
    Flops(f64),
    Bytes(f64),
    /// A GEMM: its FLOPs and the bytes of A, B and C (and R).
    Gemm(f64, f64),
}

/// One measured case: a launch per input copy, all on `stream`.
struct Case {
    name: String,
    shape: String,
    work: Work,
    launches: Vec<Box<dyn Fn()>>,
    /// Row in the GEMM comparison: this case is cuBLAS for the case named here.
    baseline_of: Option<String>,
}

struct Ctx {
    rt: Rc<Runtime>,
    blas: Option<Rc<BlasLt>>,
    rng: StdRng,
    stream: sys::CUstream,
    l2: f64,
}

impl Ctx {
    fn rand(&mut self, n: usize, scale: f32) -> Vec<f16> {
        (0..n).map(|_| f16::from_f32(self.rng.random_range(-scale..scale))).collect()
    }

    /// How many copies of `bytes` of inputs make 3× the L2 cache (at least 1, at most 32).
    fn copies(&self, bytes: f64) -> usize {
        ((3.0 * self.l2 / bytes).ceil() as usize).clamp(1, 32)
    }

    fn upload<T: DeviceCopy>(&self, data: &[T]) -> Rc<DeviceBuffer<T>> {
        Rc::new(DeviceBuffer::from_host(self.rt.device(), data).expect("upload"))
    }

    fn zeros(&self, n: usize) -> Rc<DeviceBuffer<f16>> {
        Rc::new(DeviceBuffer::filled(self.rt.device(), n, 0).expect("alloc"))
    }

    /// A launch of `kernel` through the runtime on the whole device, keeping `keep` alive.
    fn launcher<P: Params>(&self, kernel: Kernel<P>, p: P, keep: Vec<Rc<dyn std::any::Any>>) -> Box<dyn Fn()> {
        let rt = self.rt.clone();
        Box::new(move || {
            let _ = &keep;
            // SAFETY: every buffer in `p` is held by `keep` and sized for the case.
            unsafe { rt.launch(kernel, &p, Placement::WHOLE) }.expect("launch");
        })
    }
}

fn any<T: 'static>(x: &Rc<T>) -> Rc<dyn std::any::Any> {
    x.clone()
}

#[allow(clippy::too_many_arguments)]
fn gemm_cases(cx: &mut Ctx, cases: &mut Vec<Case>, name: &str, m: u32, n: u32, kk: u32, act: u32, residual: bool) {
    let (mu, nu, ku) = (m as usize, n as usize, kk as usize);
    let bytes = 2.0 * (mu * ku + nu * ku + mu * nu * if residual { 2 } else { 1 }) as f64;
    let copies = cx.copies(bytes);
    let (a, b, bias) = (cx.rand(mu * ku, 1.0), cx.rand(nu * ku, 1.0), cx.rand(nu, 1.0));
    let res = cx.rand(mu * nu, 1.0);
    let kernel = gemm_kernel(m);
    let shape = format!("{m}×{n}×{kk}");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    // On sm_90 prefill-sized GEMMs run on the Hopper kernel, next to the mma.sync one.
    let info = cx.rt.device().info();
    let hopper_kernel = hopper_gemm(m, n, kk, info.compute_capability, info.sm_count);
    let mut hopper = Vec::new();
    for _ in 0..copies {
        let (da, db, dbias, dc) = (cx.upload(&a), cx.upload(&b), cx.upload(&bias), cx.zeros(mu * nu));
        let dres = cx.upload(&res);
        let p = GemmParams {
            bias: dbias.ptr(),
            residual: if residual { dres.ptr() } else { 0 },
            act,
            b_stable: 1,
            ..GemmParams::dense(da.ptr(), db.ptr(), dc.ptr(), m, n, kk)
        };
        let keep = vec![any(&da), any(&db), any(&dbias), any(&dc), any(&dres)];
        if let Some(k) = hopper_kernel {
            let tp = rightsize::runtime::gemm_tma_params(&p, k).expect("tensor maps");
            hopper.push(cx.launcher(k, tp, keep.clone()));
        }
        ours.push(cx.launcher(kernel, p, keep));
        if let Some(blas) = &cx.blas {
            let plan = Rc::new(blas.plan(BlasShape::plain(m, n, kk), None).expect("cublasLt plan"));
            let (blas, stream) = (blas.clone(), cx.stream);
            theirs.push(Box::new(move || {
                // SAFETY: buffers held by the closure, sized m·k, n·k, m·n.
                unsafe { blas.run(&plan, da.ptr(), db.ptr(), 0, 0, dc.ptr(), stream) }.expect("cublasLt");
            }) as Box<dyn Fn()>);
        }
    }
    let work = Work::Gemm(2.0 * f64::from(m) * f64::from(n) * f64::from(kk), bytes);
    let ours_name = format!("{name} ({})", kernel.id());
    let hopper_name = hopper_kernel.map(|k| format!("{name} ({})", k.id()));
    let compared = hopper_name.clone().unwrap_or_else(|| ours_name.clone());
    if !theirs.is_empty() {
        cases.push(Case {
            name: format!("{name} (cuBLASLt)"),
            shape: shape.clone(),
            work,
            launches: theirs,
            baseline_of: Some(compared),
        });
    }
    if let Some(name) = hopper_name {
        cases.push(Case { name, shape: shape.clone(), work, launches: hopper, baseline_of: None });
    }
    cases.push(Case { name: ours_name, shape, work, launches: ours, baseline_of: None });
}

/// A decode attention case: `b` sequences, each with `len - 1` cached tokens and a new one, `h`
/// query heads on `hkv` kv heads of `d`, RoPE fused with `rope`, on the kernel the library picks
/// (`unsplit`: on `attention_decode_d*` whatever the shape). Its work is the cache's bytes.
#[allow(clippy::too_many_arguments)]
fn decode_attention_case(
    cx: &mut Ctx,
    cases: &mut Vec<Case>,
    name: &str,
    (b, len): (u32, u32),
    (h, hkv, d): (u32, u32, u32),
    rope: bool,
    unsplit: bool,
) {
    let cache = (b * hkv * len * d) as usize;
    let row = (h + 2 * hkv) * d;
    // One qkv row per sequence; the new token goes to the last position, len − 1.
    let (kc, vc, q) = (cx.rand(cache, 1.0), cx.rand(cache, 1.0), cx.rand((b * row) as usize, 1.0));
    let inv = rope_inv_freq(d as usize, 500_000.0);
    let lens = vec![len - 1; b as usize];
    let bytes = 2.0 * 2.0 * cache as f64;
    // A cache of more than one chunk: each chunk's state and the counts, zeroed once.
    let (states, counts) = decode_attention_scratch(b, h, d, len).unwrap_or((0, 0));
    let mut launches = Vec::new();
    for _ in 0..cx.copies(bytes) {
        let (dk, dv, dq, dl, dinv, dout) = (
            cx.upload(&kc),
            cx.upload(&vc),
            cx.upload(&q),
            cx.upload(&lens),
            cx.upload(&inv),
            cx.zeros((b * h * d) as usize),
        );
        let (dstates, dcounts) = (cx.upload(&vec![0f32; states.max(1)]), cx.upload(&vec![0u32; counts.max(1)]));
        let p = DecodeAttentionParams {
            q: dq.ptr(),
            k: dq.ptr() + 2 * u64::from(h * d),
            v: dq.ptr() + 2 * u64::from((h + hkv) * d),
            k_cache: dk.ptr(),
            v_cache: dv.ptr(),
            o: dout.ptr(),
            pos: dl.ptr(),
            inv_freq: if rope { dinv.ptr() } else { 0 },
            batch: b,
            heads_q: h,
            heads_kv: hkv,
            head_dim: d,
            max_len: len,
            qkv_stride: row,
            o_stride: h * d,
            scale: 1.0 / (d as f32).sqrt(),
            partial: dstates.ptr(),
            arrived: dcounts.ptr(),
        };
        let picked = attention_decode_kernel(&p).expect("head_dim 32, 64 or 128");
        let kernel =
            if unsplit { attention_decode_kernel(&DecodeAttentionParams { max_len: 1, ..p }) } else { Some(picked) };
        let keep = vec![any(&dk), any(&dv), any(&dq), any(&dl), any(&dinv), any(&dout), any(&dstates), any(&dcounts)];
        launches.push(cx.launcher(kernel.expect("head_dim 32, 64 or 128"), p, keep));
    }
    cases.push(Case {
        name: name.into(),
        shape: format!("b{b} h{h}/{hkv} d{d} cache {len}"),
        work: Work::Bytes(bytes),
        launches,
        baseline_of: None,
    });
}

/// Prefill attention over packed QKV rows (`[q heads | k heads | v heads]` per token, every
/// sequence full length): the mma.sync kernel, and on sm_90 the wgmma kernels next to it (64
/// and 128 queries a unit; "picked" marks the one the engine runs).
fn attention_cases(
    cx: &mut Ctx,
    cases: &mut Vec<Case>,
    name: &str,
    (b, s): (u32, u32),
    (h, hkv, d): (u32, u32, u32),
    causal: bool,
) {
    let t = (b * s) as usize;
    let (qw, kw) = ((h * d) as usize, (hkv * d) as usize);
    let row = qw + 2 * kw;
    let qkv = cx.rand(t * row, 1.0);
    let lens = vec![s; b as usize];
    let bytes = 2.0 * (t * (row + qw)) as f64;
    let shape = AttentionParams { batch: b, seq: s, heads_q: h, heads_kv: hkv, head_dim: d, ..Default::default() };
    let info = cx.rt.device().info();
    let picked = attention_prefill_kernel(&shape, info.compute_capability, info.sm_count).map(|k| k.id());
    let all = attention_prefill_kernels(d).expect("head_dim");
    let mut kernels = vec![("mma.sync", all.mma_sync)];
    if let Some([narrow, wide]) = all.wgmma.filter(|_| info.compute_capability == (9, 0)) {
        kernels.extend([("wgmma", narrow), ("wgmma wide", wide)]);
    }
    for (how, kernel) in kernels {
        let how = if Some(kernel.id()) == picked { format!("{how}, picked") } else { how.to_string() };
        let mut launches = Vec::new();
        for _ in 0..cx.copies(bytes) {
            let (dqkv, dlens, dout) = (cx.upload(&qkv), cx.upload(&lens), cx.zeros(t * qw));
            let base = dqkv.ptr();
            let p = AttentionParams {
                q: base,
                k: base + 2 * qw as u64,
                v: base + 2 * (qw + kw) as u64,
                o: dout.ptr(),
                seq_lens: dlens.ptr(),
                batch: b,
                seq: s,
                heads_q: h,
                heads_kv: hkv,
                head_dim: d,
                q_stride: row as u32,
                k_stride: row as u32,
                v_stride: row as u32,
                o_stride: qw as u32,
                causal: u32::from(causal),
                scale: 1.0 / (d as f32).sqrt(),
                _pad: 0,
            };
            launches.push(cx.launcher(kernel, p, vec![any(&dqkv), any(&dlens), any(&dout)]));
        }
        let full = 4.0 * f64::from(b * h) * f64::from(s) * f64::from(s) * f64::from(d);
        let flops = if causal { full / 2.0 } else { full };
        cases.push(Case {
            name: format!("{name} ({how})"),
            shape: format!("b{b} s{s} h{h}/{hkv} d{d}"),
            work: Work::Flops(flops),
            launches,
            baseline_of: None,
        });
    }
}

fn all_cases(cx: &mut Ctx) -> Vec<Case> {
    let mut cases = Vec::new();
    let (b, s) = (8u32, 128u32);
    let t = b * s;
    // BERT-base: hidden 768, 12 heads of 64, FFN 3072.
    gemm_cases(cx, &mut cases, "bert qkv", t, 2304, 768, RS_ACT_NONE, false);
    gemm_cases(cx, &mut cases, "bert attn-out +res", t, 768, 768, RS_ACT_NONE, true);
    gemm_cases(cx, &mut cases, "bert ffn1 +gelu", t, 3072, 768, RS_ACT_GELU_ERF, false);
    gemm_cases(cx, &mut cases, "bert ffn2 +res", t, 768, 3072, RS_ACT_NONE, true);
    // GPT-2 decode at batch 8: hidden 768, vocab 50257.
    gemm_cases(cx, &mut cases, "gpt2 decode qkv", b, 2304, 768, RS_ACT_NONE, false);
    gemm_cases(cx, &mut cases, "gpt2 decode fc +gelu", b, 3072, 768, RS_ACT_GELU_TANH, false);
    gemm_cases(cx, &mut cases, "gpt2 decode proj +res", b, 768, 3072, RS_ACT_NONE, true);
    gemm_cases(cx, &mut cases, "gpt2 decode lm-head", b, 50257, 768, RS_ACT_NONE, false);
    gemm_cases(cx, &mut cases, "gpt2 decode attn-out", b, 768, 768, RS_ACT_NONE, false);
    gemm_cases(cx, &mut cases, "decode 4096²", b, 4096, 4096, RS_ACT_NONE, false);
    gemm_cases(cx, &mut cases, "decode 4096² M=32", 32, 4096, 4096, RS_ACT_NONE, false);
    gemm_cases(cx, &mut cases, "decode 4096² M=64", 64, 4096, 4096, RS_ACT_NONE, false);
    // Prefill GEMMs of larger models (M = 4096 tokens).
    gemm_cases(cx, &mut cases, "prefill 4096² M=4096", 4096, 4096, 4096, RS_ACT_NONE, false);
    gemm_cases(cx, &mut cases, "gpt2 prefill qkv M=4096", 4096, 2304, 768, RS_ACT_NONE, false);
    gemm_cases(cx, &mut cases, "llama-1b mlp-up M=1024", 1024, 16384, 2048, RS_ACT_NONE, false);

    // Prefill attention, BERT-base (bidirectional, padding lengths given; also over 256 and 512
    // tokens) and GPT-2 (causal) at batch 8 × 128 tokens; Llama-3.2-1B (32 query heads on 8 kv
    // heads of 64) and -3B (24 on 8 of 128), causal over 4096 tokens.
    attention_cases(cx, &mut cases, "bert attention", (b, s), (12, 12, 64), false);
    attention_cases(cx, &mut cases, "bert attention s256", (b, 256), (12, 12, 64), false);
    attention_cases(cx, &mut cases, "bert attention s512", (b, 512), (12, 12, 64), false);
    attention_cases(cx, &mut cases, "gpt2 attention causal", (b, s), (12, 12, 64), true);
    attention_cases(cx, &mut cases, "llama-1b attention causal", (1, 4096), (32, 8, 64), true);
    attention_cases(cx, &mut cases, "llama-3b attention causal", (1, 4096), (24, 8, 128), true);

    // Decode attention against a cache of 160 (prompt 128 + 32 new tokens): GPT-2's, and the
    // GQA shapes of Llama-3.2-1B (32 query heads on 8 kv heads of 64) and mistral-7b (32 on 8
    // of 128) with RoPE fused, as their decode steps run it.
    decode_attention_case(cx, &mut cases, "gpt2 decode attention", (b, 160), (12, 12, 64), false, false);
    decode_attention_case(cx, &mut cases, "llama-1b decode attention +rope", (b, 160), (32, 8, 64), true, false);
    decode_attention_case(cx, &mut cases, "mistral decode attention +rope", (b, 160), (32, 8, 128), true, false);
    // Long caches: Llama-3.2-1B at batch 1 over 4,096 tokens (32 query heads: split into 4
    // chunks, and unsplit beside it) and mistral-7b at batch 8 over 2,048 (256 pairs: unsplit).
    let long = (1, 4096);
    decode_attention_case(cx, &mut cases, "llama-1b b1 decode attention long +rope", long, (32, 8, 64), true, false);
    decode_attention_case(
        cx,
        &mut cases,
        "llama-1b b1 decode attention long +rope unsplit",
        long,
        (32, 8, 64),
        true,
        true,
    );
    decode_attention_case(cx, &mut cases, "mistral decode attention long +rope", (8, 2048), (32, 8, 128), true, false);

    // Row and elementwise kernels.
    let row_case = |cx: &mut Ctx,
                    cases: &mut Vec<Case>,
                    name: &str,
                    kernel: Kernel<NormParams>,
                    rows: u32,
                    cols: u32,
                    residual: bool| {
        let n = (rows * cols) as usize;
        let (x, res, gamma) = (cx.rand(n, 2.0), cx.rand(n, 2.0), cx.rand(cols as usize, 1.0));
        let bytes = 2.0 * n as f64 * if residual { 4.0 } else { 2.0 };
        let mut launches = Vec::new();
        for _ in 0..cx.copies(bytes) {
            let (dx, dr, dg, dy) = (cx.upload(&x), cx.upload(&res), cx.upload(&gamma), cx.zeros(n));
            let p = NormParams {
                x: dx.ptr(),
                residual: if residual { dr.ptr() } else { 0 },
                sum_out: if residual { dr.ptr() } else { 0 },
                gamma: dg.ptr(),
                beta: if kernel.id() == k::LAYER_NORM.id() { dg.ptr() } else { 0 },
                y: dy.ptr(),
                rows,
                cols,
                eps: 1e-5,
                _pad: 0,
            };
            launches.push(cx.launcher(kernel, p, vec![any(&dx), any(&dr), any(&dg), any(&dy)]));
        }
        cases.push(Case {
            name: name.into(),
            shape: format!("{rows}×{cols}"),
            work: Work::Bytes(bytes),
            launches,
            baseline_of: None,
        });
    };
    row_case(cx, &mut cases, "bert layer_norm +res", k::LAYER_NORM, t, 768, true);
    row_case(cx, &mut cases, "gpt2 decode layer_norm", k::LAYER_NORM, b, 768, false);
    row_case(cx, &mut cases, "llama rms_norm +res", k::RMS_NORM, t, 2048, true);

    {
        let (vocab, hidden) = (30522usize, 768usize);
        let tok = cx.rand(vocab * hidden, 1.0);
        let pos = cx.rand(512 * hidden, 1.0);
        let ids: Vec<u32> = (0..t).map(|_| cx.rng.random_range(0..vocab as u32)).collect();
        let bytes = 2.0 * (t as usize * hidden * 3) as f64;
        let mut launches = Vec::new();
        for _ in 0..cx.copies(bytes) {
            let (di, dt, dp, dout) = (cx.upload(&ids), cx.upload(&tok), cx.upload(&pos), cx.zeros(t as usize * hidden));
            let p = EmbeddingParams {
                ids: di.ptr(),
                tok: dt.ptr(),
                pos: dp.ptr(),
                type_: dp.ptr(),
                start: 0,
                out: dout.ptr(),
                batch: b,
                tokens: s,
                hidden: hidden as u32,
                vocab: vocab as u32,
                max_pos: 512,
                tok_packed: 0,
            };
            launches.push(cx.launcher(k::EMBEDDING, p, vec![any(&di), any(&dt), any(&dp), any(&dout)]));
        }
        cases.push(Case {
            name: "bert embedding".into(),
            shape: format!("{t} tokens × {hidden}"),
            work: Work::Bytes(bytes),
            launches,
            baseline_of: None,
        });
    }
    {
        let n = (t * 3072) as usize;
        let x = cx.rand(n, 4.0);
        let bytes = 4.0 * n as f64;
        let mut launches = Vec::new();
        for _ in 0..cx.copies(bytes) {
            let (dx, dy) = (cx.upload(&x), cx.zeros(n));
            let p = GeluParams { x: dx.ptr(), y: dy.ptr(), n: n as u64, act: RS_ACT_GELU_ERF, _pad: 0 };
            launches.push(cx.launcher(k::GELU, p, vec![any(&dx), any(&dy)]));
        }
        cases.push(Case {
            name: "gelu".into(),
            shape: format!("{t}×3072"),
            work: Work::Bytes(bytes),
            launches,
            baseline_of: None,
        });
    }
    {
        let (rows, cols) = (t, 8192u32);
        let n = (rows * cols) as usize;
        let gu = cx.rand(2 * n, 4.0);
        let bytes = 2.0 * 3.0 * n as f64;
        let mut launches = Vec::new();
        for _ in 0..cx.copies(bytes) {
            let (dgu, dout) = (cx.upload(&gu), cx.zeros(n));
            let p = SwigluParams {
                gate: dgu.ptr(),
                up: dgu.ptr() + 2 * u64::from(cols),
                out: dout.ptr(),
                rows,
                cols,
                gate_stride: 2 * cols,
                up_stride: 2 * cols,
                out_stride: cols,
                paired: 0,
            };
            launches.push(cx.launcher(k::SWIGLU, p, vec![any(&dgu), any(&dout)]));
        }
        cases.push(Case {
            name: "llama swiglu".into(),
            shape: format!("{rows}×{cols}"),
            work: Work::Bytes(bytes),
            launches,
            baseline_of: None,
        });
    }
    {
        // Llama-3.2-1B: 32 query heads, 8 KV heads of 64, packed QKV rows.
        let (hq, hkv, d) = (32u32, 8u32, 64u32);
        let w = ((hq + 2 * hkv) * d) as usize;
        let qkv = cx.rand(t as usize * w, 2.0);
        let inv = rope_inv_freq(d as usize, 500_000.0);
        let bytes = 2.0 * 2.0 * (t * (hq + hkv) * d) as f64;
        let mut launches = Vec::new();
        for _ in 0..cx.copies(bytes) {
            let (dqkv, dinv) = (cx.upload(&qkv), cx.upload(&inv));
            let p = RopeParams {
                q: dqkv.ptr(),
                k: dqkv.ptr() + 2 * u64::from(hq * d),
                inv_freq: dinv.ptr(),
                start: 0,
                batch: b,
                tokens: s,
                heads_q: hq,
                heads_kv: hkv,
                head_dim: d,
                q_stride: w as u32,
                k_stride: w as u32,
                _pad: 0,
            };
            launches.push(cx.launcher(k::ROPE, p, vec![any(&dqkv), any(&dinv)]));
        }
        cases.push(Case {
            name: "llama rope".into(),
            shape: format!("{t} tokens, {hq}+{hkv} heads of {d}"),
            work: Work::Bytes(bytes),
            launches,
            baseline_of: None,
        });
    }
    {
        // GPT-2 decode: append one token's K and V per sequence to a cache of 1024.
        let (h, d, max_len) = (12u32, 64u32, 1024u32);
        let w = (h * d) as usize;
        let qkv = cx.rand(b as usize * 3 * w, 1.0);
        let start = vec![200u32; b as usize];
        let bytes = 2.0 * 4.0 * (b as usize * w) as f64;
        let mut launches = Vec::new();
        for _ in 0..cx.copies(bytes).min(4) {
            let cache = (b * h * max_len * d) as usize;
            let (dqkv, ds, dk, dv) = (cx.upload(&qkv), cx.upload(&start), cx.zeros(cache), cx.zeros(cache));
            let p = KvAppendParams {
                k: dqkv.ptr() + 2 * w as u64,
                v: dqkv.ptr() + 4 * w as u64,
                k_cache: dk.ptr(),
                v_cache: dv.ptr(),
                start: ds.ptr(),
                batch: b,
                tokens: 1,
                heads_kv: h,
                head_dim: d,
                max_len,
                k_stride: 3 * w as u32,
                v_stride: 3 * w as u32,
                _pad: 0,
            };
            launches.push(cx.launcher(k::KV_APPEND, p, vec![any(&dqkv), any(&ds), any(&dk), any(&dv)]));
        }
        cases.push(Case {
            name: "gpt2 decode kv_append".into(),
            shape: format!("b{b} h{h} d{d}"),
            work: Work::Bytes(bytes),
            launches,
            baseline_of: None,
        });
    }
    {
        let vocab = 50257u32;
        let logits = cx.rand((b * vocab) as usize, 10.0);
        let bytes = 2.0 * f64::from(b * vocab);
        let mut launches = Vec::new();
        for _ in 0..cx.copies(bytes) {
            let words = |n: usize| Rc::new(DeviceBuffer::<u32>::filled(cx.rt.device(), n, 0).expect("alloc"));
            let (partial, arrived) = rightsize::kernels::argmax_scratch(b, vocab).unwrap_or((1, 1));
            let (dl, dout, dp, da) = (cx.upload(&logits), words(b as usize), words(partial), words(arrived));
            let p = ArgmaxParams {
                logits: dl.ptr(),
                out: dout.ptr(),
                partial: dp.ptr(),
                arrived: da.ptr(),
                rows: b,
                cols: vocab,
                stride: vocab,
                ..Default::default()
            };
            launches.push(cx.launcher(k::ARGMAX, p, vec![any(&dl), any(&dout), any(&dp), any(&da)]));
        }
        cases.push(Case {
            name: "gpt2 argmax".into(),
            shape: format!("{b}×{vocab}"),
            work: Work::Bytes(bytes),
            launches,
            baseline_of: None,
        });
    }
    cases
}

/// A CUDA graph of one pass over a case's launches, and events to time its replays.
struct Graph {
    exec: sys::CUgraphExec,
    launches: usize,
    timer: EventTimer,
    stream: sys::CUstream,
}

impl Graph {
    fn capture(case: &Case, stream: sys::CUstream, timer: EventTimer) -> Graph {
        // Replay at least 16 launches per timing so event resolution does not matter.
        let passes = 16usize.div_ceil(case.launches.len());
        let mut graph = std::ptr::null_mut();
        let mut exec = std::ptr::null_mut();
        // SAFETY: capture on a live stream of the primary context, which is current.
        unsafe {
            check(
                sys::cuStreamBeginCapture_v2(stream, sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
                "begin capture",
            );
            for _ in 0..passes {
                for l in &case.launches {
                    l();
                }
            }
            check(sys::cuStreamEndCapture(stream, &mut graph), "end capture");
            check(sys::cuGraphInstantiateWithFlags(&mut exec, graph, 0), "instantiate");
            check(sys::cuGraphDestroy(graph), "destroy graph");
        }
        Graph { exec, launches: passes * case.launches.len(), timer, stream }
    }

    /// Seconds for `replays` replays.
    fn time(&self, replays: u64) -> f64 {
        let replay = || {
            for _ in 0..replays {
                // SAFETY: a live instantiated graph and its stream.
                check(unsafe { sys::cuGraphLaunch(self.exec, self.stream) }, "graph launch");
            }
            Ok::<(), rightsize::runtime::Error>(())
        };
        // SAFETY: the stream the graph was captured from; its replays end on it.
        let ms = unsafe { self.timer.time_ms(self.stream, replay) }.expect("timing");
        ms / 1e3
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        // SAFETY: made in `capture`, destroyed once.
        unsafe { sys::cuGraphExecDestroy(self.exec) };
    }
}

/// The params of C = A·Bᵀ over contiguous buffers, no epilogue (as cuBLASLt runs it).
fn plain_gemm<T: DeviceCopy>(
    a: &DeviceBuffer<T>,
    b: &DeviceBuffer<T>,
    c: &DeviceBuffer<T>,
    (m, n, k): (u32, u32, u32),
) -> GemmParams {
    // B is never written after its upload: kernels may read it before waiting for their
    // predecessor.
    GemmParams { ldr: 0, b_stable: 1, ..GemmParams::dense(a.ptr(), b.ptr(), c.ptr(), m, n, k) }
}

/// SM counts of the partitions the confined GEMMs run on.
const PARTITION_SMS: [u32; 7] = [16, 32, 48, 64, 72, 80, 96];

/// Inputs of one GEMM shape: enough copies of A, B and C to rotate past 3× L2.
type GemmBufs = Vec<(Rc<DeviceBuffer<f16>>, Rc<DeviceBuffer<f16>>, Rc<DeviceBuffer<f16>>)>;

fn gemm_bufs(cx: &mut Ctx, (m, n, kk): (u32, u32, u32)) -> GemmBufs {
    let (mu, nu, ku) = (m as usize, n as usize, kk as usize);
    let copies = cx.copies(2.0 * (mu * ku + nu * ku + mu * nu) as f64);
    let (a, b) = (cx.rand(mu * ku, 1.0), cx.rand(nu * ku, 1.0));
    (0..copies).map(|_| (cx.upload(&a), cx.upload(&b), cx.zeros(mu * nu))).collect()
}

/// Seconds per launch of the GEMM on partition `pid` of `sms` SMs: ours (the kernel the engine
/// picks for those SMs, its grid sized to them) and cuBLASLt's (its SM-count target set to
/// them, where the partition is not the whole device), both on the partition's stream.
fn time_gemm_on(
    cx: &Ctx,
    bufs: &GemmBufs,
    (m, n, kk): (u32, u32, u32),
    pid: PartitionId,
    sms: u32,
) -> (k::KernelId, f64, Option<f64>) {
    let hopper = hopper_gemm(m, n, kk, cx.rt.device().info().compute_capability, sms);
    time_kernel_on(cx, bufs, (m, n, kk), pid, sms, hopper, true)
}

/// As [`time_gemm_on`], with the Hopper GEMM `hopper` (None: [`gemm_kernel`]'s) whatever the
/// engine would pick, and cuBLASLt only `with_blas`.
fn time_kernel_on(
    cx: &Ctx,
    bufs: &GemmBufs,
    (m, n, kk): (u32, u32, u32),
    pid: PartitionId,
    sms: u32,
    hopper: Option<Kernel<GemmTmaParams>>,
    with_blas: bool,
) -> (k::KernelId, f64, Option<f64>) {
    let stream = cx.rt.pool().get(pid).expect("partition").stream(0).expect("stream");
    let kernel_name = hopper.map_or(gemm_kernel(m).id(), |k| k.id());
    let mut ours: Vec<Box<dyn Fn()>> = Vec::new();
    let mut theirs: Vec<Box<dyn Fn()>> = Vec::new();
    let target = (pid != PartitionId::WHOLE).then_some(sms);
    for (da, db, dc) in bufs {
        let p = plain_gemm(da, db, dc, (m, n, kk));
        let (rt, keep) = (cx.rt.clone(), vec![any(da), any(db), any(dc)]);
        ours.push(match hopper {
            Some(k) => {
                let tp = rightsize::runtime::gemm_tma_params(&p, k).expect("tensor maps");
                Box::new(move || {
                    let _ = &keep;
                    // SAFETY: the buffers are held by `keep` and sized for the shape.
                    unsafe { rt.launch(k, &tp, Placement::on(pid)) }.expect("launch");
                })
            }
            None => Box::new(move || {
                let _ = &keep;
                // SAFETY: as above.
                unsafe { rt.launch(gemm_kernel(m), &p, Placement::on(pid)) }.expect("launch");
            }),
        });
        if let Some(blas) = cx.blas.as_ref().filter(|_| with_blas) {
            let plan = Rc::new(blas.plan(BlasShape::plain(m, n, kk), target).expect("cublasLt plan"));
            let (blas, da, db, dc) = (blas.clone(), da.clone(), db.clone(), dc.clone());
            theirs.push(Box::new(move || {
                // SAFETY: buffers held by the closure, sized m·k, n·k, m·n.
                unsafe { blas.run(&plan, da.ptr(), db.ptr(), 0, 0, dc.ptr(), stream) }.expect("cublasLt");
            }));
        }
    }
    let ours_s = time_launches(cx, stream, ours);
    let theirs_s = (!theirs.is_empty()).then(|| time_launches(cx, stream, theirs));
    (kernel_name, ours_s, theirs_s)
}

/// `bufs` with each B packed by `pack_tiles_f16`, for the packed decode GEMM.
fn packed_bufs(cx: &Ctx, bufs: &GemmBufs, (_, n, kk): (u32, u32, u32)) -> GemmBufs {
    let packed = bufs
        .iter()
        .map(|(da, db, dc)| {
            let out = cx.zeros(PackParams::packed_len(n, kk) as usize);
            let p = PackParams { src: db.ptr(), dst: out.ptr(), n, k: kk, unpack: 0, pairs: 0 };
            // SAFETY: db holds n·k halves and out the packed length.
            unsafe { cx.rt.launch(k::PACK_TILES, &p, Placement::WHOLE) }.expect("pack");
            (da.clone(), out, dc.clone())
        })
        .collect();
    cx.rt.synchronize().expect("pack");
    packed
}

/// Seconds per launch of the packed decode GEMM on `packed` (from [`packed_bufs`]) on
/// partition `pid`, its grid sized to it.
fn time_packed_on(cx: &Ctx, packed: &GemmBufs, shape: (u32, u32, u32), pid: PartitionId) -> f64 {
    let stream = cx.rt.pool().get(pid).expect("partition").stream(0).expect("stream");
    let launches = packed
        .iter()
        .map(|(da, db, dc)| {
            let p = GemmParams { b_layout: RS_B_TILES, ..plain_gemm(da, db, dc, shape) };
            let (rt, keep) = (cx.rt.clone(), vec![any(da), any(db), any(dc)]);
            Box::new(move || {
                let _ = &keep;
                // SAFETY: the buffers are held by `keep`, B packed for the shape.
                unsafe {
                    rt.launch(
                        k::packed_decode_kernel(p.k, p.norm != RS_NORM_NONE).expect("packed K"),
                        &p,
                        Placement::on(pid),
                    )
                }
                .expect("launch");
            }) as Box<dyn Fn()>
        })
        .collect();
    time_launches(cx, stream, launches)
}

/// The partitions of the bench's pool other than the whole device: (id, SMs).
fn partitions(cx: &Ctx) -> Vec<(PartitionId, u32)> {
    cx.rt.pool().iter().filter(|(_, p)| !p.is_whole_device()).map(|(id, p)| (id, p.sms())).collect()
}

/// GEMMs confined to green-context partitions of 16 … 96 SMs: ours next to cuBLASLt on the same
/// SMs. A Markdown table.
fn confined_gemms(cx: &mut Ctx) -> String {
    let shapes = [
        ("bert ffn1", 1024u32, 3072u32, 768u32),
        ("prefill 4096³", 4096, 4096, 4096),
        ("decode 4096² M=8", 8, 4096, 4096),
        ("gpt2 lm-head M=8", 8, 50257, 768),
    ];
    let parts = partitions(cx);
    if parts.is_empty() {
        return String::new();
    }
    let mut t = String::from(
        "\nThe same GEMMs confined to a green-context partition (ours sized to it; cuBLASLt with \
         CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET = its SMs), median of 5 timings of 20 graph replays:\n\n\
         | GEMM | shape | SMs | ours | ours µs | cuBLASLt µs | ours / cuBLASLt (speed) |\n|---|---|---:|---|---:|---:|---:|\n",
    );
    for (name, m, n, kk) in shapes {
        let bufs = gemm_bufs(cx, (m, n, kk));
        for &(pid, sms) in &parts {
            let (kernel_name, ours_s, theirs) = time_gemm_on(cx, &bufs, (m, n, kk), pid, sms);
            let (blas_us, ratio) = match theirs {
                Some(b) => (format!("{:.2}", b * 1e6), format!("{:.2}", b / ours_s)),
                None => (String::new(), String::new()),
            };
            t += &format!(
                "| {name} | {m}×{n}×{kk} | {sms} | {kernel_name} | {:.2} | {blas_us} | {ratio} |\n",
                ours_s * 1e6
            );
        }
    }
    t
}

/// Prefill GEMMs of batch-1 encoders (M = 128) and of BERT-base at batch 8 (M = 1024), whose
/// tile the library picks by the SMs a launch runs on: (label, M, N, K).
const TILE_SHAPES: [(&str, u32, u32, u32); 8] = [
    ("bert-base qkv", 128, 2304, 768),
    ("bert-base ffn-up", 128, 3072, 768),
    ("bert-base ffn-down", 128, 768, 3072),
    ("bert-large qkv", 128, 3072, 1024),
    ("bert-large ffn-up", 128, 4096, 1024),
    ("bert-large ffn-down", 128, 1024, 4096),
    ("bert-base qkv", 1024, 2304, 768),
    ("bert-base ffn-up", 1024, 3072, 768),
];

/// Every Hopper prefill tile width on every partition of the bench and the whole device, for
/// [`TILE_SHAPES`]: µs per launch (grid sized to the partition), the one the library picks for
/// those SMs marked. What the pick's cost model (`gemm_wgmma_kernel`) is checked against.
fn partition_tiles(cx: &mut Ctx) -> String {
    let info = cx.rt.device().info().clone();
    if info.compute_capability != (9, 0) {
        return "\nPrefill tiles on partitions: skipped (the Hopper GEMMs need sm_90).\n".into();
    }
    let mut on = partitions(cx);
    on.push((PartitionId::WHOLE, info.sm_count));
    let widths: Vec<String> = k::HOPPER_PREFILL_GEMMS.iter().map(|g| format!("{} µs", g.id())).collect();
    let mut t = format!(
        "\nPrefill tiles on partitions: each Hopper tile width's µs per launch (grid sized to the SMs, median of 5 \
         timings of graph replays); * marks the one the library picks for those SMs, and \"picked / best\" is its \
         time over the fastest's.\n\n| GEMM | M×N×K | SMs | {} | picked / best |\n|---|---|---:|{}---:|\n",
        widths.join(" | "),
        "---:|".repeat(widths.len())
    );
    for (label, m, n, kk) in TILE_SHAPES {
        let bufs = gemm_bufs(cx, (m, n, kk));
        for &(pid, sms) in &on {
            let picked = hopper_gemm(m, n, kk, info.compute_capability, sms).map(|g| g.id());
            let times: Vec<(k::KernelId, f64)> = k::HOPPER_PREFILL_GEMMS
                .iter()
                .map(|&g| (g.id(), time_kernel_on(cx, &bufs, (m, n, kk), pid, sms, Some(g), false).1))
                .collect();
            let best = times.iter().map(|&(_, s)| s).fold(f64::INFINITY, f64::min);
            let cells: Vec<String> = times
                .iter()
                .map(|&(id, s)| format!("{:.2}{}", s * 1e6, if Some(id) == picked { "*" } else { "" }))
                .collect();
            let ratio = times
                .iter()
                .find(|&&(id, _)| Some(id) == picked)
                .map_or(String::new(), |&(_, s)| format!("{:.2}", s / best));
            t += &format!("| {label} | {m}×{n}×{kk} | {sms} | {} | {ratio} |\n", cells.join(" | "));
        }
    }
    t
}

/// The decode GEMMs (M = 8) of the models the decode issue names, with their fused weights
/// (QKV, gate+up): (model, weight, N, K).
const DECODE_SHAPES: [(&str, &str, u32, u32); 15] = [
    ("mistral-7b", "qkv", 6144, 4096),
    ("mistral-7b", "o", 4096, 4096),
    ("mistral-7b", "gate+up", 28672, 4096),
    ("mistral-7b", "down", 4096, 14336),
    ("mistral-7b", "lm-head", 32000, 4096),
    ("llama-3.2-1b", "qkv", 3072, 2048),
    ("llama-3.2-1b", "o", 2048, 2048),
    ("llama-3.2-1b", "gate+up", 16384, 2048),
    ("llama-3.2-1b", "down", 2048, 8192),
    ("llama-3.2-1b", "lm-head", 128256, 2048),
    ("gpt2-medium", "qkv", 3072, 1024),
    ("gpt2-medium", "o", 1024, 1024),
    ("gpt2-medium", "fc", 4096, 1024),
    ("gpt2-medium", "proj", 1024, 4096),
    ("gpt2-medium", "lm-head", 50257, 1024),
];

/// SMs of the partition the decode issue's targets name (a third of an H200).
const DECODE_SMS: u32 = 48;

/// Every decode GEMM of `DECODE_SHAPES` at M = 8: ours on the whole device and on 48 SMs as
/// a share of the copy bandwidth measured in this run, and cuBLASLt on the same SMs. The
/// decode issue's targets: ≥ 85% of the copy's rate on the whole device, ≥ 80% on 48 SMs,
/// ≥ 1.0× cuBLASLt on the whole device. A Markdown table.
fn decode_gemms(cx: &mut Ctx, bandwidth: f64) -> String {
    let third = partitions(cx).into_iter().find(|&(_, sms)| sms == DECODE_SMS);
    let whole = cx.rt.device().info().sm_count;
    let mut t = format!(
        "\nDecode GEMMs at M = 8 (plain, inputs rotated past 3× L2; median of 5 timings of graph replays). \
         \"of copy\" is the bytes of A, B and C over the time against the copy bandwidth of this run \
         ({:.0} GB/s); \"{DECODE_SMS} SMs\" runs on a green-context partition of that many SMs, cuBLASLt with \
         CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET = {DECODE_SMS}. \"packed\": the packed decode GEMM on the weights packed \
         (sm_90: gemm_f16_packed_m8 at 2,048 and 3,072 columns, _k4_m8 at 4,096, _halves_m8 at twice 3,072 or 4,096), which the engine runs for decoders.\n\n\
         | model | weight | N×K | ours | µs | of copy | cuBLASLt µs | ours / cuBLASLt (speed) | {DECODE_SMS} SMs µs | of copy | ÷ whole | cuBLASLt {DECODE_SMS} µs | ours / cuBLASLt | packed µs | of copy | ÷ cuBLASLt (speed) | packed {DECODE_SMS} SMs µs | of copy | ÷ cuBLASLt {DECODE_SMS} |\n\
         |---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        bandwidth / 1e9
    );
    let m = 8u32;
    for (model, weight, n, kk) in DECODE_SHAPES {
        let shape = (m, n, kk);
        let bytes = 2.0 * f64::from(m * kk + m * n) + 2.0 * f64::from(n) * f64::from(kk);
        let of_copy = |s: f64| format!("{:.0}%", 100.0 * bytes / s / bandwidth);
        let us = |s: Option<f64>| s.map_or(String::new(), |s| format!("{:.2}", s * 1e6));
        let ratio = |a: f64, b: Option<f64>| b.map_or(String::new(), |b| format!("{:.2}", b / a));
        let bufs = gemm_bufs(cx, shape);
        let (name, ours, blas) = time_gemm_on(cx, &bufs, shape, PartitionId::WHOLE, whole);
        t += &format!(
            "| {model} | {weight} | {n}×{kk} | {name} | {:.2} | {} | {} | {} |",
            ours * 1e6,
            of_copy(ours),
            us(blas),
            ratio(ours, blas)
        );
        let third_times = third.map(|(pid, sms)| (pid, time_gemm_on(cx, &bufs, shape, pid, sms)));
        t += &match third_times {
            Some((_, (_, ours3, blas3))) => format!(
                " {:.2} | {} | {:.2} | {} | {} |",
                ours3 * 1e6,
                of_copy(ours3),
                ours / ours3,
                us(blas3),
                ratio(ours3, blas3)
            ),
            None => " | | | | |".to_string(),
        };
        let packs = cx.rt.device().info().compute_capability == (9, 0) && packs_decode_weights(kk);
        t += &if packs {
            let packed = packed_bufs(cx, &bufs, shape);
            let whole_s = time_packed_on(cx, &packed, shape, PartitionId::WHOLE);
            let row = format!(" {:.2} | {} | {} |", whole_s * 1e6, of_copy(whole_s), ratio(whole_s, blas));
            match third_times {
                Some((pid, (_, _, blas3))) => {
                    let s3 = time_packed_on(cx, &packed, shape, pid);
                    format!("{row} {:.2} | {} | {} |\n", s3 * 1e6, of_copy(s3), ratio(s3, blas3))
                }
                None => format!("{row} | | |\n"),
            }
        } else {
            " | | | | | |\n".to_string()
        };
    }
    t
}

/// The decode GEMMs (M = 8) with K ≤ 1,024, GPT-2's and gpt2-medium's: (model, weight, N, K).
const SMALL_K_DECODE_SHAPES: [(&str, &str, u32, u32); 8] = [
    ("gpt2", "qkv", 2304, 768),
    ("gpt2", "o", 768, 768),
    ("gpt2", "fc", 3072, 768),
    ("gpt2", "lm-head", 50257, 768),
    ("gpt2-medium", "qkv", 3072, 1024),
    ("gpt2-medium", "o", 1024, 1024),
    ("gpt2-medium", "fc", 4096, 1024),
    ("gpt2-medium", "lm-head", 50257, 1024),
];

/// The decode GEMMs of K ≤ 1,024 on every partition of the bench and the whole device: the
/// skinny kernel against the streamed one, and which the engine picks for those SMs
/// (`hopper_gemm`). A Markdown table.
fn small_k_decode_gemms(cx: &mut Ctx, bandwidth: f64) -> String {
    // The streamed kernel is sm_90a only.
    if cx.rt.device().info().compute_capability != (9, 0) {
        return "\nPrefill tiles on partitions: skipped (the Hopper GEMMs need sm_90).\n".into();
    }
    let whole = cx.rt.device().info().sm_count;
    let mut on: Vec<(PartitionId, u32)> = partitions(cx);
    on.push((PartitionId::WHOLE, whole));
    let mut t = String::from(
        "\nDecode GEMMs at M = 8 with K ≤ 1,024, the skinny kernel (gemm_f16_skinny_m8) against the streamed one \
         (gemm_f16_stream_m8) on each partition, µs and share of the copy bandwidth; \"picked\" is the kernel the \
         engine runs on those SMs.\n\n\
         | model | weight | N×K | SMs | skinny µs | of copy | streamed µs | of copy | streamed ÷ skinny (speed) | picked |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let m = 8u32;
    for (model, weight, n, kk) in SMALL_K_DECODE_SHAPES {
        let shape = (m, n, kk);
        let bytes = 2.0 * f64::from(m * kk + m * n) + 2.0 * f64::from(n) * f64::from(kk);
        let of_copy = |s: f64| format!("{:.0}%", 100.0 * bytes / s / bandwidth);
        let bufs = gemm_bufs(cx, shape);
        for &(pid, sms) in &on {
            let (_, skinny, _) = time_kernel_on(cx, &bufs, shape, pid, sms, None, false);
            let (_, streamed, _) = time_kernel_on(cx, &bufs, shape, pid, sms, Some(k::GEMM_STREAM_8), false);
            let picked = hopper_gemm(m, n, kk, cx.rt.device().info().compute_capability, sms)
                .map_or(gemm_kernel(m).id(), |k| k.id());
            t += &format!(
                "| {model} | {weight} | {n}×{kk} | {sms} | {:.2} | {} | {:.2} | {} | {:.2} | {picked} |\n",
                skinny * 1e6,
                of_copy(skinny),
                streamed * 1e6,
                of_copy(streamed),
                skinny / streamed
            );
        }
    }
    t
}

/// Seconds per launch of `launches` (one pass of them, replayed as a CUDA graph on `stream`):
/// the median of 5 timings of about 20 ms each (at most 20 replays).
fn time_launches(cx: &Ctx, stream: sys::CUstream, launches: Vec<Box<dyn Fn()>>) -> f64 {
    let case = Case { name: String::new(), shape: String::new(), work: Work::Flops(0.0), launches, baseline_of: None };
    let graph = Graph::capture(&case, stream, EventTimer::new(cx.rt.device()).expect("timer"));
    let once = graph.time(1);
    let replays = ((0.02 / once).round() as u64).clamp(1, 20);
    graph.time(replays);
    let mut v: Vec<f64> = (0..5).map(|_| graph.time(replays) / replays as f64 / graph.launches as f64).collect();
    median(&mut v)
}

/// The (N, K) of the GEMM matrix: GPT-2/BERT-sized weights and Llama-3.2-1B's.
const MATRIX_SHAPES: [(&str, u32, u32); 11] = [
    ("", 768, 768),
    ("", 2304, 768),
    ("", 3072, 768),
    ("", 768, 3072),
    ("", 4096, 4096),
    ("gpt2 lm-head", 50257, 768),
    ("llama-1b qkv", 3072, 2048),
    ("llama-1b o", 2048, 2048),
    ("llama-1b gate+up", 16384, 2048),
    ("llama-1b down", 2048, 8192),
    ("llama-1b lm-head", 128256, 2048),
];

/// The M of the GEMM matrix: decode batches and prefill token counts.
const MATRIX_M: [u32; 5] = [8, 32, 64, 1024, 4096];

/// Every M × (N, K) of the matrix on the whole device, plain GEMMs (no epilogue, as cuBLASLt
/// runs them): the kernel the library picks, each Hopper tile width (M > 64, sm_90), and
/// cuBLASLt. A Markdown table.
fn gemm_matrix(cx: &mut Ctx, bandwidth: f64, only: Option<&[(u32, u32, u32)]>) -> String {
    let info = cx.rt.device().info().clone();
    let hopper = info.compute_capability == (9, 0);
    let mut t = String::from(
        "\nThe GEMM matrix (whole device, no epilogue, inputs rotated past 3× L2; median of 5 timings of \
         ≈ 20 ms of graph replays). \"picked\" is the kernel the library runs for the shape; beside it, the eight Hopper \
         tile widths for M > 64, for M ≤ 64 the small-M Hopper tiles (64×32, 64×64) and the mma.sync kernel \
         for that M (skinny or 64×64), and for M ≤ 8 the streamed kernel (gemm_f16_stream_m8, which sm_90 picks when \
         K > 1024, or with at least 40 tiles an SM, which no shape here has on the whole device). \"of DRAM\" is the bytes of A, B and C over the picked kernel's time against \
         the measured bandwidth.\n\n\
         | M | N×K | picked | µs | TFLOP/s | of DRAM | 128×48 µs | 128×64 µs | 128×80 µs | 128×96 µs | 128×128 µs | 128×160 µs | 128×192 µs | 128×256 µs | 64×32 µs | 64×64 µs | streamed µs | mma.sync µs | cuBLASLt µs | picked / cuBLASLt (speed) |\n\
         |---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let all: Vec<(&str, u32, u32, u32)> = match only {
        Some(list) => list.iter().map(|&(m, n, kk)| ("", m, n, kk)).collect(),
        None => MATRIX_M.iter().flat_map(|&m| MATRIX_SHAPES.iter().map(move |&(l, n, kk)| (l, m, n, kk))).collect(),
    };
    for (label, m, n, kk) in all {
        let (mu, nu, ku) = (m as usize, n as usize, kk as usize);
        let bytes = 2.0 * (mu * ku + nu * ku + mu * nu) as f64;
        let copies = cx.copies(bytes);
        let (a, b) = (cx.rand(mu * ku, 1.0), cx.rand(nu * ku, 1.0));
        let bufs: Vec<_> = (0..copies).map(|_| (cx.upload(&a), cx.upload(&b), cx.zeros(mu * nu))).collect();
        let params: Vec<GemmParams> = bufs.iter().map(|(da, db, dc)| plain_gemm(da, db, dc, (m, n, kk))).collect();
        let keep: Vec<Vec<Rc<dyn std::any::Any>>> =
            bufs.iter().map(|(da, db, dc)| vec![any(da), any(db), any(dc)]).collect();
        // `None` where the kernel refuses the shape (the streamed kernel wants K in whole slices):
        // its column stays empty.
        let time_tma = |cx: &Ctx, kernel: Kernel<GemmTmaParams>| {
            let launches = params
                .iter()
                .zip(&keep)
                .map(|(p, keep)| {
                    let tma = rightsize::runtime::gemm_tma_params(p, kernel).ok()?;
                    Some(cx.launcher(kernel, tma, keep.clone()))
                })
                .collect::<Option<_>>()?;
            Some(time_launches(cx, cx.stream, launches))
        };
        // The Hopper kernels that serve this M (the eight tile widths above 64 rows, the
        // small-M tiles below), and for M ≤ 64 the mma.sync kernel too.
        let serving: &[Kernel<GemmTmaParams>] = if m <= 8 {
            &[k::GEMM_STREAM_8, k::GEMM_WGMMA_SMALL, k::GEMM_WGMMA_SMALL_WIDE]
        } else if m <= RS_GEMM_WS_BM {
            &k::HOPPER_SMALL_GEMMS
        } else {
            &k::HOPPER_PREFILL_GEMMS
        };
        let hopper_times: Vec<(k::KernelId, f64)> = if hopper {
            serving.iter().filter_map(|&kernel| Some((kernel.id(), time_tma(cx, kernel)?))).collect()
        } else {
            Vec::new()
        };
        let hopper_time =
            |kernel: Kernel<GemmTmaParams>| hopper_times.iter().find(|(id, _)| *id == kernel.id()).map(|&(_, t)| t);
        let sm80 = (m <= RS_GEMM_WS_BM || !hopper).then(|| {
            let kernel = gemm_kernel(m);
            let launches = params.iter().zip(&keep).map(|(p, keep)| cx.launcher(kernel, *p, keep.clone())).collect();
            (kernel.id(), time_launches(cx, cx.stream, launches))
        });
        let (name, ours) = match hopper_gemm(m, n, kk, info.compute_capability, info.sm_count) {
            Some(kernel) => (kernel.id(), hopper_time(kernel).expect("timed")),
            None => sm80.expect("timed"),
        };
        let (blas_us, ratio) = match &cx.blas {
            Some(blas) => {
                let plan = Rc::new(blas.plan(BlasShape::plain(m, n, kk), None).expect("cublasLt plan"));
                let launches = bufs
                    .iter()
                    .map(|(da, db, dc)| {
                        let (blas, plan, stream) = (blas.clone(), plan.clone(), cx.stream);
                        let (da, db, dc) = (da.clone(), db.clone(), dc.clone());
                        Box::new(move || {
                            // SAFETY: buffers held by the closure, sized m·k, n·k, m·n.
                            unsafe { blas.run(&plan, da.ptr(), db.ptr(), 0, 0, dc.ptr(), stream) }.expect("cublasLt");
                        }) as Box<dyn Fn()>
                    })
                    .collect();
                let bt = time_launches(cx, cx.stream, launches);
                (format!("{:.2}", bt * 1e6), format!("{:.2}", bt / ours))
            }
            None => (String::new(), String::new()),
        };
        let us = |t: Option<f64>| t.map_or(String::new(), |s| format!("{:.2}", s * 1e6));
        let flops = 2.0 * f64::from(m) * f64::from(n) * f64::from(kk);
        let shape = if label.is_empty() { format!("{n}×{kk}") } else { format!("{n}×{kk} ({label})") };
        t += &format!(
            "| {m} | {shape} | {name} | {:.2} | {:.1} | {:.0}% | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {blas_us} | {ratio} |\n",
            ours * 1e6,
            flops / ours / 1e12,
            100.0 * bytes / ours / bandwidth,
            us(hopper_time(k::GEMM_WGMMA_SLIM)),
            us(hopper_time(k::GEMM_WGMMA_NARROW)),
            us(hopper_time(k::GEMM_WGMMA_80)),
            us(hopper_time(k::GEMM_WGMMA_96)),
            us(hopper_time(k::GEMM_WGMMA)),
            us(hopper_time(k::GEMM_WGMMA_WIDER_MID)),
            us(hopper_time(k::GEMM_WGMMA_MID)),
            us(hopper_time(k::GEMM_WGMMA_WIDE)),
            us(hopper_time(k::GEMM_WGMMA_SMALL)),
            us(hopper_time(k::GEMM_WGMMA_SMALL_WIDE)),
            us(hopper_time(k::GEMM_STREAM_8)),
            us(sm80.map(|(_, t)| t)),
        );
    }
    t
}

/// What `RIGHTSIZE_BENCH_GEMMS` asks for: the decode table alone, the prefill tiles on
/// partitions alone, or only these GEMMs.
enum OnlyGemms {
    Decode,
    Tiles,
    Shapes(Vec<(u32, u32, u32)>),
}

/// `RIGHTSIZE_BENCH_GEMMS` (`decode`, `tiles`, or `M×N×K` / `MxNxK`, comma-separated), if set.
fn only_gemms() -> Option<OnlyGemms> {
    let spec = std::env::var("RIGHTSIZE_BENCH_GEMMS").ok()?;
    match spec.trim() {
        "decode" => return Some(OnlyGemms::Decode),
        "tiles" => return Some(OnlyGemms::Tiles),
        _ => {}
    }
    let parse = |item: &str| -> Option<(u32, u32, u32)> {
        let d: Vec<u32> = item.trim().split(['×', 'x']).map(|v| v.trim().parse().ok()).collect::<Option<_>>()?;
        matches!(d[..], [m, n, k] if m > 0 && n > 0 && k > 0 && k % 8 == 0).then(|| (d[0], d[1], d[2]))
    };
    match spec.split(',').map(parse).collect::<Option<Vec<_>>>() {
        Some(list) => Some(OnlyGemms::Shapes(list)),
        None => {
            eprintln!(
                "RIGHTSIZE_BENCH_GEMMS={spec:?}: expected decode, tiles, or M×N×K[,M×N×K…] with K a multiple of 8"
            );
            std::process::exit(2)
        }
    }
}

fn bench(c: &mut Criterion) {
    let device = match Device::open(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("kernels bench skipped: {e}");
            return;
        }
    };
    let l2 = device.info().l2_cache_bytes as f64;
    let title = format!(
        "{}, {} SMs, driver {}",
        device.info().name,
        device.info().sm_count,
        device.info().driver_release.clone().unwrap_or_default()
    );
    // Partitions of 16 … 96 SMs (from the first group) for the confined and decode GEMMs.
    let spec = match &device.info().partitions {
        PartitionSupport::Supported { granularity, groups, .. } => PoolSpec {
            partitions: PARTITION_SMS
                .iter()
                .filter(|&&s| s % granularity == 0 && s / granularity <= *groups)
                .map(|&sms| PartitionRequest { first_group: 0, sms })
                .collect(),
            ..PoolSpec::default()
        },
        PartitionSupport::Unsupported { reason } => {
            eprintln!("confined GEMMs skipped: {reason}");
            PoolSpec::default()
        }
    };
    let rt = Rc::new(Runtime::new(device, &spec).expect("runtime"));
    let stream = rt.pool().get(PartitionId::WHOLE).expect("whole").stream(0).expect("stream");
    let blas = match BlasLt::new(rt.device()) {
        Ok(b) => Some(Rc::new(b)),
        Err(e) => {
            eprintln!("cuBLASLt baseline skipped: {e}");
            None
        }
    };
    let bandwidth = dram_bandwidth(rt.device(), stream);
    let mut cx = Ctx { rt: rt.clone(), blas, rng: StdRng::seed_from_u64(rand::random()), stream, l2 };
    match only_gemms() {
        Some(OnlyGemms::Decode) => {
            let table = decode_gemms(&mut cx, bandwidth) + &small_k_decode_gemms(&mut cx, bandwidth);
            return emit(&table);
        }
        Some(OnlyGemms::Tiles) => return emit(&partition_tiles(&mut cx)),
        Some(OnlyGemms::Shapes(only)) => return emit(&gemm_matrix(&mut cx, bandwidth, Some(&only))),
        None => {}
    }
    let cases = all_cases(&mut cx);

    let mut g = c.benchmark_group("kernels");
    g.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    let mut rows = Vec::new();
    for case in &cases {
        let graph = Graph::capture(case, stream, EventTimer::new(rt.device()).expect("timer"));
        let samples = RefCell::new(Vec::new());
        g.bench_function(&case.name, |bch| {
            bch.iter_custom(|iters| {
                let secs = graph.time(iters);
                samples.borrow_mut().push(secs / iters as f64 / graph.launches as f64);
                Duration::from_secs_f64(secs)
            })
        });
        let per_launch = median(&mut samples.into_inner());
        rows.push((case, per_launch));
    }
    g.finish();
    rt.synchronize().expect("sync");

    let mut table = format!(
        "Kernels on {title}; median time per launch (inputs rotated past 3× L2), rate from the minimal FLOPs or bytes.\n\n\
         DRAM bandwidth measured in this run: {:.0} GB/s (2 GiB device-to-device copy, read + write, median of 5); \
         \"of DRAM\" is a GEMM's bytes of A, B and C over its time against it.\n\n\
         | kernel | shape | µs | TFLOP/s | GB/s | of DRAM | cuBLASLt µs | ours / cuBLASLt (speed) |\n|---|---|---:|---:|---:|---:|---:|---:|\n",
        bandwidth / 1e9
    );
    for (case, t) in &rows {
        if case.baseline_of.is_some() || t.is_nan() {
            continue;
        }
        let (tflops, gbs, dram) = match case.work {
            Work::Flops(f) => (format!("{:.1}", f / t / 1e12), String::new(), String::new()),
            Work::Bytes(b) => (String::new(), format!("{:.0}", b / t / 1e9), String::new()),
            Work::Gemm(f, b) => (
                format!("{:.1}", f / t / 1e12),
                format!("{:.0}", b / t / 1e9),
                format!("{:.0}%", 100.0 * b / t / bandwidth),
            ),
        };
        let base = rows.iter().find(|(c, _)| c.baseline_of.as_deref() == Some(case.name.as_str()));
        let (blas_us, ratio) = match base {
            Some((_, bt)) => (format!("{:.2}", bt * 1e6), format!("{:.2}", bt / t)),
            None => (String::new(), String::new()),
        };
        table += &format!(
            "| {} | {} | {:.2} | {tflops} | {gbs} | {dram} | {blas_us} | {ratio} |\n",
            case.name,
            case.shape,
            t * 1e6
        );
    }
    table += &gemm_matrix(&mut cx, bandwidth, None);
    table += &confined_gemms(&mut cx);
    table += &partition_tiles(&mut cx);
    table += &decode_gemms(&mut cx, bandwidth);
    emit(&table);
}

criterion_group! {
    name = benches;
    // Our own tables, not criterion's plots (which need a system font).
    config = Criterion::default().without_plots();
    targets = bench
}
criterion_main!(benches);

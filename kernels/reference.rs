//! CPU references for the kernels, computed in f32 from the same FP16 inputs.
//!
//! Each kernel's GPU test compares against the function named in its `.cu` header here.

use half::f16;

use super::abi;

/// `vector_add_f16`: `c[i] = f16(f32(a[i]) + f32(b[i]))`.
///
/// # Panics
/// If `a` and `b` differ in length.
pub fn vector_add(a: &[f16], b: &[f16]) -> Vec<f16> {
    assert_eq!(a.len(), b.len(), "vector_add: lengths differ");
    a.iter().zip(b).map(|(x, y)| f16::from_f32(x.to_f32() + y.to_f32())).collect()
}

fn f(x: f16) -> f32 {
    x.to_f32()
}

fn h(x: f32) -> f16 {
    f16::from_f32(x)
}

/// GELU in f32: `act` is `abi::RS_ACT_GELU_TANH`, `abi::RS_ACT_GELU_ERF` or none.
pub fn gelu_f32(x: f32, act: u32) -> f32 {
    match act {
        abi::RS_ACT_GELU_TANH => {
            let k0 = (2.0f64 / std::f64::consts::PI).sqrt() as f32;
            0.5 * x * (1.0 + (k0 * (x + 0.044715 * x * x * x)).tanh())
        }
        abi::RS_ACT_GELU_ERF => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)),
        _ => x,
    }
}

/// erf to ~1e-7 (Abramowitz–Stegun 7.1.26 is too coarse for a reference; this is a series
/// / continued-fraction split in f64).
fn erf(x: f32) -> f32 {
    let x = f64::from(x);
    let a = x.abs();
    let r = if a < 2.5 {
        // Maclaurin series.
        let (mut term, mut sum, mut n) = (a, a, 0.0f64);
        loop {
            n += 1.0;
            term *= -a * a / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // Continued fraction for erfc.
        let mut cf = 0.0f64;
        for k in (1..60).rev() {
            cf = f64::from(k) / 2.0 / (a + cf);
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / (a + cf)
    };
    (if x < 0.0 { -r } else { r }) as f32
}

/// `gelu_f16`.
pub fn gelu(x: &[f16], act: u32) -> Vec<f16> {
    x.iter().map(|&v| h(gelu_f32(f(v), act))).collect()
}

/// `pack_tiles_f16`: `n` × `k` weights (row-major) in the packed layout of abi.h's PackParams;
/// with `pairs`, each tile's halves are 8 rows of the first n / 2 (gate) and the same 8 of the
/// rest (up).
pub fn pack_tiles(w: &[f16], n: usize, k: usize, pairs: bool) -> Vec<f16> {
    let bn = abi::RS_GEMM_T_BN as usize;
    let kc = super::packed_chunk(k as u32).expect("a K the packed layout takes") as usize;
    let slices = kc / 32;
    let mut out = vec![f16::ZERO; n.div_ceil(bn) * bn * k];
    for (i, v) in out.iter_mut().enumerate() {
        // i = ((((tile·C + chunk)·2 + half)·slices + slice)·8 + r)·32 + stored piece·8 + e.
        let (e, stored, r, slice) = (i % 8, i / 8 % 4, i / 32 % 8, i / 256 % slices);
        let (half, chunk, tile) = (i / (256 * slices) % 2, i / (512 * slices) % (k / kc), i / (bn * k));
        let row = if pairs { half * (n / 2) + 8 * tile + r } else { tile * bn + 8 * half + r };
        let piece = stored ^ (r / 2 % 4);
        if row < n {
            *v = w[row * k + chunk * kc + slice * 32 + piece * 8 + e];
        }
    }
    out
}

/// `gemm_f16_*` with contiguous operands: `C = act(A·Bᵀ + bias) + R`, A m×k, B n×k, R m×n
/// (the product is rounded to FP16 before R is added).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    a: &[f16],
    b: &[f16],
    bias: Option<&[f16]>,
    residual: Option<&[f16]>,
    m: usize,
    n: usize,
    k: usize,
    act: u32,
) -> Vec<f16> {
    let bf: Vec<f32> = b.iter().map(|&x| f(x)).collect();
    let mut c = Vec::with_capacity(m * n);
    let mut row = vec![0f32; k];
    for i in 0..m {
        for (r, &x) in row.iter_mut().zip(&a[i * k..(i + 1) * k]) {
            *r = f(x);
        }
        for j in 0..n {
            let bj = &bf[j * k..(j + 1) * k];
            let mut acc = 0f32;
            for (x, y) in row.iter().zip(bj) {
                acc += x * y;
            }
            if let Some(bias) = bias {
                acc += f(bias[j]);
            }
            let mut v = gelu_f32(acc, act);
            if let Some(r) = residual {
                v = f(h(v)) + f(r[i * n + j]);
            }
            c.push(h(v));
        }
    }
    c
}

/// Output of a norm reference: the rounded residual sum (when a residual was given) and y.
#[derive(Debug)]
pub struct NormOut {
    /// `x + residual`, rounded to FP16.
    pub sum: Option<Vec<f16>>,
    /// The normalised rows.
    pub y: Vec<f16>,
}

fn norm(
    x: &[f16],
    residual: Option<&[f16]>,
    gamma: &[f16],
    beta: Option<&[f16]>,
    cols: usize,
    eps: f32,
    rms: bool,
) -> NormOut {
    let s: Vec<f16> = match residual {
        Some(r) => x.iter().zip(r).map(|(&a, &b)| h(f(a) + f(b))).collect(),
        None => x.to_vec(),
    };
    let mut y = Vec::with_capacity(s.len());
    for row in s.chunks(cols) {
        let v: Vec<f64> = row.iter().map(|&e| f64::from(f(e))).collect();
        let n = cols as f64;
        let (mean, var) = if rms {
            (0.0, v.iter().map(|e| e * e).sum::<f64>() / n)
        } else {
            let mean = v.iter().sum::<f64>() / n;
            (mean, v.iter().map(|e| (e - mean) * (e - mean)).sum::<f64>() / n)
        };
        let rstd = 1.0 / (var + f64::from(eps)).sqrt();
        for (c, e) in v.iter().enumerate() {
            let o = if rms {
                f64::from(f(h((e * rstd) as f32))) * f64::from(f(gamma[c]))
            } else {
                (e - mean) * rstd * f64::from(f(gamma[c])) + beta.map_or(0.0, |b| f64::from(f(b[c])))
            };
            y.push(h(o as f32));
        }
    }
    NormOut { sum: residual.map(|_| s), y }
}

/// `layer_norm_f16` on contiguous rows of `cols`.
pub fn layer_norm(
    x: &[f16],
    residual: Option<&[f16]>,
    gamma: &[f16],
    beta: Option<&[f16]>,
    cols: usize,
    eps: f32,
) -> NormOut {
    norm(x, residual, gamma, beta, cols, eps, false)
}

/// `rms_norm_f16` on contiguous rows of `cols`.
pub fn rms_norm(x: &[f16], residual: Option<&[f16]>, gamma: &[f16], cols: usize, eps: f32) -> NormOut {
    norm(x, residual, gamma, None, cols, eps, true)
}

/// Shape of an attention problem; tensors are contiguous: q and o `[batch·seq][heads_q·head_dim]`,
/// k and v `[batch·seq][heads_kv·head_dim]`.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    /// Sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Query heads.
    pub heads_q: usize,
    /// Key/value heads.
    pub heads_kv: usize,
    /// Elements per head.
    pub head_dim: usize,
}

/// `attention_prefill_*`: softmax(scale·QKᵀ + mask)V in f64, keys ≥ seq_lens[b] and (causal)
/// keys after the query masked; a query with no valid key gives 0.
pub fn attention(
    q: &[f16],
    k: &[f16],
    v: &[f16],
    s: AttentionShape,
    seq_lens: Option<&[u32]>,
    causal: bool,
    scale: f32,
) -> Vec<f16> {
    let (d, qw, kw) = (s.head_dim, s.heads_q * s.head_dim, s.heads_kv * s.head_dim);
    let group = s.heads_q / s.heads_kv;
    let mut o = vec![f16::ZERO; s.batch * s.seq * qw];
    for b in 0..s.batch {
        let valid = seq_lens.map_or(s.seq, |l| (l[b] as usize).min(s.seq));
        for hq in 0..s.heads_q {
            let hk = hq / group;
            for i in 0..s.seq {
                let qrow = &q[(b * s.seq + i) * qw + hq * d..][..d];
                let end = if causal { valid.min(i + 1) } else { valid };
                let scores: Vec<f64> = (0..end)
                    .map(|j| {
                        let krow = &k[(b * s.seq + j) * kw + hk * d..][..d];
                        qrow.iter().zip(krow).map(|(&x, &y)| f64::from(f(x)) * f64::from(f(y))).sum::<f64>()
                            * f64::from(scale)
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let total: f64 = w.iter().sum();
                for c in 0..d {
                    let mut acc = 0f64;
                    for (j, wj) in w.iter().enumerate() {
                        acc += wj * f64::from(f(v[(b * s.seq + j) * kw + hk * d + c]));
                    }
                    o[(b * s.seq + i) * qw + hq * d + c] = h(if total > 0.0 { (acc / total) as f32 } else { 0.0 });
                }
            }
        }
    }
    o
}

/// `attention_decode_*`: appends each sequence's new k and v rows (`[batch][heads_kv·head_dim]`)
/// to the caches (`[batch][heads_kv][max_len][head_dim]`) at position `pos[b]`, then attends
/// q (`[batch][heads_q·head_dim]`) over positions `0 ..= min(pos[b], max_len − 1)`.
#[allow(clippy::too_many_arguments)]
pub fn decode_attention(
    q: &[f16],
    k_new: &[f16],
    v_new: &[f16],
    k_cache: &mut [f16],
    v_cache: &mut [f16],
    pos: &[u32],
    heads_q: usize,
    heads_kv: usize,
    head_dim: usize,
    max_len: usize,
    scale: f32,
) -> Vec<f16> {
    kv_append(k_cache, v_cache, k_new, v_new, Some(pos), 1, heads_kv, head_dim, max_len);
    let batch = pos.len();
    let s = AttentionShape { batch: 1, seq: max_len, heads_q: 1, heads_kv: 1, head_dim };
    let mut o = Vec::with_capacity(batch * heads_q * head_dim);
    for b in 0..batch {
        let len = (pos[b] + 1).min(max_len as u32);
        for hq in 0..heads_q {
            let hk = hq / (heads_q / heads_kv);
            let qh = &q[(b * heads_q + hq) * head_dim..][..head_dim];
            let base = (b * heads_kv + hk) * max_len * head_dim;
            let kh = &k_cache[base..base + max_len * head_dim];
            let vh = &v_cache[base..base + max_len * head_dim];
            // One query attending to a cache is bidirectional attention with one query row.
            let mut qpad = vec![f16::ZERO; max_len * head_dim];
            qpad[..head_dim].copy_from_slice(qh);
            let out = attention(&qpad, kh, vh, s, Some(&[len]), false, scale);
            o.extend_from_slice(&out[..head_dim]);
        }
    }
    o
}

/// `kv_append_f16` on a cache `[batch][heads_kv][max_len][head_dim]`; k and v rows are
/// `[batch·tokens][heads_kv·head_dim]`.
#[allow(clippy::too_many_arguments)]
pub fn kv_append(
    k_cache: &mut [f16],
    v_cache: &mut [f16],
    k: &[f16],
    v: &[f16],
    start: Option<&[u32]>,
    tokens: usize,
    heads_kv: usize,
    head_dim: usize,
    max_len: usize,
) {
    let batch = k.len() / (tokens * heads_kv * head_dim);
    for b in 0..batch {
        for t in 0..tokens {
            let pos = start.map_or(0, |s| s[b] as usize) + t;
            if pos >= max_len {
                continue;
            }
            for hk in 0..heads_kv {
                let src = ((b * tokens + t) * heads_kv + hk) * head_dim;
                let dst = ((b * heads_kv + hk) * max_len + pos) * head_dim;
                k_cache[dst..dst + head_dim].copy_from_slice(&k[src..src + head_dim]);
                v_cache[dst..dst + head_dim].copy_from_slice(&v[src..src + head_dim]);
            }
        }
    }
}

/// One layer's weights for [`decoder_layers`] (as `abi::DecoderLayerWeights` points to them),
/// with its KV cache `[batch][heads_kv][max_len][64]`.
#[derive(Debug)]
pub struct DecoderLayer<'a> {
    /// LN1 scale and shift.
    pub norm1: (&'a [f16], &'a [f16]),
    /// QKV projection `[(heads + 2·heads_kv)·64][hidden]` and its bias.
    pub qkv: (&'a [f16], &'a [f16]),
    /// Attention-out projection `[hidden][hidden]` and its bias.
    pub out: (&'a [f16], &'a [f16]),
    /// LN2 scale and shift.
    pub norm2: (&'a [f16], &'a [f16]),
    /// MLP-up `[ffn][hidden]` and its bias.
    pub up: (&'a [f16], &'a [f16]),
    /// MLP-down `[hidden][ffn]` and its bias.
    pub down: (&'a [f16], &'a [f16]),
    /// The layer's key and value caches, updated.
    pub cache: (&'a mut [f16], &'a mut [f16]),
}

/// `decoder_layers_d64`: the layers in turn on `x` (`[batch][hidden]`, updated), each as the
/// separate kernels compute it: LayerNorm, QKV GEMM, decode attention with the append at `pos`,
/// attention-out GEMM with the residual, LayerNorm, MLP-up GEMM with GELU (tanh), MLP-down
/// GEMM with the residual.
#[allow(clippy::too_many_arguments)]
pub fn decoder_layers(
    x: &mut Vec<f16>,
    layers: &mut [DecoderLayer],
    pos: &[u32],
    hidden: usize,
    ffn: usize,
    heads: usize,
    heads_kv: usize,
    max_len: usize,
    eps: f32,
) {
    const D: usize = 64;
    let batch = pos.len();
    let (qw, kw) = (heads * D, heads_kv * D);
    for l in layers.iter_mut() {
        let a = layer_norm(x, None, l.norm1.0, Some(l.norm1.1), hidden, eps).y;
        let qkv = gemm(&a, l.qkv.0, Some(l.qkv.1), None, batch, qw + 2 * kw, hidden, abi::RS_ACT_NONE);
        let part = |from: usize, width: usize| -> Vec<f16> {
            qkv.chunks(qw + 2 * kw).flat_map(|r| r[from..from + width].to_vec()).collect()
        };
        let (k_cache, v_cache) = (&mut *l.cache.0, &mut *l.cache.1);
        let o = decode_attention(
            &part(0, qw),
            &part(qw, kw),
            &part(qw + kw, kw),
            k_cache,
            v_cache,
            pos,
            heads,
            heads_kv,
            D,
            max_len,
            1.0 / (D as f32).sqrt(),
        );
        *x = gemm(&o, l.out.0, Some(l.out.1), Some(x), batch, hidden, qw, abi::RS_ACT_NONE);
        let a = layer_norm(x, None, l.norm2.0, Some(l.norm2.1), hidden, eps).y;
        let h = gemm(&a, l.up.0, Some(l.up.1), None, batch, ffn, hidden, abi::RS_ACT_GELU_TANH);
        *x = gemm(&h, l.down.0, Some(l.down.1), Some(x), batch, hidden, ffn, abi::RS_ACT_NONE);
    }
}

/// Llama's inverse frequencies `θ^(−2i/d)` for `i < d/2`.
pub fn rope_inv_freq(head_dim: usize, theta: f64) -> Vec<f32> {
    (0..head_dim / 2).map(|i| theta.powf(-(2.0 * i as f64) / head_dim as f64) as f32).collect()
}

/// `rope_f16` on rows `[batch·tokens][heads·head_dim]` (one tensor; the kernel does q and k),
/// with FP16 rounding of cos, sin, each product and each sum.
pub fn rope(x: &mut [f16], heads: usize, head_dim: usize, inv_freq: &[f32], start: Option<&[u32]>, tokens: usize) {
    let half = head_dim / 2;
    for (row_index, row) in x.chunks_mut(heads * head_dim).enumerate() {
        let (b, t) = (row_index / tokens, row_index % tokens);
        let pos = (start.map_or(0, |s| s[b]) as usize + t) as f64;
        for head in row.chunks_mut(head_dim) {
            for i in 0..half {
                let angle = pos as f32 * inv_freq[i];
                let r = |x: f32| f(h(x));
                let (sn, cs) = (r(f64::from(angle).sin() as f32), r(f64::from(angle).cos() as f32));
                let (x1, x2) = (f(head[i]), f(head[i + half]));
                head[i] = h(r(x1 * cs) - r(x2 * sn));
                head[i + half] = h(r(x2 * cs) + r(x1 * sn));
            }
        }
    }
}

/// `embedding_f16`: rows of `hidden`; an id ≥ vocab or a position ≥ max_pos gives a NaN row.
#[allow(clippy::too_many_arguments)]
pub fn embedding(
    ids: &[u32],
    tok: &[f16],
    pos: Option<&[f16]>,
    type_row: Option<&[f16]>,
    start: Option<&[u32]>,
    tokens: usize,
    hidden: usize,
) -> Vec<f16> {
    let vocab = tok.len() / hidden;
    let max_pos = pos.map_or(0, |p| p.len() / hidden);
    let mut out = Vec::with_capacity(ids.len() * hidden);
    for (u, &id) in ids.iter().enumerate() {
        let p = start.map_or(0, |s| s[u / tokens] as usize) + u % tokens;
        let bad = id as usize >= vocab || (pos.is_some() && p >= max_pos);
        for c in 0..hidden {
            if bad {
                out.push(f16::NAN);
                continue;
            }
            let mut v = f(tok[id as usize * hidden + c]);
            if let Some(pt) = pos {
                v += f(pt[p * hidden + c]);
            }
            if let Some(t) = type_row {
                v += f(t[c]);
            }
            out.push(h(v));
        }
    }
    out
}

/// `swiglu_f16` on contiguous `rows × cols` gate and up (silu rounded to FP16 before the product).
pub fn swiglu(gate: &[f16], up: &[f16]) -> Vec<f16> {
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| {
            let g = f64::from(f(g));
            let s = f(h((g / (1.0 + (-g).exp())) as f32));
            h(s * f(u))
        })
        .collect()
}

/// `argmax_f16`: per row of `cols`, the smallest index of the largest value, NaNs ignored.
pub fn argmax(logits: &[f16], cols: usize) -> Vec<u32> {
    logits
        .chunks(cols)
        .map(|row| {
            let mut best: Option<(f32, usize)> = None;
            for (i, &x) in row.iter().enumerate() {
                let v = f(x);
                if v.is_nan() {
                    continue;
                }
                if best.is_none_or(|(bv, _)| v > bv) {
                    best = Some((v, i));
                }
            }
            best.map_or(0, |(_, i)| i as u32)
        })
        .collect()
}

fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `fill_f16`: element `i` of a fill with `seed`, `scale` and `mean` (uniform in
/// `[mean − scale, mean + scale)`), bit for bit what the kernel writes.
pub fn fill_value(seed: u64, i: u64, scale: f32, mean: f32) -> f16 {
    let r = (splitmix64(seed.wrapping_add(i)) >> 40) as f32 * (1.0 / 16_777_216.0);
    h(scale * (2.0 * r - 1.0) + mean)
}

/// `fill_f16` over `n` elements.
pub fn fill(n: usize, seed: u64, scale: f32, mean: f32) -> Vec<f16> {
    (0..n as u64).map(|i| fill_value(seed, i, scale, mean)).collect()
}

/// Relative error ‖out − ref‖₂ / ‖ref‖₂ in f64; infinite when `out` has a NaN or the lengths
/// differ, so a NaN never passes a tolerance.
pub fn relative_error(out: &[f16], reference: &[f16]) -> f64 {
    if out.len() != reference.len() || out.iter().any(|x| x.is_nan()) {
        return f64::INFINITY;
    }
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (o, r) in out.iter().zip(reference) {
        let (o, r) = (f64::from(o.to_f32()), f64::from(r.to_f32()));
        diff += (o - r) * (o - r);
        norm += r * r;
    }
    if norm == 0.0 {
        return if diff == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (diff / norm).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_tiles_lays_out_chunks_of_tiles_in_swizzled_atoms() {
        let (n, k) = (20, 2048);
        let w: Vec<f16> = (0..n * k).map(|i| f16::from_f32((i % 2039) as f32 + (i / 2039) as f32 / 32.0)).collect();
        let p = pack_tiles(&w, n, k, false);
        assert_eq!(p.len(), 32 * k, "two whole tiles");
        // Element (row, col) of tile t: chunk c, half h, slice s, atom row r, piece stored swizzled.
        let at = |row: usize, col: usize| {
            let (t, h, r) = (row / 16, row % 16 / 8, row % 8);
            let (c, s, piece, e) = (col / 1024, col % 1024 / 32, col % 32 / 8, col % 8);
            p[((((t * 2 + c) * 2 + h) * 32 + s) * 8 + r) * 32 + 8 * (piece ^ (r / 2 % 4)) + e]
        };
        for (row, col) in [(0, 0), (3, 5), (17, 40), (6, 1023), (9, 1024), (19, 2047), (13, 777)] {
            assert_eq!(at(row, col), w[row * k + col], "({row}, {col})");
        }
        assert!((20..32).all(|row| (0..k).all(|col| at(row, col) == f16::ZERO)), "rows past n are zero");
        let mut sorted: Vec<u16> = p[..16 * k].iter().chain(&p[16 * k..]).map(|v| v.to_bits()).collect();
        let mut want: Vec<u16> = w.iter().map(|v| v.to_bits()).chain(std::iter::repeat_n(0, 12 * k)).collect();
        sorted.sort_unstable();
        want.sort_unstable();
        assert_eq!(sorted, want, "a permutation of the weights, padded with zeros");
        // Gate/up pairs: tile t holds gate rows 8t … 8t + 7, then the same up rows.
        let n = 32;
        let w: Vec<f16> = (0..n * k).map(|i| f16::from_f32((i % 2039) as f32 + (i / 2039) as f32 / 32.0)).collect();
        let p = pack_tiles(&w, n, k, true);
        let at = |tile: usize, h: usize, r: usize, col: usize| {
            let (c, s, piece, e) = (col / 1024, col % 1024 / 32, col % 32 / 8, col % 8);
            p[((((tile * 2 + c) * 2 + h) * 32 + s) * 8 + r) * 32 + 8 * (piece ^ (r / 2 % 4)) + e]
        };
        for (tile, h, r, col) in [(0, 0, 0, 0), (0, 1, 3, 5), (1, 0, 7, 1500), (1, 1, 2, 2047)] {
            assert_eq!(at(tile, h, r, col), w[(h * n / 2 + 8 * tile + r) * k + col], "({tile}, {h}, {r}, {col})");
        }
        // K shorter than a chunk (GPT-2's 768): one chunk of 24 slices a tile.
        let (n, k) = (18, 768);
        let w: Vec<f16> = (0..n * k).map(|i| f16::from_f32((i % 2039) as f32 + (i / 2039) as f32 / 32.0)).collect();
        let p = pack_tiles(&w, n, k, false);
        let at = |row: usize, col: usize| {
            let (t, h, r) = (row / 16, row % 16 / 8, row % 8);
            let (s, piece, e) = (col / 32, col % 32 / 8, col % 8);
            p[(((t * 2 + h) * 24 + s) * 8 + r) * 32 + 8 * (piece ^ (r / 2 % 4)) + e]
        };
        for (row, col) in [(0, 0), (3, 5), (17, 40), (6, 767), (9, 256), (15, 700)] {
            assert_eq!(at(row, col), w[row * k + col], "K 768 ({row}, {col})");
        }
    }

    fn h(v: &[f32]) -> Vec<f16> {
        v.iter().copied().map(f16::from_f32).collect()
    }

    #[test]
    fn vector_add_rounds_once_from_f32() {
        let a = h(&[1.0, -2.5, 65504.0, 0.1]);
        let b = h(&[2.0, 0.5, 65504.0, 0.2]);
        let c = vector_add(&a, &b);
        assert_eq!(c[0].to_f32(), 3.0);
        assert_eq!(c[1].to_f32(), -2.0);
        assert!(c[2].is_infinite(), "overflow saturates to inf as on the GPU");
        assert_eq!(c[3], f16::from_f32(f16::from_f32(0.1).to_f32() + f16::from_f32(0.2).to_f32()));
    }

    #[test]
    fn relative_error_catches_nan_and_length() {
        let r = h(&[1.0, 2.0]);
        assert_eq!(relative_error(&r, &r), 0.0);
        assert!(relative_error(&h(&[1.0, f32::NAN]), &r).is_infinite());
        assert!(relative_error(&h(&[1.0]), &r).is_infinite());
        let e = relative_error(&h(&[1.0, 2.02]), &r);
        assert!((e - 0.02 / 5f64.sqrt()).abs() < 1e-3, "{e}");
    }

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in
            [(0.0f32, 0.0f64), (0.5, 0.5204998778), (1.0, 0.8427007929), (2.0, 0.9953222650), (3.0, 0.9999779095)]
        {
            assert!((f64::from(erf(x)) - want).abs() < 1e-6, "erf({x})");
            assert!((f64::from(erf(-x)) + want).abs() < 1e-6);
        }
    }

    #[test]
    fn gelu_forms_agree_roughly_and_fix_zero() {
        for x in [-3.0f32, -1.0, -0.1, 0.0, 0.3, 1.0, 2.5] {
            let (t, e) = (gelu_f32(x, abi::RS_ACT_GELU_TANH), gelu_f32(x, abi::RS_ACT_GELU_ERF));
            assert!((t - e).abs() < 2e-3, "{x}: {t} vs {e}");
        }
        assert_eq!(gelu_f32(1.5, abi::RS_ACT_NONE), 1.5);
        assert!((gelu_f32(1.0, abi::RS_ACT_GELU_ERF) - 0.841_344_7).abs() < 1e-6);
    }

    #[test]
    fn gemm_small_case_by_hand() {
        // A = [[1,2],[3,4]] padded to K = 2, B = [[1,0],[0,1],[1,1]] → A·Bᵀ = [[1,2,3],[3,4,7]].
        let a = h(&[1.0, 2.0, 3.0, 4.0]);
        let b = h(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let c = gemm(&a, &b, Some(&h(&[0.5, 0.0, -1.0])), Some(&h(&[0.0; 6])), 2, 3, 2, abi::RS_ACT_NONE);
        assert_eq!(c, h(&[1.5, 2.0, 2.0, 3.5, 4.0, 6.0]));
    }

    #[test]
    fn norms_center_and_scale() {
        let x = h(&[1.0, 2.0, 3.0, 4.0]);
        let out = layer_norm(&x, None, &h(&[1.0; 4]), Some(&h(&[0.5; 4])), 4, 0.0);
        let y: Vec<f32> = out.y.iter().map(|v| v.to_f32()).collect();
        assert!((y.iter().sum::<f32>() - 2.0).abs() < 1e-2, "mean 0 + beta: {y:?}");
        let rms = rms_norm(&x, Some(&x), &h(&[1.0; 4]), 4, 0.0);
        assert_eq!(rms.sum.unwrap(), h(&[2.0, 4.0, 6.0, 8.0]));
        let r: f32 = rms.y.iter().map(|v| v.to_f32().powi(2)).sum::<f32>() / 4.0;
        assert!((r - 1.0).abs() < 1e-2);
    }

    #[test]
    fn attention_with_one_key_returns_its_value() {
        let s = AttentionShape { batch: 1, seq: 2, heads_q: 1, heads_kv: 1, head_dim: 2 };
        let q = h(&[1.0, 0.0, 0.0, 1.0]);
        let k = h(&[1.0, 0.0, 5.0, 5.0]);
        let v = h(&[1.0, 2.0, 3.0, 4.0]);
        // Causal: query 0 sees only key 0.
        let o = attention(&q, &k, &v, s, None, true, 1.0);
        assert_eq!(&o[..2], &h(&[1.0, 2.0])[..]);
        // Padding: only key 0 is valid, so both queries return value 0.
        let o = attention(&q, &k, &v, s, Some(&[1]), false, 1.0);
        assert_eq!(o, h(&[1.0, 2.0, 1.0, 2.0]));
        // No valid key: zeros.
        assert_eq!(attention(&q, &k, &v, s, Some(&[0]), false, 1.0), h(&[0.0; 4]));
    }

    #[test]
    fn rope_rotates_pairs_and_keeps_norm() {
        let inv = rope_inv_freq(4, 10000.0);
        assert_eq!(inv[0], 1.0);
        let mut x = h(&[1.0, 0.5, 0.0, 0.25]);
        rope(&mut x, 1, 4, &inv, Some(&[1]), 1);
        let (c, s) = (1f32.cos(), 1f32.sin());
        assert!((x[0].to_f32() - c).abs() < 1e-3 && (x[2].to_f32() - s).abs() < 1e-3);
        let n: f32 = x.iter().map(|v| v.to_f32().powi(2)).sum();
        assert!((n - (1.0 + 0.25 + 0.0625)).abs() < 1e-2);
    }

    #[test]
    fn fill_is_uniform_in_range_and_seeded() {
        let a = fill(10_000, 7, 0.02, 0.0);
        assert!(a.iter().all(|v| v.to_f32().abs() <= 0.0201), "within the range, up to FP16 rounding");
        let mean: f32 = a.iter().map(|v| v.to_f32()).sum::<f32>() / a.len() as f32;
        let var: f32 = a.iter().map(|v| v.to_f32().powi(2)).sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 1e-3 && (var.sqrt() - 0.02 / 3f32.sqrt()).abs() < 1e-3, "{mean} {var}");
        assert_ne!(fill(4, 8, 0.02, 0.0), fill(4, 7, 0.02, 0.0));
        assert_eq!(fill(4, 7, 1.0, 1.0), fill(4, 7, 1.0, 1.0));
    }

    #[test]
    fn argmax_ties_and_nans() {
        let l = h(&[1.0, 3.0, 3.0, f32::NAN, 0.0, f32::NAN, f32::NAN, f32::NAN]);
        assert_eq!(argmax(&l, 4), vec![1, 0]);
    }

    #[test]
    fn embedding_flags_bad_ids() {
        let tok = h(&[1.0, 2.0, 3.0, 4.0]);
        let pos = h(&[0.5, 0.5, 0.25, 0.25]);
        let out = embedding(&[1, 7], &tok, Some(&pos), None, Some(&[0]), 2, 2);
        assert_eq!(&out[..2], &h(&[3.5, 4.5])[..]);
        assert!(out[2].is_nan() && out[3].is_nan());
    }

    #[test]
    fn kv_append_skips_positions_past_the_cache() {
        let (mut kc, mut vc) = (vec![f16::ZERO; 2 * 2], vec![f16::ZERO; 2 * 2]);
        let k = h(&[1.0, 2.0, 3.0, 4.0]);
        kv_append(&mut kc, &mut vc, &k, &k, Some(&[1]), 2, 1, 2, 2);
        assert_eq!(kc, h(&[0.0, 0.0, 1.0, 2.0]));
    }
}

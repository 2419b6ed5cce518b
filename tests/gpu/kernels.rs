//! Every kernel of the library against its CPU reference (kernels/reference.rs) on fresh
//! random inputs, at grids 1, 7, #SMs, 4×#SMs, the automatic grid, and on a partition, with
//! outputs poisoned (0xFF: NaN halves) before each launch and compared bit for bit across
//! grids. Shapes are deliberately not multiples of the tiles.

use half::f16;
use rand::rngs::StdRng;
use rand::Rng;
use rightsize::kernels::abi::*;
use rightsize::kernels::reference::{self as refs, relative_error, AttentionShape};
use rightsize::kernels::{self as k, argmax_scratch, gemm_kernel, Kernel, Params};
use rightsize::runtime::{DeviceBuffer, DeviceCopy, Grid, PartitionId, Placement, PoolSpec, Runtime, UnitOrder};

use super::{device, fresh_rng, split};

const TOL: f64 = 1e-2;

fn runtime() -> Runtime {
    let d = device();
    let (g, _) = split(&d);
    Runtime::new(d, &PoolSpec::disjoint(&[2 * g], g)).unwrap()
}

fn placements(rt: &Runtime) -> Vec<Placement> {
    let sms = rt.device().info().sm_count;
    let mut v: Vec<Placement> =
        [1, 7, sms, 4 * sms].iter().map(|&g| Placement { grid: Grid::Fixed(g), ..Placement::WHOLE }).collect();
    v.push(Placement::WHOLE);
    v.push(Placement::on(PartitionId::green(0)));
    v
}

fn rand_f16(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f16> {
    (0..n).map(|_| f16::from_f32(rng.random_range(lo..hi))).collect()
}

fn up<T: DeviceCopy>(rt: &Runtime, data: &[T]) -> DeviceBuffer<T> {
    DeviceBuffer::from_host(rt.device(), data).unwrap()
}

fn poisoned<T: DeviceCopy>(rt: &Runtime, n: usize) -> DeviceBuffer<T> {
    DeviceBuffer::filled(rt.device(), n, 0xff).unwrap()
}

/// Bit patterns, so NaNs compare equal to themselves and -0 differs from 0.
trait Bits: DeviceCopy {
    fn bits(self) -> u32;
}
impl Bits for f16 {
    fn bits(self) -> u32 {
        u32::from(self.to_bits())
    }
}
impl Bits for u32 {
    fn bits(self) -> u32 {
        self
    }
}

/// Launches `kernel` with `params` at every placement; before each launch `prepare` resets
/// inputs the kernel overwrites and `out` is poisoned. Returns the first output after
/// checking that every placement produced the same bits.
fn at_every_grid<P: Params, T: Bits>(
    rt: &Runtime,
    what: &str,
    kernel: Kernel<P>,
    params: &P,
    out: &mut DeviceBuffer<T>,
    mut prepare: impl FnMut(&mut DeviceBuffer<T>),
) -> Vec<T> {
    let mut first: Option<Vec<T>> = None;
    for placement in placements(rt) {
        out.fill_bytes(0xff).unwrap();
        prepare(out);
        // SAFETY: each test sizes every buffer in `params` for the shape it launches.
        unsafe { rt.launch(kernel, params, placement) }.unwrap();
        rt.synchronize().unwrap();
        let got = out.to_host().unwrap();
        match &first {
            None => first = Some(got),
            Some(f) => {
                let diff = f.iter().zip(&got).position(|(a, b)| a.bits() != b.bits());
                assert!(diff.is_none(), "{what}: {placement:?} differs from grid 1 at element {diff:?}");
            }
        }
    }
    first.unwrap()
}

fn assert_close(what: &str, got: &[f16], want: &[f16]) {
    let err = relative_error(got, want);
    println!("{what}: relative error {err:.2e}");
    assert!(err <= TOL, "{what}: relative error {err} (NaN or unwritten output gives inf)");
}

fn assert_same_bits(what: &str, got: &[f16], want: &[f16]) {
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{what}: element {i}: {a} vs {b}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gemm_matches_reference() {
    gemm_shapes_match_reference(
        "gemm",
        &[
            (1, 8, 8),
            (5, 300, 1000),
            (5, 300, 1056),
            (29, 100, 200),
            (37, 77, 200),
            (130, 260, 776),
            (200, 2304, 768),
            (70, 392, 136),
            (6, 200, 2048),
            (130, 100, 2048),
            // The packed layout's short chunks (GPT-2's 768, gpt2-medium's 1,024).
            (8, 300, 768),
            (3, 100, 1024),
            (130, 100, 768),
        ],
    );
}

/// The wide and deep shapes (a vocabulary projection, long K), apart so that a slow checker
/// (racecheck takes minutes on the vocabulary projection alone) can run them on their own.
#[test]
#[ignore = "needs a CUDA GPU"]
fn gemm_wide_shapes_match_reference() {
    gemm_shapes_match_reference("gemm-wide", &[(8, 50257, 768), (7, 70, 2600), (32, 770, 3072)]);
}

/// K beyond what a lane of the packed decode GEMM holds at once (sm_90): A's slices in two
/// halves (K = 6,144 and 8,192, Llama-3.2-1B's down projection); K = 14,336 (mistral-7b's) it
/// refuses, saying why.
#[test]
#[ignore = "needs a CUDA GPU"]
fn gemm_long_k_matches_reference() {
    gemm_shapes_match_reference("gemm-long-k", &[(8, 100, 6144), (5, 300, 8192), (8, 200, 14336)]);
}

/// Every GEMM kernel at every grid size, for each `(m, n, k)` and each epilogue.
fn gemm_shapes_match_reference(test: &str, shapes: &[(usize, usize, usize)]) {
    let rt = runtime();
    // Launches in the counted unit order (a claimer known), for the decode GEMMs that order
    // their units themselves (the packed GEMM: its plain build or its build by warps).
    let counted = runtime().with_units(UnitOrder::Counted);
    let mut rng = fresh_rng(test);
    let acts = [
        ("bias", true, RS_ACT_NONE, false),
        ("bias+gelu_tanh", true, RS_ACT_GELU_TANH, false),
        ("gelu_erf", false, RS_ACT_GELU_ERF, false),
        ("bias+residual", true, RS_ACT_NONE, true),
    ];
    for &(m, n, kk) in shapes {
        let a = rand_f16(&mut rng, m * kk, -1.0, 1.0);
        let b = rand_f16(&mut rng, n * kk, -1.0, 1.0);
        let bias = rand_f16(&mut rng, n, -1.0, 1.0);
        let res = rand_f16(&mut rng, m * n, -2.0, 2.0);
        let (da, db, dbias, dres) = (up(&rt, &a), up(&rt, &b), up(&rt, &bias), up(&rt, &res));
        let mut out = poisoned::<f16>(&rt, m * n);
        for (name, with_bias, act, with_res) in acts {
            let want = refs::gemm(&a, &b, with_bias.then_some(&bias[..]), with_res.then_some(&res[..]), m, n, kk, act);
            let p = GemmParams {
                a: da.ptr(),
                b: db.ptr(),
                c: out.ptr(),
                bias: if with_bias { dbias.ptr() } else { 0 },
                residual: if with_res { dres.ptr() } else { 0 },
                m: m as u32,
                n: n as u32,
                k: kk as u32,
                batch: 1,
                lda: kk as u32,
                ldb: kk as u32,
                ldc: n as u32,
                ldr: n as u32,
                act,
                ..Default::default()
            };
            let skinny = [(8, k::GEMM_SKINNY_8), (32, k::GEMM_SKINNY)].into_iter().filter(|&(max, _)| m <= max);
            let mut skinny8 = Vec::new();
            for kernel in [k::GEMM_LARGE, k::GEMM_SMALL].into_iter().chain(skinny.map(|(_, k)| k)) {
                let what = format!("{} {m}x{n}x{kk} {name}", kernel.id());
                let got = at_every_grid(&rt, &what, kernel, &p, &mut out, |_| {});
                assert_close(&what, &got, &want);
                if kernel.id() == k::GEMM_SKINNY_8.id() {
                    skinny8 = got;
                }
            }
            // The Hopper kernels (TMA + wgmma) on sm_90, at every M, and the streamed one.
            if rt.device().info().compute_capability == (9, 0) {
                // B packed too (whole chunks of K): the same bits as from row-major B.
                let packed = k::packed_chunk(kk as u32).is_some().then(|| pack_on_device(&rt, &p, &b, false));
                for kernel in k::HOPPER_PREFILL_GEMMS.into_iter().chain(k::HOPPER_SMALL_GEMMS) {
                    let tp = rightsize::runtime::gemm_tma_params(&p, kernel).unwrap();
                    let what = format!("{} {m}x{n}x{kk} {name}", kernel.id());
                    let got = at_every_grid(&rt, &what, kernel, &tp, &mut out, |_| {});
                    assert_close(&what, &got, &want);
                    // B read before the wait for the predecessor (b_stable), row-major and
                    // packed: the same bits.
                    for b_stable in [0, 1] {
                        if b_stable == 1 {
                            let tp =
                                rightsize::runtime::gemm_tma_params(&GemmParams { b_stable, ..p }, kernel).unwrap();
                            let what = format!("{what} b_stable");
                            let early = at_every_grid(&rt, &what, kernel, &tp, &mut out, |_| {});
                            assert_same_bits(&what, &early, &got);
                        }
                        if let Some(pb) = &packed {
                            let pp = GemmParams { b: pb.ptr(), b_layout: RS_B_TILES, b_stable, ..p };
                            let tp = rightsize::runtime::gemm_tma_params(&pp, kernel).unwrap();
                            let what = format!("{what} packed B b_stable {b_stable}");
                            let got_packed = at_every_grid(&rt, &what, kernel, &tp, &mut out, |_| {});
                            assert_same_bits(&format!("{what} against row-major B"), &got_packed, &got);
                        }
                    }
                }
                if m <= 8 {
                    check_streamed(&rt, &format!("{m}x{n}x{kk} {name}"), &p, &mut out, &want, &skinny8);
                    check_packed(&[&rt, &counted], &format!("{m}x{n}x{kk} {name}"), &p, &b, &mut out, &want, &skinny8);
                }
            }
            let chosen = match m {
                ..=8 => k::GEMM_SKINNY_8.id(),
                9..=32 => k::GEMM_SKINNY.id(),
                33..=64 => k::GEMM_SMALL.id(),
                _ => k::GEMM_LARGE.id(),
            };
            assert_eq!(gemm_kernel(m as u32).id(), chosen);
        }
    }
}

/// The streamed decode GEMM (sm_90, M ≤ 8), reading B before or after the wait for its
/// predecessor: close to the reference, and the same bits as the skinny kernel's output
/// `skinny` on the same params, whose operations it does in the same order. Where K is not a
/// whole number of its 32-column slices it refuses the params, saying so.
fn check_streamed(rt: &Runtime, what: &str, p: &GemmParams, out: &mut DeviceBuffer<f16>, want: &[f16], skinny: &[f16]) {
    assert_eq!(skinny.len(), want.len(), "{what}: the skinny kernel's output is given");
    if p.k % RS_GEMM_D_SLICE != 0 {
        let err = rightsize::runtime::gemm_tma_params(p, k::GEMM_STREAM_8).unwrap_err().to_string();
        assert!(err.contains("slices"), "{what}: {err}");
        return;
    }
    for b_stable in [0, 1] {
        let tp = rightsize::runtime::gemm_tma_params(&GemmParams { b_stable, ..*p }, k::GEMM_STREAM_8).unwrap();
        let what = format!("{} {what} b_stable {b_stable}", k::GEMM_STREAM_8.id());
        let got = at_every_grid(rt, &what, k::GEMM_STREAM_8, &tp, out, |_| {});
        assert_close(&what, &got, want);
        assert_same_bits(&format!("{what} against the skinny kernel"), &got, skinny);
    }
}

/// B of `p` (row-major, `b` on the host) packed by `pack_tiles_f16` at every grid, checked bit
/// for bit against the reference's layout; and unpacked again by it, checked against `b`.
fn pack_on_device(rt: &Runtime, p: &GemmParams, b: &[f16], pairs: bool) -> DeviceBuffer<f16> {
    let what = format!("pack_tiles_f16 {}x{} pairs={pairs}", p.n, p.k);
    let mut packed = poisoned::<f16>(rt, PackParams::packed_len(p.n, p.k) as usize);
    let pack = PackParams { src: p.b, dst: packed.ptr(), n: p.n, k: p.k, unpack: 0, pairs: u32::from(pairs) };
    let got = at_every_grid(rt, &what, k::PACK_TILES, &pack, &mut packed, |_| {});
    assert_same_bits(&what, &got, &refs::pack_tiles(b, p.n as usize, p.k as usize, pairs));
    let mut rows = poisoned::<f16>(rt, b.len());
    let unpack = PackParams { src: packed.ptr(), dst: rows.ptr(), unpack: 1, ..pack };
    let got = at_every_grid(rt, &format!("{what} unpacked"), k::PACK_TILES, &unpack, &mut rows, |_| {});
    assert_same_bits(&format!("{what} unpacked"), &got, b);
    packed
}

/// The decode GEMMs that stream their weights through a ring of stages (every packed entry, the
/// norm-fused ones with an RMS norm, and the streamed one) give the same bits launch after
/// launch and grid after grid: M = 5 or 8, N = 300 (19 tiles), launched many times at grids 1,
/// 7, 48, #SMs and 4×#SMs (a block many units, a few, one or none), reading B before and after
/// the wait for its predecessor, every output against the first launch's at grid 1, with the
/// output filled with 0xFF and 0x00 in turn before each launch (so an output left unwritten
/// differs too). These kernels have no counted build and order their units themselves, so one
/// unit order covers them. Prints each kind's tally and, where outputs differ, how many
/// launches and elements did and an example's bits. (Before their consumers fenced their
/// reads against the refills, `gemm_f16_packed_halves_m8` at one unit a block gave other bits
/// in 131–612 of 28,728 launches a run: docs/kernels-h200.md.)
#[test]
#[ignore = "needs a CUDA GPU"]
fn decode_gemm_rings_repeat_their_bits() {
    let rt = runtime();
    if rt.device().info().compute_capability != (9, 0) {
        return;
    }
    let mut rng = fresh_rng("decode gemm rings repeat");
    let mut differing = Vec::new();
    // (M, K, fused RMS norm, streamed kernel)
    let shapes = [
        (5u32, 8192u32, false, false),
        (5, 6144, false, false),
        (8, 4096, false, false),
        (8, 4096, true, false),
        (8, 3072, false, false),
        (8, 2048, false, false),
        (8, 2048, true, false),
        (8, 1024, false, false),
        (8, 768, false, false),
        (8, 14336, false, true),
        (5, 8192, false, true),
    ];
    for (m, kk, norm, streamed) in shapes {
        let n = 300u32;
        let a = rand_f16(&mut rng, (m * kk) as usize, -1.0, 1.0);
        let b = rand_f16(&mut rng, (n * kk) as usize, -1.0, 1.0);
        let gamma = rand_f16(&mut rng, kk as usize, 0.5, 1.5);
        let (da, db, dgamma) = (up(&rt, &a), up(&rt, &b), up(&rt, &gamma));
        let mut out = poisoned::<f16>(&rt, (m * n) as usize);
        let p = GemmParams {
            a: da.ptr(),
            b: db.ptr(),
            c: out.ptr(),
            m,
            n,
            k: kk,
            batch: 1,
            lda: kk,
            ldb: kk,
            ldc: n,
            ldr: n,
            act: RS_ACT_GELU_ERF,
            norm: if norm { RS_NORM_RMS } else { RS_NORM_NONE },
            norm_gamma: if norm { dgamma.ptr() } else { 0 },
            norm_eps: 1e-5,
            ..Default::default()
        };
        let packed = (!streamed).then(|| pack_on_device(&rt, &p, &b, false));
        for b_stable in [0, 1] {
            differing.extend(match &packed {
                Some(pb) => {
                    let kernel = k::packed_decode_kernel(kk, norm).expect("a packed decode GEMM takes K");
                    let params = GemmParams { b: pb.ptr(), b_stable, b_layout: RS_B_TILES, ..p };
                    let what = format!("{} {m}x{n}x{kk} norm {norm} b_stable {b_stable}", kernel.id());
                    repeated_bits(&rt, &what, kernel, &params, &mut out)
                }
                None => {
                    let kernel = k::GEMM_STREAM_8;
                    let params = rightsize::runtime::gemm_tma_params(&GemmParams { b_stable, ..p }, kernel).unwrap();
                    let what = format!("{} {m}x{n}x{kk} b_stable {b_stable}", kernel.id());
                    repeated_bits(&rt, &what, kernel, &params, &mut out)
                }
            });
        }
    }
    assert!(differing.is_empty(), "outputs that differ from the first launch's at grid 1: {differing:#?}");
}

/// `kernel` launched with `params` many times at each of several grids, every output against
/// the first launch's at grid 1 (the output filled with 0xFF and 0x00 in turn before each);
/// one line per grid whose outputs differed.
fn repeated_bits<P: Params>(
    rt: &Runtime,
    what: &str,
    kernel: Kernel<P>,
    params: &P,
    out: &mut DeviceBuffer<f16>,
) -> Vec<String> {
    const REPEATS: usize = 300;
    let sms = rt.device().info().sm_count;
    let mut first: Option<Vec<f16>> = None;
    let mut differing = Vec::new();
    for grid in [1, 7, 48, sms, 4 * sms] {
        let placement = Placement { grid: Grid::Fixed(grid), ..Placement::WHOLE };
        let (mut compared, mut launches, mut elements, mut example) = (0, 0, 0, None);
        for i in 0..REPEATS {
            out.fill_bytes(if i % 2 == 0 { 0xff } else { 0x00 }).unwrap();
            // SAFETY: every buffer in `params` is sized for the shape launched.
            unsafe { rt.launch(kernel, params, placement) }.unwrap();
            rt.synchronize().unwrap();
            let got = out.to_host().unwrap();
            let Some(f) = &first else {
                first = Some(got);
                continue;
            };
            compared += 1;
            let diff: Vec<usize> = (0..got.len()).filter(|&j| got[j].to_bits() != f[j].to_bits()).collect();
            if let Some(&j) = diff.first() {
                launches += 1;
                elements += diff.len();
                example.get_or_insert(format!(
                    "launch {i}: element {j} {:#06x}, first {:#06x}; {} elements",
                    got[j].to_bits(),
                    f[j].to_bits(),
                    diff.len()
                ));
            }
        }
        println!("{what} grid {grid}: {launches} of {compared} launches differ ({elements} elements)");
        if let Some(e) = example {
            println!("  {e}");
            differing.push(format!("{what} grid {grid}: {launches} launches, {e}"));
        }
    }
    differing
}

/// The decode GEMM on packed weights (sm_90, M ≤ 8), where it takes K: the weights packed by
/// `pack_tiles_f16` at every grid, bit for bit the reference's layout; then the GEMM, reading
/// them before or after the wait for its predecessor, close to the reference and the same bits
/// as the skinny kernel's output `skinny` on the same (row-major) params, launched by each of
/// `runtimes` (the default order, plain while no claimer is known, and the counted one: the
/// runtime picks the plain build or the build by warps by the units each block gets, in either
/// order). Elsewhere it refuses the params, saying why.
fn check_packed(
    runtimes: &[&Runtime],
    what: &str,
    p: &GemmParams,
    b: &[f16],
    out: &mut DeviceBuffer<f16>,
    want: &[f16],
    skinny: &[f16],
) {
    if !k::packs_decode_weights(p.k) {
        let err = p.check(k::GEMM_PACKED_8.id()).unwrap_err().reason;
        assert!(err.contains("registers"), "{what}: K = {}: {err}", p.k);
        return;
    }
    let kernel = k::packed_decode_kernel(p.k, p.norm != RS_NORM_NONE).expect("a packed decode GEMM takes K");
    if p.norm != RS_NORM_NONE && !k::fuses_norm(kernel.id()) {
        // Three chunks and the halves take no fused norm: the engine normalises first.
        let err = GemmParams { b_layout: RS_B_TILES, ..*p }.check(kernel.id()).unwrap_err().reason;
        assert!(err.contains("fuse"), "{what}: K = {}: {err}", p.k);
        return;
    }
    let packed = pack_on_device(runtimes[0], p, b, false);
    for b_stable in [0, 1] {
        let pp = GemmParams { b: packed.ptr(), b_stable, b_layout: RS_B_TILES, ..*p };
        for rt in runtimes {
            let order = if rt.counts_units() { "counted" } else { "plain" };
            let what = format!("{} {what} b_stable {b_stable} ({order} order)", kernel.id());
            let got = at_every_grid(rt, &what, kernel, &pp, out, |_| {});
            assert_close(&what, &got, want);
            assert_same_bits(&format!("{what} against the skinny kernel"), &got, skinny);
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn batched_gemm_matches_reference() {
    let rt = runtime();
    let mut rng = fresh_rng("batched gemm");
    // 70 rows for the tiled kernels, 20 for the skinny one.
    for (m, kernels) in
        [(70usize, vec![k::GEMM_LARGE, k::GEMM_SMALL]), (20, vec![k::GEMM_SKINNY]), (7, vec![k::GEMM_SKINNY_8])]
    {
        let (batch, n, kk) = (3usize, 90usize, 64usize);
        let a = rand_f16(&mut rng, batch * m * kk, -1.0, 1.0);
        let b = rand_f16(&mut rng, n * kk, -1.0, 1.0); // shared by every batch entry (stride 0)
        let (da, db) = (up(&rt, &a), up(&rt, &b));
        let ldc = 96; // padded rows
        let mut out = poisoned::<f16>(&rt, batch * m * ldc);
        let p = GemmParams {
            a: da.ptr(),
            b: db.ptr(),
            c: out.ptr(),
            stride_a: (m * kk) as u64,
            stride_b: 0,
            stride_c: (m * ldc) as u64,
            m: m as u32,
            n: n as u32,
            k: kk as u32,
            batch: batch as u32,
            lda: kk as u32,
            ldb: kk as u32,
            ldc: ldc as u32,
            ..Default::default()
        };
        for kernel in kernels {
            let got = at_every_grid(&rt, "batched gemm", kernel, &p, &mut out, |_| {});
            for z in 0..batch {
                let want = refs::gemm(&a[z * m * kk..(z + 1) * m * kk], &b, None, None, m, n, kk, RS_ACT_NONE);
                let rows: Vec<f16> = (0..m).flat_map(|i| got[(z * m + i) * ldc..][..n].to_vec()).collect();
                assert_close(&format!("{} batch {z}", kernel.id()), &rows, &want);
                // Padding columns are never written.
                assert!((0..m).all(|i| got[(z * m + i) * ldc + n..(z * m + i + 1) * ldc].iter().all(|v| v.is_nan())));
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn norms_match_reference() {
    let rt = runtime();
    let mut rng = fresh_rng("norms");
    // Rows of ≤ 4096 columns in multiples of 8 go a warp per row, the others a block per row.
    for (rows, cols) in [(1usize, 1usize), (257, 768), (9, 4096), (70, 2048), (33, 1001), (5, 4099), (3, 8192)] {
        let n = rows * cols;
        let x = rand_f16(&mut rng, n, -2.0, 2.0);
        let res = rand_f16(&mut rng, n, -2.0, 2.0);
        let gamma = rand_f16(&mut rng, cols, 0.5, 1.5);
        let beta = rand_f16(&mut rng, cols, -0.5, 0.5);
        let (dx, dgamma, dbeta) = (up(&rt, &x), up(&rt, &gamma), up(&rt, &beta));
        let mut dres = up(&rt, &res);
        let mut y = poisoned::<f16>(&rt, n);
        let eps = 1e-5;
        // LayerNorm with bias, no residual.
        let p = NormParams {
            x: dx.ptr(),
            gamma: dgamma.ptr(),
            beta: dbeta.ptr(),
            y: y.ptr(),
            rows: rows as u32,
            cols: cols as u32,
            eps,
            ..Default::default()
        };
        let got = at_every_grid(&rt, "layer_norm", k::LAYER_NORM, &p, &mut y, |_| {});
        assert_close(
            &format!("layer_norm {rows}x{cols}"),
            &got,
            &refs::layer_norm(&x, None, &gamma, Some(&beta), cols, eps).y,
        );
        // RMSNorm with the residual stream updated in place (sum_out aliases residual).
        let p = NormParams { residual: dres.ptr(), sum_out: dres.ptr(), beta: 0, ..p };
        let want = refs::rms_norm(&x, Some(&res), &gamma, cols, eps);
        let got = at_every_grid(&rt, "rms_norm", k::RMS_NORM, &p, &mut y, |_| dres.copy_from_host(&res).unwrap());
        assert_close(&format!("rms_norm+residual {rows}x{cols}"), &got, &want.y);
        assert_same_bits("rms_norm sum_out", &dres.to_host().unwrap(), want.sum.as_ref().unwrap());
        // LayerNorm with residual, sum to its own buffer.
        let mut sum = poisoned::<f16>(&rt, n);
        let p = NormParams { residual: dres.ptr(), sum_out: sum.ptr(), beta: dbeta.ptr(), ..p };
        dres.copy_from_host(&res).unwrap();
        let want = refs::layer_norm(&x, Some(&res), &gamma, Some(&beta), cols, eps);
        let got =
            at_every_grid(&rt, "layer_norm+residual", k::LAYER_NORM, &p, &mut y, |_| sum.fill_bytes(0xff).unwrap());
        assert_close(&format!("layer_norm+residual {rows}x{cols}"), &got, &want.y);
        assert_same_bits("layer_norm sum_out", &sum.to_host().unwrap(), want.sum.as_ref().unwrap());
    }
}

struct AttnCase {
    batch: usize,
    seq: usize,
    heads_q: usize,
    heads_kv: usize,
    head_dim: usize,
    causal: bool,
    lens: Option<Vec<u32>>,
    packed: bool,
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn prefill_attention_matches_reference() {
    let rt = runtime();
    let mut rng = fresh_rng("prefill attention");
    let case = |batch, seq, heads_q, heads_kv, head_dim, causal, lens: Option<Vec<u32>>, packed| AttnCase {
        batch,
        seq,
        heads_q,
        heads_kv,
        head_dim,
        causal,
        lens,
        packed,
    };
    let cases = [
        case(2, 130, 4, 4, 64, false, Some(vec![130, 77]), false),
        case(2, 100, 8, 2, 128, true, None, false),
        case(3, 64, 2, 1, 64, true, Some(vec![64, 10, 0]), false),
        case(1, 1, 2, 2, 128, false, None, false),
        case(2, 129, 12, 12, 64, false, None, false),
        case(2, 70, 4, 2, 64, true, Some(vec![70, 33]), true),
        case(1, 200, 4, 1, 128, false, Some(vec![150]), true),
        case(2, 333, 4, 2, 128, true, Some(vec![300, 333]), false),
        case(1, 520, 2, 2, 64, false, None, true),
    ];
    for c in cases {
        let s = AttentionShape {
            batch: c.batch,
            seq: c.seq,
            heads_q: c.heads_q,
            heads_kv: c.heads_kv,
            head_dim: c.head_dim,
        };
        let rows = c.batch * c.seq;
        let (qw, kw) = (c.heads_q * c.head_dim, c.heads_kv * c.head_dim);
        let q = rand_f16(&mut rng, rows * qw, -1.0, 1.0);
        let kx = rand_f16(&mut rng, rows * kw, -1.0, 1.0);
        let v = rand_f16(&mut rng, rows * kw, -1.0, 1.0);
        let scale = 1.0 / (c.head_dim as f32).sqrt();
        let want = refs::attention(&q, &kx, &v, s, c.lens.as_deref(), c.causal, scale);
        // Either three tensors, or one packed [q | k | v] row per token as a QKV GEMM writes it.
        let (buffers, qp, kp, vp, qs, ks) = if c.packed {
            let w = qw + 2 * kw;
            let mut packed = Vec::with_capacity(rows * w);
            for r in 0..rows {
                packed.extend_from_slice(&q[r * qw..(r + 1) * qw]);
                packed.extend_from_slice(&kx[r * kw..(r + 1) * kw]);
                packed.extend_from_slice(&v[r * kw..(r + 1) * kw]);
            }
            let d = up(&rt, &packed);
            let base = d.ptr();
            (vec![d], base, base + 2 * qw as u64, base + 2 * (qw + kw) as u64, w, w)
        } else {
            let (dq, dk, dv) = (up(&rt, &q), up(&rt, &kx), up(&rt, &v));
            let ptrs = (dq.ptr(), dk.ptr(), dv.ptr());
            (vec![dq, dk, dv], ptrs.0, ptrs.1, ptrs.2, qw, kw)
        };
        let lens = c.lens.as_ref().map(|l| up(&rt, l));
        let mut o = poisoned::<f16>(&rt, rows * qw);
        let p = AttentionParams {
            q: qp,
            k: kp,
            v: vp,
            o: o.ptr(),
            seq_lens: lens.as_ref().map_or(0, |l| l.ptr()),
            batch: c.batch as u32,
            seq: c.seq as u32,
            heads_q: c.heads_q as u32,
            heads_kv: c.heads_kv as u32,
            head_dim: c.head_dim as u32,
            q_stride: qs as u32,
            k_stride: ks as u32,
            v_stride: ks as u32,
            o_stride: qw as u32,
            causal: u32::from(c.causal),
            scale,
            _pad: 0,
        };
        // The mma.sync kernel everywhere; on sm_90 also the wgmma ones (64 and 128 queries a unit).
        let all = k::attention_prefill_kernels(c.head_dim as u32).unwrap();
        let mut kernels = vec![all.mma_sync];
        if rt.device().info().compute_capability == (9, 0) {
            kernels.extend(all.wgmma.unwrap());
        }
        for kernel in kernels {
            let what = format!(
                "{} b{} s{} h{}/{} d{} causal={} lens={:?} packed={}",
                kernel.id(),
                c.batch,
                c.seq,
                c.heads_q,
                c.heads_kv,
                c.head_dim,
                c.causal,
                c.lens,
                c.packed
            );
            let got = at_every_grid(&rt, &what, kernel, &p, &mut o, |_| {});
            assert_close(&what, &got, &want);
        }
        drop(buffers);
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn decode_attention_matches_reference() {
    let rt = runtime();
    let mut rng = fresh_rng("decode attention");
    // pos: cached tokens before the new one (300 in the fourth case and 600 in the fifth have
    // no slot left). The first, third and fifth cases have few (sequence, query head) pairs and
    // more than RS_DECODE_MIN_CHUNK positions, so their caches are split into chunks (2 of 192
    // positions, 4 of 256 and 3 of 192): sequences within the first chunk, over several, with a
    // last chunk of one row (the new token's: 192 in the fifth) and filling one exactly (191).
    for (heads_q, heads_kv, head_dim, max_len, pos) in [
        (8usize, 2usize, 128usize, 300usize, vec![0u32, 156, 299]),
        (12, 12, 64, 65, vec![4, 64]),
        (4, 1, 64, 1000, vec![998, 0, 3]),
        (8, 4, 32, 40, vec![39, 17, 300]),
        (4, 2, 64, 513, vec![600, 192, 191, 511]),
        // 40 units: more than the test partition's SMs hold at two blocks each, so there the
        // runtime launches attention_decode_d64's dense build (three an SM), at the other
        // placements the plain one: their outputs must be the same bits.
        (20, 4, 64, 100, vec![57, 99]),
    ] {
        let batch = pos.len();
        let (qw, kw) = (heads_q * head_dim, heads_kv * head_dim);
        // One [q | k | v] row per sequence, as the QKV GEMM leaves it.
        let qkv = rand_f16(&mut rng, batch * (qw + 2 * kw), -1.0, 1.0);
        let kc = rand_f16(&mut rng, batch * heads_kv * max_len * head_dim, -1.0, 1.0);
        let vc = rand_f16(&mut rng, batch * heads_kv * max_len * head_dim, -1.0, 1.0);
        let inv = refs::rope_inv_freq(head_dim, 500_000.0);
        let scale = 1.0 / (head_dim as f32).sqrt();
        let (dqkv, mut dk, mut dv, dpos, dinv) =
            (up(&rt, &qkv), up(&rt, &kc), up(&rt, &vc), up(&rt, &pos), up(&rt, &inv));
        let mut o = poisoned::<f16>(&rt, batch * qw);
        let (states, counts) =
            k::decode_attention_scratch(batch as u32, heads_q as u32, head_dim as u32, max_len as u32)
                .unwrap_or((1, 1));
        let (dstates, dcounts) = (poisoned::<f32>(&rt, states), up(&rt, &vec![0u32; counts]));
        let p = DecodeAttentionParams {
            q: dqkv.ptr(),
            k: dqkv.ptr() + 2 * qw as u64,
            v: dqkv.ptr() + 2 * (qw + kw) as u64,
            k_cache: dk.ptr(),
            v_cache: dv.ptr(),
            o: o.ptr(),
            pos: dpos.ptr(),
            inv_freq: 0,
            batch: batch as u32,
            heads_q: heads_q as u32,
            heads_kv: heads_kv as u32,
            head_dim: head_dim as u32,
            max_len: max_len as u32,
            qkv_stride: (qw + 2 * kw) as u32,
            o_stride: qw as u32,
            scale,
            partial: dstates.ptr(),
            arrived: dcounts.ptr(),
        };
        let kernel = k::attention_decode_kernel(&p).unwrap();
        let unsplit = k::attention_decode_unsplit(head_dim as u32).unwrap();
        if heads_q == 20 {
            // The case above runs in fewer rounds on the dense build than the plain one.
            let sms = rt.pool().get(PartitionId::green(0)).unwrap().sms();
            let blocks_per_sm = |l: &rightsize::runtime::LoadedKernel| l.blocks_per_sm;
            let plain = blocks_per_sm(rt.kernels().get(kernel.id()));
            let dense = rt.kernels().dense(kernel.id()).map(blocks_per_sm).expect("a dense build");
            let units = (batch * heads_q) as u32;
            assert!(
                units.div_ceil(dense * sms) < units.div_ceil(plain * sms),
                "{units} units: {plain} and {dense} an SM"
            );
        }
        // Without RoPE, then with it fused (the reference rotates q and k first).
        let mut unfused = None;
        for rope in [false, true] {
            let mut rows = qkv.clone();
            if rope {
                // Each row's q heads, then its k heads, at the sequence's position.
                for (b, row) in rows.chunks_mut(qw + 2 * kw).enumerate() {
                    let at = Some(&pos[b..=b]);
                    refs::rope(&mut row[..qw], heads_q, head_dim, &inv, at, 1);
                    refs::rope(&mut row[qw..qw + kw], heads_kv, head_dim, &inv, at, 1);
                }
            }
            let part = |from: usize, width: usize| -> Vec<f16> {
                rows.chunks(qw + 2 * kw).flat_map(|r| r[from..from + width].to_vec()).collect()
            };
            let (q, k_new, v_new) = (part(0, qw), part(qw, kw), part(qw + kw, kw));
            let (mut want_k, mut want_v) = (kc.clone(), vc.clone());
            let want = refs::decode_attention(
                &q,
                &k_new,
                &v_new,
                &mut want_k,
                &mut want_v,
                &pos,
                heads_q,
                heads_kv,
                head_dim,
                max_len,
                scale,
            );
            let p = DecodeAttentionParams { inv_freq: if rope { dinv.ptr() } else { 0 }, ..p };
            let what = format!("decode h{heads_q}/{heads_kv} d{head_dim} pos {pos:?} rope={rope}");
            // Every placement starts from the original caches.
            let got = at_every_grid(&rt, &what, kernel, &p, &mut o, |_| {
                dk.copy_from_host(&kc).unwrap();
                dv.copy_from_host(&vc).unwrap();
            });
            assert_close(&what, &got, &want);
            // A sequence within the first chunk of a split launch gets the unsplit kernel's bits.
            if kernel.id() != unsplit.id() {
                dk.copy_from_host(&kc).unwrap();
                dv.copy_from_host(&vc).unwrap();
                o.fill_bytes(0xff).unwrap();
                // SAFETY: the buffers are sized for this shape.
                unsafe { rt.launch(unsplit, &p, Placement::WHOLE) }.unwrap();
                rt.synchronize().unwrap();
                let whole = o.to_host().unwrap();
                let chunks = k::decode_chunks(batch as u32, heads_q as u32, max_len as u32) as usize;
                let rows = max_len.div_ceil(chunks).div_ceil(64) * 64;
                let mut within = 0;
                for (b, &at) in pos.iter().enumerate() {
                    if (at as usize + 1).min(max_len) <= rows {
                        let r = b * qw..(b + 1) * qw;
                        assert_same_bits(
                            &format!("{what} seq {b}: one chunk against unsplit"),
                            &got[r.clone()],
                            &whole[r],
                        );
                        within += 1;
                    }
                }
                assert!(within > 0, "{what}: no sequence within the first chunk");
            }
            let (got_k, got_v) = (dk.to_host().unwrap(), dv.to_host().unwrap());
            assert_same_bits(&format!("{what} v cache"), &got_v, &want_v);
            if !rope {
                assert_same_bits(&format!("{what} k cache"), &got_k, &want_k);
                unfused = Some(got);
                continue;
            }
            // The reference's sin and cos may round differently from sincosf: the rotated k is
            // close to it, and fused RoPE has the bits of rope_f16 followed by the attention.
            assert_close(&format!("{what} k cache"), &got_k, &want_k);
            let dq2 = up(&rt, &qkv);
            let stride = (qw + 2 * kw) as u32;
            let rp = RopeParams {
                q: dq2.ptr(),
                k: dq2.ptr() + 2 * qw as u64,
                inv_freq: dinv.ptr(),
                start: dpos.ptr(),
                batch: batch as u32,
                tokens: 1,
                heads_q: heads_q as u32,
                heads_kv: heads_kv as u32,
                head_dim: head_dim as u32,
                q_stride: stride,
                k_stride: stride,
                _pad: 0,
            };
            dk.copy_from_host(&kc).unwrap();
            dv.copy_from_host(&vc).unwrap();
            let two = DecodeAttentionParams {
                q: dq2.ptr(),
                k: dq2.ptr() + 2 * qw as u64,
                v: dq2.ptr() + 2 * (qw + kw) as u64,
                inv_freq: 0,
                ..p
            };
            // SAFETY: the buffers are sized for this shape.
            unsafe {
                rt.launch(k::ROPE, &rp, Placement::WHOLE).unwrap();
                rt.launch(kernel, &two, Placement::WHOLE).unwrap();
            }
            rt.synchronize().unwrap();
            assert_same_bits(&format!("{what} against rope_f16 then attention"), &got, &o.to_host().unwrap());
            assert_same_bits(&format!("{what} k cache against rope_f16"), &got_k, &dk.to_host().unwrap());
            assert!(unfused.as_ref().is_some_and(|u| u != &got), "{what}: RoPE changed nothing");
        }
        // Every split launch left the chunk counts as it found them (the unsplit kernel does not
        // touch them).
        assert!(dcounts.to_host().unwrap().iter().all(|&c| c == 0), "h{heads_q}/{heads_kv} d{head_dim}: counts left");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn skinny_gemm_with_fused_norm_matches_reference() {
    let rt = runtime();
    let counted = runtime().with_units(UnitOrder::Counted);
    let mut rng = fresh_rng("fused norm gemm");
    let eps = 1e-5;
    for (m, n, kk) in [
        (1usize, 300usize, 776usize),
        (8, 2304, 768),
        (5, 100, 2600),
        (3, 170, 2080),
        (20, 770, 1000),
        (32, 64, 4096),
        (7, 90, 3072),
        (8, 4100, 4096),
        // The packed kernel normalises A's slices again with each half of K.
        (6, 120, 8192),
        // The packed kernels' statistics from the slices held: K of one chunk (gpt2-medium's
        // LayerNorm) and of two, with fewer rows than 8 and all 8.
        (3, 100, 1024),
        (8, 200, 1024),
        (5, 96, 2048),
    ] {
        let a = rand_f16(&mut rng, m * kk, -2.0, 2.0);
        let b = rand_f16(&mut rng, n * kk, -1.0, 1.0);
        let bias = rand_f16(&mut rng, n, -1.0, 1.0);
        let gamma = rand_f16(&mut rng, kk, 0.5, 1.5);
        let beta = rand_f16(&mut rng, kk, -0.5, 0.5);
        let (da, db, dbias, dgamma, dbeta) =
            (up(&rt, &a), up(&rt, &b), up(&rt, &bias), up(&rt, &gamma), up(&rt, &beta));
        let mut out = poisoned::<f16>(&rt, m * n);
        for (name, norm, with_beta, act) in [
            ("layer_norm+beta, gelu", RS_NORM_LAYER, true, RS_ACT_GELU_TANH),
            ("layer_norm", RS_NORM_LAYER, false, RS_ACT_NONE),
            ("rms_norm", RS_NORM_RMS, false, RS_ACT_NONE),
        ] {
            let normed = if norm == RS_NORM_RMS {
                refs::rms_norm(&a, None, &gamma, kk, eps).y
            } else {
                refs::layer_norm(&a, None, &gamma, with_beta.then_some(&beta[..]), kk, eps).y
            };
            let want = refs::gemm(&normed, &b, Some(&bias), None, m, n, kk, act);
            let p = GemmParams {
                a: da.ptr(),
                b: db.ptr(),
                c: out.ptr(),
                bias: dbias.ptr(),
                m: m as u32,
                n: n as u32,
                k: kk as u32,
                batch: 1,
                lda: kk as u32,
                ldb: kk as u32,
                ldc: n as u32,
                act,
                norm,
                norm_gamma: dgamma.ptr(),
                norm_beta: if with_beta { dbeta.ptr() } else { 0 },
                norm_eps: eps,
                ..Default::default()
            };
            let kernels = if m <= 8 { vec![k::GEMM_SKINNY_8, k::GEMM_SKINNY] } else { vec![k::GEMM_SKINNY] };
            let mut skinny8 = Vec::new();
            for kernel in kernels {
                let what = format!("{} {m}x{n}x{kk} {name}", kernel.id());
                let got = at_every_grid(&rt, &what, kernel, &p, &mut out, |_| {});
                assert_close(&what, &got, &want);
                if kernel.id() == k::GEMM_SKINNY_8.id() {
                    skinny8 = got;
                }
            }
            if m <= 8 && rt.device().info().compute_capability == (9, 0) {
                check_streamed(&rt, &format!("{m}x{n}x{kk} {name}"), &p, &mut out, &want, &skinny8);
                check_packed(&[&rt, &counted], &format!("{m}x{n}x{kk} {name}"), &p, &b, &mut out, &want, &skinny8);
            }
            // The norm kernel, then the GEMM on its output: the same bits as the fused GEMM,
            // where one warp of the norm kernel takes a row (rownorm.cuh's statistics, in the
            // same order and roundings).
            if m <= 8 && kk <= RS_NORM_WARP_COLS as usize {
                let mut normed_dev = poisoned::<f16>(&rt, m * kk);
                let np = NormParams {
                    x: da.ptr(),
                    gamma: dgamma.ptr(),
                    beta: if with_beta { dbeta.ptr() } else { 0 },
                    y: normed_dev.ptr(),
                    rows: m as u32,
                    cols: kk as u32,
                    eps,
                    ..Default::default()
                };
                let nk = if norm == RS_NORM_RMS { k::RMS_NORM } else { k::LAYER_NORM };
                let what = format!("{} then the GEMM {m}x{n}x{kk} {name}", nk.id());
                at_every_grid(&rt, &what, nk, &np, &mut normed_dev, |_| {});
                let plain = GemmParams {
                    a: normed_dev.ptr(),
                    norm: RS_NORM_NONE,
                    norm_gamma: 0,
                    norm_beta: 0,
                    norm_eps: 0.0,
                    ..p
                };
                let got = at_every_grid(&rt, &what, k::GEMM_SKINNY_8, &plain, &mut out, |_| {});
                assert_same_bits(&format!("{what} against the fused GEMM"), &got, &skinny8);
            }
            // A is left as it was.
            assert_same_bits("fused norm input", &da.to_host().unwrap(), &a);
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn kv_append_matches_reference() {
    let rt = runtime();
    let mut rng = fresh_rng("kv append");
    let (tokens, heads_kv, head_dim, max_len) = (5usize, 2usize, 64usize, 16usize);
    let start = vec![0u32, 3, 14];
    let batch = start.len();
    let kw = heads_kv * head_dim;
    // k and v inside a wider row, as a fused QKV GEMM leaves them (stride 3·kw).
    let rows = rand_f16(&mut rng, batch * tokens * 3 * kw, -1.0, 1.0);
    let k_rows: Vec<f16> = rows.chunks(3 * kw).flat_map(|r| r[kw..2 * kw].to_vec()).collect();
    let v_rows: Vec<f16> = rows.chunks(3 * kw).flat_map(|r| r[2 * kw..].to_vec()).collect();
    let cache_len = batch * heads_kv * max_len * head_dim;
    let mut want_k = vec![f16::from_bits(0xffff); cache_len];
    let mut want_v = want_k.clone();
    refs::kv_append(&mut want_k, &mut want_v, &k_rows, &v_rows, Some(&start), tokens, heads_kv, head_dim, max_len);
    let (drows, dstart) = (up(&rt, &rows), up(&rt, &start));
    let (mut kc, mut vc) = (poisoned::<f16>(&rt, cache_len), poisoned::<f16>(&rt, cache_len));
    let p = KvAppendParams {
        k: drows.ptr() + 2 * kw as u64,
        v: drows.ptr() + 4 * kw as u64,
        k_cache: kc.ptr(),
        v_cache: vc.ptr(),
        start: dstart.ptr(),
        batch: batch as u32,
        tokens: tokens as u32,
        heads_kv: heads_kv as u32,
        head_dim: head_dim as u32,
        max_len: max_len as u32,
        k_stride: 3 * kw as u32,
        v_stride: 3 * kw as u32,
        _pad: 0,
    };
    let got = at_every_grid(&rt, "kv_append", k::KV_APPEND, &p, &mut kc, |_| vc.fill_bytes(0xff).unwrap());
    assert_same_bits("kv_append k", &got, &want_k);
    assert_same_bits("kv_append v", &vc.to_host().unwrap(), &want_v);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn rope_matches_reference() {
    let rt = runtime();
    let mut rng = fresh_rng("rope");
    for (head_dim, theta) in [(64usize, 10_000.0), (128, 500_000.0)] {
        let (batch, tokens, heads_q, heads_kv) = (2usize, 9usize, 4usize, 2usize);
        let start = vec![0u32, 1000];
        let q = rand_f16(&mut rng, batch * tokens * heads_q * head_dim, -2.0, 2.0);
        let kx = rand_f16(&mut rng, batch * tokens * heads_kv * head_dim, -2.0, 2.0);
        let inv = refs::rope_inv_freq(head_dim, theta);
        let (mut want_q, mut want_k) = (q.clone(), kx.clone());
        refs::rope(&mut want_q, heads_q, head_dim, &inv, Some(&start), tokens);
        refs::rope(&mut want_k, heads_kv, head_dim, &inv, Some(&start), tokens);
        let (mut dq, mut dk, dinv, dstart) = (up(&rt, &q), up(&rt, &kx), up(&rt, &inv), up(&rt, &start));
        let p = RopeParams {
            q: dq.ptr(),
            k: dk.ptr(),
            inv_freq: dinv.ptr(),
            start: dstart.ptr(),
            batch: batch as u32,
            tokens: tokens as u32,
            heads_q: heads_q as u32,
            heads_kv: heads_kv as u32,
            head_dim: head_dim as u32,
            q_stride: (heads_q * head_dim) as u32,
            k_stride: (heads_kv * head_dim) as u32,
            _pad: 0,
        };
        // In place: every launch starts from the original q and k.
        let got_q = at_every_grid(&rt, "rope", k::ROPE, &p, &mut dq, |dq| {
            dq.copy_from_host(&q).unwrap();
            dk.copy_from_host(&kx).unwrap();
        });
        assert_close(&format!("rope q d{head_dim}"), &got_q, &want_q);
        assert_close(&format!("rope k d{head_dim}"), &dk.to_host().unwrap(), &want_k);
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn embedding_matches_reference() {
    let rt = runtime();
    let mut rng = fresh_rng("embedding");
    let (vocab, hidden, max_pos, batch, tokens) = (1000usize, 768usize, 512usize, 2usize, 7usize);
    let tok = rand_f16(&mut rng, vocab * hidden, -1.0, 1.0);
    let pos = rand_f16(&mut rng, max_pos * hidden, -1.0, 1.0);
    let typ = rand_f16(&mut rng, hidden, -1.0, 1.0);
    let mut ids: Vec<u32> = (0..batch * tokens).map(|_| rng.random_range(0..vocab as u32)).collect();
    ids[tokens + 2] = vocab as u32 + 3; // out of range: a NaN row, not an out-of-bounds read
    let start = vec![0u32, 5];
    let want = refs::embedding(&ids, &tok, Some(&pos), Some(&typ), Some(&start), tokens, hidden);
    let (dids, dtok, dpos, dtyp, dstart) =
        (up(&rt, &ids), up(&rt, &tok), up(&rt, &pos), up(&rt, &typ), up(&rt, &start));
    let mut out = poisoned::<f16>(&rt, batch * tokens * hidden);
    let p = EmbeddingParams {
        ids: dids.ptr(),
        tok: dtok.ptr(),
        pos: dpos.ptr(),
        type_: dtyp.ptr(),
        start: dstart.ptr(),
        out: out.ptr(),
        batch: batch as u32,
        tokens: tokens as u32,
        hidden: hidden as u32,
        vocab: vocab as u32,
        max_pos: max_pos as u32,
        tok_packed: 0,
    };
    // Outputs filled with 1.0586 (0x3c3c, not a NaN) before each launch, so a bad row's NaNs
    // are the kernel's.
    let not_nan = |o: &mut DeviceBuffer<f16>| o.fill_bytes(0x3c).unwrap();
    let got = at_every_grid(&rt, "embedding", k::EMBEDDING, &p, &mut out, not_nan);
    assert_same_bits("embedding", &got, &want);
    assert!(got[(tokens + 2) * hidden..(tokens + 3) * hidden].iter().all(|v| v.is_nan()));
    // The kernel reads 16-byte pieces where the width and every pointer allow, a column at a
    // time otherwise: a width of no whole pieces, and an output one element off its alignment.
    let narrow = 100usize;
    let want_narrow = refs::embedding(
        &ids,
        &tok[..vocab * narrow],
        Some(&pos[..max_pos * narrow]),
        Some(&typ[..narrow]),
        Some(&start),
        tokens,
        narrow,
    );
    let mut out_narrow = poisoned::<f16>(&rt, batch * tokens * narrow);
    let pn = EmbeddingParams { out: out_narrow.ptr(), hidden: narrow as u32, ..p };
    let got = at_every_grid(&rt, "embedding, 100 columns", k::EMBEDDING, &pn, &mut out_narrow, not_nan);
    assert_same_bits("embedding, 100 columns", &got, &want_narrow);
    assert!(got[(tokens + 2) * narrow..(tokens + 3) * narrow].iter().all(|v| v.is_nan()));
    let mut out_off = poisoned::<f16>(&rt, batch * tokens * hidden + 1);
    let po = EmbeddingParams { out: out_off.ptr() + 2, ..p };
    let got = at_every_grid(&rt, "embedding, unaligned output", k::EMBEDDING, &po, &mut out_off, not_nan);
    assert_eq!(got[0].to_bits(), 0x3c3c, "the element before the output is left alone");
    assert_same_bits("embedding, unaligned output", &got[1..], &want);
    // A row of more pieces than a pass of the block's threads takes (4,104 columns: 513 pieces
    // of 8, four a thread in flight on 128 threads): every piece of each pass, and the second.
    let wide = 4104usize;
    let (tok_w, pos_w, typ_w) = (
        rand_f16(&mut rng, vocab * wide, -1.0, 1.0),
        rand_f16(&mut rng, 64 * wide, -1.0, 1.0),
        rand_f16(&mut rng, wide, -1.0, 1.0),
    );
    let want_wide = refs::embedding(&ids, &tok_w, Some(&pos_w), Some(&typ_w), Some(&start), tokens, wide);
    let (dtok_w, dpos_w, dtyp_w) = (up(&rt, &tok_w), up(&rt, &pos_w), up(&rt, &typ_w));
    let mut out_wide = poisoned::<f16>(&rt, batch * tokens * wide);
    let pw = EmbeddingParams {
        tok: dtok_w.ptr(),
        pos: dpos_w.ptr(),
        type_: dtyp_w.ptr(),
        out: out_wide.ptr(),
        hidden: wide as u32,
        max_pos: 64,
        ..p
    };
    let got = at_every_grid(&rt, "embedding, 4,104 columns", k::EMBEDDING, &pw, &mut out_wide, not_nan);
    assert_same_bits("embedding, 4,104 columns", &got, &want_wide);
    assert!(got[(tokens + 2) * wide..(tokens + 3) * wide].iter().all(|v| v.is_nan()));
    // Token rows packed as a tied LM head's weights (chunks of 1,024 columns, or one of 768; the
    // reference's layout): the rows' bits, and NaN for an id past vocab (the packing pads rows
    // to 16).
    for hidden in [2048usize, 768] {
        let tok = rand_f16(&mut rng, vocab * hidden, -1.0, 1.0);
        let packed = up(&rt, &refs::pack_tiles(&tok, vocab, hidden, false));
        let want = refs::embedding(&ids, &tok, None, None, None, tokens, hidden);
        let mut out = poisoned::<f16>(&rt, batch * tokens * hidden);
        let pp = EmbeddingParams {
            tok: packed.ptr(),
            pos: 0,
            type_: 0,
            start: 0,
            out: out.ptr(),
            hidden: hidden as u32,
            max_pos: 0,
            tok_packed: 1,
            ..p
        };
        let what = format!("embedding of packed rows, hidden {hidden}");
        let got = at_every_grid(&rt, &what, k::EMBEDDING, &pp, &mut out, not_nan);
        assert_same_bits(&what, &got, &want);
        assert!(got[(tokens + 2) * hidden..(tokens + 3) * hidden].iter().all(|v| v.is_nan()));
        assert!(pp.check(k::EMBEDDING.id()).is_ok());
        assert!(EmbeddingParams { hidden: 800, ..pp }.check(k::EMBEDDING.id()).unwrap_err().reason.contains("packed"));
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn activations_match_reference() {
    let rt = runtime();
    let mut rng = fresh_rng("activations");
    let n = 10_007;
    let x = rand_f16(&mut rng, n, -5.0, 5.0);
    let dx = up(&rt, &x);
    let mut y = poisoned::<f16>(&rt, n);
    for act in [RS_ACT_GELU_TANH, RS_ACT_GELU_ERF] {
        let p = GeluParams { x: dx.ptr(), y: y.ptr(), n: n as u64, act, _pad: 0 };
        let got = at_every_grid(&rt, "gelu", k::GELU, &p, &mut y, |_| {});
        assert_close(&format!("gelu act {act}"), &got, &refs::gelu(&x, act));
    }
    // SwiGLU reading gate and up from one [rows, 2·cols] buffer, as a fused GEMM writes them.
    let (rows, cols) = (33usize, 1000usize);
    let gu = rand_f16(&mut rng, rows * 2 * cols, -4.0, 4.0);
    let gate: Vec<f16> = gu.chunks(2 * cols).flat_map(|r| r[..cols].to_vec()).collect();
    let upv: Vec<f16> = gu.chunks(2 * cols).flat_map(|r| r[cols..].to_vec()).collect();
    let dgu = up(&rt, &gu);
    let mut out = poisoned::<f16>(&rt, rows * cols);
    let p = SwigluParams {
        gate: dgu.ptr(),
        up: dgu.ptr() + 2 * cols as u64,
        out: out.ptr(),
        rows: rows as u32,
        cols: cols as u32,
        gate_stride: 2 * cols as u32,
        up_stride: 2 * cols as u32,
        out_stride: cols as u32,
        paired: 0,
    };
    let got = at_every_grid(&rt, "swiglu", k::SWIGLU, &p, &mut out, |_| {});
    assert_close("swiglu", &got, &refs::swiglu(&gate, &upv));
    // Paired: the same values with gate and up interleaved by 8 columns, the same bits.
    let paired: Vec<f16> = gu
        .chunks(2 * cols)
        .flat_map(|r| {
            (0..cols / 8).flat_map(move |g| r[8 * g..8 * g + 8].iter().chain(&r[cols + 8 * g..cols + 8 * g + 8]))
        })
        .copied()
        .collect();
    let dpaired = up(&rt, &paired);
    let pp = SwigluParams { gate: dpaired.ptr(), up: dpaired.ptr() + 16, paired: 1, ..p };
    let got_paired = at_every_grid(&rt, "swiglu paired", k::SWIGLU, &pp, &mut out, |_| {});
    assert_same_bits("swiglu paired", &got_paired, &got);
}

/// Llama's MLP up on weights packed as gate/up pairs (sm_90): the packed decode GEMM's SwiGLU
/// epilogue (M ≤ 8), and a wgmma GEMM followed by swiglu_f16 reading paired columns (prefill),
/// give the bits of the row-major GEMM followed by swiglu_f16; all close to the reference.
#[test]
#[ignore = "needs a CUDA GPU"]
fn gate_up_pairs_give_the_bits_of_a_gemm_then_swiglu() {
    let rt = runtime();
    if rt.device().info().compute_capability != (9, 0) {
        return;
    }
    let mut rng = fresh_rng("gate/up pairs");
    // With the decode GEMM's fused RMSNorm, as the engine runs it (M ≤ 8), and without.
    // K of one chunk (1,024; 768) on the short kernel, the rest on the long-K entries (packed_decode_kernel).
    let shapes = [
        (8usize, 1000usize, 2048usize, true),
        (3, 2048, 4096, true),
        (1, 504, 3072, false),
        (4, 256, 8192, false),
        (8, 512, 1024, true),
        (2, 264, 768, false),
    ];
    for (m, ffn, kk, rms) in shapes.into_iter().chain([(130, 1000, 2048, false)]) {
        let n = 2 * ffn;
        let a = rand_f16(&mut rng, m * kk, -1.0, 1.0);
        let b = rand_f16(&mut rng, n * kk, -0.1, 0.1);
        let gamma = rand_f16(&mut rng, kk, 0.5, 1.5);
        let (da, db, dgamma) = (up(&rt, &a), up(&rt, &b), up(&rt, &gamma));
        let mut gu = poisoned::<f16>(&rt, m * n);
        let mut out = poisoned::<f16>(&rt, m * ffn);
        let out_ptr = out.ptr();
        let sw = |gate_up: u64, paired: bool| SwigluParams {
            gate: gate_up,
            up: gate_up + 2 * if paired { 8 } else { ffn as u64 },
            out: out_ptr,
            rows: m as u32,
            cols: ffn as u32,
            gate_stride: n as u32,
            up_stride: n as u32,
            out_stride: ffn as u32,
            paired: u32::from(paired),
        };
        let what = format!("gate/up {m}x{n}x{kk} rms_norm={rms}");
        let normed = if rms { refs::rms_norm(&a, None, &gamma, kk, 1e-5).y } else { a.clone() };
        let full = refs::gemm(&normed, &b, None, None, m, n, kk, RS_ACT_NONE);
        let half = |from: usize| -> Vec<f16> { full.chunks(n).flat_map(|r| r[from..from + ffn].to_vec()).collect() };
        let want = refs::swiglu(&half(0), &half(ffn));
        // Row-major: the library's GEMM for the shape, then swiglu_f16.
        let p = GemmParams {
            norm: if rms { RS_NORM_RMS } else { RS_NORM_NONE },
            norm_gamma: if rms { dgamma.ptr() } else { 0 },
            norm_eps: 1e-5,
            ..GemmParams::dense(da.ptr(), db.ptr(), gu.ptr(), m as u32, n as u32, kk as u32)
        };
        let wgmma = k::gemm_wgmma_kernel(m as u32, n as u32, kk as u32, rt.device().info().sm_count);
        if m <= 8 {
            at_every_grid(&rt, &what, k::GEMM_SKINNY_8, &p, &mut gu, |_| {});
        } else {
            let tp = rightsize::runtime::gemm_tma_params(&p, wgmma).unwrap();
            at_every_grid(&rt, &what, wgmma, &tp, &mut gu, |_| {});
        }
        let plain = at_every_grid(&rt, &format!("{what} swiglu"), k::SWIGLU, &sw(gu.ptr(), false), &mut out, |_| {});
        assert_close(&what, &plain, &want);
        // Packed as pairs.
        let packed = pack_on_device(&rt, &p, &b, true);
        let pp = GemmParams { b: packed.ptr(), b_layout: RS_B_TILES, ..p };
        let got = if m <= 8 {
            let fused = GemmParams { c: out_ptr, ldc: ffn as u32, act: RS_ACT_SWIGLU, ..pp };
            let kernel = k::packed_decode_kernel(kk as u32, rms).expect("a packed decode GEMM takes K");
            at_every_grid(&rt, &format!("{what} packed, fused swiglu"), kernel, &fused, &mut out, |_| {})
        } else {
            let tp = rightsize::runtime::gemm_tma_params(&pp, wgmma).unwrap();
            at_every_grid(&rt, &format!("{what} packed"), wgmma, &tp, &mut gu, |_| {});
            at_every_grid(&rt, &format!("{what} paired swiglu"), k::SWIGLU, &sw(gu.ptr(), true), &mut out, |_| {})
        };
        assert_same_bits(&format!("{what} packed as pairs against row-major"), &got, &plain);
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn argmax_matches_reference() {
    let rt = runtime();
    let mut rng = fresh_rng("argmax");
    // Vocabularies in 13, 32 and 8 parts; a row of exactly one part and a short one.
    let part = RS_ARGMAX_PART_COLS as usize;
    for (rows, cols) in [(8usize, 50_257usize), (8, 128_256), (1, 128_256), (3, 32_000), (8, part), (8, 3)] {
        let mut l = rand_f16(&mut rng, rows * cols, -10.0, 10.0);
        // Row 0: a tie for the maximum in different parts; of several rows, the last only NaN
        // and row 1 NaNs among the values.
        let hi = f16::from_f32(20.0);
        l[cols - 1] = hi;
        l[cols / 2] = hi;
        if rows > 1 {
            for v in &mut l[(rows - 1) * cols..] {
                *v = f16::NAN;
            }
        }
        if rows > 2 {
            l[cols + 1] = f16::NAN;
        }
        let want = refs::argmax(&l, cols);
        let dl = up(&rt, &l);
        let mut out = poisoned::<u32>(&rt, rows);
        let (partial_words, arrived_words) = argmax_scratch(rows as u32, cols as u32).unwrap_or((1, 1));
        let partial = DeviceBuffer::<u32>::filled(rt.device(), partial_words, 0).unwrap();
        let arrived = DeviceBuffer::<u32>::filled(rt.device(), arrived_words, 0).unwrap();
        let p = ArgmaxParams {
            logits: dl.ptr(),
            out: out.ptr(),
            partial: partial.ptr(),
            arrived: arrived.ptr(),
            rows: rows as u32,
            cols: cols as u32,
            stride: cols as u32,
            ..Default::default()
        };
        let got = at_every_grid(&rt, "argmax", k::ARGMAX, &p, &mut out, |_| {});
        assert_eq!(got, want, "argmax of {rows} rows over {cols}");
        assert_eq!(got[0], (cols / 2) as u32, "the tie goes to the smaller index");
        if rows > 1 {
            assert_eq!(got[rows - 1], 0, "a row of only NaN");
        }
        // The launches leave the counts at zero (each launch's merges read them from zero).
        assert!(arrived.to_host().unwrap().iter().all(|&c| c == 0), "counts left after the launches");
        // Positions advanced in the same launch (a decode step's): each of more words than
        // rows moved on once, at every placement, the indices as before.
        let n = rows + 5;
        let start: Vec<u32> = (0..n as u32).map(|i| 100 * i).collect();
        let pos = up(&rt, &start);
        let pa = ArgmaxParams { advance: pos.ptr(), advance_n: n as u64, delta: 3, ..p };
        for (i, placement) in placements(&rt).into_iter().enumerate() {
            out.fill_bytes(0xff).unwrap();
            // SAFETY: as above; `pos` holds advance_n words.
            unsafe { rt.launch(k::ARGMAX, &pa, placement) }.unwrap();
            rt.synchronize().unwrap();
            assert_eq!(out.to_host().unwrap(), want, "argmax with positions advanced, {placement:?}");
            let moved: Vec<u32> = start.iter().map(|&s| s + 3 * (i as u32 + 1)).collect();
            assert_eq!(pos.to_host().unwrap(), moved, "{rows} rows advance {n} positions once a launch, {placement:?}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cublaslt_baseline_matches_reference() {
    // The bench's cuBLAS numbers mean something only if the wrapper computes the same GEMM.
    let rt = runtime();
    let blas = rightsize::runtime::BlasLt::new(rt.device()).unwrap();
    let mut rng = fresh_rng("cublaslt");
    let (m, n, kk) = (130usize, 260usize, 776usize);
    let a = rand_f16(&mut rng, m * kk, -1.0, 1.0);
    let b = rand_f16(&mut rng, n * kk, -1.0, 1.0);
    let want = refs::gemm(&a, &b, None, None, m, n, kk, RS_ACT_NONE);
    let (da, db) = (up(&rt, &a), up(&rt, &b));
    let green = rt.pool().get(PartitionId::green(0)).unwrap();
    for (partition, sms) in [(PartitionId::WHOLE, None), (PartitionId::green(0), Some(green.sms()))] {
        let c = poisoned::<f16>(&rt, m * n);
        let plan = blas.plan(rightsize::runtime::BlasShape::plain(m as u32, n as u32, kk as u32), sms).unwrap();
        let stream = rt.pool().get(partition).unwrap().stream(0).unwrap();
        // SAFETY: buffers of m·k, n·k and m·n halves.
        unsafe { blas.run(&plan, da.ptr(), db.ptr(), 0, 0, c.ptr(), stream) }.unwrap();
        rt.synchronize().unwrap();
        assert_close(&format!("cublasLt on {partition:?}"), &c.to_host().unwrap(), &want);
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn decoder_layers_match_reference() {
    let rt = runtime();
    let mut rng = fresh_rng("decoder layers");
    let eps = 1e-5;
    // (layers, hidden, ffn, heads, heads_kv, max_len, pos): GPT-2's shape, and a narrow GQA
    // one whose tiles are not multiples of 16 columns (48-column MLP-down tiles) with a
    // position that has no cache slot left.
    for (n_layers, hidden, ffn, heads, heads_kv, max_len, pos) in [
        (4usize, 768usize, 3072usize, 12usize, 12usize, 160usize, vec![0u32, 5, 159, 137, 1, 138, 120, 90]),
        (3, 192, 512, 3, 1, 70, vec![69, 0, 70]),
        (1, 128, 256, 2, 2, 8, vec![3]),
    ] {
        let batch = pos.len();
        let qkv_n = (heads + 2 * heads_kv) * 64;
        let cache_len = batch * heads_kv * max_len * 64;
        let w = |rng: &mut StdRng, n: usize, k: usize| {
            rand_f16(rng, n * k, -1.5 / (k as f32).sqrt(), 1.5 / (k as f32).sqrt())
        };
        let v = |rng: &mut StdRng, n: usize, lo: f32, hi: f32| rand_f16(rng, n, lo, hi);
        // Per layer: norm1 γ β, qkv W b, out W b, norm2 γ β, up W b, down W b, k and v caches.
        let host: Vec<Vec<Vec<f16>>> = (0..n_layers)
            .map(|_| {
                vec![
                    v(&mut rng, hidden, 0.8, 1.2),
                    v(&mut rng, hidden, -0.2, 0.2),
                    w(&mut rng, qkv_n, hidden),
                    v(&mut rng, qkv_n, -0.2, 0.2),
                    w(&mut rng, hidden, hidden),
                    v(&mut rng, hidden, -0.2, 0.2),
                    v(&mut rng, hidden, 0.8, 1.2),
                    v(&mut rng, hidden, -0.2, 0.2),
                    w(&mut rng, ffn, hidden),
                    v(&mut rng, ffn, -0.2, 0.2),
                    w(&mut rng, hidden, ffn),
                    v(&mut rng, hidden, -0.2, 0.2),
                    v(&mut rng, cache_len, -1.0, 1.0),
                    v(&mut rng, cache_len, -1.0, 1.0),
                ]
            })
            .collect();
        let x0 = rand_f16(&mut rng, batch * hidden, -1.0, 1.0);

        let mut want = x0.clone();
        let mut caches: Vec<(Vec<f16>, Vec<f16>)> = host.iter().map(|l| (l[12].clone(), l[13].clone())).collect();
        let mut layers: Vec<refs::DecoderLayer> = host
            .iter()
            .zip(caches.iter_mut())
            .map(|(l, (kc, vc))| refs::DecoderLayer {
                norm1: (&l[0], &l[1]),
                qkv: (&l[2], &l[3]),
                out: (&l[4], &l[5]),
                norm2: (&l[6], &l[7]),
                up: (&l[8], &l[9]),
                down: (&l[10], &l[11]),
                cache: (kc, vc),
            })
            .collect();
        refs::decoder_layers(&mut want, &mut layers, &pos, hidden, ffn, heads, heads_kv, max_len, eps);

        let mut dev: Vec<Vec<DeviceBuffer<f16>>> =
            host.iter().map(|l| l.iter().map(|b| up(&rt, b)).collect()).collect();
        let table: Vec<u64> = dev.iter().flat_map(|l| l.iter().map(DeviceBuffer::ptr).collect::<Vec<_>>()).collect();
        let (dtable, dpos) = (up(&rt, &table), up(&rt, &pos));
        let sync = DeviceBuffer::<u32>::filled(rt.device(), 2 + RS_DEC_PHASES as usize * n_layers, 0).unwrap();
        let scratch = |n: usize| poisoned::<f16>(&rt, n);
        let (qkv, attn, mlp) = (scratch(batch * qkv_n), scratch(batch * hidden), scratch(batch * ffn));
        let mut x = poisoned::<f16>(&rt, batch * hidden);
        let p = DecoderParams {
            layers: dtable.ptr(),
            x: x.ptr(),
            qkv: qkv.ptr(),
            attn: attn.ptr(),
            ffn: mlp.ptr(),
            pos: dpos.ptr(),
            sync: sync.ptr(),
            trace: 0,
            n_layers: n_layers as u32,
            batch: batch as u32,
            hidden: hidden as u32,
            ffn_dim: ffn as u32,
            heads: heads as u32,
            heads_kv: heads_kv as u32,
            max_len: max_len as u32,
            eps,
            scale: 0.125,
            _pad: 0,
        };
        let what = format!("decoder {n_layers}×h{hidden} ffn{ffn} heads {heads}/{heads_kv} pos {pos:?}");
        let got = at_every_grid(&rt, &what, k::DECODER_LAYERS_D64, &p, &mut x, |x| {
            x.copy_from_host(&x0).unwrap();
            for (l, h) in dev.iter_mut().zip(&host) {
                l[12].copy_from_host(&h[12]).unwrap();
                l[13].copy_from_host(&h[13]).unwrap();
            }
        });
        assert_close(&what, &got, &want);
        // The appended k and v come from the GPU's QKV GEMM, so they are close, not equal.
        for (i, (l, (kc, vc))) in dev.iter().zip(&caches).enumerate() {
            assert_close(&format!("{what} layer {i} k cache"), &l[12].to_host().unwrap(), kc);
            assert_close(&format!("{what} layer {i} v cache"), &l[13].to_host().unwrap(), vc);
        }
        assert!(sync.to_host().unwrap().iter().all(|&c| c == 0), "{what}: counters not left at zero");
        print_decoder_trace(&rt, &what, &p);
    }
}

/// Where a decoder launch's time goes: the kernel once more on the whole device with its
/// trace, then per (layer, phase) its units, when the phase's last unit had its inputs and
/// when its last unit was done (µs from the first unit's start), and the units' mean wait
/// for their inputs and mean time from inputs to done.
fn print_decoder_trace(rt: &Runtime, what: &str, p: &DecoderParams) {
    let units = p.units(k::DECODER_LAYERS_D64.id()) as usize;
    let trace = DeviceBuffer::<u64>::filled(rt.device(), 4 * units, 0).unwrap();
    let traced = DecoderParams { trace: trace.ptr(), ..*p };
    // SAFETY: as the test's launches, with a trace of 4 words per unit.
    unsafe { rt.launch(k::DECODER_LAYERS_D64, &traced, Placement::WHOLE) }.unwrap();
    rt.synchronize().unwrap();
    let t = trace.to_host().unwrap();
    let t0 = t.chunks(4).map(|u| u[0]).min().unwrap();
    let end = t.chunks(4).map(|u| u[2]).max().unwrap();
    println!(
        "{what}: traced launch {:.1} µs from the first unit's start to the last unit's end",
        (end - t0) as f64 / 1e3
    );
    let phases = k::decoder_phase_units(p);
    let mut first = 0usize;
    for layer in 0..p.n_layers {
        for (phase, &n) in phases.iter().enumerate() {
            let u = &t[4 * first..4 * (first + n as usize)];
            let us = |x: u64| (x - t0) as f64 / 1e3;
            let ready = u.chunks(4).map(|v| v[1]).max().unwrap();
            let done = u.chunks(4).map(|v| v[2]).max().unwrap();
            let wait = u.chunks(4).map(|v| (v[1] - v[0]) as f64).sum::<f64>() / f64::from(n) / 1e3;
            let work = u.chunks(4).map(|v| (v[2] - v[1]) as f64).sum::<f64>() / f64::from(n) / 1e3;
            let blocks: std::collections::BTreeSet<u64> = u.chunks(4).map(|v| v[3] & 0xffff_ffff).collect();
            println!(
                "  layer {layer} phase {phase}: {n} units on {} blocks, last ready {:.1}, last done {:.1}, mean wait {wait:.2}, mean work {work:.2}",
                blocks.len(),
                us(ready),
                us(done)
            );
            first += n as usize;
        }
    }
}

//! Claimable SMs (kernels/abi.h `RsTicket`, runtime/claims.rs): the SM sets of the groups as
//! measured; a claim emptying its SMs of a best-effort tenant's GEMM blocks within a work
//! unit, timed with `%globaltimer` by a watcher kernel on SMs of its own; outputs bitwise
//! equal to unclaimed runs while claims come and go; a launch whose every SM is claimed still
//! finishing; a launch made while its SMs are claimed continued on the SMs nobody claims;
//! and what taking units from a counter costs (printed, for the docs).

use std::collections::BTreeSet;
use std::ffi::c_void;
use std::sync::Arc;
use std::time::{Duration, Instant};

use half::f16;
use rand::rngs::StdRng;
use rand::Rng;
use rightsize::kernels::abi::*;
use rightsize::kernels::{self as k, gemm_wgmma_kernel, Kernel, KernelId, Params};
use rightsize::runtime::policy::{GroupRange, PriorityClass, Static};
use rightsize::runtime::work::Foreign;
use rightsize::runtime::{
    claim_level, gemm_tma_params, DeviceBuffer, ForeignGrid, ForeignKernel, ForeignModule, MinSms, PartitionId,
    PartitionRequest, Placement, PoolSpec, Runtime, Tenant, Ticket, UnitOrder,
};

use super::{device, fresh_rng, split};

/// Polls a claim word from one thread until it is nonzero, then writes `%globaltimer` (ns) to
/// `out`; after `limit` ns without a claim it writes 0. A foreign kernel (PTX), so that it
/// takes no part in claims itself.
const WATCH_PTX: &str = r#"
.version 8.0
.target sm_90
.address_size 64

.visible .entry claim_watch(.param .u64 word, .param .u64 out, .param .u64 limit)
{
    .reg .pred %p<3>;
    .reg .b32 %r<2>;
    .reg .b64 %rd<8>;
    ld.param.u64 %rd1, [word];
    ld.param.u64 %rd2, [out];
    ld.param.u64 %rd3, [limit];
    mov.u64 %rd4, %globaltimer;
    add.u64 %rd5, %rd4, %rd3;
POLL:
    ld.relaxed.gpu.global.u32 %r1, [%rd1];
    mov.u64 %rd6, %globaltimer;
    setp.ne.u32 %p1, %r1, 0;
    @%p1 bra SEEN;
    setp.lt.u64 %p2, %rd6, %rd5;
    @%p2 bra POLL;
    mov.u64 %rd6, 0;
SEEN:
    st.global.u64 [%rd2], %rd6;
    ret;
}
"#;

/// The partitions: the watcher's group 0, the best-effort tenant's groups 1.. (with the SMs
/// outside the groups), and the claimed window of groups 4 and 5.
fn watch_part() -> PartitionId {
    PartitionId::green(0)
}
fn be_part() -> PartitionId {
    PartitionId::green(1)
}
fn claimed_part() -> PartitionId {
    PartitionId::green(2)
}

fn runtime() -> Arc<Runtime> {
    Arc::new(claiming_runtime(true))
}

/// The runtime of these tests: counted from the first launch (the tests claim SMs of launches
/// made before any claim), the Hopper GEMM's claimed blocks pausing their tiles or not.
fn claiming_runtime(pauses: bool) -> Runtime {
    let d = device();
    let (g, groups) = split(&d);
    assert!(groups >= 7, "the test lays out windows over 7 groups; the device has {groups}");
    let range = d.info().stream_priorities;
    let spec = PoolSpec {
        partitions: vec![
            PartitionRequest { first_group: 0, sms: g },
            PartitionRequest { first_group: 1, sms: (groups - 1) * g },
            PartitionRequest { first_group: 4, sms: 2 * g },
        ],
        priorities: vec![range.least, range.greatest],
        lanes: 1,
        rest: true,
    };
    Runtime::new(d, &spec).unwrap().with_units(UnitOrder::Counted).with_pauses(pauses)
}

/// The latency-critical side: the claimed window at the greatest priority.
fn lc() -> Placement {
    Placement { priority_level: 1, ..Placement::on(claimed_part()) }
}

/// The SMs a claim of the claimed window empties.
fn claimed_sms(rt: &Runtime) -> BTreeSet<u32> {
    let claims = rt.claims().unwrap();
    let part = rt.pool().get(claimed_part()).unwrap();
    claims.sets_of(part).iter().flat_map(|&s| claims.sets()[s].iter().copied()).collect()
}

/// One block's trace (RsTicket.trace).
#[derive(Debug, Clone, Copy)]
struct Block {
    start: u64,
    left: u64,
    sm: u32,
    for_claim: bool,
    /// It left in the middle of a tile, which another block finished.
    paused: bool,
    units: u32,
}

fn blocks(trace: &DeviceBuffer<u64>) -> Vec<Block> {
    trace
        .to_host()
        .unwrap()
        .chunks(3)
        .filter(|b| b[1] != 0)
        .map(|b| Block {
            start: b[0],
            left: b[1],
            sm: (b[2] >> 32) as u32,
            for_claim: (b[2] >> 31) & 1 == 1,
            paused: (b[2] >> 30) & 1 == 1,
            units: (b[2] & 0x3fff_ffff) as u32,
        })
        .collect()
}

/// A Hopper GEMM with random operands, its output buffers and its unclaimed output.
struct Gemm {
    kernel: Kernel<GemmTmaParams>,
    tp: GemmTmaParams,
    _ab: [DeviceBuffer<f16>; 2],
    want: Vec<u16>,
}

impl Gemm {
    fn new(rt: &Runtime, rng: &mut StdRng, m: u32, n: u32, kk: u32) -> Gemm {
        let dev = rt.device();
        let rand = |rng: &mut StdRng, len: u32| -> Vec<f16> {
            (0..len as usize * kk as usize).map(|_| f16::from_f32(rng.random_range(-1.0..1.0))).collect()
        };
        let a = DeviceBuffer::from_host(dev, &rand(rng, m)).unwrap();
        let b = DeviceBuffer::from_host(dev, &rand(rng, n)).unwrap();
        let out = DeviceBuffer::<f16>::filled(dev, (m * n) as usize, 0xff).unwrap();
        let p = GemmParams::dense(a.ptr(), b.ptr(), out.ptr(), m, n, kk);
        let sms = rt.pool().get(be_part()).unwrap().sms();
        let kernel = gemm_wgmma_kernel(m, n, kk, sms);
        let tp = gemm_tma_params(&p, kernel).unwrap();
        let mut g = Gemm { kernel, tp, _ab: [a, b], want: Vec::new() };
        // SAFETY: the operands and `out` hold the GEMM's sizes.
        unsafe { rt.launch(kernel, &g.with_c(&out), Placement::WHOLE) }.unwrap();
        rt.synchronize().unwrap();
        g.want = bits(&out);
        g
    }

    fn output(&self, rt: &Runtime) -> DeviceBuffer<f16> {
        DeviceBuffer::filled(rt.device(), (self.tp.g.m * self.tp.g.n) as usize, 0xff).unwrap()
    }

    fn with_c(&self, c: &DeviceBuffer<f16>) -> GemmTmaParams {
        let mut tp = self.tp;
        tp.g.c = c.ptr();
        tp
    }

    /// Three trace words per block of a launch on the best-effort window.
    fn trace(&self, rt: &Runtime) -> DeviceBuffer<u64> {
        let sms = rt.pool().get(be_part()).unwrap().sms();
        let per_sm = rt.kernels().get(self.kernel.id()).blocks_per_sm;
        DeviceBuffer::filled(rt.device(), 3 * (sms * per_sm) as usize, 0).unwrap()
    }
}

/// `n` halves drawn from [-1, 1).
fn rand(rng: &mut StdRng, n: usize) -> Vec<f16> {
    (0..n).map(|_| f16::from_f32(rng.random_range(-1.0..1.0))).collect()
}

fn bits(b: &DeviceBuffer<f16>) -> Vec<u16> {
    b.to_host().unwrap().iter().map(|h| h.to_bits()).collect()
}

fn watcher(rt: &Arc<Runtime>) -> (Tenant, ForeignKernel) {
    let module = ForeignModule::load(rt.device(), WATCH_PTX.as_bytes()).unwrap();
    let kernel = module.kernel(rt.device(), "claim_watch", [32, 1, 1], 0).unwrap();
    (Tenant::new(rt.clone(), 9, Placement::on(watch_part())).unwrap(), kernel)
}

/// Starts the watcher on the claim word of the claimed window's first set; it writes when it
/// saw the claim to `out`.
fn watch(rt: &Runtime, w: &(Tenant, ForeignKernel), out: &DeviceBuffer<u64>) {
    let claims = rt.claims().unwrap();
    let set = claims.sets_of(rt.pool().get(claimed_part()).unwrap())[0];
    let (word, at, limit) = (claims.word(set), out.ptr(), 200_000_000u64);
    let mut args =
        [&word as *const u64 as *mut c_void, &at as *const u64 as *mut c_void, &limit as *const u64 as *mut c_void];
    // SAFETY: three u64 arguments as the kernel declares; `word` and `out` are live words.
    unsafe { w.0.submit(Foreign { kernel: &w.1, grid: ForeignGrid::Fixed([1, 1, 1]), args: args.as_mut_ptr() }) }
        .unwrap();
}

fn spin(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// A short latency-critical kernel on the claimed window, at its level.
fn lc_kernel(rt: &Runtime, out: &DeviceBuffer<u32>) {
    let p = SmidParams { sm: out.ptr(), spin_cycles: 20_000, units: out.len() as u32, _pad: 0 };
    let t = Ticket { level: claim_level(Some(PriorityClass::LatencyCritical)), ..Ticket::default() };
    // SAFETY: `out` holds `units` words.
    unsafe { rt.launch_at(k::SMID_RECORD, &p, lc(), t) }.unwrap();
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn claims_measure_the_sms_of_every_group() {
    let rt = runtime();
    let (g, groups) = split(rt.device());
    let claims = rt.claims().unwrap();
    let sets = claims.sets();
    let total = rt.device().info().sm_count;
    assert!(sets.len() as u32 == groups || sets.len() as u32 == groups + 1, "{sets:?}");
    assert!(sets[..groups as usize].iter().all(|s| s.len() as u32 == g), "{sets:?}");
    let all: BTreeSet<u32> = sets.iter().flatten().copied().collect();
    assert_eq!(all.len() as u32, total, "every SM in exactly one set: {sets:?}");
    assert_eq!(claims.sets_of(rt.pool().get(claimed_part()).unwrap()), vec![4, 5]);
    let be = claims.sets_of(rt.pool().get(be_part()).unwrap());
    assert_eq!(be.len(), sets.len() - 1, "the best-effort window holds groups 1.. and the rest: {be:?}");
    assert!(claims.sets_of(rt.pool().get(PartitionId::WHOLE).unwrap()).is_empty());
    // A scheduled tenant's claims are its policy's; a fixed tenant claims its own window.
    let t = Tenant::new(rt.clone(), 0, lc()).unwrap().with_class(PriorityClass::LatencyCritical);
    t.claim().unwrap();
    t.release().unwrap();
    t.synchronize().unwrap();
}

/// A runtime of the default unit order counts units only once it knows a claimer: a fixed
/// tenant's first claim, or a latency-critical tenant of a policy that claims when it is made.
#[test]
#[ignore = "needs a CUDA GPU"]
fn units_are_counted_once_a_claimer_is_known() {
    let d = device();
    let (g, groups) = split(&d);
    let spec = PoolSpec::disjoint(&[g, (groups - 1) * g], g);
    let rt = Arc::new(Runtime::new(d, &spec).unwrap().with_units(UnitOrder::Auto));
    assert!(!rt.counts_units(), "no claimer yet");
    let t = Tenant::new(rt.clone(), 0, Placement::on(PartitionId::green(0))).unwrap();
    assert!(!rt.counts_units(), "a best-effort tenant claims nothing");
    t.claim().unwrap();
    assert!(rt.counts_units(), "after a claim");
    t.release().unwrap();
    t.synchronize().unwrap();
    let plain = Runtime::new(device(), &spec).unwrap().with_units(UnitOrder::Plain);
    plain.expect_claims();
    assert!(!plain.counts_units(), "the plain order stays plain");
}

/// A traced launch where no claimer is known (the plain order, no unit counter) runs and
/// traces every block, its output the untraced launch's bit for bit: the Hopper GEMM of one
/// round and of several.
#[test]
#[ignore = "needs a CUDA GPU"]
fn a_traced_launch_without_a_claimer_runs_in_the_plain_order() {
    let rt = claiming_runtime(true).with_units(UnitOrder::Auto);
    assert!(!rt.counts_units(), "no claimer yet");
    let mut rng = fresh_rng("traced plain");
    for (m, n, kk) in [(1024, 1024, 1024), (8192, 4096, 1024)] {
        let gemm = Gemm::new(&rt, &mut rng, m, n, kk);
        let (out, trace) = (gemm.output(&rt), gemm.trace(&rt));
        let t = Ticket { trace: trace.ptr(), ..Ticket::default() };
        // SAFETY: as in Gemm::new; the trace holds three words per block.
        unsafe { rt.launch_at(gemm.kernel, &gemm.with_c(&out), Placement::on(be_part()), t) }.unwrap();
        rt.synchronize().unwrap();
        assert!(bits(&out) == gemm.want, "{m}x{n}x{kk}: the traced launch differs from the untraced one");
        let traced = blocks(&trace);
        assert!(
            !traced.is_empty() && traced.iter().all(|b| !b.for_claim),
            "{m}x{n}x{kk}: {} blocks traced",
            traced.len()
        );
    }
}

/// The test runtime (counted units, tiles that pause) and a runtime of the plain unit order on
/// the same device, for A/Bs of the two orders.
fn counted_and_plain() -> (Arc<Runtime>, Runtime) {
    let d = device();
    let (g, _) = split(&d);
    let plain = Runtime::new(d, &PoolSpec::disjoint(&[g], g)).unwrap().with_units(UnitOrder::Plain);
    (runtime(), plain)
}

/// A runtime of counted units whose GEMM tiles do not pause, as `RIGHTSIZE_PAUSE=off` makes:
/// a pool of the same partitions, priorities and claims as the pausing one's, so the two
/// differ in the build alone.
fn counted_without_pauses() -> Runtime {
    claiming_runtime(false)
}

/// A counting runtime launches a kernel whose units stand alone, of at most two rounds, a block
/// a unit in the plain build (`claims::unit_order`), and one of more rounds from its counter on
/// the counted build's resident grid; a GEMM of two rounds stays counted. Every output is the
/// plain runtime's, bit for bit.
#[test]
#[ignore = "needs a CUDA GPU"]
fn a_launch_of_two_rounds_goes_a_block_a_unit() {
    let (counted, plain) = counted_and_plain();
    let dev = counted.device();
    let sms = counted.pool().get(PartitionId::WHOLE).unwrap().sms();
    let mut rng = fresh_rng("two rounds");
    let cols = 1024u32;
    let rows_of = |units: u32| units * RS_NORM_ROWS;
    let norm = |x: &DeviceBuffer<f16>, gamma: &DeviceBuffer<f16>, y: &DeviceBuffer<f16>, units: u32| NormParams {
        x: x.ptr(),
        gamma: gamma.ptr(),
        y: y.ptr(),
        rows: rows_of(units),
        cols,
        eps: 1e-5,
        ..Default::default()
    };
    // The resident grids of the plain and the counted build.
    let resident = sms * counted.kernels().get(KernelId::LayerNorm).blocks_per_sm;
    let counted_resident = sms * counted.kernels().counted(KernelId::LayerNorm).blocks_per_sm;
    let most = 2 * resident + 1;
    let x = DeviceBuffer::from_host(dev, &rand(&mut rng, (rows_of(most) * cols) as usize)).unwrap();
    let gamma = DeviceBuffer::from_host(dev, &rand(&mut rng, cols as usize)).unwrap();
    for (units, want_grid) in
        [(resident + resident / 2, resident + resident / 2), (2 * resident, 2 * resident), (most, counted_resident)]
    {
        let outs: Vec<_> =
            (0..2).map(|_| DeviceBuffer::<f16>::filled(dev, (rows_of(units) * cols) as usize, 0xff).unwrap()).collect();
        // SAFETY: the buffers hold `units` units of rows (x and gamma `most`).
        let (grid, plain_grid) = unsafe {
            (
                counted.launch(k::LAYER_NORM, &norm(&x, &gamma, &outs[0], units), Placement::WHOLE).unwrap(),
                plain.launch(k::LAYER_NORM, &norm(&x, &gamma, &outs[1], units), Placement::WHOLE).unwrap(),
            )
        };
        counted.synchronize().unwrap();
        plain.synchronize().unwrap();
        assert_eq!(plain_grid, resident, "{units} units: the plain order's resident grid");
        assert_eq!(grid, want_grid, "{units} units on {resident} resident blocks");
        assert!(bits(&outs[0]) == bits(&outs[1]), "{units} units: the same bits as the plain order");
    }
    // A GEMM whose tiles take the device two rounds: from its counter, not a block a tile. Its
    // tile is the one Gemm::new picks (for the best-effort window), so the shape is searched.
    let (kk, n, be_sms) = (1024u32, 4096u32, counted.pool().get(be_part()).unwrap().sms());
    let tiles = |m: u32| {
        let kernel = gemm_wgmma_kernel(m, n, kk, be_sms);
        let g = GemmTmaParams { g: GemmParams::dense(0, 0, 0, m, n, kk), ..Default::default() };
        let resident = u64::from(sms * counted.kernels().get(kernel.id()).blocks_per_sm);
        (g.units(kernel.id()), resident)
    };
    let m = (1..=64u32)
        .map(|i| 128 * i)
        .find(|&m| {
            let (t, r) = tiles(m);
            t > r && t <= 2 * r
        })
        .expect("a GEMM of two rounds");
    let gemm = Gemm::new(&counted, &mut rng, m, n, kk);
    let outs = [gemm.output(&counted), gemm.output(&plain)];
    // SAFETY: as in Gemm::new (the buffers are usable by both runtimes: one context).
    let grid = unsafe {
        plain.launch(gemm.kernel, &gemm.with_c(&outs[1]), Placement::WHOLE).unwrap();
        counted.launch(gemm.kernel, &gemm.with_c(&outs[0]), Placement::WHOLE).unwrap()
    };
    counted.synchronize().unwrap();
    plain.synchronize().unwrap();
    assert!(u64::from(grid) < gemm.tp.units(gemm.kernel.id()), "{}: {grid} blocks, counted", gemm.kernel.id());
    assert!(bits(&outs[0]) == bits(&outs[1]), "the GEMM's bits: the plain runtime's");
}

/// A claim lands while a best-effort tenant's chain of GEMMs fills its window: the GEMM blocks
/// running on the claimed SMs leave after the tile in hand. Claim-to-vacate per trial is the
/// time from when the watcher saw the claim to when the last block that was running on a
/// claimed SM left; outputs stay bitwise equal to the unclaimed run's.
#[test]
#[ignore = "needs a CUDA GPU"]
fn a_claim_empties_its_sms_within_a_work_unit() {
    let rt = runtime();
    let mut rng = fresh_rng("claim-to-vacate");
    let claimed = claimed_sms(&rt);
    let w = watcher(&rt);
    // BERT-large's MLP at batch 16 × 512 tokens (K = 1024), then Mistral-7B's down projection
    // at 2 × 512 tokens (K = 14336), whose tiles take ~60 µs: a claimed block pauses its tile
    // between K steps (kernels/abi.h, RS_PAUSE_*), so the bound holds for both.
    let mut missed = Vec::new();
    for (m, n, kk, bound_us) in [(8192, 4096, 1024, 20.0), (1024, 4096, 14336, 20.0)] {
        let gemm = Gemm::new(&rt, &mut rng, m, n, kk);
        let chain = 8;
        let outs: Vec<_> = (0..chain).map(|_| gemm.output(&rt)).collect();
        let traces: Vec<_> = (0..chain).map(|_| gemm.trace(&rt)).collect();
        let lc_out = DeviceBuffer::<u32>::filled(rt.device(), 64, 0).unwrap();
        let seen = DeviceBuffer::<u64>::filled(rt.device(), 1, 0).unwrap();
        // A whole chain's time, for where to claim.
        let t = Instant::now();
        for out in &outs {
            // SAFETY: as in Gemm::new.
            unsafe { rt.launch_at(gemm.kernel, &gemm.with_c(out), Placement::on(be_part()), Ticket::default()) }
                .unwrap();
        }
        rt.synchronize().unwrap();
        let chain_time = t.elapsed();
        let (mut vacate, mut late, mut left_for_claims, mut paused, mut last_paused) = (Vec::new(), 0, 0, 0, 0);
        for _ in 0..30 {
            watch(&rt, &w, &seen);
            for (out, trace) in outs.iter().zip(&traces) {
                let t = Ticket {
                    level: claim_level(Some(PriorityClass::BestEffort)),
                    trace: trace.ptr(),
                    ..Ticket::default()
                };
                // SAFETY: as in Gemm::new; the trace holds three words per block.
                unsafe { rt.launch_at(gemm.kernel, &gemm.with_c(out), Placement::on(be_part()), t) }.unwrap();
            }
            spin(chain_time.mul_f64(rng.random_range(0.1..0.7)));
            rt.claim(lc(), claim_level(Some(PriorityClass::LatencyCritical))).unwrap();
            lc_kernel(&rt, &lc_out);
            rt.release(lc()).unwrap();
            rt.synchronize().unwrap();
            let at = seen.to_host().unwrap()[0];
            assert!(at > 0, "the watcher saw no claim");
            let mut last = None::<Block>;
            for (i, (out, trace)) in outs.iter().zip(&traces).enumerate() {
                assert!(
                    bits(out) == gemm.want,
                    "{m}x{n}x{kk}: launch {i} under a claim differs from the unclaimed run"
                );
                for b in blocks(trace) {
                    assert!(!b.for_claim || claimed.contains(&b.sm), "block left for a claim on unclaimed SM {}", b.sm);
                    left_for_claims += usize::from(b.for_claim);
                    paused += usize::from(b.paused);
                    if claimed.contains(&b.sm) && b.start <= at && b.left > at && last.is_none_or(|l| b.left > l.left) {
                        last = Some(b);
                    }
                    late += usize::from(claimed.contains(&b.sm) && b.start > at && b.units > 0 && b.for_claim);
                }
            }
            if let Some(l) = last {
                vacate.push((l.left - at) as f64 / 1e3);
                last_paused += usize::from(l.paused);
            }
        }
        vacate.sort_by(f64::total_cmp);
        assert!(vacate.len() >= 10, "{m}x{n}x{kk}: only {} of 30 claims landed on a running launch", vacate.len());
        let q = |p: f64| vacate[((vacate.len() - 1) as f64 * p).round() as usize];
        println!(
            "claim-to-vacate {m}x{n}x{kk} ({}): {} claims on a running launch, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; \
             {left_for_claims} blocks left for claims, {paused} of them in the middle of a tile; {late} blocks of later \
             launches started on a claimed SM and left after their first tile; the last block to leave paused a tile \
             in {last_paused} claims",
            gemm.kernel.id(),
            vacate.len(),
            q(0.5),
            q(0.99),
            vacate[vacate.len() - 1]
        );
        assert!(left_for_claims > 0, "no block left for a claim");
        assert_eq!(rt.pool().pause_slots_in_use().unwrap(), 0, "{m}x{n}x{kk}: pause slots left in use");
        if q(0.99) > bound_us {
            missed.push(format!("{m}x{n}x{kk}: claim-to-vacate p99 {:.1} µs > {bound_us} µs", q(0.99)));
        }
    }
    assert!(missed.is_empty(), "{missed:?}");
}

/// Claims that come and go every few microseconds while a best-effort tenant runs a chain of
/// the library's kernels of every loop kind (Hopper GEMM, skinny GEMM, norm, attention,
/// vector add): every output bitwise equal to the unclaimed run's. And a launch confined to
/// the claimed window itself, claimed while it runs: every block but the last leaves, and the
/// last one finishes every unit.
#[test]
#[ignore = "needs a CUDA GPU"]
fn outputs_stay_the_same_under_any_claims() {
    let rt = runtime();
    let mut rng = fresh_rng("claims");
    let dev = rt.device();
    let up = |v: Vec<f16>| DeviceBuffer::from_host(dev, &v).unwrap();
    let gemm = Gemm::new(&rt, &mut rng, 4096, 4096, 1024);
    // Skinny GEMM (M = 8, K = 1024), layer norm, prefill attention, vector add.
    let (sn, sk) = (16384u32, 1024u32);
    let sa = up(rand(&mut rng, 8 * sk as usize));
    let sb = up(rand(&mut rng, (sn * sk) as usize));
    let skinny = GemmParams {
        a: sa.ptr(),
        b: sb.ptr(),
        m: 8,
        n: sn,
        k: sk,
        batch: 1,
        lda: sk,
        ldb: sk,
        ldc: sn,
        ldr: sn,
        ..Default::default()
    };
    let (rows, cols) = (65536u32, 1024u32);
    let nx = up(rand(&mut rng, (rows * cols) as usize));
    let ng = up(rand(&mut rng, cols as usize));
    let norm = NormParams { x: nx.ptr(), gamma: ng.ptr(), rows, cols, eps: 1e-5, ..Default::default() };
    let (batch, seq, heads, hd) = (4u32, 1024u32, 16u32, 64u32);
    let qkv: Vec<_> = (0..3).map(|_| up(rand(&mut rng, (batch * seq * heads * hd) as usize))).collect();
    let attn = AttentionParams {
        q: qkv[0].ptr(),
        k: qkv[1].ptr(),
        v: qkv[2].ptr(),
        batch,
        seq,
        heads_q: heads,
        heads_kv: heads,
        head_dim: hd,
        q_stride: heads * hd,
        k_stride: heads * hd,
        v_stride: heads * hd,
        o_stride: heads * hd,
        causal: 1,
        scale: 0.125,
        ..Default::default()
    };
    let vn = 1u64 << 26;
    let (va, vb) = (up(rand(&mut rng, vn as usize)), up(rand(&mut rng, vn as usize)));
    let add = VectorAddParams { a: va.ptr(), b: vb.ptr(), n: vn, ..Default::default() };
    let sizes = [(sn * 8) as usize, (rows * cols) as usize, (batch * seq * heads * hd) as usize, vn as usize];

    // Runs the chain once into fresh outputs, with claims coming and going or none; returns
    // the outputs and how many blocks left for a claim.
    let run = |claims: bool, rng: &mut StdRng| -> (Vec<Vec<u16>>, usize) {
        let outs: Vec<DeviceBuffer<f16>> = sizes
            .iter()
            .chain([&((4096 * 4096) as usize)])
            .map(|&n| DeviceBuffer::filled(dev, n, 0xff).unwrap())
            .collect();
        let traces: Vec<DeviceBuffer<u64>> =
            (0..5).map(|_| DeviceBuffer::filled(dev, 3 * 132 * 8 * 4, 0).unwrap()).collect();
        let be = Placement::on(be_part());
        let t = |i: usize| Ticket {
            level: claim_level(Some(PriorityClass::BestEffort)),
            trace: traces[i].ptr(),
            ..Ticket::default()
        };
        let sms = rt.pool().get(be_part()).unwrap().sms();
        let attn_kernel = k::attention_prefill_kernel(&attn, rt.device().info().compute_capability, sms).unwrap();
        // SAFETY: every buffer holds the sizes its params say; outputs are the fresh ones.
        unsafe {
            rt.launch_at(k::GEMM_SKINNY_8, &GemmParams { c: outs[0].ptr(), ..skinny }, be, t(0)).unwrap();
            rt.launch_at(k::LAYER_NORM, &NormParams { y: outs[1].ptr(), ..norm }, be, t(1)).unwrap();
            rt.launch_at(attn_kernel, &AttentionParams { o: outs[2].ptr(), ..attn }, be, t(2)).unwrap();
            rt.launch_at(k::VECTOR_ADD_F16, &VectorAddParams { c: outs[3].ptr(), ..add }, be, t(3)).unwrap();
            rt.launch_at(gemm.kernel, &gemm.with_c(&outs[4]), be, t(4)).unwrap();
        }
        if claims {
            let lc_out = DeviceBuffer::<u32>::filled(dev, 16, 0).unwrap();
            for _ in 0..200 {
                rt.claim(lc(), claim_level(Some(PriorityClass::LatencyCritical))).unwrap();
                lc_kernel(&rt, &lc_out);
                rt.release(lc()).unwrap();
                spin(Duration::from_micros(rng.random_range(0..20)));
            }
        }
        rt.synchronize().unwrap();
        let left = traces.iter().flat_map(blocks).filter(|b| b.for_claim).count();
        (outs.iter().map(bits).collect(), left)
    };
    let (want, _) = run(false, &mut rng);
    let mut left = 0;
    for round in 0..5 {
        let (got, l) = run(true, &mut rng);
        left += l;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w, "round {round}: kernel {i} of the chain differs under claims");
        }
    }
    println!("claims: {left} blocks left for a claim over 5 rounds");
    assert!(left > 0, "no block ever left for a claim");
    assert_eq!(rt.pool().pause_slots_in_use().unwrap(), 0, "pause slots left in use");

    // Every SM of the launch claimed: only the last block out stays, and finishes the rest.
    let out = gemm.output(&rt);
    let trace = gemm.trace(&rt);
    let t = Ticket { level: claim_level(Some(PriorityClass::BestEffort)), trace: trace.ptr(), ..Ticket::default() };
    let lc_out = DeviceBuffer::<u32>::filled(dev, 16, 0).unwrap();
    // SAFETY: as in Gemm::new.
    unsafe { rt.launch_at(gemm.kernel, &gemm.with_c(&out), Placement::on(claimed_part()), t) }.unwrap();
    spin(Duration::from_micros(100));
    rt.claim(lc(), claim_level(Some(PriorityClass::LatencyCritical))).unwrap();
    lc_kernel(&rt, &lc_out);
    rt.release(lc()).unwrap();
    rt.synchronize().unwrap();
    assert!(bits(&out) == gemm.want, "a launch whose every SM was claimed differs from the unclaimed run");
    let b = blocks(&trace);
    let stayed: Vec<_> = b.iter().filter(|b| !b.for_claim).collect();
    let units: u32 = b.iter().map(|b| b.units).sum();
    println!(
        "every SM claimed: {} blocks, {} left for the claim, {} stayed doing {:?} units",
        b.len(),
        b.len() - stayed.len(),
        stayed.len(),
        stayed.iter().map(|b| b.units).collect::<Vec<_>>()
    );
    let tiles = u64::from(gemm.tp.g.m.div_ceil(128)) * u64::from(gemm.tp.g.n.div_ceil(tile_n(gemm.kernel.id())));
    assert_eq!(u64::from(units), tiles, "every tile finished once");
    assert_eq!(rt.pool().pause_slots_in_use().unwrap(), 0, "pause slots left in use");
}

/// A scheduled best-effort tenant's GEMM issued while every SM of its window is claimed is
/// followed by a continuation on the whole device (runtime/claims.rs `Chain`): the first
/// launch's blocks on claimed SMs leave before they take a tile, the continuation's blocks on
/// SMs nobody claims do the rest. The output is the unclaimed run's, bit for bit, launch after launch,
/// with the claim up before the launch, released, or toggled while it runs (so the counter
/// both launches share ends at zero each time).
#[test]
#[ignore = "needs a CUDA GPU"]
fn a_launch_made_under_a_claim_is_continued_on_unclaimed_sms() {
    let d = device();
    let (g, groups) = split(&d);
    // The tenant's window: the first half of the groups, which the claim covers.
    let window = GroupRange { first: 0, count: groups / 2 };
    let policy = Static::side_by_side(&[Some(window.count * g)], groups, g).unwrap();
    let rt = Runtime::with_policy(d, Box::new(policy), MinSms::default(), 1).unwrap();
    let rt = Arc::new(rt.with_units(UnitOrder::Counted));
    let be = Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).unwrap();
    let claim_at = rt.pool().iter().find(|(_, p)| p.groups() == Some(window)).map(|(id, _)| id).unwrap();
    let claim = Placement { priority_level: 2, ..Placement::on(claim_at) };
    let lc_level = claim_level(Some(PriorityClass::LatencyCritical));

    let mut rng = fresh_rng("continuations");
    let dev = rt.device();
    let up = |v: Vec<f16>| DeviceBuffer::from_host(dev, &v).unwrap();
    let gemm = Gemm::new(&rt, &mut rng, 8192, 4096, 1024);
    let out = gemm.output(&rt);
    // A decode GEMM (M = 8: the skinny kernel, which loads its first unit's weights before
    // its loop) and an elementwise kernel (units taken in groups), both with more units than
    // the window's blocks.
    let (sn, sk) = (16384u32, 1024u32);
    let (sa, sb) = (up(rand(&mut rng, 8 * sk as usize)), up(rand(&mut rng, (sn * sk) as usize)));
    let skinny_out = DeviceBuffer::<f16>::filled(dev, (8 * sn) as usize, 0xff).unwrap();
    let skinny = GemmParams { c: skinny_out.ptr(), ..GemmParams::dense(sa.ptr(), sb.ptr(), 0, 8, sn, sk) };
    let vn = 1u64 << 24;
    let (va, vb) = (up(rand(&mut rng, vn as usize)), up(rand(&mut rng, vn as usize)));
    let add_out = DeviceBuffer::<f16>::filled(dev, vn as usize, 0xff).unwrap();
    let add = VectorAddParams { a: va.ptr(), b: vb.ptr(), c: add_out.ptr(), n: vn };
    // Greedy argmax over 64 rows of Llama's vocabulary (32 parts a row): a row's parts are
    // counted across the launch and its continuation.
    let (am_rows, am_cols) = (64u32, 128_256u32);
    let logits = rand(&mut rng, (am_rows * am_cols) as usize);
    let am_want = rightsize::kernels::reference::argmax(&logits, am_cols as usize);
    let logits = up(logits);
    let (partial, arrived) = k::argmax_scratch(am_rows, am_cols).unwrap();
    let words = |n: usize, fill: u8| DeviceBuffer::<u32>::filled(dev, n, fill).unwrap();
    let (am_out, am_partial, am_arrived) = (words(am_rows as usize, 0xff), words(partial, 0), words(arrived, 0));
    // Written 0xff before each run, so a launch that writes nothing is seen.
    let am_out = std::cell::RefCell::new(am_out);
    // Positions the argmax moves on (more words than rows), set again before each run: each
    // moved once by the launch and its continuation together.
    let pos_start: Vec<u32> = (0..am_rows + 3).map(|i| 1000 * i).collect();
    let am_pos = std::cell::RefCell::new(DeviceBuffer::from_host(dev, &pos_start).unwrap());
    let pos_want: Vec<u32> = pos_start.iter().map(|&p| p + 7).collect();
    let argmax = ArgmaxParams {
        logits: logits.ptr(),
        out: am_out.borrow().ptr(),
        partial: am_partial.ptr(),
        arrived: am_arrived.ptr(),
        advance: am_pos.borrow().ptr(),
        advance_n: u64::from(am_rows + 3),
        rows: am_rows,
        cols: am_cols,
        stride: am_cols,
        delta: 7,
    };
    // SAFETY: the buffers hold the sizes the params name.
    unsafe {
        rt.launch(k::GEMM_SKINNY_8, &skinny, Placement::WHOLE).unwrap();
        rt.launch(k::VECTOR_ADD_F16, &add, Placement::WHOLE).unwrap();
    }
    rt.synchronize().unwrap();
    let (skinny_want, add_want) = (bits(&skinny_out), bits(&add_out));
    let check_argmax = |label: &str| {
        assert_eq!(am_out.borrow().to_host().unwrap(), am_want, "{label}: the argmax differs from the reference");
        assert!(am_arrived.to_host().unwrap().iter().all(|&c| c == 0), "{label}: the argmax left counts");
        assert_eq!(am_pos.borrow().to_host().unwrap(), pos_want, "{label}: positions not moved on once each");
    };
    let run = |label: &str| {
        am_out.borrow_mut().fill_bytes(0xff).unwrap();
        am_pos.borrow_mut().copy_from_host(&pos_start).unwrap();
        // SAFETY: as in Gemm::new, and above.
        unsafe {
            be.launch(gemm.kernel, &gemm.with_c(&out)).unwrap();
            be.launch(k::GEMM_SKINNY_8, &skinny).unwrap();
            be.launch(k::VECTOR_ADD_F16, &add).unwrap();
            be.launch(k::ARGMAX, &argmax).unwrap();
        }
        be.synchronize().unwrap();
        assert!(bits(&out) == gemm.want, "{label}: the GEMM's output differs from the unclaimed run");
        assert!(bits(&skinny_out) == skinny_want, "{label}: the skinny GEMM's output differs");
        assert!(bits(&add_out) == add_want, "{label}: the vector add's output differs");
        check_argmax(label);
    };
    let timed = |label: &str| {
        let t = Instant::now();
        run(label);
        t.elapsed().as_secs_f64() * 1e6
    };
    let free_us = timed("unclaimed");
    assert_eq!(rt.continuations(), 0, "a launch with no claim up is continued");

    // The claim lands before the launch: every block of the first launch is on a claimed SM.
    rt.claim(claim, lc_level).unwrap();
    rt.synchronize().unwrap();
    let claimed_us = timed("claimed before the launch");
    assert_eq!(rt.continuations(), 4, "each launch under a claim is continued");
    for round in 0..3 {
        run(&format!("claimed, round {round}"));
    }
    rt.release(claim).unwrap();
    rt.synchronize().unwrap();
    let continued = rt.continuations();
    run("released");
    assert_eq!(rt.continuations(), continued, "a launch after the release is continued");

    // The claim issued and released while launches run, at random moments.
    for round in 0..20 {
        am_out.borrow_mut().fill_bytes(0xff).unwrap();
        am_pos.borrow_mut().copy_from_host(&pos_start).unwrap();
        rt.claim(claim, lc_level).unwrap();
        // SAFETY: as in Gemm::new, and above.
        unsafe {
            be.launch(gemm.kernel, &gemm.with_c(&out)).unwrap();
            be.launch(k::GEMM_SKINNY_8, &skinny).unwrap();
            be.launch(k::VECTOR_ADD_F16, &add).unwrap();
            be.launch(k::ARGMAX, &argmax).unwrap();
        }
        spin(Duration::from_micros(rng.random_range(0..300)));
        rt.release(claim).unwrap();
        be.synchronize().unwrap();
        rt.synchronize().unwrap();
        assert!(bits(&out) == gemm.want, "toggled claim, round {round}: the GEMM's output differs");
        assert!(bits(&skinny_out) == skinny_want, "toggled claim, round {round}: the skinny GEMM's output differs");
        assert!(bits(&add_out) == add_want, "toggled claim, round {round}: the vector add's output differs");
        check_argmax(&format!("toggled claim, round {round}"));
    }
    run("after the toggled claims");
    assert_eq!(rt.pool().pause_slots_in_use().unwrap(), 0, "pause slots left in use");
    println!(
        "continuations: GEMM 8192x4096x1024, skinny GEMM 8x16384x1024, a 2^24 vector add and a 64x128256 argmax on half \
         the device {free_us:.0} us unclaimed, {claimed_us:.0} us with its window claimed (continued on the \
         other half); {} continuations",
        rt.continuations()
    );
}

fn tile_n(id: KernelId) -> u32 {
    match id {
        KernelId::GemmWgmmaSlim => 48,
        KernelId::GemmWgmmaNarrow => 64,
        KernelId::GemmWgmma80 => 80,
        KernelId::GemmWgmma96 => 96,
        KernelId::GemmWgmma => 128,
        KernelId::GemmWgmmaWiderMid => 160,
        KernelId::GemmWgmmaMid => 192,
        _ => 256,
    }
}

/// What taking units from a counter and reading claims costs, against the plain contract's
/// unit order (a runtime made `with_units(UnitOrder::Plain)`), on the whole device with no claim: the
/// time of each kernel, alternating the two runtimes, three rounds (printed for the docs).
#[test]
#[ignore = "needs a CUDA GPU"]
fn what_claimable_units_cost() {
    let (paused, plain) = counted_and_plain();
    let counted = counted_without_pauses();
    let mut rng = fresh_rng("claim cost");
    let cases = [(8192u32, 4096u32, 1024u32), (16, 4096, 4096), (8192, 1024, 4096)];
    for (m, n, kk) in cases {
        let (mut ratios, mut paused_ratios) = (Vec::new(), Vec::new());
        let gemm = Gemm::new(&paused, &mut rng, m, n, kk);
        let out = gemm.output(&paused);
        for _ in 0..3 {
            let time = |rt: &Runtime| {
                let reps = 50;
                // SAFETY: as in Gemm::new (the buffers are usable by both runtimes: one context).
                unsafe { rt.launch(gemm.kernel, &gemm.with_c(&out), Placement::WHOLE) }.unwrap();
                rt.synchronize().unwrap();
                let t = Instant::now();
                for _ in 0..reps {
                    // SAFETY: as above.
                    unsafe { rt.launch(gemm.kernel, &gemm.with_c(&out), Placement::WHOLE) }.unwrap();
                }
                rt.synchronize().unwrap();
                t.elapsed().as_secs_f64() / reps as f64
            };
            let (c, q, p) = (time(&counted), time(&paused), time(&plain));
            ratios.push(c / p);
            paused_ratios.push(q / p);
        }
        println!(
            "claimable units cost {m}x{n}x{kk} ({}): counted ÷ plain time {:.3}, {:.3}, {:.3}; with tiles that \
             pause {:.3}, {:.3}, {:.3}",
            gemm.kernel.id(),
            ratios[0],
            ratios[1],
            ratios[2],
            paused_ratios[0],
            paused_ratios[1],
            paused_ratios[2]
        );
    }
    // Kernels of small units, taken in groups: an elementwise add (2048 halves a unit) and a
    // layer norm (8 rows of 1024).
    let dev = counted.device();
    let n = 1usize << 26;
    let a = DeviceBuffer::<f16>::filled(dev, n, 0).unwrap();
    let c = DeviceBuffer::<f16>::filled(dev, n, 0).unwrap();
    let gamma = DeviceBuffer::<f16>::filled(dev, 1024, 0).unwrap();
    let add = VectorAddParams { a: a.ptr(), b: a.ptr(), c: c.ptr(), n: n as u64 };
    let norm = NormParams {
        x: a.ptr(),
        gamma: gamma.ptr(),
        y: c.ptr(),
        rows: (n / 1024) as u32,
        cols: 1024,
        eps: 1e-5,
        ..Default::default()
    };
    for name in ["vector_add_f16 n = 2^26", "layer_norm_f16 65536x1024"] {
        let mut ratios = Vec::new();
        for _ in 0..3 {
            let time = |rt: &Runtime| {
                let t = Instant::now();
                for _ in 0..50 {
                    // SAFETY: every buffer holds what the params say.
                    unsafe {
                        if name.starts_with("vector") {
                            rt.launch(k::VECTOR_ADD_F16, &add, Placement::WHOLE)
                        } else {
                            rt.launch(k::LAYER_NORM, &norm, Placement::WHOLE)
                        }
                    }
                    .unwrap();
                }
                rt.synchronize().unwrap();
                t.elapsed().as_secs_f64()
            };
            ratios.push(time(&counted) / time(&plain));
        }
        println!("claimable units cost {name}: counted ÷ plain time {ratios:.3?}");
    }
}

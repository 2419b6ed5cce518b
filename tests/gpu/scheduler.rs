//! The scheduler on the GPU: every policy runs the engine's models with outputs bitwise
//! identical to the whole device, scheduled kernels stay in their partitions, tenants under
//! the isolated policy never share SMs, and latency-critical kernels go out at high priority.

use std::collections::BTreeSet;
use std::sync::Arc;

use half::f16;
use rand::Rng;
use rightsize::engine::{Family, Mode, Model, ModelConfig, ModelWeights};
use rightsize::kernels::abi::{RsTicket, SmidParams, VectorAddParams};
use rightsize::kernels::{KernelId, SMID_RECORD, VECTOR_ADD_F16};
use rightsize::runtime::policy::{
    Full, GroupRange, KrispConserved, KrispIsolated, KrispShare, Policy, Prioritized, PriorityClass, Share, Static,
};
use rightsize::runtime::work::Foreign;
use rightsize::runtime::{DeviceBuffer, ForeignGrid, ForeignModule, MinSms, Placement, PoolSpec, Runtime, Tenant};

use super::{device, fresh_rng};

fn min_sms(default: u32) -> MinSms {
    let mut m = MinSms::default();
    m.default = Some(default);
    m
}

fn scheduled_runtime(policy: Box<dyn Policy>, default_sms: u32) -> Arc<Runtime> {
    Arc::new(Runtime::with_policy(device(), policy, min_sms(default_sms), 4).unwrap())
}

/// A tiny Llama's greedy tokens and last logits (bits), eager and from a plan, and a tiny
/// BERT's hidden states (bits), for tenant `t`.
fn run_models(t: &Tenant, seed: u64, prompts: &[u32], ids: &[u32]) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    let c = ModelConfig::tiny(Family::Llama);
    let model = Model::new(t, c.clone(), ModelWeights::synthetic(t, &c, seed).unwrap()).unwrap();
    for mode in [Mode::Eager, Mode::Plan] {
        let mut ws = model.workspace(t, 2, 9 + 12).unwrap();
        let tokens = model.generate(t, &mut ws, prompts, 2, 9, 12, mode).unwrap();
        out.push(tokens.concat());
        out.push(ws.logits.to_host().unwrap().iter().map(|x| u32::from(x.to_bits())).collect());
    }
    let c = ModelConfig::tiny(Family::Bert);
    let model = Model::new(t, c.clone(), ModelWeights::synthetic(t, &c, seed).unwrap()).unwrap();
    let mut ws = model.workspace(t, 2, 30).unwrap();
    ws.ids.copy_from_host(ids).unwrap();
    ws.lens.copy_from_host(&[30, 17]).unwrap();
    model.encode(t, &ws, 2, 30).unwrap();
    t.synchronize().unwrap();
    out.push(ws.x.to_host().unwrap().iter().map(|x| u32::from(x.to_bits())).collect());
    out
}

/// Fresh inputs, the models' outputs on the whole device, and the launches that produced them.
struct Baseline {
    seed: u64,
    prompts: Vec<u32>,
    ids: Vec<u32>,
    whole: Vec<Vec<u32>>,
    launches: Vec<rightsize::runtime::Recorded>,
}

fn baseline(test: &str) -> Baseline {
    let mut rng = fresh_rng(test);
    let seed = rng.random();
    let prompts: Vec<u32> = (0..18).map(|_| rng.random_range(0..1000)).collect();
    let ids: Vec<u32> = (0..60).map(|_| rng.random_range(0..1000)).collect();
    let rt = Arc::new(Runtime::new(device(), &PoolSpec::default()).unwrap());
    let t = Tenant::new(rt, 0, Placement::WHOLE).unwrap();
    let mut whole = Vec::new();
    let launches = t
        .record(|| {
            whole = run_models(&t, seed, &prompts, &ids);
            Ok::<_, rightsize::engine::EngineError>(())
        })
        .unwrap();
    Baseline { seed, prompts, ids, whole, launches }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_policy_gives_outputs_bitwise_identical_to_full() {
    let Baseline { seed, prompts, ids, whole, .. } = baseline("policies");
    let cases: Vec<(&str, Box<dyn Policy>, u32, PriorityClass)> = vec![
        ("full", Box::new(Full), 16, PriorityClass::BestEffort),
        (
            "static",
            Box::new(Static { windows: vec![Some(GroupRange { first: 3, count: 4 })] }),
            16,
            PriorityClass::BestEffort,
        ),
        ("krisp-conserved", Box::new(KrispConserved), 16, PriorityClass::BestEffort),
        ("krisp-isolated", Box::new(KrispIsolated { floor_groups: 1 }), 24, PriorityClass::BestEffort),
        (
            "prioritized conserved (LC)",
            Box::new(Prioritized { inner: KrispConserved, reserved_groups: 4 }),
            40,
            PriorityClass::LatencyCritical,
        ),
        (
            "prioritized isolated (BE)",
            Box::new(Prioritized { inner: KrispIsolated::default(), reserved_groups: 4 }),
            8,
            PriorityClass::BestEffort,
        ),
        (
            "krisp (alone: borrowed whole device, short blocks)",
            Box::new(KrispShare::default()),
            16,
            PriorityClass::BestEffort,
        ),
    ];
    for (name, policy, sms, class) in cases {
        let rt = scheduled_runtime(policy, sms);
        let t = Tenant::scheduled(rt.clone(), 0, class).unwrap();
        let got = run_models(&t, seed, &prompts, &ids);
        assert!(got == whole, "{name}: outputs differ from the whole device");
        assert!(rt.scheduler().unwrap().is_idle(), "{name}: group counters did not return to zero");
        println!("{name}: tiny Llama (eager and plan) and tiny BERT bitwise identical to the whole device");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn concurrent_isolated_tenants_match_their_solo_runs() {
    let Baseline { seed, prompts, ids, whole, .. } = baseline("concurrent tenants");
    let rt = scheduled_runtime(Box::new(KrispIsolated::default()), 32);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|id| {
                let rt = rt.clone();
                let (prompts, ids) = (&prompts, &ids);
                s.spawn(move || {
                    let t = Tenant::scheduled(rt, id, PriorityClass::BestEffort).unwrap();
                    run_models(&t, seed, prompts, ids)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, r) in results.iter().enumerate() {
        assert!(*r == whole, "tenant {i} differs from the solo whole-device run");
    }
    assert!(rt.scheduler().unwrap().is_idle());
}

fn smid_on(t: &Tenant, spin: u64) -> DeviceBuffer<u32> {
    let rt = t.runtime();
    let units = 4 * rt.device().info().sm_count * rt.kernels().get(KernelId::SmidRecord).blocks_per_sm;
    let out = DeviceBuffer::<u32>::filled(rt.device(), units as usize, 0xff).unwrap();
    let p = SmidParams { sm: out.ptr(), spin_cycles: spin, units, _pad: 0 };
    // SAFETY: `out` holds `units` entries.
    unsafe { t.launch(SMID_RECORD, &p) }.unwrap();
    out
}

fn sms_of(out: &DeviceBuffer<u32>) -> BTreeSet<u32> {
    let v = out.to_host().unwrap();
    assert!(v.iter().all(|&s| s != u32::MAX), "unwritten entries");
    v.into_iter().collect()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn scheduled_kernels_stay_in_their_partitions() {
    // Conserved, 16 SMs per kernel: the kernel runs on exactly 16 SMs.
    let rt = scheduled_runtime(Box::new(KrispConserved), 16);
    let t = Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).unwrap();
    let out = smid_on(&t, 100_000);
    t.synchronize().unwrap();
    let set = sms_of(&out);
    println!("krisp-conserved, 16 SMs: ran on {} SMs", set.len());
    assert_eq!(set.len(), 16);
    drop(t);

    // Isolated, two tenants at once wanting 56 SMs each: disjoint, 56 SMs each.
    let rt = scheduled_runtime(Box::new(KrispIsolated::default()), 56);
    let (a, b) = (
        Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).unwrap(),
        Tenant::scheduled(rt.clone(), 1, PriorityClass::BestEffort).unwrap(),
    );
    let oa = smid_on(&a, 2_000_000);
    // Isolation is about kernels in flight at the same time: B must avoid A's SMs only if A
    // is still running when B is placed (a memory checker that serializes kernels lets A
    // finish first, and then B may rightly reuse the freed groups).
    let a_in_flight = !rt.scheduler().unwrap().is_idle();
    let ob = smid_on(&b, 2_000_000);
    a.synchronize().unwrap();
    b.synchronize().unwrap();
    let (sa, sb) = (sms_of(&oa), sms_of(&ob));
    println!(
        "krisp-isolated: A on {} SMs, B on {} SMs, shared {} (A in flight when B was placed: {a_in_flight})",
        sa.len(),
        sb.len(),
        sa.intersection(&sb).count()
    );
    assert_eq!((sa.len(), sb.len()), (56, 56));
    if a_in_flight {
        assert_eq!(sa.intersection(&sb).count(), 0);
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn krisp_shares_follow_the_load() {
    let Baseline { seed, prompts, ids, whole, .. } = baseline("krisp shares");
    let device = device();
    let (sms, range) = (device.info().sm_count, device.info().stream_priorities);
    let rt = Arc::new(Runtime::with_policy(device, Box::new(KrispShare::default()), MinSms::default(), 2).unwrap());
    let (a, b) = (
        Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).unwrap(),
        Tenant::scheduled(rt.clone(), 1, PriorityClass::BestEffort).unwrap(),
    );
    // Alone: the whole device, borrowed (least priority).
    let out = smid_on(&a, 100_000);
    a.synchronize().unwrap();
    let alone = sms_of(&out);
    assert_eq!((alone.len() as u32, a.last_stream_priority().unwrap()), (sms, range.least));
    // B busy (kernels of short blocks, itself alone when the first was placed, so borrowed on
    // the whole device): A gets its own window, and B's blocks there give way within a block.
    let mut hogs: Vec<_> = (0..40).map(|_| smid_on(&b, 200_000)).collect();
    let out = smid_on(&a, 100_000);
    a.synchronize().unwrap();
    let shared = sms_of(&out);
    let home = KrispShare::default().home(0, 2, rt.scheduler().unwrap().topology().groups);
    let granularity = rt.scheduler().unwrap().topology().granularity;
    println!("krisp: A alone on {} SMs; beside B on {} SMs (its window {home:?})", alone.len(), shared.len());
    assert_eq!(shared.len() as u32, home.count * granularity);
    assert!(a.last_stream_priority().unwrap() < range.least, "owned work goes out above borrowed work");
    // Its models, placed on its window with tiles for that window, match the whole device.
    hogs.extend((0..400).map(|_| smid_on(&b, 200_000)));
    let got = run_models(&a, seed, &prompts, &ids);
    println!("krisp: A's last kernel was sized for {} SMs", a.sms_hint());
    assert!(got == whole, "krisp beside a busy tenant: outputs differ from the whole device");
    b.synchronize().unwrap();
    drop(hogs);
    assert!(rt.scheduler().unwrap().is_idle());
}

/// A latency-critical tenant of a claiming krisp, bounded to its window, claims the window
/// while its work runs there and releases it at synchronize, after its last kernel: eager
/// launches and every replay of a plan (a capture claims nothing).
#[test]
#[ignore = "needs a CUDA GPU"]
fn a_claim_lasts_as_long_as_the_work_eager_or_planned() {
    let shares = vec![
        Share { class: PriorityClass::LatencyCritical, quota: Some(2), bounded: true },
        Share { class: PriorityClass::BestEffort, quota: None, bounded: false },
    ];
    let policy = Box::new(KrispShare::new(shares.clone()).claiming());
    let rt = Arc::new(Runtime::with_policy(device(), policy, MinSms::default(), 2).unwrap());
    let (lc, be) = (
        Tenant::scheduled(rt.clone(), 0, PriorityClass::LatencyCritical).unwrap(),
        Tenant::scheduled(rt.clone(), 1, PriorityClass::BestEffort).unwrap(),
    );
    assert!(rt.counts_units(), "a claiming latency-critical tenant arms counted units");
    let claimed = || rt.claims().unwrap().levels().unwrap().iter().filter(|&&l| l > 0).count();
    let hog = smid_on(&be, 200_000);
    // Eager: the claim is up while the spinning kernel runs, and gone after synchronize.
    let out = smid_on(&lc, 2_000_000);
    std::thread::sleep(std::time::Duration::from_micros(500));
    let during = claimed();
    lc.synchronize().unwrap();
    assert!(during > 0, "no set claimed while the latency-critical kernel ran");
    assert_eq!(claimed(), 0, "claims left after synchronize");
    // A plan of its window: each replay claims ahead of it and releases at synchronize.
    let home = KrispShare::new(shares).home(0, 2, rt.scheduler().unwrap().topology().groups);
    let units = out.len() as u32;
    let p = SmidParams { sm: out.ptr(), spin_cycles: 2_000_000, units, _pad: 0 };
    // SAFETY: `out` holds `units` entries.
    let set = lc.capture_set(&[home], || unsafe { lc.launch(SMID_RECORD, &p) }.map(|_| ())).unwrap();
    lc.synchronize().unwrap();
    assert_eq!(claimed(), 0, "capturing claims nothing");
    for round in 0..2 {
        lc.replay_set(&set).unwrap();
        std::thread::sleep(std::time::Duration::from_micros(500));
        let during = claimed();
        lc.synchronize().unwrap();
        assert!(during > 0, "replay {round}: no set claimed while the plan ran");
        assert_eq!(claimed(), 0, "replay {round}: claims left after the plan");
    }
    be.synchronize().unwrap();
    drop(hog);
}

/// What a best-effort tenant's vector add, issued eagerly or replayed from a plan captured
/// beforehand, meets while a latency-critical tenant (serving) has a protected request in
/// flight that it synchronizes `held` after it began: per add, whether it completed only after
/// that synchronize began, the latency-critical tenant's word for it during the request, and
/// how long after the request began it completed.
fn best_effort_beside_a_request(hush: u32, held: std::time::Duration) -> Vec<(bool, Option<u32>, std::time::Duration)> {
    let shares = vec![
        Share { class: PriorityClass::LatencyCritical, quota: Some(2), bounded: true },
        Share { class: PriorityClass::BestEffort, quota: None, bounded: false },
    ];
    let rt = Arc::new(
        Runtime::with_policy(device(), Box::new(KrispShare::new(shares).hushing(hush)), MinSms::default(), 2).unwrap(),
    );
    let lc = Tenant::scheduled(rt.clone(), 0, PriorityClass::LatencyCritical).unwrap();
    let mut be = Some(Tenant::scheduled(rt.clone(), 1, PriorityClass::BestEffort).unwrap());
    let n = 1 << 16;
    let ones = DeviceBuffer::from_host(rt.device(), &vec![f16::ONE; n]).unwrap();
    let out = DeviceBuffer::<f16>::filled(rt.device(), n, 0xff).unwrap();
    let p = VectorAddParams { a: ones.ptr(), b: ones.ptr(), c: out.ptr(), n: n as u64 };
    let whole = GroupRange { first: 0, count: rt.scheduler().unwrap().topology().groups };
    let t = be.as_ref().unwrap();
    // SAFETY: buffers of n halves.
    let plan = t.capture_set(&[whole], || unsafe { t.launch(VECTOR_ADD_F16, &p) }.map(|_| ())).unwrap();
    t.synchronize().unwrap();
    let word = || rt.hush().map(|h| h.words(0)[1]);
    // Not while loading: only once it serves does a protected request set its word (the host
    // sets it, before the launch returns).
    lc.protect_next();
    let loading = smid_on(&lc, 100_000);
    assert_eq!(word(), rt.hush().map(|_| 0), "set before it serves");
    lc.synchronize().unwrap();
    drop(loading);
    lc.hush_while_serving(true);
    // Serving, a request not asked to be protected quiets nobody.
    let request = smid_on(&lc, 1000);
    assert_eq!(word(), rt.hush().map(|_| 0), "set for a request not protected");
    lc.synchronize().unwrap();
    drop(request);
    let mut seen = Vec::new();
    for planned in [false, true] {
        // Its request, protected: a short kernel, then nothing until its synchronize.
        lc.protect_next();
        let began = std::time::Instant::now();
        let request = smid_on(&lc, 1000);
        let during = word();
        let t = be.take().unwrap();
        let plan = &plan;
        let (t, done, cleared) = std::thread::scope(|s| {
            let waiter = s.spawn(move || {
                if planned {
                    t.replay_set(plan).unwrap();
                } else {
                    // SAFETY: as above.
                    unsafe { t.launch(VECTOR_ADD_F16, &p) }.unwrap();
                }
                t.synchronize().unwrap();
                (t, std::time::Instant::now())
            });
            std::thread::sleep(held.saturating_sub(began.elapsed()));
            let cleared = std::time::Instant::now();
            lc.synchronize().unwrap();
            let (t, done) = waiter.join().unwrap();
            (t, done, cleared)
        });
        be = Some(t);
        drop(request);
        seen.push((done >= cleared, during, done - began));
        assert!(out.to_host().unwrap().iter().all(|x| x.to_f32() == 2.0), "planned {planned}: the add ran");
    }
    assert_eq!(word(), rt.hush().map(|_| 0), "the word is cleared at synchronize");
    seen
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn best_effort_work_waits_while_a_latency_critical_request_is_in_flight() {
    // Held 1 ms, under hushing's hold limit (5 ms): the add waits for the synchronize. Every
    // 8th launch waits, and the first of each request (after a synchronize, or a plan's):
    // the eager add comes after the two plans captured, its first launch since it synchronized.
    for (after, word, _) in best_effort_beside_a_request(8, std::time::Duration::from_millis(1)) {
        assert_eq!(word, Some(1), "the latency-critical tenant's word is set while its request is in flight");
        assert!(after, "it completed before the request ended");
    }
    // Without hushing it completes at once, long before a request held 100 ms ends.
    for (after, word, took) in best_effort_beside_a_request(0, std::time::Duration::from_millis(100)) {
        assert_eq!(word, None);
        assert!(!after && took < std::time::Duration::from_millis(50), "it completed after {took:?}");
    }
    // Held 200 ms: the watchdog clears the word at about 5 ms, and the add goes on then.
    for (after, word, took) in best_effort_beside_a_request(1, std::time::Duration::from_millis(200)) {
        assert_eq!(word, Some(1));
        assert!(!after, "it waited for the request's end, past the hold limit");
        assert!(took >= std::time::Duration::from_millis(4), "it did not wait for the word ({took:?})");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn krisp_plans_are_captured_as_if_their_tenant_were_alone() {
    let device = device();
    let sms = device.info().sm_count;
    let rt = Arc::new(Runtime::with_policy(device, Box::new(KrispShare::default()), MinSms::default(), 2).unwrap());
    let (a, b) = (
        Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).unwrap(),
        Tenant::scheduled(rt.clone(), 1, PriorityClass::BestEffort).unwrap(),
    );
    let topo = rt.scheduler().unwrap().topology();
    let home = KrispShare::default().home(0, 2, topo.groups);
    let whole = GroupRange { first: 0, count: topo.groups };
    let units = 4 * sms * rt.kernels().get(KernelId::SmidRecord).blocks_per_sm;
    let mut out = DeviceBuffer::<u32>::filled(rt.device(), units as usize, 0xff).unwrap();
    let p = SmidParams { sm: out.ptr(), spin_cycles: 100_000, units, _pad: 0 };
    // B is active while A captures a plan for the whole device and one for its home.
    let hog = smid_on(&b, 2_000_000);
    // SAFETY: `out` holds `units` entries.
    let set = a.capture_set(&[whole, home], || unsafe { a.launch(SMID_RECORD, &p) }.map(|_| ())).unwrap();
    b.synchronize().unwrap();
    drop(hog);
    // Alone now: the whole device's plan, and it runs on every SM.
    assert_eq!(a.replay_set(&set).unwrap(), 0);
    a.synchronize().unwrap();
    let alone = sms_of(&out);
    // Beside a busy B: its home's plan, on exactly its home's SMs.
    out.copy_from_host(&vec![u32::MAX; units as usize]).unwrap();
    let hog = smid_on(&b, 2_000_000);
    assert_eq!(a.replay_set(&set).unwrap(), 1);
    a.synchronize().unwrap();
    let beside = sms_of(&out);
    b.synchronize().unwrap();
    drop(hog);
    println!("krisp plans: alone on {} SMs, beside B on {} (home {home:?})", alone.len(), beside.len());
    assert_eq!(alone.len() as u32, sms, "the whole device's plan was captured on {} SMs", alone.len());
    assert_eq!(beside.len() as u32, home.count * topo.granularity);
    assert!(rt.scheduler().unwrap().is_idle());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn latency_critical_kernels_go_out_at_high_priority() {
    let rt = scheduled_runtime(Box::new(Prioritized { inner: KrispConserved, reserved_groups: 4 }), 16);
    let range = rt.device().info().stream_priorities;
    let n = 1 << 16;
    let ones = DeviceBuffer::from_host(rt.device(), &vec![f16::ONE; n]).unwrap();
    for (class, want) in [
        (PriorityClass::LatencyCritical, range.greatest),
        (PriorityClass::BestEffort, range.least + (range.greatest - range.least) / 2),
    ] {
        let t = Tenant::scheduled(rt.clone(), 0, class).unwrap();
        let out = DeviceBuffer::<f16>::filled(rt.device(), n, 0xff).unwrap();
        let p = VectorAddParams { a: ones.ptr(), b: ones.ptr(), c: out.ptr(), n: n as u64 };
        // SAFETY: buffers of n halves.
        unsafe { t.launch(VECTOR_ADD_F16, &p) }.unwrap();
        assert_eq!(t.last_stream_priority().unwrap(), want, "{class:?}");
        t.synchronize().unwrap();
        assert!(out.to_host().unwrap().iter().all(|x| x.to_f32() == 2.0));
    }
}

/// Launch records, and the order of announcements ("issuing TENANT NAME") and records
/// ("launched TENANT").
#[derive(Default)]
struct Collect(std::sync::Mutex<Vec<rightsize::runtime::LaunchRecord>>, std::sync::Mutex<Vec<String>>);

impl rightsize::runtime::TraceSink for Collect {
    fn launch(&self, r: &rightsize::runtime::LaunchRecord) {
        self.0.lock().unwrap().push(*r);
        self.1.lock().unwrap().push(format!("launched {}", r.tenant));
    }

    fn issuing(&self, tenant: u32, name: std::borrow::Cow<'static, str>) {
        self.1.lock().unwrap().push(format!("issuing {tenant} {name}"));
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn launch_trace_records_every_decision() {
    let sink = Arc::new(Collect::default());
    let rt = scheduled_runtime(Box::new(Prioritized { inner: KrispConserved, reserved_groups: 2 }), 24);
    rt.set_trace(Box::new(sink.clone())).unwrap();
    assert!(rt.set_trace(Box::new(Collect::default())).is_err(), "a second sink is refused");
    let t = Tenant::scheduled(rt.clone(), 1, PriorityClass::LatencyCritical).unwrap();
    let n = 1 << 20;
    let ones = DeviceBuffer::from_host(rt.device(), &vec![f16::ONE; n]).unwrap();
    let out = DeviceBuffer::<f16>::filled(rt.device(), n, 0xff).unwrap();
    let p = VectorAddParams { a: ones.ptr(), b: ones.ptr(), c: out.ptr(), n: n as u64 };
    for _ in 0..3 {
        // SAFETY: buffers of n halves.
        unsafe { t.launch(VECTOR_ADD_F16, &p) }.unwrap();
    }
    t.synchronize().unwrap();
    let records = sink.0.lock().unwrap().clone();
    println!("{records:?}");
    assert_eq!(records.len(), 3);
    let range = rt.device().info().stream_priorities;
    // The resident grid of the build that runs: 512 units take more than two rounds of either
    // (`RIGHTSIZE_UNITS=counted` runs the counted one).
    let id = KernelId::VectorAddF16;
    let per_sm = if rt.counts_units() { rt.kernels().counted(id) } else { rt.kernels().get(id) }.blocks_per_sm;
    for r in &records {
        assert_eq!((r.tenant, r.kernel, r.sms, r.priority), (1, id, 24, range.greatest));
        assert_eq!(r.grid, 24 * per_sm);
    }
    assert!(records.windows(2).all(|w| w[0].host_ns <= w[1].host_ns));
    // Each launch was announced, by tenant and kernel, before it was issued and recorded.
    let each = [format!("issuing 1 {}", KernelId::VectorAddF16.name()), "launched 1".to_string()];
    assert_eq!(*sink.1.lock().unwrap(), [each.clone(), each.clone(), each].concat());
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn plans_are_picked_by_current_load() {
    let rt = scheduled_runtime(Box::new(KrispConserved), 16);
    let t = Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).unwrap();
    let busy = Tenant::scheduled(rt.clone(), 1, PriorityClass::BestEffort).unwrap();
    let mut rng = fresh_rng("plan sets");
    let c = ModelConfig::tiny(Family::Llama);
    let model = Model::new(&t, c.clone(), ModelWeights::synthetic(&t, &c, rng.random()).unwrap()).unwrap();
    let prompts: Vec<u32> = (0..2 * 9).map(|_| rng.random_range(0..c.vocab)).collect();
    let want = {
        let mut ws = model.workspace(&t, 2, 9 + 8).unwrap();
        model.generate(&t, &mut ws, &prompts, 2, 9, 8, Mode::Eager).unwrap()
    };
    let mut ws = model.workspace(&t, 2, 9 + 8).unwrap();
    let windows = [GroupRange { first: 0, count: 7 }, GroupRange { first: 7, count: 8 }];
    let set = t.capture_set(&windows, || model.decode_step(&t, &ws, 2)).unwrap();
    let mut padded = prompts.clone();
    padded.resize(ws.ids.len(), 0);
    ws.ids.copy_from_host(&padded).unwrap();
    model.prefill(&t, &ws, 2, 9).unwrap();
    t.synchronize().unwrap();
    let mut got = vec![ws.next.to_host().unwrap()];
    let mut chosen = Vec::new();
    for step in 1..8 {
        // Keep the first window busy with another tenant's long kernel on half the steps.
        let hog = (step % 2 == 1).then(|| smid_on(&busy, 2_000_000));
        chosen.push(t.replay_set(&set).unwrap());
        t.synchronize().unwrap();
        got.push(ws.next.to_host().unwrap());
        if hog.is_some() {
            busy.synchronize().unwrap();
        }
    }
    println!("windows chosen per step: {chosen:?}");
    assert_eq!(chosen, vec![1, 0, 1, 0, 1, 0, 1], "busy steps must avoid the busy window");
    let got: Vec<Vec<u32>> = (0..2).map(|b| got.iter().map(|n| n[b]).collect()).collect();
    assert_eq!(got, want, "plans in either window give the eager tokens");
    assert!(rt.scheduler().unwrap().is_idle());
}

/// Knees that differ per (kernel, shape), so consecutive kernels keep switching partitions.
fn varied_min_sms(launches: &[rightsize::runtime::Recorded]) -> MinSms {
    let mut m = MinSms::default();
    for (i, l) in launches.iter().enumerate() {
        m.insert(l.kernel, l.shape_key, 8 * (1 + (i as u32 * 7) % 15));
    }
    m
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn partition_switches_keep_outputs_identical() {
    let Baseline { seed, prompts, ids, whole, launches } = baseline("partition switches");
    let table = varied_min_sms(&launches);
    println!("{} launches recorded, {} distinct knees", launches.len(), table.len());
    for policy in [Box::new(KrispConserved) as Box<dyn Policy>, Box::new(KrispIsolated::default())] {
        let name = policy.name();
        let rt = Arc::new(Runtime::with_policy(device(), policy, table.clone(), 2).unwrap());
        let t = Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).unwrap();
        let got = run_models(&t, seed, &prompts, &ids);
        for (i, (a, b)) in got.iter().zip(&whole).enumerate() {
            let first = a.iter().zip(b).position(|(x, y)| x != y);
            assert!(
                first.is_none(),
                "{name}: output {i} (0/1 eager tokens/logits, 2/3 plan, 4 BERT) differs at {first:?}"
            );
        }
        println!("{name}: identical with a partition switch at most launches");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_tenant_id_is_held_by_one_live_tenant() {
    let rt = scheduled_runtime(Box::new(KrispShare::default()), 16);
    let first = Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).unwrap();
    let e = Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).unwrap_err().to_string();
    assert!(e.contains("tenant id 0 is held"), "{e}");
    let other = Tenant::scheduled(rt.clone(), 1, PriorityClass::BestEffort).unwrap();
    drop(first);
    let again = Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).unwrap();
    drop((again, other));
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn duty_tells_a_closed_loop_from_requests_that_come_and_go() {
    let rt = scheduled_runtime(Box::new(KrispShare::default()), 16);
    let mut rng = fresh_rng("duty");
    let c = ModelConfig::named("bert-base").unwrap();
    let t = Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).unwrap();
    assert_eq!(t.duty(), 1.0, "a new tenant counts as busy");
    let model = Model::new(&t, c.clone(), ModelWeights::synthetic(&t, &c, rng.random()).unwrap()).unwrap();
    let mut ws = model.workspace(&t, 8, 128).unwrap();
    let ids: Vec<u32> = (0..ws.ids.len()).map(|_| rng.random_range(0..c.vocab)).collect();
    ws.ids.copy_from_host(&ids).unwrap();
    let request = || {
        model.encode(&t, &ws, 8, 128).unwrap();
        t.synchronize().unwrap();
    };
    // Idle four times as long as each request takes: about a fifth of the time busy.
    let start = std::time::Instant::now();
    request();
    let took = start.elapsed();
    for _ in 0..40 {
        std::thread::sleep(4 * took);
        request();
    }
    let open = t.duty();
    let sched = rt.scheduler().unwrap();
    assert!(!sched.sustained(0b1));
    // A long wait that is no idleness between requests (a run's start), forgotten: busy
    // again at once, and the wait does not count against its next request.
    std::thread::sleep(40 * took);
    t.restart_duty();
    assert!(t.duty() == 1.0 && sched.sustained(0b1));
    request();
    assert!(t.duty() >= rightsize::runtime::policy::SUSTAINED, "{}", t.duty());
    for _ in 0..40 {
        std::thread::sleep(4 * took);
        request();
    }
    assert!(t.duty() < 0.4, "{}", t.duty());
    for _ in 0..40 {
        request();
    }
    let closed = t.duty();
    println!("duty: {open:.2} busy a fifth of the time, {closed:.2} in a closed loop (requests of {took:?})");
    assert!(open < 0.4, "{open}");
    assert!(closed >= rightsize::runtime::policy::SUSTAINED, "{closed}");
    assert!(sched.sustained(0b1));
    drop(t);
    assert!(sched.sustained(0b1), "a new tenant of the id counts as busy");
}

/// A kernel from outside the library (the library's own `smid_record` and `vector_add_f16`,
/// loaded again from their fatbin as a foreign module) takes the tenant's placement step: on a
/// static window of 32 SMs its blocks stay on 32 SMs at most, a grid given by work units is
/// sized for the window, and it runs after the tenant's earlier library kernel it reads.
#[test]
#[ignore = "needs a CUDA GPU"]
fn foreign_kernels_take_the_tenants_placement_step() {
    let rt = scheduled_runtime(Box::new(Static { windows: vec![Some(GroupRange { first: 3, count: 4 })] }), 16);
    let t = Tenant::scheduled(rt.clone(), 0, PriorityClass::BestEffort).unwrap();
    let dev = rt.device();
    let foreign = |id: KernelId| {
        let module = ForeignModule::load(dev, id.module().image()).unwrap();
        let name = id.symbol().to_str().unwrap();
        module.kernel(dev, name, [id.block_threads(), 1, 1], id.dynamic_smem_bytes()).unwrap()
    };
    let (smid, add) = (foreign(KernelId::SmidRecord), foreign(KernelId::VectorAddF16));
    let missing = ForeignModule::load(dev, KernelId::SmidRecord.module().image())
        .unwrap()
        .kernel(dev, "no_such_kernel", [128, 1, 1], 0)
        .unwrap_err();
    assert!(missing.to_string().contains("no_such_kernel"), "{missing}");
    assert!(ForeignModule::load(dev, b"\x01\x02garbage").is_err());

    // Confined to the window, the grid sized for it.
    let units = 4 * 32 * u64::from(smid.blocks_per_sm());
    let out = DeviceBuffer::<u32>::filled(dev, units as usize, 0xff).unwrap();
    let p = SmidParams { sm: out.ptr(), spin_cycles: 20_000, units: units as u32, _pad: 0 };
    // A zero ticket: units by block index, no claims (kernels/abi.h, RsTicket).
    let ticket = RsTicket::default();
    let mut args = [&p as *const SmidParams as *mut std::ffi::c_void, &ticket as *const RsTicket as *mut _];
    // SAFETY: `out` holds `units` entries; the arguments are the kernel's params and ticket.
    let blocks =
        unsafe { t.submit(Foreign { kernel: &smid, grid: ForeignGrid::Units(units), args: args.as_mut_ptr() }) }
            .unwrap();
    t.synchronize().unwrap();
    let ids = out.to_host().unwrap();
    assert!(ids.iter().all(|&s| s != u32::MAX), "a work unit left its entry unwritten");
    let sms: BTreeSet<u32> = ids.into_iter().collect();
    assert_eq!(blocks, 32 * u64::from(smid.blocks_per_sm()), "grid by units on 32 SMs");
    assert!(!sms.is_empty() && sms.len() <= 32, "{} SMs: {sms:?}", sms.len());
    assert_eq!(t.sms_hint(), 32);

    // Ordered after the library kernel whose output it reads: c = a + b, then d = c + a.
    let mut rng = fresh_rng("foreign");
    let n = 1 << 20;
    let a: Vec<f16> = (0..n).map(|_| f16::from_f32(rng.random_range(0..500) as f32)).collect();
    let b: Vec<f16> = (0..n).map(|_| f16::from_f32(rng.random_range(0..500) as f32)).collect();
    let (da, db) = (DeviceBuffer::from_host(dev, &a).unwrap(), DeviceBuffer::from_host(dev, &b).unwrap());
    let (dc, dd) = (DeviceBuffer::<f16>::filled(dev, n, 0).unwrap(), DeviceBuffer::<f16>::filled(dev, n, 0).unwrap());
    let first = VectorAddParams { a: da.ptr(), b: db.ptr(), c: dc.ptr(), n: n as u64 };
    let then = VectorAddParams { a: dc.ptr(), b: da.ptr(), c: dd.ptr(), n: n as u64 };
    let mut args = [&then as *const VectorAddParams as *mut std::ffi::c_void, &ticket as *const RsTicket as *mut _];
    // SAFETY: every buffer holds `n` halves.
    unsafe {
        t.launch(VECTOR_ADD_F16, &first).unwrap();
        t.submit(Foreign { kernel: &add, grid: ForeignGrid::Fixed([7, 1, 1]), args: args.as_mut_ptr() }).unwrap();
    }
    t.synchronize().unwrap();
    let d = dd.to_host().unwrap();
    let wrong = (0..n).filter(|&i| d[i].to_f32() != 2.0 * a[i].to_f32() + b[i].to_f32()).count();
    assert_eq!(wrong, 0, "d = (a + b) + a, on a grid of 7 blocks");
    assert!(rt.scheduler().unwrap().is_idle());
    println!("foreign kernels: {blocks} blocks by units on {} SMs of a 32-SM window; a dependent one exact", sms.len());
}

//! What each launch needs, and launches timed for a profile.
//!
//! *Need* (`RIGHTSIZE_PROFILE`, an application's profile from `rightsize profile --app`): a
//! launch needs its knee — the fewest SMs within ε of its best — looked up by the kernel's name
//! and launch shape; a kernel the profile lacks needs at most its blocks (it cannot spread over
//! more SMs), a cuBLAS call the profile lacks the whole device. On a board each process says
//! what its recent launches needed, and the busy processes' parts are sized by those needs.
//!
//! *Fits* (`RIGHTSIZE_FIT=1`): a kernel the profile lacks (or every kernel, without one) gets
//! an online model of its latency against its SMs, `T(k) = a/k + b`
//! ([`rightsize::profiler::fit::LatencyFit`]), from one in [`SAMPLE_EVERY`] of its launches
//! timed on the SMs it ran on (its part, or the whole device); once the model has two SM
//! counts, the kernel needs the model's knee (at most its blocks) instead of its blocks.
//!
//! *Recording* (`RIGHTSIZE_RECORD=FILE`): every launch and cuBLAS call is timed with a pair of
//! CUDA events on the stream it runs on; at exit FILE gets one JSON line per (name, shape)
//! ([`rightsize::profiler::app::Recorded`]). `rightsize profile --app` runs an application so
//! once per SM count and merges the records into a profile.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::OnceLock;

use cudarc::driver::sys::{self, CUevent, CUfunction, CUresult, CUstream};
use parking_lot::Mutex;
use rightsize::profiler::app::interposer_log::FitsSeen;
pub(crate) use rightsize::profiler::app::Shape;
use rightsize::profiler::app::{Recorded, MAX_SAMPLES};
use rightsize::profiler::fit::LatencyFit;
use rightsize::profiler::Profile;

/// The SMs a (name, shape) needs, from `RIGHTSIZE_PROFILE`.
pub(crate) struct Knees(HashMap<String, HashMap<Shape, u32>>);

impl Knees {
    /// The knees of `profile`'s application kernels.
    pub(crate) fn of(profile: &Profile) -> Knees {
        let mut m: HashMap<String, HashMap<Shape, u32>> = HashMap::new();
        for k in &profile.app_kernels {
            m.entry(k.name.clone()).or_default().insert(k.shape, k.min_sms.max(1));
        }
        Knees(m)
    }

    fn get(&self, name: &str, shape: &Shape) -> Option<u32> {
        self.0.get(name)?.get(shape).copied()
    }
}

/// The knees of `RIGHTSIZE_PROFILE`, read on first use; `None` when unset or unusable (said
/// once on stderr: a file that cannot be read, or a profile of another GPU).
fn knees() -> Option<&'static Knees> {
    static KNEES: OnceLock<Option<Knees>> = OnceLock::new();
    KNEES
        .get_or_init(|| {
            let path = std::env::var_os("RIGHTSIZE_PROFILE")?;
            let ordinal = super::setting("RIGHTSIZE_DEVICE").unwrap_or(0) as usize;
            let loaded = Profile::load(std::path::Path::new(&path)).map_err(|e| e.to_string()).and_then(|p| {
                let device = crate::target::keeping_context(|| rightsize::runtime::Device::open(ordinal));
                let device = device.map_err(|e| e.to_string())?;
                p.check_device(device.info()).map_err(|e| e.to_string())?;
                Ok(p)
            });
            match loaded {
                Ok(p) if p.app_kernels.is_empty() => {
                    eprintln!(
                        "rightsize preload: {} has no application kernels (make one with `rightsize profile --app`); \
                         launches are sized by their blocks",
                        std::path::Path::new(&path).display()
                    );
                    None
                }
                Ok(p) => Some(Knees::of(&p)),
                Err(e) => {
                    eprintln!(
                        "rightsize preload: RIGHTSIZE_PROFILE not used ({e}); launches are sized by their blocks"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// The name the driver gives function `f` (a `CUfunction` or a `CUkernel`).
pub(crate) fn function_name(f: CUfunction) -> Option<String> {
    let mut p = std::ptr::null();
    // SAFETY: writes one pointer to a name the driver owns; a handle of the other kind is
    // refused.
    let r = unsafe {
        match sys::cuFuncGetName(&mut p, f) {
            CUresult::CUDA_SUCCESS => CUresult::CUDA_SUCCESS,
            _ => sys::cuKernelGetName(&mut p, f.cast()),
        }
    };
    // SAFETY: a NUL-terminated name the driver keeps while the function lives.
    (r == CUresult::CUDA_SUCCESS && !p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// A kernel's shape: its grid and block.
pub(crate) fn kernel_shape(grid: [u32; 3], block: [u32; 3]) -> Shape {
    let [gx, gy, gz] = grid.map(u64::from);
    let [bx, by, bz] = block.map(u64::from);
    [gx, gy, gz, bx, by, bz]
}

thread_local! {
    /// The profile's need of each (function, shape) this thread launched (`None`: not in it).
    static NEEDS: RefCell<HashMap<(usize, Shape), Option<u32>>> = RefCell::default();
    /// This thread is inside a timed launch: a launch it makes from there (cuBLAS calling
    /// cuBLASLt, say) is part of the one timed, not timed again.
    static TIMING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The SMs a launch of kernel `f` with `shape` and `blocks` blocks needs, and whether to time
/// it for its fit: the profile's knee; else its fit's knee, at most its blocks; else its blocks.
pub(crate) fn kernel_need(f: CUfunction, shape: &Shape, blocks: u64) -> (u32, bool) {
    let by_blocks = u32::try_from(blocks).unwrap_or(u32::MAX).max(1);
    let profiled = knees().and_then(|k| {
        NEEDS.with(|m| {
            *m.borrow_mut()
                .entry((f as usize, *shape))
                .or_insert_with(|| function_name(f).and_then(|n| k.get(&n, shape)))
        })
    });
    if let Some(n) = profiled {
        return (n, false);
    }
    match fitter().and_then(|fit| fit.launched((f as usize, *shape))) {
        Some((knee, sample)) => (knee.map_or(by_blocks, |k| k.min(by_blocks)), sample),
        None => (by_blocks, false),
    }
}

/// A kernel's launches are timed for its fit one in this many (the first included).
pub const SAMPLE_EVERY: u64 = 8;

/// The fits of `RIGHTSIZE_FIT=1`, by (function handle, shape).
struct Fitter {
    /// The device's SMs (what a launch left where it was put runs on) and partition step.
    device_sms: u32,
    granularity: u32,
    state: Mutex<FitState>,
}

#[derive(Default)]
struct FitState {
    fits: HashMap<(usize, Shape), Fitted>,
    /// Launches timed, with what they were and the SMs they ran on.
    timings: Timings<((usize, Shape), u32)>,
}

#[derive(Default)]
struct Fitted {
    launches: u64,
    fit: LatencyFit,
    /// The fit's knee, refreshed at each completion added.
    knee: Option<u32>,
}

impl FitState {
    /// Reads the timed launches that have ended into their fits.
    fn drain(&mut self, wait: bool, device_sms: u32, granularity: u32) {
        let FitState { fits, timings } = self;
        timings.drain(wait, |&(key, sms), us| Self::completed(fits, key, sms, us, device_sms, granularity));
    }

    /// A launch of `key` took `us` on `sms` SMs: into its fit, and its knee refreshed.
    fn completed(
        fits: &mut HashMap<(usize, Shape), Fitted>,
        key: (usize, Shape),
        sms: u32,
        us: f64,
        device_sms: u32,
        granularity: u32,
    ) {
        if let Some(f) = fits.get_mut(&key) {
            f.fit.add(sms, us);
            f.knee = f.fit.knee(device_sms, granularity, FIT_EPSILON, FIT_ABS_TOL_US);
        }
    }
}

/// The fits' ε and absolute tolerance: the profiler's defaults.
const FIT_EPSILON: f64 = 0.05;
const FIT_ABS_TOL_US: f64 = 0.5;

impl Fitter {
    /// A launch of `key`: its fit's knee so far, and whether to time this one. `None` when
    /// another thread holds the fits (the launch is sized by its blocks, not waited on).
    fn launched(&self, key: (usize, Shape)) -> Option<(Option<u32>, bool)> {
        let mut st = self.state.try_lock()?;
        let f = st.fits.entry(key).or_default();
        f.launches += 1;
        let (knee, sample) = (f.knee, f.launches % SAMPLE_EVERY == 1);
        if sample {
            st.drain(false, self.device_sms, self.granularity);
        }
        Some((knee, sample))
    }
}

/// What the fits saw (`None` without `RIGHTSIZE_FIT`): kernels (by function and shape) seen,
/// those with a model (and so a knee), completions timed, and how many kernels have each knee.
pub(crate) fn fits_report() -> Option<FitsSeen> {
    let fitter = fitter()?;
    let mut st = fitter.state.lock();
    st.drain(true, fitter.device_sms, fitter.granularity);
    let mut knees: std::collections::BTreeMap<u32, u64> = Default::default();
    for f in st.fits.values() {
        if let Some(k) = f.knee {
            *knees.entry(k).or_default() += 1;
        }
    }
    let completions: u32 = st.fits.values().map(|f| f.fit.completions()).sum();
    Some(FitsSeen {
        kernels: st.fits.len() as u64,
        modelled: st.fits.values().filter(|f| f.knee.is_some()).count() as u64,
        completions: u64::from(completions),
        knees,
    })
}

/// The fits, on first use; `None` unless `RIGHTSIZE_FIT=1` and the device has partitions.
fn fitter() -> Option<&'static Fitter> {
    static FITTER: OnceLock<Option<Fitter>> = OnceLock::new();
    FITTER
        .get_or_init(|| {
            if super::setting("RIGHTSIZE_FIT") != Some(1) {
                return None;
            }
            let ordinal = super::setting("RIGHTSIZE_DEVICE").unwrap_or(0) as usize;
            let device = crate::target::keeping_context(|| rightsize::runtime::Device::open(ordinal));
            let found = device.map_err(|e| e.to_string()).and_then(|d| {
                let t = d.info().partitions.topology().map_err(str::to_owned)?;
                Ok(Fitter { device_sms: d.info().sm_count, granularity: t.granularity, state: Mutex::default() })
            });
            found.map_err(|e| eprintln!("rightsize preload: RIGHTSIZE_FIT not used ({e})")).ok()
        })
        .as_ref()
}

/// The SMs a library call `name` of `shape` needs (the whole device where unknown).
pub(crate) fn call_need(name: &str, shape: &Shape) -> u32 {
    knees().and_then(|k| k.get(name, shape)).unwrap_or(u32::MAX)
}

/// Launches timed, by (name, shape).
struct Recorder {
    path: std::path::PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Each (name, shape) recorded, in first-launch order, with its index in `index`.
    recorded: Vec<Recorded>,
    index: HashMap<(String, Shape), usize>,
    /// The index of each (function handle or call, shape) launched.
    by_id: HashMap<(usize, Shape), usize>,
    /// Launches timed, by index in `recorded`.
    timings: Timings<usize>,
}

/// Launches timed by a pair of CUDA events, each with what it is (`K`), and the event pairs
/// read and free again.
struct Timings<K> {
    pending: Vec<(K, CUevent, CUevent)>,
    spare: Vec<(CUevent, CUevent)>,
}

impl<K> Default for Timings<K> {
    fn default() -> Self {
        Timings { pending: Vec::new(), spare: Vec::new() }
    }
}

// SAFETY: the events are driver handles, usable from any thread.
unsafe impl<K: Send> Send for Timings<K> {}

/// Reads pending launches once this many wait.
const DRAIN_AT: usize = 1024;

impl<K> Timings<K> {
    /// A free pair of timing events (made in the current context when none is free).
    fn events(&mut self) -> Option<(CUevent, CUevent)> {
        if let Some(p) = self.spare.pop() {
            return Some(p);
        }
        let (mut a, mut b) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: two events of the current context, kept for the process's life.
        let ok = unsafe {
            sys::cuEventCreate(&mut a, sys::CUevent_flags::CU_EVENT_DEFAULT as u32) == CUresult::CUDA_SUCCESS
                && sys::cuEventCreate(&mut b, sys::CUevent_flags::CU_EVENT_DEFAULT as u32) == CUresult::CUDA_SUCCESS
        };
        ok.then_some((a, b))
    }

    /// Reads the launches that have ended, oldest first, up to the first that has not (all of
    /// them, waiting, with `wait`), telling `done` each one's µs.
    fn drain(&mut self, wait: bool, done: impl FnMut(&K, f64)) {
        if !self.pending.is_empty() {
            relaxed(|| self.drain_now(wait, done));
        }
    }

    fn drain_now(&mut self, wait: bool, mut done: impl FnMut(&K, f64)) {
        let pending = std::mem::take(&mut self.pending);
        let mut rest = pending.into_iter();
        while let Some((k, start, end)) = rest.next() {
            // SAFETY: events recorded by `timed`.
            let state = unsafe {
                if wait {
                    sys::cuEventSynchronize(end)
                } else {
                    sys::cuEventQuery(end)
                }
            };
            if state == CUresult::CUDA_ERROR_NOT_READY {
                self.pending.push((k, start, end));
                self.pending.extend(rest);
                return;
            }
            let mut ms = 0f32;
            // SAFETY: two recorded events; writes one float.
            if state == CUresult::CUDA_SUCCESS
                && unsafe { sys::cuEventElapsedTime_v2(&mut ms, start, end) } == CUresult::CUDA_SUCCESS
            {
                done(&k, f64::from(ms) * 1e3);
            }
            self.spare.push((start, end));
        }
    }

    /// Keeps a pair taken by [`events`](Self::events): as `key`'s launch when `timed`, free
    /// again when not. Says whether it is time to [`drain`](Self::drain).
    fn keep(&mut self, key: K, (start, end): (CUevent, CUevent), timed: bool) -> bool {
        if timed {
            self.pending.push((key, start, end));
            self.pending.len() % DRAIN_AT == 0
        } else {
            self.spare.push((start, end));
            false
        }
    }
}

/// `call` with the calling thread's stream-capture mode relaxed, its own restored after. An
/// event query or wait, or a stream made, is a "potentially unsafe" call, which a graph
/// capture under way (this thread's, or another's begun in global mode) forbids and is
/// invalidated by; what is called here never touches a capture (the events read are never
/// part of one — a launch being captured is not timed — and a new stream is in none), so it
/// cannot change the application's graph.
pub(crate) fn relaxed<T>(call: impl FnOnce() -> T) -> T {
    let mut mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED;
    // SAFETY: swaps the calling thread's mode; writes the one it had.
    let swapped = unsafe { sys::cuThreadExchangeStreamCaptureMode(&mut mode) } == CUresult::CUDA_SUCCESS;
    let r = call();
    if swapped {
        // SAFETY: as above, putting the thread's own mode back.
        unsafe { sys::cuThreadExchangeStreamCaptureMode(&mut mode) };
    }
    r
}

/// Runs `launch` on `stream` between the events of a pair; says whether it was timed (`ok`
/// says it was issued, and both events were recorded). A launch it makes itself (cuBLAS
/// calling cuBLASLt, say) is part of this one, not timed again.
fn between<R>(
    stream: CUstream,
    (start, end): (CUevent, CUevent),
    ok: impl Fn(&R) -> bool,
    launch: impl FnOnce() -> R,
) -> (R, bool) {
    // SAFETY: events of this process on a live stream.
    let began = unsafe { sys::cuEventRecord(start, stream) } == CUresult::CUDA_SUCCESS;
    TIMING.with(|t| t.set(true));
    let r = launch();
    TIMING.with(|t| t.set(false));
    // SAFETY: as above.
    let timed = began && ok(&r) && unsafe { sys::cuEventRecord(end, stream) } == CUresult::CUDA_SUCCESS;
    (r, timed)
}

/// Adds a completion to a record.
fn add(r: &mut Recorded, us: f64) {
    r.calls += 1;
    if r.us.len() < MAX_SAMPLES {
        r.us.push(us);
    }
}

impl State {
    /// The index in `recorded` of (`id`, `shape`), named by `name()` the first time.
    fn index_of(&mut self, id: usize, shape: Shape, name: impl FnOnce() -> Option<String>) -> Option<usize> {
        if let Some(&i) = self.by_id.get(&(id, shape)) {
            return Some(i);
        }
        let name = name()?;
        let next = self.recorded.len();
        let i = *self.index.entry((name.clone(), shape)).or_insert(next);
        if i == next {
            self.recorded.push(Recorded { name, shape, calls: 0, us: Vec::new() });
        }
        self.by_id.insert((id, shape), i);
        Some(i)
    }
}

fn recorder() -> Option<&'static Recorder> {
    static RECORDER: OnceLock<Option<Recorder>> = OnceLock::new();
    RECORDER
        .get_or_init(|| {
            let path = std::env::var_os("RIGHTSIZE_RECORD")?.into();
            super::at_exit(write_record);
            Some(Recorder { path, state: Mutex::default() })
        })
        .as_ref()
}

/// Whether launches are being recorded.
pub(crate) fn recording() -> bool {
    recorder().is_some()
}

/// Whether a launch's shape is used: to look its knee up, or to record it.
pub(crate) fn shapes_wanted() -> bool {
    knees().is_some() || recording()
}

/// Runs `launch` on `stream`, timed when recording and `ok` says it was issued, as the
/// (name, shape) of `id` — a function handle, or a library call's name's address — and `shape`;
/// `name()` is asked once per (id, shape). The record's lock is not held across the launch.
/// When not recording, a launch `fit_sms` says to time for its fit (`Some` of the SMs it runs
/// on, 0 for the whole device) is timed for it.
pub(crate) fn timed<R>(
    stream: CUstream,
    id: usize,
    shape: Shape,
    fit_sms: Option<u32>,
    name: impl FnOnce() -> Option<String>,
    ok: impl Fn(&R) -> bool,
    launch: impl FnOnce() -> R,
) -> R {
    let rec = recorder();
    let fit = if rec.is_none() { fit_sms.and_then(|k| Some((fitter()?, k))) } else { None };
    if (rec.is_none() && fit.is_none()) || TIMING.with(std::cell::Cell::get) {
        return launch();
    }
    let mut capture = sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE;
    // SAFETY: a live stream; writes one enum. A launch being captured is not timed (events
    // recorded there would become nodes of the application's graph).
    let r = unsafe { sys::cuStreamIsCapturing(stream, &mut capture) };
    if r != CUresult::CUDA_SUCCESS || capture != sys::CUstreamCaptureStatus::CU_STREAM_CAPTURE_STATUS_NONE {
        return launch();
    }
    let Some(rec) = rec else {
        let Some((fitter, sms)) = fit else { return launch() };
        let key = ((id, shape), if sms == 0 { fitter.device_sms } else { sms });
        // Only tried before the launch (held by another thread: not timed); taken after it,
        // briefly, to keep the events.
        let Some(pair) = fitter.state.try_lock().and_then(|mut st| st.timings.events()) else { return launch() };
        let (r, timed) = between(stream, pair, ok, launch);
        let mut st = fitter.state.lock();
        if st.timings.keep(key, pair, timed) {
            st.drain(false, fitter.device_sms, fitter.granularity);
        }
        return r;
    };
    let taken = {
        let mut st = rec.state.lock();
        st.index_of(id, shape, name).and_then(|i| Some((i, st.timings.events()?)))
    };
    let Some((i, pair)) = taken else {
        return launch();
    };
    let (r, timed) = between(stream, pair, ok, launch);
    let mut st = rec.state.lock();
    if st.timings.keep(i, pair, timed) {
        let State { timings, recorded, .. } = &mut *st;
        timings.drain(false, |&i, us| add(&mut recorded[i], us));
    }
    r
}

/// Writes the record (at exit): every pending launch waited for, one JSON line per (name, shape).
extern "C" fn write_record() {
    let Some(rec) = recorder() else { return };
    let mut st = rec.state.lock();
    let State { timings, recorded, .. } = &mut *st;
    timings.drain(true, |&i, us| add(&mut recorded[i], us));
    let mut text = String::new();
    for r in &st.recorded {
        if let Ok(line) = serde_json::to_string(r) {
            text += &line;
            text.push('\n');
        }
    }
    if let Err(e) = std::fs::write(&rec.path, text) {
        eprintln!("rightsize preload: cannot write {}: {e}", rec.path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rightsize::profiler::{AppKernel, Point};

    #[test]
    fn knees_are_found_by_name_and_shape_only() {
        let mut p: Profile = serde_json::from_str(
            r#"{"schema_version": 5, "gpu": "G", "sm_count": 132, "granularity": 8, "driver": null,
                "kernel_image_hash": "0", "model": "app: x", "request": "x", "epsilon": 0.05,
                "abs_tol_us": 0.5, "repeats": 1, "switch_us": 0.0, "kernels": [], "request_curve": []}"#,
        )
        .unwrap();
        let kernel = |name: &str, shape: Shape, min_sms| AppKernel {
            name: name.into(),
            shape,
            calls: 1,
            full_us: 10.0,
            curve: vec![Point { sms: 132, us: 10.0 }],
            min_sms,
        };
        p.app_kernels = vec![kernel("gemm", [8, 1, 1, 128, 1, 1], 16), kernel("gemm", [64, 1, 1, 128, 1, 1], 0)];
        let k = Knees::of(&p);
        assert_eq!(k.get("gemm", &[8, 1, 1, 128, 1, 1]), Some(16));
        assert_eq!(k.get("gemm", &[64, 1, 1, 128, 1, 1]), Some(1), "a knee of 0 reads as one SM");
        assert_eq!(k.get("gemm", &[9, 1, 1, 128, 1, 1]), None);
        assert_eq!(k.get("norm", &[8, 1, 1, 128, 1, 1]), None);
        assert_eq!(kernel_shape([3, 2, 1], [256, 1, 1]), [3, 2, 1, 256, 1, 1]);
    }

    #[test]
    fn a_fit_times_one_launch_in_eight_and_sizes_by_its_knee_once_it_has_two_sm_counts() {
        let fitter = Fitter { device_sms: 132, granularity: 8, state: Mutex::default() };
        let key = (7usize, [64, 1, 1, 256, 1, 1]);
        let samples: Vec<bool> = (0..17).map(|_| fitter.launched(key).unwrap().1).collect();
        assert_eq!(samples.iter().filter(|&&s| s).count(), 3, "launches 1, 9 and 17: {samples:?}");
        assert!(samples[0] && samples[8] && samples[16]);
        let mut st = fitter.state.lock();
        // T(k) = 160/k + 40 µs, seen on the whole device and on a 24-SM part: knee 56.
        FitState::completed(&mut st.fits, key, 132, 160.0 / 132.0 + 40.0, 132, 8);
        assert_eq!(st.fits[&key].knee, None, "one SM count is no model");
        FitState::completed(&mut st.fits, key, 24, 160.0 / 24.0 + 40.0, 132, 8);
        assert_eq!(st.fits[&key].knee, Some(56));
        FitState::completed(&mut st.fits, (8, key.1), 24, 1.0, 132, 8);
        assert!(!st.fits.contains_key(&(8, key.1)), "a completion of no kernel launched is dropped");
        drop(st);
        assert_eq!(fitter.launched(key), Some((Some(56), false)));
        // Another thread holding the fits: sized by blocks, not waited on.
        let held = fitter.state.lock();
        assert_eq!(fitter.launched(key), None);
        drop(held);
    }

    #[test]
    fn without_a_profile_a_kernel_needs_its_blocks_and_a_call_the_device() {
        assert_eq!(kernel_need(std::ptr::null_mut(), &[4, 2, 1, 64, 1, 1], 8), (8, false));
        assert_eq!(kernel_need(std::ptr::null_mut(), &[0; 6], 0), (1, false));
        assert_eq!(kernel_need(std::ptr::null_mut(), &[0; 6], u64::MAX), (u32::MAX, false));
        assert_eq!(call_need("cublasGemmEx", &[0; 6]), u32::MAX);
        assert!(!recording());
    }
}

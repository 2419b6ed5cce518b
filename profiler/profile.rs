//! The profile file format: a [`Profile`] of a request (its device, build and settings), each
//! kernel's curves and knees ([`KernelProfile`]), the request's own curve ([`RequestPoint`]);
//! reading and writing it, refusing one measured elsewhere, and what the runtime and the
//! harness read from it (the request's time on each SM count, the knees table).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::app::AppKernel;
use crate::kernels::{kernels_hash, KernelId};
use crate::runtime::{DeviceInfo, MinSms};

/// Version of the profile file format. 2: the shape keys of decode attention and KV append no
/// longer include the cache's capacity. 3: `switch_us`, counted in the knees. 4: the request's
/// own curve (`request_curve`). 5: each kernel's curve beside a co-runner and its knee
/// there (`beside`, `min_sms_beside`); the curve's kernels chosen for each partition; an
/// application's kernels by name and launch shape (`app_kernels`, optional).
pub const SCHEMA_VERSION: u32 = 5;

/// One point of a request's curve: the request run on a partition, with the kernels (tiles,
/// grids) chosen for that partition's SMs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RequestPoint {
    /// SMs of the partition (or the whole device).
    pub sms: u32,
    /// Median time of an encoder forward, or of a decoder's prefill, µs.
    pub us: f64,
    /// Median time of one decode step, µs (0 for encoders).
    pub step_us: f64,
    /// As `us`, beside a co-runner streaming memory on the groups after the partition (0
    /// where it did not run: the whole device, the partition of every group, and the windows
    /// with the SMs outside the groups).
    #[serde(default)]
    pub co_us: f64,
    /// As `step_us`, beside that co-runner.
    #[serde(default)]
    pub co_step_us: f64,
}

/// One point of a latency curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// SMs the kernel could use (partition size, or grid ÷ blocks per SM for grid-only sizing).
    pub sms: u32,
    /// Median latency in microseconds.
    pub us: f64,
}

/// The profile of one (kernel, shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelProfile {
    /// The kernel.
    pub kernel: KernelId,
    /// Its shape key, hex ([`crate::kernels::Params::shape_key`]).
    pub shape_key: String,
    /// Work units of the launch.
    pub units: u64,
    /// Times the request launches it.
    pub calls: u32,
    /// Latency on the whole device, µs.
    pub full_us: f64,
    /// Latency on each partition size (green contexts), ascending SMs, then the whole device;
    /// on a partition, the kernel the engine chooses for its SMs (same operation and shape,
    /// its tiles and grid picked for that many SMs).
    pub curve: Vec<Point>,
    /// Latency on each partition smaller than the device beside a [`CoRunner`] streaming
    /// memory on the groups it leaves, ascending SMs (no whole-device point: the whole device
    /// leaves none); empty where the device has no room for one.
    ///
    /// [`CoRunner`]: super::CoRunner
    pub beside: Vec<Point>,
    /// The other kernels (and their shape keys, hex) the engine chooses for this launch on
    /// the partitions of the curve, where they differ from this one: the runtime looks their
    /// knees up under these keys too.
    pub variants: Vec<(KernelId, String)>,
    /// Latency on the whole device with the grid limited to that many SMs' worth of blocks.
    pub grid_only: Vec<Point>,
    /// The latency knee: fewest SMs (a partition size, or the whole device) whose latency,
    /// plus [`Profile::switch_us`] on a partition, is within ε of its full speed ([`knee`]).
    ///
    /// [`knee`]: super::knee
    pub min_sms: u32,
    /// The latency knee beside the co-runner: fewest SMs whose latency there is within ε of
    /// the least on [`KernelProfile::beside`] (the best a kernel can do while other work holds
    /// the rest of the device); 0 where not measured.
    pub min_sms_beside: u32,
}

/// A profile: the device and kernels it was measured on, and every kernel's curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// GPU name, e.g. "NVIDIA H200".
    pub gpu: String,
    /// SMs of that GPU.
    pub sm_count: u32,
    /// SMs per partition group.
    pub granularity: u32,
    /// Driver release.
    pub driver: Option<String>,
    /// Hash of the kernels it times, as they were when it was measured ([`Profile::kernels_hash`]:
    /// the code of their plain builds, nvcc's version and flags), hex. An application's profile
    /// records the whole library's ([`crate::kernels::IMAGE_HASH`]), as it times none of them.
    pub kernel_image_hash: String,
    /// Model name.
    pub model: String,
    /// The request profiled, e.g. "prefill 8×128 + decode step (cache 128)".
    pub request: String,
    /// ε of the knee.
    pub epsilon: f64,
    /// Absolute tolerance of the knee, µs (timing noise floor).
    #[serde(default)]
    pub abs_tol_us: f64,
    /// Timed repeats per point.
    pub repeats: u32,
    /// A partition switch between two dependent kernels of a replayed plan, µs (measured on
    /// this request, see [`switch_cost_us`]); added to every partition's latency for the knee.
    ///
    /// [`switch_cost_us`]: super::switch_cost_us
    pub switch_us: f64,
    /// Every distinct (kernel, shape) of the request, in first-launch order.
    pub kernels: Vec<KernelProfile>,
    /// The whole request on every partition size, ascending SMs, then the whole device: what
    /// a tenant's throughput is on a window of that size (the krisp policy sizes windows by it).
    pub request_curve: Vec<RequestPoint>,
    /// An unmodified application's kernels and cuBLAS calls by name and launch shape
    /// (`rightsize profile --app`; [`app`]); empty in a profile of the engine's models.
    ///
    /// [`app`]: super::app
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_kernels: Vec<AppKernel>,
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Reading or writing the file failed.
    #[error("profile {path}: {reason}")]
    Io {
        /// File.
        path: String,
        /// What failed.
        reason: String,
    },
    /// The profile was measured elsewhere.
    #[error("profile was measured {measured}; this is {here}: profile again on this device and build")]
    Mismatch {
        /// What the profile says.
        measured: String,
        /// What this device and build are.
        here: String,
    },
    /// The runtime failed while profiling.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::Error),
}

impl Profile {
    /// The time of a request generating `new_tokens` tokens (the first by the prefill; 0 or
    /// 1 for one forward) on each profiled SM count, ascending: the request curve's prefill
    /// plus that many decode steps less one.
    pub fn request_us(&self, new_tokens: u32) -> Vec<(u32, f64)> {
        self.request_times(new_tokens, false)
    }

    /// As [`Profile::request_us`], beside the co-runner on the rest of the device: at the SM
    /// counts where the co-runner ran, and alone on the whole device (where there is no rest
    /// of the device for it); points measured alone elsewhere (the partition of every group,
    /// the windows that take the SMs outside the groups) are left out, not mixed in. A profile
    /// with no point beside the co-runner gives its curve alone.
    pub fn request_us_beside(&self, new_tokens: u32) -> Vec<(u32, f64)> {
        self.request_times(new_tokens, true)
    }

    /// The latency knee of a request generating `new_tokens` tokens ([`super::knees::knee`]
    /// with the profile's ε and tolerance): the fewest profiled SMs on which it runs within
    /// them of its best; `None` without a request curve.
    pub fn request_knee_sms(&self, new_tokens: u32) -> Option<u32> {
        let curve: Vec<Point> = self
            .request_us(new_tokens)
            .into_iter()
            .filter(|&(_, us)| us > 0.0)
            .map(|(sms, us)| Point { sms, us })
            .collect();
        (!curve.is_empty()).then(|| super::knees::knee(&curve, f64::INFINITY, self.epsilon, self.abs_tol_us, 0.0))
    }

    fn request_times(&self, new_tokens: u32, beside: bool) -> Vec<(u32, f64)> {
        let steps = f64::from(new_tokens.saturating_sub(1));
        let time = |p: &RequestPoint| match beside && p.co_us > 0.0 {
            true => p.co_us + steps * p.co_step_us,
            false => p.us + steps * p.step_us,
        };
        // A profile measured without a co-runner (`--no-beside`, an application's) has no
        // point beside one: its beside curve is its curve alone, as before there were points
        // alone only.
        let measured = self.request_curve.iter().any(|p| p.co_us > 0.0);
        let whole = self.request_curve.iter().map(|p| p.sms).max();
        let kept = |p: &&RequestPoint| !beside || !measured || p.co_us > 0.0 || Some(p.sms) == whole;
        self.request_curve.iter().filter(kept).map(|p| (p.sms, time(p))).collect()
    }

    /// Writes it as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), ProfileError> {
        let io = |reason: String| ProfileError::Io { path: path.display().to_string(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(e.to_string()))?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| io(e.to_string()))?;
        std::fs::write(path, text + "\n").map_err(|e| io(e.to_string()))
    }

    /// Reads a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProfileError::Io { path: path.display().to_string(), reason: e.to_string() })?;
        Profile::from_json(&text, &path.display().to_string())
    }

    /// A profile from its JSON text (read from `origin`, named in errors).
    pub fn from_json(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let io = |reason: String| ProfileError::Io { path: origin.to_string(), reason };
        // The version first, so a profile of another format says so rather than which field
        // it lacks.
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let v: Version = serde_json::from_str(text).map_err(|e| io(e.to_string()))?;
        if v.schema_version != SCHEMA_VERSION {
            return Err(io(format!(
                "schema version {} (this build reads {SCHEMA_VERSION}): profile again",
                v.schema_version
            )));
        }
        serde_json::from_str(text).map_err(|e| io(e.to_string()))
    }

    /// Refuses a profile measured on another GPU model (what an application's profile needs).
    pub fn check_device(&self, info: &DeviceInfo) -> Result<(), ProfileError> {
        if self.gpu != info.name || self.sm_count != info.sm_count {
            return Err(ProfileError::Mismatch {
                measured: format!("on {} with {} SMs", self.gpu, self.sm_count),
                here: format!("{} with {} SMs", info.name, info.sm_count),
            });
        }
        Ok(())
    }

    /// The hash of the kernels it times in this build (each kernel and variant of its request:
    /// [`kernels_hash`]), hex: what it records when measured, and what a build whose kernels
    /// it times are the same gives again.
    pub fn kernels_hash(&self) -> String {
        let ids =
            self.kernels.iter().flat_map(|k| std::iter::once(k.kernel).chain(k.variants.iter().map(|(id, _)| *id)));
        format!("{:016x}", kernels_hash(ids))
    }

    /// Whether it was measured with other kernels than this build's (its recorded hash is not
    /// [`Profile::kernels_hash`]): the comparison refuses it until it is measured again.
    pub fn is_stale(&self) -> bool {
        self.kernel_image_hash != self.kernels_hash()
    }

    /// The model profiles of `dir` (its `*.json` files but applications' profiles, which time
    /// their own kernels), by file name.
    pub fn models_in(dir: &Path) -> Result<Vec<(std::path::PathBuf, Profile)>, ProfileError> {
        let io = |e: std::io::Error| ProfileError::Io { path: dir.display().to_string(), reason: e.to_string() };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "json") {
                paths.push(path);
            }
        }
        paths.sort();
        let mut out = Vec::new();
        for path in paths {
            let p = Profile::load(&path)?;
            if p.app_kernels.is_empty() {
                out.push((path, p));
            }
        }
        Ok(out)
    }

    /// Refuses a profile measured on another GPU model or with other kernels than this build's.
    pub fn check(&self, info: &DeviceInfo) -> Result<(), ProfileError> {
        let here_hash = self.kernels_hash();
        if self.gpu != info.name || self.sm_count != info.sm_count || self.kernel_image_hash != here_hash {
            return Err(ProfileError::Mismatch {
                measured: format!(
                    "on {} with {} SMs, kernel images {}",
                    self.gpu, self.sm_count, self.kernel_image_hash
                ),
                here: format!("{} with {} SMs, kernel images {here_hash}", info.name, info.sm_count),
            });
        }
        Ok(())
    }

    /// The knees as the table the scheduler reads.
    pub fn min_sms(&self) -> MinSms {
        let mut m = MinSms::default();
        self.add_to(&mut m);
        m
    }

    /// Adds its knees to `table` (several profiles, one table), each under its kernel's key
    /// and its variants'.
    pub fn add_to(&self, table: &mut MinSms) {
        for k in &self.kernels {
            let keys = std::iter::once((k.kernel, &k.shape_key)).chain(k.variants.iter().map(|(id, s)| (*id, s)));
            for (kernel, shape) in keys {
                if let Ok(key) = u64::from_str_radix(shape, 16) {
                    table.insert(kernel, key, k.min_sms);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::tests::{device, sample};

    #[test]
    fn committed_profiles_are_of_this_builds_kernels() {
        // The default comparison refuses a profile of other kernels: an edit that changes what a
        // plain kernel compiles to (each kernel's hash covers its PTX, kernels/image_hash.rs)
        // must come with re-measured profiles of the requests that launch it
        // (`rightsize profile`; scripts/reprofile.sh measures the stale ones again on a GPU host).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        let mut seen = 0;
        for gpu in std::fs::read_dir(&dir).unwrap() {
            for (path, p) in Profile::models_in(&gpu.unwrap().path()).unwrap() {
                assert!(
                    !p.is_stale(),
                    "{}: measured with other kernels than this build's; measure it again (scripts/reprofile.sh \
                     on an H200)",
                    path.display()
                );
                seen += 1;
            }
        }
        assert!(seen >= 5, "{seen} profiles");
    }

    #[test]
    fn a_folder_lists_its_model_profiles_and_which_are_stale() {
        let dir = std::env::temp_dir().join(format!("rightsize-stale-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fresh = Profile { kernel_image_hash: sample().kernels_hash(), ..sample() };
        fresh.save(&dir.join("b-b8-s128.json")).unwrap();
        Profile { kernel_image_hash: "0000000000000000".into(), ..sample() }.save(&dir.join("a-b8-s128.json")).unwrap();
        std::fs::write(dir.join("notes.txt"), "not a profile").unwrap();
        let listed = Profile::models_in(&dir).unwrap();
        let names: Vec<_> = listed.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a-b8-s128.json", "b-b8-s128.json"], "the JSON files, by name");
        assert_eq!(listed.iter().map(|(_, p)| p.is_stale()).collect::<Vec<_>>(), [true, false]);
        // A file that is not a profile is an error, not a stale profile.
        std::fs::write(dir.join("c.json"), "{}").unwrap();
        assert!(Profile::models_in(&dir).is_err());
        assert!(Profile::models_in(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn request_time_counts_the_decode_steps_after_the_prefill() {
        let p = sample();
        assert_eq!(p.request_us(1), vec![(64, 200.0), (132, 100.0)]);
        assert_eq!(p.request_us(0), vec![(64, 200.0), (132, 100.0)]);
        assert_eq!(p.request_us(64), vec![(64, 200.0 + 63.0 * 12.0), (132, 100.0 + 630.0)]);
        assert_eq!(p.request_us_beside(64), vec![(64, 250.0 + 63.0 * 20.0), (132, 100.0 + 630.0)]);
        let s = p.summary();
        assert!(s.contains("| 64 | 200.0 | 12.0 | 0.52 | 250.0 | 20.0 | 0.41 |"), "{s}");
        assert!(s.contains("| 132 | 100.0 | 10.0 | 1.00 | – | – | – |"), "{s}");
        // A window with the SMs outside the groups (76 = 8 groups and 12), measured alone
        // only: in the request curve, not in the curve beside the co-runner.
        let mut q = p.clone();
        q.request_curve.insert(1, RequestPoint { sms: 76, us: 150.0, step_us: 11.0, co_us: 0.0, co_step_us: 0.0 });
        assert_eq!(q.request_us(1), vec![(64, 200.0), (76, 150.0), (132, 100.0)]);
        assert_eq!(q.request_us_beside(1), vec![(64, 250.0), (132, 100.0)]);
        // Measured without a co-runner (`--no-beside`, an application's profile): alone.
        for r in &mut q.request_curve {
            (r.co_us, r.co_step_us) = (0.0, 0.0);
        }
        assert_eq!(q.request_us_beside(1), q.request_us(1));
    }

    #[test]
    fn a_requests_knee_is_the_fewest_sms_within_epsilon_of_its_best() {
        let p = sample();
        assert_eq!(p.request_knee_sms(1), Some(132), "200 µs on 64 SMs is not within 5% of 100");
        // The committed bert-base batch-1 request: within 5% of its best from 64 SMs.
        let curve = [(8, 1211.0), (32, 694.0), (56, 590.0), (64, 575.5), (120, 560.0), (132, 561.0)];
        let bert = Profile {
            request_curve: curve.iter().map(|&(sms, us)| RequestPoint { sms, us, ..p.request_curve[0] }).collect(),
            ..p.clone()
        };
        assert_eq!(bert.request_knee_sms(0), Some(64));
        // No time: no knee.
        let none = Profile { request_curve: Vec::new(), ..p.clone() };
        assert_eq!(none.request_knee_sms(1), None);
        let zero = Profile { request_curve: vec![RequestPoint { us: 0.0, ..p.request_curve[0] }], ..p };
        assert_eq!(zero.request_knee_sms(1), None, "no time");
    }

    #[test]
    fn profiles_from_another_device_or_build_are_refused() {
        let p = sample();
        assert!(p.check(&device("NVIDIA H200", 132)).is_ok());
        let e = p.check(&device("NVIDIA H100 80GB HBM3", 132)).unwrap_err().to_string();
        assert!(e.contains("NVIDIA H200") && e.contains("H100") && e.contains("profile again"), "{e}");
        assert!(p.check(&device("NVIDIA H200", 114)).is_err());
        let other_build = Profile { kernel_image_hash: "0000000000000000".into(), ..p };
        assert!(other_build.check(&device("NVIDIA H200", 132)).is_err());
    }

    #[test]
    fn files_round_trip_and_mismatches_are_refused() {
        let p = sample();
        let dir = std::env::temp_dir().join(format!("rightsize-profile-{}", std::process::id()));
        let path = dir.join("p.json");
        p.save(&path).unwrap();
        assert_eq!(Profile::load(&path).unwrap(), p);
        let mut old = p.clone();
        old.schema_version = 0;
        old.save(&path).unwrap();
        assert!(Profile::load(&path).unwrap_err().to_string().contains("schema version 0"));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(Profile::load(&path), Err(ProfileError::Io { .. })));
        std::fs::remove_dir_all(&dir).ok();
        assert!(Profile::load(&path).is_err());
    }
}

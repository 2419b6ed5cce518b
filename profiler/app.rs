//! Profiling an unmodified application (`rightsize profile --app CMD`): the command runs once on
//! the whole device and once on each partition size, under the interposer
//! (`librightsize_preload.so`) with `RIGHTSIZE_RECORD` set, which times every kernel launch and
//! cuBLAS call with CUDA events and writes, at exit, one [`Recorded`] line per (name, launch
//! shape). [`app_profile`] merges the runs into the profile format's `app_kernels`: each
//! kernel's median latency per SM count and its knee ([`super::knee`]); the interposer then
//! sizes each launch from them (`RIGHTSIZE_PROFILE`).
//!
//! A launch's shape is its grid and block (x, y, z each) for a kernel; `m, n, k, batch,
//! transa, transb` for `cublasGemmEx`/`cublasGemmStridedBatchedEx`; the rows and columns of A
//! and B and the batch of D for `cublasLtMatmul`. Timing is by events on the launch's stream,
//! so a kernel's time is right where the application runs one stream at a time (PyTorch's
//! models do), and includes the wait for a kernel before it on another stream otherwise.
//!
//! The interposer's other file, its exit log of what it placed, is [`interposer_log`].

pub mod interposer_log;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::{knee, median, Point, Profile, ProfileError, SCHEMA_VERSION};
use crate::runtime::DeviceInfo;

/// A launch's shape (see the module's documentation).
pub type Shape = [u64; 6];

/// The file name of the interposer.
pub const PRELOAD_LIBRARY: &str = "librightsize_preload.so";

/// Samples kept per (name, shape) in one run's record: enough for a median.
pub const MAX_SAMPLES: usize = 512;

/// One (name, shape) of one run, as the interposer records it (a JSON line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// The kernel's name (as the driver gives it, mangled), or the cuBLAS function's.
    pub name: String,
    /// Its launch shape.
    pub shape: Shape,
    /// Launches seen.
    pub calls: u64,
    /// Times of the first [`MAX_SAMPLES`] launches timed, µs.
    pub us: Vec<f64>,
}

/// One (kernel, launch shape) of an application's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppKernel {
    /// The kernel's (mangled) name, or the cuBLAS function's.
    pub name: String,
    /// Its launch shape ([`Shape`]).
    pub shape: Shape,
    /// Launches of it in the whole-device run.
    pub calls: u64,
    /// Median latency on the whole device, µs.
    pub full_us: f64,
    /// Median latency on each SM count it was seen at, ascending SMs, the whole device last.
    pub curve: Vec<Point>,
    /// The latency knee over `curve` ([`super::knee`], no switch cost: the interposer's
    /// ordering is paid wherever a launch is placed).
    pub min_sms: u32,
}

/// Reads a record file of the interposer (JSON lines); a bad line is refused with its number.
pub fn read_record(path: &Path) -> Result<Vec<Recorded>, ProfileError> {
    let io = |reason: String| ProfileError::Io { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| io(e.to_string()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| io(format!("line {}: {e}", i + 1))))
        .collect()
}

/// The median of `us` (0 for none).
fn median_us(us: &[f64]) -> f64 {
    if us.is_empty() {
        return 0.0;
    }
    median(&mut us.to_vec())
}

/// An application's profile from its runs (`(SMs, record)`, the whole device's run with
/// `info.sm_count` SMs): every (name, shape) of the whole-device run, with its curve over the
/// runs it was seen in and its knee. Kernels seen only on partitions (a library that picks
/// kernels by the SMs it sees) are left out: the whole device has no time for them.
pub fn app_profile(
    info: &DeviceInfo,
    command: &str,
    runs: &[(u32, Vec<Recorded>)],
    epsilon: f64,
    abs_tol_us: f64,
) -> Profile {
    let whole = info.sm_count;
    let mut order: Vec<(u32, &Vec<Recorded>)> = runs.iter().map(|(s, r)| (*s, r)).collect();
    order.sort_by_key(|(sms, _)| *sms);
    let full = order.iter().rev().find(|(sms, _)| *sms == whole).map(|(_, r)| *r);
    let kernels: Vec<AppKernel> = full
        .into_iter()
        .flatten()
        .filter(|k| !k.us.is_empty())
        .map(|k| {
            let curve: Vec<Point> = order
                .iter()
                .filter_map(|(sms, rec)| {
                    let r = rec.iter().find(|r| r.name == k.name && r.shape == k.shape && !r.us.is_empty())?;
                    Some(Point { sms: *sms, us: median_us(&r.us) })
                })
                .collect();
            let full_us = median_us(&k.us);
            AppKernel {
                name: k.name.clone(),
                shape: k.shape,
                calls: k.calls,
                full_us,
                min_sms: knee(&curve, full_us, epsilon, abs_tol_us, 0.0),
                curve,
            }
        })
        .collect();
    let request_curve = order
        .iter()
        .map(|(sms, rec)| super::RequestPoint {
            sms: *sms,
            us: rec.iter().map(|r| median_us(&r.us) * r.calls as f64).sum(),
            step_us: 0.0,
            co_us: 0.0,
            co_step_us: 0.0,
        })
        .collect();
    Profile {
        schema_version: SCHEMA_VERSION,
        gpu: info.name.clone(),
        sm_count: info.sm_count,
        granularity: info.partitions.topology().map_or(0, |t| t.granularity),
        driver: info.driver_release.clone(),
        kernel_image_hash: format!("{:016x}", crate::kernels::IMAGE_HASH),
        model: format!("app: {command}"),
        request: format!("`{command}` run once per SM count"),
        epsilon,
        abs_tol_us,
        repeats: 1,
        switch_us: 0.0,
        kernels: Vec::new(),
        request_curve,
        app_kernels: kernels,
    }
}

/// The interposer: `$RIGHTSIZE_PRELOAD_LIB`, else [`PRELOAD_LIBRARY`] beside the program `exe`
/// or in the directory above it (cargo's `deps/`).
pub fn preload_library(exe: &Path) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("RIGHTSIZE_PRELOAD_LIB") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(format!("RIGHTSIZE_PRELOAD_LIB={} is not a file", p.display()));
        }
        return Ok(p);
    }
    let dir = exe.parent().ok_or_else(|| format!("{} has no directory", exe.display()))?;
    [Some(dir), dir.parent()].into_iter().flatten().map(|d| d.join(PRELOAD_LIBRARY)).find(|p| p.is_file()).ok_or_else(
        || {
            format!(
                "the interposer, {PRELOAD_LIBRARY}, is neither beside {} nor named by RIGHTSIZE_PRELOAD_LIB \
                 (build it: cargo build --release -p rightsize-preload)",
                exe.display()
            )
        },
    )
}

/// The SM counts `profile --app` runs on by default: 1, 2, 4 and 8 groups, the largest
/// partition, and the whole device.
pub fn default_sms(info: &DeviceInfo) -> Vec<u32> {
    let mut sms = match info.partitions.topology() {
        Ok(t) => [1, 2, 4, 8, t.groups].iter().filter(|&&g| g <= t.groups).map(|g| g * t.granularity).collect(),
        Err(_) => Vec::new(),
    };
    sms.push(info.sm_count);
    sms.dedup();
    sms
}

/// Parses `--sms` ("16,32,132"): SM counts, each at most `whole`.
pub fn parse_sms(list: &str, whole: u32) -> Result<Vec<u32>, String> {
    let mut sms = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let n: u32 = part.parse().map_err(|_| format!("--sms: {part:?} is not a number of SMs"))?;
        if n == 0 || n > whole {
            return Err(format!("--sms: {n} SMs; this GPU has 1 to {whole}"));
        }
        sms.push(n);
    }
    if sms.is_empty() {
        return Err("--sms: no SM count given".into());
    }
    sms.sort_unstable();
    sms.dedup();
    Ok(sms)
}

/// Runs `command` (through `sh -c`) once on each of `sms` (the whole device where it equals
/// `info.sm_count`) under the interposer `preload`, recording every launch, and merges the
/// runs ([`app_profile`]). `progress(done, total, sms)` is told before each run. A run that
/// fails or records nothing is refused, naming the SM count.
pub fn profile_app(
    info: &DeviceInfo,
    command: &str,
    sms: &[u32],
    preload: &Path,
    epsilon: f64,
    abs_tol_us: f64,
    mut progress: impl FnMut(usize, usize, u32),
) -> anyhow::Result<Profile> {
    use anyhow::{bail, Context as _};
    let mut sms = sms.to_vec();
    if !sms.contains(&info.sm_count) {
        sms.push(info.sm_count);
    }
    let dir = std::env::temp_dir().join(format!("rightsize-app-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let preload_env = match std::env::var("LD_PRELOAD") {
        Ok(v) if !v.trim().is_empty() => format!("{}:{v}", preload.display()),
        _ => preload.display().to_string(),
    };
    let mut runs = Vec::new();
    let result = (|| {
        for (i, &n) in sms.iter().enumerate() {
            progress(i, sms.len(), n);
            let record = dir.join(format!("{n}.jsonl"));
            let _ = std::fs::remove_file(&record);
            let mut cmd = Command::new("sh");
            // The application's own queues, not the ones this process took for itself.
            crate::runtime::queues::for_single_tenant_child(&mut cmd);
            cmd.arg("-c").arg(command).env("LD_PRELOAD", &preload_env).env("RIGHTSIZE_RECORD", &record);
            for v in
                ["RIGHTSIZE_SMS", "RIGHTSIZE_FIRST_GROUP", "RIGHTSIZE_REST", "RIGHTSIZE_BOARD", "RIGHTSIZE_PROFILE"]
            {
                cmd.env_remove(v);
            }
            if n < info.sm_count {
                // A window of exactly `n` SMs from group 0 (removed above: RIGHTSIZE_REST,
                // which would add the SMs outside the groups to a window of all of them).
                cmd.env("RIGHTSIZE_SMS", n.to_string());
            }
            let status = cmd.status().with_context(|| format!("cannot start `sh -c {command}`"))?;
            if !status.success() {
                bail!("`{command}` failed on {n} SMs ({status})");
            }
            let recorded = read_record(&record)
                .with_context(|| format!("`{command}` on {n} SMs left no record: did it launch CUDA kernels?"))?;
            if recorded.is_empty() {
                bail!("`{command}` launched no kernel the interposer saw on {n} SMs");
            }
            runs.push((n, recorded));
        }
        Ok(app_profile(info, command, &runs, epsilon, abs_tol_us))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Where `profile --app` writes by default: `<dir>/<gpu>/app-<command's program>.json`.
pub fn app_profile_path(dir: &Path, gpu: &str, command: &str) -> PathBuf {
    let program = command
        .split_whitespace()
        .find(|w| !w.contains('=') && !matches!(*w, "python" | "python3" | "env" | "-u"))
        .map(|w| Path::new(w).file_stem().map_or(w.to_string(), |s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "app".into());
    dir.join(super::slug(gpu)).join(format!("app-{}.json", super::slug(&program)))
}

/// A Markdown table of an application's profile: its kernels by share of the whole-device
/// run's GPU time (the first 30), each with its shape, calls, whole-device µs and knee; then
/// the run's kernel time per SM count.
pub fn summary(p: &Profile) -> String {
    use std::fmt::Write as _;
    let total: f64 = p.app_kernels.iter().map(|k| k.full_us * k.calls as f64).sum::<f64>().max(f64::MIN_POSITIVE);
    let mut order: Vec<&AppKernel> = p.app_kernels.iter().collect();
    order.sort_by(|a, b| (b.full_us * b.calls as f64).total_cmp(&(a.full_us * a.calls as f64)));
    let mut t = format!(
        "{} on {} ({} SMs), ε = {}, absolute tolerance {} µs\n\n| kernel | shape | calls | full-GPU µs | knee (SMs) | share of GPU time |\n|---|---|---:|---:|---:|---:|\n",
        p.model, p.gpu, p.sm_count, p.epsilon, p.abs_tol_us
    );
    for k in order.iter().take(30) {
        let name: String = k.name.chars().take(60).collect();
        let _ = writeln!(
            t,
            "| `{name}` | {:?} | {} | {:.1} | {} | {:.1}% |",
            k.shape,
            k.calls,
            k.full_us,
            k.min_sms,
            100.0 * k.full_us * k.calls as f64 / total
        );
    }
    if order.len() > 30 {
        let _ = writeln!(t, "\n({} more in the file)", order.len() - 30);
    }
    let _ = writeln!(t, "\n| SMs | kernel time of the run, ms |\n|---:|---:|");
    for q in &p.request_curve {
        let _ = writeln!(t, "| {} | {:.2} |", q.sms, q.us / 1e3);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::PartitionSupport;

    fn rec(name: &str, shape: Shape, calls: u64, us: &[f64]) -> Recorded {
        Recorded { name: name.into(), shape, calls, us: us.to_vec() }
    }

    fn h200() -> DeviceInfo {
        let mut info = crate::profiler::tests::device("NVIDIA H200", 132);
        info.partitions = PartitionSupport::Supported {
            granularity: 8,
            groups: 15,
            remaining_sms: 12,
            min_partition_sms: 8,
            coscheduled_alignment: 8,
        };
        info
    }

    #[test]
    fn runs_merge_into_curves_and_knees() {
        let info = h200();
        let gemm = [0, 1, 1, 128, 1, 1];
        let norm = [8, 1, 1, 256, 1, 1];
        let runs = vec![
            (132, vec![rec("gemm", gemm, 10, &[10.0, 11.0, 10.5]), rec("norm", norm, 20, &[2.0, 2.1, 2.0])]),
            (16, vec![rec("gemm", gemm, 10, &[80.0, 81.0, 79.0]), rec("norm", norm, 20, &[2.1, 2.0, 2.0])]),
            // A kernel only a partition run chose is left out; one the run did not time too.
            (64, vec![rec("gemm", gemm, 10, &[21.0]), rec("only-here", norm, 1, &[1.0]), rec("norm", norm, 20, &[])]),
        ];
        let p = app_profile(&info, "python3 app.py", &runs, 0.05, 0.5);
        assert_eq!(p.app_kernels.len(), 2);
        let g = &p.app_kernels[0];
        assert_eq!((g.name.as_str(), g.calls, g.full_us), ("gemm", 10, 10.5));
        assert_eq!(
            g.curve,
            vec![Point { sms: 16, us: 80.0 }, Point { sms: 64, us: 21.0 }, Point { sms: 132, us: 10.5 }]
        );
        assert_eq!(g.min_sms, 132, "a kernel that slows on every partition needs the device");
        let n = &p.app_kernels[1];
        assert_eq!(n.curve.iter().map(|q| q.sms).collect::<Vec<_>>(), vec![16, 132], "no time at 64: no point");
        assert_eq!(n.min_sms, 16, "a flat kernel needs the fewest SMs");
        assert_eq!(p.request_curve.iter().map(|q| q.sms).collect::<Vec<_>>(), vec![16, 64, 132]);
        assert!((p.request_curve[2].us - (10.5 * 10.0 + 2.0 * 20.0)).abs() < 1e-9);
        // It round-trips through the one profile format, and a profile of the engine's models
        // (no app_kernels) still reads.
        let back = Profile::from_json(&serde_json::to_string(&p).unwrap(), "test").unwrap();
        assert_eq!(back, p);
        assert!(summary(&p).contains("| `gemm` | [0, 1, 1, 128, 1, 1] | 10 | 10.5 | 132 |"));
    }

    #[test]
    fn records_and_sm_lists_are_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("rightsize-app-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.jsonl");
        std::fs::write(
            &path,
            "{\"name\": \"k\", \"shape\": [1,1,1,32,1,1], \"calls\": 2, \"us\": [1.5]}\n\nnot json\n",
        )
        .unwrap();
        let e = read_record(&path).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("r.jsonl"), "{e}");
        std::fs::write(&path, "{\"name\": \"k\", \"shape\": [1,1,1,32,1,1], \"calls\": 2, \"us\": [1.5]}\n").unwrap();
        assert_eq!(read_record(&path).unwrap(), vec![rec("k", [1, 1, 1, 32, 1, 1], 2, &[1.5])]);
        assert!(read_record(&dir.join("none")).is_err());
        let _ = std::fs::remove_dir_all(&dir);

        assert_eq!(parse_sms("64, 16,16,132", 132).unwrap(), vec![16, 64, 132]);
        assert!(parse_sms("0", 132).unwrap_err().contains("1 to 132"));
        assert!(parse_sms("200", 132).unwrap_err().contains("1 to 132"));
        assert!(parse_sms("x", 132).unwrap_err().contains("\"x\" is not a number"));
        assert!(parse_sms(" , ", 132).unwrap_err().contains("no SM count"));
        let info = h200();
        assert_eq!(default_sms(&info), vec![8, 16, 32, 64, 120, 132]);
        assert_eq!(
            app_profile_path(Path::new("profiles"), "NVIDIA H200", "env A=1 python3 -u scripts/torch_app.py bert"),
            Path::new("profiles/nvidia-h200/app-torch-app.json")
        );
    }
}

//! PyTorch tenants (`engine = "torch"`): a Hugging Face transformers model with random FP16
//! weights in a Python worker process per tenant (`python/rightsize/torch_worker.py`, the
//! same worker protocol as [`super::worker`]), so a comparison puts the models people serve,
//! as they serve them, under every way of sharing the GPU that works across processes:
//!
//! - `timeslice`, `mps`, `mps-limit`: as for the engine's tenants;
//! - `static`: under MPS, each process's kernels placed on its own window by the interposer
//!   (`librightsize_preload.so`, `LD_PRELOAD`): `static_sms`, or an equal part of the groups;
//! - `krisp`: under MPS, the processes share a board (the interposer's `board`). Without a
//!   busy latency-critical process every kernel runs where PyTorch put it, as under MPS
//!   (confining best-effort processes only left SMs idle that MPS fills). While a
//!   latency-critical tenant is busy its kernels run where PyTorch put them, and each of the
//!   `k` busy best-effort processes places its kernels on its part of the device that the
//!   SMs kept free for the latency-critical tenant leave (what its recent kernels need, at
//!   most its `quota_sms`); kernels of no more blocks than the part has
//!   SMs are never confined. Beside a latency-critical tenant the best-effort processes run at
//!   MPS's lower client priority, so its blocks take each SM theirs leave first.
//!
//! Solo baselines run each tenant alone in its process, without MPS.

use std::path::PathBuf;
use std::time::Instant;

use super::inproc::static_windows;
use super::mps::private_dir;
use super::results::AsidePhases;
use super::scenario::{Scenario, Sharing};
use crate::runtime::policy::PriorityClass;
use crate::runtime::Device;
use anyhow::Context as _;

/// What the interposer did with a process's kernels: the type its exit log is written as.
pub use crate::profiler::app::interposer_log::{Counts, FitsSeen, Interposed};
/// The interposer's file name.
pub use crate::profiler::app::PRELOAD_LIBRARY;

/// Whether `sharing` places `s`'s PyTorch tenants with the interposer.
pub fn placed_by_interposer(s: &Scenario, sharing: Sharing) -> bool {
    s.is_torch() && matches!(sharing, Sharing::Static | Sharing::Krisp)
}

/// The interposer ([`crate::profiler::app::preload_library`]) for the worker program `exe`.
pub fn preload_library(exe: &std::path::Path) -> anyhow::Result<PathBuf> {
    crate::profiler::app::preload_library(exe)
        .map_err(|e| anyhow::anyhow!("PyTorch tenants under static and krisp need the interposer: {e}"))
}

/// What the interposer of each tenant's process is told, and the directory of its board
/// (`krisp`) and of what each process placed (removed after the run).
#[derive(Debug)]
pub struct Placement {
    /// The environment of tenant `i` at index `i`.
    pub env: Vec<Vec<(String, String)>>,
    /// The run's directory: `board`, and `<i>.json` written by tenant `i`'s interposer.
    pub dir: PathBuf,
    /// Under `krisp` with `RIGHTSIZE_KRISP_ASIDE_MS`: the processes' alternation.
    pub aside: Option<Alternating>,
}

/// Every process of a `krisp` run of PyTorch tenants standing aside at once, in turn (the
/// interposer's `RIGHTSIZE_ASIDE_MS` and `RIGHTSIZE_ASIDE_EPOCH_NS`, docs/interposer.md):
/// periods of `every_ms` from `at`, taking part in the first. A comparison's knob
/// (`RIGHTSIZE_KRISP_ASIDE_MS=P`; the engine's tenants do not read it): one run then measures
/// krisp against MPS with the interposer standing aside (and, beside a latency-critical
/// process, the best-effort ones still at MPS's lower client priority) in the same processes,
/// which separate runs of Python-bound processes do not resolve (docs/pytorch-h200.md).
#[derive(Debug, Clone, Copy)]
pub struct Alternating {
    /// A period, milliseconds.
    pub every_ms: u32,
    /// Where the first period begins.
    pub at: Instant,
}

impl Alternating {
    /// When the processes stood aside, on the clock of samples counted from `started`.
    pub fn phases(&self, started: Instant) -> AsidePhases {
        let epoch_s = match started.checked_duration_since(self.at) {
            Some(d) => -d.as_secs_f64(),
            None => self.at.duration_since(started).as_secs_f64(),
        };
        AsidePhases { every_s: f64::from(self.every_ms) / 1e3, epoch_s }
    }
}

/// `RIGHTSIZE_KRISP_ASIDE_MS`'s period, if set: a whole number of milliseconds above 0.
fn aside_every_ms(setting: Option<&str>) -> anyhow::Result<Option<u32>> {
    match setting.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => match v.parse::<u32>() {
            Ok(ms) if ms > 0 => Ok(Some(ms)),
            _ => anyhow::bail!("RIGHTSIZE_KRISP_ASIDE_MS={v:?}: a period is a whole number of milliseconds above 0"),
        },
    }
}

/// The interposer logs of a run's `n` tenants in `dir` (a tenant whose process wrote none:
/// `None`).
pub fn read_logs(dir: &std::path::Path, n: usize) -> Vec<Option<Interposed>> {
    (0..n)
        .map(|i| {
            std::fs::read_to_string(dir.join(format!("{i}.json"))).ok().and_then(|t| serde_json::from_str(&t).ok())
        })
        .collect()
}

/// The interposer's settings for `s`'s tenants under `sharing`: under `static` each tenant's
/// window side by side from group 0 (the last one with the SMs outside the groups), under
/// `krisp` a board shared by all. `exe` is the worker program the library lies beside.
pub fn interposer_env(s: &Scenario, sharing: Sharing, exe: &std::path::Path) -> anyhow::Result<Placement> {
    let lib = preload_library(exe)?;
    let every = match sharing {
        Sharing::Krisp => aside_every_ms(std::env::var("RIGHTSIZE_KRISP_ASIDE_MS").ok().as_deref())?,
        _ => None,
    };
    let dir = private_dir("interposer")?;
    let priority = std::env::var("RIGHTSIZE_MPS_PRIORITY").ok();
    let mut settings = settings(s, sharing, &dir, priority.as_deref()).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&dir);
    })?;
    let aside = every.map(|every_ms| {
        let (epoch, at) = (crate::runtime::monotonic_ns(), Instant::now());
        for env in &mut settings {
            env.push(("RIGHTSIZE_ASIDE_MS".into(), every_ms.to_string()));
            env.push(("RIGHTSIZE_ASIDE_EPOCH_NS".into(), epoch.to_string()));
        }
        Alternating { every_ms, at }
    });
    let preload = match std::env::var("LD_PRELOAD") {
        Ok(v) if !v.trim().is_empty() => format!("{}:{v}", lib.display()),
        _ => lib.display().to_string(),
    };
    let env = settings
        .into_iter()
        .enumerate()
        .map(|(i, mut env)| {
            env.push(("LD_PRELOAD".into(), preload.clone()));
            env.push(("RIGHTSIZE_PRELOAD_LOG".into(), dir.join(format!("{i}.json")).display().to_string()));
            env
        })
        .collect();
    Ok(Placement { env, dir, aside })
}

/// MPS's client priorities (`CUDA_MPS_CLIENT_PRIORITY`): the MPS server hands SMs to a
/// "below normal" client's waiting blocks only after those of "normal" clients.
const NORMAL: &str = "0";
const BELOW_NORMAL: &str = "1";

/// Whether `krisp` runs `s`'s best-effort processes at MPS's lower client priority: where a
/// latency-critical process shares the device, so that its blocks take each SM the others'
/// blocks leave before theirs do (no SM is kept idle for it, as a quota alone would), unless
/// `setting` (`RIGHTSIZE_MPS_PRIORITY`, for comparisons) is `0`.
fn lower_best_effort(s: &Scenario, setting: Option<&str>) -> bool {
    setting.map(str::trim) != Some("0") && s.tenants.iter().any(|t| t.class == PriorityClass::LatencyCritical)
}

/// Each tenant's settings of the interposer's placement: the board's file (made in `dir`)
/// and its slot under `krisp` (and MPS's client priority, unless `mps_priority` is `0`), its
/// static window otherwise.
fn settings(
    s: &Scenario,
    sharing: Sharing,
    dir: &std::path::Path,
    mps_priority: Option<&str>,
) -> anyhow::Result<Vec<Vec<(String, String)>>> {
    if sharing == Sharing::Krisp {
        let board = dir.join("board");
        std::fs::write(&board, vec![0u8; s.tenants.len() * 64])
            .with_context(|| format!("cannot write {}", board.display()))?;
        let lower = lower_best_effort(s, mps_priority);
        Ok(s.tenants
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut env = vec![
                    ("RIGHTSIZE_BOARD".into(), board.display().to_string()),
                    ("RIGHTSIZE_SLOT".into(), i.to_string()),
                ];
                let critical = t.class == PriorityClass::LatencyCritical;
                if critical {
                    env.push(("RIGHTSIZE_CLASS".into(), "latency-critical".into()));
                    env.push(("RIGHTSIZE_QUOTA_SMS".into(), t.quota_sms.unwrap_or(0).to_string()));
                }
                if lower {
                    // Set for the latency-critical process too, whatever the harness inherited.
                    let level = if critical { NORMAL } else { BELOW_NORMAL };
                    env.push(("CUDA_MPS_CLIENT_PRIORITY".into(), level.into()));
                }
                if let Some(p) = &t.app_profile {
                    // The worker may start elsewhere: the path as the run resolves it.
                    let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
                    env.push(("RIGHTSIZE_PROFILE".into(), p.display().to_string()));
                }
                if t.online_fit {
                    env.push(("RIGHTSIZE_FIT".into(), "1".into()));
                }
                env
            })
            .collect())
    } else {
        let device = Device::open(0).context("cannot open the GPU")?;
        let topo = device
            .info()
            .partitions
            .topology()
            .map_err(|reason| anyhow::anyhow!("SM partitions are unavailable: {reason}"))?;
        static_windows(s, topo.groups, topo.granularity)?
            .into_iter()
            .map(|w| {
                let w = w.context("a static window for every tenant")?;
                Ok(vec![
                    ("RIGHTSIZE_SMS".into(), (w.count * topo.granularity).to_string()),
                    ("RIGHTSIZE_FIRST_GROUP".into(), w.first.to_string()),
                    ("RIGHTSIZE_REST".into(), u8::from(w.end() == topo.groups).to_string()),
                ])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::scenario::ScenarioFile;

    #[test]
    fn the_interposer_is_found_beside_the_worker_or_refused_with_how_to_build_it() {
        let dir = private_dir("preload-lib").unwrap();
        let exe = dir.join("deps").join("rightsize");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        let e = preload_library(&exe).unwrap_err().to_string();
        assert!(e.contains(PRELOAD_LIBRARY) && e.contains("cargo build --release -p rightsize-preload"), "{e}");
        std::fs::write(dir.join(PRELOAD_LIBRARY), b"").unwrap();
        assert_eq!(preload_library(&exe).unwrap(), dir.join(PRELOAD_LIBRARY));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_interposers_logs_are_read_back_and_a_missing_one_is_none() {
        let dir = private_dir("logs").unwrap();
        let log = r#"{"sms": 64, "board_slots": 2, "launches": 10, "placed": 4, "alone": 3, "critical": 1, "shared": 5, "narrow": 2, "captured": 0, "fallback": 1, "via_ex": 0, "functions_resolved": 4, "functions_kept": 0, "blas_calls": 2}"#;
        std::fs::write(dir.join("1.json"), log).unwrap();
        let fitted = log.replace(
            r#""blas_calls": 2}"#,
            r#""blas_calls": 2, "fits": {"kernels": 9, "modelled": 5, "completions": 40, "knees": {"16": 3, "132": 2}}}"#,
        );
        std::fs::write(dir.join("2.json"), fitted).unwrap();
        std::fs::write(dir.join("3.json"), log.replace(r#""blas_calls": 2}"#, r#""blas_calls": 2, "fits": null}"#))
            .unwrap();
        let got = read_logs(&dir, 4);
        assert_eq!(got[0], None);
        let want = Interposed {
            sms: 64,
            board_slots: 2,
            counts: Counts {
                windows_made: 0,
                launches: 10,
                placed: 4,
                alone: 3,
                critical: 1,
                starving: 0,
                starved: 0,
                starving_trials: 0,
                starving_kept: 0,
                starving_released: 0,
                quota_trials: 0,
                quota_kept: 0,
                quota_released: 0,
                quota_costly: 0,
                quota_sized_sms: 0,
                shared: 5,
                narrow: 2,
                captured: 0,
                fallback: 1,
                via_ex: 0,
                functions_resolved: 4,
                functions_kept: 0,
                blas_calls: 2,
                captured_placed: 0,
            },
            fits: None,
        };
        assert_eq!(got[1].as_ref(), Some(&want));
        let fits = FitsSeen { kernels: 9, modelled: 5, completions: 40, knees: [(16, 3), (132, 2)].into() };
        assert_eq!(got[2], Some(Interposed { fits: Some(fits), ..want.clone() }));
        assert_eq!(got[3], Some(want), "no fits");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_pytorch_study_parses() {
        let f = ScenarioFile::parse(include_str!("../scenarios/pytorch.toml"), "pytorch.toml").unwrap();
        for s in &f.scenarios {
            assert!(s.tenants.iter().all(|t| t.engine == super::super::scenario::Engine::Torch), "{}", s.name);
            assert!(s.modes.iter().flatten().all(|m| s.unsupported(*m).is_none()), "{}", s.name);
        }
    }

    #[test]
    fn a_latency_critical_tenant_tells_the_board_its_quota() {
        let text = "[[scenario]]\nname = \"t\"\n[[scenario.tenant]]\nmodel = \"bert-base\"\nengine = \"torch\"\n\
                    class = \"latency-critical\"\nquota_sms = 32\n[[scenario.tenant]]\nmodel = \"gpt2\"\nengine = \"torch\"\n";
        let s = ScenarioFile::parse(text, "t").unwrap().scenarios.remove(0);
        let dir = private_dir("lc-board").unwrap();
        let env = settings(&s, Sharing::Krisp, &dir, None).unwrap();
        let get = |i: usize, k: &str| env[i].iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!((get(0, "RIGHTSIZE_CLASS"), get(0, "RIGHTSIZE_QUOTA_SMS")), (Some("latency-critical"), Some("32")));
        assert_eq!((get(1, "RIGHTSIZE_CLASS"), get(1, "RIGHTSIZE_SLOT")), (None, Some("1")));
        // The best-effort process yields SMs to the latency-critical one's blocks, not it.
        let priority = |env: &[Vec<(String, String)>], i: usize| {
            env[i].iter().find(|(key, _)| key == "CUDA_MPS_CLIENT_PRIORITY").map(|(_, v)| v.clone())
        };
        assert_eq!((priority(&env, 0), priority(&env, 1)), (Some("0".into()), Some("1".into())));
        let off = settings(&s, Sharing::Krisp, &dir, Some("0")).unwrap();
        assert_eq!((priority(&off, 0), priority(&off, 1)), (None, None), "RIGHTSIZE_MPS_PRIORITY=0");
        assert_eq!(std::fs::metadata(dir.join("board")).unwrap().len(), 2 * 64);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn best_effort_processes_yield_only_beside_a_latency_critical_one() {
        let text = |class: &str| {
            format!(
                "[[scenario]]\nname = \"t\"\n[[scenario.tenant]]\nmodel = \"bert-base\"\nengine = \"torch\"\n\
                 class = \"{class}\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nengine = \"torch\"\n"
            )
        };
        let lc = ScenarioFile::parse(&text("latency-critical"), "t").unwrap().scenarios.remove(0);
        let be = ScenarioFile::parse(&text("best-effort"), "t").unwrap().scenarios.remove(0);
        assert!(lower_best_effort(&lc, None) && lower_best_effort(&lc, Some("1")));
        assert!(
            !lower_best_effort(&lc, Some("0")) && !lower_best_effort(&lc, Some(" 0\n")),
            "turned off for comparisons"
        );
        assert!(!lower_best_effort(&be, None), "no latency-critical process: all as under MPS");
    }

    #[test]
    fn an_app_profile_reaches_its_tenants_interposer_and_a_missing_one_is_refused() {
        let dir = private_dir("app-profile").unwrap();
        let profile = dir.join("gpt2.json");
        std::fs::write(&profile, "{}").unwrap();
        let text = |path: &std::path::Path| {
            format!(
                "[[scenario]]\nname = \"t\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nengine = \"torch\"\napp_profile = {:?}\n\
                 [[scenario.tenant]]\nmodel = \"bert-base\"\nengine = \"torch\"\nonline_fit = true\n",
                path.display().to_string()
            )
        };
        let s = ScenarioFile::parse(&text(&profile), "t").unwrap().scenarios.remove(0);
        let env = settings(&s, Sharing::Krisp, &dir, None).unwrap();
        let get = |i: usize| env[i].iter().find(|(k, _)| k == "RIGHTSIZE_PROFILE").map(|(_, v)| v.clone());
        assert_eq!((get(0), get(1)), (Some(profile.display().to_string()), None));
        let fit = |i: usize| env[i].iter().any(|(k, v)| k == "RIGHTSIZE_FIT" && v == "1");
        assert_eq!((fit(0), fit(1)), (false, true));
        let e = format!("{:#}", ScenarioFile::parse(&text(&dir.join("none.json")), "t").unwrap_err());
        assert!(e.contains("none.json") && e.contains("profile --app"), "{e}");
        let engine = "[[scenario]]\nname = \"t\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\napp_profile = \"x.json\"\n";
        let e = format!("{:#}", ScenarioFile::parse(engine, "t").unwrap_err());
        assert!(e.contains("engine = \"torch\""), "{e}");
        let engine = "[[scenario]]\nname = \"t\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nonline_fit = true\n";
        let e = format!("{:#}", ScenarioFile::parse(engine, "t").unwrap_err());
        assert!(e.contains("online_fit") && e.contains("engine = \"torch\""), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_alternation_is_a_whole_number_of_milliseconds_and_its_phases_are_on_the_samples_clock() {
        assert_eq!(aside_every_ms(None).unwrap(), None);
        assert_eq!(aside_every_ms(Some(" ")).unwrap(), None);
        assert_eq!(aside_every_ms(Some("1500\n")).unwrap(), Some(1500));
        for bad in ["0", "-5", "1.5", "soon"] {
            let e = aside_every_ms(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("RIGHTSIZE_KRISP_ASIDE_MS") && e.contains("milliseconds"), "{e}");
        }
        let at = Instant::now();
        let a = Alternating { every_ms: 250, at };
        let p = a.phases(at + std::time::Duration::from_millis(1_500));
        assert_eq!(p.every_s, 0.25);
        assert!((p.epoch_s + 1.5).abs() < 1e-9, "set up 1.5 s before the common start: {}", p.epoch_s);
        assert_eq!(a.phases(at).epoch_s, 0.0);
    }

    #[test]
    fn only_static_and_krisp_place_pytorch_tenants() {
        let text = "[[scenario]]\nname = \"t\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nengine = \"torch\"\n";
        let s = ScenarioFile::parse(text, "t").unwrap().scenarios.remove(0);
        let placed: Vec<_> = Sharing::ALL.into_iter().filter(|&m| placed_by_interposer(&s, m)).collect();
        assert_eq!(placed, [Sharing::Static, Sharing::Krisp]);
    }
}

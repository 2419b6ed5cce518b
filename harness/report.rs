//! `rightsize report DIR`: a Markdown report of a results directory — the plots (written under
//! `DIR/plots/`), the GPU counters per mode, what fixed splits can reach by the profiles
//! (closed loops; `frontier`), kernel curves from the profiles the krisp modes used, and the
//! comparison's tables.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::frontier;
use super::output::{runs_of, summary};
use super::plots;
use super::results::{Report, Status};
use super::scenario::{Engine, Scenario, TenantSpec};
use super::serve::profile_path;
use crate::profiler::Profile;
use crate::runtime::policy::{Speeds, Topology};

/// Kernels per curve plot.
const CURVES_PER_PLOT: usize = 8;

/// The counters the report's table shows, in order, with their column headings.
const COLUMNS: &[(&str, &str)] = &[
    ("gpu utilization %", "GPU util %"),
    ("memory utilization %", "mem util %"),
    ("sm clock MHz", "SM MHz"),
    ("memory used GiB", "mem GiB"),
    ("pcie tx GB/s", "PCIe tx GB/s"),
    ("pcie rx GB/s", "PCIe rx GB/s"),
    ("power W", "power W"),
    ("gpm sm utilization %", "GPM SM util %"),
    ("gpm sm occupancy %", "GPM occupancy %"),
    ("gpm tensor activity %", "GPM tensor %"),
    ("gpm dram bandwidth %", "GPM DRAM bw %"),
];

/// Relative path of `p` from `dir`, with forward slashes (for Markdown links).
fn rel(p: &Path, dir: &Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// The table of counter means per mode of one scenario, and the counters refused (with why).
fn counters_table(r: &Report, scenario: &str) -> Option<String> {
    let runs: Vec<_> = r
        .runs
        .iter()
        .filter(|x| x.scenario == scenario && matches!(x.status, Status::Ok) && x.counters.is_some())
        .collect();
    if runs.is_empty() {
        return None;
    }
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    let mut s = String::new();
    let _ = writeln!(s, "| mode | {} |", COLUMNS.iter().map(|c| c.1).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(s, "| --- |{}", " ---: |".repeat(names.len()));
    let mut refused = BTreeSet::new();
    for run in &runs {
        let c = run.counters.as_ref().expect("filtered");
        let cells: Vec<String> = names
            .iter()
            .map(|n| match c.values.get(*n) {
                Some(v) if *n == "memory used GiB" => format!("{:.1}", v.max),
                Some(v) => format!("{:.1}", v.mean),
                None => "–".into(),
            })
            .collect();
        let _ = writeln!(s, "| {} | {} |", run.mode, cells.join(" | "));
        for (name, why) in &c.refused {
            refused.insert(format!("{name}: {why}"));
        }
    }
    let _ = writeln!(
        s,
        "\nMeans over the measured part of each run (from the common start), sampled every {} ms; memory: the most used.",
        runs[0].counters.as_ref().map_or(0, |c| c.period_ms)
    );
    if !refused.is_empty() {
        let _ = writeln!(s, "Refused by the driver: {}.", refused.into_iter().collect::<Vec<_>>().join("; "));
    }
    Some(s)
}

/// The profile of tenant `t`: the one the run saved (`DIR/profiles`), else the committed one
/// under `profiles`, and the path it came from.
fn profile_of(r: &Report, dir: &Path, profiles: &Path, t: &TenantSpec) -> (PathBuf, Result<Profile, String>) {
    let saved = profile_path(&dir.join("profiles"), &r.gpu, &t.model, t.batch, t.seq);
    let path = if saved.is_file() { saved } else { profile_path(profiles, &r.gpu, &t.model, t.batch, t.seq) };
    let p = Profile::load(&path).map_err(|e| e.to_string());
    (path, p)
}

/// What fixed splits of whole requests reach in `sc` by its tenants' profiled request curves
/// ([`frontier`]), beside the STP the run measured: for scenarios whose closed loops are of our
/// engine and busy all the time. Where open loops (requests at a rate) run beside them, each
/// with a quota, the closed loops' splits are shown on the SMs the quotas leave too (where
/// those hold a window each). `Err` says why a scenario of that kind has none (a tenant
/// without a profile); `Ok(None)` for scenarios of other kinds.
fn frontier_section(r: &Report, sc: &Scenario, dir: &Path, profiles: &Path) -> Result<Option<String>, String> {
    let ours = |t: &TenantSpec| t.engine == Engine::Rightsize && t.phases.is_none();
    let (open, closed): (Vec<&TenantSpec>, Vec<&TenantSpec>) = sc.tenants.iter().partition(|t| t.rate.is_some());
    if closed.is_empty() || !closed.iter().all(|t| ours(t)) || open.iter().any(|t| t.quota_sms.is_none()) {
        return Ok(None);
    }
    let (mut idle, mut beside, mut topo) = (Vec::new(), Vec::new(), None);
    for t in &closed {
        let (path, p) = profile_of(r, dir, profiles, t);
        let p = p.map_err(|e| format!("no profile at {} ({e})", path.display()))?;
        let here =
            frontier::topology(&p, r.sm_count).ok_or_else(|| format!("{} has no request curve", path.display()))?;
        let topo = *topo.get_or_insert(here);
        let speeds = |times: Vec<(u32, f64)>| {
            Speeds::from_times(&times, &topo).ok_or_else(|| format!("{}: too few request times", path.display()))
        };
        idle.push(speeds(p.request_us(t.new_tokens))?);
        beside.push(speeds(p.request_us_beside(t.new_tokens))?);
    }
    let Some(topo) = topo else { return Ok(None) };
    let names: Vec<String> = closed.iter().map(|t| t.label()).collect();
    let Some(whole) = frontier::table(&names, &idle, &beside, &topo) else {
        return Ok(None);
    };
    let mut s = String::from(
        "What a fixed split of the device's SM groups into one window a tenant reaches (one \
         window also taking the SMs outside the groups), each tenant's speed read from its \
         profiled request curve as krisp reads it (linear between profiled SM counts); the \
         best STP, and where it differs the split whose slowest tenant is fastest. A policy \
         that gives each tenant's requests a window of their own is such a split here",
    );
    if open.is_empty() {
        let _ = writeln!(s, ":\n\n{whole}");
    } else {
        let _ = writeln!(s, ", for the closed loops.");
        // The groups the quotas leave (the quotas' groups rounded up, as krisp sizes them).
        let (quotas, taken) = open
            .iter()
            .filter_map(|t| t.quota_sms)
            .fold((0, 0), |(sms, groups), q| (sms + q, groups + topo.groups_for(q)));
        let left = Topology { groups: topo.groups.saturating_sub(taken), ..topo };
        match frontier::table(&names, &idle, &beside, &left) {
            Some(t) => {
                let _ = writeln!(s, "\nBeside the open loops' quotas ({quotas} SMs), on {} SMs:\n\n{t}", left.sms());
            }
            None => {
                let _ = writeln!(s, "\nThe open loops' quotas ({quotas} SMs) leave no window for each closed loop.");
            }
        }
        let _ = writeln!(s, "On the whole device (the open loops idle):\n\n{whole}");
    }
    let measured: Vec<(&str, f64)> =
        runs_of(r, &sc.name).filter_map(|run| Some((run.mode.as_str(), run.metrics?.stp?))).collect();
    // The first of the fastest, in the run's mode order (baselines before krisp's).
    let best = measured.iter().copied().reduce(|a, b| if b.1 > a.1 { b } else { a }).map(|b| b.0);
    let shown: Vec<String> = measured
        .iter()
        .filter(|m| m.0.starts_with("krisp") || best == Some(m.0))
        .map(|&(m, v)| if best == Some(m) { format!("{m} {v:.2} (the best mode)") } else { format!("{m} {v:.2}") })
        .collect();
    if !shown.is_empty() {
        let _ = writeln!(s, "Measured in this run (STP of the closed loops): {}.", shown.join(", "));
    }
    Ok(Some(s))
}

/// Writes `DIR/report.md` and its plots for the results in `dir`, with kernel curves from the
/// profiles the run saved (`DIR/profiles`) or else those under `profiles`; returns its path.
pub fn write_report(dir: &Path, profiles: &Path) -> anyhow::Result<PathBuf> {
    // Its plots go beside the results: a results directory, not the file in it.
    anyhow::ensure!(!dir.is_file(), "{} is a file: give the results directory that holds it", dir.display());
    let r = Report::load_from(dir)?;
    let plots_dir = dir.join("plots");
    std::fs::create_dir_all(&plots_dir).with_context(|| format!("cannot create {}", plots_dir.display()))?;
    // Links go to the SVGs (text, small, sharp at any size); the PNGs lie beside them.
    let image =
        |files: &[PathBuf]| files.iter().find(|f| f.extension().is_some_and(|e| e == "svg")).map(|f| rel(f, dir));

    let mut s = String::new();
    let _ = writeln!(s, "# rightsize report\n");
    let _ = writeln!(
        s,
        "{}, run {} UTC with `{}`. Plots are SVG, with a PNG of each beside it in `plots/`.\n",
        r.machine(),
        r.date,
        r.command
    );
    let mut notes = Vec::new();
    for sc in &r.scenarios {
        let _ = writeln!(s, "## {}\n", sc.name);
        if !sc.description.is_empty() {
            let _ = writeln!(s, "{}.\n", sc.description);
        }
        match plots::throughput_bars(&r, &sc.name, &plots_dir) {
            Ok(f) => {
                let _ = writeln!(s, "![STP and throughput per mode]({})\n", image(&f).unwrap_or_default());
            }
            Err(e) => notes.push(format!("{}: no throughput plot ({e:#})", sc.name)),
        }
        let f = plots::latency_cdfs(&r, &sc.name, &plots_dir)?;
        let _ = writeln!(s, "![latency CDFs per tenant]({})\n", image(&f).unwrap_or_default());
        if let Some(f) = plots::sweep_plot(&r, &sc.name, &plots_dir)? {
            let _ = writeln!(s, "![SLO attainment and p99 against load]({})\n", image(&f).unwrap_or_default());
        }
        if let Some(table) = counters_table(&r, &sc.name) {
            let _ = writeln!(s, "GPU counters per mode:\n\n{table}");
        }
        match frontier_section(&r, sc, dir, profiles) {
            Ok(Some(text)) => {
                let _ = writeln!(s, "{text}");
            }
            Ok(None) => {}
            Err(why) => notes.push(format!("{}: no fixed-split frontier ({why})", sc.name)),
        }
    }
    if let Some(f) = plots::slowdown_heatmap(&r, &plots_dir)? {
        let _ = writeln!(s, "## Pairwise slowdown\n\n![slowdown heatmap]({})\n", image(&f).unwrap_or_default());
    }

    // Kernel curves: one per distinct (model, batch, seq) of the scenarios.
    let mut seen = BTreeSet::new();
    let mut curves = String::new();
    for t in r.scenarios.iter().flat_map(|sc| &sc.tenants) {
        if !seen.insert((t.model.clone(), t.batch, t.seq)) {
            continue;
        }
        let (path, profile) = profile_of(&r, dir, profiles, t);
        match profile {
            Ok(p) => {
                let name = path.file_stem().map_or_else(|| t.model.clone(), |s| s.to_string_lossy().into_owned());
                let f = plots::kernel_curves(&p, &name, CURVES_PER_PLOT, &plots_dir)?;
                let _ = writeln!(
                    curves,
                    "![{} at {}×{}: latency vs SMs]({})\n\nFrom `{}`.\n",
                    t.model,
                    t.batch,
                    t.seq,
                    image(&f).unwrap_or_default(),
                    path.display()
                );
            }
            Err(e) => notes.push(format!("{}: no kernel curves ({e})", t.model)),
        }
    }
    if !curves.is_empty() {
        let _ = writeln!(s, "## Kernel latency vs SMs\n\n{curves}");
    }
    let _ = writeln!(s, "## Tables\n");
    // The comparison's own Markdown from its first section, one heading level down.
    for line in summary(&r).lines().skip_while(|l| !l.starts_with("## ")) {
        if line.starts_with('#') {
            let _ = writeln!(s, "#{line}");
        } else {
            let _ = writeln!(s, "{line}");
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(s, "\n## Notes\n");
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    let out = dir.join("report.md");
    std::fs::write(&out, s).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::counters::{Counters, Stat};
    use crate::harness::output::tests::report;

    #[test]
    fn a_report_has_plots_counters_and_tables_and_links_that_resolve() {
        let mut r = report();
        let mut c = Counters { period_ms: 100, ..Counters::default() };
        c.values.insert("gpu utilization %".into(), Stat { mean: 87.5, max: 100.0, samples: 10 });
        c.refused.insert("gpm sm occupancy %".into(), "Not Supported".into());
        r.runs[0].counters = Some(c);
        let dir = std::env::temp_dir().join(format!("rightsize-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("results.json"), serde_json::to_string(&r).unwrap()).unwrap();
        let md_path = write_report(&dir, Path::new("no-such-profiles")).unwrap();
        let md = std::fs::read_to_string(&md_path).unwrap();
        assert!(md.contains("## pair") && md.contains("## Pairwise slowdown") && md.contains("## Tables"));
        assert!(md.contains("| mps | 87.5 |") && md.contains("| GPU util % |"), "{md}");
        assert!(md.contains("Refused by the driver: gpm sm occupancy %: Not Supported."), "{md}");
        assert!(md.contains("bert-base: no kernel curves"), "a missing profile is said, not skipped silently");
        for link in md.split("](").skip(1).map(|l| &l[..l.find(')').unwrap()]) {
            assert!(dir.join(link).is_file(), "{link}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_closed_loop_scenario_gets_what_fixed_splits_reach_by_its_profiles() {
        let mut r = report();
        r.gpu = "NVIDIA H200".into();
        let dir = std::env::temp_dir().join(format!("rightsize-report-frontier-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let md = |r: &Report| {
            std::fs::write(dir.join("results.json"), serde_json::to_string(r).unwrap()).unwrap();
            std::fs::read_to_string(write_report(&dir, Path::new("profiles")).unwrap()).unwrap()
        };
        // The committed H200 profiles of bert-base and gpt2 at 8×128.
        let text = md(&r);
        assert!(text.contains("| curves | split | STP | SMs (bert-base (LC) · gpt2) | speed ÷ solo |"), "{text}");
        assert!(text.contains("| idle | best | ") && text.contains("| beside a streamer | best | "), "{text}");
        assert!(text.contains("Measured in this run (STP of the closed loops): krisp-conserved "), "{text}");
        // An open loop with a quota: the closed loop's windows on what the quota leaves, then
        // on the whole device.
        r.scenarios[0].tenants[0].rate = Some(100.0);
        r.scenarios[0].tenants[0].quota_sms = Some(48);
        let text = md(&r);
        assert!(text.contains("Beside the open loops' quotas (48 SMs), on 84 SMs:"), "{text}");
        assert_eq!(text.matches("| curves | split | STP | SMs (gpt2) |").count(), 2, "{text}");
        // A quota that leaves no group: the whole device's table only, and why.
        r.scenarios[0].tenants[0].quota_sms = Some(132);
        let text = md(&r);
        assert!(
            text.contains("leave no window for each closed loop") && text.contains("On the whole device"),
            "{text}"
        );
        // Without a quota the open loop's share is not known: no table.
        r.scenarios[0].tenants[0].quota_sms = None;
        assert!(!md(&r).contains("| curves | split |"));
        // A closed loop without a profile: said under Notes.
        r.scenarios[0].tenants[0].rate = None;
        r.scenarios[0].tenants[1].seq = 96;
        assert!(md(&r).contains("pair: no fixed-split frontier (no profile at"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_counter_table_has_a_column_for_every_nvml_counter() {
        for name in crate::harness::counters::NVML_COUNTERS {
            assert!(COLUMNS.iter().any(|c| c.0 == *name), "{name}");
        }
    }

    #[test]
    fn a_directory_without_results_is_refused_with_a_reason() {
        let e = write_report(Path::new("/nonexistent"), Path::new("profiles")).unwrap_err().to_string();
        assert!(e.contains("/nonexistent does not exist"), "{e}");
        let empty = std::env::temp_dir().join(format!("rightsize-report-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let e = write_report(&empty, Path::new("profiles")).unwrap_err().to_string();
        assert!(e.contains("has no results.json"), "{e}");
        std::fs::remove_dir_all(&empty).unwrap();
        let e = write_report(Path::new("Cargo.toml"), Path::new("profiles")).unwrap_err().to_string();
        assert!(e.contains("Cargo.toml is a file: give the results directory"), "{e}");
    }
}

//! `rightsize report DIR`: a Markdown report of a results directory — the plots (written under
//! `DIR/plots/`), the GPU counters per mode, kernel curves from the profiles the krisp modes
//! used, and the comparison's tables.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::output::summary;
use super::plots;
use super::results::{Report, Status};
use super::serve::profile_path;
use crate::profiler::Profile;

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

/// Writes `DIR/report.md` and its plots for the results in `dir`, with kernel curves from the
/// profiles the run saved (`DIR/profiles`) or else those under `profiles`; returns its path.
pub fn write_report(dir: &Path, profiles: &Path) -> anyhow::Result<PathBuf> {
    let results = dir.join("results.json");
    anyhow::ensure!(results.is_file(), "{} has no results.json (is it a results directory?)", dir.display());
    let r = Report::load(&results)?;
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
        let saved = profile_path(&dir.join("profiles"), &r.gpu, &t.model, t.batch, t.seq);
        let path = if saved.is_file() { saved } else { profile_path(profiles, &r.gpu, &t.model, t.batch, t.seq) };
        match Profile::load(&path) {
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
    fn the_counter_table_has_a_column_for_every_nvml_counter() {
        for name in crate::harness::counters::NVML_COUNTERS {
            assert!(COLUMNS.iter().any(|c| c.0 == *name), "{name}");
        }
    }

    #[test]
    fn a_directory_without_results_is_refused_with_a_reason() {
        let e = write_report(Path::new("/nonexistent"), Path::new("profiles")).unwrap_err().to_string();
        assert!(e.contains("has no results.json"), "{e}");
    }
}

//! A comparison's results as tables: Markdown (printed and written as `summary.md`) and CSV
//! (`runs.csv`, one row per scenario and mode; `tenants.csv`, one row per tenant of each).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::csv::Table;
use super::metrics::{p99_is_max, TenantMetrics};
use super::results::{Report, RunResult, Status};
use super::sweep::{self, SweepPoint};
use crate::runtime::policy::PriorityClass;

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "–".into(),
    }
}

fn status_text(s: &Status) -> Option<String> {
    match s {
        Status::Ok => None,
        Status::Skipped { reason } => Some(format!("skipped: {reason}")),
        Status::Failed { error } => Some(format!("failed: {error}")),
    }
}

/// The runs of `scenario`, in mode order.
pub(crate) fn runs_of<'a>(r: &'a Report, scenario: &'a str) -> impl Iterator<Item = &'a RunResult> + 'a {
    r.runs.iter().filter(move |run| run.scenario == scenario)
}

/// STP of `mode` in `scenario`, if it ran.
fn stp(r: &Report, scenario: &str, mode: &str) -> Option<f64> {
    runs_of(r, scenario).find(|run| run.mode == mode).and_then(|run| run.metrics).and_then(|m| m.stp)
}

/// A p99 in ms; "max of n" where its samples are too few for a p99 to be more than their
/// maximum ([`p99_is_max`]).
fn p99_cell(m: &TenantMetrics) -> String {
    if p99_is_max(m.requests) {
        format!("{:.2} (max of {})", m.latency.p99, m.requests)
    } else {
        format!("{:.2}", m.latency.p99)
    }
}

/// Tenant `i` of `run`'s p99 ÷ solo, marked "(max)" where the run's or the solo baseline's
/// p99 is only a maximum.
fn p99_vs_solo_cell(r: &Report, sc: &super::scenario::Scenario, run: &RunResult, i: usize) -> String {
    let t = &run.tenants[i];
    let Some(ratio) = t.metrics.p99_vs_solo else { return "–".into() };
    // Tenants that served nothing are left out of `run.tenants`: find this one's place.
    let place = sc.tenants.iter().position(|spec| *spec == t.spec).unwrap_or(i);
    let solo = r.solo(&sc.solo_key(place, run.mode.ends_with("-plan")));
    if p99_is_max(t.metrics.requests) || solo.is_some_and(|m| p99_is_max(m.requests)) {
        format!("{ratio:.2} (max)")
    } else {
        format!("{ratio:.2}")
    }
}

/// The highest p99 ÷ solo among `run`'s latency-critical tenants, and that tenant's place in
/// `run.tenants`.
pub(crate) fn worst_lc(run: &RunResult) -> Option<(f64, usize)> {
    let lc = run.tenants.iter().enumerate().filter(|(_, t)| t.spec.class == PriorityClass::LatencyCritical);
    lc.filter_map(|(i, t)| Some((t.metrics.p99_vs_solo?, i))).max_by(|a, b| a.0.total_cmp(&b.0))
}

/// The lowest throughput ÷ solo among `run`'s best-effort tenants.
pub(crate) fn lowest_be(run: &RunResult) -> Option<f64> {
    let be = run.tenants.iter().filter(|t| t.spec.class == PriorityClass::BestEffort);
    be.filter_map(|t| t.metrics.relative_throughput).reduce(f64::min)
}

/// A scenario's score under a mode, and what it is: the SLO goodput (offered requests/s)
/// where the scenario has a load sweep (0 where no point met every SLO), else the STP of its
/// closed-loop tenants; `None` where the mode has neither (skipped, failed, or no STP).
pub(crate) fn score(r: &Report, sc: &super::scenario::Scenario, mode: &str) -> Option<f64> {
    if sc.sweep.is_some() {
        let swept = r.sweeps.iter().any(|p| p.scenario == sc.name && p.mode == mode && !p.tenants.is_empty());
        return swept.then(|| sweep::goodput(&r.sweeps, &sc.name, mode).map_or(0.0, |g| g.offered));
    }
    stp(r, &sc.name, mode)
}

/// One mode over every scenario: its score ÷ the best mode's, at worst and as a geometric mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Robustness {
    /// The mode (eager and plan variants are modes of their own).
    pub mode: String,
    /// Scenarios it has a score in.
    pub scenarios: usize,
    /// Its lowest ratio, and the scenario.
    pub worst: (f64, String),
    /// Geometric mean of its ratios (0 if any is 0).
    pub geomean: f64,
}

/// Every mode's robustness ([`Robustness`]), in the order modes first ran. A scenario's
/// score is its SLO goodput where it has a sweep, else its STP ([`score`]).
pub fn robustness(r: &Report) -> Vec<Robustness> {
    let mut modes: Vec<&str> = Vec::new();
    for run in &r.runs {
        if !modes.contains(&run.mode.as_str()) {
            modes.push(&run.mode);
        }
    }
    let mut ratios: Vec<Vec<(f64, &str)>> = vec![Vec::new(); modes.len()];
    for sc in &r.scenarios {
        let scores: Vec<Option<f64>> = modes.iter().map(|m| score(r, sc, m)).collect();
        let best = scores.iter().flatten().copied().fold(0.0, f64::max);
        if best <= 0.0 {
            continue;
        }
        for (k, v) in scores.iter().enumerate() {
            if let Some(v) = v {
                ratios[k].push((v / best, &sc.name));
            }
        }
    }
    modes
        .iter()
        .zip(ratios)
        .filter(|(_, v)| !v.is_empty())
        .map(|(m, v)| {
            let worst =
                v.iter().min_by(|a, b| a.0.total_cmp(&b.0)).map(|(x, s)| (*x, s.to_string())).expect("non-empty");
            let geomean = if v.iter().any(|x| x.0 <= 0.0) {
                0.0
            } else {
                (v.iter().map(|x| x.0.ln()).sum::<f64>() / v.len() as f64).exp()
            };
            Robustness { mode: m.to_string(), scenarios: v.len(), worst, geomean }
        })
        .collect()
}

fn robustness_table(s: &mut String, r: &Report) {
    let rows = robustness(r);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "
## Robustness
"
    );
    let _ = writeln!(
        s,
        "Each mode's score ÷ the best mode's in each scenario (SLO goodput where the scenario has a load \
         sweep, else STP of its closed-loop tenants), at worst and as a geometric mean over the scenarios it \
         ran; eager and plan variants count as modes of their own.\n"
    );
    let _ = writeln!(s, "| mode | scenarios | worst ÷ best | in | geometric mean ÷ best |");
    let _ = writeln!(s, "| --- | ---: | ---: | --- | ---: |");
    for x in rows {
        let _ = writeln!(s, "| {} | {} | {:.2} | {} | {:.2} |", x.mode, x.scenarios, x.worst.0, x.worst.1, x.geomean);
    }
}

/// The whole report as Markdown.
pub fn summary(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# rightsize comparison\n");
    let _ = writeln!(s, "{}, {} UTC. Command: `{}`.\n", r.machine(), r.date, r.command);
    let _ = writeln!(s, "## Solo baselines\n");
    let _ = writeln!(s, "| tenant (model/batch/seq/new tokens/issue) | p50 ms | p99 ms | req/s |");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: |");
    for solo in &r.solo {
        match (&solo.metrics, status_text(&solo.status)) {
            (Some(m), _) => {
                let _ = writeln!(s, "| {} | {:.2} | {} | {:.1} |", solo.key, m.latency.p50, p99_cell(m), m.throughput);
            }
            (None, why) => {
                let _ = writeln!(s, "| {} | {} | | |", solo.key, why.unwrap_or_default());
            }
        }
    }
    for sc in &r.scenarios {
        let _ = writeln!(s, "\n## {}\n", sc.name);
        if !sc.description.is_empty() {
            let _ = writeln!(s, "{}.\n", sc.description);
        }
        let _ = writeln!(s, "| mode | STP | ANTT | fairness | SLO met | krisp STP ÷ mps | wall s |");
        let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for run in runs_of(r, &sc.name) {
            if let Some(why) = status_text(&run.status) {
                let _ = writeln!(s, "| {} | {why} | | | | | |", run.mode);
                continue;
            }
            let m = run.metrics;
            // krisp modes against MPS issuing requests the same way (eager or plans).
            let vs_mps = run.mode.starts_with("krisp").then(|| {
                let base = if run.mode.ends_with("-plan") { "mps-plan" } else { "mps" };
                m.and_then(|m| m.stp).zip(stp(r, &sc.name, base)).map(|(m, b)| m / b)
            });
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {:.1} |",
                run.mode,
                num(m.and_then(|m| m.stp), 2),
                num(m.and_then(|m| m.antt), 2),
                num(m.and_then(|m| m.fairness), 3),
                num(m.and_then(|m| m.slo_attainment).map(|a| a * 100.0), 1),
                num(vs_mps.flatten(), 2),
                run.wall_s
            );
        }
        let _ = writeln!(s, "\n| mode | tenant | request | p50 ms | p99 ms | max ms | req/s | slowdown | p99 ÷ solo | throughput ÷ solo |");
        let _ = writeln!(s, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for run in runs_of(r, &sc.name) {
            for (i, t) in run.tenants.iter().enumerate() {
                let m = &t.metrics;
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.2} | {} | {:.2} | {:.1}{} | {} | {} | {} |",
                    run.mode,
                    t.spec.label(),
                    t.shape,
                    m.latency.p50,
                    p99_cell(m),
                    m.latency.max,
                    m.throughput,
                    dropped(m),
                    num(m.slowdown, 2),
                    p99_vs_solo_cell(r, sc, run, i),
                    num(m.relative_throughput, 2)
                );
            }
        }
        if sc.tenants.iter().any(|t| t.class == PriorityClass::LatencyCritical) {
            let _ = writeln!(
                s,
                "\nLatency-critical tenant: p99 ÷ solo p99, and the best-effort tenants' lowest throughput ÷ solo:\n"
            );
            let _ = writeln!(s, "| mode | LC p99 ÷ solo | BE min throughput ÷ solo |");
            let _ = writeln!(s, "| --- | ---: | ---: |");
            for run in runs_of(r, &sc.name).filter(|run| matches!(run.status, Status::Ok)) {
                let lc_p99 = worst_lc(run).map_or("–".into(), |(_, i)| p99_vs_solo_cell(r, sc, run, i));
                let _ = writeln!(s, "| {} | {lc_p99} | {} |", run.mode, num(lowest_be(run), 2));
            }
        }
        let faults: Vec<String> = runs_of(r, &sc.name)
            .flat_map(|run| {
                let outages = (!run.outages_s.is_empty()).then(|| {
                    let o: Vec<String> = run.outages_s.iter().map(|x| format!("{x:.2} s")).collect();
                    format!(
                        "- {}: the context was lost; the run went on in new processes from where each tenant stood; outage {}",
                        run.mode,
                        o.join(", ")
                    )
                });
                let failures = run.tenants.iter().filter_map(move |t| {
                    let why = t.failure.as_deref()?;
                    Some(format!("- {} / {}: {} failed; the first: {why}", run.mode, t.spec.label(), t.metrics.failed))
                });
                let unserved = run.unserved.iter().map(move |u| format!("- {}: {u}", run.mode));
                outages.into_iter().chain(failures).chain(unserved)
            })
            .collect();
        if !faults.is_empty() {
            let _ = writeln!(s, "\nFailed requests and recoveries:\n\n{}", faults.join("\n"));
        }
        let duties: Vec<String> = runs_of(r, &sc.name)
            .filter(|run| run.mode.starts_with("krisp") && run.tenants.iter().any(|t| t.duty.is_some()))
            .map(|run| {
                let d: Vec<String> =
                    run.tenants.iter().map(|t| format!("{} {}", t.spec.label(), num(t.duty, 2))).collect();
                format!("- {}: {}", run.mode, d.join(", "))
            })
            .collect();
        if !duties.is_empty() {
            let _ = writeln!(
                s,
                "\nDuties (the share of its recent time a tenant was busy, at the end; krisp lays out windows \
                 only while every contending best-effort tenant stays busy, at ≥ {:.2}):\n\n{}",
                crate::runtime::policy::SUSTAINED,
                duties.join("\n")
            );
        }
        let notes: Vec<String> = runs_of(r, &sc.name)
            .flat_map(|run| run.policy_notes.iter().map(move |n| format!("- {}: {n}", run.mode)))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(s, "\nWhat the policy learned in each run:\n\n{}", notes.join("\n"));
        }
        let interposed: Vec<String> = runs_of(r, &sc.name)
            .flat_map(|run| {
                run.tenants.iter().filter_map(move |t| {
                    let i = t.interposed.as_ref()?;
                    let fits = i.fits.as_ref().map_or(String::new(), |f| {
                        format!(
                            "; fits: {} kernels, {} with a model, {} launches timed",
                            f.kernels, f.modelled, f.completions
                        )
                    });
                    let c = &i.counts;
                    let undecided = c.quota_trials.saturating_sub(c.quota_kept + c.quota_released);
                    let costly = if c.quota_costly > 0 {
                        format!(" ({} for the others' cost)", c.quota_costly)
                    } else {
                        String::new()
                    };
                    let sized = if c.quota_sized_sms > 0 {
                        format!("; sized to {} SMs for the others' cost while kept", c.quota_sized_sms)
                    } else {
                        String::new()
                    };
                    let quota = if c.quota_trials > 0 {
                        format!(
                            " (its quota tried {} times: kept {}, released {}{costly}, undecided {undecided}{sized})",
                            c.quota_trials, c.quota_kept, c.quota_released
                        )
                    } else {
                        String::new()
                    };
                    let released = if c.starving_trials > 0 {
                        let undecided = c.starving_trials.saturating_sub(c.starving_kept + c.starving_released);
                        format!(
                            "; tried {} times: kept {}, released {}, undecided {undecided}",
                            c.starving_trials, c.starving_kept, c.starving_released
                        )
                    } else {
                        String::new()
                    };
                    Some(format!(
                        "- {} / {}: {} launches: {} placed, {} alone on the whole device, {} shared as under MPS, {} latency-critical{quota}, {} starving (its part set {} times{released}), {} narrow, {} fell back{fits}",
                        run.mode,
                        t.spec.label(),
                        i.counts.launches,
                        i.counts.placed,
                        i.counts.alone,
                        i.counts.shared,
                        i.counts.critical,
                        i.counts.starving,
                        i.counts.starved,
                        i.counts.narrow,
                        i.counts.fallback
                    ))
                })
            })
            .collect();
        if !interposed.is_empty() {
            let _ = writeln!(s, "\nWhat the interposer did with each process's kernels:\n\n{}", interposed.join("\n"));
        }
        if let Some(p) = runs_of(r, &sc.name).find_map(|run| run.pcie_gb_per_s) {
            let _ = writeln!(s, "\nBackground PCIe load moved {p:.1} GB/s.");
        }
        goodput_table(&mut s, r, &sc.name);
    }
    robustness_table(&mut s, r);
    s
}

/// The SLO goodput of `scenario`'s sweep, if it has one: per mode, the highest offered load
/// at which every repeat met every SLO (below the lowest scale that missed), how many runs
/// it had, against MPS with limits and MPS (the better of eager and plans), and per scale the
/// worst attainment and p99 ÷ SLO over its runs.
fn goodput_table(s: &mut String, r: &Report, scenario: &str) {
    let points: Vec<&SweepPoint> = r.sweeps.iter().filter(|p| p.scenario == scenario).collect();
    if points.is_empty() {
        return;
    }
    let mut scales: Vec<f64> = points.iter().map(|p| p.scale).collect();
    scales.sort_by(f64::total_cmp);
    scales.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
    let mut modes: Vec<&str> = Vec::new();
    for p in &points {
        if !modes.contains(&p.mode.as_str()) {
            modes.push(&p.mode);
        }
    }
    // A baseline's goodput: None if it did not run, Some(None) if it met the SLOs at no scale.
    let best = |names: &[&str]| {
        let ran = points.iter().any(|p| names.contains(&p.mode.as_str()) && !p.tenants.is_empty());
        ran.then(|| sweep::best_goodput(&r.sweeps, scenario, names))
    };
    let (limit, mps) = (best(&["mps-limit", "mps-limit-plan"]), best(&["mps", "mps-plan"]));
    let ratio = |g: Option<f64>, base: Option<Option<f64>>| match (g, base) {
        (Some(g), Some(Some(b))) if b > 0.0 => format!("{:.2}", g / b),
        (Some(_), Some(None)) => "∞ (it meets none)".into(),
        _ => "–".into(),
    };
    let _ = writeln!(
        s,
        "\nSLO goodput: the highest offered load (open-loop rates × scale) at which every run met every \
         tenant's p99 SLO, below the lowest scale at which one missed. Per mode, from ×1 up the coarse scales \
         while they meet (down while they miss), then midpoints until the goodput and the miss above it are \
         ≤ 10% apart; every point runs {} times with other arrivals, and one run that misses fails it (×1's \
         first run is the ordinary one). Per scale: the lowest SLO attainment % / the worst p99 ÷ SLO over \
         its runs (how many ran); at the highest scale a goodput is a lower bound.\n",
        sweep::REPEATS
    );
    let label = |x: f64| format!("×{}", sweep::scale_label(x));
    let head: String = scales.iter().map(|&x| format!(" {} |", label(x))).collect();
    let _ = writeln!(s, "| mode | goodput req/s | at (runs) | missed at | ÷ mps-limit | ÷ mps |{head}");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | ---: |{}", " ---: |".repeat(scales.len()));
    for mode in modes {
        let g = sweep::goodput(&r.sweeps, scenario, mode);
        let offered = g.map(|g| g.offered);
        let at = g.map_or("–".into(), |g| format!("{} ({})", label(g.scale), g.repeats));
        let by_scale = sweep::by_scale(&r.sweeps, scenario, mode);
        let missed =
            by_scale.iter().find(|(_, runs)| !runs.iter().all(|p| p.meets())).map_or("–".into(), |(x, _)| label(*x));
        let cells: String = scales
            .iter()
            .map(|&x| match by_scale.iter().find(|(y, _)| (x - y).abs() < 1e-12) {
                Some((_, runs)) if runs.iter().all(|p| p.tenants.is_empty()) => " failed |".into(),
                Some((_, runs)) => {
                    let att = runs.iter().filter_map(|p| p.attainment()).reduce(f64::min);
                    let worst = runs.iter().filter_map(|p| p.worst_p99_vs_slo()).reduce(f64::max);
                    let failed = runs.iter().filter(|p| p.tenants.is_empty()).count();
                    let failed = if failed > 0 { format!(", {failed} failed") } else { String::new() };
                    format!(" {} / {} ({}{failed}) |", num(att.map(|a| a * 100.0), 1), num(worst, 2), runs.len())
                }
                None => " |".into(),
            })
            .collect();
        let _ = writeln!(
            s,
            "| {mode} | {} | {at} | {missed} | {} | {} |{cells}",
            num(offered, 0),
            ratio(offered, limit),
            ratio(offered, mps)
        );
    }
}

/// `sweep.csv`: one row per tenant of each sweep run (`repeat` numbers a scale's runs).
pub fn sweep_csv(r: &Report) -> String {
    let mut table = Table::new(
        "scenario,mode,scale,repeat,tenant,label,rate,p99_ms,slo_ms,slo_attainment,throughput_rps,meets_slo",
    );
    for p in &r.sweeps {
        for (i, t) in p.tenants.iter().enumerate() {
            table.row(&[
                &p.scenario,
                &p.mode,
                &p.scale,
                &p.repeat,
                &i,
                &t.label,
                &opt(t.rate),
                &t.p99_ms,
                &opt(t.slo_ms),
                &opt(t.slo_attainment),
                &t.throughput,
                &t.meets(),
            ]);
        }
    }
    table.into_text()
}

fn opt(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite()).map(|x| format!("{x}")).unwrap_or_default()
}

/// `runs.csv`: scenario, mode, status, STP, ANTT, fairness, SLO attainment, wall seconds.
pub fn runs_csv(r: &Report) -> String {
    let mut table = Table::new("scenario,mode,status,stp,antt,fairness,slo_attainment,pcie_gb_per_s,wall_s");
    for run in &r.runs {
        let status = status_text(&run.status).unwrap_or_else(|| "ok".into());
        let m = run.metrics;
        table.row(&[
            &run.scenario,
            &run.mode,
            &status,
            &opt(m.and_then(|m| m.stp)),
            &opt(m.and_then(|m| m.antt)),
            &opt(m.and_then(|m| m.fairness)),
            &opt(m.and_then(|m| m.slo_attainment)),
            &opt(run.pcie_gb_per_s),
            &run.wall_s,
        ]);
    }
    table.into_text()
}

/// " (n shed, m failed)" after a throughput, or nothing.
fn dropped(m: &super::metrics::TenantMetrics) -> String {
    let parts: Vec<String> = [(m.shed, "shed"), (m.failed, "failed")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// `tenants.csv`: one row per tenant of each run that ran.
pub fn tenants_csv(r: &Report) -> String {
    let mut table = Table::new(
        "scenario,mode,tenant,model,class,request,requests,throughput_rps,mean_ms,p50_ms,p90_ms,p99_ms,max_ms,\
         slowdown,p99_vs_solo,throughput_vs_solo,slo_ms,slo_attainment,shed,failed,duty",
    );
    for run in &r.runs {
        for (i, t) in run.tenants.iter().enumerate() {
            let m = &t.metrics;
            let class = match t.spec.class {
                PriorityClass::LatencyCritical => "latency-critical",
                PriorityClass::BestEffort => "best-effort",
            };
            table.row(&[
                &run.scenario,
                &run.mode,
                &i,
                &t.spec.model,
                &class,
                &t.shape,
                &m.requests,
                &m.throughput,
                &m.latency.mean,
                &m.latency.p50,
                &m.latency.p90,
                &m.latency.p99,
                &m.latency.max,
                &opt(m.slowdown),
                &opt(m.p99_vs_solo),
                &opt(m.relative_throughput),
                &opt(m.slo_ms),
                &opt(m.slo_attainment),
                &m.shed,
                &m.failed,
                &t.duty.map_or(String::new(), |d| format!("{d:.3}")),
            ]);
        }
    }
    table.into_text()
}

/// Writes `summary.md`, `runs.csv` and `tenants.csv` into `dir` (`results.json` is written
/// as the comparison goes).
pub fn write_all(r: &Report, dir: &Path) -> anyhow::Result<()> {
    let mut files = vec![("summary.md", summary(r)), ("runs.csv", runs_csv(r)), ("tenants.csv", tenants_csv(r))];
    if !r.sweeps.is_empty() {
        files.push(("sweep.csv", sweep_csv(r)));
    }
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::harness::metrics::{RunMetrics, Sample, TenantMetrics};
    use crate::harness::results::{SoloResult, TenantResult};
    use crate::harness::scenario::ScenarioFile;
    use crate::harness::sweep::SweepTenant;

    pub(crate) fn report() -> Report {
        let scenarios = ScenarioFile::parse(
            "[[scenario]]\nname = \"pair\"\n[[scenario.tenant]]\nmodel = \"bert-base\"\nclass = \"latency-critical\"\n\
             [[scenario.tenant]]\nmodel = \"gpt2\"\n",
            "t",
        )
        .unwrap()
        .scenarios;
        let samples = |ms: f64| -> Vec<Sample> {
            (0..10)
                .map(|i| Sample::served(i as f64 * ms / 1e3, i as f64 * ms / 1e3, (i + 1) as f64 * ms / 1e3))
                .collect()
        };
        let solo_m = TenantMetrics::of(&samples(1.0), None, None).unwrap();
        let solo = vec![
            SoloResult { key: scenarios[0].solo_key(0, false), status: Status::Ok, metrics: Some(solo_m.clone()) },
            SoloResult { key: scenarios[0].solo_key(1, false), status: Status::Ok, metrics: Some(solo_m.clone()) },
        ];
        let tenant = |i: usize, ms: f64| {
            let spec = scenarios[0].tenants[i].clone();
            TenantResult {
                shape: "8×128".into(),
                metrics: TenantMetrics::of(&samples(ms), Some(&solo_m), None).unwrap(),
                samples: samples(ms),
                spec,
                failure: None,
                duty: None,
                interposed: None,
            }
        };
        let run = |mode: &str, ms: f64| {
            let tenants = vec![tenant(0, ms), tenant(1, ms)];
            let metrics =
                RunMetrics::of(&tenants.iter().map(|t| (&t.metrics, t.spec.rate.is_none())).collect::<Vec<_>>());
            RunResult {
                scenario: "pair".into(),
                mode: mode.into(),
                status: Status::Ok,
                wall_s: 1.0,
                tenants,
                metrics,
                pcie_gb_per_s: None,
                counters: None,
                outages_s: Vec::new(),
                unserved: Vec::new(),
                aside: None,
                policy_notes: Vec::new(),
            }
        };
        let mut runs = vec![run("mps", 2.0), run("krisp-conserved", 1.25)];
        runs.push(RunResult::without_tenants("pair", "timeslice", Status::Skipped { reason: "no, GPU".into() }, 0.0));
        Report {
            gpu: "GPU".into(),
            sm_count: 132,
            driver: None,
            date: "2026-11-21 00:00:00".into(),
            command: "rightsize compare".into(),
            scenarios,
            solo,
            runs,
            // krisp: ×1 met three times, ×2 missed in its second run; MPS missed at ×1.
            sweeps: [
                ("mps", 1.0, 0, 3.0),
                ("krisp", 1.0, 0, 1.5),
                ("krisp", 1.0, 1, 1.6),
                ("krisp", 1.0, 2, 1.4),
                ("krisp", 2.0, 0, 1.9),
                ("krisp", 2.0, 1, 2.5),
            ]
            .into_iter()
            .map(|(mode, scale, repeat, p99_ms)| SweepPoint {
                scenario: "pair".into(),
                mode: mode.into(),
                scale,
                repeat,
                tenants: vec![SweepTenant {
                    label: "bert-base (LC)".into(),
                    rate: Some(100.0 * scale),
                    p99_ms,
                    slo_ms: Some(2.0),
                    slo_attainment: Some(0.99),
                    throughput: 100.0 * scale,
                }],
                error: None,
            })
            .collect(),
        }
    }

    #[test]
    fn summary_has_ratios_and_reasons() {
        let s = summary(&report());
        // mps: each tenant at half speed (STP 1.0); krisp at 0.8 (STP 1.6): 1.6×.
        assert!(s.contains("| krisp-conserved | 1.60 | 1.25 | 1.000 | – | 1.60 |"), "{s}");
        assert!(s.contains("| timeslice | skipped: no, GPU |"), "{s}");
        assert!(s.contains("LC p99 ÷ solo"), "{s}");
        // Goodput: krisp met its SLO in every run up to ×1 (100 req/s), one run of ×2 missed;
        // MPS at no scale.
        assert!(s.contains("| mode | goodput req/s | at (runs) | missed at | ÷ mps-limit | ÷ mps | ×1 | ×2 |"), "{s}");
        assert!(
            s.contains("| krisp | 100 | ×1 (3) | ×2 | – | ∞ (it meets none) | 99.0 / 0.80 (3) | 99.0 / 1.25 (2) |"),
            "{s}"
        );
        assert!(s.contains("| mps | – | – | ×1 | – | – | 99.0 / 1.50 (1) | |"), "{s}");
        assert!(s.contains("every point runs 3 times with other arrivals"), "{s}");
    }

    #[test]
    fn sweep_csv_numbers_each_scales_runs() {
        let csv = sweep_csv(&report());
        let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(
            rows[0][..5],
            ["scenario", "mode", "scale", "repeat", "tenant"],
            "the columns rightsizing-targets reads, repeat among them"
        );
        assert!(rows.iter().all(|r| r.len() == rows[0].len()));
        let repeats: Vec<(&str, &str, &str, &str)> = rows[1..].iter().map(|r| (r[1], r[2], r[3], r[11])).collect();
        assert_eq!(
            repeats,
            [
                ("mps", "1", "0", "false"),
                ("krisp", "1", "0", "true"),
                ("krisp", "1", "1", "true"),
                ("krisp", "1", "2", "true"),
                ("krisp", "2", "0", "true"),
                ("krisp", "2", "1", "false"),
            ]
        );
    }

    #[test]
    fn robustness_is_each_modes_worst_and_mean_ratio_to_the_best() {
        let mut r = report();
        // The fixture's pair: mps STP 1.0, krisp-conserved 1.6 (the best).
        let rows = robustness(&r);
        let of = |rows: &[Robustness], m: &str| rows.iter().find(|x| x.mode == m).cloned().unwrap();
        let mps = of(&rows, "mps");
        assert_eq!((mps.scenarios, mps.worst.1.as_str()), (1, "pair"));
        assert!((mps.worst.0 - 1.0 / 1.6).abs() < 1e-9 && (mps.geomean - 1.0 / 1.6).abs() < 1e-9, "{mps:?}");
        assert!((of(&rows, "krisp-conserved").worst.0 - 1.0).abs() < 1e-9);
        // A second scenario, swept: scored by goodput, where mps met its SLOs at scale 2 and
        // krisp-conserved at none (0), so its worst is 0 there and its geometric mean 0.
        let mut swept = r.scenarios[0].clone();
        swept.name = "swept".into();
        swept.sweep = Some(vec![2.0]);
        swept.tenants[0].rate = Some(100.0);
        r.scenarios.push(swept);
        let point = |mode: &str, p99_ms: f64| SweepPoint {
            scenario: "swept".into(),
            mode: mode.into(),
            scale: 2.0,
            repeat: 0,
            tenants: vec![SweepTenant {
                label: "t".into(),
                rate: Some(200.0),
                p99_ms,
                slo_ms: Some(5.0),
                slo_attainment: Some(1.0),
                throughput: 200.0,
            }],
            error: None,
        };
        r.sweeps.extend([point("mps", 4.0), point("krisp-conserved", 9.0)]);
        let rows = robustness(&r);
        let (mps, krisp) = (of(&rows, "mps"), of(&rows, "krisp-conserved"));
        assert_eq!((krisp.scenarios, krisp.worst.0, krisp.worst.1.as_str(), krisp.geomean), (2, 0.0, "swept", 0.0));
        assert!((mps.geomean - (1.0f64 / 1.6).sqrt()).abs() < 1e-9, "{mps:?}");
        assert!(summary(&r).contains("## Robustness"));
    }

    #[test]
    fn tables_say_where_a_p99_is_only_the_maximum() {
        let mut r = report();
        // Every run and baseline of the fixture has 10 samples: its p99 is its maximum.
        let s = summary(&r);
        assert!(s.contains("(max of 10)") && s.contains(" (max) |"), "{s}");
        // With 100 or more in a run and its baselines, the table gives a plain p99.
        for solo in &mut r.solo {
            solo.metrics.as_mut().unwrap().requests = 100;
        }
        for run in &mut r.runs {
            for t in &mut run.tenants {
                t.metrics.requests = 250;
            }
        }
        let s = summary(&r);
        assert!(!s.contains("max of") && !s.contains("(max)"), "{s}");
    }

    #[test]
    fn a_tenant_that_served_nothing_is_reported_with_its_failure() {
        let mut r = report();
        assert!(!summary(&r).contains("Failed requests"));
        let line = super::super::results::unserved_line(
            "gpt2",
            &[crate::harness::metrics::Sample {
                failed: true,
                ..crate::harness::metrics::Sample::served(0.0, 0.0, 0.1)
            }],
            Some("an injected kernel fault"),
        );
        r.runs[0].unserved.push(line);
        let s = summary(&r);
        assert!(
            s.contains("- mps: gpt2: served none of its counted requests (1 failed, 0 shed); the first failure: an injected kernel fault"),
            "{s}"
        );
        // One that counted nothing is named too, not left out without a word.
        r.runs[0].unserved.push(super::super::results::unserved_line("bert-base", &[], None));
        assert!(summary(&r).contains("- mps: bert-base: counted no requests"), "{}", summary(&r));
    }

    #[test]
    fn the_summary_says_what_the_interposer_did() {
        let mut r = report();
        assert!(!summary(&r).contains("interposer"));
        use crate::harness::torch::{Counts, FitsSeen, Interposed};
        let counts = Counts { launches: 10, placed: 4, alone: 5, narrow: 1, ..Default::default() };
        let i = Interposed { counts, ..Default::default() };
        r.runs[0].tenants[1].interposed = Some(i.clone());
        let s = summary(&r);
        assert!(
            s.contains("- mps / gpt2: 10 launches: 4 placed, 5 alone on the whole device, 0 shared as under MPS, 0 latency-critical, 0 starving (its part set 0 times), 1 narrow, 0 fell back\n"),
            "{s}"
        );
        let fits = FitsSeen { kernels: 7, modelled: 3, completions: 21, ..Default::default() };
        r.runs[0].tenants[1].interposed = Some(Interposed { fits: Some(fits), ..i });
        let s = summary(&r);
        assert!(s.contains("0 fell back; fits: 7 kernels, 3 with a model, 21 launches timed"), "{s}");
        // A latency-critical process's trials, one released for the others' cost, its quota
        // sized by that cost.
        let counts = Counts {
            launches: 10,
            critical: 10,
            quota_trials: 3,
            quota_kept: 1,
            quota_released: 1,
            quota_costly: 1,
            quota_sized_sms: 24,
            ..Default::default()
        };
        r.runs[0].tenants[1].interposed = Some(Interposed { counts, ..Default::default() });
        let s = summary(&r);
        assert!(
            s.contains("10 latency-critical (its quota tried 3 times: kept 1, released 1 (1 for the others' cost), undecided 1; sized to 24 SMs for the others' cost while kept)"),
            "{s}"
        );
        // A starving process whose part its trial released.
        let counts = Counts {
            launches: 10,
            starving: 6,
            starved: 2,
            starving_trials: 3,
            starving_kept: 1,
            starving_released: 1,
            ..Default::default()
        };
        r.runs[0].tenants[1].interposed = Some(Interposed { counts, ..Default::default() });
        let s = summary(&r);
        assert!(s.contains("6 starving (its part set 2 times; tried 3 times: kept 1, released 1, undecided 1)"), "{s}");
    }

    #[test]
    fn csv_rows_and_quoting() {
        let r = report();
        let runs = runs_csv(&r);
        assert_eq!(runs.lines().count(), 4);
        assert!(runs.contains("\"skipped: no, GPU\""), "{runs}");
        let tenants = tenants_csv(&r);
        assert_eq!(tenants.lines().count(), 5);
        assert!(tenants.lines().nth(1).unwrap().starts_with("pair,mps,0,bert-base,latency-critical,8×128,10,"));
        // Round trip through JSON, as results.json is read back.
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(runs_csv(&back), runs);
    }
}

//! Latency CDFs: per tenant of a scenario, one line per mode (plans dashed).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::draw::{color_of, grid, is_plan, legend, ok_runs, plot, save, slug, Drawn, Plot, FONT};
use crate::harness::results::Report;

/// (mode, sorted latencies in ms) of one tenant.
type ModeLatencies = Vec<(String, Vec<f64>)>;

/// One scenario's latency distributions: per tenant, per mode, sorted latencies in ms.
struct Cdfs {
    title: String,
    tenants: Vec<(String, ModeLatencies)>,
}

fn draw_cdfs<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Cdfs) -> anyhow::Result<()> {
    let root = root.titled(&d.title, (FONT, 24)).drawn()?;
    let (rows, cols) = grid(d.tenants.len(), 2);
    for ((label, modes), area) in d.tenants.iter().zip(root.split_evenly((rows, cols))) {
        // The x range covers every mode's p99 (with room), so tails do not squash the bodies.
        let p99 = |l: &Vec<f64>| l[((l.len() as f64 * 0.99) as usize).min(l.len() - 1)];
        let xmax = modes.iter().filter(|(_, l)| !l.is_empty()).map(|(_, l)| p99(l)).fold(0.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(&area)
            .caption(label, (FONT, 18))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..xmax.max(1e-3), 0.0..1.0)
            .drawn()?;
        chart
            .configure_mesh()
            .x_desc("request latency (ms)")
            .y_desc("fraction of requests ≤ x")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .drawn()?;
        for (mode, lat) in modes {
            let n = lat.len() as f64;
            let pts: Vec<(f64, f64)> =
                lat.iter().enumerate().map(|(i, &x)| (x.min(xmax), (i + 1) as f64 / n)).collect();
            let c = color_of(mode);
            let style = ShapeStyle::from(&c).stroke_width(2);
            let series = if is_plan(mode) {
                chart.draw_series(DashedLineSeries::new(pts, 6, 4, style)).drawn()?
            } else {
                chart.draw_series(LineSeries::new(pts, style)).drawn()?
            };
            let dashed = is_plan(mode);
            series.label(mode.as_str()).legend(move |(x, y)| {
                let end = if dashed { x + 10 } else { x + 22 };
                PathElement::new(vec![(x, y), (end, y)], ShapeStyle::from(&c).stroke_width(2))
            });
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    }
    Ok(())
}

plot!(Cdfs, draw_cdfs);

/// Latency CDFs of every tenant of `scenario` under each mode that ran, into `dir`.
pub fn latency_cdfs(r: &Report, scenario: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let sc = r.scenarios.iter().find(|s| s.name == scenario).with_context(|| format!("no scenario {scenario}"))?;
    let tenants = sc
        .tenants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let modes = ok_runs(r, scenario)
                .filter_map(|run| {
                    let mut l: Vec<f64> = run.tenants.get(i)?.samples.iter().map(|s| s.latency() * 1e3).collect();
                    l.sort_by(f64::total_cmp);
                    (!l.is_empty()).then(|| (run.mode.clone(), l))
                })
                .collect();
            (format!("t{i} {}", t.label()), modes)
        })
        .collect();
    let d = Cdfs { title: format!("{scenario}: request latency CDF per tenant (dashed: plans)"), tenants };
    let (rows, cols) = grid(sc.tenants.len(), 2);
    let size = (560 * cols as u32, 420 * rows as u32 + 40);
    save(&dir.join(format!("cdf-{}", slug(scenario))), size, &d)
}

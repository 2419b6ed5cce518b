//! A scenario's load sweep: SLO attainment and worst p99 ÷ SLO against offered load, per mode
//! (a line through each scale's worst run, a bar over its runs).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::draw::{color_of, is_plan, legend, plot, save, slug, Drawn, Plot, FONT};
use crate::harness::results::Report;
use crate::harness::sweep::{self, SweepPoint};

/// One scale of a mode's sweep: its offered load, and over its runs the range of SLO
/// attainment (%) and of the worst p99 ÷ SLO.
#[derive(Debug, Clone, Copy)]
struct SweepScale {
    offered: f64,
    attainment: (f64, f64),
    p99_vs_slo: (f64, f64),
}

/// Per mode, its sweep's scales.
type SweepLines = Vec<(String, Vec<SweepScale>)>;

/// One scenario's load sweep.
struct Sweep {
    title: String,
    modes: SweepLines,
}

fn draw_sweep<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Sweep) -> anyhow::Result<()> {
    let root = root.titled(&d.title, (FONT, 22)).drawn()?;
    let pts = || d.modes.iter().flat_map(|(_, p)| p.iter());
    let xmax = pts().map(|p| p.offered).fold(1.0, f64::max) * 1.05;
    let amin = pts().map(|p| p.attainment.0).fold(100.0, f64::min).min(90.0);
    let rmin = pts().map(|p| p.p99_vs_slo.0).fold(1.0, f64::min) * 0.8;
    let rmax = pts().map(|p| p.p99_vs_slo.1).fold(1.0, f64::max) * 1.25;
    let panels = root.split_evenly((1, 2));
    for (k, area) in panels.iter().enumerate() {
        let caption = if k == 0 { "SLO attainment" } else { "worst p99 ÷ SLO (1 = the SLO)" };
        let mut builder = ChartBuilder::on(area);
        builder.caption(caption, (FONT, 17)).margin(12).x_label_area_size(42).y_label_area_size(56);
        let y_desc = if k == 0 { "requests within SLO (%)" } else { "p99 ÷ SLO (log scale)" };
        // The line follows each scale's worst run (what the goodput reads); a bar spans its runs.
        macro_rules! lines {
            ($chart:expr, $range:expr, $worst:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc("offered load (requests/s); bars: the range over a scale's runs")
                    .y_desc(y_desc)
                    .label_style((FONT, 13))
                    .axis_desc_style((FONT, 14))
                    .draw()
                    .drawn()?;
                for (mode, p) in &d.modes {
                    let c = color_of(mode);
                    let style = ShapeStyle::from(&c).stroke_width(2);
                    let line: Vec<(f64, f64)> = p.iter().map(|q| (q.offered, $worst(q))).collect();
                    let series = if is_plan(mode) {
                        chart.draw_series(DashedLineSeries::new(line.clone(), 6, 4, style)).drawn()?
                    } else {
                        chart.draw_series(LineSeries::new(line.clone(), style)).drawn()?
                    };
                    series.label(mode.as_str()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], ShapeStyle::from(&c).stroke_width(2))
                    });
                    chart.draw_series(line.iter().map(|&q| Circle::new(q, 3, c.filled()))).drawn()?;
                    let spreads: Vec<(f64, (f64, f64))> =
                        p.iter().map(|q| (q.offered, $range(q))).filter(|(_, (lo, hi))| hi > lo).collect();
                    chart
                        .draw_series(
                            spreads.iter().map(|&(x, (lo, hi))| PathElement::new(vec![(x, lo), (x, hi)], style)),
                        )
                        .drawn()?;
                    let caps = spreads.iter().flat_map(|&(x, (lo, hi))| [(x, lo), (x, hi)]);
                    chart
                        .draw_series(
                            caps.map(|at| EmptyElement::at(at) + PathElement::new(vec![(-5, 0), (5, 0)], style)),
                        )
                        .drawn()?;
                }
                legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
            }};
        }
        if k == 0 {
            let chart = builder.build_cartesian_2d(0.0..xmax, amin..100.5).drawn()?;
            lines!(chart, |q: &SweepScale| q.attainment, |q: &SweepScale| q.attainment.0);
        } else {
            let chart = builder.build_cartesian_2d(0.0..xmax, (rmin..rmax).log_scale()).drawn()?;
            lines!(chart, |q: &SweepScale| q.p99_vs_slo, |q: &SweepScale| q.p99_vs_slo.1);
        }
    }
    Ok(())
}

plot!(Sweep, draw_sweep);

/// The load sweep of `scenario` (SLO attainment and worst p99 ÷ SLO against offered load,
/// per mode: a line through each scale's worst run, a bar over its runs), into `dir`; `None`
/// when it has no sweep.
pub fn sweep_plot(r: &Report, scenario: &str, dir: &Path) -> anyhow::Result<Option<Vec<PathBuf>>> {
    let mut names: Vec<&str> = Vec::new();
    for p in r.sweeps.iter().filter(|p| p.scenario == scenario) {
        if !names.contains(&p.mode.as_str()) {
            names.push(&p.mode);
        }
    }
    let range = |v: &mut dyn Iterator<Item = f64>| {
        v.fold(None, |r: Option<(f64, f64)>, x| Some(r.map_or((x, x), |(a, b)| (a.min(x), b.max(x)))))
    };
    let mut modes: SweepLines = Vec::new();
    for mode in names {
        let scales: Vec<SweepScale> = sweep::by_scale(&r.sweeps, scenario, mode)
            .into_iter()
            .filter_map(|(_, runs)| {
                let ran: Vec<&SweepPoint> = runs.into_iter().filter(|p| !p.tenants.is_empty()).collect();
                Some(SweepScale {
                    offered: ran.first()?.offered(),
                    attainment: range(&mut ran.iter().filter_map(|p| p.attainment()).map(|a| a * 100.0))?,
                    p99_vs_slo: range(&mut ran.iter().filter_map(|p| p.worst_p99_vs_slo()))?,
                })
            })
            .collect();
        if !scales.is_empty() {
            modes.push((mode.to_string(), scales));
        }
    }
    if modes.is_empty() {
        return Ok(None);
    }
    let d = Sweep { title: format!("{scenario}: SLO attainment and p99 against load (dashed: plans)"), modes };
    save(&dir.join(format!("sweep-{}", slug(scenario))), (1200, 520), &d).map(Some)
}

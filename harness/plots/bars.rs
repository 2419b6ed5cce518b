//! STP and throughput bars: a scenario's system throughput and total requests/s per mode.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::draw::{categories, color_of, is_plan, ok_runs, plot, save, slug, Drawn, Plot, FONT};
use crate::harness::results::Report;

/// A bar value of a (mode, STP, throughput) row.
type Pick = fn(&(String, f64, f64)) -> f64;

/// One scenario's STP and total throughput per mode.
struct Bars {
    title: String,
    /// (mode, STP, requests/s over all tenants).
    modes: Vec<(String, f64, f64)>,
    tenants: usize,
}

fn draw_bars<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Bars) -> anyhow::Result<()> {
    let root = root.titled(&d.title, (FONT, 24)).drawn()?;
    let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
    let names: Vec<&str> = d.modes.iter().map(|(m, _, _)| m.as_str()).collect();
    let panels: [(&DrawingArea<DB, Shift>, &str, Pick); 2] = [
        (&left, "system throughput (STP over closed loops, ideal = their number)", |m| m.1),
        (&right, "throughput, all tenants (requests/s)", |m| m.2),
    ];
    for (k, (area, desc, value)) in panels.into_iter().enumerate() {
        let max = d.modes.iter().map(value).fold(0.0, f64::max);
        let xmax = if k == 0 { max.max(d.tenants as f64) * 1.12 } else { max * 1.18 };
        let n = d.modes.len() as u32;
        let mut chart = ChartBuilder::on(area)
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(150)
            .build_cartesian_2d(0.0..xmax.max(1e-3), categories(n))
            .drawn()?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(desc)
            .y_labels(n as usize)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i as usize).map_or(String::new(), |s| s.to_string()),
                _ => String::new(),
            })
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .drawn()?;
        for (i, m) in d.modes.iter().enumerate() {
            let v = value(m);
            let c = color_of(&m.0);
            let fill = if is_plan(&m.0) { c.mix(0.55).filled() } else { c.filled() };
            let (lo, hi) = (SegmentValue::Exact(i as u32), SegmentValue::Exact(i as u32 + 1));
            chart.draw_series(std::iter::once(Rectangle::new([(0.0, lo), (v, hi)], fill).into_dyn())).drawn()?;
            let text = if k == 0 { format!("{v:.2}") } else { format!("{v:.0}") };
            let style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (v + xmax * 0.01, SegmentValue::CenterOf(i as u32)),
                    style,
                )))
                .drawn()?;
        }
        if k == 0 {
            // STP 1: what time slicing the tenants one at a time would give.
            let line = ShapeStyle::from(&BLACK.mix(0.6)).stroke_width(1);
            let (lo, hi) = (SegmentValue::Exact(0), SegmentValue::Exact(n));
            chart.draw_series(DashedLineSeries::new([(1.0, lo), (1.0, hi)], 4, 4, line)).drawn()?;
        }
    }
    Ok(())
}

plot!(Bars, draw_bars);

/// STP and throughput bars of `scenario` per mode, into `dir`.
pub fn throughput_bars(r: &Report, scenario: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let sc = r.scenarios.iter().find(|s| s.name == scenario).with_context(|| format!("no scenario {scenario}"))?;
    let modes: Vec<(String, f64, f64)> = ok_runs(r, scenario)
        .filter_map(|run| {
            let stp = run.metrics?.stp?;
            let tput = run.tenants.iter().map(|t| t.metrics.throughput).filter(|x| x.is_finite()).sum();
            Some((run.mode.clone(), stp, tput))
        })
        .collect();
    if modes.is_empty() {
        bail!("no run of {scenario} has an STP to plot (STP counts closed-loop tenants)");
    }
    let closed = sc.tenants.iter().filter(|t| t.rate.is_none()).count();
    let d = Bars { title: format!("{scenario}: throughput per mode (lighter: plans)"), modes, tenants: closed };
    let size = (1200, 90 + 34 * d.modes.len() as u32 + 60);
    save(&dir.join(format!("bars-{}", slug(scenario))), size, &d)
}

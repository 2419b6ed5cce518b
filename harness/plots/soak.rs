//! A soak's plot: host and GPU memory, and each tenant's p99, per window against time.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::draw::{legend, plot, save, Drawn, Plot, FONT, PALETTE};

/// A soak's windows: memory and each tenant's p99 against time.
struct Soak {
    /// `(minutes, host RSS MiB, GPU used MiB)` per window.
    memory: Vec<(f64, Option<f64>, Option<f64>)>,
    /// Per tenant: its label and `(minutes, p99 ms)` per window it served in.
    p99: Vec<(String, Vec<(f64, f64)>)>,
}

fn draw_soak<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Soak) -> anyhow::Result<()> {
    let root = root.titled("soak: memory and p99 per window", (FONT, 22)).drawn()?;
    let panels = root.split_evenly((1, 2));
    let tmax = d.memory.iter().map(|m| m.0).fold(1.0, f64::max);
    // Memory: host RSS and GPU used, each from 0.
    let mmax = d.memory.iter().flat_map(|m| [m.1, m.2]).flatten().fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&panels[0])
        .caption("memory", (FONT, 17))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..tmax, 0.0..mmax)
        .drawn()?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("MiB")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
        .drawn()?;
    for (k, name) in [(0usize, "host resident memory"), (1, "GPU used memory")] {
        let c = PALETTE[k];
        let line: Vec<(f64, f64)> =
            d.memory.iter().filter_map(|m| if k == 0 { m.1 } else { m.2 }.map(|v| (m.0, v))).collect();
        chart
            .draw_series(LineSeries::new(line, ShapeStyle::from(&c).stroke_width(2)))
            .drawn()?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], ShapeStyle::from(&c).stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    // p99 per tenant, log scale.
    let all = || d.p99.iter().flat_map(|(_, v)| v.iter().map(|p| p.1));
    let (lo, hi) = (all().fold(f64::INFINITY, f64::min).min(1.0) * 0.8, all().fold(1.0, f64::max) * 1.25);
    let mut chart = ChartBuilder::on(&panels[1])
        .caption("p99 per tenant", (FONT, 17))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..tmax, (lo..hi).log_scale())
        .drawn()?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("p99 ms (log scale)")
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
        .drawn()?;
    for (i, (label, v)) in d.p99.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let style = ShapeStyle::from(&c).stroke_width(2);
        chart
            .draw_series(LineSeries::new(v.clone(), style))
            .drawn()?
            .label(format!("{i}: {label}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    Ok(())
}

plot!(Soak, draw_soak);

/// A soak's plot into `dir/soak.svg` and `.png`: `memory` is `(seconds, host RSS MiB, GPU used
/// MiB)` per window, `p99` each tenant's label and `(seconds, p99 ms)` per window.
pub fn soak_plot(
    memory: &[(f64, Option<f64>, Option<f64>)],
    p99: &[(String, Vec<(f64, f64)>)],
    dir: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let min = |s: f64| s / 60.0;
    let d = Soak {
        memory: memory.iter().map(|&(t, r, g)| (min(t), r, g)).collect(),
        p99: p99.iter().map(|(l, v)| (l.clone(), v.iter().map(|&(t, p)| (min(t), p)).collect())).collect(),
    };
    save(&dir.join("soak"), (1200, 520), &d)
}

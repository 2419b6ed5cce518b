//! The pairwise slowdown heatmap: a model (rows) beside a co-runner (columns), one panel per
//! mode, from every run of two tenants.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::draw::{categories, grid, plot, save, Drawn, Plot, FONT};
use crate::harness::results::{Report, RunResult, Status};

/// Heatmap cells: (row, column) → value.
type Cells<T> = BTreeMap<(usize, usize), T>;

/// Mean slowdown of a model (rows) beside one co-runner (columns), per mode, from the runs of
/// two tenants.
struct Heat {
    models: Vec<String>,
    /// Mode → (row, column) → slowdown.
    modes: Vec<(String, Cells<f64>)>,
}

fn heat_color(v: f64, max: f64) -> RGBColor {
    // 1× white → max× dark red, on a log scale (so 1.5× shows beside 15×).
    let t = (v.max(1.0).ln() / max.max(1.0 + 1e-9).ln()).clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t) as u8;
    RGBColor(lerp(255.0, 165.0), lerp(255.0, 15.0), lerp(255.0, 21.0))
}

fn draw_heat<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Heat) -> anyhow::Result<()> {
    let root = root
        .titled("Pairwise slowdown: mean latency of the row's model beside the column's, over solo", (FONT, 22))
        .drawn()?;
    let max = d.modes.iter().flat_map(|(_, m)| m.values()).copied().fold(1.0, f64::max);
    let (rows, cols) = grid(d.modes.len(), 4);
    let n = d.models.len() as u32;
    let models = &d.models;
    for ((mode, cells), area) in d.modes.iter().zip(root.split_evenly((rows, cols))) {
        let mut chart = ChartBuilder::on(&area)
            .caption(mode, (FONT, 16))
            .margin(8)
            .x_label_area_size(46)
            .y_label_area_size(86)
            .build_cartesian_2d(categories(n), categories(n))
            .drawn()?;
        let name = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) => models.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n as usize)
            .y_labels(n as usize)
            .x_label_formatter(&name)
            .y_label_formatter(&name)
            .x_desc("co-runner")
            .y_desc("model")
            .label_style((FONT, 11))
            .axis_desc_style((FONT, 12))
            .draw()
            .drawn()?;
        for r in 0..n {
            for c in 0..n {
                let v = cells.get(&(r as usize, c as usize)).copied();
                let fill = v.map_or(RGBColor(235, 235, 235), |v| heat_color(v, max));
                let corners = [
                    (SegmentValue::Exact(c), SegmentValue::Exact(r)),
                    (SegmentValue::Exact(c + 1), SegmentValue::Exact(r + 1)),
                ];
                chart.draw_series(std::iter::once(Rectangle::new(corners, fill.filled()))).drawn()?;
                let text = v.map_or("–".to_string(), |v| format!("{v:.2}×"));
                let dark = v.is_some_and(|v| v.max(1.0).ln() / max.max(1.0 + 1e-9).ln() > 0.55);
                let style = TextStyle::from((FONT, 13).into_font())
                    .color(if dark { &WHITE } else { &BLACK })
                    .pos(Pos::new(HPos::Center, VPos::Center));
                let at = (SegmentValue::CenterOf(c), SegmentValue::CenterOf(r));
                chart.draw_series(std::iter::once(Text::new(text, at, style))).drawn()?;
            }
        }
    }
    Ok(())
}

plot!(Heat, draw_heat);

/// The pairwise slowdown heatmap over every two-tenant run, one panel per mode, into `dir`;
/// `None` if the report has no run of two tenants.
pub fn slowdown_heatmap(r: &Report, dir: &Path) -> anyhow::Result<Option<Vec<PathBuf>>> {
    let pairs: Vec<&RunResult> =
        r.runs.iter().filter(|x| matches!(x.status, Status::Ok) && x.tenants.len() == 2).collect();
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut models: Vec<String> = Vec::new();
    for run in &pairs {
        for t in &run.tenants {
            if !models.contains(&t.spec.model) {
                models.push(t.spec.model.clone());
            }
        }
    }
    let index = |m: &str| models.iter().position(|x| x == m).unwrap_or(0);
    let mut modes: Vec<(String, Cells<Vec<f64>>)> = Vec::new();
    for run in &pairs {
        let k = match modes.iter().position(|(m, _)| *m == run.mode) {
            Some(k) => k,
            None => {
                modes.push((run.mode.clone(), BTreeMap::new()));
                modes.len() - 1
            }
        };
        for (a, b) in [(0, 1), (1, 0)] {
            if let Some(s) = run.tenants[a].metrics.slowdown.filter(|s| s.is_finite()) {
                let cell = (index(&run.tenants[a].spec.model), index(&run.tenants[b].spec.model));
                modes[k].1.entry(cell).or_default().push(s);
            }
        }
    }
    let d = Heat {
        modes: modes
            .into_iter()
            .map(|(m, cells)| {
                (m, cells.into_iter().map(|(k, v)| (k, v.iter().sum::<f64>() / v.len() as f64)).collect())
            })
            .collect(),
        models,
    };
    let (rows, cols) = grid(d.modes.len(), 4);
    let size = (380 * cols as u32, 330 * rows as u32 + 40);
    save(&dir.join("slowdown-heatmap"), size, &d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_colours_run_from_white_to_red() {
        assert_eq!(heat_color(1.0, 3.0), RGBColor(255, 255, 255));
        assert_eq!(heat_color(3.0, 3.0), RGBColor(165, 15, 21));
        assert_eq!(heat_color(0.5, 3.0), RGBColor(255, 255, 255), "speed-ups clamp to white");
    }
}

//! Plots of a comparison (plotters; every plot as SVG and PNG): per-tenant latency CDFs per
//! mode, STP and throughput bars per mode, a pairwise slowdown heatmap (model × co-runner) per
//! mode, and kernel latency-vs-SMs curves from a profile.
//!
//! Text is drawn with a TrueType font found on the system (DejaVu Sans or Liberation Sans, as
//! Debian's fonts-dejavu-core installs it) or named by `$RIGHTSIZE_FONT`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context as _};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::compare::{Report, RunResult, Status};
use super::scenario::Mode;
use super::sweep::{self, SweepPoint};
use crate::profiler::{Point, Profile};

const FONT: &str = "sans-serif";

/// Where fonts usually are.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
];

/// Loads and registers the plots' font once.
fn ensure_font() -> anyhow::Result<()> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let candidates: Vec<PathBuf> = match std::env::var_os("RIGHTSIZE_FONT") {
                Some(p) => vec![PathBuf::from(p)],
                None => FONT_PATHS.iter().map(PathBuf::from).collect(),
            };
            let Some((path, bytes)) = candidates.iter().find_map(|p| std::fs::read(p).ok().map(|b| (p, b))) else {
                return Err(match std::env::var_os("RIGHTSIZE_FONT") {
                    Some(p) => format!("cannot read the font $RIGHTSIZE_FONT={}", Path::new(&p).display()),
                    None => "no TrueType font found for the plots; install fonts-dejavu-core (Debian/Ubuntu) or \
                             set RIGHTSIZE_FONT=/path/to/font.ttf"
                        .into(),
                });
            };
            // Registered fonts live as long as the program.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            for style in [FontStyle::Normal, FontStyle::Bold] {
                plotters::style::register_font(FONT, style, bytes)
                    .map_err(|_| format!("{} is not a TrueType font", path.display()))?;
            }
            Ok(())
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Turns a drawing error into an error with context.
trait Drawn<T> {
    fn drawn(self) -> anyhow::Result<T>;
}

impl<T, E: std::fmt::Display> Drawn<T> for Result<T, E> {
    fn drawn(self) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("drawing failed: {e}"))
    }
}

/// A plot: draws itself on any backend.
trait Plot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()>;
}

macro_rules! plot {
    ($t:ty, $f:ident) => {
        impl Plot for $t {
            fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> anyhow::Result<()> {
                $f(root, self)
            }
        }
    };
}

plot!(Cdfs, draw_cdfs);
plot!(Bars, draw_bars);
plot!(Heat, draw_heat);
plot!(Curves, draw_curves);
plot!(Sweep, draw_sweep);
plot!(Soak, draw_soak);

/// Draws `data` into `<stem>.svg` and `<stem>.png`; returns both paths.
fn save(stem: &Path, size: (u32, u32), data: &impl Plot) -> anyhow::Result<Vec<PathBuf>> {
    ensure_font()?;
    let (svg_path, png_path) = (stem.with_extension("svg"), stem.with_extension("png"));
    {
        let root = SVGBackend::new(&svg_path, size).into_drawing_area();
        root.fill(&WHITE).drawn()?;
        data.draw(&root).with_context(|| svg_path.display().to_string())?;
        root.present().drawn().with_context(|| format!("cannot write {}", svg_path.display()))?;
    }
    {
        let root = BitMapBackend::new(&png_path, size).into_drawing_area();
        root.fill(&WHITE).drawn()?;
        data.draw(&root).with_context(|| png_path.display().to_string())?;
        root.present().drawn().with_context(|| format!("cannot write {}", png_path.display()))?;
    }
    Ok(vec![svg_path, png_path])
}

/// Line and bar colours (the first seven are the sharings', in [`Sharing`] order).
///
/// [`Sharing`]: super::scenario::Sharing
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

/// A colour per sharing (the same in every plot); plan variants are drawn dashed or lighter.
fn color_of(mode: &str) -> RGBColor {
    match mode.parse::<Mode>() {
        Ok(m) => PALETTE[(m.sharing as usize).min(PALETTE.len() - 1)],
        Err(_) => RGBColor(127, 127, 127),
    }
}

fn is_plan(mode: &str) -> bool {
    mode.ends_with("-plan")
}

/// An axis of `n` categories (a segmented range `0..n` would add an empty one at the end).
fn categories(n: u32) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordu32> {
    (0u32..n.max(1) - 1).into_segmented()
}

/// Draws a chart's legend, boxed, at `position`.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .drawn()
}

/// Lays `n` panels out in a grid of at most `cols` columns.
fn grid(n: usize, cols: usize) -> (usize, usize) {
    let cols = cols.clamp(1, n.max(1));
    (n.max(1).div_ceil(cols), cols)
}

fn ok_runs<'a>(r: &'a Report, scenario: &'a str) -> impl Iterator<Item = &'a RunResult> + 'a {
    r.runs.iter().filter(move |x| x.scenario == scenario && matches!(x.status, Status::Ok) && !x.tenants.is_empty())
}

/// (mode, sorted latencies in ms) of one tenant.
type ModeLatencies = Vec<(String, Vec<f64>)>;
/// A bar value of a (mode, STP, throughput) row.
type Pick = fn(&(String, f64, f64)) -> f64;
/// Heatmap cells: (row, column) → value.
type Cells<T> = BTreeMap<(usize, usize), T>;
/// (SMs, latency ratio) points.
type Points = Vec<(f64, f64)>;

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

/// A profile's costliest kernels: latency over full-GPU latency against SMs, knees marked.
/// One kernel's curves on a kernel-curves plot: alone, and beside the co-runner (dashed).
struct KernelLine {
    label: String,
    /// (SMs, latency ÷ full-device latency alone).
    alone: Points,
    /// Its latency knee alone (filled dot).
    knee: u32,
    /// The same beside the co-runner; empty where not measured.
    beside: Points,
    /// Its latency knee beside the co-runner (open dot); 0 where not measured.
    knee_beside: u32,
}

struct Curves {
    title: String,
    sm_count: u32,
    kernels: Vec<KernelLine>,
    /// The whole request's curve, drawn in black.
    request: Option<Points>,
    /// The same beside a co-runner on the rest of the device, drawn in grey.
    request_beside: Option<Points>,
}

fn draw_curves<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, d: &Curves) -> anyhow::Result<()> {
    let ys = || {
        let requests = d.request.iter().chain(&d.request_beside).flatten();
        d.kernels.iter().flat_map(|k| k.alone.iter().chain(&k.beside)).chain(requests).map(|q| q.1)
    };
    let (ymax, ymin) = (ys().fold(1.5, f64::max) * 1.1, ys().fold(1.0, f64::min) * 0.95);
    let mut chart = ChartBuilder::on(root)
        .caption(&d.title, (FONT, 22))
        .margin(16)
        .x_label_area_size(46)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..f64::from(d.sm_count) * 1.02, (ymin..ymax).log_scale())
        .drawn()?;
    chart
        .configure_mesh()
        .x_desc("SMs of the partition")
        .y_desc("latency ÷ full-GPU latency (×, log scale)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .draw()
        .drawn()?;
    if let Some(pts) = &d.request {
        let line = ShapeStyle::from(&BLACK).stroke_width(4);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), line))
            .drawn()?
            .label("the whole request, its kernels chosen for each partition")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line));
    }
    if let Some(pts) = &d.request_beside {
        let line = ShapeStyle::from(&RGBColor(150, 150, 150)).stroke_width(4);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), line))
            .drawn()?
            .label("the whole request beside a co-runner streaming memory on the other SMs")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line));
    }
    for (k, line) in d.kernels.iter().enumerate() {
        let c = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(line.alone.iter().copied(), ShapeStyle::from(&c).stroke_width(2)))
            .drawn()?
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], ShapeStyle::from(&c).stroke_width(2)));
        chart
            .draw_series(DashedLineSeries::new(line.beside.iter().copied(), 6, 4, ShapeStyle::from(&c).stroke_width(2)))
            .drawn()?;
        if let Some(&(x, y)) = line.alone.iter().find(|p| p.0 as u32 == line.knee) {
            chart.draw_series(std::iter::once(Circle::new((x, y), 5, c.filled()))).drawn()?;
        }
        if let Some(&(x, y)) = line.beside.iter().find(|p| p.0 as u32 == line.knee_beside) {
            chart.draw_series(std::iter::once(Circle::new((x, y), 5, ShapeStyle::from(&c).stroke_width(2)))).drawn()?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

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

/// File-name-safe version of a name.
fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

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

/// Latency-vs-SMs curves of the `top` kernels of `p` with the largest share of request time.
pub fn kernel_curves(p: &Profile, top: usize, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut ks: Vec<_> = p.kernels.iter().filter(|k| k.full_us > 0.0 && !k.curve.is_empty()).collect();
    ks.sort_by(|a, b| (b.full_us * f64::from(b.calls)).total_cmp(&(a.full_us * f64::from(a.calls))));
    let total: f64 = p.kernels.iter().map(|k| k.full_us * f64::from(k.calls)).sum();
    let kernels = ks.into_iter().take(top).map(|k| {
        let share = 100.0 * k.full_us * f64::from(k.calls) / total.max(1e-9);
        let beside_knees = match k.min_sms_beside {
            0 => String::new(),
            sms => format!("; beside: {sms}, {}", k.efficiency_sms_beside(p.epsilon)),
        };
        let label = format!(
            "{}, {} work units, ×{}: {:.1} µs, {share:.0}% of request; knees: latency {}, efficiency {} SMs{beside_knees}",
            k.kernel,
            k.units,
            k.calls,
            k.full_us,
            k.min_sms,
            k.efficiency_sms(p.epsilon)
        );
        let relative = |c: &[Point]| c.iter().map(|q| (f64::from(q.sms), q.us / k.full_us)).collect();
        KernelLine {
            label,
            alone: relative(&k.curve),
            knee: k.min_sms,
            beside: relative(&k.beside),
            knee_beside: k.min_sms_beside,
        }
    });
    // The whole request (a decoder's prefill and one step), its kernels chosen for each size.
    let request = p.request_us(2);
    let whole = request.last().map_or(0.0, |w| w.1);
    let relative = |v: Vec<(u32, f64)>| -> Points { v.iter().map(|&(sms, us)| (f64::from(sms), us / whole)).collect() };
    let beside: Vec<(u32, f64)> =
        p.request_curve.iter().filter(|q| q.co_us > 0.0).map(|q| (q.sms, q.co_us + q.co_step_us)).collect();
    let request_beside = (whole > 0.0 && !beside.is_empty()).then(|| relative(beside));
    let request = (whole > 0.0).then(|| relative(request));
    let kernels = kernels.collect();
    let d = Curves {
        title: format!("{}, {}: latency vs SMs (dot: knee; dashed: beside a co-runner)", p.model, p.request),
        sm_count: p.sm_count,
        kernels,
        request,
        request_beside,
    };
    save(&dir.join(format!("curves-{}", slug(&p.model))), (1100, 640), &d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::output::tests::report;

    fn out(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rightsize-plots-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn check(files: &[PathBuf]) {
        assert_eq!(files.len(), 2);
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{}", &svg[..svg.len().min(200)]);
        let png = std::fs::read(&files[1]).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(png.len() > 2000, "{} bytes", png.len());
    }

    #[test]
    fn every_plot_of_a_report_is_written_as_svg_and_png_with_labelled_axes() {
        let r = report();
        let dir = out("report");
        let cdf = latency_cdfs(&r, "pair", &dir).unwrap();
        check(&cdf);
        let svg = std::fs::read_to_string(&cdf[0]).unwrap();
        assert!(svg.contains("request latency (ms)") && svg.contains("krisp-conserved"), "axis and legend");
        let bars = throughput_bars(&r, "pair", &dir).unwrap();
        check(&bars);
        assert!(std::fs::read_to_string(&bars[0]).unwrap().contains("requests/s"));
        let heat = slowdown_heatmap(&r, &dir).unwrap().expect("the report has pairs");
        check(&heat);
        let svg = std::fs::read_to_string(&heat[0]).unwrap();
        assert!(svg.contains("co-runner") && svg.contains("gpt2") && svg.contains("×"));
        let sweep = sweep_plot(&r, "pair", &dir).unwrap().expect("the report has a sweep");
        check(&sweep);
        let svg = std::fs::read_to_string(&sweep[0]).unwrap();
        assert!(svg.contains("offered load") && svg.contains("krisp") && svg.contains("p99 ÷ SLO"));
        assert!(svg.contains("bars: the range over a scale"));
        // The spread: krisp's runs at ×1 and at ×2 differ in p99 (equal in attainment), a bar
        // with two caps each; with one run per scale there are none.
        let mut single = r.clone();
        single.sweeps.retain(|p| p.repeat == 0);
        let one = sweep_plot(&single, "pair", &out("single")).unwrap().unwrap();
        let lines = |f: &PathBuf| std::fs::read_to_string(f).unwrap().matches("<polyline").count();
        assert_eq!(lines(&sweep[0]), lines(&one[0]) + 2 * 3);
        std::fs::remove_dir_all(one[0].parent().unwrap()).unwrap();
        assert!(sweep_plot(&r, "nope", &dir).unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_scenario_without_results_is_an_error_not_an_empty_plot() {
        let mut r = report();
        r.runs.retain(|x| !matches!(x.status, Status::Ok));
        let dir = out("empty");
        let e = throughput_bars(&r, "pair", &dir).unwrap_err().to_string();
        assert!(e.contains("no run of pair"), "{e}");
        assert!(slowdown_heatmap(&r, &dir).unwrap().is_none());
        assert!(latency_cdfs(&r, "nope", &dir).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn curves_of_a_committed_profile() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/nvidia-h200/gpt2-b8-s128.json");
        let p = Profile::load(&path).unwrap();
        let dir = out("curves");
        let files = kernel_curves(&p, 6, &dir).unwrap();
        check(&files);
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(svg.contains("SMs of the partition") && svg.contains("knee"));
        assert!(svg.contains("; beside: "), "each kernel's knees beside the co-runner in its label");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn heat_colours_run_from_white_to_red() {
        assert_eq!(heat_color(1.0, 3.0), RGBColor(255, 255, 255));
        assert_eq!(heat_color(3.0, 3.0), RGBColor(165, 15, 21));
        assert_eq!(heat_color(0.5, 3.0), RGBColor(255, 255, 255), "speed-ups clamp to white");
    }
}

//! A profile's kernel curves: latency over full-GPU latency against SMs for its costliest
//! kernels, alone and beside a co-runner, knees marked, with the whole request's curve.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::draw::{legend, plot, save, slug, Drawn, Plot, FONT, PALETTE};
use crate::profiler::{Point, Profile};

/// (SMs, latency ratio) points.
type Points = Vec<(f64, f64)>;

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

plot!(Curves, draw_curves);

/// Latency-vs-SMs curves of the `top` kernels of `p` with the largest share of request time,
/// saved as `curves-<name>` (a profile's file stem, `<model>-b<batch>-s<seq>`: one model's
/// profiles at several shapes each get their own plot).
pub fn kernel_curves(p: &Profile, name: &str, top: usize, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
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
    save(&dir.join(format!("curves-{}", slug(name))), (1100, 640), &d)
}

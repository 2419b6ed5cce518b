//! What every plot shares: the font, the [`Plot`] trait and [`save`] (SVG and PNG), colours per
//! sharing, category axes, legends, panel grids, file names, and the runs a plot reads.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::harness::results::{Report, RunResult, Status};
use crate::harness::scenario::Mode;

pub(super) const FONT: &str = "sans-serif";

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
pub(super) trait Drawn<T> {
    fn drawn(self) -> anyhow::Result<T>;
}

impl<T, E: std::fmt::Display> Drawn<T> for Result<T, E> {
    fn drawn(self) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("drawing failed: {e}"))
    }
}

/// A plot: draws itself on any backend.
pub(super) trait Plot {
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

pub(super) use plot;

/// Draws `data` into `<stem>.svg` and `<stem>.png`; returns both paths.
pub(super) fn save(stem: &Path, size: (u32, u32), data: &impl Plot) -> anyhow::Result<Vec<PathBuf>> {
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
/// [`Sharing`]: crate::harness::scenario::Sharing
pub(super) const PALETTE: [RGBColor; 8] = [
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
pub(super) fn color_of(mode: &str) -> RGBColor {
    match mode.parse::<Mode>() {
        Ok(m) => PALETTE[(m.sharing as usize).min(PALETTE.len() - 1)],
        Err(_) => RGBColor(127, 127, 127),
    }
}

pub(super) fn is_plan(mode: &str) -> bool {
    mode.ends_with("-plan")
}

/// An axis of `n` categories (a segmented range `0..n` would add an empty one at the end).
pub(super) fn categories(n: u32) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordu32> {
    (0u32..n.max(1) - 1).into_segmented()
}

/// Draws a chart's legend, boxed, at `position`.
pub(super) fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
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
pub(super) fn grid(n: usize, cols: usize) -> (usize, usize) {
    let cols = cols.clamp(1, n.max(1));
    (n.max(1).div_ceil(cols), cols)
}

pub(super) fn ok_runs<'a>(r: &'a Report, scenario: &'a str) -> impl Iterator<Item = &'a RunResult> + 'a {
    r.runs.iter().filter(move |x| x.scenario == scenario && matches!(x.status, Status::Ok) && !x.tenants.is_empty())
}

/// File-name-safe version of a name.
pub(super) fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

//! PNG charts of run metrics: line charts in a grid of panels, and bar charts (throughput per
//! stage). Drawn with `plotters` into an RGB buffer, encoded with the `image` crate and written
//! atomically. Text uses DejaVu Sans from Debian's `fonts-dejavu-core`, read at run time.

use anyhow::{Context, Result, anyhow, bail};
use image::ImageEncoder;
use image::codecs::png::PngEncoder;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;

mod bars;
pub use bars::{BarSeries, bar_chart, grouped_bar_chart};

/// The font every chart's text is drawn with.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The Debian package that provides [`FONT_PATH`].
pub const FONT_PACKAGE: &str = "fonts-dejavu-core";

/// Pixel size of one panel.
pub const PANEL_SIZE: (u32, u32) = (600, 400);
/// Height of the band above the panels that holds the chart title.
pub const TITLE_HEIGHT: u32 = 40;
/// Most panels one chart holds.
pub const MAX_PANELS: usize = 10;

/// One line on a panel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// (x, y) points in drawing order; non-finite points (and, on a log axis, y <= 0) are
    /// skipped.
    pub points: Vec<(f64, f64)>,
}

/// One chart in the grid.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Logarithmic y axis.
    pub log_y: bool,
}

/// Pixel size of a chart of `n` panels: one column for a single panel, two otherwise.
pub fn canvas_size(n: usize) -> (u32, u32) {
    let cols = if n > 1 { 2 } else { 1 };
    let rows = n.div_ceil(cols).max(1);
    (
        PANEL_SIZE.0 * cols as u32,
        TITLE_HEIGHT + PANEL_SIZE.1 * rows as u32,
    )
}

/// Draws `panels` (1 to [`MAX_PANELS`]) in a grid under `title` and writes the PNG to `path`.
pub fn render(path: &Path, title: &str, panels: &[Panel]) -> Result<()> {
    if panels.is_empty() || panels.len() > MAX_PANELS {
        bail!(
            "chart {}: {} panels given, 1 to {MAX_PANELS} supported",
            path.display(),
            panels.len()
        );
    }
    ensure_font()?;
    let cols = if panels.len() > 1 { 2 } else { 1 };
    let rows = panels.len().div_ceil(cols);
    let (w, h) = canvas_size(panels.len());
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let body = root
            .titled(title, ("sans-serif", 26).into_font())
            .map_err(draw_err)?;
        let areas = body.split_evenly((rows, cols));
        for (panel, area) in panels.iter().zip(&areas) {
            draw_panel(area, panel)?;
        }
        root.present().map_err(draw_err)?;
    }
    write_png(path, &buf, w, h)
}

/// The finite points of each non-empty series (y > 0 as well on a log axis).
fn clean_series(panel: &Panel) -> Vec<(&str, Vec<(f64, f64)>)> {
    panel
        .series
        .iter()
        .map(|s| {
            let pts: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!panel.log_y || *y > 0.0))
                .collect();
            (s.name.as_str(), pts)
        })
        .filter(|(_, pts)| !pts.is_empty())
        .collect()
}

/// `[lo, hi]` widened so that a single value or a flat line still gets a visible range.
fn padded(lo: f64, hi: f64, frac: f64) -> Range<f64> {
    if hi > lo {
        let pad = (hi - lo) * frac;
        lo - pad..hi + pad
    } else {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo - pad..hi + pad
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<()> {
    let series = clean_series(panel);
    if series.is_empty() {
        let inner = area
            .titled(&panel.title, ("sans-serif", 20).into_font())
            .map_err(draw_err)?;
        return no_data(&inner);
    }
    let all = || series.iter().flat_map(|(_, pts)| pts.iter());
    let (x_lo, x_hi) = min_max(all().map(|p| p.0));
    let (y_lo, y_hi) = min_max(all().map(|p| p.1));
    // A little room on the x axis so that markers at the ends are not cut in half.
    let x = padded(x_lo, x_hi, 0.02);
    if panel.log_y {
        let (lo, hi) = if y_hi > y_lo {
            (y_lo / 1.2, y_hi * 1.2)
        } else {
            (y_lo / 2.0, y_hi * 2.0)
        };
        let legend = legend_corner(&series, &x, &(lo.log10()..hi.log10()), f64::log10);
        let spans = (x.end - x.start, 0.0);
        draw_lines(area, panel, &series, x, (lo..hi).log_scale(), spans, legend)
    } else {
        let y = padded(y_lo, y_hi, 0.05);
        let legend = legend_corner(&series, &x, &y, |v| v);
        let spans = (x.end - x.start, y.end - y.start);
        draw_lines(area, panel, &series, x, y, spans, legend)
    }
}

/// The corner of the plot that the fewest points fall in, for the legend (upper right on a
/// tie). `ty` maps a y value onto the axis' linear scale.
fn legend_corner(
    series: &[(&str, Vec<(f64, f64)>)],
    x: &Range<f64>,
    y: &Range<f64>,
    ty: impl Fn(f64) -> f64,
) -> SeriesLabelPosition {
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let frac = |v: f64, r: &Range<f64>| (v - r.start) / (r.end - r.start);
    let count = |right: bool, upper: bool| {
        series
            .iter()
            .flat_map(|(_, pts)| pts.iter())
            .filter(|&&(px, py)| {
                let (fx, fy) = (frac(px, x), frac(ty(py), y));
                (if right { fx > 0.6 } else { fx < 0.4 })
                    && (if upper { fy > 0.65 } else { fy < 0.35 })
            })
            .count()
    };
    let mut best = (SeriesLabelPosition::UpperRight, usize::MAX);
    for (pos, right, upper) in corners {
        let n = count(right, upper);
        if n < best.1 {
            best = (pos, n);
        }
    }
    best.0
}

fn draw_lines<DB, Y>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    series: &[(&str, Vec<(f64, f64)>)],
    x: Range<f64>,
    y: Y,
    (x_span, y_span): (f64, f64),
    legend: SeriesLabelPosition,
) -> Result<()>
where
    DB: DrawingBackend,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .x_labels(7)
        .y_labels(6)
        .x_label_formatter(&|v| tick_label(*v, x_span))
        .y_label_formatter(&|v| tick_label(*v, y_span))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(draw_err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line = chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(draw_err)?;
        if !name.is_empty() {
            line.label(*name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
        // Markers where the points are few enough to tell apart (and a single point shows).
        if pts.len() <= 50 {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(draw_err)?;
        }
    }
    if series.iter().any(|(name, _)| !name.is_empty()) {
        chart
            .configure_series_labels()
            .position(legend)
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.5))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

pub(crate) fn no_data<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    let style = ("sans-serif", 22)
        .into_font()
        .color(&BLACK.mix(0.5))
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new("no data", (w as i32 / 2, h as i32 / 2), style))
        .map_err(draw_err)
}

/// An axis tick's label: a tick within a billionth of the axis span of zero is zero (tick
/// positions carry rounding error: a learning-rate axis ending at 0 showed "2.7e-20").
/// `span` 0 (log axes) keeps every value as it is.
fn tick_label(v: f64, span: f64) -> String {
    if v.abs() < span * 1e-9 {
        return "0".to_string();
    }
    format_value(v)
}

/// A compact rendering of a value for labels and tables.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.3e}");
    }
    // Four significant digits, trailing zeros dropped.
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

pub(crate) fn draw_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}

pub(crate) fn write_png(path: &Path, rgb: &[u8], w: u32, h: u32) -> Result<()> {
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(rgb, w, h, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("encoding {}", path.display()))?;
    pipeline::atomic::write_atomic(path, &png)
}

/// Registers DejaVu Sans as plotters' "sans-serif" family, once per process (the font data is
/// kept for the life of the process, as plotters requires).
pub(crate) fn ensure_font() -> Result<()> {
    static REGISTERED: Mutex<bool> = Mutex::new(false);
    let mut done = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return Ok(());
    }
    let bytes = std::fs::read(FONT_PATH).with_context(|| {
        format!("reading the chart font {FONT_PATH} (install the Debian package {FONT_PACKAGE})")
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{FONT_PATH} is not a usable font (from {FONT_PACKAGE})"))?;
    *done = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_never_empty() {
        assert_eq!(padded(3.0, 3.0, 0.05), 2.7..3.3);
        assert_eq!(padded(0.0, 0.0, 0.05), -1.0..1.0);
        assert_eq!(padded(0.0, 10.0, 0.1), -1.0..11.0);
    }

    #[test]
    fn non_finite_and_empty_series_are_dropped() {
        let panel = Panel {
            log_y: true,
            series: vec![
                Series {
                    name: "a".into(),
                    points: vec![
                        (0.0, 1.0),
                        (1.0, f64::NAN),
                        (f64::INFINITY, 2.0),
                        (2.0, 0.0),
                    ],
                },
                Series {
                    name: "b".into(),
                    points: vec![],
                },
            ],
            ..Panel::default()
        };
        let clean = clean_series(&panel);
        assert_eq!(clean.len(), 1);
        assert_eq!(clean[0].1, vec![(0.0, 1.0)]);
    }

    #[test]
    fn ticks_next_to_zero_read_zero() {
        assert_eq!(tick_label(2.7e-20, 1e-3), "0");
        assert_eq!(tick_label(-1e-15, 2.0), "0");
        assert_eq!(tick_label(1e-5, 1e-3), "1.000e-5");
        assert_eq!(tick_label(2.7e-20, 0.0), "2.700e-20");
    }

    #[test]
    fn values_format_compactly() {
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(0.12345), "0.1235");
        assert_eq!(format_value(123.0), "123");
        assert_eq!(format_value(1234.56), "1235");
        assert_eq!(format_value(1e-5), "1.000e-5");
        assert_eq!(format_value(-2.5), "-2.5");
    }
}

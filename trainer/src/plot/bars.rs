//! Bar charts: one bar per label (time per pipeline stage), or groups of bars with one colour
//! per series and a legend (pretrained against random initialisation, one group per metric).

use super::{PANEL_SIZE, TITLE_HEIGHT, draw_err, ensure_font, format_value, no_data, write_png};
use anyhow::Result;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;
use std::path::Path;

/// The series' colours, in order (matplotlib's first tab10 colours: blue, orange, green, red).
const SERIES_COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// One coloured set of bars of a grouped chart: a value per group (a non-finite value draws no
/// bar).
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    /// Legend entry.
    pub name: String,
    pub values: Vec<f64>,
}

/// Draws one bar per `(label, value)` (for example images/s per pipeline stage), the value
/// printed above each bar, and writes the PNG to `path`. Non-finite values are left out.
pub fn bar_chart(path: &Path, title: &str, y_label: &str, bars: &[(String, f64)]) -> Result<()> {
    let (groups, values): (Vec<String>, Vec<f64>) =
        bars.iter().filter(|(_, v)| v.is_finite()).cloned().unzip();
    let series = BarSeries {
        name: String::new(),
        values,
    };
    grouped_bar_chart(path, title, y_label, &groups, &[series])
}

/// Draws one group of bars per label of `groups`, one bar per series in the series' colour,
/// each value printed above its bar, with a legend of the series' names when there are two or
/// more, and writes the PNG to `path`.
pub fn grouped_bar_chart(
    path: &Path,
    title: &str,
    y_label: &str,
    groups: &[String],
    series: &[BarSeries],
) -> Result<()> {
    ensure_font()?;
    // wide enough that each group's label fits under it and each bar holds its value
    let longest = groups.iter().map(|n| n.chars().count()).max().unwrap_or(0) as u32;
    let per_group = 120u32
        .max(8 * longest + 24)
        .max(60 * series.len() as u32 + 24);
    let w = PANEL_SIZE.0.max(per_group * groups.len() as u32 + 120);
    let h = PANEL_SIZE.1 + TITLE_HEIGHT;
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let area = root
            .titled(title, ("sans-serif", 26).into_font())
            .map_err(draw_err)?;
        let any = series
            .iter()
            .any(|s| s.values.iter().any(|v| v.is_finite()));
        if groups.is_empty() || !any {
            no_data(&area)?;
        } else {
            draw_groups(&area, y_label, groups, series)?;
        }
        root.present().map_err(draw_err)?;
    }
    write_png(path, &buf, w, h)
}

/// The x axis of a grouped chart: group `i` spans [i, i + 1), its label sits at i + 0.5.
struct GroupAxis(usize);

impl Ranged for GroupAxis {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn range(&self) -> Range<f64> {
        0.0..self.0 as f64
    }

    fn map(&self, v: &f64, (lo, hi): (i32, i32)) -> i32 {
        lo + ((hi - lo) as f64 * v / self.0 as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, _: H) -> Vec<f64> {
        (0..self.0).map(|i| i as f64 + 0.5).collect()
    }
}

fn draw_groups<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    y_label: &str,
    groups: &[String],
    series: &[BarSeries],
) -> Result<()> {
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite())
    };
    let lo = finite().fold(0.0, f64::min);
    let hi = finite().fold(0.0, f64::max);
    let legend = series.len() > 1;
    let y = if hi > lo {
        let top = if legend { 0.3 } else { 0.12 };
        lo - (hi - lo) * if lo < 0.0 { 0.1 } else { 0.0 }..hi + (hi - lo) * top
    } else {
        0.0..1.0
    };
    let n = groups.len();
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(GroupAxis(n), y)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_label)
        .x_labels(n)
        .x_label_formatter(&|v| {
            let i = v.floor();
            if i >= 0.0 && (i as usize) < n {
                groups[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format_value(*v))
        .light_line_style(RGBColor(240, 240, 240))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(draw_err)?;
    // the bars of a group share 80 % of its width, with a small gap between neighbours
    let width = 0.8 / series.len().max(1) as f64;
    let left = |group: usize, k: usize| group as f64 + 0.1 + k as f64 * width;
    let label =
        TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (k, s) in series.iter().enumerate() {
        let colour = SERIES_COLOURS[k % SERIES_COLOURS.len()];
        let bars: Vec<(usize, f64)> = s
            .values
            .iter()
            .copied()
            .enumerate()
            .take(n)
            .filter(|(_, v)| v.is_finite())
            .collect();
        let gap = width * 0.06;
        let drawn = chart
            .draw_series(bars.iter().map(|&(g, v)| {
                Rectangle::new(
                    [(left(g, k) + gap, 0.0), (left(g, k) + width - gap, v)],
                    colour.filled(),
                )
            }))
            .map_err(draw_err)?;
        if legend {
            drawn.label(s.name.clone()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 7), (x + 14, y + 7)], colour.filled())
            });
        }
        chart
            .draw_series(bars.iter().map(|&(g, v)| {
                Text::new(
                    format_value(v),
                    (left(g, k) + width / 2.0, v.max(0.0)),
                    label.clone(),
                )
            }))
            .map_err(draw_err)?;
    }
    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 16))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

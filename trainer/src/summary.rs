//! Run report: reads a run's `metrics.jsonl` and writes `summary.md` (last and best values,
//! evaluation per epoch, k-NN and learning-rate grid tables) and `curves.png` (training loss,
//! learning rate, evaluation accuracy).
//!
//! Records are JSON objects with a `"kind"` field; `train`, `eval`, `knn` and `lr_grid` are
//! read, other kinds ignored, and missing fields tolerated (a record lacking what a table or
//! curve needs is left out of that table or curve).

use crate::metrics::read_metrics;
use crate::plot::{self, Panel, Series, format_value};
use anyhow::{Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The metrics file a run directory holds.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The summary written next to it.
pub const SUMMARY_FILE: &str = "summary.md";
/// The curves written next to it.
pub const CURVES_FILE: &str = "curves.png";

/// What [`run_report`] wrote, and the key figures.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub summary_md: PathBuf,
    pub plot_png: PathBuf,
    /// Best evaluation top-1 and the epoch it was reached at (the first, on a tie).
    pub best_top1: Option<(f64, u64)>,
    /// Top-1 of the last evaluation.
    pub last_top1: Option<f64>,
    /// Loss of the last training record.
    pub last_train_loss: Option<f64>,
    /// Last training step logged.
    pub last_step: Option<u64>,
    /// Best k-NN top-1 and its k.
    pub best_knn_top1: Option<(f64, u64)>,
    /// Best learning-rate-grid top-1 and the name of its entry.
    pub best_lr_grid_top1: Option<(f64, String)>,
    pub train_records: usize,
    pub eval_records: usize,
}

#[derive(Debug, Default, Clone)]
struct Train {
    epoch: Option<u64>,
    step: Option<u64>,
    loss: Option<f64>,
    lr: Option<f64>,
    images_per_s: Option<f64>,
}

#[derive(Debug, Default, Clone)]
struct Eval {
    epoch: Option<u64>,
    step: Option<u64>,
    top1: Option<f64>,
    top5: Option<f64>,
    loss: Option<f64>,
}

#[derive(Debug, Default, Clone)]
struct Knn {
    k: Option<u64>,
    top1: Option<f64>,
    top5: Option<f64>,
}

#[derive(Debug, Default, Clone)]
struct LrGrid {
    name: String,
    top1: Option<f64>,
    top5: Option<f64>,
}

#[derive(Debug, Default)]
struct Records {
    train: Vec<Train>,
    eval: Vec<Eval>,
    knn: Vec<Knn>,
    lr_grid: Vec<LrGrid>,
    ignored: usize,
}

pub(crate) fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key)?.as_f64().filter(|x| x.is_finite())
}

pub(crate) fn int(v: &Value, key: &str) -> Option<u64> {
    let x = v.get(key)?;
    x.as_u64().or_else(|| {
        x.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0)
            .map(|f| f as u64)
    })
}

fn sort_records(values: &[Value]) -> Records {
    let mut r = Records::default();
    for v in values {
        match v.get("kind").and_then(Value::as_str) {
            Some("train") => r.train.push(Train {
                epoch: int(v, "epoch"),
                step: int(v, "step"),
                loss: num(v, "loss"),
                lr: num(v, "lr"),
                images_per_s: num(v, "images_per_s"),
            }),
            Some("eval") => r.eval.push(Eval {
                epoch: int(v, "epoch"),
                step: int(v, "step"),
                top1: num(v, "top1"),
                top5: num(v, "top5"),
                loss: num(v, "loss"),
            }),
            Some("knn") => r.knn.push(Knn {
                k: int(v, "k"),
                top1: num(v, "top1"),
                top5: num(v, "top5"),
            }),
            Some("lr_grid") => r.lr_grid.push(LrGrid {
                name: v
                    .get("name")
                    .map(|n| n.as_str().map_or_else(|| n.to_string(), str::to_string))
                    .unwrap_or_default(),
                top1: num(v, "top1"),
                top5: num(v, "top5"),
            }),
            _ => r.ignored += 1,
        }
    }
    r
}

/// The first maximum of `key` over `items` (None when no item has the value).
fn best_by<T, K: Clone>(
    items: &[T],
    value: impl Fn(&T) -> Option<f64>,
    key: impl Fn(&T) -> Option<K>,
) -> Option<(f64, K)> {
    let mut best: Option<(f64, K)> = None;
    for it in items {
        if let (Some(v), Some(k)) = (value(it), key(it))
            && best.as_ref().is_none_or(|(b, _)| v > *b)
        {
            best = Some((v, k));
        }
    }
    best
}

pub(crate) fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |x| x.to_string())
}

pub(crate) fn optf(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), format_value)
}

/// Reads `run_dir/metrics.jsonl`, writes `run_dir/summary.md` and `run_dir/curves.png`, and
/// returns their paths with the key figures. A torn last line in the metrics file is skipped.
pub fn run_report(run_dir: &Path) -> Result<RunReport> {
    let metrics = run_dir.join(METRICS_FILE);
    if !metrics.is_file() {
        anyhow::bail!(
            "run report: no metrics file {} (is {} a run directory?)",
            metrics.display(),
            run_dir.display()
        );
    }
    let values =
        read_metrics(&metrics).with_context(|| format!("run report for {}", run_dir.display()))?;
    let recs = sort_records(&values);

    let report = RunReport {
        summary_md: run_dir.join(SUMMARY_FILE),
        plot_png: run_dir.join(CURVES_FILE),
        best_top1: best_by(&recs.eval, |e| e.top1, |e| e.epoch),
        last_top1: recs.eval.iter().rev().find_map(|e| e.top1),
        last_train_loss: recs.train.iter().rev().find_map(|t| t.loss),
        last_step: recs
            .train
            .iter()
            .filter_map(|t| t.step)
            .chain(recs.eval.iter().filter_map(|e| e.step))
            .max(),
        best_knn_top1: best_by(&recs.knn, |k| k.top1, |k| k.k),
        best_lr_grid_top1: best_by(&recs.lr_grid, |g| g.top1, |g| Some(g.name.clone())),
        train_records: recs.train.len(),
        eval_records: recs.eval.len(),
    };

    let name = run_name(run_dir);
    let md = summary_markdown(&name, &metrics, &recs, &report);
    pipeline::atomic::write_atomic(&report.summary_md, md.as_bytes())?;
    plot::render(&report.plot_png, &format!("run {name}"), &curves(&recs))
        .with_context(|| format!("run report for {}", run_dir.display()))?;
    Ok(report)
}

/// A run's name for a report's title: its folder's name.
pub(crate) fn run_name(run_dir: &Path) -> String {
    run_dir.file_name().map_or_else(
        || run_dir.display().to_string(),
        |n| n.to_string_lossy().into(),
    )
}

fn curves(recs: &Records) -> Vec<Panel> {
    let series = |name: &str, points: Vec<(f64, f64)>| Series {
        name: name.to_string(),
        points,
    };
    let train_pts = |f: fn(&Train) -> Option<f64>| -> Vec<(f64, f64)> {
        recs.train
            .iter()
            .filter_map(|t| Some((t.step? as f64, f(t)?)))
            .collect()
    };
    let eval_pts = |f: fn(&Eval) -> Option<f64>, x: fn(&Eval) -> Option<u64>| -> Vec<(f64, f64)> {
        recs.eval
            .iter()
            .filter_map(|e| Some((x(e)? as f64, f(e)?)))
            .collect()
    };
    let mut loss = vec![series("train", train_pts(|t| t.loss))];
    let eval_loss = eval_pts(|e| e.loss, |e| e.step);
    if !eval_loss.is_empty() {
        loss.push(series("eval", eval_loss));
    }
    vec![
        Panel {
            title: "Training loss".into(),
            x_label: "step".into(),
            y_label: "loss".into(),
            series: loss,
            log_y: false,
        },
        Panel {
            title: "Learning rate".into(),
            x_label: "step".into(),
            y_label: "lr".into(),
            series: vec![series("lr", train_pts(|t| t.lr))],
            log_y: false,
        },
        Panel {
            title: "Evaluation accuracy".into(),
            x_label: "epoch".into(),
            y_label: "accuracy".into(),
            series: vec![
                series("top-1", eval_pts(|e| e.top1, |e| e.epoch)),
                series("top-5", eval_pts(|e| e.top5, |e| e.epoch)),
            ],
            log_y: false,
        },
    ]
}

fn summary_markdown(name: &str, metrics: &Path, recs: &Records, report: &RunReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Run summary: {name}\n");
    let _ = writeln!(
        md,
        "From `{}`: {} training, {} evaluation, {} k-NN, {} learning-rate-grid records{}.\n",
        metrics.display(),
        recs.train.len(),
        recs.eval.len(),
        recs.knn.len(),
        recs.lr_grid.len(),
        if recs.ignored > 0 {
            format!(" ({} of other kinds ignored)", recs.ignored)
        } else {
            String::new()
        }
    );
    let _ = writeln!(md, "Curves: `{CURVES_FILE}`\n");

    let _ = writeln!(md, "## Key figures\n");
    let mut key: Vec<Vec<String>> = Vec::new();
    if let Some((v, epoch)) = report.best_top1 {
        key.push(vec![
            "best top-1".into(),
            format_value(v),
            format!("epoch {epoch}"),
        ]);
    }
    if let Some(v) = report.last_top1 {
        key.push(vec!["last top-1".into(), format_value(v), String::new()]);
    }
    if let Some(last) = recs.train.iter().rev().find(|t| t.loss.is_some()) {
        key.push(vec![
            "last training loss".into(),
            optf(last.loss),
            last.step.map_or_else(String::new, |s| format!("step {s}")),
        ]);
    }
    if let Some((v, step)) = best_by(&recs.train, |t| t.loss.map(|l| -l), |t| Some(t.step)) {
        key.push(vec![
            "lowest training loss".into(),
            format_value(-v),
            step.map_or_else(String::new, |s| format!("step {s}")),
        ]);
    }
    if let Some(last) = recs.train.iter().rev().find(|t| t.lr.is_some()) {
        key.push(vec![
            "last learning rate".into(),
            optf(last.lr),
            last.step.map_or_else(String::new, |s| format!("step {s}")),
        ]);
    }
    let speeds: Vec<f64> = recs.train.iter().filter_map(|t| t.images_per_s).collect();
    if !speeds.is_empty() {
        let mean = speeds.iter().sum::<f64>() / speeds.len() as f64;
        key.push(vec![
            "mean images/s".into(),
            format_value(mean),
            format!("{} records", speeds.len()),
        ]);
    }
    if let Some(step) = report.last_step {
        let epoch = recs.train.iter().rev().find_map(|t| t.epoch);
        key.push(vec![
            "last step".into(),
            step.to_string(),
            epoch.map_or_else(String::new, |e| format!("epoch {e}")),
        ]);
    }
    if let Some((v, k)) = report.best_knn_top1 {
        key.push(vec![
            "best k-NN top-1".into(),
            format_value(v),
            format!("k={k}"),
        ]);
    }
    if let Some((v, name)) = &report.best_lr_grid_top1 {
        key.push(vec![
            "best linear-probe grid top-1".into(),
            format_value(*v),
            name.clone(),
        ]);
    }
    if key.is_empty() {
        md.push_str("No training or evaluation records.\n\n");
    } else {
        md.push_str(&markdown_table(&["metric", "value", "at"], &key));
        md.push('\n');
    }

    if !recs.eval.is_empty() {
        let _ = writeln!(md, "## Evaluation per epoch\n");
        let rows: Vec<Vec<String>> = recs
            .eval
            .iter()
            .map(|e| {
                vec![
                    opt(e.epoch),
                    opt(e.step),
                    optf(e.top1),
                    optf(e.top5),
                    optf(e.loss),
                ]
            })
            .collect();
        md.push_str(&markdown_table(
            &["epoch", "step", "top-1", "top-5", "loss"],
            &rows,
        ));
        md.push('\n');
        if let Some((v, epoch)) = report.best_top1 {
            let _ = writeln!(
                md,
                "Best top-1: **{}** at epoch {epoch}.\n",
                format_value(v)
            );
        }
    }

    if !recs.knn.is_empty() {
        let _ = writeln!(md, "## k-NN\n");
        let rows: Vec<Vec<String>> = recs
            .knn
            .iter()
            .map(|k| vec![opt(k.k), optf(k.top1), optf(k.top5)])
            .collect();
        md.push_str(&markdown_table(&["k", "top-1", "top-5"], &rows));
        md.push('\n');
    }

    if !recs.lr_grid.is_empty() {
        let _ = writeln!(md, "## Linear-probe grid\n");
        let rows: Vec<Vec<String>> = recs
            .lr_grid
            .iter()
            .map(|g| vec![g.name.clone(), optf(g.top1), optf(g.top5)])
            .collect();
        md.push_str(&markdown_table(&["name", "top-1", "top-5"], &rows));
        md.push('\n');
    }
    md
}

/// True for a cell that reads as a number (a trailing `%` allowed).
fn is_numeric(cell: &str) -> bool {
    let c = cell.trim();
    let c = c.strip_suffix('%').unwrap_or(c);
    !c.is_empty() && c.parse::<f64>().is_ok()
}

/// Placeholder cells that do not decide a column's alignment.
fn is_blank(cell: &str) -> bool {
    matches!(cell.trim(), "" | "-" | "—" | "n/a")
}

/// A GitHub-flavoured Markdown table, columns padded to a common width; a column whose cells
/// are all numbers (blanks and `-` aside) is right-aligned. Rows shorter than the header are
/// padded with empty cells; `|` inside a cell is escaped.
pub fn markdown_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let ncols = rows.iter().map(Vec::len).fold(headers.len(), usize::max);
    if ncols == 0 {
        return String::new();
    }
    let escape = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let header: Vec<String> = (0..ncols)
        .map(|i| escape(headers.get(i).copied().unwrap_or("")))
        .collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            (0..ncols)
                .map(|i| escape(r.get(i).map_or("", String::as_str)))
                .collect()
        })
        .collect();
    let right: Vec<bool> = (0..ncols)
        .map(|i| {
            let cells = || body.iter().map(|r| r[i].as_str());
            cells().any(is_numeric) && cells().all(|c| is_numeric(c) || is_blank(c))
        })
        .collect();
    let width: Vec<usize> = (0..ncols)
        .map(|i| {
            body.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count(), 3])
                .max()
                .unwrap_or(3)
        })
        .collect();
    let line = |cells: &[String]| {
        let mut s = String::from("|");
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i] - c.chars().count();
            let (l, r) = if right[i] { (pad, 0) } else { (0, pad) };
            let _ = write!(s, " {}{c}{} |", " ".repeat(l), " ".repeat(r));
        }
        s.push('\n');
        s
    };
    let mut out = line(&header);
    out.push('|');
    for i in 0..ncols {
        let dashes = "-".repeat(width[i]);
        if right[i] {
            let _ = write!(out, " {}: |", &dashes[1..]);
        } else {
            let _ = write!(out, " {dashes} |");
        }
    }
    out.push('\n');
    for r in &body {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_right_aligns_numbers() {
        let t = markdown_table(
            &["name", "top-1"],
            &[
                vec!["a".into(), "0.5".into()],
                vec!["longer|name".into(), "-".into()],
                vec!["c".into(), "12.25".into()],
            ],
        );
        let expected = "\
| name         | top-1 |
| ------------ | ----: |
| a            |   0.5 |
| longer\\|name |     - |
| c            | 12.25 |
";
        assert_eq!(t, expected);
    }

    #[test]
    fn ragged_rows_are_padded() {
        let t = markdown_table(&["x"], &[vec!["1".into(), "extra".into()], vec![]]);
        assert_eq!(
            t,
            "|   x |       |\n| --: | ----- |\n|   1 | extra |\n|     |       |\n"
        );
    }

    #[test]
    fn best_is_the_first_maximum() {
        let v = [(1.0, 1u64), (3.0, 2), (3.0, 3), (2.0, 4)];
        assert_eq!(best_by(&v, |x| Some(x.0), |x| Some(x.1)), Some((3.0, 2)));
        let none: [(f64, u64); 0] = [];
        assert_eq!(best_by(&none, |x| Some(x.0), |x| Some(x.1)), None);
    }
}

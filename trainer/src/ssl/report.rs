//! Pretraining report from a run's metrics: `curves.png` (the loss terms, the schedules, the
//! teacher's output entropy: collapse shows as the per-image entropy falling to 0, or rising to
//! meet the batch mean's) and `summary.md` (key figures and the run's course in a table).
//! Written at the end of `dinov2 train` on a pretraining config and again by `dinov2 report`.

use crate::metrics::read_metrics;
use crate::plot::{Panel, Series, format_value, render as render_png};
use crate::step_timer::{Breakdown, Phase};
use crate::summary::{
    CURVES_FILE, METRICS_FILE, SUMMARY_FILE, int, markdown_table, num, opt, optf, run_name,
};
use anyhow::{Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The `kind` of the records a pretraining run logs.
pub const RECORD_KIND: &str = "pretrain";

/// Rows of the course-of-the-run table in `summary.md` (evenly spaced, first and last included).
const COURSE_ROWS: usize = 11;

/// What [`render`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainReport {
    pub summary_md: PathBuf,
    pub plot_png: PathBuf,
    /// Records read (one per logged iteration).
    pub records: usize,
    /// The last iteration logged.
    pub last_iteration: Option<u64>,
}

/// The pretraining records of `run_dir/metrics.jsonl` (other kinds are skipped).
pub fn records(run_dir: &Path) -> Result<Vec<Value>> {
    Ok(read_metrics(&run_dir.join(METRICS_FILE))?
        .into_iter()
        .filter(|r| r["kind"] == RECORD_KIND)
        .collect())
}

/// Whether `run_dir` holds a pretraining run: `pretrain` records in its metrics, or (before
/// the first record) a resolved config with a `dino` section.
pub fn is_pretraining_run(run_dir: &Path) -> bool {
    resolved_config(run_dir).is_some_and(|c| c.get("dino").is_some())
        || records(run_dir).is_ok_and(|r| !r.is_empty())
}

/// Writes `curves.png` and `summary.md` next to `metrics.jsonl`.
pub fn render(run_dir: &Path) -> Result<PretrainReport> {
    let metrics = run_dir.join(METRICS_FILE);
    anyhow::ensure!(
        metrics.is_file(),
        "pretraining report: no metrics file {}",
        metrics.display()
    );
    let records = records(run_dir)
        .with_context(|| format!("pretraining report for {}", run_dir.display()))?;
    let prototypes = prototypes(run_dir);
    let plot_png = run_dir.join(CURVES_FILE);
    render_png(&plot_png, "pretraining", &panels(&records))
        .with_context(|| format!("pretraining report for {}", run_dir.display()))?;
    let summary_md = run_dir.join(SUMMARY_FILE);
    let md = summary_markdown(&run_name(run_dir), &metrics, &records, prototypes);
    pipeline::atomic::write_atomic(&summary_md, md.as_bytes())?;
    Ok(PretrainReport {
        summary_md,
        plot_png,
        records: records.len(),
        last_iteration: records.iter().rev().find_map(|r| r["iteration"].as_u64()),
    })
}

/// `dino.head_n_prototypes` from the run's resolved `config.yaml`, when it is there: uniform
/// teacher targets have entropy ln K.
fn prototypes(run_dir: &Path) -> Option<u64> {
    resolved_config(run_dir)?
        .get("dino")?
        .get("head_n_prototypes")?
        .as_u64()
}

fn resolved_config(run_dir: &Path) -> Option<serde_norway::Value> {
    let text = std::fs::read_to_string(run_dir.join(crate::config::RESOLVED_NAME)).ok()?;
    serde_norway::from_str(&text).ok()
}

fn panels(records: &[Value]) -> Vec<Panel> {
    let series = |key: &str| Series {
        name: key
            .replace("_crops_loss", "")
            .replace("_loss", "")
            .replace("teacher_", "")
            .replace("images_per_s", "images/s"),
        points: records
            .iter()
            .filter_map(|r| Some((r["iteration"].as_f64()?, r[key].as_f64()?)))
            .collect(),
    };
    let panel = |title: &str, y: &str, keys: &[&str]| Panel {
        title: title.into(),
        x_label: "iteration".into(),
        y_label: y.into(),
        series: keys.iter().map(|k| series(k)).collect(),
        log_y: false,
    };
    vec![
        panel("Total loss", "loss", &["total_loss"]),
        panel(
            "Loss terms",
            "loss",
            &[
                "dino_local_crops_loss",
                "dino_global_crops_loss",
                "koleo_loss",
                "ibot_loss",
            ],
        ),
        panel("Learning rate", "lr", &["lr", "last_layer_lr"]),
        panel("Weight decay", "wd", &["wd"]),
        panel("Teacher momentum", "momentum", &["mom"]),
        panel("Teacher temperature", "temperature", &["teacher_temp"]),
        panel(
            "Teacher output entropy",
            "nats",
            &["teacher_entropy", "teacher_marginal_entropy"],
        ),
        panel("Throughput", "images/s", &["images_per_s"]),
        panel(
            "Step time by phase",
            "s per step",
            &[
                "fwd_bwd_s",
                "optimizer_s",
                "ema_s",
                "allreduce_exposed_s",
                "data_wait_s",
                "h2d_s",
            ],
        ),
    ]
}

/// The "where the step's time goes" section: the phases averaged over the records (the first
/// left out as warm-up when there are others), and in one line what bounds the run.
fn breakdown_markdown(records: &[Value]) -> Option<String> {
    let parts: Vec<Breakdown> = records
        .iter()
        .skip(usize::from(records.len() > 1))
        .filter_map(Breakdown::from_record)
        .collect();
    let b = Breakdown::mean(&parts);
    if b.steps == 0 || b.total() <= 0.0 {
        return None;
    }
    let mut md = String::new();
    let _ = writeln!(md, "\n## Where the step's time goes\n");
    let rows: Vec<Vec<String>> = Phase::ALL
        .iter()
        .map(|&p| {
            vec![
                p.label().into(),
                format!("{:.2}", b.get(p) * 1e3),
                format!("{:.1} %", 100.0 * b.get(p) / b.total()),
            ]
        })
        .collect();
    md += &markdown_table(&["phase", "ms per step", "share"], &rows);
    let (largest, share) = Phase::ALL
        .iter()
        .map(|&p| (p, b.get(p) / b.total()))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let _ = writeln!(
        md,
        "\nThe run was **{}**: {} took {:.0} % of each step; the trainer waited {:.2} ms per step for data (mean over {} measured steps).",
        b.bound(),
        largest.label(),
        100.0 * share,
        b.get(Phase::DataWait) * 1e3,
        b.steps
    );
    Some(md)
}

fn summary_markdown(
    name: &str,
    metrics: &Path,
    records: &[Value],
    prototypes: Option<u64>,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Pretraining summary: {name}\n");
    let _ = writeln!(
        md,
        "From `{}`: {} pretraining records.\n",
        metrics.display(),
        records.len()
    );
    let _ = writeln!(md, "Curves: `{CURVES_FILE}`\n");
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        let _ = writeln!(md, "No pretraining records.");
        return md;
    };
    let (v, cell) = (num, optf);
    let int = |r: &Value, k: &str| opt(int(r, k));
    let at = |r: &Value| {
        r["iteration"]
            .as_u64()
            .map_or_else(String::new, |i| format!("iteration {i}"))
    };

    let _ = writeln!(md, "## Key figures\n");
    let mut key = vec![
        vec![
            "last iteration".into(),
            int(last, "iteration"),
            format!("epoch {}", int(last, "epoch")),
        ],
        vec![
            "first total loss".into(),
            cell(v(first, "total_loss")),
            at(first),
        ],
        vec![
            "last total loss".into(),
            cell(v(last, "total_loss")),
            at(last),
        ],
    ];
    if let Some((low, r)) = records
        .iter()
        .filter_map(|r| Some((v(r, "total_loss")?, r)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
    {
        key.push(vec!["lowest total loss".into(), format_value(low), at(r)]);
    }
    let uniform = prototypes.map(|k| {
        format!(
            "ln {k} = {} for uniform targets",
            format_value((k as f64).ln())
        )
    });
    key.push(vec![
        "teacher entropy per image".into(),
        cell(v(last, "teacher_entropy")),
        at(last),
    ]);
    key.push(vec![
        "teacher entropy of the batch mean".into(),
        cell(v(last, "teacher_marginal_entropy")),
        uniform.unwrap_or_default(),
    ]);
    let speeds: Vec<f64> = records
        .iter()
        .filter_map(|r| v(r, "images_per_s"))
        .collect();
    if !speeds.is_empty() {
        key.push(vec![
            "mean images/s".into(),
            format_value(speeds.iter().sum::<f64>() / speeds.len() as f64),
            format!(
                "{} records, {} process(es)",
                speeds.len(),
                int(last, "world_size")
            ),
        ]);
    }
    md += &markdown_table(&["figure", "value", "where"], &key);

    let _ = writeln!(md, "\n## Course of the run\n");
    let cols = [
        ("iteration", "iteration"),
        ("total", "total_loss"),
        ("dino local", "dino_local_crops_loss"),
        ("dino global", "dino_global_crops_loss"),
        ("koleo", "koleo_loss"),
        ("ibot", "ibot_loss"),
        ("lr", "lr"),
        ("wd", "wd"),
        ("mom", "mom"),
        ("teacher temp", "teacher_temp"),
        ("entropy", "teacher_entropy"),
        ("marginal", "teacher_marginal_entropy"),
        ("images/s", "images_per_s"),
    ];
    let n = records.len();
    let mut picks: Vec<usize> = (0..COURSE_ROWS.min(n))
        .map(|i| {
            if COURSE_ROWS.min(n) == 1 {
                n - 1
            } else {
                i * (n - 1) / (COURSE_ROWS.min(n) - 1)
            }
        })
        .collect();
    picks.dedup();
    let rows: Vec<Vec<String>> = picks
        .iter()
        .map(|&i| {
            let r = &records[i];
            let mut row = vec![int(r, "iteration")];
            row.extend(cols[1..].iter().map(|(_, k)| cell(v(r, k))));
            row
        })
        .collect();
    md += &markdown_table(&cols.map(|(h, _)| h), &rows);
    if let Some(b) = breakdown_markdown(records) {
        md += &b;
    }
    md
}

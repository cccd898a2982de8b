//! Pretraining curves from a run's metrics: the loss terms, the schedules.

use crate::metrics::read_metrics;
use crate::plot::{Panel, Series, render as render_png};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Writes `curves.png` next to `metrics.jsonl` and returns its path.
pub fn render(run_dir: &Path) -> Result<PathBuf> {
    let records: Vec<_> = read_metrics(&run_dir.join("metrics.jsonl"))?
        .into_iter()
        .filter(|r| r["kind"] == "pretrain")
        .collect();
    let series = |key: &str| Series {
        name: key.replace("_crops_loss", "").replace("_loss", ""),
        points: records
            .iter()
            .filter_map(|r| Some((r["iteration"].as_f64()?, r[key].as_f64()?)))
            .collect(),
    };
    let panel = |title: &str, y: &str, keys: &[&str], log_y: bool| Panel {
        title: title.into(),
        x_label: "iteration".into(),
        y_label: y.into(),
        series: keys.iter().map(|k| series(k)).collect(),
        log_y,
    };
    let panels = [
        panel("Total loss", "loss", &["total_loss"], false),
        panel(
            "Loss terms",
            "loss",
            &[
                "dino_local_crops_loss",
                "dino_global_crops_loss",
                "koleo_loss",
                "ibot_loss",
            ],
            false,
        ),
        panel("Learning rate", "lr", &["lr", "last_layer_lr"], false),
        panel("Teacher", "value", &["mom", "teacher_temp"], false),
    ];
    let path = run_dir.join("curves.png");
    render_png(&path, "pretraining", &panels)?;
    Ok(path)
}

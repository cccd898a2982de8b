//! The demo's outputs: `summary.md` and its plots, written from the results (`summary.json`).

use anyhow::Result;
use serde_json::Value;
use std::path::{Path, PathBuf};
use trainer::summary::{CURVES_FILE, SUMMARY_FILE};

use super::accuracy;
use super::summary::summary_markdown;
use super::{f, pretrain_dir, probe_run_dir};
use trainer::plot::BarSeries;

/// What [`write_outputs`] wrote.
pub(super) struct Outputs {
    pub(super) markdown: String,
    summary_md: PathBuf,
    pngs: Vec<PathBuf>,
}

impl Outputs {
    pub(super) fn print_paths(&self, out: &Path) {
        println!("summary:         {}", self.summary_md.display());
        for (i, png) in self.pngs.iter().enumerate() {
            let label = if i == 0 { "plots:" } else { "" };
            println!("{label:<16} {}", png.display());
        }
        println!(
            "teacher weights: {}",
            pretrain_dir(out)
                .join("teacher_backbone.safetensors")
                .display()
        );
    }
}

/// `summary.md` and the demo's own plots from its results (`summary.json`'s layout); the
/// runs' plots are listed with them.
pub(super) fn write_outputs(out: &Path, all: &Value) -> Result<Outputs> {
    let empty = Vec::new();
    let list = |k: &str| all[k].as_array().unwrap_or(&empty);
    let throughput_png = out.join("data_throughput.png");
    let mut bars = Vec::new();
    for b in list("data") {
        let p = b["preset"].as_str().unwrap_or("?").to_string();
        for (k, label) in [
            ("read_ms", "read"),
            ("decode_ms", "decode"),
            ("augment_ms", "augment"),
        ] {
            bars.push((format!("{p}: {label}"), f(&b["stages"], k)));
        }
    }
    trainer::plot::bar_chart(
        &throughput_png,
        "data pipeline: time per image and stage (summed over workers)",
        "ms per image",
        &bars,
    )?;
    let probe_png = out.join("probe_accuracy.png");
    let probes = list("probes");
    let groups: Vec<String> = probes
        .first()
        .map(|p| accuracy::metrics(p).into_iter().map(|(m, _)| m).collect())
        .unwrap_or_default();
    let series: Vec<BarSeries> = probes
        .iter()
        .map(|p| {
            let by_metric = accuracy::metrics(p);
            BarSeries {
                name: accuracy::backbone_label(p["backbone"].as_str().unwrap_or("?")),
                values: groups
                    .iter()
                    .map(|g| {
                        by_metric
                            .iter()
                            .find(|(m, _)| m == g)
                            .map_or(f64::NAN, |(_, v)| *v)
                    })
                    .collect(),
            }
        })
        .collect();
    trainer::plot::grouped_bar_chart(
        &probe_png,
        "val top-1 (%): pretrained vs random initialisation",
        "top-1 %",
        &groups,
        &series,
    )?;
    let markdown = summary_markdown(all);
    let summary_md = out.join(SUMMARY_FILE);
    pipeline::atomic::write_atomic(&summary_md, markdown.as_bytes())?;
    let mut pngs = vec![
        throughput_png,
        probe_png,
        pretrain_dir(out).join(CURVES_FILE),
    ];
    for p in list("probes") {
        if let Some(name) = p["backbone"].as_str() {
            pngs.push(probe_run_dir(out, name).join(CURVES_FILE));
        }
    }
    Ok(Outputs {
        markdown,
        summary_md,
        pngs,
    })
}

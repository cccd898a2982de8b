//! The demo's probe stage: a linear probe and k-NN of the pretrained teacher and of the same ViT
//! at random initialisation.

use anyhow::Result;
use serde_json::{Value, json};
use std::path::Path;
use trainer::metrics::read_metrics;
use trainer::summary::{CURVES_FILE, SUMMARY_FILE};

use super::stage::{dinov2, os, overrides, stage};
use super::{Compute, DemoArgs, pretrain_dir, probe_dir, probe_run_dir};

/// The linear probe + k-NN stages, pretrained then random (`OUT/probe-NAME`).
pub(super) fn probes(a: &DemoArgs, shards: &Path, device: &Compute) -> Result<Vec<Value>> {
    let out = &a.out;
    let ssl = pretrain_dir(out);
    let (_, probe_cfg) = super::pretrain::write_configs(out)?;
    let mut probes = Vec::new();
    for (name, weights) in [
        ("pretrained", Some(ssl.join("teacher_backbone.safetensors"))),
        ("random", None),
    ] {
        let dir = probe_dir(out, name);
        let v = stage(
            out,
            &format!("probe-{name}"),
            &format!("linear probe + k-NN, {name} backbone"),
            || {
                let mut o = vec![
                    format!("DataLoader.Train.dataset.root={}", shards.display()),
                    format!("DataLoader.Eval.dataset.root={}", shards.display()),
                    "DataLoader.Train.dataset.name=Shards".into(),
                    "DataLoader.Eval.dataset.name=Shards".into(),
                    format!("Global.output_dir={}", dir.display()),
                    format!("Global.epochs={}", a.probe_epochs),
                    "Model.class_num=10".into(),
                    "Model.backbone.embed_dim=64".into(),
                    "Model.backbone.depth=4".into(),
                    "Model.backbone.num_heads=4".into(),
                    "Model.backbone.patch_size=8".into(),
                    "Model.backbone.img_size=32".into(),
                    "DataLoader.Train.dataset.transform.0.RandomResizedCrop.size=32".into(),
                    "DataLoader.Eval.dataset.transform.0.Resize.size=36".into(),
                    "DataLoader.Eval.dataset.transform.1.CenterCrop.size=32".into(),
                    "KNN.enabled=true".into(),
                    "KNN.nb_knn=[10, 20]".into(),
                ];
                if let Some(w) = &weights {
                    o.push(format!("Global.pretrained_model={}", w.display()));
                }
                if device.is_gpu() {
                    // PASSL's O1: fp16 autocast, fp32 weights, loss scaling
                    o.extend(["Global.device=gpu".into(), "FP16.level=O1".into()]);
                }
                let run_dir = probe_run_dir(out, name);
                let mut args = os([
                    "train".into(),
                    "-c".into(),
                    probe_cfg.clone().into_os_string(),
                ]);
                args.extend(overrides(&o));
                if run_dir.join("checkpoints/latest.json").exists() {
                    args.push("--resume".into());
                }
                dinov2(out, &format!("probe-{name}"), &args)?;
                let recs = read_metrics(&run_dir.join("metrics.jsonl"))?;
                let best = recs
                    .iter()
                    .filter(|r| r["kind"] == "eval")
                    .filter_map(|r| r["top1"].as_f64())
                    .fold(f64::NAN, f64::max);
                let knn: Vec<Value> = recs
                    .iter()
                    .filter(|r| r["kind"] == "knn")
                    .cloned()
                    .collect();
                Ok(json!({
                    "backbone": name, "best_top1": best, "knn": knn,
                    "summary": run_dir.join(SUMMARY_FILE), "curves": run_dir.join(CURVES_FILE),
                }))
            },
        )?;
        probes.push(v);
    }
    Ok(probes)
}

//! The demo's pretraining stage: a short DINOv2 pretraining of a tiny ViT on the shards.

use anyhow::Result;
use serde_json::{Value, json};
use std::path::Path;
use trainer::metrics::read_metrics;
use trainer::summary::CURVES_FILE;

use super::stage::{dinov2, os, overrides, stage};
use super::{Compute, DemoArgs, pretrain_dir};

/// The demo's pretraining and probe configs (the files in `configs/`), built in so that the
/// demo runs from any directory.
const SSL_CONFIG: &str = include_str!("../../configs/tiny_ssl_cpu.yaml");
const PROBE_CONFIG: &str = include_str!("../../configs/tiny_lp_cpu.yaml");

/// The built-in configs written into `OUT/configs`: (pretraining, probe).
pub(super) fn write_configs(out: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let configs = out.join("configs");
    std::fs::create_dir_all(&configs)?;
    let ssl_cfg = configs.join("tiny_ssl_cpu.yaml");
    let probe_cfg = configs.join("tiny_lp_cpu.yaml");
    pipeline::atomic::write_atomic(&ssl_cfg, SSL_CONFIG.as_bytes())?;
    pipeline::atomic::write_atomic(&probe_cfg, PROBE_CONFIG.as_bytes())?;
    Ok((ssl_cfg, probe_cfg))
}

/// The pretraining stage (`OUT/pretrain`).
pub(super) fn pretrain(a: &DemoArgs, shards: &Path, device: &Compute) -> Result<Value> {
    let out = &a.out;
    let (ssl_cfg, _) = write_configs(out)?;
    let ssl = pretrain_dir(out);
    let epoch_len = 20u64;
    stage(
        out,
        "pretrain",
        "pretraining a tiny ViT (DINO + iBOT + KoLeo)",
        || {
            let mut args = os([
                "train".into(),
                "-c".into(),
                ssl_cfg.clone().into_os_string(),
            ]);
            args.extend(overrides(&[
                format!("train.dataset_path={}", shards.display()),
                format!("train.output_dir={}", ssl.display()),
                format!("train.OFFICIAL_EPOCH_LENGTH={epoch_len}"),
                format!("optim.epochs={}", a.iterations.div_ceil(epoch_len)),
                format!("train.max_iterations={}", a.iterations),
                // The learning check's recipe against collapse at this scale (README,
                // "Pretraining: learning check").
                "student.layerscale=1.0".into(),
                "train.centering=sinkhorn_knopp".into(),
                "teacher.warmup_teacher_temp=0.012".into(),
                "teacher.teacher_temp=0.012".into(),
                // What makes a minute of pretraining learn the generated classes' structure
                // rather than their colours (README, "The main job"): full-strength hue and
                // more saturation jitter, little blur (sigma up to 2 px wipes out the stripes of
                // a 32 px crop), crops that keep enough of the image to show its structure, and
                // a higher learning rate for the short schedule.
                "crops.augmentation.jitter=[0.4, 0.4, 0.8, 0.5]".into(),
                "crops.augmentation.grayscale_p=0.2".into(),
                "crops.augmentation.blur_p=[0.1, 0.1, 0.1]".into(),
                "crops.global_crops_scale=[0.4, 1.0]".into(),
                "crops.local_crops_scale=[0.1, 0.4]".into(),
                "optim.base_lr=0.01".into(),
            ]));
            if device.is_gpu() {
                // fp16 autocast + loss scaling: the default of compute_precision on CUDA
                args.extend(overrides(&["train.device=cuda".into()]));
            }
            if ssl.join("checkpoints/latest.json").exists() {
                args.push("--resume".into());
            }
            dinov2(out, "pretrain", &args)?;
            let recs: Vec<Value> = read_metrics(&ssl.join("metrics.jsonl"))?
                .into_iter()
                .filter(|r| r["kind"] == "pretrain")
                .collect();
            let (first, last) = (
                recs.first().cloned().unwrap_or_default(),
                recs.last().cloned().unwrap_or_default(),
            );
            Ok(json!({
                "iterations": last["iteration"], "first_loss": first["total_loss"], "last_loss": last["total_loss"],
                "teacher_entropy": last["teacher_entropy"], "teacher_marginal_entropy": last["teacher_marginal_entropy"],
                "images_per_s": last["images_per_s"], "teacher": ssl.join("teacher_backbone.safetensors"),
                "curves": ssl.join(CURVES_FILE), "compute": device,
            }))
        },
    )
}

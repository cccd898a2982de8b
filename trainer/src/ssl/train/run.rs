//! The pretraining run: setup, resume, the loop over iterations (schedules, seeding, the
//! training step, metrics, rank checks and checkpoints), and the export of the teacher backbone
//! with the official key names.

use super::checkpoint::{SslState, resume_or_start, save};
use super::data::{batch_tensors, build_loader, open_train_dataset};
use super::setup::{load_pretrained_student, meta_arch_config, parse_device, schedules};
use super::step::{Optim, StepOutput, train_step};
use crate::dist::{Dist, registration_order};
use crate::metrics::MetricsWriter;
use crate::scaler::LossScaler;
use crate::ssl::config::SslConfig;
use crate::ssl::meta_arch::{LossValues, SslMetaArch};
use crate::step_timer::{Phase, StepTimer};
use anyhow::{Context, Result, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a finished (or stopped) run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SslOutcome {
    pub iterations: u64,
    pub last: LossValues,
    pub teacher_backbone: PathBuf,
}

/// Runs (or with `resume`, continues) pretraining into `out`, as one process of `dist`
/// (every rank trains on its shard of the data with gradients, centres and Sinkhorn-Knopp
/// sums reduced over the ranks; rank 0 logs, checkpoints and exports).
pub fn run(
    c: &SslConfig,
    out: &Path,
    resume: bool,
    progress: bool,
    dist: &Dist,
) -> Result<SslOutcome> {
    let main = dist.is_main();
    let device = dist.info.device_for(parse_device(&c.train.device)?);
    if c.train.dataset_path.contains(":split=") {
        bail!(
            "train.dataset_path {:?} is dinov2's dataset string; give a shard directory or class-per-folder tree (see `dinov2 convert imagenet`)",
            c.train.dataset_path
        );
    }
    ensure!(
        c.train.official_epoch_length > 0 && c.optim.epochs > 0,
        "epochs and OFFICIAL_EPOCH_LENGTH must be positive"
    );
    if main {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    }
    tch::manual_seed(c.train.seed as i64);
    let mac = meta_arch_config(c)?;
    let mut arch = SslMetaArch::new(mac.clone(), device)?;
    if !c.student.pretrained_weights.is_empty() {
        load_pretrained_student(&mut arch, c, main)?;
    }
    // Every rank starts from rank 0's student and teacher.
    dist.broadcast_from_main(&crate::dist::sorted_variables(&arch.student_vs))?;
    dist.broadcast_from_main(&crate::dist::sorted_variables(&arch.teacher_vs))?;
    // Trainable student parameters in name order, their groups and the optimizer.
    let mut o = Optim::new(&arch, c)?;
    o.overlap = dist.grad_overlap(&o.params, &registration_order(&arch.student_vs, &o.params))?;
    let sched = schedules(c, dist.world() as u64)?;

    let metrics_path = out.join("metrics.jsonl");
    let (start, mut skipped_records) =
        resume_or_start(out, resume, main, &mut arch, &mut o, &metrics_path)?;
    let mut metrics = MetricsWriter::append_if(main, &metrics_path)?;

    let ds = open_train_dataset(c)?;
    if main {
        eprintln!("data: {}", ds.describe());
    }
    let mut loader = build_loader(c, ds, (dist.rank(), dist.world()), device)?;
    let cr = &c.crops;
    let batch = c.train.batch_size_per_gpu as usize;
    let total = c.optim.epochs * c.train.official_epoch_length;
    let end = c.train.max_iterations.map_or(total, |m| m.min(total));
    let ckpt_every = (c.train.saveckp_freq * c.train.official_epoch_length).max(1);
    let bar = if progress && main {
        ProgressBar::new(end).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} it [{elapsed}<{eta}] {msg}")
                .unwrap(),
        )
    } else {
        ProgressBar::hidden()
    };
    bar.set_position(start);
    if main {
        eprintln!(
            "pretraining {} ({}x{} ViT, patch {}) from iteration {start} to {end} of {total}; batch {batch}{}, {} local crops, {device:?}{}",
            c.student.arch,
            mac.student.depth,
            mac.student.embed_dim,
            mac.student.patch_size,
            if dist.world() > 1 {
                format!(" per process x {} processes", dist.world())
            } else {
                String::new()
            },
            cr.local_crops_number,
            match (o.precision, o.scaler.is_some()) {
                (model::runtime::Precision::Fp32, _) => ", fp32".to_string(),
                (p, true) => format!(", {p} autocast + loss scaler"),
                (p, false) => format!(", {p} autocast"),
            }
        );
    }
    let (g, l, nl) = (
        cr.global_crops_size as usize,
        cr.local_crops_size as usize,
        cr.local_crops_number as usize,
    );
    let mut last = LossValues::default();
    let mut timer = StepTimer::new(device, c.train.log_every.max(1));
    let mut it = start;
    let mut t_log = Instant::now();
    let mut n_log = 0usize;
    let (mut step_time, mut steps_log) = (0f64, 0u64);
    let state = |it: u64, scaler: &Option<LossScaler>, skipped_records: u64| SslState {
        iteration: it,
        scaler: scaler.clone(),
        tensors: format!("iter_{it}.safetensors"),
        skipped_records,
    };
    let mut batches = loader.epoch(0, start)?;
    while it < end {
        timer.begin(it);
        let Some(b) = batches.next() else { break };
        let mut b = b?;
        timer.lap(Phase::DataWait);
        for r in &b.skipped {
            eprintln!("warning: rank {} iteration {it}: {r}", dist.rank());
        }
        skipped_records += b.skipped.len() as u64;
        let v = sched.at(it);
        // Stochastic depth draws from libtorch's generator: seeding it per iteration makes a
        // resumed run draw exactly what an uninterrupted one does.
        // Each rank draws its own (dinov2 seeds seed + rank).
        tch::manual_seed(
            (c.train.seed as i64)
                .wrapping_mul(1_000_003)
                .wrapping_add(it as i64)
                .wrapping_add((dist.rank() as i64) << 40),
        );
        let sb = batch_tensors(&mut b, g, l, nl, device)?;
        timer.lap(Phase::HostToDevice);
        let t_step = Instant::now();
        let StepOutput { terms, norms } = train_step(&mut arch, &mut o, &sb, &v, dist, &mut timer)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{e:#} at iteration {it}; the last good checkpoint in {} is intact",
                    out.join("checkpoints").display()
                )
            })?;
        step_time += t_step.elapsed().as_secs_f64();
        steps_log += 1;
        it += 1;
        n_log += b.len();
        bar.inc(1);
        timer.end();
        if it.is_multiple_of(c.train.log_every.max(1)) || it == end {
            // the loss terms of this step, read back once
            last = LossValues::from_terms(&terms)?;
            let breakdown = timer.take();
            // per iteration: the training step, and the collectives inside it
            let comm_s = dist.take_comm_time().as_secs_f64() / steps_log as f64;
            let step_s = step_time / steps_log as f64;
            (step_time, steps_log) = (0.0, 0);
            if dist.is_distributed() {
                last = last.mean_over(dist)?;
            }
            let ips = (n_log * dist.world()) as f64 / t_log.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.4} lr {:.2e} {ips:.1} img/s",
                last.total, v.lr
            ));
            let mut r = json!({
                "kind": "pretrain", "iteration": it, "epoch": it / c.train.official_epoch_length,
                "total_loss": last.total, "dino_local_crops_loss": last.dino_local_crops_loss,
                "dino_global_crops_loss": last.dino_global_crops_loss, "koleo_loss": last.koleo_loss,
                "ibot_loss": last.ibot_loss, "teacher_entropy": last.teacher_entropy,
                "teacher_marginal_entropy": last.teacher_marginal_entropy, "lr": v.lr, "wd": v.wd, "mom": v.momentum,
                "last_layer_lr": v.last_layer_lr, "teacher_temp": v.teacher_temp,
                "images_per_s": ips, "loss_scale": o.scaler.as_ref().map(|s| s.scale),
                "skipped_steps": o.scaler.as_ref().map(|s| s.skipped),
                "skipped_records": skipped_records,
                "precision": o.precision.name(),
                "step_s": step_s, "comm_s": comm_s, "world_size": dist.world(), "backend": dist.backend(),
            });
            for (name, n) in &norms {
                r[format!("grad_norm_{name}")] = json!(n.double_value(&[]));
            }
            if let Some(fields) = r.as_object_mut() {
                fields.extend(breakdown.to_json());
                fields.insert("breakdown_steps".into(), json!(breakdown.steps));
                fields.insert("bound".into(), json!(breakdown.bound()));
            }
            metrics.log(&r)?;
            t_log = Instant::now();
            n_log = 0;
        }
        timer.lap(Phase::Logging);
        if it.is_multiple_of(ckpt_every) || it == end {
            if dist.is_distributed() {
                // A cheap guard against silent divergence: every rank holds the same weights.
                let mut all = crate::dist::sorted_variables(&arch.student_vs);
                all.extend(crate::dist::sorted_variables(&arch.teacher_vs));
                let same = dist.identical_across_ranks(&all)?;
                metrics
                    .log(&json!({"kind": "ddp_check", "iteration": it, "ranks_identical": same}))?;
                ensure!(
                    same,
                    "the student or teacher differs between ranks at iteration {it}"
                );
            }
            if main {
                save(
                    out,
                    &arch,
                    &o.adamw,
                    &o.names,
                    &state(it, &o.scaler, skipped_records),
                )?;
            }
        }
    }
    bar.finish_and_clear();
    if !main {
        return Ok(SslOutcome {
            iterations: it,
            last,
            teacher_backbone: out.join("teacher_backbone.safetensors"),
        });
    }
    // The teacher backbone with the official key names, for the probe, k-NN and PyTorch users.
    let teacher = out.join("teacher_backbone.safetensors");
    model::weights::save_safetensors(
        &model::weights::state_dict(&arch.teacher_vs, "backbone."),
        &teacher,
    )?;
    Ok(SslOutcome {
        iterations: it,
        last,
        teacher_backbone: teacher,
    })
}

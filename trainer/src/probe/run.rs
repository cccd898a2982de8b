//! The probe's top-level run: setup, resume, the training loop over epochs (SGD on every
//! classifier, evaluation and checkpoints after epochs), then the linear-head export and k-NN.

use super::banner;
use super::classifiers;
use super::data::{batch_tensors, crop_size, loader, open_datasets};
use super::export::save_linear_head;
use super::knn::run_knn;
use super::session::Run;
use super::settings::ProbeSettings;
use crate::backbone::build_backbone;
use crate::dist::Dist;
use crate::knn::KnnResult;
use crate::metrics::MetricsWriter;
use crate::schedule::Cosine;
use anyhow::{Context, Result, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};
use model::runtime::autocast;
use serde_json::json;
use std::time::Instant;
use tch::{Kind, Tensor};

/// What a run ends with.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeOutcome {
    pub best_top1: f64,
    pub best_epoch: u64,
    pub best_classifier: String,
    pub final_top1: f64,
    pub final_top5: f64,
    pub knn: Vec<KnnResult>,
    pub steps: u64,
}

/// Runs (or resumes) a probe; returns the best and final results.
/// Trains and evaluates the probe as one process of `dist` (a single process:
/// [`Dist::single`]). Every rank trains on its shard of each batch with gradients averaged
/// over the ranks; rank 0 evaluates, logs, checkpoints and exports.
pub fn run(s: &ProbeSettings, dist: &Dist) -> Result<ProbeOutcome> {
    let main = dist.is_main();
    ensure!(s.epochs > 0, "epochs must be positive");
    std::fs::create_dir_all(&s.out_dir)
        .with_context(|| format!("creating {}", s.out_dir.display()))?;
    let (train_ds, eval_ds, classes) = open_datasets(s)?;
    tch::manual_seed(s.seed as i64);
    let (backbone_vs, vit, what) = build_backbone(&s.backbone, s.device)?;
    let p = vit.config.patch_size as usize;
    for spec in [&s.train, &s.eval] {
        ensure!(
            crop_size(&spec.preset).is_multiple_of(p),
            "crop size {} is not a multiple of the patch size {p}",
            crop_size(&spec.preset)
        );
    }
    // Heads are initialised from the seed whatever the backbone did.
    tch::manual_seed(s.seed as i64);
    let mut run = Run::new(s, vit, &backbone_vs, classes, dist)?;
    let metrics_path = s.out_dir.join("metrics.jsonl");
    let (start_epoch, mut global_step, mut best) = run.resume(main, &metrics_path)?;
    let mut metrics = MetricsWriter::append_if(main, &metrics_path)?;
    if main {
        banner::print(
            &run,
            &what,
            p,
            classes,
            train_ds.as_ref(),
            eval_ds.as_ref(),
            dist,
        );
    }

    let mut train = loader(
        train_ds.clone(),
        &s.train,
        s.seed,
        false,
        (dist.rank(), dist.world()),
        s.device,
    )?;
    let mut eval = loader(eval_ds.clone(), &s.eval, s.seed, true, (0, 1), s.device)?;
    let steps_per_epoch = train.steps_per_epoch().unwrap_or(0);
    ensure!(
        steps_per_epoch > 0,
        "the training set has fewer samples than one batch"
    );
    let total_steps = s.epochs * steps_per_epoch;
    // The schedule is given in epochs; a per-step one advances every step.
    let schedule = if s.schedule_per_step {
        Cosine {
            total: s.schedule.total * steps_per_epoch,
            warmup: s.schedule.warmup * steps_per_epoch,
            ..s.schedule
        }
    } else {
        s.schedule
    };
    let crop = crop_size(&s.train.preset);
    let mut last_eval = (0.0, 0.0);
    let mut stop = false;
    for epoch in start_epoch..s.epochs {
        let bar = if s.progress && main {
            ProgressBar::new(steps_per_epoch).with_style(
                ProgressStyle::with_template(
                    "epoch {prefix} {bar:25} {pos}/{len} [{elapsed}<{eta}] {msg}",
                )
                .unwrap(),
            )
        } else {
            ProgressBar::hidden()
        };
        bar.set_prefix(format!("{}/{}", epoch + 1, s.epochs));
        let t_epoch = Instant::now();
        let mut seen = 0usize;
        let mut t_print = Instant::now();
        let mut seen_print = 0usize;
        let mut steps_this_epoch = 0u64;
        // This epoch's skipped records (a resumed run restarts at an epoch boundary).
        let mut skipped_records = 0u64;
        for b in train.epoch(epoch, 0)? {
            let mut b = b?;
            for r in &b.skipped {
                eprintln!(
                    "warning: rank {} epoch {} step {global_step}: {r}",
                    dist.rank(),
                    epoch + 1
                );
            }
            skipped_records += b.skipped.len() as u64;
            let unit = if s.schedule_per_step {
                global_step
            } else {
                epoch
            };
            let factor = schedule.at(unit);
            let (x, y) = batch_tensors(&mut b, crop, s.device);
            let layers = run.layers(&x)?;
            let logits = autocast(s.device, s.precision, || {
                classifiers::logits(&run.classifiers, &layers)
            })?;
            let losses: Vec<Tensor> = logits
                .iter()
                .map(|l| l.to_kind(Kind::Float).cross_entropy_for_logits(&y))
                .collect();
            let loss = Tensor::stack(&losses, 0).sum(Kind::Float);
            let loss_value = loss.double_value(&[]);
            if !loss_value.is_finite() && run.scaler.is_none() {
                bail!(
                    "the loss became {loss_value} at step {global_step} (epoch {})",
                    epoch + 1
                );
            }
            let scaled = match &run.scaler {
                Some(sc) => &loss * sc.scale,
                None => loss.shallow_clone(),
            };
            if let Some(ov) = &run.overlap {
                ov.arm()?;
            }
            let mut grads = Tensor::f_run_backward(&[&scaled], &run.params, false, false)?;
            match &run.overlap {
                Some(ov) => ov.finish(&mut grads)?,
                None => dist.average_gradients(&grads)?,
            }
            let step_ok = match run.scaler.as_mut() {
                Some(sc) => {
                    let finite = sc.unscale(&mut grads)?;
                    sc.update(finite)
                }
                None => true,
            };
            if step_ok {
                let lrs: Vec<f64> = run.param_lr.iter().map(|lr| lr * factor).collect();
                run.sgd.step(&mut run.params, &grads, &lrs)?;
            }
            global_step += 1;
            steps_this_epoch += 1;
            seen += b.len();
            seen_print += b.len();
            bar.inc(1);
            let lr0 = run.classifiers[0].lr * factor;
            if global_step.is_multiple_of(s.print_every) || global_step == total_steps {
                let ips = dist.world() as f64 * seen_print as f64 / t_print.elapsed().as_secs_f64();
                let per_classifier =
                    dist.mean_scalars(&[loss_value])?[0] / run.classifiers.len() as f64;
                bar.set_message(format!(
                    "loss {per_classifier:.4} lr {lr0:.3e} {ips:.0} img/s"
                ));
                metrics.log(&json!({
                    "kind": "train", "epoch": epoch + 1, "step": global_step,
                    "loss": per_classifier, "lr": lr0, "images_per_s": ips,
                    "loss_scale": run.scaler.as_ref().map(|sc| sc.scale),
                    "skipped_steps": run.scaler.as_ref().map(|sc| sc.skipped),
                    "skipped_records": skipped_records, "precision": s.precision.name(),
                }))?;
                t_print = Instant::now();
                seen_print = 0;
            }
            if s.max_train_step.is_some_and(|m| global_step >= m) {
                stop = true;
                break;
            }
        }
        bar.finish_and_clear();
        let epoch_s = t_epoch.elapsed().as_secs_f64();
        let done = epoch + 1;
        let last = done == s.epochs || stop;
        if main && (done.is_multiple_of(s.eval_every) || last) {
            let results = run.evaluate(&mut eval)?;
            let (bi, &(top1, top5, loss)) = results
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.0.total_cmp(&b.1.0).then(b.0.cmp(&a.0)))
                .unwrap();
            let name = run.classifiers[bi].name.clone();
            eprintln!(
                "epoch {done}/{}: top-1 {:.2}%, top-5 {:.2}%, eval loss {loss:.4} ({name}), {:.0} img/s",
                s.epochs,
                top1 * 100.0,
                top5 * 100.0,
                (seen * dist.world()) as f64 / epoch_s
            );
            metrics.log(&json!({
                "kind": "eval", "epoch": done, "step": global_step, "top1": top1, "top5": top5,
                "loss": loss, "classifier": name, "train_images_per_s": (seen * dist.world()) as f64 / epoch_s,
            }))?;
            if run.classifiers.len() > 1 {
                for (c, r) in run.classifiers.iter().zip(&results) {
                    metrics.log(&json!({
                        "kind": "lr_grid", "epoch": done, "name": c.name, "top1": r.0, "top5": r.1,
                        "n_last_blocks": c.n_blocks, "avgpool": c.avgpool, "lr": c.lr,
                    }))?;
                }
            }
            if best.as_ref().is_none_or(|b| top1 > b.0) {
                best = Some((top1, done, name));
            }
            last_eval = (top1, top5);
        }
        // A run stopped inside an epoch (max_train_step) has nothing to resume from.
        let complete = steps_this_epoch == steps_per_epoch;
        if main && complete && (done.is_multiple_of(s.save_every) || last) {
            run.save(done, global_step, &best)?;
        }
        if stop {
            break;
        }
    }
    let (best_top1, best_epoch, best_classifier) =
        best.clone().unwrap_or((last_eval.0, 0, String::new()));
    if !main {
        return Ok(ProbeOutcome {
            best_top1,
            best_epoch,
            best_classifier,
            final_top1: last_eval.0,
            final_top5: last_eval.1,
            knn: Vec::new(),
            steps: global_step,
        });
    }
    save_linear_head(&run.classifiers, &best_classifier, &s.out_dir)?;
    let knn = match &s.knn {
        Some(k) => {
            let r = run_knn(&run.vit, &train_ds, &eval_ds, s, k, classes)?;
            for x in &r {
                metrics.log(&json!({"kind": "knn", "k": x.k, "top1": x.top1, "top5": x.top5}))?;
            }
            r
        }
        None => Vec::new(),
    };
    Ok(ProbeOutcome {
        best_top1,
        best_epoch,
        best_classifier,
        final_top1: last_eval.0,
        final_top5: last_eval.1,
        knn,
        steps: global_step,
    })
}

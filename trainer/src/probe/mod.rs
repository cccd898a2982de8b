//! Linear probing of a frozen backbone (PASSL's protocol, or dinov2's grid of classifiers),
//! with evaluation every epoch, k-NN, checkpoints, exact resume, metrics and a summary.

pub mod classifiers;
pub mod state;

use crate::backbone::{BackboneSpec, build_backbone};
use crate::dist::Dist;
use crate::knn::{KnnResult, knn_eval, topk_hits};
use crate::metrics::{MetricsWriter, read_metrics};
use crate::optim::Sgd;
use crate::scaler::LossScaler;
use crate::schedule::Cosine;
use anyhow::{Context, Result, bail, ensure};
use classifiers::{Classifier, Protocol};
use indicatif::{ProgressBar, ProgressStyle};
use model::runtime::{Precision, autocast};
use model::{DinoVisionTransformer, Take};
use pipeline::bad_records::BadRecords;
use pipeline::dataset::{Dataset, open_dataset};
use pipeline::loader::{Loader, LoaderConfig};
use pipeline::presets::Preset;
use pipeline::sampler::SamplerKind;
use serde_json::json;
use state::ProbeState;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor, nn};

/// One side of the data: where, which split, which transform, how many per batch.
#[derive(Debug, Clone)]
pub struct DataSpec {
    pub root: PathBuf,
    pub split: String,
    pub preset: Preset,
    pub batch_size: usize,
    pub workers: usize,
    pub shuffle: bool,
    pub drop_last: bool,
    /// What a record that cannot be read or decoded does.
    pub bad_records: BadRecords,
}

#[derive(Debug, Clone)]
pub struct KnnSpec {
    pub ks: Vec<usize>,
    pub temperature: f64,
}

/// Everything a probe run needs (built from a config by the CLI).
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub out_dir: PathBuf,
    pub device: Device,
    pub seed: u64,
    pub epochs: u64,
    /// Stop after this many optimizer steps in total (smoke runs).
    pub max_train_step: Option<u64>,
    pub train: DataSpec,
    pub eval: DataSpec,
    pub backbone: BackboneSpec,
    /// The number of classes the config declares (`Model.class_num`); checked against the data.
    pub class_num: Option<i64>,
    pub protocol: Protocol,
    pub momentum: f64,
    pub weight_decay: f64,
    /// The schedule of a base rate of 1 (each classifier scales it by its own rate), its length
    /// and warm-up in epochs, and whether it advances per epoch (PASSL) or per step (dinov2).
    pub schedule: Cosine,
    pub schedule_per_step: bool,
    /// The precision of the backbone and heads' forward passes (autocast; parameters stay
    /// fp32): fp32, fp16 (CUDA, with the loss scaler `fp16`) or bf16 (CPU or CUDA).
    pub precision: Precision,
    /// The loss scaler of fp16 (none with fp32 or bf16).
    pub fp16: Option<LossScaler>,
    pub print_every: u64,
    pub eval_every: u64,
    pub save_every: u64,
    pub knn: Option<KnnSpec>,
    pub resume: bool,
    pub progress: bool,
}

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

/// `rank`/`world`: this process's shard of the samples (evaluation runs on rank 0 alone).
fn loader(
    ds: Arc<dyn Dataset>,
    spec: &DataSpec,
    seed: u64,
    eval: bool,
    (rank, world): (usize, usize),
    device: Device,
) -> Result<Loader> {
    let cfg = LoaderConfig {
        preset: spec.preset.clone(),
        batch_size: spec.batch_size,
        workers: spec.workers,
        seed,
        sampler: SamplerKind::Epoch {
            shuffle: spec.shuffle,
            drop_last: spec.drop_last,
        },
        rank,
        world,
        masks: None,
        keep_partial_batch: eval || !spec.drop_last,
        bad_records: spec.bad_records,
    };
    let storages = crate::batch_memory::storages(&spec.preset, spec.batch_size, device, 3);
    Loader::new(ds, cfg, storages)
}

/// A batch's images as a normalised float tensor on `device`, and its labels.
fn batch_tensors(b: &mut pipeline::loader::Batch, crop: usize, device: Device) -> (Tensor, Tensor) {
    let n = b.len();
    let plane = &b.planes()[0][..n * crop * crop * 3];
    let x = crate::batch_memory::upload(plane, &[n as i64, crop as i64, crop as i64, 3], device);
    let labels: Vec<i64> = b.labels.iter().map(|&l| l as i64).collect();
    (
        model::input::normalize_uint8(&x, Kind::Float),
        Tensor::from_slice(&labels).to_device(device),
    )
}

fn crop_size(p: &Preset) -> usize {
    p.groups()[0].size
}

struct Run<'a> {
    s: &'a ProbeSettings,
    vit: DinoVisionTransformer,
    heads_vs: nn::VarStore,
    classifiers: Vec<Classifier>,
    /// The trained parameters (classifier order, weight then bias), their VarStore names and
    /// base learning rates.
    params: Vec<Tensor>,
    param_names: Vec<String>,
    param_lr: Vec<f64>,
    sgd: Sgd,
    scaler: Option<LossScaler>,
    /// Gradient all-reduce overlapped with the backward pass (when distributed).
    overlap: Option<crate::dist::GradOverlap>,
}

impl Run<'_> {
    /// Backbone outputs for the classifiers (frozen, eval mode, no grad).
    fn layers(&self, x: &Tensor) -> Result<Vec<model::Intermediate>> {
        let n = classifiers::max_blocks(&self.classifiers);
        let _g = tch::no_grad_guard();
        autocast(self.s.device, self.s.precision, || {
            self.vit
                .get_intermediate_layers(x, &Take::Last(n), false, true)
        })?
    }

    /// Top-1, top-5 and mean loss of every classifier on the evaluation set.
    fn evaluate(&self, eval: &mut Loader) -> Result<Vec<(f64, f64, f64)>> {
        let crop = crop_size(&self.s.eval.preset);
        let mut acc = vec![(0i64, 0i64, 0f64); self.classifiers.len()];
        let mut n = 0i64;
        for b in eval.epoch(0, 0)? {
            let mut b = b?;
            let (x, y) = batch_tensors(&mut b, crop, self.s.device);
            let layers = self.layers(&x)?;
            let _g = tch::no_grad_guard();
            let logits = autocast(self.s.device, self.s.precision, || {
                classifiers::logits(&self.classifiers, &layers)
            })?;
            for (a, l) in acc.iter_mut().zip(&logits) {
                let l = l.to_kind(Kind::Float);
                let (t1, t5) = topk_hits(&l, &y);
                a.0 += t1;
                a.1 += t5;
                a.2 += l.cross_entropy_for_logits(&y).double_value(&[]) * b.len() as f64;
            }
            n += b.len() as i64;
        }
        ensure!(n > 0, "the evaluation set is empty");
        Ok(acc
            .into_iter()
            .map(|(a, b, c)| (a as f64 / n as f64, b as f64 / n as f64, c / n as f64))
            .collect())
    }

    fn tensors_for_checkpoint(&self) -> Vec<(String, Tensor)> {
        let mut t = model::weights::state_dict(&self.heads_vs, "");
        // Buffers are stored under the name of their parameter.
        for (name, buf) in self.param_names.iter().zip(&self.sgd.buffers) {
            t.push((
                format!("optimizer.momentum.{name}"),
                buf.to_device(Device::Cpu),
            ));
        }
        t
    }

    fn restore(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let (bufs, weights): (Vec<_>, Vec<_>) = tensors
            .into_iter()
            .partition(|(k, _)| k.starts_with("optimizer.momentum."));
        model::weights::load_state_dict(&self.heads_vs, weights, true, "the probe checkpoint")?;
        for (k, t) in bufs {
            let name = &k["optimizer.momentum.".len()..];
            let i = self
                .param_names
                .iter()
                .position(|n| n == name)
                .with_context(|| format!("checkpoint momentum for unknown parameter {name}"))?;
            tch::no_grad(|| self.sgd.buffers[i].copy_(&t));
        }
        Ok(())
    }
}

fn open(spec: &DataSpec) -> Result<Arc<dyn Dataset>> {
    Ok(Arc::from(
        open_dataset(&spec.root, &spec.split)
            .with_context(|| format!("opening {} ({})", spec.root.display(), spec.split))?,
    ))
}

/// Drops metric records of epochs after `epochs_done` (written by an interrupted run).
fn truncate_metrics(path: &Path, epochs_done: u64) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let keep: Vec<String> = read_metrics(path)?
        .into_iter()
        .filter(|r| r["epoch"].as_u64().is_none_or(|e| e <= epochs_done) && r["kind"] != "knn")
        .map(|r| r.to_string())
        .collect();
    let mut text = keep.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    pipeline::atomic::write_atomic(path, text.as_bytes())
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
    let train_ds = open(&s.train)?;
    let eval_ds = open(&s.eval)?;
    if train_ds.classes() != eval_ds.classes() {
        bail!(
            "the training and evaluation sets have different classes ({} vs {})",
            train_ds.classes().len(),
            eval_ds.classes().len()
        );
    }
    let classes = train_ds.classes().len() as i64;
    if let Some(n) = s.class_num
        && n != classes
    {
        bail!(
            "Model.class_num is {n} but {} has {classes} classes",
            s.train.root.display()
        );
    }
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
    let heads_vs = nn::VarStore::new(s.device);
    let classifiers = classifiers::build(
        &heads_vs.root(),
        &s.protocol,
        vit.config.embed_dim,
        classes,
        s.train.batch_size * dist.world(),
    );
    // Parameters in a fixed order (classifier order, weight then bias).
    let (mut params, mut param_names, mut param_lr) = (Vec::new(), Vec::new(), Vec::new());
    for c in &classifiers {
        let bias = c.head.linear.bs.as_ref().expect("probe heads have a bias");
        params.extend([c.head.linear.ws.shallow_clone(), bias.shallow_clone()]);
        param_names.extend([format!("{}.weight", c.name), format!("{}.bias", c.name)]);
        param_lr.extend([c.lr, c.lr]);
    }
    // Every rank starts from rank 0's heads (and backbone, when it is randomly initialised).
    dist.broadcast_from_main(&params)?;
    dist.broadcast_from_main(&crate::dist::sorted_variables(&backbone_vs))?;
    let sgd = Sgd::new(&params, s.momentum, s.weight_decay);
    let order = crate::dist::registration_order(&heads_vs, &params);
    let overlap = dist.grad_overlap(&params, &order)?;
    let mut run = Run {
        s,
        vit,
        heads_vs,
        classifiers,
        params,
        param_names,
        param_lr,
        sgd,
        scaler: s.fp16.clone(),
        overlap,
    };
    let metrics_path = s.out_dir.join("metrics.jsonl");
    let mut start_epoch = 0;
    let mut global_step = 0;
    let mut best: Option<(f64, u64, String)> = None;
    match state::load(&s.out_dir)? {
        Some((st, tensors)) if s.resume => {
            ensure!(
                st.classifiers
                    == run
                        .classifiers
                        .iter()
                        .map(|c| c.name.clone())
                        .collect::<Vec<_>>(),
                "the checkpoint in {} was made with other classifiers",
                state::dir(&s.out_dir).display()
            );
            run.restore(tensors)?;
            start_epoch = st.epochs_done;
            global_step = st.global_step;
            best = st.best;
            // The saved scaler goes on only where this run's precision uses one.
            if run.scaler.is_some() {
                run.scaler = st.scaler.or(run.scaler);
            }
            if main {
                truncate_metrics(&metrics_path, st.epochs_done)?;
                eprintln!(
                    "resuming after epoch {} (step {global_step})",
                    st.epochs_done
                );
            }
        }
        Some(_) => bail!(
            "{} already holds a checkpoint; pass --resume to continue it or choose another output directory",
            s.out_dir.display()
        ),
        None => {
            if main && metrics_path.exists() {
                std::fs::remove_file(&metrics_path)?;
            }
        }
    }
    let mut metrics = MetricsWriter::append_if(main, &metrics_path)?;
    if main {
        eprintln!(
            "backbone: {} ({}x{} ViT, patch {}), {what}",
            vit_name(&run.vit),
            run.vit.config.depth,
            run.vit.config.embed_dim,
            p
        );
        eprintln!("train: {}", train_ds.describe());
        eprintln!("eval: {}", eval_ds.describe());
        eprintln!(
            "{} classifier(s), {classes} classes, {}",
            run.classifiers.len(),
            match (s.precision, s.fp16.is_some()) {
                (Precision::Fp32, _) => "fp32".to_string(),
                (p, true) => format!("{p} autocast + loss scaler"),
                (p, false) => format!("{p} autocast"),
            }
        );
        if dist.world() > 1 {
            eprintln!(
                "data parallel: {} processes x batch {} (global batch {})",
                dist.world(),
                s.train.batch_size,
                s.train.batch_size * dist.world()
            );
        }
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
            let st = ProbeState {
                epochs_done: done,
                global_step,
                scaler: run.scaler.clone(),
                best: best.clone(),
                tensors: format!("epoch_{done}.safetensors"),
                classifiers: run.classifiers.iter().map(|c| c.name.clone()).collect(),
            };
            state::save(&s.out_dir, &st, &run.tensors_for_checkpoint())?;
        }
        if stop {
            break;
        }
    }
    let (best_top1, best_epoch, best_classifier) =
        best.clone().unwrap_or((last_eval.0, 0, String::new()));
    // The hub's linear-head format (`weight`, `bias`) for the best classifier.
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
    if let Some(c) = run.classifiers.iter().find(|c| c.name == best_classifier) {
        let head = vec![
            (
                "weight".to_string(),
                c.head.linear.ws.detach().to_device(Device::Cpu),
            ),
            (
                "bias".to_string(),
                c.head
                    .linear
                    .bs
                    .as_ref()
                    .unwrap()
                    .detach()
                    .to_device(Device::Cpu),
            ),
        ];
        model::weights::save_safetensors(&head, &s.out_dir.join("linear_head.safetensors"))?;
    }
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

fn vit_name(v: &DinoVisionTransformer) -> String {
    match v.config.embed_dim {
        384 => "ViT-S",
        768 => "ViT-B",
        1024 => "ViT-L",
        1536 => "ViT-g",
        _ => "custom",
    }
    .to_string()
}

/// Normed CLS features of a whole dataset (evaluation transform, dataset order) and labels.
pub fn extract_features(
    vit: &DinoVisionTransformer,
    ds: Arc<dyn Dataset>,
    spec: &DataSpec,
    device: Device,
    precision: Precision,
) -> Result<(Tensor, Tensor)> {
    let spec = DataSpec {
        shuffle: false,
        drop_last: false,
        ..spec.clone()
    };
    let mut l = loader(ds, &spec, 0, true, (0, 1), device)?;
    let crop = crop_size(&spec.preset);
    let (mut feats, mut labels) = (Vec::new(), Vec::new());
    for b in l.epoch(0, 0)? {
        let mut b = b?;
        let (x, y) = batch_tensors(&mut b, crop, device);
        let _g = tch::no_grad_guard();
        let f = autocast(device, precision, || vit.forward_features(&x, None, false))??;
        feats.push(f.cls.to_kind(Kind::Float));
        labels.push(y);
    }
    Ok((Tensor::cat(&feats, 0), Tensor::cat(&labels, 0)))
}

fn run_knn(
    vit: &DinoVisionTransformer,
    train: &Arc<dyn Dataset>,
    eval: &Arc<dyn Dataset>,
    s: &ProbeSettings,
    k: &KnnSpec,
    classes: i64,
) -> Result<Vec<KnnResult>> {
    let t = Instant::now();
    let (tf, tl) = extract_features(vit, train.clone(), &s.eval, s.device, s.precision)?;
    let (qf, ql) = extract_features(vit, eval.clone(), &s.eval, s.device, s.precision)?;
    let r = knn_eval(&tf, &tl, &qf, &ql, &k.ks, k.temperature, classes, 256)?;
    for x in &r {
        eprintln!(
            "k-NN k={}: top-1 {:.2}%, top-5 {:.2}%",
            x.k,
            x.top1 * 100.0,
            x.top5 * 100.0
        );
    }
    eprintln!(
        "k-NN on {} train / {} eval images in {:.1} s",
        tl.size()[0],
        ql.size()[0],
        t.elapsed().as_secs_f64()
    );
    Ok(r)
}

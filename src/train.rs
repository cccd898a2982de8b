//! `dinov2 train -c CONFIG [-o Section.key=value]... [--resume]`: a linear-probe run from a
//! PASSL-shaped config (trainer::config), with a summary and plots at the end.

use crate::features::parse_device;
use anyhow::{Context, Result, ensure};
use clap::Args;
use model::runtime::Precision;
use pipeline::bad_records::BadRecordPolicy;
use pipeline::dir_lock::DirLock;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use trainer::backbone::BackboneSpec;
use trainer::config::{AmpDtype, AmpLevel, Config, DeviceKind, ProbeProtocol, SchedulerName, Unit};
use trainer::dist::Dist;
use trainer::probe::classifiers::Protocol;
use trainer::probe::{DataSpec, KnnSpec, ProbeSettings};
use trainer::scaler::LossScaler;
use trainer::schedule::Cosine;
use trainer::ssl::config::SslConfig;

#[derive(Args)]
pub struct TrainArgs {
    /// The run's YAML config (see configs/).
    #[arg(short = 'c', long = "config")]
    pub config: PathBuf,
    /// Override one key, `Section.key.sub=value` (repeatable; integers index lists).
    #[arg(short = 'o', long = "override")]
    pub overrides: Vec<String>,
    /// Continue the run in the output directory from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Device override: cpu, cuda, cuda:N or auto (default: Global.device).
    #[arg(long)]
    pub device: Option<String>,
}

/// The probe settings a config describes; `out_dir` is `Global.output_dir/Model.name`.
pub fn settings(cfg: &Config, resume: bool, device: Option<&str>) -> Result<ProbeSettings> {
    let g = &cfg.global;
    let device = match device {
        Some(d) => parse_device(d)?,
        None => match g.device {
            DeviceKind::Cpu => tch::Device::Cpu,
            DeviceKind::Gpu => {
                ensure!(
                    tch::Cuda::is_available(),
                    "Global.device is gpu but libtorch sees no CUDA device (run `dinov2 doctor`, or -o Global.device=cpu)"
                );
                tch::Device::Cuda(0)
            }
        },
    };
    let mut precision = Precision::Fp32;
    let fp16 = match &cfg.fp16 {
        Some(f) if f.level != AmpLevel::O0 && f.dtype == AmpDtype::Bfloat16 => {
            // bf16 has fp32's exponent range: no loss scaling (FP16.GradScaler is ignored).
            precision = Precision::Bf16;
            None
        }
        Some(f) if f.level != AmpLevel::O0 => {
            if device.is_cuda() {
                precision = Precision::Fp16;
                let s = &f.grad_scaler;
                let mut sc = LossScaler::new(
                    s.init_loss_scaling,
                    s.incr_ratio,
                    s.decr_ratio,
                    s.incr_every_n_steps,
                    s.decr_every_n_nan_or_inf,
                );
                sc.max_scale = s.max_loss_scaling;
                if !s.use_dynamic_loss_scaling {
                    sc.incr_every_n_steps = u64::MAX;
                    sc.decr_every_n_nan_or_inf = u64::MAX;
                }
                Some(sc)
            } else {
                eprintln!(
                    "note: FP16.{:?} asks for fp16, which needs CUDA; this CPU run is fp32",
                    f.level
                );
                None
            }
        }
        _ => None,
    };
    let m = &cfg.model;
    let b = &m.backbone;
    let arch = b.kind.arch().map(str::to_string);
    let custom = match arch {
        Some(_) => None,
        None => Some((
            b.embed_dim
                .context("Model.backbone.embed_dim is needed for a custom backbone")?,
            b.depth
                .context("Model.backbone.depth is needed for a custom backbone")?,
            b.num_heads
                .context("Model.backbone.num_heads is needed for a custom backbone")?,
        )),
    };
    let backbone = BackboneSpec {
        arch,
        custom,
        img_size: b.img_size,
        patch_size: b.patch_size,
        ffn_layer: b.ffn_layer,
        num_register_tokens: b.num_register_tokens.unwrap_or(0),
        num_heads: b.num_heads,
        weights: g.pretrained_model.clone(),
    };
    let dl = &cfg.data_loader;
    let workers = |n: u64| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (n as usize).clamp(1, cores)
    };
    let train = DataSpec {
        root: dl.train.dataset.root.clone(),
        split: dl.train.dataset.split_or("train").to_string(),
        preset: cfg.train_transform()?.preset(),
        batch_size: dl.train.sampler.batch_size as usize,
        workers: workers(dl.train.loader.num_workers),
        shuffle: dl.train.sampler.shuffle,
        drop_last: dl.train.sampler.drop_last,
        bad_records: dl.train.loader.bad_records(BadRecordPolicy::Skip),
    };
    let eval = DataSpec {
        root: dl.eval.dataset.root.clone(),
        split: dl.eval.dataset.split_or("val").to_string(),
        preset: cfg.eval_transform()?.preset(),
        batch_size: dl.eval.sampler.batch_size as usize,
        workers: workers(dl.eval.loader.num_workers),
        shuffle: false,
        drop_last: false,
        bad_records: dl.eval.loader.bad_records(BadRecordPolicy::Fail),
    };
    let lr = &cfg.lr_scheduler;
    let le = &cfg.linear_eval;
    let protocol = match le.protocol {
        ProbeProtocol::Passl => Protocol::Passl {
            lr: lr.learning_rate,
        },
        ProbeProtocol::Dinov2 => Protocol::Dinov2 {
            n_last_blocks: le.n_last_blocks_list.clone(),
            avgpool: le.avgpool_list.clone(),
            lrs: le.learning_rates.clone(),
            scaling_batch: le.lr_scaling_batch as f64,
        },
    };
    let per_step = lr.name == SchedulerName::CosineAnnealing || lr.decay_unit == Unit::Step;
    let schedule = Cosine {
        base: 1.0,
        total: g.epochs,
        warmup: lr.warmup_epoch,
        warmup_start: lr.warmup_start_lr / lr.learning_rate,
        eta_min: lr.eta_min / lr.learning_rate,
    };
    let knn = cfg.knn.enabled.then(|| KnnSpec {
        ks: cfg.knn.nb_knn.clone(),
        temperature: cfg.knn.temperature,
    });
    Ok(ProbeSettings {
        out_dir: g.output_dir.join(&m.name),
        device,
        seed: g.seed.unwrap_or(0),
        epochs: g.epochs,
        max_train_step: g.max_train_step,
        train,
        eval,
        backbone,
        class_num: Some(m.class_num),
        protocol,
        momentum: cfg.optimizer.momentum,
        weight_decay: cfg.optimizer.weight_decay,
        schedule,
        schedule_per_step: per_step,
        precision,
        fp16,
        print_every: g.print_batch_step.max(1),
        eval_every: if g.eval_during_train {
            g.eval_interval.max(1)
        } else {
            g.epochs
        },
        save_every: g.save_interval.max(1),
        knn,
        resume,
        progress: std::io::stderr().is_terminal(),
    })
}

pub fn run(a: TrainArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&a.config)
        .with_context(|| format!("cannot read the config file {}", a.config.display()))?;
    trainer::config::check_yaml_nesting(&text)
        .with_context(|| format!("{}: not a valid YAML document", a.config.display()))?;
    let doc: serde_norway::Value = serde_norway::from_str(&text)
        .with_context(|| format!("{}: not a valid YAML document", a.config.display()))?;
    if SslConfig::looks_like(&doc) {
        return pretrain(a);
    }
    let cfg = Config::open(&a.config, &a.overrides)?;
    let mut s = settings(&cfg, a.resume, a.device.as_deref())?;
    let (dist, device) = Dist::from_env(s.device)?;
    s.device = device;
    let _lock = dist
        .is_main()
        .then(|| DirLock::acquire(&s.out_dir, "dinov2 train (probe)"))
        .transpose()?;
    if _lock.is_some() {
        pipeline::atomic::remove_stale_temps(&s.out_dir)?;
    }
    if dist.is_main() {
        cfg.write_resolved(&s.out_dir)?;
        eprintln!("run directory: {}", s.out_dir.display());
    }
    let outcome = trainer::probe::run(&s, &dist)?;
    if !dist.is_main() {
        return Ok(ExitCode::SUCCESS);
    }
    let report = trainer::summary::run_report(&s.out_dir)?;
    if let Ok(md) = std::fs::read_to_string(&report.summary_md) {
        println!("{md}");
    }
    println!(
        "best top-1 {:.2}% (epoch {}, {}), final top-1 {:.2}% / top-5 {:.2}%",
        outcome.best_top1 * 100.0,
        outcome.best_epoch,
        outcome.best_classifier,
        outcome.final_top1 * 100.0,
        outcome.final_top5 * 100.0
    );
    for k in &outcome.knn {
        println!("k-NN k={}: top-1 {:.2}%", k.k, k.top1 * 100.0);
    }
    println!("summary: {}", report.summary_md.display());
    println!("plot:    {}", report.plot_png.display());
    println!(
        "head:    {}",
        s.out_dir.join("linear_head.safetensors").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A pretraining config (dinov2's keys): pretrain into `train.output_dir`.
fn pretrain(a: TrainArgs) -> Result<ExitCode> {
    let mut cfg: SslConfig = trainer::config::load_yaml(&a.config, &a.overrides)?;
    if let Some(d) = &a.device {
        cfg.train.device = d.clone();
    }
    let out = cfg.train.output_dir.clone();
    let (dist, _) = Dist::from_env(trainer::ssl::train::parse_device(&cfg.train.device)?)?;
    let sched = trainer::ssl::train::schedules(&cfg, dist.world() as u64)?;
    cfg.optim.lr = sched.lr.base_value;
    // One run per output directory: the lock is held until this process ends.
    let _lock = dist
        .is_main()
        .then(|| DirLock::acquire(&out, "dinov2 train (pretraining)"))
        .transpose()?;
    if _lock.is_some() {
        pipeline::atomic::remove_stale_temps(&out)?;
    }
    if dist.is_main() {
        trainer::config::write_resolved_as(&cfg, &out)?;
        eprintln!("run directory: {}", out.display());
    }
    let o = trainer::ssl::train::run(&cfg, &out, a.resume, std::io::stderr().is_terminal(), &dist)?;
    if !dist.is_main() {
        return Ok(ExitCode::SUCCESS);
    }
    let report = trainer::ssl::report::render(&out)?;
    if let Ok(md) = std::fs::read_to_string(&report.summary_md) {
        println!("{md}");
    }
    println!(
        "{} iterations; last loss {:.4} (dino local {:.4}, dino global {:.4}, koleo {:.4}, ibot {:.4})",
        o.iterations,
        o.last.total,
        o.last.dino_local_crops_loss,
        o.last.dino_global_crops_loss,
        o.last.koleo_loss,
        o.last.ibot_loss
    );
    println!("teacher backbone: {}", o.teacher_backbone.display());
    println!("summary:          {}", report.summary_md.display());
    println!("plot:             {}", report.plot_png.display());
    Ok(ExitCode::SUCCESS)
}

//! `dinov2 train` with a pretraining config: a run stopped and resumed ends bit-identical to
//! an uninterrupted one (teacher backbone, metrics); outputs are written; the exported
//! teacher backbone loads into `dinov2 features`; the step-time breakdown adds up.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    let dir = scratch("ssl_train");
    small_synth_tree(&dir, 3, 20, 0);
    dir
}

fn run(data: &Path, out: &Path, extra: &[&str]) -> String {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_ssl_cpu.yaml");
    let mut a: Vec<std::ffi::OsString> = vec!["train".into(), "-c".into(), config.into()];
    for o in [
        format!("train.dataset_path={}", data.join("tree").display()),
        format!("train.output_dir={}", out.display()),
        "train.batch_size_per_gpu=8".into(),
        "train.OFFICIAL_EPOCH_LENGTH=5".into(),
        "train.saveckp_freq=1".into(),
        "optim.epochs=4".into(),
    ] {
        a.push("-o".into());
        a.push(o.into());
    }
    a.extend(extra.iter().map(Into::into));
    dinov2_ok(&a.iter().map(|s| s.as_os_str()).collect::<Vec<_>>())
}

#[test]
fn pretraining_resumes_bit_identically() {
    let d = data();
    let full = d.join("full");
    let text = run(&d, &full, &[]);
    assert!(text.contains("20 iterations"), "{text}");
    for f in [
        "config.yaml",
        "metrics.jsonl",
        "curves.png",
        "teacher_backbone.safetensors",
    ] {
        assert!(full.join(f).is_file(), "{f} missing");
    }
    // Every record says where its steps' time went; the phases add up to about the step time
    // (the step is forward + backward, optimizer and EMA), the loader kept up, and the summary
    // says what bounded the run.
    let records = trainer::metrics::read_metrics(&full.join("metrics.jsonl")).unwrap();
    for r in records.iter().filter(|r| r["kind"] == "pretrain") {
        let b = trainer::step_timer::Breakdown::from_record(r).expect("a step-time breakdown");
        assert!(b.steps >= 1, "{r}");
        let step = r["step_s"].as_f64().unwrap();
        let inside = b.total()
            - b.get(trainer::step_timer::Phase::DataWait)
            - b.get(trainer::step_timer::Phase::HostToDevice)
            - b.get(trainer::step_timer::Phase::Logging);
        assert!(
            (inside - step).abs() <= 0.05 * step + 2e-3,
            "{inside} vs step_s {step}: {r}"
        );
        assert!(r["bound"].is_string(), "{r}");
    }
    assert!(text.contains("## Where the step's time goes"), "{text}");
    assert!(text.contains("The run was **"), "{text}");
    let part = d.join("part");
    run(&d, &part, &["-o", "train.max_iterations=10"]);
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("checkpoints/latest.json")).unwrap())
            .unwrap();
    assert_eq!(st["iteration"], 10);
    run(&d, &part, &["--resume"]);
    assert_same_tensors(
        &full.join("teacher_backbone.safetensors"),
        &part.join("teacher_backbone.safetensors"),
    );
    assert_eq!(
        metrics_without_timings(&full),
        metrics_without_timings(&part)
    );

    // The export loads strictly into the features command (official key names).
    let feats = d.join("f.safetensors");
    dinov2_ok(args![
        "features",
        "--weights",
        full.join("teacher_backbone.safetensors"),
        "--num-heads",
        "4",
        "--input",
        d.join("tree/train"),
        "--out",
        feats,
        "--resize",
        "36",
        "--crop",
        "32"
    ]);
}

/// `student.pretrained_weights` takes one of our training checkpoints as is: the teacher's
/// backbone is used, the student, heads, optimizer state and loss buffers are left out and
/// reported.
#[test]
fn pretraining_starts_from_a_training_checkpoint() {
    let dir = scratch("ssl_train_pretrained");
    small_synth_tree(&dir, 2, 8, 0);
    let first = dir.join("first");
    run(&dir, &first, &["-o", "train.max_iterations=5"]);
    let ckpt = std::fs::read_dir(first.join("checkpoints"))
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .expect("a training checkpoint");

    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_ssl_cpu.yaml");
    let second = dir.join("second");
    let mut a: Vec<std::ffi::OsString> = vec!["train".into(), "-c".into(), config.into()];
    for o in [
        format!("train.dataset_path={}", dir.join("tree").display()),
        format!("train.output_dir={}", second.display()),
        format!("student.pretrained_weights={}", ckpt.display()),
        "train.batch_size_per_gpu=8".into(),
        "train.OFFICIAL_EPOCH_LENGTH=5".into(),
        "train.max_iterations=1".into(),
    ] {
        a.push("-o".into());
        a.push(o.into());
    }
    let out = output(dinov2().args(&a));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for needle in [
        format!("student initialised from {}", ckpt.display()),
        "backbone: 63 tensors under \"teacher.backbone.\"; left out:".into(),
        "student (71 tensors)".into(),
        "teacher.dino_head (8 tensors)".into(),
        "63 of the model's".into(),
    ] {
        assert!(err.contains(&needle), "{needle:?} not in {err}");
    }
}

/// bf16 autocast against fp32 on the CPU, the tiny config (4 blocks of width 64, patch 8,
/// LayerScale 1.0, no stochastic depth, 2x32 px + 2x16 px crops, 256 prototypes, batch 8), the
/// same initial weights and batch. Measured (2026-12-06, 2-core AMD EPYC Zen4), bounds with
/// margin:
/// - the student backbone's forward (no grad) under bf16 autocast vs fp32, relative to the
///   largest fp32 value: CLS 7.0e-3, patch tokens 2.9e-3 (bound `FEATURE_REL` 3e-2); smallest
///   CLS cosine similarity 0.99998 (bound `COSINE` 0.999);
/// - three training steps (forward in bf16, backward, AdamW, EMA in fp32) each way: every
///   logged loss (total, DINO local/global, KoLeo, iBOT) within 0.29 % of fp32's (largest
///   |diff| 1.6e-2 on a total of 7.7; bound `LOSS_REL` 1 % of max(|fp32|, 1));
/// - the teacher backbones after them, both evaluated in fp32: CLS 4.8e-4, patches 2.4e-5
///   (bound `TEACHER_REL` 5e-3), cosine 1.000000.
#[test]
fn bf16_pretraining_steps_stay_close_to_fp32() {
    use model::runtime::{Precision, autocast};
    use tch::{Device, Kind, Tensor};
    use trainer::ssl::config::SslConfig;
    use trainer::ssl::meta_arch::SslMetaArch;
    use trainer::ssl::train::{
        Optim, batch_tensors, build_loader, meta_arch_config, open_train_dataset, schedules,
        train_step,
    };
    const FEATURE_REL: f64 = 3e-2;
    const COSINE: f64 = 0.999;
    const LOSS_REL: f64 = 1e-2;
    const TEACHER_REL: f64 = 5e-3;

    let dir = scratch("ssl_train_bf16_tolerance");
    small_synth_tree(&dir, 2, 8, 0);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_ssl_cpu.yaml");
    let load = |p: &str| -> SslConfig {
        trainer::config::load_yaml(
            &config,
            &[
                "student.drop_path_rate=0.0".into(),
                // (1e-5 would leave the blocks' bf16 outputs out of the features)
                "student.layerscale=1.0".into(),
                "train.batch_size_per_gpu=8".into(),
                format!("compute_precision.autocast_dtype={p}"),
                format!("train.dataset_path={}", dir.join("tree").display()),
            ],
        )
        .unwrap()
    };
    let cfg = load("fp32");
    let mut loader =
        build_loader(&cfg, open_train_dataset(&cfg).unwrap(), (0, 1), Device::Cpu).unwrap();
    let mut b = loader.epoch(0, 0).unwrap().next().unwrap().unwrap();
    let sb = batch_tensors(&mut b, 32, 16, 2, Device::Cpu).unwrap();
    drop(loader);
    let sched = schedules(&cfg, 1).unwrap();

    struct Out {
        init_cls: Tensor,
        init_patches: Tensor,
        losses: Vec<[f64; 5]>,
        teacher_cls: Tensor,
        teacher_patches: Tensor,
    }
    let run = |p: Precision| -> Out {
        let c = load(p.name());
        tch::manual_seed(0);
        let mut arch = SslMetaArch::new(meta_arch_config(&c).unwrap(), Device::Cpu).unwrap();
        let mut o = Optim::new(&arch, &c).unwrap();
        assert_eq!((o.precision, o.scaler.is_none()), (p, true));
        let init = tch::no_grad(|| {
            autocast(Device::Cpu, p, || {
                arch.student
                    .backbone
                    .forward_features(&sb.global, None, false)
                    .unwrap()
            })
            .unwrap()
        });
        // The token (residual) stream and the final norm stay fp32 as in the reference; the
        // matrix products run in bf16.
        assert_eq!(init.cls.kind(), Kind::Float);
        let logits = tch::no_grad(|| {
            autocast(Device::Cpu, p, || arch.student.dino_head.forward(&init.cls)).unwrap()
        });
        let want = if p == Precision::Bf16 {
            Kind::BFloat16
        } else {
            Kind::Float
        };
        assert_eq!(logits.kind(), want, "the head ran under autocast");
        let mut losses = Vec::new();
        for i in 0..3 {
            tch::manual_seed(i as i64);
            let v = sched.at(sched.last_layer_frozen_iters + i);
            let mut timer = trainer::step_timer::StepTimer::new(Device::Cpu, 1);
            let single = trainer::dist::Dist::single();
            let out = train_step(&mut arch, &mut o, &sb, &v, &single, &mut timer).unwrap();
            let l = trainer::ssl::meta_arch::LossValues::from_terms(&out.terms).unwrap();
            losses.push([
                l.total,
                l.dino_local_crops_loss,
                l.dino_global_crops_loss,
                l.koleo_loss,
                l.ibot_loss,
            ]);
        }
        for (_, t) in arch.student_vs.variables() {
            assert_eq!(t.kind(), Kind::Float, "master weights stay fp32");
        }
        let t = tch::no_grad(|| {
            arch.teacher
                .backbone
                .forward_features(&sb.global, None, false)
                .unwrap()
        });
        Out {
            init_cls: init.cls.to_kind(Kind::Float),
            init_patches: init.patches.to_kind(Kind::Float),
            losses,
            teacher_cls: t.cls,
            teacher_patches: t.patches,
        }
    };
    let (f, h) = (run(Precision::Fp32), run(Precision::Bf16));
    let rel = |a: &Tensor, b: &Tensor| {
        (a - b).abs().max().double_value(&[]) / a.abs().max().double_value(&[])
    };
    let cos = |a: &Tensor, b: &Tensor| {
        Tensor::cosine_similarity(a, b, -1, 1e-8)
            .min()
            .double_value(&[])
    };
    let (rc, rp, cc) = (
        rel(&f.init_cls, &h.init_cls),
        rel(&f.init_patches, &h.init_patches),
        cos(&f.init_cls, &h.init_cls),
    );
    let dl = f
        .losses
        .iter()
        .zip(&h.losses)
        .flat_map(|(a, b)| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
        })
        .fold(0f64, f64::max);
    let (tc, tp, tcc) = (
        rel(&f.teacher_cls, &h.teacher_cls),
        rel(&f.teacher_patches, &h.teacher_patches),
        cos(&f.teacher_cls, &h.teacher_cls),
    );
    eprintln!(
        "bf16 vs fp32: forward CLS rel {rc:.2e}, patches rel {rp:.2e}, CLS cosine min {cc:.6}; \
         losses max relative |diff| {dl:.2e} (fp32 {:?}, bf16 {:?}); teacher after 3 steps: CLS rel \
         {tc:.2e}, patches rel {tp:.2e}, CLS cosine min {tcc:.6}",
        f.losses, h.losses
    );
    assert!(rc <= FEATURE_REL && rp <= FEATURE_REL, "{rc} {rp}");
    assert!(cc >= COSINE && tcc >= COSINE, "{cc} {tcc}");
    assert!(dl <= LOSS_REL, "{dl}");
    assert!(tc <= TEACHER_REL && tp <= TEACHER_REL, "{tc} {tp}");
    for l in h.losses.iter().flatten() {
        assert!(l.is_finite());
    }
}

/// bf16 end to end through the CLI on the CPU: a bf16 pretraining run, then a bf16 linear
/// probe (`FP16.dtype: bfloat16`) of its teacher backbone; both say their precision.
#[test]
fn bf16_pretraining_then_bf16_probe_through_the_cli() {
    let dir = scratch("ssl_train_bf16_cli");
    small_synth_tree(&dir, 5, 4, 2);
    let pre = dir.join("pre");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_ssl_cpu.yaml");
    let out = output(dinov2().args(args![
        "train",
        "-c",
        config,
        "-o",
        format!("train.dataset_path={}", dir.join("tree").display()),
        "-o",
        format!("train.output_dir={}", pre.display()),
        "-o",
        "train.batch_size_per_gpu=8",
        "-o",
        "train.max_iterations=4",
        "-o",
        "train.log_every=2",
        "-o",
        "compute_precision.autocast_dtype=bf16"
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(", bf16 autocast"), "{err}");
    let m = trainer::metrics::read_metrics(&pre.join("metrics.jsonl")).unwrap();
    assert!(!m.is_empty());
    for r in &m {
        assert_eq!(r["precision"], "bf16", "{r}");
        assert!(r["total_loss"].as_f64().unwrap().is_finite(), "{r}");
        assert!(r["loss_scale"].is_null(), "no loss scaler with bf16: {r}");
    }
    let resolved = std::fs::read_to_string(pre.join("config.yaml")).unwrap();
    assert!(resolved.contains("autocast_dtype: bf16"), "{resolved}");

    let probe = dir.join("probe");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_lp_cpu.yaml");
    let tree = dir.join("tree");
    let mut a: Vec<std::ffi::OsString> = vec!["train".into(), "-c".into(), config.into()];
    for o in [
        format!("DataLoader.Train.dataset.root={}", tree.display()),
        format!("DataLoader.Eval.dataset.root={}", tree.display()),
        format!("Global.output_dir={}", probe.display()),
        format!(
            "Global.pretrained_model={}",
            pre.join("teacher_backbone.safetensors").display()
        ),
        "Global.epochs=1".into(),
        "Model.class_num=5".into(),
        "Model.backbone.embed_dim=64".into(),
        "Model.backbone.depth=4".into(),
        "Model.backbone.num_heads=4".into(),
        "Model.backbone.patch_size=8".into(),
        "Model.backbone.img_size=32".into(),
        "DataLoader.Train.dataset.transform.0.RandomResizedCrop.size=32".into(),
        "DataLoader.Eval.dataset.transform.0.Resize.size=36".into(),
        "DataLoader.Eval.dataset.transform.1.CenterCrop.size=32".into(),
        "DataLoader.Train.sampler.batch_size=8".into(),
        "FP16.level=O1".into(),
        "FP16.dtype=bfloat16".into(),
    ] {
        a.push("-o".into());
        a.push(o.into());
    }
    let out = output(dinov2().args(&a));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("bf16 autocast"), "{err}");
    let run_dir = probe.join("dinov2_custom_linearprobe");
    let m = trainer::metrics::read_metrics(&run_dir.join("metrics.jsonl")).unwrap();
    let train: Vec<_> = m.iter().filter(|r| r["kind"] == "train").collect();
    assert!(!train.is_empty(), "{m:?}");
    for r in train {
        assert_eq!(r["precision"], "bf16", "{r}");
        assert!(r["loss"].as_f64().unwrap().is_finite(), "{r}");
    }
    assert!(run_dir.join("linear_head.safetensors").is_file());
}

/// Precision keys: unknown values name the key; fp16 on the CPU is refused.
#[test]
fn precision_config_mistakes_name_the_key() {
    let dir = scratch("ssl_train_precision_errors");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_ssl_cpu.yaml");
    let out = output(dinov2().args(args![
        "train",
        "-c",
        config,
        "-o",
        format!("train.output_dir={}", dir.join("a").display()),
        "-o",
        "compute_precision.autocast_dtype=bf17"
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("compute_precision.autocast_dtype")
            && err.contains("bf17"),
        "{err}"
    );
    let lp = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_lp_cpu.yaml");
    let out = output(dinov2().args(args!["train", "-c", lp, "-o", "FP16.dtype=bfloat8"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("FP16.dtype") && err.contains("bfloat8"),
        "{err}"
    );
}

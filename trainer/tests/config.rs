//! The config system: the shipped YAMLs, overrides, strict errors that name the key, semantic
//! validation and the resolved `config.yaml` round trip.

use pipeline::transforms::Interpolation;
use std::path::{Path, PathBuf};
use trainer::config::*;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

const SEEDS: [&str; 4] = ["small", "base", "large", "gaint2"];

fn seed_path(variant: &str) -> PathBuf {
    configs_dir().join(format!(
        "dinov2_vit_{variant}_patch14_224_lp_in1k_1n8c_dp_fp16o1.yaml"
    ))
}

fn small() -> PathBuf {
    seed_path("small")
}

fn load(path: &Path, overrides: &[&str]) -> anyhow::Result<Config> {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Config::load(path, &o)
}

fn err(path: &Path, overrides: &[&str]) -> String {
    match load(path, overrides) {
        Ok(_) => panic!(
            "{} with {overrides:?} loaded, expected an error",
            path.display()
        ),
        Err(e) => format!("{e:#}"),
    }
}

/// A scratch directory of this test process.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dinov2-config-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The ViT-S YAML with `from` replaced by `to`, written to a scratch file.
fn edited(name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(small()).unwrap();
    assert!(text.contains(from), "{from:?} not in the seed config");
    let p = scratch("edited").join(format!("{name}.yaml"));
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    p
}

/// `:LINE:` of the first line of `path` containing `needle` (as errors print it).
fn line_of(path: &Path, needle: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let i = text.lines().position(|l| l.contains(needle)).unwrap();
    format!(":{}:", i + 1)
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{p:?} missing from the error:\n{msg}");
    }
}

#[test]
fn every_shipped_config_loads_and_validates() {
    let (mut n, mut n_ssl) = (0, 0);
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let doc: serde_norway::Value =
            serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if trainer::ssl::config::SslConfig::looks_like(&doc) {
            // A pretraining config: dinov2's keys, strictly; its schedules build.
            let c: trainer::ssl::config::SslConfig =
                trainer::config::load_yaml(&path, &[]).unwrap_or_else(|e| panic!("{e:#}"));
            trainer::ssl::train::meta_arch_config(&c)
                .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            trainer::ssl::train::schedules(&c, 1).unwrap();
            n_ssl += 1;
            continue;
        }
        let c = Config::open(&path, &[]).unwrap_or_else(|e| panic!("{e:#}"));
        c.train_transform().unwrap();
        c.eval_transform().unwrap();
        n += 1;
    }
    assert!(
        n >= 5,
        "expected the 4 seed configs and tiny_lp_cpu.yaml, found {n}"
    );
    assert!(
        n_ssl >= 3,
        "expected the pretraining configs, found {n_ssl}"
    );
}

#[test]
fn vit_small_has_passl_hyper_parameters() {
    let c = load(&small(), &[]).unwrap();
    let g = &c.global;
    assert_eq!(g.epochs, 10);
    assert_eq!(g.seed, Some(2023));
    assert_eq!(g.print_batch_step, 100);
    assert_eq!(g.device, DeviceKind::Gpu);
    assert_eq!(g.eval_unit, Unit::Epoch);
    assert!(g.eval_during_train && !g.use_visualdl);
    assert_eq!(g.checkpoint, None);
    assert_eq!(g.max_train_step, None);
    assert_eq!(
        g.pretrained_model.as_deref(),
        Some(Path::new("./pretrained/dinov2/dinov2_vits14_pretrain"))
    );
    assert_eq!(c.amp_level(), AmpLevel::O1);
    // PASSL's GradScaler defaults.
    let s = &c.fp16.as_ref().unwrap().grad_scaler;
    assert_eq!(
        (s.init_loss_scaling, s.incr_ratio, s.decr_ratio),
        (1024.0, 2.0, 0.5)
    );
    assert_eq!((s.incr_every_n_steps, s.decr_every_n_nan_or_inf), (1000, 2));
    assert!(s.use_dynamic_loss_scaling);
    assert_eq!(c.backbone_arch(), Some("vit_small"));
    assert_eq!(c.model.backbone.ffn_layer, None);
    assert_eq!(c.model.class_num, 1000);
    let l = &c.lr_scheduler;
    assert_eq!(l.name, SchedulerName::TimmCosine);
    assert_eq!(
        (l.learning_rate, l.eta_min, l.warmup_start_lr),
        (0.01, 0.0, 0.0)
    );
    assert_eq!(
        (l.decay_unit, l.last_epoch, l.warmup_epoch),
        (Unit::Epoch, 0, 0)
    );
    assert_eq!(c.optimizer.name, OptimizerName::Momentum);
    assert_eq!((c.optimizer.momentum, c.optimizer.weight_decay), (0.9, 0.0));
    assert_eq!(c.loss.train, vec![LossTerm::CELoss(CeLoss { weight: 1.0 })]);
    let t = &c.data_loader.train;
    assert_eq!(t.sampler.batch_size, 16);
    assert!(t.sampler.shuffle && !t.sampler.drop_last);
    assert_eq!(t.loader.num_workers, 8);
    assert_eq!(c.data_loader.eval.sampler.batch_size, 32);
    assert_eq!((c.train_split(), c.eval_split()), ("train", "val"));
    assert_eq!(
        c.train_transform().unwrap(),
        TrainTransform {
            size: 224,
            scale: (0.08, 1.0),
            ratio: (0.75, 4.0 / 3.0),
            interpolation: Interpolation::Bilinear,
            flip_p: 0.5,
        }
    );
    assert_eq!(
        c.eval_transform().unwrap(),
        EvalTransform {
            resize: 256,
            crop: 224,
            interpolation: Interpolation::Bicubic,
        }
    );
    assert_eq!(c.topk(), vec![1, 5]);
    let e = c.export.as_ref().unwrap();
    assert_eq!(e.input_shape, vec![None, Some(3), Some(224), Some(224)]);
    // Our sections take their defaults.
    assert_eq!(c.linear_eval, LinearEval::default());
    assert_eq!(c.linear_eval.protocol, ProbeProtocol::Passl);
    assert_eq!(c.linear_eval.learning_rates.len(), 13);
    assert_eq!(c.knn, Knn::default());
    assert!(!c.knn.enabled);
}

#[test]
fn seed_configs_differ_only_in_model_fields() {
    let s = load(&small(), &[]).unwrap();
    let archs = ["vit_small", "vit_base", "vit_large", "vit_giant2"];
    let weights = ["vits14", "vitb14", "vitl14", "vitg14"];
    let kinds = [
        BackboneType::Small,
        BackboneType::Base,
        BackboneType::Large,
        BackboneType::Giant2,
    ];
    for (i, v) in SEEDS.iter().enumerate() {
        let c = load(&seed_path(v), &[]).unwrap();
        assert_eq!(c.backbone_arch(), Some(archs[i]));
        let mut expected = s.clone();
        expected.model.name = format!("dinov2_vit_{v}_linearprobe");
        expected.model.backbone.kind = kinds[i];
        expected.global.pretrained_model = Some(PathBuf::from(format!(
            "./pretrained/dinov2/dinov2_{}_pretrain",
            weights[i]
        )));
        if *v == "gaint2" {
            expected.model.backbone.ffn_layer = Some(model::FfnLayer::SwiGlu);
        }
        assert_eq!(
            c, expected,
            "{v} differs from vit_small beyond the model fields"
        );
    }
}

#[test]
fn tiny_cpu_config() {
    let c = Config::open(&configs_dir().join("tiny_lp_cpu.yaml"), &[]).unwrap();
    assert_eq!(c.global.device, DeviceKind::Cpu);
    assert_eq!(c.amp_level(), AmpLevel::O0);
    assert_eq!(c.global.epochs, 3);
    assert_eq!(c.global.pretrained_model, None);
    assert_eq!(c.backbone_arch(), None);
    let b = &c.model.backbone;
    assert_eq!(b.kind, BackboneType::Custom);
    assert_eq!(
        (b.embed_dim, b.depth, b.num_heads),
        (Some(48), Some(2), Some(3))
    );
    assert_eq!(b.img_size, Some(56));
    assert_eq!(c.model.class_num, 10);
    assert_eq!(c.train_transform().unwrap().size, 56);
    assert_eq!(c.eval_transform().unwrap().resize, 64);
    assert_eq!(c.data_loader.train.sampler.batch_size, 32);
    assert_eq!(c.data_loader.eval.sampler.batch_size, 64);
    assert_eq!(c.lr_scheduler.learning_rate, 0.1);
    assert_eq!(c.global.output_dir, PathBuf::from("./runs/tiny_lp"));
}

#[test]
fn overrides_scalar_nested_list_bool_null_string() {
    let c = load(
        &small(),
        &[
            "Global.epochs=3",
            "Global.max_train_step=201",
            "Global.print_batch_step=20",
            "Global.flags.FLAGS_cudnn_deterministic=1",
            "Global.use_visualdl=true",
            "Global.eval_during_train=False",
            "Global.pretrained_model=null",
            "Global.output_dir=./runs/x y",
            "LRScheduler.learning_rate=1e-3",
            "FP16.GradScaler.init_loss_scaling=128",
            "DataLoader.Train.dataset.transform.0.RandomResizedCrop.size=112",
            "DataLoader.Train.dataset.transform.0.RandomResizedCrop.interpolation=bicubic",
            "DataLoader.Train.dataset.transform.1.RandomHorizontalFlip.p=0.25",
            "DataLoader.Eval.dataset.split=validation",
            "Metric.Eval.0.TopkAcc.topk=[1]",
            "LinearEval.protocol=dinov2",
            "LinearEval.n_last_blocks_list=[1, 4]",
            "LinearEval.avgpool_list=[true]",
            "KNN.enabled=true",
        ],
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.global.epochs, 3);
    assert_eq!(c.global.max_train_step, Some(201));
    assert_eq!(c.global.print_batch_step, 20);
    assert_eq!(
        c.global.flags.get("FLAGS_cudnn_deterministic"),
        Some(&serde_norway::Value::from(1))
    );
    assert!(c.global.use_visualdl);
    assert!(!c.global.eval_during_train);
    assert_eq!(c.global.pretrained_model, None);
    assert_eq!(c.global.output_dir, PathBuf::from("./runs/x y"));
    assert_eq!(c.lr_scheduler.learning_rate, 1e-3);
    let s = &c.fp16.as_ref().unwrap().grad_scaler;
    assert_eq!(s.init_loss_scaling, 128.0);
    assert_eq!(
        s.incr_every_n_steps, 1000,
        "the other GradScaler keys keep their defaults"
    );
    let t = c.train_transform().unwrap();
    assert_eq!(
        (t.size, t.interpolation, t.flip_p),
        (112, Interpolation::Bicubic, 0.25)
    );
    assert_eq!(c.eval_split(), "validation");
    assert_eq!(c.topk(), vec![1]);
    assert_eq!(c.linear_eval.protocol, ProbeProtocol::Dinov2);
    assert_eq!(c.linear_eval.n_last_blocks_list, vec![1, 4]);
    assert_eq!(c.linear_eval.avgpool_list, vec![true]);
    assert_eq!(
        c.linear_eval.lr_scaling_batch, 256,
        "untouched keys keep their defaults"
    );
    assert!(c.knn.enabled);
    assert_eq!(c.knn.nb_knn, vec![10, 20, 100, 200]);
    // The rest is the file's.
    assert_eq!(c.data_loader.train.sampler.batch_size, 16);
}

#[test]
fn override_python_none_and_later_wins() {
    let c = load(
        &small(),
        &[
            "Global.pretrained_model=None",
            "Global.epochs=4",
            "Global.epochs=5",
        ],
    )
    .unwrap();
    assert_eq!(c.global.pretrained_model, None);
    assert_eq!(c.global.epochs, 5);
    let c = load(&small(), &["Export.input_shape=[None, 3, 112, 112]"]).unwrap();
    assert_eq!(
        c.export.unwrap().input_shape,
        vec![None, Some(3), Some(112), Some(112)]
    );
    let c = load(&small(), &["FP16=null"]).unwrap();
    assert_eq!(c.fp16, None);
    assert_eq!(c.amp_level(), AmpLevel::O0);
    let c = load(&small(), &["Optimizer.name=SGD"]).unwrap();
    assert_eq!(c.optimizer.name, OptimizerName::Momentum);
    let c = load(
        &small(),
        &[
            "Model.backbone.type=dinov2_vit_giant2",
            "Model.name=dinov2_vit_giant2_linearprobe",
        ],
    )
    .unwrap();
    c.validate().unwrap();
    assert_eq!(c.backbone_arch(), Some("vit_giant2"));
}

#[test]
fn unknown_key_in_yaml_names_file_path_and_line() {
    let p = edited("typo", "  momentum: 0.9", "  momentumm: 0.9");
    let e = err(&p, &[]);
    assert_has(
        &e,
        &[
            &p.display().to_string(),
            &line_of(&p, "momentumm"),
            "Optimizer.momentumm",
            "unknown key",
            "`momentum`",
        ],
    );
    // An unknown section, and an unknown operator argument inside a list element.
    let p = edited("section", "Global:", "Globl:");
    assert_has(&err(&p, &[]), &["Globl", "unknown key"]);
    let p = edited(
        "arg",
        "size: 224\n",
        "size: 224\n            scal: [0.1, 1.0]\n",
    );
    assert_has(
        &err(&p, &[]),
        &[
            "DataLoader.Train.dataset.transform.0.RandomResizedCrop.scal",
            "unknown key",
        ],
    );
    let p = edited("op", "- RandomHorizontalFlip:", "- RandomVerticalFlip:");
    assert_has(
        &err(&p, &[]),
        &[
            "DataLoader.Train.dataset.transform.1",
            "unknown variant `RandomVerticalFlip`",
        ],
    );
    let p = edited("missing", "  epochs: 10\n", "");
    assert_has(&err(&p, &[]), &["Global.epochs", "missing"]);
    let p = edited("level", "level: O1", "level: O3");
    assert_has(&err(&p, &[]), &["FP16.level", "unknown variant `O3`", "O0"]);
}

#[test]
fn unknown_key_in_override_is_an_error() {
    let e = err(&small(), &["Optimizer.momentumm=0.5"]);
    assert_has(
        &e,
        &[
            "Optimizer.momentumm",
            "unknown key",
            "-o Optimizer.momentumm=0.5",
        ],
    );
    let e = err(&small(), &["Global.flag.FLAGS_x=1"]);
    assert_has(&e, &["Global.flag", "unknown key"]);
    let e = err(
        &small(),
        &["DataLoader.Train.dataset.transform.0.RandomResizedCrop.sise=1"],
    );
    assert_has(
        &e,
        &["DataLoader.Train.dataset.transform.0.RandomResizedCrop.sise"],
    );
    let e = err(&small(), &["NewSection.x=1"]);
    assert_has(&e, &["NewSection", "unknown key"]);
}

#[test]
fn wrong_type_names_path_and_expected_type() {
    let e = err(&small(), &["Global.epochs=ten"]);
    assert_has(
        &e,
        &[
            "Global.epochs",
            "\"ten\"",
            "expected a non-negative integer",
        ],
    );
    let e = err(&small(), &["LRScheduler.learning_rate=fast"]);
    assert_has(&e, &["LRScheduler.learning_rate", "expected a number"]);
    let e = err(&small(), &["Global.eval_during_train=maybe"]);
    assert_has(&e, &["Global.eval_during_train", "boolean"]);
    let e = err(&small(), &["DataLoader.Train.sampler.batch_size=-1"]);
    assert_has(&e, &["DataLoader.Train.sampler.batch_size", "-1"]);
    let e = err(&small(), &["Metric.Eval.0.TopkAcc.topk=[1, x]"]);
    assert_has(&e, &["Metric.Eval.0.TopkAcc.topk.1"]);
    // In the file itself: reported with its line.
    let p = edited("type", "  epochs: 10", "  epochs: ten");
    let e = err(&p, &[]);
    let line = line_of(&p, "epochs: ten");
    assert_has(
        &e,
        &["Global.epochs", "expected a non-negative integer", &line],
    );
    // A file error is still located when unrelated overrides are given.
    let e = err(&p, &["Global.seed=1"]);
    assert_has(&e, &["Global.epochs", &line]);
}

#[test]
fn malformed_overrides() {
    assert_has(&err(&small(), &["Global.epochs"]), &["exactly one `=`"]);
    assert_has(&err(&small(), &["Global.epochs=1=2"]), &["exactly one `=`"]);
    assert_has(&err(&small(), &["=1"]), &["empty"]);
    assert_has(&err(&small(), &["Global..epochs=1"]), &["empty element"]);
    assert_has(&err(&small(), &["Global.epochs="]), &["empty"]);
    assert_has(
        &err(&small(), &["Metric.Eval.0.TopkAcc.topk=[1, 5"]),
        &["not valid YAML"],
    );
    assert_has(
        &err(
            &small(),
            &["DataLoader.Train.dataset.transform.9.Resize.size=1"],
        ),
        &[
            "index 9 is out of range",
            "DataLoader.Train.dataset.transform",
            "4 element",
        ],
    );
    assert_has(
        &err(
            &small(),
            &["DataLoader.Train.dataset.transform.first.size=1"],
        ),
        &["is a list", "`first` must be an index"],
    );
    assert_has(
        &err(&small(), &["Global.epochs.x=1"]),
        &["`Global.epochs` is a number (10)", "no `x`"],
    );
}

#[test]
fn validation_names_the_key() {
    let bad = |o: &[&str]| -> String {
        let c = load(&small(), o).unwrap();
        format!("{:#}", c.validate().unwrap_err())
    };
    assert_has(
        &bad(&["Global.epochs=0"]),
        &["Global.epochs: must be positive"],
    );
    assert_has(
        &bad(&["DataLoader.Eval.sampler.batch_size=0"]),
        &["DataLoader.Eval.sampler.batch_size"],
    );
    assert_has(
        &bad(&["LRScheduler.learning_rate=0"]),
        &["LRScheduler.learning_rate"],
    );
    assert_has(&bad(&["Model.class_num=0"]), &["Model.class_num"]);
    assert_has(
        &bad(&["Model.name=dinov2_vit_base_linearprobe"]),
        &["Model.name", "dinov2_vit_small"],
    );
    // Several problems are reported together.
    let e = bad(&["Global.epochs=0", "Model.class_num=-3"]);
    assert_has(&e, &["Global.epochs", "Model.class_num"]);
    // Transform pipelines: order, extra operators, normalisation, interpolation.
    assert_has(
        &bad(&["DataLoader.Train.dataset.transform.1={ToTensor: null}"]),
        &[
            "DataLoader.Train.dataset.transform.1",
            "expected RandomHorizontalFlip, found ToTensor",
        ],
    );
    assert_has(
        &bad(&["DataLoader.Train.dataset.transform.3={CenterCrop: {size: 3}}"]),
        &[
            "DataLoader.Train.dataset.transform.3",
            "unexpected CenterCrop",
        ],
    );
    assert_has(
        &bad(&["DataLoader.Eval.dataset.transform.3.Normalize.mean=[0.5, 0.5, 0.5]"]),
        &["DataLoader.Eval.dataset.transform.3.Normalize", "ImageNet"],
    );
    assert_has(
        &bad(&["DataLoader.Eval.dataset.transform.0.Resize.interpolation=bilinear"]),
        &[
            "DataLoader.Eval.dataset.transform.0.Resize.interpolation",
            "bicubic",
        ],
    );
    assert_has(
        &bad(&["DataLoader.Eval.dataset.transform=[]"]),
        &["DataLoader.Eval.dataset.transform.0", "missing Resize"],
    );
    assert_has(
        &bad(&["DataLoader.Train.dataset.transform.0.RandomResizedCrop.scale=[0.9, 0.1]"]),
        &["RandomResizedCrop.scale"],
    );
    assert_has(
        &bad(&["Metric.Eval.0.TopkAcc.topk=[1, 5000]"]),
        &["Metric.Eval.0.TopkAcc.topk"],
    );
    assert_has(
        &bad(&["Model.backbone.n_last_blocks=4"]),
        &["n_last_blocks must be 1"],
    );
    assert_has(
        &bad(&["Model.backbone.embed_dim=48"]),
        &["Model.backbone.embed_dim: only for type custom"],
    );
    assert_has(
        &bad(&["LRScheduler.name=CosineAnnealing"]),
        &["LRScheduler.decay_unit", "step"],
    );
    assert_has(&bad(&["Global.accum_steps=2"]), &["Global.accum_steps"]);
    assert_has(
        &bad(&["KNN.enabled=true", "KNN.temperature=0"]),
        &["KNN.temperature"],
    );
    // A custom backbone needs its size.
    let e = {
        let c = load(
            &configs_dir().join("tiny_lp_cpu.yaml"),
            &["Model.backbone.depth=null"],
        )
        .unwrap();
        format!("{:#}", c.validate().unwrap_err())
    };
    assert_has(&e, &["custom needs embed_dim, depth and num_heads"]);
    // `open` puts the file name on validation errors.
    let e = format!(
        "{:#}",
        Config::open(&small(), &["Global.epochs=0".to_string()]).unwrap_err()
    );
    assert_has(&e, &["dinov2_vit_small_patch14", "Global.epochs"]);
}

#[test]
fn write_resolved_round_trips() {
    let dir = scratch("resolved");
    let mut paths: Vec<PathBuf> = SEEDS.iter().map(|v| seed_path(v)).collect();
    paths.push(configs_dir().join("tiny_lp_cpu.yaml"));
    for p in &paths {
        let c = load(p, &[]).unwrap();
        let out = c.write_resolved(&dir).unwrap();
        assert_eq!(out, dir.join("config.yaml"));
        let back = load(&out, &[]).unwrap();
        assert_eq!(back, c, "{} does not round-trip", p.display());
        back.validate().unwrap();
    }
    // With overrides and our own sections changed, defaults written out explicitly.
    let c = load(
        &small(),
        &[
            "LinearEval.protocol=dinov2",
            "KNN.enabled=true",
            "Global.flags.FLAGS_cudnn_deterministic=1",
            "Global.max_train_step=201",
            "DataLoader.Train.dataset.transform.1.RandomHorizontalFlip.prob=0.3",
        ],
    )
    .unwrap();
    let out = c.write_resolved(&dir).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_has(
        &text,
        &[
            "eta_min:",
            "GradScaler:",
            "learning_rates:",
            "RandomHorizontalFlip:",
            "p: 0.3",
            "- ToTensor: null",
        ],
    );
    assert_eq!(load(&out, &[]).unwrap(), c);
    // Nothing but config.yaml is left behind.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["config.yaml".to_string()]);
    std::fs::remove_dir_all(&dir).unwrap();
}

//! Two full DINOv2 training iterations on a small ViT against the reference PyTorch code
//! (dinov2's SSLMetaArch.forward_backward, param groups, AdamW, per-submodule clipping,
//! teacher EMA; see tests/reference/ssl_step_reference.py): same initial student, same
//! multi-crop batch and iBOT masks (from our loader), same schedule values -> the same losses,
//! student and teacher parameters and DINO/iBOT centres.

mod common;
use common::*;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Tensor};
use trainer::ssl::config::SslConfig;
use trainer::ssl::meta_arch::SslMetaArch;
use trainer::ssl::schedules::SslScheduleValues;
use trainer::ssl::train::{Optim, batch_tensors, meta_arch_config, train_step};

#[test]
fn two_training_iterations_match_the_reference() {
    let dir = scratch("ssl_step_parity");
    small_synth_tree(&dir, 2, 8, 0);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny_ssl_cpu.yaml");
    let cfg: SslConfig = trainer::config::load_yaml(
        &config,
        &[
            "student.depth=2".into(),
            "student.drop_path_rate=0.0".into(),
            "student.layerscale=0.1".into(),
            "train.batch_size_per_gpu=6".into(),
            format!("train.dataset_path={}", dir.join("tree").display()),
        ],
    )
    .unwrap();
    let mac = meta_arch_config(&cfg).unwrap();
    tch::manual_seed(0);
    let mut arch = SslMetaArch::new(mac.clone(), Device::Cpu).unwrap();

    // One real batch from the pretraining loader.
    let ds: std::sync::Arc<dyn pipeline::Dataset> =
        std::sync::Arc::from(pipeline::dataset::open_dataset(&dir.join("tree"), "train").unwrap());
    let preset = pipeline::presets::Preset::Dinov2(pipeline::presets::MultiCrop {
        global_size: 32,
        local_size: 16,
        local_crops: 2,
        ..Default::default()
    });
    let mut loader = pipeline::loader::Loader::new(
        ds,
        pipeline::loader::LoaderConfig {
            preset: preset.clone(),
            batch_size: 6,
            workers: 1,
            seed: 0,
            sampler: pipeline::sampler::SamplerKind::Infinite,
            rank: 0,
            world: 1,
            masks: Some(pipeline::loader::MaskConfig {
                patch_size: 8,
                ..Default::default()
            }),
            keep_partial_batch: false,
            bad_records: pipeline::bad_records::BadRecords::FAIL,
        },
        vec![Box::new(pipeline::loader::VecStorage::for_preset(
            &preset, 6,
        ))],
    )
    .unwrap();
    let mut b = loader.epoch(0, 0).unwrap().next().unwrap().unwrap();
    let upperbound = b.masks.as_ref().unwrap().upperbound;
    let sb = batch_tensors(&mut b, 32, 16, 2, Device::Cpu).unwrap();
    assert!(
        sb.mask_indices.size()[0] > 0,
        "no masked patches in the batch"
    );
    Tensor::write_safetensors(
        &[
            ("global", &sb.global.contiguous()),
            ("local", &sb.local.contiguous()),
            ("masks", &sb.masks),
            ("mask_indices", &sb.mask_indices),
            ("masks_weight", &sb.masks_weight),
            ("upperbound", &Tensor::from(upperbound as i64)),
        ],
        dir.join("batch.safetensors"),
    )
    .unwrap();
    model::weights::save_safetensors(
        &model::weights::state_dict(&arch.student_vs, ""),
        &dir.join("student.safetensors"),
    )
    .unwrap();
    let steps = [
        SslScheduleValues {
            lr: 1e-3,
            wd: 0.04,
            momentum: 0.9,
            teacher_temp: 0.04,
            last_layer_lr: 0.0,
        },
        SslScheduleValues {
            lr: 2e-3,
            wd: 0.05,
            momentum: 0.8,
            teacher_temp: 0.05,
            last_layer_lr: 2e-3,
        },
    ];
    let s = &mac.student;
    std::fs::write(
        dir.join("config.json"),
        serde_json::json!({
            "img_size": s.img_size, "patch_size": s.patch_size, "embed_dim": s.embed_dim,
            "depth": s.depth, "num_heads": s.num_heads, "layerscale": 0.1,
            "k": mac.dino_head.out_dim, "hidden": mac.dino_head.hidden_dim,
            "bottleneck": mac.dino_head.bottleneck_dim, "local_crops": 2, "centering": "centering",
            "layerwise_decay": cfg.optim.layerwise_decay, "patch_embed_lr_mult": cfg.optim.patch_embed_lr_mult,
            "clip_grad": cfg.optim.clip_grad,
            "steps": steps.iter().map(|v| serde_json::json!({
                "lr": v.lr, "wd": v.wd, "momentum": v.momentum, "teacher_temp": v.teacher_temp,
                "last_layer_lr": v.last_layer_lr,
            })).collect::<Vec<_>>(),
        })
        .to_string(),
    )
    .unwrap();
    run_python_with(
        include_str!("reference/ssl_step_reference.py"),
        &[dir.as_os_str()],
    );
    let r: HashMap<String, Tensor> = Tensor::read_safetensors(dir.join("reference.safetensors"))
        .unwrap()
        .into_iter()
        .collect();

    // Our two iterations.
    let mut o = Optim::new(&arch, &cfg).unwrap();
    assert!(o.scaler.is_none());
    for (i, v) in steps.iter().enumerate() {
        let mut timer = trainer::step_timer::StepTimer::new(tch::Device::Cpu, 1);
        let out = train_step(
            &mut arch,
            &mut o,
            &sb,
            v,
            &trainer::dist::Dist::single(),
            &mut timer,
        )
        .unwrap();
        let values = trainer::ssl::meta_arch::LossValues::from_terms(&out.terms).unwrap();
        for (k, ours) in [
            ("dino_local_crops_loss", values.dino_local_crops_loss),
            ("dino_global_crops_loss", values.dino_global_crops_loss),
            ("koleo_loss", values.koleo_loss),
            ("ibot_loss", values.ibot_loss),
        ] {
            let want = r[&format!("step{}.{k}", i + 1)].double_value(&[0]);
            eprintln!("step {} {k}: ours {ours:.7} reference {want:.7}", i + 1);
            assert!(
                (ours - want).abs() <= 1e-5 * want.abs().max(1.0),
                "step {} {k}: {ours} vs {want}",
                i + 1
            );
        }
    }
    let mut worst = (0.0f64, String::new());
    let (mut sum, mut n) = (0.0, 0i64);
    for (prefix, vs) in [
        ("student.", &arch.student_vs),
        ("teacher.", &arch.teacher_vs),
    ] {
        for (k, v) in vs.variables() {
            let diff = (&v - &r[&format!("{prefix}{k}")]).abs();
            let d = diff.max().double_value(&[]);
            sum += diff.sum(tch::Kind::Double).double_value(&[]);
            n += diff.numel() as i64;
            if d > worst.0 {
                worst = (d, format!("{prefix}{k}"));
            }
        }
    }
    let mean = sum / n as f64;
    eprintln!("parameters: mean |diff| {mean:.2e} over {n} values");
    let dc = (arch.dino_loss.center() - &r["dino_center"])
        .abs()
        .max()
        .double_value(&[]);
    let ic = (arch.ibot_loss.center() - &r["ibot_center"])
        .abs()
        .max()
        .double_value(&[]);
    eprintln!(
        "parameters: max |diff| {:.2e} ({}); centres: dino {dc:.2e}, ibot {ic:.2e}",
        worst.0, worst.1
    );
    // AdamW's early steps move every parameter by about lr * sign(grad): gradients that are
    // ~0 and differ in the last float bits can move differently, so the bound is a small
    // fraction of the learning rate (2e-3) at the worst element, and the mean is tiny.
    assert!(worst.0 <= 1e-4, "{worst:?}");
    assert!(mean <= 1e-7, "mean {mean}");
    assert!(dc <= 1e-6 && ic <= 1e-6, "{dc} {ic}");
    assert!(
        arch.dino_loss.center().abs().max().double_value(&[]) > 0.0,
        "the centre moved"
    );
}

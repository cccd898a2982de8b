//! PASSL `.pdparams` weights (a real `paddle.save` fixture) give the same features as the
//! PyTorch reference model with the same weights; `dinov2 features` end to end against
//! torchvision's evaluation transform + the reference model; bad weights are clear errors.

mod common;
use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Tensor, nn};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/passl_vit_tiny.pdparams")
}

fn reference(dir: &Path) -> HashMap<String, Tensor> {
    run_python_with(
        include_str!("reference/features_reference.py"),
        &[fixture().as_os_str(), dir.as_os_str()],
    );
    Tensor::read_safetensors(dir.join("reference.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn pdparams_fixture_gives_the_reference_features() {
    let dir = scratch("features_pdparams");
    let r = reference(&dir);
    let st = dir.join("backbone.safetensors");
    dinov2_ok(args![
        "convert",
        "weights",
        fixture(),
        st,
        "--select",
        "backbone"
    ]);
    let tensors = Tensor::read_safetensors(&st).unwrap();
    let shapes = tensors.iter().map(|(k, t)| (k.clone(), t.size())).collect();
    let config = model::VitConfig::infer(&shapes, None).unwrap();
    assert_eq!(
        (
            config.embed_dim,
            config.depth,
            config.num_heads,
            config.img_size
        ),
        (48, 2, 1, 224)
    );
    // 48 wide with 3 heads: the head count is not in the weights, so set it.
    let config = model::VitConfig {
        num_heads: 3,
        ..config
    };
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let vit = model::DinoVisionTransformer::new(vs.root(), &config).unwrap();
    model::weights::load_state_dict(&vs, tensors, true, "fixture").unwrap();
    let _g = tch::no_grad_guard();
    let f = vit.forward_features(&r["input"], None, false).unwrap();
    let (dc, dp) = (
        max_diff(&f.cls, &r["cls"]),
        max_diff(&f.patches, &r["patch"]),
    );
    eprintln!("pdparams features: cls {dc:.2e}, patch {dp:.2e}");
    assert!(dc <= 1e-4 && dp <= 1e-4);
}

#[test]
fn features_command_matches_torchvision_and_the_reference_model() {
    let dir = scratch("features_cli");
    let r = reference(&dir);
    let out = dir.join("feats.safetensors");
    let text = dinov2_ok(args![
        "features",
        "--weights",
        fixture(),
        "--select",
        "backbone",
        "--num-heads",
        "3",
        "--input",
        dir.join("images"),
        "--out",
        out,
        "--patch-tokens",
        "--batch",
        "3",
        "--device",
        "cpu"
    ]);
    assert!(text.contains("4 images"), "{text}");
    let f: HashMap<String, Tensor> = Tensor::read_safetensors(&out)
        .unwrap()
        .into_iter()
        .collect();
    // img3.png is 256x256: the transform only crops it, so it must match to fp32 precision.
    // The others differ by the resampling of the evaluation transform (ours vs PIL's bicubic:
    // mean |diff| <= 0.02, max <= 2 grey levels, tests/transforms_parity.rs).
    for i in 0..4 {
        let (dc, dp) = (
            max_diff(&f["cls"].get(i), &r["eval_cls"].get(i)),
            max_diff(&f["patch"].get(i), &r["eval_patch"].get(i)),
        );
        let mean = (f["patch"].get(i) - r["eval_patch"].get(i))
            .abs()
            .mean(None)
            .double_value(&[]);
        eprintln!("image {i}: cls {dc:.2e}, patch max {dp:.2e} mean {mean:.2e}");
        if i == 3 {
            assert!(dc <= 1e-4 && dp <= 1e-4, "{dc} {dp}");
        } else {
            assert!(dc <= 1e-3 && dp <= 5e-2 && mean <= 2e-3, "{dc} {dp} {mean}");
        }
    }
    let meta = std::fs::read(&out).unwrap();
    let text = String::from_utf8_lossy(&meta[..2000.min(meta.len())]);
    assert!(
        text.contains("img0.jpg") && text.contains("img3.png"),
        "{text}"
    );

    // .npy output: CLS at the path, patches next to it, the file list.
    let npy = dir.join("feats.npy");
    dinov2_ok(args![
        "features",
        "--weights",
        fixture(),
        "--select",
        "backbone",
        "--num-heads",
        "3",
        "--input",
        dir.join("images").join("img1.jpeg"),
        "--out",
        npy,
        "--patch-tokens"
    ]);
    assert_eq!(Tensor::read_npy(&npy).unwrap().size(), [1, 48]);
    assert_eq!(
        Tensor::read_npy(dir.join("feats_patch.npy"))
            .unwrap()
            .size(),
        [1, 256, 48]
    );
    assert!(
        std::fs::read_to_string(dir.join("feats.files.txt"))
            .unwrap()
            .contains("img1.jpeg")
    );
}

#[test]
fn mismatched_or_bad_weights_are_clear_errors() {
    let dir = scratch("features_errors");
    std::fs::write(dir.join("a.jpg"), b"not really").unwrap();
    // The keys taken as they are (--strip-prefix overrides the automatic choice), the probe
    // head left in: strict loading says how much matched, names the unexpected keys and what
    // would help.
    let out = output(dinov2().args(args![
        "features",
        "--weights",
        fixture(),
        "--strip-prefix",
        "nothing.",
        "--num-heads",
        "3",
        "--input",
        dir,
        "--out",
        dir.join("x.safetensors")
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("35 of the model's 35 tensors match")
            && err.contains("2 unexpected")
            && err.contains("linear.weight")
            && err.contains("hint: the unexpected tensors (under linear)")
            && err.contains("--select backbone")
            && !err.contains("0 tensors loaded"),
        "{err}"
    );
    // A tensor the model needs is missing: still an error, with the count and a hint.
    let partial = dir.join("partial.safetensors");
    dinov2_ok(args![
        "convert",
        "weights",
        fixture(),
        dir.join("whole.safetensors"),
        "--backbone"
    ]);
    let tensors: Vec<_> = Tensor::read_safetensors(dir.join("whole.safetensors"))
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k != "norm.bias")
        .collect();
    Tensor::write_safetensors(&tensors, &partial).unwrap();
    let out = output(dinov2().args(args![
        "features",
        "--weights",
        partial,
        "--num-heads",
        "3",
        "--input",
        dir,
        "--out",
        dir.join("x.safetensors")
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("34 of the model's 35 tensors match")
            && err.contains("1 missing")
            && err.contains("norm.bias")
            && err.contains("hint: the file lacks tensors the model needs"),
        "{err}"
    );
    // A released architecture that does not fit the weights.
    let out = output(dinov2().args(args![
        "features",
        "--weights",
        fixture(),
        "--select",
        "backbone",
        "--arch",
        "vit_small",
        "--input",
        dir,
        "--out",
        dir.join("x.safetensors")
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("vit_small is 384 wide"),
        "{err}"
    );
    // A corrupt image names the file; no output is left behind.
    let out = output(dinov2().args(args![
        "features",
        "--weights",
        fixture(),
        "--select",
        "backbone",
        "--num-heads",
        "3",
        "--input",
        dir,
        "--out",
        dir.join("x.safetensors")
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("a.jpg"), "{err}");
    assert!(!dir.join("x.safetensors").exists());
    // Not a checkpoint at all.
    let out = output(dinov2().args(args![
        "features",
        "--weights",
        dir.join("a.jpg"),
        "--input",
        dir,
        "--out",
        dir.join("x.npy")
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("a.jpg") && !err.contains("panicked"),
        "{err}"
    );
}

/// A few JPEGs in `dir/images` (generated, no Python).
fn small_images(dir: &Path) -> PathBuf {
    let spec = converters::synth::SynthSpec {
        classes: 1,
        train_per_class: 3,
        val_per_class: 0,
        mean_width: 90,
        mean_height: 80,
        ..converters::synth::SynthSpec::default()
    };
    converters::synth::generate(&dir.join("images"), &spec).unwrap();
    dir.join("images")
}

/// `dinov2 features --weights W [extra...] --num-heads 3` on `images`: stdout and the CLS
/// features.
fn features_of(weights: &Path, images: &Path, out: &Path, extra: &[&str]) -> (String, Tensor) {
    let mut a: Vec<std::ffi::OsString> = vec!["features".into(), "--weights".into()];
    a.push(weights.into());
    a.extend(extra.iter().map(|s| s.into()));
    for (k, v) in [
        ("--num-heads", std::ffi::OsStr::new("3")),
        ("--input", images.as_os_str()),
        ("--out", out.as_os_str()),
        ("--device", std::ffi::OsStr::new("cpu")),
    ] {
        a.push(k.into());
        a.push(v.into());
    }
    let text = dinov2_ok(&a.iter().map(|s| s.as_os_str()).collect::<Vec<_>>());
    let cls = Tensor::read_safetensors(out)
        .unwrap()
        .into_iter()
        .find(|(k, _)| k == "cls")
        .unwrap()
        .1;
    (text, cls)
}

#[test]
fn pdparams_with_its_head_is_used_as_is() {
    let dir = scratch("features_as_is");
    let images = small_images(&dir);
    let (_, selected) = features_of(
        &fixture(),
        &images,
        &dir.join("selected.safetensors"),
        &["--select", "backbone"],
    );
    let (text, as_is) = features_of(&fixture(), &images, &dir.join("as_is.safetensors"), &[]);
    assert!(
        text.contains("backbone: 35 tensors at the top level; left out: linear (2 tensors)"),
        "{text}"
    );
    assert!(as_is.equal(&selected));
}

/// argv: the fixture's backbone as safetensors (hub names), the checkpoint to write. A
/// dinov2-style training checkpoint: student and teacher backbones (the teacher is the
/// fixture's), a DINO head, optimizer state with settings, the iteration and the args.
const TRAINING_CHECKPOINT: &str = r#"
import argparse, sys, torch
from safetensors.torch import load_file
bb = load_file(sys.argv[1])
model = {}
for k, v in bb.items():
    model["student.backbone." + k] = v + 1
for k, v in bb.items():
    model["teacher.backbone." + k] = v
model["teacher.dino_head.last_layer.weight"] = torch.ones(4, 48)
model["teacher.dino_head.mlp.0.bias"] = torch.ones(4)
torch.save({
    "model": model,
    "optimizer": {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 0.1}]},
    "iteration": 5,
    "args": argparse.Namespace(lr=0.1),
}, sys.argv[2])
"#;

#[test]
fn training_checkpoint_gives_the_teacher_backbone() {
    let dir = scratch("features_training_ckpt");
    let images = small_images(&dir);
    let hub = dir.join("hub.safetensors");
    let text = dinov2_ok(args!["convert", "weights", fixture(), hub, "--backbone"]);
    assert!(
        text.contains("35 tensors") && text.contains("left out: linear (2 tensors)"),
        "{text}"
    );
    let ckpt = dir.join("training.pth");
    run_python_with(TRAINING_CHECKPOINT, &[hub.as_os_str(), ckpt.as_os_str()]);

    // features: the teacher's backbone, the rest reported by group.
    let (_, want) = features_of(&hub, &images, &dir.join("hub_feats.safetensors"), &[]);
    let (text, got) = features_of(&ckpt, &images, &dir.join("ckpt_feats.safetensors"), &[]);
    assert!(
        text.contains(
            "backbone: 35 tensors under \"model.teacher.backbone.\"; left out: model.student \
             (35 tensors), model.teacher.dino_head (2 tensors), optimizer (1 tensor, 1 non-tensor \
             entry), iteration (non-tensor: Int(5)), args (non-tensor: a argparse.Namespace(...) \
             object)"
        ),
        "{text}"
    );
    assert!(got.equal(&want));

    // convert weights: everything by default, with what it found and the non-tensor entries
    // it left out; --backbone writes the teacher's backbone with the hub names.
    let all = dir.join("all.safetensors");
    let text = dinov2_ok(args!["convert", "weights", ckpt, all]);
    for needle in [
        "73 tensors",
        "backbone: 35 tensors under \"model.teacher.backbone.\"",
        "other groups (converted too; --backbone writes the backbone alone): model.student (35 \
         tensors), model.teacher.dino_head (2 tensors), optimizer (1 tensor)",
        "left out, not tensors (3):",
        "optimizer.param_groups: a list (1 items)",
        "iteration: Int(5)",
        "args: a argparse.Namespace(...) object",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    let only = dir.join("only.safetensors");
    let text = dinov2_ok(args!["convert", "weights", ckpt, only, "--backbone"]);
    assert!(
        text.contains("wrote") && text.contains(": 35 tensors"),
        "{text}"
    );
    let (a, b) = (
        read_sorted_safetensors(&hub),
        read_sorted_safetensors(&only),
    );
    assert_eq!(a.len(), b.len());
    for ((ka, ta), (kb, tb)) in a.iter().zip(&b) {
        assert!(ka == kb && ta.equal(tb), "{ka} / {kb}");
    }

    // --select overrides the choice: the keys are loaded as they are, the head is unexpected.
    let out = output(dinov2().args(args![
        "features",
        "--weights",
        ckpt,
        "--select",
        "model.teacher",
        "--strip-prefix",
        "backbone.",
        "--num-heads",
        "3",
        "--input",
        images,
        "--out",
        dir.join("x.safetensors")
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("35 of the model's 35 tensors match")
            && err.contains("dino_head.last_layer.weight")
            && err.contains("hint: the unexpected tensors (under dino_head)"),
        "{err}"
    );
}

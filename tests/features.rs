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
    // The probe head left in: strict loading names the unexpected keys.
    let out = output(dinov2().args(args![
        "features",
        "--weights",
        fixture(),
        "--num-heads",
        "3",
        "--input",
        dir,
        "--out",
        dir.join("x.safetensors")
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unexpected") && err.contains("linear.weight"),
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

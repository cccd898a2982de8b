//! DINOHead against the `dinov2` package; export of our ViT to safetensors with the official
//! key names, loaded strictly by the reference PyTorch code to the same features; the
//! linear-probe input (`create_linear_input`) against the reference function.

mod common;
use common::*;
use model::heads::{DinoHead, DinoHeadConfig, linear_input};
use model::{DinoVisionTransformer, Take, VitConfig};
use std::collections::HashMap;
use tch::{Kind, Tensor, nn};

const SCRIPT: &str = include_str!("reference/heads_export_reference.py");

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn dino_head_matches_reference() {
    let dir = scratch("dino_head");
    run_python_with(SCRIPT, &["head".as_ref(), dir.as_os_str()]);
    let st = dir.join("head.from_pth.safetensors");
    dinov2_ok(args!["convert", "weights", dir.join("head.pth"), st]);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut c = DinoHeadConfig::new(96, 300);
    c.hidden_dim = 128;
    c.bottleneck_dim = 64;
    let head = DinoHead::new(vs.root(), &c);
    let report = model::weights::load_safetensors(&vs, &st).unwrap();
    assert_eq!(report.loaded, 8, "{report:?}");
    let data: HashMap<String, Tensor> = Tensor::read_safetensors(dir.join("head.safetensors"))
        .unwrap()
        .into_iter()
        .collect();
    let _g = tch::no_grad_guard();
    let x = &data["input"];
    let d1 = max_diff(&head.mlp_forward(x), &data["bottleneck"]);
    let d2 = max_diff(&head.forward(x), &data["output"]);
    eprintln!("DINOHead: bottleneck {d1:.2e}, output {d2:.2e}");
    assert!(d1 <= 1e-5 && d2 <= 1e-5, "{d1} {d2}");
}

#[test]
fn exported_backbone_loads_in_pytorch_with_the_same_features() {
    let dir = scratch("export_roundtrip");
    let mut c = VitConfig::arch("vit_small").unwrap();
    c.depth = 4;
    c.embed_dim = 96;
    c.num_heads = 2;
    c.init_values = Some(1e-5);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let vit = DinoVisionTransformer::new(vs.root(), &c).unwrap();
    // Move every parameter away from its initial value so that a wrongly mapped key shows.
    tch::no_grad(|| {
        for (name, mut v) in vs.variables() {
            let noise = Tensor::randn_like(&v) * if name.contains("norm") { 0.1 } else { 0.05 };
            v.copy_(&(&v + noise));
        }
    });
    let exported = dir.join("exported.safetensors");
    model::weights::save_safetensors(&model::weights::state_dict(&vs, ""), &exported).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&serde_json::json!({
            "img_size": c.img_size, "embed_dim": c.embed_dim, "depth": c.depth,
            "num_heads": c.num_heads, "init_values": c.init_values,
        }))
        .unwrap(),
    )
    .unwrap();
    let x = Tensor::randn([3, 3, 224, 182], (Kind::Float, tch::Device::Cpu));
    Tensor::write_safetensors(&[("input", &x)], dir.join("input.safetensors")).unwrap();
    run_python_with(SCRIPT, &["export".as_ref(), dir.as_os_str()]);

    let r: HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("torch_features.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let _g = tch::no_grad_guard();
    let f = vit.forward_features(&x, None, false).unwrap();
    let (dc, dp) = (
        max_diff(&f.cls, &r["cls"]),
        max_diff(&f.patches, &r["patch"]),
    );
    eprintln!("export round trip: cls {dc:.2e}, patch {dp:.2e}");
    assert!(dc <= 1e-4 && dp <= 1e-4);
    let layers = vit
        .get_intermediate_layers(&x, &Take::Last(4), false, true)
        .unwrap();
    for n in [1, 4] {
        for avg in [false, true] {
            let ours = linear_input(&layers, n, avg);
            let d = max_diff(&ours, &r[&format!("linear_input_{n}_{}", avg as u8)]);
            assert!(d <= 1e-4, "linear input n={n} avgpool={avg}: {d}");
        }
    }
    assert_eq!(linear_input(&layers, 4, true).size(), [3, 5 * 96]);
}

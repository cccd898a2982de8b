//! The Python reference side works and agrees with tch: the base every parity test stands on.

mod common;
use common::*;
use model::runtime::EXPECTED_TORCH_VERSION;
use tch::{Kind, Tensor};

#[test]
fn tch_and_python_torch_are_the_same_libtorch_and_draw_the_same_numbers() {
    let py = run_python(
        "import json, torch\n\
         torch.manual_seed(1234)\n\
         x = torch.randn(4, 5)\n\
         y = (x @ x.T).softmax(-1)\n\
         print(json.dumps({'version': torch.__version__, 'x': x.flatten().tolist(), 'y': y.flatten().tolist()}))",
    );
    let py: serde_json::Value = serde_json::from_str(py.trim()).unwrap();
    let version = py["version"].as_str().unwrap();
    assert!(
        version.starts_with(&format!("{EXPECTED_TORCH_VERSION}+"))
            || version == EXPECTED_TORCH_VERSION,
        "the venv's torch {version} is not the libtorch this build links ({EXPECTED_TORCH_VERSION})"
    );

    tch::manual_seed(1234);
    let x = Tensor::randn([4, 5], (Kind::Float, tch::Device::Cpu));
    let y = x.matmul(&x.tr()).softmax(-1, Kind::Float);
    let ours = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
    let theirs = |k: &str| -> Vec<f32> {
        py[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect()
    };
    assert_eq!(
        ours(&x),
        theirs("x"),
        "same seed, same generator, same numbers"
    );
    for (a, b) in ours(&y).iter().zip(theirs("y")) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }
}

#[test]
fn reference_packages_are_importable() {
    let out = run_python(
        "import torchvision, timm, numpy, lmdb, pyarrow, safetensors\n\
         print(torchvision.__version__, timm.__version__)",
    );
    // torchvision 0.N pairs with torch 2.(N-15): 0.26 with 2.11, 0.28 with 2.13.
    let minor: u32 = EXPECTED_TORCH_VERSION
        .split('.')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(out.starts_with(&format!("0.{}.", minor + 15)), "{out}");
}

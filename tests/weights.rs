//! `dinov2 convert weights`: checkpoints written by a real `torch.save` (flat, nested,
//! strided views, several dtypes) read in Rust and written as safetensors that
//! `safetensors.torch` loads back equal.

mod common;
use common::*;

const MAKE: &str = r#"
import argparse, sys, torch
torch.manual_seed(0)
flat = {
    "blocks.0.attn.qkv.weight": torch.randn(12, 4),
    "blocks.0.ls1.gamma": torch.randn(4).half(),
    "pos_embed": torch.randn(1, 5, 4).bfloat16(),
    "transposed": torch.randn(4, 6).t(),
    "slice": torch.randn(10)[2:7],
    "steps": torch.arange(7),
    "mask": torch.rand(3) > 0.5,
    "scalar": torch.tensor(3.5, dtype=torch.float64),
}
torch.save(flat, sys.argv[1])
nested = {"teacher": {"backbone." + k: v for k, v in flat.items()}, "student": {"backbone.other": torch.ones(2)},
          "iteration": 1250, "args": argparse.Namespace(lr=0.1)}
torch.save(nested, sys.argv[2])
"#;

const CHECK: &str = r#"
import sys, torch
from safetensors.torch import load_file
src = torch.load(sys.argv[1], weights_only=False)
if sys.argv[3] != "-":
    src = {k.removeprefix("backbone."): v for k, v in src[sys.argv[3]].items()}
out = load_file(sys.argv[2])
assert sorted(src) == sorted(out), (sorted(src), sorted(out))
for k, v in src.items():
    assert v.dtype == out[k].dtype and v.shape == out[k].shape and torch.equal(v, out[k]), k
print(len(out))
"#;

#[test]
fn torch_save_checkpoints_convert_to_equal_safetensors() {
    let dir = scratch("weights");
    let (flat, nested) = (dir.join("flat.pth"), dir.join("nested.pth"));
    run_python_with(MAKE, &[&flat, &nested]);
    let out = dir.join("flat.safetensors");
    let text = dinov2_ok(args!["convert", "weights", flat, out]);
    assert!(text.contains("8 tensors"), "{text}");
    assert_eq!(
        run_python_with(CHECK, &[flat.as_os_str(), out.as_os_str(), "-".as_ref()]).trim(),
        "8"
    );

    let out2 = dir.join("teacher.safetensors");
    dinov2_ok(args![
        "convert",
        "weights",
        nested,
        out2,
        "--select",
        "teacher",
        "--strip-prefix",
        "backbone."
    ]);
    assert_eq!(
        run_python_with(
            CHECK,
            &[nested.as_os_str(), out2.as_os_str(), "teacher".as_ref()]
        )
        .trim(),
        "8"
    );

    // Errors name the file and what was expected; nothing is left behind.
    let bad = dir.join("not_a_checkpoint.pth");
    std::fs::write(&bad, b"hello").unwrap();
    let o = output(dinov2().args(args!["convert", "weights", bad, dir.join("x.safetensors")]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not_a_checkpoint.pth") && err.contains("zip"),
        "{err}"
    );
    let o = output(dinov2().args(args![
        "convert",
        "weights",
        nested,
        dir.join("y.safetensors"),
        "--select",
        "ema"
    ]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no tensors under \"ema\""));
    assert!(!dir.join("x.safetensors").exists() && !dir.join("y.safetensors").exists());
}

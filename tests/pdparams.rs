//! `dinov2 convert weights` on PASSL `.pdparams`: a real `paddle.save` of a tiny DINOv2
//! linear-probe model (tests/fixtures/passl_vit_tiny.pdparams, made by
//! python/make_pdparams_fixture.py) and pickles in the same format written here without
//! paddle, read in Rust and mapped to the PyTorch names and layouts; checked bit-equal against
//! plain `pickle` + numpy + the documented mapping.

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/passl_vit_tiny.pdparams")
}

/// argv: pdparams, safetensors, select ("-" for none). Applies the mapping of
/// `converters::pdparams::passl_to_torch` in numpy and compares. Prints the tensor count and
/// the shapes as JSON.
const CHECK: &str = r#"
import json, pickle, sys, numpy as np
from safetensors.numpy import load_file

def leaves(d, prefix=""):
    for k, v in d.items():
        name = prefix + str(k)
        if isinstance(v, dict):
            yield from leaves(v, name + ".")
        elif isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], np.ndarray):
            yield name, v[1]
        elif isinstance(v, (np.ndarray, np.generic)):
            yield name, np.asarray(v)

with open(sys.argv[1], "rb") as f:
    src = pickle.load(f)
src.pop("StructuredToParameterName@@", None)
want = {}
for k, v in leaves(src):
    if k.endswith(".weight") and v.ndim == 2:
        v = v.T
    if k.startswith("linear.linear."):
        k = "linear." + k[len("linear.linear."):]
    want[k] = np.array(v, order="C")
sel = sys.argv[3]
if sel == "-":
    want = {k.removeprefix("backbone."): v for k, v in want.items()}
else:
    want = {k[len(sel) + 1:]: v for k, v in want.items() if k.startswith(sel + ".")}
out = load_file(sys.argv[2])
assert sorted(want) == sorted(out), (sorted(set(want) ^ set(out)))
for k, v in want.items():
    o = out[k]
    assert (v.dtype, v.shape) == (o.dtype, o.shape), (k, v.dtype, v.shape, o.dtype, o.shape)
    assert v.tobytes() == o.tobytes(), k
print(len(out), json.dumps({k: list(v.shape) for k, v in out.items()}, sort_keys=True))
"#;

#[test]
fn passl_pdparams_convert_to_the_pytorch_layout() {
    let dir = scratch("pdparams");
    let check = |out: &Path, select: &str| {
        run_python_with(
            CHECK,
            &[fixture().as_os_str(), out.as_os_str(), select.as_ref()],
        )
    };
    let has = |summary: &str, n: usize, shapes: &[&str]| {
        assert!(summary.starts_with(&format!("{n} {{")), "{summary}");
        for s in shapes {
            assert!(summary.contains(s), "{s} not in {summary}");
        }
    };

    let all = dir.join("all.safetensors");
    let text = dinov2_ok(args!["convert", "weights", fixture(), all]);
    assert!(text.contains("37 tensors, 98506 parameters"), "{text}");
    let hub_shapes = [
        r#""blocks.0.attn.qkv.weight": [144, 48]"#,
        r#""blocks.1.attn.proj.weight": [48, 48]"#,
        r#""blocks.1.mlp.fc1.weight": [192, 48]"#,
        r#""blocks.1.mlp.fc2.weight": [48, 192]"#,
        r#""mask_token": [1, 48]"#,
        r#""pos_embed": [1, 257, 48]"#,
        r#""patch_embed.proj.weight": [48, 3, 14, 14]"#,
    ];
    let summary = check(&all, "-");
    has(&summary, 37, &hub_shapes);
    has(
        &summary,
        37,
        &[r#""linear.weight": [10, 96]"#, r#""linear.bias": [10]"#],
    );

    // The groups: the backbone alone has the hub keys, the head alone the hub head's keys.
    let backbone = dir.join("backbone.safetensors");
    dinov2_ok(args![
        "convert",
        "weights",
        fixture(),
        backbone,
        "--select",
        "backbone"
    ]);
    has(&check(&backbone, "backbone"), 35, &hub_shapes);
    let head = dir.join("head.safetensors");
    dinov2_ok(args![
        "convert",
        "weights",
        fixture(),
        head,
        "--select",
        "linear"
    ]);
    assert_eq!(
        check(&head, "linear").trim(),
        r#"2 {"bias": [10], "weight": [10, 96]}"#
    );
}

/// Writes pickles in paddle.save's format without paddle (argv: protocol-4 file, protocol-2
/// file, then the error cases: unknown class, big-endian).
const MAKE: &str = r#"
import fractions, pickle, sys, numpy as np
rng = np.random.RandomState(0)
d = {
    "backbone.f64": rng.randn(3, 2),
    "backbone.blocks.0.mlp.fc1.weight": np.asfortranarray(rng.randn(4, 3).astype(np.float32)),
    "backbone.f16": rng.randn(5).astype(np.float16),
    "backbone.fortran3d": np.asfortranarray(rng.randn(2, 3, 4).astype(np.float32)),
    "backbone.i64": np.arange(-3, 4),
    "backbone.i32": np.arange(5, dtype=np.int32),
    "backbone.i16": np.arange(-2, 2, dtype=np.int16),
    "backbone.i8": np.arange(-4, 4, dtype=np.int8),
    "backbone.u8": np.arange(250, 256, dtype=np.uint8),
    "backbone.mask": rng.rand(7) > 0.5,
    "backbone.scalar": np.array(2.5, dtype=np.float32),
    "backbone.numpy_scalar": np.float64(1.25),
    "backbone.empty": np.zeros((0, 3), np.float32),
    "linear.linear.weight": rng.randn(6, 2).astype(np.float32),
    "ema": {"x": ("generated_tensor_0", rng.randn(2, 2).astype(np.float32))},
    "epoch": 3,
    "StructuredToParameterName@@": {"backbone.f64": "w_0"},
}
for path, proto in [(sys.argv[1], 4), (sys.argv[2], 2)]:
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=proto)
with open(sys.argv[3], "wb") as f:
    pickle.dump({"a": np.ones(2, np.float32), "b": fractions.Fraction(1, 3)}, f, protocol=4)
with open(sys.argv[4], "wb") as f:
    pickle.dump({"a": np.ones(2, np.float32), "big.weight": np.ones((2, 2), ">f4")}, f, protocol=4)
"#;

#[test]
fn numpy_pickles_of_every_dtype_and_order_convert() {
    let dir = scratch("pdparams_dtypes");
    let files: Vec<PathBuf> = ["p4", "p2", "unknown_class", "big_endian"]
        .iter()
        .map(|n| dir.join(format!("{n}.pdparams")))
        .collect();
    run_python_with(MAKE, &files);
    for src in &files[..2] {
        let out = src.with_extension("safetensors");
        let text = dinov2_ok(args!["convert", "weights", src, out]);
        assert!(text.contains("15 tensors"), "{text}");
        let summary = run_python_with(CHECK, &[src.as_os_str(), out.as_os_str(), "-".as_ref()]);
        for s in [
            r#""blocks.0.mlp.fc1.weight": [3, 4]"#, // [in, out] Fortran -> [out, in]
            r#""ema.x": [2, 2]"#,
            r#""scalar": []"#,
            r#""numpy_scalar": []"#,
            r#""linear.weight": [2, 6]"#,
        ] {
            assert!(
                summary.starts_with("15 {") && summary.contains(s),
                "{s}: {summary}"
            );
        }
    }
    for (src, why) in [
        (
            &files[2],
            "entry \"b\" is a fractions.Fraction(...) object, not a numpy array",
        ),
        (&files[3], "big-endian"),
    ] {
        expect_error(src, &[why]);
    }
}

/// Runs `convert weights SRC` and asserts a clean failure: exit 1, no panic, the message
/// naming the file and containing `needles`, no output left behind.
fn expect_error(src: &Path, needles: &[&str]) {
    let out = src.with_extension("out.safetensors");
    let o = output(dinov2().args(args!["convert", "weights", src, out]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let name = src.file_name().unwrap().to_string_lossy();
    assert!(err.contains(&*name), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(src.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains("out.safetensors"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn damaged_pdparams_fail_cleanly() {
    let dir = scratch("pdparams_bad");
    let bytes = std::fs::read(fixture()).unwrap();
    let truncated = dir.join("truncated.pdparams");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    expect_error(&truncated, &["truncated"]);

    let random = dir.join("random.pdparams");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect();
    std::fs::write(&random, noise).unwrap();
    expect_error(&random, &["not a valid pickle"]);

    let missing = dir.join("missing.pdparams");
    expect_error(&missing, &["No such file"]);
}

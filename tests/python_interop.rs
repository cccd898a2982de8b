//! The shards are ordinary files: python-lmdb and pyarrow (from the project venv) read the
//! same records the Rust readers do, and the RGB conversions agree with Pillow's.

mod common;
use common::*;
use converters::synth::{SynthSpec, ValLayout, generate};
use pipeline::dataset::open_dataset;

const READER: &str = r#"
import glob, hashlib, io, json, os, struct, sys
import lmdb, pyarrow as pa, pyarrow.ipc
out, fmt = sys.argv[1], sys.argv[2]
manifest = json.load(open(os.path.join(out, "manifest.json")))
records = []
for split in sorted(manifest["splits"]):
    for shard in manifest["splits"][split]["shards"]:
        path = os.path.join(out, shard["file"])
        if fmt == "lmdb":
            env = lmdb.open(path, subdir=False, readonly=True, lock=False)
            with env.begin() as txn:
                meta = json.loads(txn.get(b"__meta__"))
                assert meta["split"] == split and meta["format"] == "dinov2-shards", meta
                for i in range(shard["records"]):
                    v = txn.get(b"%010d" % i)
                    magic, label, w, h, crc, n = struct.unpack_from("<4sIIIIH", v)
                    assert magic == b"D2R1"
                    key, jpeg = v[22:22 + n].decode(), v[22 + n:]
                    records.append([split, key, label, w, h, hashlib.sha256(jpeg).hexdigest()])
            env.close()
        else:
            table = pa.ipc.open_file(pa.memory_map(path)).read_all()
            assert table.num_rows == shard["records"]
            for row in table.to_pylist():
                records.append([split, row["key"], row["label"], row["width"], row["height"],
                                hashlib.sha256(row["image"]).hexdigest()])
print(json.dumps(records))
"#;

const PIL_CHECK: &str = r#"
import io, json, sys
import numpy as np
from PIL import Image
src, stored = sys.argv[1], sys.argv[2]
a = np.asarray(Image.open(src).convert("RGB"), dtype=np.float64)
b = np.asarray(Image.open(stored).convert("RGB"), dtype=np.float64)
print(json.dumps({"shape_a": a.shape, "shape_b": b.shape, "mean_abs": float(np.abs(a - b).mean())}))
"#;

fn sha256_hex(bytes: &[u8]) -> String {
    let out = run_python_with(
        "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())",
        &[write_tmp(bytes).to_str().unwrap()],
    );
    out.trim().to_string()
}

fn write_tmp(bytes: &[u8]) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = scratch_root().join(format!("blob-{}", N.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&p, bytes).unwrap();
    p
}

fn scratch_root() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop-blobs");
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn python_lmdb_and_pyarrow_read_the_same_records() {
    let dir = scratch("interop");
    let root = dir.join("imagenet");
    let spec = SynthSpec {
        classes: 3,
        train_per_class: 4,
        val_per_class: 2,
        mean_width: 100,
        mean_height: 80,
        val_layout: ValLayout::Flat,
        bad_files: true,
        ..SynthSpec::default()
    };
    generate(&root, &spec).unwrap();
    for format in ["lmdb", "arrow"] {
        let out = dir.join(format);
        dinov2_ok(args![
            "convert",
            "imagenet",
            "--root",
            root,
            "--out",
            out,
            "--format",
            format,
            "--shard-size",
            "5"
        ]);
        let py: Vec<(String, String, u32, u32, u32, String)> =
            serde_json::from_str(&run_python_with(READER, &[out.to_str().unwrap(), format]))
                .unwrap();
        let mut ours = Vec::new();
        for split in ["train", "val"] {
            let ds = open_dataset(&out, split).unwrap();
            for i in 0..ds.len() {
                let r = ds.get(i).unwrap();
                ours.push((
                    split.to_string(),
                    r.key.clone(),
                    r.label,
                    r.width,
                    r.height,
                    String::new(),
                ));
                ours.last_mut().unwrap().5 = sha256_hex(&r.bytes);
            }
        }
        assert_eq!(py.len(), 3 * 4 + 3 * 2 + 3);
        assert_eq!(py, ours, "{format}: python and Rust readers disagree");
    }
}

#[test]
fn conversions_to_rgb_match_pillow() {
    let dir = scratch("interop-pil");
    let root = dir.join("imagenet");
    let spec = SynthSpec {
        classes: 1,
        train_per_class: 1,
        val_per_class: 0,
        bad_files: true,
        ..SynthSpec::default()
    };
    generate(&root, &spec).unwrap();
    let out = dir.join("out");
    dinov2_ok(args![
        "convert",
        "imagenet",
        "--root",
        root,
        "--out",
        out,
        "--format",
        "arrow",
        "--split",
        "train",
        "--quality",
        "100"
    ]);
    let ds = open_dataset(&out, "train").unwrap();
    let mut checked = 0;
    for i in 0..ds.len() {
        let r = ds.get(i).unwrap();
        let name = r.key.rsplit('/').next().unwrap();
        if !["cmyk.JPEG", "grayscale.JPEG", "png_in_disguise.JPEG"].contains(&name) {
            continue;
        }
        let stored = write_tmp(&r.bytes);
        let v: serde_json::Value = serde_json::from_str(&run_python_with(
            PIL_CHECK,
            &[
                root.join(&r.key).to_str().unwrap(),
                stored.to_str().unwrap(),
            ],
        ))
        .unwrap();
        assert_eq!(v["shape_a"], v["shape_b"], "{name}");
        let mean_abs = v["mean_abs"].as_f64().unwrap();
        // Only JPEG re-encoding (quality 100, 4:4:4) separates the two.
        assert!(mean_abs < 2.0, "{name}: mean |PIL - stored| = {mean_abs}");
        checked += 1;
    }
    assert_eq!(checked, 3);
}

//! The demo's data stages: the generated tree, its conversion to LMDB and Arrow shards, and the
//! data-pipeline benchmarks on the shards.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::path::Path;

use super::DemoArgs;
use super::stage::{dinov2, os, stage};

/// The generated ImageNet-like tree (`OUT/tree`).
pub(super) fn tree(a: &DemoArgs) -> Result<Value> {
    let out = &a.out;
    let tree = out.join("tree");
    stage(out, "tree", "generating an ImageNet-like tree", || {
        let per_class = (a.images as usize).div_ceil(10);
        let val = (per_class / 5).max(1);
        let spec = converters::synth::SynthSpec {
            classes: 10,
            train_per_class: per_class - val.min(per_class - 1),
            val_per_class: val.min(per_class - 1),
            ..converters::synth::SynthSpec::default()
        };
        converters::synth::generate_cached(&tree, &spec)?;
        let (n, bytes) = tree_size(&tree)?;
        eprintln!(
            "{n} JPEGs, {:.1} MB, in {}",
            bytes as f64 / 1e6,
            tree.display()
        );
        Ok(json!({"images": n, "bytes": bytes, "path": tree}))
    })
}

/// The tree converted to LMDB and to Arrow shards (`OUT/shards-FORMAT`).
pub(super) fn conversions(out: &Path) -> Result<Vec<Value>> {
    let tree = out.join("tree");
    let mut conversions = Vec::new();
    for format in ["lmdb", "arrow"] {
        let dir = out.join(format!("shards-{format}"));
        let v = stage(
            out,
            &format!("convert-{format}"),
            &format!("converting to {format}"),
            || {
                let text = dinov2(
                    out,
                    &format!("convert-{format}"),
                    &os([
                        "convert".into(),
                        "imagenet".into(),
                        "--root".into(),
                        tree.clone().into_os_string(),
                        "--out".into(),
                        dir.clone().into_os_string(),
                        "--format".into(),
                        format.into(),
                        "--json".into(),
                    ]),
                )?;
                let s: Value = serde_json::from_str(&text).context("convert --json output")?;
                Ok(json!({
                    "format": format, "path": dir, "images": s["images_processed"],
                    "seconds": s["seconds"], "bytes_read": s["bytes_read"],
                    "shards": s["manifest"]["splits"]
                        .as_object()
                        .map_or(0, |m| m.values().map(|v| v["shards"].as_array().map_or(0, |s| s.len())).sum::<usize>()),
                }))
            },
        )?;
        conversions.push(v);
    }
    Ok(conversions)
}

/// `bench data` on the shards for the `linear-train` and `dinov2` presets.
pub(super) fn benches(a: &DemoArgs, shards: &Path) -> Result<Vec<Value>> {
    let out = &a.out;
    let mut benches = Vec::new();
    for preset in ["linear-train", "dinov2"] {
        let v = stage(
            out,
            &format!("bench-{preset}"),
            &format!("data pipeline, {preset} preset"),
            || {
                let text = dinov2(
                    out,
                    &format!("bench-{preset}"),
                    &os([
                        "bench".into(),
                        "data".into(),
                        "--data".into(),
                        shards.as_os_str().to_owned(),
                        "--preset".into(),
                        preset.into(),
                        "--seconds".into(),
                        a.bench_seconds.to_string().into(),
                        "--json".into(),
                    ]),
                )?;
                serde_json::from_str(&text).context("bench data --json output")
            },
        )?;
        benches.push(v);
    }
    Ok(benches)
}

fn tree_size(dir: &Path) -> Result<(u64, u64)> {
    let (mut n, mut bytes) = (0u64, 0u64);
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let m = e.metadata()?;
        if m.is_dir() {
            let (a, b) = tree_size(&e.path())?;
            n += a;
            bytes += b;
        } else if !e.file_name().to_string_lossy().starts_with('.') {
            n += 1;
            bytes += m.len();
        }
    }
    Ok((n, bytes))
}

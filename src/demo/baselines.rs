//! The demo's baselines: what a user has today, run in the same run on the same images as the
//! product's stage it is compared with — the python-lmdb writer against the conversion, and
//! torchvision's DataLoader (ImageFolder on the JPEG tree, the reference transforms) against
//! the data pipeline. They run in the project's Python (`$DINOV2_PYTHON`, else the venv `./x
//! demo` sets up); without it the summary says what is missing and the demo goes on.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::stage::stage;
use super::{DemoArgs, f};
use crate::bench::convert::{python_writer, write_python_writer};
use crate::bench::data::torchvision_loader;
use crate::bench::shared::default_python;

/// The modules the baselines import.
const MODULES: [&str; 5] = ["torch", "torchvision", "lmdb", "PIL", "dinov2"];

/// The Python the baselines run in, when it has every module they import.
pub(super) fn python() -> Result<PathBuf> {
    let python = default_python();
    let o = Command::new(&python)
        .args([
            "-c",
            "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))",
        ])
        .args(MODULES)
        .output()
        .with_context(|| format!("no Python at {}", python.display()))?;
    let missing = String::from_utf8_lossy(&o.stdout).trim().to_string();
    if !o.status.success() || !missing.is_empty() {
        bail!(
            "{} lacks {} (`./x demo` installs them; or set DINOV2_PYTHON)",
            python.display(),
            if missing.is_empty() {
                "its standard library".into()
            } else {
                missing
            }
        );
    }
    Ok(python)
}

/// A baseline stage run by `python`: its figures, or `{"error": why}` when it could not run
/// (not kept, so a later run tries again).
fn baseline(
    out: &Path,
    name: &str,
    title: &str,
    python: &Result<PathBuf>,
    run: impl FnOnce(&Path) -> Result<Value>,
) -> Value {
    let result = match python {
        Ok(python) => stage(out, name, title, || run(python)),
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    };
    result.unwrap_or_else(|e| {
        eprintln!("baseline not measured: {e:#}");
        json!({ "error": format!("{e:#}") })
    })
}

/// The python-lmdb writer on the tree's train split, decoding every image as the converter
/// does (`--validate decode`, its default).
pub(super) fn conversion(a: &DemoArgs, python: &Result<PathBuf>) -> Value {
    let out = &a.out;
    baseline(
        out,
        "baseline-convert",
        "baseline: the python-lmdb writer",
        python,
        |python| {
            let work = out.join("baseline-convert");
            let script = write_python_writer(&work)?;
            let rate = python_writer(
                python,
                &script,
                &out.join("tree").join("train"),
                &work,
                "decode",
            );
            let _ = std::fs::remove_dir_all(&work);
            Ok(json!({"tool": "python-lmdb + PIL", "validate": "decode", "images_per_s": rate?}))
        },
    )
}

/// torchvision's DataLoader on the tree's train split for each preset `bench data` measured,
/// with the same workers and batch.
pub(super) fn loaders(a: &DemoArgs, python: &Result<PathBuf>, benches: &[Value]) -> Vec<Value> {
    let out = &a.out;
    benches
        .iter()
        .map(|b| {
            let preset = b["preset"].as_str().unwrap_or("?").to_string();
            let (workers, batch) = (f(b, "workers") as usize, f(b, "batch") as usize);
            let mut v = baseline(
                out,
                &format!("baseline-{preset}"),
                &format!("baseline: torchvision's DataLoader, {preset} preset"),
                python,
                |python| {
                    let rate = torchvision_loader(
                        python,
                        &out.join("logs"),
                        &out.join("tree").join("train"),
                        &preset,
                        workers,
                        batch,
                        a.bench_seconds,
                    )?;
                    Ok(json!({"workers": workers, "batch": batch, "images_per_s": rate}))
                },
            );
            v["preset"] = json!(preset);
            v
        })
        .collect()
}

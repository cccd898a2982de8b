//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `dinov2` binary cargo built for these tests.
pub fn dinov2() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dinov2"))
}

/// Runs a command and returns its output, with stdout and stderr in the panic message on a
/// spawn failure.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"))
}

/// The project venv's Python (made by `scripts/setup.sh --with-reference`), or `$DINOV2_PYTHON`.
pub fn python() -> PathBuf {
    std::env::var_os("DINOV2_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// Runs a Python reference script in the project venv and returns its stdout.
pub fn run_python(script: &str) -> String {
    run_python_with::<&str>(script, &[])
}

/// Runs a Python reference script with arguments (`sys.argv[1:]`) and returns its stdout.
pub fn run_python_with<S: AsRef<std::ffi::OsStr>>(script: &str, argv: &[S]) -> String {
    let py = python();
    let out = output(Command::new(&py).arg("-c").arg(script).args(argv));
    assert!(
        out.status.success(),
        "reference script failed under {}:\n{}",
        py.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 from python")
}

/// A fresh scratch directory under the target directory, removed first if it exists.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `dinov2 ARGS...`, asserting success; returns stdout.
pub fn dinov2_ok(args: &[&std::ffi::OsStr]) -> String {
    let out = output(dinov2().args(args));
    assert!(
        out.status.success(),
        "dinov2 {args:?} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `OsStr` arguments from anything path-like.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new(&$a)),*] };
}

/// A generated class-per-folder tree at `dir/tree` (`train/` and `val/`) of small JPEGs
/// (about 60 x 50 pixels): `classes` classes with `train` and `val` images each.
pub fn small_synth_tree(dir: &Path, classes: usize, train: usize, val: usize) {
    let spec = converters::synth::SynthSpec {
        classes,
        train_per_class: train,
        val_per_class: val,
        mean_width: 60,
        mean_height: 50,
        ..converters::synth::SynthSpec::default()
    };
    converters::synth::generate(&dir.join("tree"), &spec).unwrap();
}

/// A run's `metrics.jsonl` in `dir` with the timing fields removed (they differ between runs;
/// everything else must not).
pub fn metrics_without_timings(dir: &Path) -> Vec<serde_json::Value> {
    trainer::metrics::read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .map(|mut r| {
            let phases = trainer::step_timer::Phase::ALL.map(|p| p.key());
            for k in ["images_per_s", "train_images_per_s", "step_s", "comm_s"]
                .iter()
                .chain(&["bound", "breakdown_steps"])
                .chain(&phases)
            {
                r.as_object_mut().unwrap().remove(*k);
            }
            r
        })
        .collect()
}

/// The tensors of a safetensors file sorted by name (tch's reader gives no order).
pub fn read_sorted_safetensors(path: &Path) -> Vec<(String, tch::Tensor)> {
    let mut v = tch::Tensor::read_safetensors(path).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Two safetensors files hold the same tensors (names, shapes, values), bit for bit.
pub fn assert_same_tensors(a: &Path, b: &Path) {
    let (ta, tb) = (read_sorted_safetensors(a), read_sorted_safetensors(b));
    assert_eq!(ta.len(), tb.len(), "{} vs {}", a.display(), b.display());
    for ((ka, x), (kb, y)) in ta.iter().zip(&tb) {
        assert_eq!(ka, kb);
        assert!(
            x.equal(y),
            "{ka} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// A scratch directory `name` holding a generated tree (`tree/`) of `classes` classes with
/// `train`/`val` small images per class, converted to Arrow shards (`arrow/`).
pub fn small_arrow_set(name: &str, classes: usize, train: usize, val: usize) -> PathBuf {
    let dir = scratch(name);
    let spec = converters::synth::SynthSpec {
        classes,
        train_per_class: train,
        val_per_class: val,
        mean_width: 80,
        mean_height: 70,
        ..converters::synth::SynthSpec::default()
    };
    converters::synth::generate(&dir.join("tree"), &spec).unwrap();
    dinov2_ok(args![
        "convert",
        "imagenet",
        "--root",
        dir.join("tree"),
        "--out",
        dir.join("arrow"),
        "--format",
        "arrow"
    ]);
    dir
}

//! What the benchmarks share: medians, device synchronisation and the baselines' Python.

use std::path::{Path, PathBuf};

/// The median of the repetitions of one contender (the upper one for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Waits for the device's queued work (a no-op on the CPU), so that a wall-clock time covers it.
pub fn sync(device: tch::Device) {
    if let tch::Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The Python the baselines run in: `$DINOV2_PYTHON`, else the project venv of the checkout
/// this binary was built in, else `python3` from the PATH (a binary run on another machine,
/// e.g. against a GPU image's own PyTorch).
pub fn default_python() -> PathBuf {
    if let Some(p) = std::env::var_os("DINOV2_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

//! Probe checkpoints: the classifiers and their momentum buffers in safetensors, plus a small
//! JSON state (the commit point, written last and atomically). A run resumes from the last
//! completed epoch; the data order and augmentations are functions of (seed, epoch,
//! position), so a resumed run is bit-identical to an uninterrupted one on the CPU.

use crate::scaler::LossScaler;
use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeState {
    /// Epochs completed (1-based count).
    pub epochs_done: u64,
    pub global_step: u64,
    pub scaler: Option<LossScaler>,
    /// Best evaluation so far: (top-1, epoch, classifier).
    pub best: Option<(f64, u64, String)>,
    /// The tensors file this state belongs to (relative to the checkpoint directory).
    pub tensors: String,
    pub classifiers: Vec<String>,
}

pub fn dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

/// Writes `epoch_<n>.safetensors` then `latest.json` (atomically), then removes older tensor
/// files.
pub fn save(out: &Path, state: &ProbeState, tensors: &[(String, Tensor)]) -> Result<()> {
    crate::checkpoint::commit(&dir(out), &state.tensors, tensors, state, "epoch_")
}

/// A state with its named tensors.
pub type Checkpoint = (ProbeState, Vec<(String, Tensor)>);

/// The last committed state and its tensors, if any.
pub fn load(out: &Path) -> Result<Option<Checkpoint>> {
    let json = dir(out).join("latest.json");
    if !json.exists() {
        return Ok(None);
    }
    let state: ProbeState = serde_json::from_slice(&std::fs::read(&json)?)
        .with_context(|| format!("{} is not a probe checkpoint state", json.display()))?;
    let path = dir(out).join(&state.tensors);
    let tensors = Tensor::read_safetensors(&path)
        .with_context(|| format!("reading checkpoint {}", path.display()))?;
    ensure!(!tensors.is_empty(), "{} holds no tensors", path.display());
    Ok(Some((state, tensors)))
}

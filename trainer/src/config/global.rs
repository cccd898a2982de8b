//! `Global`, `FP16` and `DistributedStrategy`: the run itself (loops, output, device, epochs,
//! intervals, seed), mixed precision with its loss scaler, and data parallelism.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// PASSL's `Global` section. Keys PASSL reads with `.get(key, default)` take that default;
/// keys it indexes directly are required; `seed`, `validate_loop` and `max_train_step` are
/// optional (PASSL's `.get` without a usable default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    #[serde(default)]
    pub task_type: TaskType,
    pub train_loop: TrainLoop,
    #[serde(default)]
    pub validate_loop: Option<ValidateLoop>,
    /// A probe checkpoint to resume from (`null`: start fresh).
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// Backbone weights (`null`: random initialisation).
    #[serde(default)]
    pub pretrained_model: Option<PathBuf>,
    pub output_dir: PathBuf,
    pub device: DeviceKind,
    #[serde(default = "one")]
    pub save_interval: u64,
    /// How many `epoch_N` checkpoints to keep besides `latest` and `best` (0: none).
    pub max_num_latest_checkpoint: u64,
    pub eval_during_train: bool,
    pub eval_interval: u64,
    pub eval_unit: Unit,
    #[serde(default = "one")]
    pub accum_steps: u64,
    pub epochs: u64,
    #[serde(default = "ten")]
    pub print_batch_step: u64,
    pub use_visualdl: bool,
    /// PASSL seeds with `seed + rank` when set, and leaves the generators alone otherwise.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop after this many optimizer steps in total (PASSL's CI uses 201).
    #[serde(default)]
    pub max_train_step: Option<u64>,
    /// Paddle runtime flags (`FLAGS_cudnn_deterministic: 1`, ...); kept and logged only.
    #[serde(default)]
    pub flags: BTreeMap<String, serde_norway::Value>,
}

fn one() -> u64 {
    1
}

fn ten() -> u64 {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TaskType {
    #[default]
    #[serde(alias = "classification")]
    Classification,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrainLoop {
    ClassificationTrainingEpochLoop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValidateLoop {
    ClassificationEvaluationLoop,
}

/// `Global.device`: `gpu` (CUDA device 0 of this process) or `cpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[serde(alias = "cuda")]
    Gpu,
    Cpu,
}

/// An interval unit: `epoch` or `step` (iteration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Epoch,
    Step,
}

/// `FP16`: present means mixed precision at `level` (PASSL's default `O2`); absent means fp32.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fp16 {
    #[serde(default)]
    pub level: AmpLevel,
    /// The autocast dtype, named as Paddle's `amp.auto_cast(dtype=...)`: `float16` (default,
    /// PASSL's; CUDA only, with `GradScaler`; a CPU run is fp32) or `bfloat16` (the CPU or
    /// CUDA; no loss scaling: `GradScaler` is ignored). `fp16`/`bf16` are accepted too.
    /// Ignored at level `O0`.
    #[serde(default, skip_serializing_if = "AmpDtype::is_default")]
    pub dtype: AmpDtype,
    #[serde(rename = "GradScaler", default)]
    pub grad_scaler: GradScaler,
}

/// `FP16.dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmpDtype {
    #[default]
    #[serde(alias = "fp16")]
    Float16,
    #[serde(alias = "bf16")]
    Bfloat16,
}

impl AmpDtype {
    fn is_default(&self) -> bool {
        *self == Self::Float16
    }
}

/// Paddle AMP levels: `O0` off, `O1` autocast with fp32 parameters, `O2` fp16 parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AmpLevel {
    O0,
    O1,
    #[default]
    O2,
}

/// `FP16.GradScaler`, with the defaults of PASSL's `GradScaler`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GradScaler {
    pub init_loss_scaling: f64,
    pub max_loss_scaling: f64,
    pub incr_ratio: f64,
    pub decr_ratio: f64,
    pub incr_every_n_steps: u64,
    pub decr_every_n_nan_or_inf: u64,
    pub use_dynamic_loss_scaling: bool,
}

impl Default for GradScaler {
    fn default() -> Self {
        Self {
            init_loss_scaling: 1024.0,
            max_loss_scaling: 2f64.powi(32),
            incr_ratio: 2.0,
            decr_ratio: 0.5,
            incr_every_n_steps: 1000,
            decr_every_n_nan_or_inf: 2,
            use_dynamic_loss_scaling: true,
        }
    }
}

/// `DistributedStrategy`: PASSL requires `data_parallel: True` for multi-process runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistributedStrategy {
    pub data_parallel: bool,
}

//! What a probe run is told: the data on each side ([`DataSpec`]), the k-NN evaluation
//! ([`KnnSpec`]) and every setting of the run ([`ProbeSettings`]).

use super::classifiers::Protocol;
use crate::backbone::BackboneSpec;
use crate::scaler::LossScaler;
use crate::schedule::Cosine;
use model::runtime::Precision;
use pipeline::bad_records::BadRecords;
use pipeline::presets::Preset;
use std::path::PathBuf;
use tch::Device;

/// One side of the data: where, which split, which transform, how many per batch.
#[derive(Debug, Clone)]
pub struct DataSpec {
    pub root: PathBuf,
    pub split: String,
    pub preset: Preset,
    pub batch_size: usize,
    pub workers: usize,
    pub shuffle: bool,
    pub drop_last: bool,
    /// What a record that cannot be read or decoded does.
    pub bad_records: BadRecords,
}

#[derive(Debug, Clone)]
pub struct KnnSpec {
    pub ks: Vec<usize>,
    pub temperature: f64,
}

/// Everything a probe run needs (built from a config by the CLI).
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub out_dir: PathBuf,
    pub device: Device,
    pub seed: u64,
    pub epochs: u64,
    /// Stop after this many optimizer steps in total (smoke runs).
    pub max_train_step: Option<u64>,
    pub train: DataSpec,
    pub eval: DataSpec,
    pub backbone: BackboneSpec,
    /// The number of classes the config declares (`Model.class_num`); checked against the data.
    pub class_num: Option<i64>,
    pub protocol: Protocol,
    pub momentum: f64,
    pub weight_decay: f64,
    /// The schedule of a base rate of 1 (each classifier scales it by its own rate), its length
    /// and warm-up in epochs, and whether it advances per epoch (PASSL) or per step (dinov2).
    pub schedule: Cosine,
    pub schedule_per_step: bool,
    /// The precision of the backbone and heads' forward passes (autocast; parameters stay
    /// fp32): fp32, fp16 (CUDA, with the loss scaler `fp16`) or bf16 (CPU or CUDA).
    pub precision: Precision,
    /// The loss scaler of fp16 (none with fp32 or bf16).
    pub fp16: Option<LossScaler>,
    pub print_every: u64,
    pub eval_every: u64,
    pub save_every: u64,
    pub knn: Option<KnnSpec>,
    pub resume: bool,
    pub progress: bool,
}

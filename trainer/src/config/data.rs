//! `DataLoader`: for `Train` and `Eval`, the dataset (with its transform list), the batch
//! sampler and the loader options.

use super::transform::Transform;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataLoader {
    #[serde(rename = "Train")]
    pub train: DataSection,
    #[serde(rename = "Eval")]
    pub eval: DataSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    pub dataset: DatasetConfig,
    pub sampler: Sampler,
    pub loader: LoaderOptions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    pub name: DatasetKind,
    /// A class-per-folder tree (`ImageFolder`) or a shard directory (`Shards`).
    pub root: PathBuf,
    /// Which split of `root` to read; `train` for `DataLoader.Train`, `val` for `Eval` when
    /// absent (see [`DatasetConfig::split_or`]).
    #[serde(default)]
    pub split: Option<String>,
    #[serde(default)]
    pub transform: Vec<Transform>,
}

impl DatasetConfig {
    /// The split, or `default` (the section's own) when the YAML names none.
    pub fn split_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.split.as_deref().unwrap_or(default)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DatasetKind {
    ImageFolder,
    Shards,
}

/// `sampler`: paddle's `DistributedBatchSampler` (each rank takes every world_size-th sample
/// of the (shuffled) order; the evaluation loop trims the padding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampler {
    pub name: SamplerName,
    /// Per process.
    pub batch_size: u64,
    #[serde(default)]
    pub drop_last: bool,
    #[serde(default)]
    pub shuffle: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SamplerName {
    DistributedBatchSampler,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderOptions {
    pub num_workers: u64,
    pub use_shared_memory: bool,
}

//! `DataLoader`: for `Train` and `Eval`, the dataset (with its transform list), the batch
//! sampler and the loader options.

use super::transform::Transform;
use pipeline::bad_records::{BadRecordPolicy, BadRecords, DEFAULT_MAX_BAD_FRACTION};
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
    /// Ours: `fail` or `skip` a record that cannot be read or decoded (default: `skip` for
    /// `Train`, so one bad image does not end a long run, and `fail` for `Eval`, where every
    /// image must count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_records: Option<BadRecordPolicy>,
    /// Ours: with `skip`, the most records an epoch may skip, as a fraction of its samples
    /// (default 0.001).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bad_fraction: Option<f64>,
}

impl LoaderOptions {
    /// The bad-record policy, `default` when the YAML names none.
    pub fn bad_records(&self, default: BadRecordPolicy) -> BadRecords {
        let fraction = self.max_bad_fraction.unwrap_or(DEFAULT_MAX_BAD_FRACTION);
        match self.bad_records.unwrap_or(default) {
            BadRecordPolicy::Fail => BadRecords::FAIL,
            BadRecordPolicy::Skip => BadRecords::skip(fraction),
        }
    }
}

//! A split of a shard directory as one [`Dataset`].

use super::arrow::ArrowShard;
use super::lmdb::LmdbShard;
use super::manifest::{Manifest, ShardEntry, ShardFormat};
use super::open_shards::{OpenBudget, OpenShards};
use super::record::Record;
use crate::dataset::interface::Dataset;
use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::sync::Arc;

enum Shard {
    Lmdb(LmdbShard),
    Arrow(ArrowShard),
}

impl Shard {
    fn len(&self) -> u64 {
        match self {
            Self::Lmdb(s) => s.len(),
            Self::Arrow(s) => s.len(),
        }
    }

    fn get(&self, i: u64) -> Result<Record> {
        match self {
            Self::Lmdb(s) => s.get(i),
            Self::Arrow(s) => s.get(i),
        }
    }
}

/// All shards of one split, indexed as one sequence of records. Shards open on first use,
/// within the process's limits ([`OpenShards`]).
pub struct ShardedDataset {
    dir: PathBuf,
    split: String,
    manifest: Manifest,
    entries: Vec<ShardEntry>,
    open: OpenShards<Shard>,
    /// Cumulative record counts: shard `k` holds records `starts[k]..starts[k + 1]`.
    starts: Vec<u64>,
}

impl ShardedDataset {
    /// Opens `split` in `dir`: every shard file must exist with the size the manifest records
    /// (a cheap check of thousands of shards); a shard's record count is checked when it is
    /// first opened.
    pub fn open(dir: &Path, split: &str) -> Result<Self> {
        Self::open_within(dir, split, OpenBudget::from_limits())
    }

    /// [`open`](Self::open) with an explicit budget of open shards.
    pub fn open_within(dir: &Path, split: &str, budget: OpenBudget) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        let entries = manifest.split(split)?.shards.clone();
        let mut starts = vec![0u64];
        for entry in &entries {
            let path = dir.join(&entry.file);
            let len = std::fs::metadata(&path)
                .with_context(|| format!("shard {} of the manifest", path.display()))?
                .len();
            ensure!(
                len == entry.bytes,
                "{} is {len} bytes, the manifest says {}: the shard is truncated or replaced \
                 (run `dinov2 shards verify {}`)",
                path.display(),
                entry.bytes,
                dir.display()
            );
            starts.push(starts.last().unwrap() + entry.records);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            split: split.to_string(),
            manifest,
            entries,
            open: OpenShards::new(budget),
            starts,
        })
    }

    /// Shard `k`, opened (and its record count checked) if it is not open.
    fn shard(&self, k: usize) -> Result<Arc<Shard>> {
        self.open.get(k, || {
            let entry = &self.entries[k];
            let path = self.dir.join(&entry.file);
            let shard = match self.manifest.shard_format {
                ShardFormat::Lmdb => Shard::Lmdb(LmdbShard::open(&path)?),
                ShardFormat::Arrow => Shard::Arrow(ArrowShard::open(&path)?),
            };
            ensure!(
                shard.len() == entry.records,
                "{} holds {} records, the manifest says {}: the shard is truncated or replaced \
                 (run `dinov2 shards verify {}`)",
                path.display(),
                shard.len(),
                entry.records,
                self.dir.display()
            );
            Ok((shard, entry.bytes))
        })
    }

    /// (shards open now, bytes they map, openings so far).
    pub fn open_stats(&self) -> (usize, u64, u64) {
        self.open.stats()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// (shard number, record within shard) of global record `index`.
    pub fn locate(&self, index: usize) -> Result<(usize, u64)> {
        let index = index as u64;
        if index >= *self.starts.last().unwrap() {
            bail!(
                "record {index} is out of range: split {} of {} has {} records",
                self.split,
                self.dir.display(),
                self.starts.last().unwrap()
            );
        }
        let k = self.starts.partition_point(|&s| s <= index) - 1;
        Ok((k, index - self.starts[k]))
    }
}

impl Dataset for ShardedDataset {
    fn len(&self) -> usize {
        *self.starts.last().unwrap() as usize
    }

    fn get(&self, index: usize) -> Result<Record> {
        let (k, i) = self.locate(index)?;
        let record = self.shard(k)?.get(i)?;
        ensure!(
            (record.label as usize) < self.manifest.classes.len(),
            "{} record {i}: label {} is outside the {} classes",
            self.manifest.splits[&self.split].shards[k].file,
            record.label,
            self.manifest.classes.len()
        );
        Ok(record)
    }

    fn classes(&self) -> &[String] {
        &self.manifest.classes
    }

    fn describe(&self) -> String {
        format!(
            "{} shards ({:?}, split {}, {} records)",
            self.dir.display(),
            self.manifest.shard_format,
            self.split,
            self.len()
        )
    }
}

/// Opens `dir`'s split, with the directory named in errors.
pub(crate) fn open_split(dir: &Path, split: &str) -> Result<ShardedDataset> {
    ShardedDataset::open(dir, split).with_context(|| format!("opening shards in {}", dir.display()))
}

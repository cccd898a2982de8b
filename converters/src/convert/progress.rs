//! The resume journal: `.progress.json` records the finished shards (with checksums and their
//! part of the report) after every shard, so a killed run resumes; half-written files of a
//! killed run are removed.

use super::report::ReportItem;
use anyhow::{Context, Result, bail};
use pipeline::shards::manifest::{ConvertOptions, ShardEntry, ShardFormat, file_checksum};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const PROGRESS_FILE: &str = ".progress.json";
pub(super) const PARTIAL_SUFFIX: &str = ".partial";

/// A finished shard: its manifest entry and its part of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DoneShard {
    pub(super) split: String,
    pub(super) index: usize,
    pub(super) entry: ShardEntry,
    pub(super) resized: u64,
    pub(super) report: Vec<ReportItem>,
}

/// `.progress.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Progress {
    pub(super) shard_format: ShardFormat,
    pub(super) source_root: String,
    pub(super) options: ConvertOptions,
    pub(super) classes: Vec<String>,
    pub(super) split_sources: BTreeMap<String, u64>,
    pub(super) done: BTreeMap<String, DoneShard>,
}

/// Deletes shards and temporary files left half-written by a killed run.
pub(super) fn remove_partials(out: &Path) -> Result<()> {
    pipeline::atomic::remove_stale_temps(out)?;
    for e in std::fs::read_dir(out).with_context(|| format!("listing {}", out.display()))? {
        let e = e?;
        if e.file_name().to_string_lossy().ends_with(PARTIAL_SUFFIX) {
            std::fs::remove_file(e.path())
                .with_context(|| format!("removing {}", e.path().display()))?;
        }
    }
    Ok(())
}

/// `.progress.json` as a resumed conversion reads it.
fn parse_progress(bytes: &[u8]) -> Result<Progress> {
    Ok(serde_json::from_slice(bytes)?)
}

/// Whether `bytes` read as a `.progress.json` (`dinov2 bench fuzz` feeds it hostile files).
pub fn check_progress_file(bytes: &[u8]) -> Result<()> {
    parse_progress(bytes).map(drop)
}

/// The progress of an interrupted run, with its finished shards re-checked; a fresh one when
/// there is none. An interrupted run with other settings is an error.
pub(super) fn load_progress(out: &Path, fresh: &Progress) -> Result<Progress> {
    let path = out.join(PROGRESS_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(fresh.clone());
    };
    let mut old = parse_progress(&bytes)
        .with_context(|| format!("{} is corrupt; delete it to start over", path.display()))?;
    let same = old.shard_format == fresh.shard_format
        && old.options == fresh.options
        && old.classes == fresh.classes
        && old.source_root == fresh.source_root
        && old.split_sources == fresh.split_sources;
    if !same {
        bail!(
            "{} holds an interrupted conversion with other settings or sources; rerun it with \
             the same options, or choose another --out",
            out.display()
        );
    }
    old.done.retain(|file, shard| {
        let ok = file_checksum(&out.join(file))
            .is_ok_and(|(len, sum)| len == shard.entry.bytes && sum == shard.entry.xxh3_128);
        if !ok {
            tracing::warn!("{file} does not match the progress record; converting it again");
        }
        ok
    });
    Ok(old)
}

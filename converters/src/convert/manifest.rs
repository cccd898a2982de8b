//! The manifest and `report.json` of a complete conversion, from its progress record.

use super::progress::{DoneShard, Progress};
use super::report::Report;
use crate::source::Ignored;
use pipeline::shards::manifest::{Counts, FORMAT_NAME, FORMAT_VERSION, Manifest, SplitManifest};
use std::collections::BTreeMap;

/// The manifest and report of a (complete) progress record.
pub(super) fn manifest_from(progress: &Progress, ignored: &[Ignored]) -> (Manifest, Report) {
    let mut splits: BTreeMap<String, SplitManifest> = progress
        .split_sources
        .iter()
        .map(|(name, &sources)| {
            (
                name.clone(),
                SplitManifest {
                    sources,
                    ..Default::default()
                },
            )
        })
        .collect();
    let mut counts = Counts {
        ignored: ignored.len() as u64,
        ..Default::default()
    };
    let mut report = Report {
        items: Vec::new(),
        ignored: ignored.to_vec(),
    };
    let mut done: Vec<&DoneShard> = progress.done.values().collect();
    done.sort_by(|a, b| (&a.split, a.index).cmp(&(&b.split, b.index)));
    for shard in done {
        let split = splits.entry(shard.split.clone()).or_default();
        split.records += shard.entry.records;
        split.shards.push(shard.entry.clone());
        counts.resized += shard.resized;
        for it in &shard.report {
            let map = match it.action.as_str() {
                "converted" => &mut counts.converted,
                "skipped" => &mut counts.skipped,
                _ => {
                    counts.misnamed += 1;
                    continue;
                }
            };
            *map.entry(it.reason.clone()).or_default() += 1;
        }
        report.items.extend(shard.report.iter().cloned());
    }
    let manifest = Manifest {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        shard_format: progress.shard_format,
        created_by: format!("dinov2 {}", env!("CARGO_PKG_VERSION")),
        source_root: progress.source_root.clone(),
        options: progress.options.clone(),
        classes: progress.classes.clone(),
        splits,
        counts,
    };
    (manifest, report)
}

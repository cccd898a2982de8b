//! `dinov2 shards info|verify`: what a shard directory holds, and whether every byte of it is
//! still what the conversion wrote.

use crate::prepare::Codec;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use pipeline::dataset::Dataset;
use pipeline::shards::ShardedDataset;
use pipeline::shards::manifest::{Manifest, file_checksum};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A human summary of `dir/manifest.json`.
pub fn info(dir: &Path) -> Result<String> {
    let m = Manifest::load(dir)?;
    let mut s = String::new();
    let o = &m.options;
    writeln!(
        s,
        "{}: {:?} shards, {} (format v{})",
        dir.display(),
        m.shard_format,
        m.created_by,
        m.format_version
    )?;
    writeln!(s, "  source      {}", m.source_root)?;
    writeln!(
        s,
        "  options     shard size {}, {}, quality {}, on error {}",
        o.shard_size,
        o.max_side
            .map_or("JPEG passthrough".to_string(), |m| format!("max side {m}")),
        o.quality,
        o.on_error
    )?;
    writeln!(
        s,
        "  classes     {} ({} ... {})",
        m.classes.len(),
        m.classes.first().map_or("", |c| c),
        m.classes.last().map_or("", |c| c)
    )?;
    for (name, split) in &m.splits {
        let bytes: u64 = split.shards.iter().map(|x| x.bytes).sum();
        writeln!(
            s,
            "  {name:<11} {} records from {} sources in {} shards, {:.1} MB",
            split.records,
            split.sources,
            split.shards.len(),
            bytes as f64 / 1e6
        )?;
    }
    let c = &m.counts;
    let list = |map: &std::collections::BTreeMap<String, u64>| {
        if map.is_empty() {
            "none".to_string()
        } else {
            map.iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    writeln!(s, "  converted   {}", list(&c.converted))?;
    writeln!(s, "  skipped     {}", list(&c.skipped))?;
    writeln!(
        s,
        "  resized {}, misnamed {}, ignored {} (details in report.json)",
        c.resized, c.misnamed, c.ignored
    )?;
    Ok(s)
}

/// Result of [`verify`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub shards: usize,
    pub records: u64,
    pub bytes: u64,
    /// Everything wrong, each naming the shard and record.
    pub problems: Vec<String>,
}

/// Checks every shard's size and checksum against the manifest, then reads every record
/// (record checksum, label range) and decodes its JPEG.
pub fn verify(dir: &Path, workers: usize, show_progress: bool) -> Result<VerifyReport> {
    let m = Manifest::load(dir)?;
    let mut report = VerifyReport {
        shards: 0,
        records: 0,
        bytes: 0,
        problems: Vec::new(),
    };
    let total_bytes: u64 = m
        .splits
        .values()
        .flat_map(|s| &s.shards)
        .map(|s| s.bytes)
        .sum();
    let bar = bar(show_progress, total_bytes, "checksums");
    for split in m.splits.values() {
        for shard in &split.shards {
            report.shards += 1;
            match file_checksum(&dir.join(&shard.file)) {
                Err(e) => report.problems.push(format!("{}: {e:#}", shard.file)),
                Ok((len, _)) if len != shard.bytes => report.problems.push(format!(
                    "{}: {len} bytes, the manifest says {} (truncated or replaced)",
                    shard.file, shard.bytes
                )),
                Ok((_, sum)) if sum != shard.xxh3_128 => report.problems.push(format!(
                    "{}: checksum {sum} differs from the manifest's {}",
                    shard.file, shard.xxh3_128
                )),
                Ok((len, _)) => report.bytes += len,
            }
            bar.inc(shard.bytes);
        }
    }
    bar.finish_and_clear();
    for name in m.splits.keys() {
        let ds = match ShardedDataset::open(dir, name) {
            Ok(ds) => ds,
            Err(e) => {
                report.problems.push(format!("split {name}: {e:#}"));
                continue;
            }
        };
        let bar = self::bar(
            show_progress,
            ds.len() as u64,
            &format!("records of {name}"),
        );
        let next = AtomicUsize::new(0);
        let problems = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                scope.spawn(|| {
                    let mut codec = match Codec::new(None, 95, crate::prepare::Validate::Decode) {
                        Ok(c) => c,
                        Err(e) => {
                            problems
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((0, format!("{e:#}")));
                            return;
                        }
                    };
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= ds.len() {
                            break;
                        }
                        let problem = match ds.get(i) {
                            Err(e) => Some(format!("{e:#}")),
                            Ok(r) => codec.validate_jpeg(&r.bytes).err().map(|skip| {
                                let (k, j) = ds.locate(i).unwrap_or((0, 0));
                                format!(
                                    "{} record {j} ({}): JPEG does not decode: {}",
                                    ds.manifest().splits[name].shards[k].file,
                                    r.key,
                                    skip.detail
                                )
                            }),
                        };
                        if let Some(p) = problem {
                            problems
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((i, p));
                        }
                        bar.inc(1);
                    }
                });
            }
        });
        bar.finish_and_clear();
        let mut found = problems.into_inner().unwrap_or_else(|e| e.into_inner());
        found.sort();
        report.problems.extend(found.into_iter().map(|(_, p)| p));
        report.records += ds.len() as u64;
    }
    Ok(report)
}

fn bar(show: bool, len: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let template = if what == "checksums" {
        "{spinner} checksums {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}".to_string()
    } else {
        format!("{{spinner}} {what} {{bar:30}} {{pos}}/{{len}} {{per_sec}} ETA {{eta}}")
    };
    bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    bar
}

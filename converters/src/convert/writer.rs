//! The writer: outcomes in source order into the shard being written under a temporary name,
//! each shard synced, checksummed and renamed into place when complete, and the resume
//! journal updated after it.

use super::args::{ConvertArgs, OnError};
use super::jobs::{Job, Outcome};
use super::progress::{DoneShard, PARTIAL_SUFFIX, PROGRESS_FILE, Progress};
use super::report::item;
use crate::prepare::{Prepared, Skip};
use crate::source::SourcePlan;
use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use pipeline::atomic::write_atomic;
use pipeline::shards::manifest::{FORMAT_NAME, FORMAT_VERSION, ShardEntry, file_checksum};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

#[allow(clippy::too_many_arguments)]
pub(super) fn write_in_order(
    plan: &SourcePlan,
    args: &ConvertArgs,
    jobs: &[Job],
    item_job: &[(usize, u64)],
    progress: &mut Progress,
    rx: &crossbeam_channel::Receiver<Outcome>,
    written: &(Mutex<usize>, Condvar),
    bar: &ProgressBar,
    bytes_read: &AtomicUsize,
) -> Result<()> {
    let t0 = Instant::now();
    let mut pending: HashMap<usize, (u64, Result<Prepared, Skip>)> = HashMap::new();
    let mut next_write = 0usize;
    let mut current: Option<(crate::shard_writer::ShardWriter, DoneShard)> = None;
    while next_write < item_job.len() {
        let (i, s, outcome) = rx
            .recv()
            .context("a conversion worker stopped unexpectedly")?;
        if i == usize::MAX {
            let detail = outcome.err().map(|e| e.detail).unwrap_or_default();
            bail!("could not start an image codec: {detail}");
        }
        pending.insert(i, (s, outcome));
        while let Some((s, outcome)) = pending.remove(&next_write) {
            let (j, _) = item_job[next_write];
            let job = &jobs[j];
            let entry = &plan.splits[job.split_pos].entries[s as usize];
            if current.is_none() {
                let meta = serde_json::json!({
                    "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "split": job.split,
                    "shard": job.index, "first_source": job.first_source, "sources": job.sources,
                });
                let tmp = args.out.join(format!("{}{PARTIAL_SUFFIX}", job.file));
                let writer = crate::shard_writer::ShardWriter::create(args.format, &tmp, meta)?;
                let done = DoneShard {
                    split: job.split.clone(),
                    index: job.index,
                    entry: ShardEntry {
                        file: job.file.clone(),
                        records: 0,
                        first_source: job.first_source,
                        sources: job.sources,
                        bytes: 0,
                        xxh3_128: String::new(),
                    },
                    resized: 0,
                    report: Vec::new(),
                };
                current = Some((writer, done));
            }
            let (writer, done) = current.as_mut().unwrap();
            match outcome {
                Ok(p) => {
                    writer.append(
                        &entry.key,
                        entry.label,
                        (p.width, p.height),
                        p.crc32c,
                        p.bytes,
                    )?;
                    done.entry.records += 1;
                    done.resized += p.resized as u64;
                    if let Some(kind) = p.converted {
                        done.report.push(item(
                            &entry.key,
                            "converted",
                            kind,
                            "stored as an RGB JPEG",
                        ));
                    }
                    if let Some(content) = p.misnamed {
                        let detail = format!("content is {content}, the extension says otherwise");
                        done.report
                            .push(item(&entry.key, "misnamed", content, &detail));
                    }
                }
                Err(skip) => {
                    if args.on_error == OnError::Fail {
                        bail!(
                            "{}: {}: {} (--on-error fail; use --on-error skip to leave such files out)",
                            plan.path(entry).display(),
                            skip.reason,
                            skip.detail
                        );
                    }
                    done.report
                        .push(item(&entry.key, "skipped", skip.reason, &skip.detail));
                }
            }
            next_write += 1;
            bar.inc(1);
            if next_write.is_multiple_of(64) {
                let mb = bytes_read.load(Ordering::Relaxed) as f64 / 1e6;
                bar.set_message(format!(
                    "{:.1} MB/s",
                    mb / t0.elapsed().as_secs_f64().max(1e-9)
                ));
            }
            let last_of_job = next_write == item_job.len() || item_job[next_write].0 != j;
            if last_of_job {
                let (writer, mut done) = current.take().unwrap();
                finish_shard(args, writer, &mut done)?;
                progress.done.insert(done.entry.file.clone(), done);
                write_atomic(
                    &args.out.join(PROGRESS_FILE),
                    &serde_json::to_vec(&progress)?,
                )?;
            }
            *written.0.lock().unwrap_or_else(|e| e.into_inner()) = next_write;
            written.1.notify_all();
        }
    }
    Ok(())
}

/// Syncs the shard, checksums it and renames it into place.
fn finish_shard(
    args: &ConvertArgs,
    writer: crate::shard_writer::ShardWriter,
    done: &mut DoneShard,
) -> Result<()> {
    writer.finish()?;
    let tmp = args
        .out
        .join(format!("{}{PARTIAL_SUFFIX}", done.entry.file));
    let (bytes, sum) = file_checksum(&tmp)?;
    done.entry.bytes = bytes;
    done.entry.xxh3_128 = sum;
    let dest = args.out.join(&done.entry.file);
    std::fs::rename(&tmp, &dest).with_context(|| format!("renaming {} into place", tmp.display()))
}

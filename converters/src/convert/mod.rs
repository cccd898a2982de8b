//! The conversion: source plan -> shards + manifest, in parallel, resumable.
//!
//! Work is split into shards of `shard_size` sources. Worker threads read and prepare images
//! in any order; one writer (this thread) puts them in source order into the shard being
//! written under a temporary name, and renames each shard into place once it is complete and
//! synced. After every shard, `.progress.json` records the finished shards (with checksums and
//! their part of the report), so a killed run resumes: finished shards whose size and checksum
//! still match are kept, the rest redone. `manifest.json` is written last; its presence means
//! the conversion is complete. Nothing depends on the worker count or on interruptions.
//!
//! One concept a file: the options (`args`), the shards to write (`jobs`), the worker pipeline
//! (`workers`) and the ordered writer (`writer`), the resume journal (`progress`), the report
//! (`report`) and the manifest (`manifest`).

mod args;
mod jobs;
mod manifest;
mod progress;
mod report;
mod workers;
mod writer;

pub use args::{ConvertArgs, OnError};
pub use progress::{PROGRESS_FILE, check_progress_file};
pub use report::{REPORT_FILE, Report, ReportItem};

use crate::source::SourcePlan;
use anyhow::{Context, Result, bail};
use jobs::pending_jobs;
use manifest::manifest_from;
use pipeline::atomic::write_atomic;
use pipeline::shards::manifest::Manifest;
use progress::{Progress, load_progress, remove_partials};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;
use workers::run_jobs;

/// What a conversion did.
#[derive(Debug, Clone, Serialize)]
pub struct ConvertSummary {
    pub manifest: Manifest,
    /// Shards kept from an earlier, interrupted run.
    pub resumed_shards: usize,
    pub written_shards: usize,
    pub images_processed: u64,
    pub bytes_read: u64,
    pub seconds: f64,
    pub already_complete: bool,
}

/// Runs (or resumes) the conversion of `plan` into `args.out`.
pub fn convert(plan: &SourcePlan, args: &ConvertArgs) -> Result<ConvertSummary> {
    if args.shard_size == 0 {
        bail!("--shard-size must be at least 1");
    }
    let out = &args.out;
    let root = plan
        .root
        .canonicalize()
        .with_context(|| format!("source root {}", plan.root.display()))?;
    let out_abs = out.canonicalize().or_else(|_| std::path::absolute(out))?;
    if out_abs.starts_with(&root) || out_abs.starts_with(&plan.root) {
        bail!(
            "--out {} lies inside --root {}: the shards would be read back as images; choose an \
             output directory outside the source tree",
            out.display(),
            plan.root.display()
        );
    }
    // One conversion per output directory, until this function returns.
    let _lock = pipeline::dir_lock::DirLock::acquire(out, "dinov2 convert")?;
    let source_root = root.display().to_string();
    let fresh = Progress {
        shard_format: args.format,
        source_root: source_root.clone(),
        options: args.options(),
        classes: plan.classes.clone(),
        split_sources: plan
            .splits
            .iter()
            .map(|s| (s.name.clone(), s.entries.len() as u64))
            .collect(),
        done: BTreeMap::new(),
    };
    let t0 = Instant::now();

    if out
        .join(pipeline::shards::manifest::MANIFEST_FILE)
        .is_file()
    {
        let existing = Manifest::load(out)?;
        let expected = manifest_from(&fresh, &plan.ignored).0;
        let same_setup = existing.shard_format == expected.shard_format
            && existing.options == expected.options
            && existing.classes == expected.classes
            && existing.source_root == expected.source_root
            && existing.splits.keys().eq(expected.splits.keys());
        if !same_setup {
            bail!(
                "{} already holds a finished conversion with other settings or sources; \
                 choose another --out or delete it",
                out.display()
            );
        }
        for split in existing.splits.values() {
            for s in &split.shards {
                let len = std::fs::metadata(out.join(&s.file)).map(|m| m.len()).ok();
                if len != Some(s.bytes) {
                    bail!(
                        "{} is finished but {} is missing or changed; run `dinov2 shards verify`, \
                         or delete the directory and convert again",
                        out.display(),
                        s.file
                    );
                }
            }
        }
        return Ok(ConvertSummary {
            manifest: existing,
            resumed_shards: 0,
            written_shards: 0,
            images_processed: 0,
            bytes_read: 0,
            seconds: t0.elapsed().as_secs_f64(),
            already_complete: true,
        });
    }

    remove_partials(out)?;
    let mut progress = load_progress(out, &fresh)?;
    let resumed_shards = progress.done.len();

    let jobs = pending_jobs(plan, args, &progress);
    let t_jobs = Instant::now();
    let stats = run_jobs(plan, args, &jobs, &mut progress)?;
    tracing::debug!(
        "converted {} shards in {:.3} s",
        jobs.len(),
        t_jobs.elapsed().as_secs_f64()
    );
    let t_sync = Instant::now();
    // Make this run's shards durable once, before the manifest says they are complete.
    for job in &jobs {
        let path = out.join(&job.file);
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", path.display()))?;
    }
    tracing::debug!("synced in {:.3} s", t_sync.elapsed().as_secs_f64());

    let (manifest, report) = manifest_from(&progress, &plan.ignored);
    write_atomic(&out.join(REPORT_FILE), &serde_json::to_vec_pretty(&report)?)?;
    manifest.save(out)?;
    let _ = std::fs::remove_file(out.join(PROGRESS_FILE));
    Ok(ConvertSummary {
        manifest,
        resumed_shards,
        written_shards: jobs.len(),
        images_processed: stats.0,
        bytes_read: stats.1,
        seconds: t0.elapsed().as_secs_f64(),
        already_complete: false,
    })
}

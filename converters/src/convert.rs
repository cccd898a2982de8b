//! The conversion: source plan -> shards + manifest, in parallel, resumable.
//!
//! Work is split into shards of `shard_size` sources. Worker threads read and prepare images
//! in any order; one writer (this thread) puts them in source order into the shard being
//! written under a temporary name, and renames each shard into place once it is complete and
//! synced. After every shard, `.progress.json` records the finished shards (with checksums and
//! their part of the report), so a killed run resumes: finished shards whose size and checksum
//! still match are kept, the rest redone. `manifest.json` is written last; its presence means
//! the conversion is complete. Nothing depends on the worker count or on interruptions.

use crate::prepare::{Codec, Prepared, Skip, Validate};
use crate::source::{Ignored, SourcePlan};
use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pipeline::atomic::write_atomic;
use pipeline::shards::manifest::{
    ConvertOptions, Counts, FORMAT_NAME, FORMAT_VERSION, Manifest, ShardEntry, ShardFormat,
    SplitManifest, file_checksum,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

pub const PROGRESS_FILE: &str = ".progress.json";
pub const REPORT_FILE: &str = "report.json";
const PARTIAL_SUFFIX: &str = ".partial";

/// What to do with a source that cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Skip,
    Fail,
}

impl OnError {
    pub fn name(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Fail => "fail",
        }
    }
}

/// How to convert.
#[derive(Debug, Clone)]
pub struct ConvertArgs {
    pub out: PathBuf,
    pub format: ShardFormat,
    pub shard_size: u64,
    pub workers: usize,
    pub max_side: Option<u32>,
    pub quality: u8,
    pub on_error: OnError,
    pub validate: Validate,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

impl ConvertArgs {
    fn options(&self) -> ConvertOptions {
        ConvertOptions {
            shard_size: self.shard_size,
            max_side: self.max_side,
            quality: self.quality,
            on_error: self.on_error.name().into(),
            validate: self.validate.name().into(),
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportItem {
    pub key: String,
    /// `skipped`, `converted` or `misnamed`.
    pub action: String,
    /// The counted reason (`empty file`, `cmyk`, `png`, ...).
    pub reason: String,
    pub detail: String,
}

/// `report.json`: every source that was not simply passed through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub items: Vec<ReportItem>,
    pub ignored: Vec<Ignored>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DoneShard {
    split: String,
    index: usize,
    entry: ShardEntry,
    resized: u64,
    report: Vec<ReportItem>,
}

/// `.progress.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Progress {
    shard_format: ShardFormat,
    source_root: String,
    options: ConvertOptions,
    classes: Vec<String>,
    split_sources: BTreeMap<String, u64>,
    done: BTreeMap<String, DoneShard>,
}

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

struct Job {
    split: String,
    index: usize,
    file: String,
    first_source: u64,
    sources: u64,
    split_pos: usize,
}

fn shard_file(split: &str, index: usize, format: ShardFormat) -> String {
    format!("{split}-{index:05}.{}", format.extension())
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

    let mut jobs = Vec::new();
    for (split_pos, split) in plan.splits.iter().enumerate() {
        let n = split.entries.len() as u64;
        let shards = n.div_ceil(args.shard_size) as usize;
        for index in 0..shards {
            let file = shard_file(&split.name, index, args.format);
            if progress.done.contains_key(&file) {
                continue;
            }
            let first_source = index as u64 * args.shard_size;
            jobs.push(Job {
                split: split.name.clone(),
                index,
                file,
                first_source,
                sources: args.shard_size.min(n - first_source),
                split_pos,
            });
        }
    }
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

/// Deletes shards and temporary files left half-written by a killed run.
fn remove_partials(out: &Path) -> Result<()> {
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
fn load_progress(out: &Path, fresh: &Progress) -> Result<Progress> {
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

/// Outcome of one source.
type Outcome = (usize, u64, Result<Prepared, Skip>);

/// Processes every job; returns (images processed, bytes read).
fn run_jobs(
    plan: &SourcePlan,
    args: &ConvertArgs,
    jobs: &[Job],
    progress: &mut Progress,
) -> Result<(u64, u64)> {
    // Global item i -> (job, source index in split).
    let mut item_job = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        item_job.extend((0..job.sources).map(|s| (j, job.first_source + s)));
    }
    let total = item_job.len();
    let workers = args.workers.max(1);
    let window = 64 * workers + 64;
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let written = (Mutex::new(0usize), Condvar::new());
    let bar = progress_bar(total as u64, args.progress);
    let bytes_read = AtomicUsize::new(0);
    let (tx, rx) = crossbeam_channel::bounded::<Outcome>(4 * workers);

    let result = std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, abort, written, item_job, bytes_read) =
                (&next, &abort, &written, &item_job, &bytes_read);
            scope.spawn(move || {
                let mut codec = match Codec::new(args.max_side, args.quality, args.validate) {
                    Ok(c) => c,
                    Err(e) => {
                        abort.store(true, Ordering::SeqCst);
                        let _ = tx.send((
                            usize::MAX,
                            0,
                            Err(Skip {
                                reason: "codec",
                                detail: e.to_string(),
                            }),
                        ));
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total || abort.load(Ordering::SeqCst) {
                        break;
                    }
                    {
                        let mut w = written.0.lock().unwrap_or_else(|e| e.into_inner());
                        while i >= *w + window && !abort.load(Ordering::SeqCst) {
                            w = written.1.wait(w).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                    let (j, s) = item_job[i];
                    let entry = &plan.splits[jobs[j].split_pos].entries[s as usize];
                    let outcome = match std::fs::read(plan.path(entry)) {
                        Ok(bytes) => {
                            bytes_read.fetch_add(bytes.len(), Ordering::Relaxed);
                            codec.prepare(&entry.key, bytes)
                        }
                        Err(e) => Err(Skip {
                            reason: "unreadable",
                            detail: e.to_string(),
                        }),
                    };
                    if tx.send((i, s, outcome)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let r = write_in_order(
            plan,
            args,
            jobs,
            &item_job,
            progress,
            &rx,
            &written,
            &bar,
            &bytes_read,
        );
        if r.is_err() {
            abort.store(true, Ordering::SeqCst);
            written.1.notify_all();
            while rx.recv().is_ok() {}
        }
        r
    });
    bar.finish_and_clear();
    if result.is_err() {
        // The shard being written is incomplete; finished shards stay for a rerun.
        let _ = remove_partials(&args.out);
    }
    result?;
    Ok((total as u64, bytes_read.load(Ordering::Relaxed) as u64))
}

fn progress_bar(total: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} images {per_sec} {msg} ETA {eta}",
        )
        .expect("valid template"),
    );
    bar
}

#[allow(clippy::too_many_arguments)]
fn write_in_order(
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

fn item(key: &str, action: &str, reason: &str, detail: &str) -> ReportItem {
    ReportItem {
        key: key.into(),
        action: action.into(),
        reason: reason.into(),
        detail: detail.into(),
    }
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

/// The manifest and report of a (complete) progress record.
fn manifest_from(progress: &Progress, ignored: &[Ignored]) -> (Manifest, Report) {
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

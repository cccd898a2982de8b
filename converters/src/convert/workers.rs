//! The worker pipeline: worker threads read and prepare sources in any order, a bounded window
//! ahead of the writer, which puts them in order into shards ([`write_in_order`]).

use super::args::ConvertArgs;
use super::jobs::{Job, Outcome};
use super::progress::{Progress, remove_partials};
use super::writer::write_in_order;
use crate::prepare::{Codec, Skip};
use crate::source::SourcePlan;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Processes every job; returns (images processed, bytes read).
pub(super) fn run_jobs(
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

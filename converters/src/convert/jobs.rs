//! The work of a conversion: the shards still to write ([`Job`]) and what a worker makes of one
//! source ([`Outcome`]).

use super::args::ConvertArgs;
use super::progress::Progress;
use crate::prepare::{Prepared, Skip};
use crate::source::SourcePlan;
use pipeline::shards::manifest::ShardFormat;

/// One shard to write: `sources` sources of a split from `first_source` on.
pub(super) struct Job {
    pub(super) split: String,
    pub(super) index: usize,
    pub(super) file: String,
    pub(super) first_source: u64,
    pub(super) sources: u64,
    pub(super) split_pos: usize,
}

fn shard_file(split: &str, index: usize, format: ShardFormat) -> String {
    format!("{split}-{index:05}.{}", format.extension())
}

/// The shards of `plan` that `progress` does not hold yet, in split and shard order.
pub(super) fn pending_jobs(plan: &SourcePlan, args: &ConvertArgs, progress: &Progress) -> Vec<Job> {
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
    jobs
}

/// Outcome of one source.
pub(super) type Outcome = (usize, u64, Result<Prepared, Skip>);

//! Shards on disk: a directory of LMDB or Arrow IPC files plus `manifest.json`.
//!
//! Layout of a shard directory:
//! - `manifest.json`: format version, class list, per-split shard list (record counts, byte
//!   sizes, xxh3-128 checksums), conversion options, source root and conversion counts;
//! - `report.json`: every skipped, converted or ignored source file with its reason;
//! - `{split}-{k:05}.lmdb` or `{split}-{k:05}.arrow`: the shards.
//!
//! Records are numbered per split in source order (sorted class folders, then sorted file
//! names); shard `k` holds the records of sources `[k * shard_size, (k + 1) * shard_size)`
//! that were not skipped.

pub mod arrow;
pub mod lmdb;
pub mod manifest;
pub mod open_shards;
pub mod record;
pub(crate) mod sharded;

pub use manifest::{Manifest, ShardEntry, ShardFormat, SplitManifest};
pub use sharded::ShardedDataset;

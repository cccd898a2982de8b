//! One dataset interface over every storage: LMDB shards, Arrow shards, a plain folder tree.

mod folder;
pub(crate) mod interface;

pub use crate::shards::record::Record;
pub use folder::{ClassTree, FolderDataset, IMAGE_EXTENSIONS, TreeEntry, scan_class_tree};
pub use interface::Dataset;

use anyhow::Result;
use std::path::Path;

/// Opens `path` as a dataset: a shard directory (it has a `manifest.json`; `split` picks the
/// split) or a class-per-subfolder image tree (`path/split` when that directory exists, else
/// `path` itself).
pub fn open_dataset(path: &Path, split: &str) -> Result<Box<dyn Dataset>> {
    if path.join(crate::shards::manifest::MANIFEST_FILE).is_file() {
        return Ok(Box::new(crate::shards::sharded::open_split(path, split)?));
    }
    let sub = path.join(split);
    let root = if sub.is_dir() {
        sub
    } else {
        path.to_path_buf()
    };
    Ok(Box::new(FolderDataset::open(&root)?))
}

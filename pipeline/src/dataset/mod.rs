//! One dataset interface over every storage: LMDB shards, Arrow shards, a plain folder tree.

mod folder;

pub use crate::shards::record::Record;
pub use folder::{ClassTree, FolderDataset, IMAGE_EXTENSIONS, TreeEntry, scan_class_tree};

use anyhow::Result;
use std::path::Path;

/// Random access to labelled images. Implementations are safe to use from many threads.
pub trait Dataset: Send + Sync {
    /// Number of records.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `index`: key, label, original size, image bytes. A corrupt record is an error
    /// naming the shard (or file) and the record.
    fn get(&self, index: usize) -> Result<Record>;

    /// Class names; labels index this list.
    fn classes(&self) -> &[String];

    /// One line for logs: where the data comes from and how much there is.
    fn describe(&self) -> String;
}

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

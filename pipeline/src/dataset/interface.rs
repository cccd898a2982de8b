//! The dataset interface every storage implements (LMDB shards, Arrow shards, a folder tree).

use crate::shards::record::Record;
use anyhow::Result;

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

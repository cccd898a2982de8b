//! How to convert: the options of a conversion ([`ConvertArgs`]) and what a source that cannot
//! be stored does ([`OnError`]).

use crate::prepare::Validate;
use pipeline::shards::manifest::{ConvertOptions, ShardFormat};
use std::path::PathBuf;

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
    pub(super) fn options(&self) -> ConvertOptions {
        ConvertOptions {
            shard_size: self.shard_size,
            max_side: self.max_side,
            quality: self.quality,
            on_error: self.on_error.name().into(),
            validate: self.validate.name().into(),
        }
    }
}

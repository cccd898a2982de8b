//! The data pipeline: everything between shards on disk and uint8 batches in memory.
//! This crate never links libtorch.

pub mod atomic;
pub mod simd;

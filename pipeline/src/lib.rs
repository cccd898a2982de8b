//! The data pipeline: everything between shards on disk and uint8 batches in memory.
//! This crate never links libtorch.

pub mod atomic;
pub mod bad_records;
pub mod collate;
pub mod dataset;
pub mod decode;
pub mod dir_lock;
pub mod image_kind;
pub mod jpeg_entropy;
pub mod loader;
pub mod masking;
pub mod presets;
pub mod rng;
pub mod sampler;
pub mod shards;
pub mod simd;
pub mod transforms;

pub use dataset::{Dataset, Record, open_dataset};

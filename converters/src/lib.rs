//! Converters: image folder trees into shards, foreign checkpoints into safetensors.
//! Shards are written under temporary names and renamed when complete, so partial output
//! never looks complete; see [`convert`] for resumption.

pub mod backbone;
pub mod convert;
pub mod imagenet;
pub mod numpy;
pub mod pdparams;
pub mod pickle;
pub mod prepare;
pub mod shard_writer;
pub mod source;
pub mod synth;
pub mod tensor;
pub mod torch_checkpoint;
pub mod verify;
pub mod weights;

//! Converters: image folder trees into shards, foreign checkpoints into safetensors.
//! They write through [`pipeline::atomic`] so that partial output never looks complete.

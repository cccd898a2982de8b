//! The DINOv2 model family on tch (libtorch), plus the libtorch runtime checks every binary needs.

pub mod runtime;

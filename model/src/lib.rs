//! The DINOv2 model family on tch (libtorch), plus the libtorch runtime checks every binary needs.

pub mod config;
pub mod foreach;
pub mod heads;
pub mod input;
pub mod layers;
pub mod loss;
pub mod runtime;
pub mod vision_transformer;
pub mod weights;

pub use config::{FfnLayer, VitConfig};
pub use vision_transformer::{DinoVisionTransformer, Features, Intermediate, Take};

//! Heads on top of the backbone: the DINO/iBOT projection head and the linear-probe classifier.

mod dino_head;
mod linear;

pub use dino_head::{DinoHead, DinoHeadConfig};
pub use linear::{LinearHead, linear_input};

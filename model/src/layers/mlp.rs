//! `Mlp`: `fc1` -> exact GELU -> `fc2` (ViT-S/B/L).

use super::vit_linear;
use tch::{Tensor, nn, nn::Module};

#[derive(Debug)]
pub struct Mlp {
    pub fc1: nn::Linear,
    pub fc2: nn::Linear,
}

impl Mlp {
    pub fn new(p: nn::Path, dim: i64, hidden: i64, bias: bool) -> Self {
        Self {
            fc1: vit_linear(&p / "fc1", dim, hidden, bias),
            fc2: vit_linear(&p / "fc2", hidden, dim, bias),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(x).gelu("none"))
    }
}

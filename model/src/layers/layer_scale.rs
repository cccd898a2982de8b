//! `LayerScale`: a learned per-channel scale `x * gamma` on each residual branch.

use tch::{Tensor, nn};

#[derive(Debug)]
pub struct LayerScale {
    pub gamma: Tensor,
}

impl LayerScale {
    pub fn new(p: nn::Path, dim: i64, init_values: f64) -> Self {
        Self {
            gamma: p.var("gamma", &[dim], nn::Init::Const(init_values)),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x * self.gamma.to_kind(x.kind())
    }
}

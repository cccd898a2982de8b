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

    /// `x * gamma` with type promotion, as the reference: under autocast a fp16/bf16 branch
    /// output times the fp32 gamma is fp32, so the residual stream stays fp32.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x * &self.gamma
    }
}

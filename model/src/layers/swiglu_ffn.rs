//! `SwiGLUFFNFused` (ViT-g): packed `w12` whose first half of output rows is the gate,
//! `w3(silu(x1) * x2)`. The hidden width rule lives in `VitConfig::ffn_hidden`.

use super::vit_linear;
use tch::{Tensor, nn, nn::Module};

#[derive(Debug)]
pub struct SwiGluFfn {
    pub w12: nn::Linear,
    pub w3: nn::Linear,
}

impl SwiGluFfn {
    pub fn new(p: nn::Path, dim: i64, hidden: i64, bias: bool) -> Self {
        Self {
            w12: vit_linear(&p / "w12", dim, 2 * hidden, bias),
            w3: vit_linear(&p / "w3", hidden, dim, bias),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let x12 = self.w12.forward(x).chunk(2, -1);
        self.w3.forward(&(x12[0].silu() * &x12[1]))
    }
}

//! Multi-head self-attention (`Attention` / `MemEffAttention`): one packed `qkv` projection
//! (rows ordered q heads, k heads, v heads), scaled dot-product attention, output `proj`.

use super::vit_linear;
use tch::{Tensor, nn, nn::Module};

#[derive(Debug)]
pub struct Attention {
    pub qkv: nn::Linear,
    pub proj: nn::Linear,
    pub num_heads: i64,
}

impl Attention {
    pub fn new(p: nn::Path, dim: i64, num_heads: i64, qkv_bias: bool, proj_bias: bool) -> Self {
        Self {
            qkv: vit_linear(&p / "qkv", dim, 3 * dim, qkv_bias),
            proj: vit_linear(&p / "proj", dim, dim, proj_bias),
            num_heads,
        }
    }

    /// `[B, N, D]` -> `[B, N, D]`. Through `scaled_dot_product_attention` (flash /
    /// memory-efficient kernels on CUDA), scale `head_dim^-0.5`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, c) = x.size3().expect("attention input is [B, N, D]");
        let h = self.num_heads;
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, n, 3, h, c / h])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let out = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        self.proj.forward(&out.transpose(1, 2).reshape([b, n, c]))
    }
}

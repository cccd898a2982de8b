//! `PatchEmbed`: a stride-`patch` convolution turning `[B, C, H, W]` into `[B, N, D]` tokens.

use anyhow::{Result, ensure};
use tch::{Tensor, nn};

#[derive(Debug)]
pub struct PatchEmbed {
    pub weight: Tensor,
    pub bias: Tensor,
    pub patch_size: i64,
}

impl PatchEmbed {
    /// `patch_embed.proj.{weight,bias}` with PyTorch's Conv2d default initialisation
    /// (kaiming_uniform(a=√5) = U(±1/√fan_in) for the weight, U(±1/√fan_in) for the bias).
    pub fn new(p: nn::Path, in_chans: i64, embed_dim: i64, patch_size: i64) -> Self {
        let p = p / "proj";
        let bound = 1.0 / ((in_chans * patch_size * patch_size) as f64).sqrt();
        let init = nn::Init::Uniform {
            lo: -bound,
            up: bound,
        };
        Self {
            weight: p.var(
                "weight",
                &[embed_dim, in_chans, patch_size, patch_size],
                init,
            ),
            bias: p.var("bias", &[embed_dim], init),
            patch_size,
        }
    }

    /// `[B, C, H, W]` -> `[B, H/p * W/p, D]`. Like the reference, H and W must be multiples of
    /// the patch size.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let size = x.size();
        ensure!(
            size.len() == 4,
            "expected images as [B, C, H, W], got shape {size:?}"
        );
        let p = self.patch_size;
        ensure!(
            size[2] % p == 0 && size[3] % p == 0,
            "input size {}x{} is not a multiple of the patch size {p}",
            size[2],
            size[3]
        );
        let w = self.weight.to_kind(x.kind());
        let b = self.bias.to_kind(x.kind());
        Ok(x.conv2d(&w, Some(&b), [p, p], [0, 0], [1, 1], 1)
            .flatten(2, 3)
            .transpose(1, 2))
    }
}

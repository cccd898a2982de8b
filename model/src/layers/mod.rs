//! The building blocks of the DINOv2 ViT, one per file as in the reference's `dinov2/layers/`.
//! Parameter paths equal the reference's state-dict keys.

mod attention;
mod block;
mod drop_path;
mod layer_scale;
mod mlp;
mod patch_embed;
mod swiglu_ffn;

pub use attention::Attention;
pub use block::{Block, Ffn};
pub use drop_path::{drop_add_residual_stochastic_depth, drop_path};
pub use layer_scale::LayerScale;
pub use mlp::Mlp;
pub use patch_embed::PatchEmbed;
pub use swiglu_ffn::SwiGluFfn;

use tch::nn;

/// `nn.Linear` initialised as the reference's `init_weights_vit_timm`: weights
/// trunc_normal(std 0.02) (bounds ±2, i.e. effectively a normal), biases zero.
pub fn vit_linear(p: nn::Path, in_dim: i64, out_dim: i64, bias: bool) -> nn::Linear {
    nn::linear(
        p,
        in_dim,
        out_dim,
        nn::LinearConfig {
            ws_init: nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
            bs_init: Some(nn::Init::Const(0.0)),
            bias,
        },
    )
}

/// `nn.LayerNorm(dim, eps=1e-6)`, the norm layer of every DINOv2 block and the final norm.
pub fn layer_norm(p: nn::Path, dim: i64) -> nn::LayerNorm {
    nn::layer_norm(
        p,
        vec![dim],
        nn::LayerNormConfig {
            eps: 1e-6,
            ..Default::default()
        },
    )
}

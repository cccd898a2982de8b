//! `DINOHead` (`dinov2/layers/dino_head.py`): an MLP (`mlp.0`, GELU, `mlp.2`, GELU, `mlp.4`
//! for 3 layers) to a bottleneck, L2 normalisation, then a weight-normed prototype layer
//! without bias (`last_layer.weight_g` `[K, 1]` filled with 1, `last_layer.weight_v` `[K, bottleneck]`).

use crate::layers::vit_linear;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn, nn::Module};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DinoHeadConfig {
    pub in_dim: i64,
    pub out_dim: i64,
    pub nlayers: i64,
    pub hidden_dim: i64,
    pub bottleneck_dim: i64,
    pub mlp_bias: bool,
}

impl DinoHeadConfig {
    /// The reference defaults (`dino.head_*` in `ssl_default_config.yaml`).
    pub fn new(in_dim: i64, out_dim: i64) -> Self {
        Self {
            in_dim,
            out_dim,
            nlayers: 3,
            hidden_dim: 2048,
            bottleneck_dim: 256,
            mlp_bias: true,
        }
    }
}

#[derive(Debug)]
pub struct DinoHead {
    pub mlp: Vec<nn::Linear>,
    pub weight_g: Tensor,
    pub weight_v: Tensor,
}

impl DinoHead {
    pub fn new(p: nn::Path, c: &DinoHeadConfig) -> Self {
        let n = c.nlayers.max(1) as usize;
        let mlp_p = &p / "mlp";
        let mut mlp = Vec::with_capacity(n);
        if n == 1 {
            mlp.push(vit_linear(
                &mlp_p / 0,
                c.in_dim,
                c.bottleneck_dim,
                c.mlp_bias,
            ));
        } else {
            // Sequential indices: Linear at 0, 2, 4, ... with GELU in between.
            for i in 0..n {
                let in_d = if i == 0 { c.in_dim } else { c.hidden_dim };
                let out_d = if i == n - 1 {
                    c.bottleneck_dim
                } else {
                    c.hidden_dim
                };
                mlp.push(vit_linear(&mlp_p / (2 * i), in_d, out_d, c.mlp_bias));
            }
        }
        let last = &p / "last_layer";
        // nn.Linear's default init for the direction (kaiming_uniform(a=√5) = U(±1/√fan_in)).
        let bound = 1.0 / (c.bottleneck_dim as f64).sqrt();
        let weight_v = last.var(
            "weight_v",
            &[c.out_dim, c.bottleneck_dim],
            nn::Init::Uniform {
                lo: -bound,
                up: bound,
            },
        );
        let weight_g = last.var("weight_g", &[c.out_dim, 1], nn::Init::Const(1.0));
        Self {
            mlp,
            weight_g,
            weight_v,
        }
    }

    /// The bottleneck output, before normalisation.
    pub fn mlp_forward(&self, x: &Tensor) -> Tensor {
        let mut x = x.shallow_clone();
        let n = self.mlp.len();
        for (i, l) in self.mlp.iter().enumerate() {
            x = l.forward(&x);
            if i + 1 < n {
                x = x.gelu("none");
            }
        }
        x
    }

    /// `weight_g * weight_v / ||weight_v||` (row norms).
    pub fn last_layer_weight(&self) -> Tensor {
        Tensor::internal_weight_norm(&self.weight_v, &self.weight_g, 0)
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.mlp_forward(x);
        let eps = if x.kind() == Kind::Half { 1e-6 } else { 1e-12 };
        let norm = x
            .norm_scalaropt_dim(2.0, [-1i64].as_slice(), true)
            .clamp_min(eps);
        let x = &x / norm.expand_as(&x);
        x.linear::<Tensor>(&self.last_layer_weight().to_kind(x.kind()), None)
    }
}

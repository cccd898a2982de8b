//! `Block`: the pre-norm transformer block
//! `x = x + ls1(attn(norm1(x))); x = x + ls2(ffn(norm2(x)))`, with the reference's
//! stochastic-depth rules in training.

use super::{
    Attention, LayerScale, Mlp, SwiGluFfn, drop_add_residual_stochastic_depth, drop_path,
    layer_norm,
};
use crate::config::{FfnLayer, VitConfig};
use tch::{Tensor, nn, nn::Module};

/// The block's feed-forward layer (`mlp.*` keys either way).
#[derive(Debug)]
pub enum Ffn {
    Mlp(Mlp),
    SwiGlu(SwiGluFfn),
}

impl Ffn {
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Self::Mlp(m) => m.forward(x),
            Self::SwiGlu(m) => m.forward(x),
        }
    }
}

#[derive(Debug)]
pub struct Block {
    pub norm1: nn::LayerNorm,
    pub attn: Attention,
    pub ls1: Option<LayerScale>,
    pub norm2: nn::LayerNorm,
    pub mlp: Ffn,
    pub ls2: Option<LayerScale>,
    pub drop_path: f64,
}

impl Block {
    pub fn new(p: nn::Path, c: &VitConfig, drop_path: f64) -> Self {
        let d = c.embed_dim;
        let mlp = match c.ffn_layer {
            FfnLayer::Mlp => Ffn::Mlp(Mlp::new(&p / "mlp", d, c.ffn_hidden(), c.ffn_bias)),
            FfnLayer::SwiGlu => {
                Ffn::SwiGlu(SwiGluFfn::new(&p / "mlp", d, c.ffn_hidden(), c.ffn_bias))
            }
        };
        let ls = |name: &str| {
            c.init_values
                .filter(|v| *v != 0.0)
                .map(|v| LayerScale::new(&p / name, d, v))
        };
        Self {
            norm1: layer_norm(&p / "norm1", d),
            attn: Attention::new(&p / "attn", d, c.num_heads, c.qkv_bias, c.proj_bias),
            ls1: ls("ls1"),
            norm2: layer_norm(&p / "norm2", d),
            mlp,
            ls2: ls("ls2"),
            drop_path,
        }
    }

    fn attn_residual(&self, x: &Tensor) -> Tensor {
        let y = self.attn.forward(&self.norm1.forward(x));
        match &self.ls1 {
            Some(ls) => ls.forward(&y),
            None => y,
        }
    }

    fn ffn_residual(&self, x: &Tensor) -> Tensor {
        let y = self.mlp.forward(&self.norm2.forward(x));
        match &self.ls2 {
            Some(ls) => ls.forward(&y),
            None => y,
        }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let r = self.drop_path;
        if train && r > 0.1 {
            let x = drop_add_residual_stochastic_depth(x, |t| self.attn_residual(t), r);
            drop_add_residual_stochastic_depth(&x, |t| self.ffn_residual(t), r)
        } else if train && r > 0.0 {
            // The reference applies `drop_path1` to both branches ("FIXME: drop_path2").
            let x = x + drop_path(&self.attn_residual(x), r, true);
            &x + drop_path(&self.ffn_residual(&x), r, true)
        } else {
            let x = x + self.attn_residual(x);
            &x + self.ffn_residual(&x)
        }
    }
}

//! The linear-probe classifier (`dinov2/eval/linear.py::LinearClassifier`, PASSL's
//! `linear.linear`) and the features it reads (`create_linear_input`).

use crate::vision_transformer::Intermediate;
use tch::{Kind, Tensor, nn, nn::Module};

#[derive(Debug)]
pub struct LinearHead {
    pub linear: nn::Linear,
}

impl LinearHead {
    /// `weight` `[classes, in_dim]` ~ N(0, 0.01), `bias` zero, under `p`.
    pub fn new(p: nn::Path, in_dim: i64, classes: i64) -> Self {
        Self {
            linear: nn::linear(
                p,
                in_dim,
                classes,
                nn::LinearConfig {
                    ws_init: nn::Init::Randn {
                        mean: 0.0,
                        stdev: 0.01,
                    },
                    bs_init: Some(nn::Init::Const(0.0)),
                    bias: true,
                },
            ),
        }
    }

    pub fn forward(&self, features: &Tensor) -> Tensor {
        self.linear.forward(features)
    }
}

/// `create_linear_input(x_tokens_list, use_n_blocks, use_avgpool)`: the class tokens of the
/// last `n_blocks` entries concatenated, then (with `avgpool`) the mean patch token of the last
/// one; float32. `layers` is `get_intermediate_layers(..)` output, earliest block first.
pub fn linear_input(layers: &[Intermediate], n_blocks: usize, avgpool: bool) -> Tensor {
    let used = &layers[layers.len() - n_blocks.min(layers.len())..];
    let mut parts: Vec<Tensor> = used.iter().map(|l| l.cls.shallow_clone()).collect();
    if avgpool {
        let last = &used[used.len() - 1].patches;
        parts.push(last.mean_dim([1i64].as_slice(), false, None));
    }
    Tensor::cat(&parts, -1).to_kind(Kind::Float)
}

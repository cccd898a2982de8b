//! The linear classifiers a probe trains on the same frozen features: PASSL's single
//! `linear` (last block CLS + mean patch token), or dinov2's grid over the number of last
//! blocks, average pooling and learning rates (`classifier_{n}_blocks_avgpool_{b}_lr_{lr}`).

use model::Intermediate;
use model::heads::{LinearHead, linear_input};
use tch::{Tensor, nn};

/// Which classifiers to train.
#[derive(Debug, Clone, PartialEq)]
pub enum Protocol {
    /// PASSL: one `linear` head on concat(CLS, mean patch) of the last block, at `lr`.
    Passl { lr: f64 },
    /// dinov2: every (n_last_blocks, avgpool, lr) combination; learning rates are scaled by
    /// `global_batch / scaling_batch`.
    Dinov2 {
        n_last_blocks: Vec<usize>,
        avgpool: Vec<bool>,
        lrs: Vec<f64>,
        scaling_batch: f64,
    },
}

#[derive(Debug)]
pub struct Classifier {
    pub name: String,
    pub n_blocks: usize,
    pub avgpool: bool,
    /// Base learning rate (before the schedule).
    pub lr: f64,
    pub head: LinearHead,
}

/// The classifiers of `protocol` for an `embed_dim`-wide backbone, created under `root`
/// (initialised N(0, 0.01) / 0 from libtorch's generator).
pub fn build(
    root: &nn::Path,
    protocol: &Protocol,
    embed_dim: i64,
    classes: i64,
    global_batch: usize,
) -> Vec<Classifier> {
    let width = |n: usize, avg: bool| embed_dim * (n as i64 + avg as i64);
    match protocol {
        Protocol::Passl { lr } => vec![Classifier {
            name: "linear".into(),
            n_blocks: 1,
            avgpool: true,
            lr: *lr,
            head: LinearHead::new(root / "linear", width(1, true), classes),
        }],
        Protocol::Dinov2 {
            n_last_blocks,
            avgpool,
            lrs,
            scaling_batch,
        } => {
            let mut out = Vec::new();
            for &n in n_last_blocks {
                for &avg in avgpool {
                    for &lr in lrs {
                        let scaled = lr * global_batch as f64 / scaling_batch;
                        let name = format!("classifier_{n}_blocks_avgpool_{avg}_lr_{scaled:.5}")
                            .replace('.', "_");
                        let head = LinearHead::new(root / name.as_str(), width(n, avg), classes);
                        out.push(Classifier {
                            name,
                            n_blocks: n,
                            avgpool: avg,
                            lr: scaled,
                            head,
                        });
                    }
                }
            }
            out
        }
    }
}

/// Blocks the backbone must return for these classifiers.
pub fn max_blocks(classifiers: &[Classifier]) -> usize {
    classifiers.iter().map(|c| c.n_blocks).max().unwrap_or(1)
}

/// Logits of every classifier on the backbone outputs (features in fp32, as dinov2).
pub fn logits(classifiers: &[Classifier], layers: &[Intermediate]) -> Vec<Tensor> {
    classifiers
        .iter()
        .map(|c| c.head.forward(&linear_input(layers, c.n_blocks, c.avgpool)))
        .collect()
}

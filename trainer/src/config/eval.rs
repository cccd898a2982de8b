//! This project's evaluation sections: `LinearEval` (PASSL's single head, or dinov2's grid
//! of linear classifiers) and `KNN` (dinov2's weighted k-NN on the frozen features).

use serde::{Deserialize, Serialize};

/// `LinearEval`: which classifiers the probe trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearEval {
    pub protocol: ProbeProtocol,
    /// dinov2 grid: the numbers of last blocks whose CLS tokens are concatenated.
    pub n_last_blocks_list: Vec<usize>,
    /// dinov2 grid: with and/or without the mean patch token of the last block.
    pub avgpool_list: Vec<bool>,
    /// dinov2 grid: base rates, each scaled by `global_batch / lr_scaling_batch`.
    pub learning_rates: Vec<f64>,
    pub lr_scaling_batch: u64,
}

impl Default for LinearEval {
    fn default() -> Self {
        Self {
            protocol: ProbeProtocol::Passl,
            n_last_blocks_list: vec![1, 4],
            avgpool_list: vec![false, true],
            learning_rates: vec![
                1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1,
            ],
            lr_scaling_batch: 256,
        }
    }
}

/// `passl`: one head on [CLS, mean patch] of the last block at `LRScheduler.learning_rate`.
/// `dinov2`: every (n_last_blocks, avgpool, lr) of the grid, the best kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeProtocol {
    #[default]
    Passl,
    Dinov2,
}

/// `KNN`: dinov2's k-NN evaluation (cosine similarity, `exp(sim / T)` votes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Knn {
    pub enabled: bool,
    pub nb_knn: Vec<usize>,
    pub temperature: f64,
    pub batch_size: u64,
}

impl Default for Knn {
    fn default() -> Self {
        Self {
            enabled: false,
            nb_knn: vec![10, 20, 100, 200],
            temperature: 0.07,
            batch_size: 256,
        }
    }
}

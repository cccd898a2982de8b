//! `LRScheduler` and `Optimizer`.

use super::global::Unit;
use serde::{Deserialize, Serialize};

/// `LRScheduler`, with the defaults of PASSL's `TimmCosine`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrScheduler {
    pub name: SchedulerName,
    /// The base rate (PASSL protocol: of the single head).
    pub learning_rate: f64,
    /// Required: PASSL's defaults disagree (the engine steps per `step`, `TimmCosine` counts
    /// in `epoch`s), so a config must say which.
    pub decay_unit: Unit,
    #[serde(default = "minus_one")]
    pub last_epoch: i64,
    /// Warm-up length in epochs (`round(warmup_epoch * steps_per_epoch)` steps when
    /// `decay_unit` is `step`, as PASSL).
    #[serde(default)]
    pub warmup_epoch: u64,
    #[serde(default)]
    pub eta_min: f64,
    #[serde(default)]
    pub warmup_start_lr: f64,
}

fn minus_one() -> i64 {
    -1
}

/// `TimmCosine` (PASSL: timm's cosine with warm-up, per epoch or per step) or
/// `CosineAnnealing` (dinov2: torch's `CosineAnnealingLR` over all iterations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerName {
    TimmCosine,
    CosineAnnealing,
}

/// `Optimizer`: PASSL's `Momentum` (torch SGD with momentum, dampening 0; `SGD` is accepted
/// as a synonym and written back as `Momentum`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optimizer {
    pub name: OptimizerName,
    #[serde(default = "point_nine")]
    pub momentum: f64,
    #[serde(default)]
    pub weight_decay: f64,
}

fn point_nine() -> f64 {
    0.9
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptimizerName {
    #[serde(alias = "SGD")]
    Momentum,
}

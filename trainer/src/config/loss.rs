//! `Loss`: the training (and evaluation) loss terms, `- CELoss: {weight: 1.0}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Loss {
    #[serde(rename = "Train")]
    pub train: Vec<LossTerm>,
    #[serde(rename = "Eval", default)]
    pub eval: Option<Vec<LossTerm>>,
}

/// One weighted term of PASSL's `CombinedLoss` (the weight is required there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LossTerm {
    /// Cross-entropy on the logits, computed in fp32.
    CELoss(CeLoss),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeLoss {
    pub weight: f64,
}

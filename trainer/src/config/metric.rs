//! `Metric`: `- TopkAcc: {topk: [1, 5]}` for training and evaluation.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    #[serde(rename = "Train", default)]
    pub train: Option<Vec<MetricTerm>>,
    #[serde(rename = "Eval", default)]
    pub eval: Option<Vec<MetricTerm>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetricTerm {
    TopkAcc(TopkAcc),
}

/// Top-k accuracies; the best checkpoint is chosen by top-1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopkAcc {
    #[serde(default = "one_five")]
    pub topk: Vec<usize>,
}

pub(crate) fn one_five() -> Vec<usize> {
    vec![1, 5]
}

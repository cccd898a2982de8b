//! The probes' accuracies as the demo reports them: per backbone, the linear probe's best top-1
//! and k-NN top-1 for each k, in percent.

use serde_json::Value;

use super::f;

/// `(metric, top-1 %)` of one probe result (`probes[i]` of `summary.json`): the linear probe,
/// then k-NN for each k.
pub(super) fn metrics(probe: &Value) -> Vec<(String, f64)> {
    let mut v = vec![("linear probe".to_string(), 100.0 * f(probe, "best_top1"))];
    for k in probe["knn"].as_array().into_iter().flatten() {
        v.push((format!("k-NN k={}", k["k"]), 100.0 * f(k, "top1")));
    }
    v
}

/// The legend name of a backbone.
pub(super) fn backbone_label(name: &str) -> String {
    match name {
        "pretrained" => "pretrained (DINOv2 teacher)".into(),
        "random" => "random initialisation".into(),
        o => o.into(),
    }
}

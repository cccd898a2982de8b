//! The trained linear head in the hub's format.

use super::classifiers::Classifier;
use anyhow::Result;
use std::path::Path;
use tch::Device;

/// The hub's linear-head format (`weight`, `bias`) of the classifier `name` (the best one),
/// written to `linear_head.safetensors` in `out_dir`; nothing when no classifier has that name.
pub(super) fn save_linear_head(
    classifiers: &[Classifier],
    name: &str,
    out_dir: &Path,
) -> Result<()> {
    if let Some(c) = classifiers.iter().find(|c| c.name == name) {
        let head = vec![
            (
                "weight".to_string(),
                c.head.linear.ws.detach().to_device(Device::Cpu),
            ),
            (
                "bias".to_string(),
                c.head
                    .linear
                    .bs
                    .as_ref()
                    .unwrap()
                    .detach()
                    .to_device(Device::Cpu),
            ),
        ];
        model::weights::save_safetensors(&head, &out_dir.join("linear_head.safetensors"))?;
    }
    Ok(())
}

//! The frozen or trainable backbone a run uses: built from a released architecture or a custom
//! size, then (optionally) loaded strictly from pretrained weights.

use crate::weights_io::{read_backbone, resolve_weights_path};
use anyhow::{Context, Result};
use model::{DinoVisionTransformer, FfnLayer, VitConfig};
use std::path::PathBuf;
use tch::{Device, nn};

/// What to build.
#[derive(Debug, Clone, PartialEq)]
pub struct BackboneSpec {
    /// `vit_small` ... `vit_giant2`, or `None` for a custom size.
    pub arch: Option<String>,
    /// Custom size: (embed_dim, depth, num_heads).
    pub custom: Option<(i64, i64, i64)>,
    pub img_size: Option<i64>,
    pub patch_size: i64,
    pub ffn_layer: Option<FfnLayer>,
    pub num_register_tokens: i64,
    pub num_heads: Option<i64>,
    /// Pretrained weights (any format); `None` keeps the random initialisation.
    pub weights: Option<PathBuf>,
}

/// The architecture of `spec` before any weights are seen.
pub fn spec_config(spec: &BackboneSpec) -> Result<VitConfig> {
    let mut c = match (&spec.arch, spec.custom) {
        (Some(a), _) => VitConfig::arch(a)?,
        (None, Some((d, depth, heads))) => VitConfig {
            embed_dim: d,
            depth,
            num_heads: heads,
            ..VitConfig::arch("vit_small")?
        },
        (None, None) => anyhow::bail!("the backbone needs an architecture or a custom size"),
    };
    c.patch_size = spec.patch_size;
    // PASSL's DINOv2 backbones default to img_size 518 (the released 37x37 grid) and
    // LayerScale (init 1e-5).
    c.img_size = spec.img_size.unwrap_or(518);
    c.init_values = Some(1e-5);
    if let Some(f) = spec.ffn_layer {
        c.ffn_layer = f;
    }
    if let Some(h) = spec.num_heads {
        c.num_heads = h;
    }
    if spec.num_register_tokens > 0 {
        c.num_register_tokens = spec.num_register_tokens;
        c.interpolate_antialias = true;
        c.interpolate_offset = 0.0;
    }
    c.validate()?;
    Ok(c)
}

/// Builds the backbone under `vs.root()`; with weights, the architecture is checked against
/// (and its grid/registers/FFN taken from) the checkpoint and every key loaded strictly.
/// Returns a description for the log.
pub fn build_backbone(
    spec: &BackboneSpec,
    device: Device,
) -> Result<(nn::VarStore, DinoVisionTransformer, String)> {
    let mut config = spec_config(spec)?;
    let mut loaded = None;
    let mut what = "random initialisation".to_string();
    if let Some(w) = &spec.weights {
        let path = resolve_weights_path(w)?;
        let (choice, tensors) = read_backbone(&path)?;
        let shapes = tensors.iter().map(|(k, t)| (k.clone(), t.size())).collect();
        let mut inferred = VitConfig::infer(&shapes, spec.arch.as_deref())
            .with_context(|| format!("{}", path.display()))?;
        inferred.num_heads = config.num_heads;
        inferred.validate()?;
        config = inferred;
        what = format!("{} ({})", path.display(), choice.describe());
        loaded = Some((path, tensors));
    }
    let vs = nn::VarStore::new(device);
    let vit = DinoVisionTransformer::new(vs.root(), &config)?;
    if let Some((path, tensors)) = loaded {
        model::weights::load_state_dict(&vs, tensors, true, &path.display().to_string())?;
    }
    Ok((vs, vit, what))
}

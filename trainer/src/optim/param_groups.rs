//! dinov2's parameter groups (`dinov2/utils/param_groups.py`, reference §2.5): a learning-rate
//! multiplier (layer-wise decay, `patch_embed_lr_mult`), a weight-decay multiplier and the
//! `is_last_layer` flag for every parameter of a student submodule, and how the schedules turn
//! them into each parameter's `lr` / `weight_decay` (`apply_optim_scheduler` in `train.py`).
//!
//! Names are our VarStore paths, which carry the submodule (`backbone.blocks.3.attn.qkv.weight`,
//! `dino_head.last_layer.weight_g`); the reference calls `get_params_groups_with_decay` on
//! each submodule, so its rules see the name relative to the submodule (`blocks.3.attn...`).
//! The rules, as `get_vit_lr_decay_rate` and `get_params_groups_with_decay` apply them:
//! - `lr_multiplier = layerwise_decay ** (n_blocks + 1 - layer_id)`, with `n_blocks` the
//!   backbone depth (0 for the heads, so every head parameter gets 1);
//! - in the backbone, `layer_id = 0` for names containing `pos_embed`, `patch_embed`,
//!   `mask_token` or `cls_token`; `block + 1` for `blocks.i.` names (`blocks.c.i.` with
//!   chunked blocks); otherwise `n_blocks + 1` — which includes `norm` and, in the installed
//!   package's code, `register_tokens` (multiplier 1, not `layerwise_decay ** (n_blocks+1)`);
//! - `patch_embed` parameters get a further `× patch_embed_lr_mult`;
//! - `wd_multiplier = 0` for names ending in `.bias` or containing `norm` or `gamma`, else 1
//!   (`cls_token`, `pos_embed`, `mask_token`, `register_tokens` and `last_layer.weight_g` are
//!   decayed);
//! - `is_last_layer` when the name contains `last_layer`.

use anyhow::{Context, Result};

/// The group of one parameter (the reference makes one group per parameter, then fuses
/// groups with equal multipliers, which changes nothing numerically).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroup {
    /// The full name, submodule included.
    pub name: String,
    pub lr_multiplier: f64,
    pub wd_multiplier: f64,
    pub is_last_layer: bool,
}

impl ParamGroup {
    /// `(last_layer_lr if is_last_layer else lr) * lr_multiplier`.
    pub fn lr(&self, lr: f64, last_layer_lr: f64) -> f64 {
        (if self.is_last_layer {
            last_layer_lr
        } else {
            lr
        }) * self.lr_multiplier
    }

    /// `wd * wd_multiplier`.
    pub fn weight_decay(&self, wd: f64) -> f64 {
        wd * self.wd_multiplier
    }
}

/// The per-parameter `lr` and `weight_decay` of one iteration (`apply_optim_scheduler`), in
/// group order, ready for [`super::AdamW::step`].
pub fn apply_schedules(
    groups: &[ParamGroup],
    lr: f64,
    wd: f64,
    last_layer_lr: f64,
) -> (Vec<f64>, Vec<f64>) {
    groups
        .iter()
        .map(|g| (g.lr(lr, last_layer_lr), g.weight_decay(wd)))
        .unzip()
}

/// `get_vit_lr_decay_rate(name, lr_decay_rate, num_layers, force_is_backbone, chunked_blocks)`
/// on a name relative to its submodule, branch for branch.
fn vit_lr_decay_rate(
    name: &str,
    lr_decay_rate: f64,
    num_layers: usize,
    force_is_backbone: bool,
    chunked_blocks: bool,
) -> Result<f64> {
    let has = |k: &str| name.contains(k);
    let block_index = |from: &str, field: usize| -> Result<i64> {
        let tail = &name[name.find(from).unwrap_or(0)..];
        tail.split('.')
            .nth(field)
            .and_then(|s| s.parse::<i64>().ok())
            .with_context(|| format!("parameter {name:?}: no block index in {tail:?}"))
    };
    let mut layer_id = num_layers as i64 + 1;
    if name.starts_with("backbone") || force_is_backbone {
        // The reference's first two branches (dotted names; undotted when forced) in one.
        let dotted =
            has(".pos_embed") || has(".patch_embed") || has(".mask_token") || has(".cls_token");
        let undotted =
            has("pos_embed") || has("patch_embed") || has("mask_token") || has("cls_token");
        if dotted || (force_is_backbone && undotted) {
            layer_id = 0;
        } else if has(".blocks.") && !has(".residual.") {
            layer_id = block_index(".blocks.", 2)? + 1;
        } else if chunked_blocks && has("blocks.") && !has("residual.") {
            layer_id = block_index("blocks.", 2)? + 1;
        } else if has("blocks.") && !has("residual.") {
            layer_id = block_index("blocks.", 1)? + 1;
        }
    }
    Ok(lr_decay_rate.powf((num_layers as i64 + 1 - layer_id) as f64))
}

/// `get_params_groups_with_decay(submodule, layerwise_decay, patch_embed_lr_mult)` for the
/// parameters `names` of one submodule (each name starting with the submodule's prefix, e.g.
/// `backbone.`). `n_blocks` is the backbone depth, 0 for a head; `chunked_blocks` selects the
/// `blocks.c.i.` naming of a backbone built with `block_chunks > 0`.
pub fn submodule_param_groups<S: AsRef<str>>(
    names: &[S],
    n_blocks: usize,
    chunked_blocks: bool,
    layerwise_decay: f64,
    patch_embed_lr_mult: f64,
) -> Result<Vec<ParamGroup>> {
    names
        .iter()
        .map(|full| {
            let full = full.as_ref();
            let name = relative(full)?;
            let mut lr_multiplier = vit_lr_decay_rate(
                name,
                layerwise_decay,
                n_blocks,
                n_blocks > 0,
                chunked_blocks,
            )?;
            if name.contains("patch_embed") {
                lr_multiplier *= patch_embed_lr_mult;
            }
            let no_decay =
                name.ends_with(".bias") || name.contains("norm") || name.contains("gamma");
            Ok(ParamGroup {
                name: full.to_string(),
                lr_multiplier,
                wd_multiplier: if no_decay { 0.0 } else { 1.0 },
                is_last_layer: name.contains("last_layer"),
            })
        })
        .collect()
}

/// The groups of the whole student (`SSLMetaArch.get_params_groups`): every name is taken to
/// its submodule by its first component; `backbone.` parameters use `backbone_blocks` (the
/// depth), the heads (`dino_head.`, `ibot_head.`) 0. Order follows `names`.
pub fn student_param_groups<S: AsRef<str>>(
    names: &[S],
    backbone_blocks: usize,
    chunked_blocks: bool,
    layerwise_decay: f64,
    patch_embed_lr_mult: f64,
) -> Result<Vec<ParamGroup>> {
    names
        .iter()
        .map(|full| {
            let full = full.as_ref();
            let n_blocks = if submodule(full)? == "backbone" {
                backbone_blocks
            } else {
                0
            };
            let mut g = submodule_param_groups(
                &[full],
                n_blocks,
                chunked_blocks,
                layerwise_decay,
                patch_embed_lr_mult,
            )?;
            Ok(g.remove(0))
        })
        .collect()
}

/// The submodule a parameter belongs to: the first component of its name.
pub fn submodule(name: &str) -> Result<&str> {
    name.split_once('.').map(|(m, _)| m).with_context(|| {
        format!("parameter {name:?} has no submodule prefix (backbone., dino_head., ...)")
    })
}

fn relative(name: &str) -> Result<&str> {
    name.split_once('.').map(|(_, r)| r).with_context(|| {
        format!("parameter {name:?} has no submodule prefix (backbone., dino_head., ...)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, n_blocks: usize, chunked: bool, decay: f64) -> ParamGroup {
        submodule_param_groups(&[name], n_blocks, chunked, decay, 0.2)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn vit_large_examples_of_the_reference_doc() {
        // ViT-L, 24 blocks, layerwise_decay 0.9: patch_embed 0.9^25 * 0.2, block 0 0.9^24.
        let pe = group("backbone.patch_embed.proj.weight", 24, false, 0.9);
        assert!((pe.lr_multiplier - 0.9f64.powf(25.0) * 0.2).abs() < 1e-15);
        assert!((pe.lr_multiplier - 0.01436).abs() < 1e-5);
        let b0 = group("backbone.blocks.0.attn.qkv.weight", 24, false, 0.9);
        assert_eq!(b0.lr_multiplier, 0.9f64.powf(24.0));
        assert_eq!(b0.wd_multiplier, 1.0);
        // Chunked names take the block index, not the chunk index.
        let c = group("backbone.blocks.3.23.mlp.fc1.bias", 24, true, 0.9);
        assert_eq!((c.lr_multiplier, c.wd_multiplier), (0.9, 0.0));
        let norm = group("backbone.norm.weight", 24, false, 0.9);
        assert_eq!((norm.lr_multiplier, norm.wd_multiplier), (1.0, 0.0));
        let cls = group("backbone.cls_token", 24, false, 0.9);
        assert_eq!(
            (cls.lr_multiplier, cls.wd_multiplier),
            (0.9f64.powf(25.0), 1.0)
        );
        // register_tokens is not in the reference's layer-0 list.
        assert_eq!(
            group("backbone.register_tokens", 24, false, 0.9).lr_multiplier,
            1.0
        );
        let g = group("backbone.blocks.5.ls1.gamma", 24, false, 0.9);
        assert_eq!(g.wd_multiplier, 0.0);
    }

    #[test]
    fn heads_and_prefixes() {
        let g = student_param_groups(
            &[
                "dino_head.last_layer.weight_g",
                "ibot_head.mlp.0.bias",
                "backbone.blocks.1.norm1.weight",
            ],
            4,
            false,
            0.5,
            0.2,
        )
        .unwrap();
        assert_eq!(
            (g[0].lr_multiplier, g[0].wd_multiplier, g[0].is_last_layer),
            (1.0, 1.0, true)
        );
        assert_eq!((g[1].lr_multiplier, g[1].wd_multiplier), (1.0, 0.0));
        assert_eq!((g[2].lr_multiplier, g[2].wd_multiplier), (0.125, 0.0));
        assert_eq!(g[0].lr(1.0, 0.25), 0.25);
        assert_eq!(g[2].lr(1.0, 0.25), 0.125);
        assert!(student_param_groups(&["cls_token"], 4, false, 0.9, 0.2).is_err());
        assert!(submodule_param_groups(&["backbone.blocks.x.w"], 4, false, 0.9, 0.2).is_err());
    }
}

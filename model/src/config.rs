//! Architecture hyper-parameters of the DINOv2 vision transformer (`vit_small` ... `vit_giant2`),
//! with the reference constructor defaults and the hub (released checkpoint) settings.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// The feed-forward layer of every block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FfnLayer {
    /// `fc1` -> exact GELU -> `fc2` (ViT-S/B/L).
    Mlp,
    /// Packed SwiGLU `w12` / `w3` (ViT-g, `swiglufused` in the reference configs).
    #[serde(alias = "swiglu", alias = "swiglufused")]
    SwiGlu,
}

impl FfnLayer {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "mlp" => Self::Mlp,
            "swiglu" | "swiglufused" => Self::SwiGlu,
            other => bail!("unknown ffn_layer {other:?} (expected mlp, swiglu or swiglufused)"),
        })
    }
}

/// Everything `DinoVisionTransformer.__init__` takes that changes the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// The size the positional embedding was trained for (518 for the hub models, 224 in training).
    pub img_size: i64,
    pub patch_size: i64,
    pub in_chans: i64,
    pub embed_dim: i64,
    pub depth: i64,
    pub num_heads: i64,
    pub mlp_ratio: f64,
    pub qkv_bias: bool,
    pub proj_bias: bool,
    pub ffn_bias: bool,
    pub ffn_layer: FfnLayer,
    /// LayerScale initial value; `None` means no LayerScale (no `ls1`/`ls2` parameters).
    pub init_values: Option<f64>,
    pub drop_path_rate: f64,
    /// Every block gets `drop_path_rate` (true) or a linear ramp from 0 (false).
    pub drop_path_uniform: bool,
    pub num_register_tokens: i64,
    pub interpolate_antialias: bool,
    pub interpolate_offset: f64,
}

/// The four released architectures.
pub const ARCHS: [&str; 4] = ["vit_small", "vit_base", "vit_large", "vit_giant2"];

impl VitConfig {
    /// `vit_small` / `vit_base` / `vit_large` / `vit_giant2` with the constructor defaults of
    /// the reference (`img_size` 224, no LayerScale, no registers, offset 0.1), patch 14.
    pub fn arch(name: &str) -> Result<Self> {
        let (embed_dim, depth, num_heads, ffn_layer) = match name {
            "vit_small" | "vits14" => (384, 12, 6, FfnLayer::Mlp),
            "vit_base" | "vitb14" => (768, 12, 12, FfnLayer::Mlp),
            "vit_large" | "vitl14" => (1024, 24, 16, FfnLayer::Mlp),
            "vit_giant2" | "vitg14" => (1536, 40, 24, FfnLayer::SwiGlu),
            other => bail!(
                "unknown architecture {other:?} (expected one of {})",
                ARCHS.join(", ")
            ),
        };
        Ok(Self {
            img_size: 224,
            patch_size: 14,
            in_chans: 3,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio: 4.0,
            qkv_bias: true,
            proj_bias: true,
            ffn_bias: true,
            ffn_layer,
            init_values: None,
            drop_path_rate: 0.0,
            drop_path_uniform: false,
            num_register_tokens: 0,
            interpolate_antialias: false,
            interpolate_offset: 0.1,
        })
    }

    /// The settings the released checkpoints were built with (`dinov2/hub/backbones.py`):
    /// img_size 518, LayerScale present; `registers` gives the `_reg4` variant (4 registers,
    /// antialiased size-based pos-embed interpolation, offset 0).
    pub fn hub(name: &str, registers: bool) -> Result<Self> {
        let mut c = Self::arch(name)?;
        c.img_size = 518;
        c.init_values = Some(1.0);
        if registers {
            c.num_register_tokens = 4;
            c.interpolate_antialias = true;
            c.interpolate_offset = 0.0;
        }
        Ok(c)
    }

    pub fn head_dim(&self) -> i64 {
        self.embed_dim / self.num_heads
    }

    /// Patches per side of the positional-embedding grid.
    pub fn pos_grid(&self) -> i64 {
        self.img_size / self.patch_size
    }

    /// FFN hidden width as the reference computes it (`SwiGLUFFNFused` shrinks by 2/3 and
    /// rounds up to a multiple of 8).
    pub fn ffn_hidden(&self) -> i64 {
        let hidden = (self.embed_dim as f64 * self.mlp_ratio) as i64;
        match self.ffn_layer {
            FfnLayer::Mlp => hidden,
            FfnLayer::SwiGlu => ((hidden as f64 * 2.0 / 3.0) as i64 + 7) / 8 * 8,
        }
    }

    /// Drop-path rate of each block.
    pub fn block_drop_path(&self) -> Vec<f64> {
        let d = self.depth as usize;
        if self.drop_path_uniform || d <= 1 {
            return vec![self.drop_path_rate; d];
        }
        // torch.linspace(0, rate, depth) in float32, as the reference.
        (0..d)
            .map(|i| {
                let step = (self.drop_path_rate as f32) / (d as f32 - 1.0);
                (if i < d / 2 {
                    step * i as f32
                } else {
                    self.drop_path_rate as f32 - step * (d - 1 - i) as f32
                }) as f64
            })
            .collect()
    }

    /// The architecture of a backbone state dict (official key names), from its shapes:
    /// width from `cls_token`, depth from the `blocks.<i>.` keys, patch size from the patch
    /// embedding, trained grid from `pos_embed`, LayerScale / registers / SwiGLU from the
    /// presence of `ls1.gamma` / `register_tokens` / `mlp.w12`. The head count is not in the
    /// weights: it comes from `arch` when given (checked against the width), else 64-wide
    /// heads as in every released DINOv2 model. Register models get the hub's interpolation
    /// settings (antialiased, offset 0).
    pub fn infer(
        shapes: &std::collections::HashMap<String, Vec<i64>>,
        arch: Option<&str>,
    ) -> Result<Self> {
        let get = |k: &str| -> Result<&Vec<i64>> {
            shapes.get(k).ok_or_else(|| {
                anyhow::anyhow!(
                    "not a DINOv2 backbone state dict: no {k:?} among {} tensors",
                    shapes.len()
                )
            })
        };
        let d = *get("cls_token")?.last().unwrap_or(&0);
        let pe = get("patch_embed.proj.weight")?;
        if pe.len() != 4 || pe[0] != d || pe[2] != pe[3] {
            bail!("patch_embed.proj.weight has shape {pe:?}, expected [{d}, C, p, p]");
        }
        let pos = get("pos_embed")?;
        let n = pos.get(1).copied().unwrap_or(0) - 1;
        let grid = (n as f64).sqrt().round() as i64;
        if pos.len() != 3 || grid * grid != n || pos[2] != d {
            bail!("pos_embed has shape {pos:?}, expected [1, 1 + M*M, {d}]");
        }
        let depth = shapes
            .keys()
            .filter_map(|k| {
                k.strip_prefix("blocks.")?
                    .split('.')
                    .next()?
                    .parse::<i64>()
                    .ok()
            })
            .max()
            .map(|m| m + 1)
            .ok_or_else(|| anyhow::anyhow!("no blocks.<i>. keys in the state dict"))?;
        let mut c = match arch {
            Some(a) => {
                let c = Self::arch(a)?;
                if c.embed_dim != d || c.depth != depth {
                    bail!(
                        "the weights are {d} wide and {depth} deep, but {a} is {} wide and {} deep",
                        c.embed_dim,
                        c.depth
                    );
                }
                c
            }
            None => {
                let mut c = Self::arch("vit_small")?;
                c.embed_dim = d;
                c.depth = depth;
                c.num_heads = (d / 64).max(1);
                c
            }
        };
        c.patch_size = pe[3];
        c.in_chans = pe[1];
        c.img_size = grid * c.patch_size;
        c.ffn_layer = if shapes.contains_key("blocks.0.mlp.w12.weight") {
            FfnLayer::SwiGlu
        } else {
            FfnLayer::Mlp
        };
        if let Some(w) = shapes
            .get("blocks.0.mlp.fc1.weight")
            .or(shapes.get("blocks.0.mlp.w3.weight"))
        {
            let hidden = if c.ffn_layer == FfnLayer::Mlp {
                w[0]
            } else {
                w[1]
            };
            if hidden != c.ffn_hidden() {
                c.mlp_ratio = hidden as f64 / d as f64;
            }
        }
        c.qkv_bias = shapes.contains_key("blocks.0.attn.qkv.bias");
        c.proj_bias = shapes.contains_key("blocks.0.attn.proj.bias");
        c.ffn_bias = shapes.contains_key("blocks.0.mlp.fc1.bias")
            || shapes.contains_key("blocks.0.mlp.w12.bias");
        c.init_values = shapes.contains_key("blocks.0.ls1.gamma").then_some(1.0);
        c.num_register_tokens = shapes.get("register_tokens").map(|s| s[1]).unwrap_or(0);
        if c.num_register_tokens > 0 {
            c.interpolate_antialias = true;
            c.interpolate_offset = 0.0;
        }
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        if self.embed_dim <= 0 || self.num_heads <= 0 || self.embed_dim % self.num_heads != 0 {
            bail!(
                "embed_dim {} must be a positive multiple of num_heads {}",
                self.embed_dim,
                self.num_heads
            );
        }
        if self.patch_size <= 0 || self.img_size % self.patch_size != 0 {
            bail!(
                "img_size {} must be a multiple of patch_size {}",
                self.img_size,
                self.patch_size
            );
        }
        if self.depth <= 0 || self.num_register_tokens < 0 {
            bail!("depth must be positive and num_register_tokens non-negative");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_path_ramp_is_torch_linspace_in_float32() {
        let mut c = VitConfig::arch("vit_small").unwrap();
        c.depth = 4;
        c.drop_path_rate = 0.1;
        // [x.item() for x in torch.linspace(0, 0.1, 4)]
        assert_eq!(
            c.block_drop_path(),
            [
                0.0,
                0.03333333507180214,
                0.06666666269302368,
                0.10000000149011612
            ]
        );
        c.drop_path_uniform = true;
        assert_eq!(c.block_drop_path(), [0.1; 4]);
    }

    #[test]
    fn swiglu_hidden_width_follows_the_reference_rule() {
        let g = VitConfig::arch("vit_giant2").unwrap();
        assert_eq!(g.ffn_hidden(), 4096);
        assert_eq!(VitConfig::arch("vit_small").unwrap().ffn_hidden(), 1536);
    }
}

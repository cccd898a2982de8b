//! `Model`: the linear-probe model (`dinov2_vit_{small,base,large,gaint2}_linearprobe`), its
//! backbone and the number of classes.

use model::FfnLayer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `<backbone.type>_linearprobe` (any `*_linearprobe` name for a `custom` backbone).
    pub name: String,
    pub backbone: Backbone,
    #[serde(default = "thousand")]
    pub class_num: i64,
}

fn thousand() -> i64 {
    1000
}

/// `Model.backbone`: PASSL's keys, then this project's optional extras.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backbone {
    #[serde(rename = "type")]
    pub kind: BackboneType,
    #[serde(default = "fourteen")]
    pub patch_size: i64,
    /// Swallowed by PASSL's `**kwargs`; kept for fidelity.
    #[serde(default)]
    pub output_dim: Option<i64>,
    /// `mlp` (default) or `swiglufused` (ViT-g).
    #[serde(default)]
    pub ffn_layer: Option<FfnLayer>,
    #[serde(default = "one")]
    pub n_last_blocks: i64,
    #[serde(default = "yes")]
    pub avgpool_patchtokens: bool,
    /// Position-embedding grid size in pixels (default 518, the released 37x37 grid).
    #[serde(default)]
    pub img_size: Option<i64>,
    #[serde(default)]
    pub num_register_tokens: Option<i64>,
    /// Heads per block (a hub architecture's own count when absent).
    #[serde(default)]
    pub num_heads: Option<i64>,
    /// Width of a `custom` backbone.
    #[serde(default)]
    pub embed_dim: Option<i64>,
    /// Number of blocks of a `custom` backbone.
    #[serde(default)]
    pub depth: Option<i64>,
}

fn fourteen() -> i64 {
    14
}

fn one() -> i64 {
    1
}

fn yes() -> bool {
    true
}

/// `Model.backbone.type`: PASSL's constructors (it spells ViT-g `gaint2`), or `custom` with
/// `embed_dim`, `depth` and `num_heads` given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackboneType {
    #[serde(rename = "dinov2_vit_small")]
    Small,
    #[serde(rename = "dinov2_vit_base")]
    Base,
    #[serde(rename = "dinov2_vit_large")]
    Large,
    #[serde(rename = "dinov2_vit_gaint2", alias = "dinov2_vit_giant2")]
    Giant2,
    #[serde(rename = "custom")]
    Custom,
}

impl BackboneType {
    /// The model crate's architecture name (`vit_small` ... `vit_giant2`); `None` for `custom`.
    pub fn arch(self) -> Option<&'static str> {
        match self {
            Self::Small => Some("vit_small"),
            Self::Base => Some("vit_base"),
            Self::Large => Some("vit_large"),
            Self::Giant2 => Some("vit_giant2"),
            Self::Custom => None,
        }
    }

    /// PASSL's spelling in YAML (`dinov2_vit_gaint2` for ViT-g).
    pub fn passl_name(self) -> &'static str {
        match self {
            Self::Small => "dinov2_vit_small",
            Self::Base => "dinov2_vit_base",
            Self::Large => "dinov2_vit_large",
            Self::Giant2 => "dinov2_vit_gaint2",
            Self::Custom => "custom",
        }
    }
}

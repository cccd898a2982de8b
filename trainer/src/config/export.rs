//! `Export`: PASSL's inference-model export settings (kept; `dinov2` does not export).

use super::serde_util::dims;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    pub export_type: String,
    /// `[None, 3, 224, 224]`: `None` (or `null`) is a free dimension.
    #[serde(with = "dims")]
    pub input_shape: Vec<Option<i64>>,
}

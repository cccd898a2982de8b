//! Run configuration in PASSL's shape: `dinov2 train -c <yaml> [-o Section.key=value]...`.
//!
//! The YAML has PASSL's sections (`Global`, `FP16`, `DistributedStrategy`, `Model`, `Loss`,
//! `LRScheduler`, `Optimizer`, `DataLoader`, `Metric`, `Export`) plus this project's optional
//! `LinearEval` and `KNN`. Every section is typed and strict: an unknown key, in the file or
//! in an override, is an error naming its dotted path. A key the YAML leaves out takes PASSL's
//! default where PASSL has one; keys PASSL requires are required.
//!
//! [`Config::load`] parses and types; [`Config::validate`] checks the values and that the
//! transforms form a pipeline the trainer runs; [`Config::open`] does both;
//! [`Config::write_resolved`] writes the run's `config.yaml` (defaults filled in).

mod data;
mod errors;
mod eval;
mod export;
mod global;
mod loss;
mod metric;
mod model;
mod optimizer;
mod overrides;
mod serde_util;
mod transform;
mod validate;

pub use data::{
    DataLoader, DataSection, DatasetConfig, DatasetKind, LoaderOptions, Sampler, SamplerName,
};
pub use errors::KeyError;
pub use eval::{Knn, LinearEval, ProbeProtocol};
pub use export::Export;
pub use global::{
    AmpDtype, AmpLevel, DeviceKind, DistributedStrategy, Fp16, Global, GradScaler, TaskType,
    TrainLoop, Unit, ValidateLoop,
};
pub use loss::{CeLoss, Loss, LossTerm};
pub use metric::{Metric, MetricTerm, TopkAcc};
pub use model::{Backbone, BackboneType, ModelConfig};
pub use optimizer::{LrScheduler, Optimizer, OptimizerName, SchedulerName};
pub use overrides::Override;
pub use serde_util::NoArgs;
pub use transform::{
    CenterCropArgs, EvalTransform, FlipArgs, IMAGENET_MEAN, IMAGENET_STD, NormalizeArgs,
    RandomResizedCropArgs, ResizeArgs, TrainTransform, Transform,
};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_norway::Value;
use serde_norway::with::singleton_map_recursive;
use std::path::{Path, PathBuf};

/// The file name [`Config::write_resolved`] writes.
pub const RESOLVED_NAME: &str = "config.yaml";

/// A whole run configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(rename = "Global")]
    pub global: Global,
    /// Absent: fp32 (PASSL enables AMP only when the section exists).
    #[serde(rename = "FP16", default)]
    pub fp16: Option<Fp16>,
    #[serde(rename = "DistributedStrategy", default)]
    pub distributed: Option<DistributedStrategy>,
    #[serde(rename = "Model")]
    pub model: ModelConfig,
    #[serde(rename = "Loss")]
    pub loss: Loss,
    #[serde(rename = "LRScheduler")]
    pub lr_scheduler: LrScheduler,
    #[serde(rename = "Optimizer")]
    pub optimizer: Optimizer,
    #[serde(rename = "DataLoader")]
    pub data_loader: DataLoader,
    #[serde(rename = "Metric", default)]
    pub metric: Option<Metric>,
    #[serde(rename = "Export", default)]
    pub export: Option<Export>,
    #[serde(rename = "LinearEval", default)]
    pub linear_eval: LinearEval,
    #[serde(rename = "KNN", default)]
    pub knn: Knn,
}

impl Config {
    /// Reads `path`, applies `overrides` (`Section.key.sub=value`, see [`Override`]) and
    /// deserializes strictly. Errors name the file, the dotted key and what was expected.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        load_yaml(path, overrides)
    }

    /// [`Config::load`], then [`Config::validate`].
    pub fn open(path: &Path, overrides: &[String]) -> Result<Self> {
        let config = Self::load(path, overrides)?;
        config.validate().with_context(|| {
            format!("{} (with {} override(s))", path.display(), overrides.len())
        })?;
        Ok(config)
    }

    /// Deserializes a YAML document (PASSL's single-key-map operator lists included).
    pub fn from_yaml(text: &str) -> Result<Self, KeyError> {
        from_yaml_as(text)
    }

    /// The resolved configuration as YAML (every default written out).
    pub fn to_yaml(&self) -> Result<String> {
        to_yaml_as(self)
    }

    /// Writes `dir/config.yaml` atomically (a temporary name, then a rename) and returns its
    /// path. Loading it gives back an equal `Config`.
    pub fn write_resolved(&self, dir: &Path) -> Result<PathBuf> {
        write_resolved_as(self, dir)
    }

    /// The training transform (RandomResizedCrop + RandomHorizontalFlip).
    pub fn train_transform(&self) -> Result<TrainTransform> {
        transform::parse_train(
            "DataLoader.Train.dataset.transform",
            &self.data_loader.train.dataset.transform,
        )
        .map_err(|e| anyhow!(e))
    }

    /// The evaluation transform (Resize + CenterCrop).
    pub fn eval_transform(&self) -> Result<EvalTransform> {
        transform::parse_eval(
            "DataLoader.Eval.dataset.transform",
            &self.data_loader.eval.dataset.transform,
        )
        .map_err(|e| anyhow!(e))
    }

    /// The model crate's architecture (`vit_small` ... `vit_giant2`); `None` for `custom`.
    pub fn backbone_arch(&self) -> Option<&'static str> {
        self.model.backbone.kind.arch()
    }

    /// The top-k accuracies to report: `Metric.Eval`'s `TopkAcc`, else `Metric.Train`'s, else
    /// `[1, 5]`.
    pub fn topk(&self) -> Vec<usize> {
        let from = |terms: &Option<Vec<MetricTerm>>| {
            terms
                .as_ref()
                .and_then(|t| t.iter().map(|MetricTerm::TopkAcc(a)| a.topk.clone()).next())
        };
        self.metric
            .as_ref()
            .and_then(|m| from(&m.eval).or_else(|| from(&m.train)))
            .unwrap_or_else(metric::one_five)
    }

    /// The AMP level in effect (`O0` when there is no `FP16` section).
    pub fn amp_level(&self) -> AmpLevel {
        self.fp16.as_ref().map_or(AmpLevel::O0, |f| f.level)
    }

    /// The training split (`DataLoader.Train.dataset.split`, default `train`).
    pub fn train_split(&self) -> &str {
        self.data_loader.train.dataset.split_or("train")
    }

    /// The evaluation split (`DataLoader.Eval.dataset.split`, default `val`).
    pub fn eval_split(&self) -> &str {
        self.data_loader.eval.dataset.split_or("val")
    }
}

/// `line:column: path: message` (or ` path: message` without a location).
fn located(e: &KeyError) -> String {
    match e.location {
        Some((line, col)) => format!("{line}:{col}: {}", e.describe()),
        None => format!(" {}", e.describe()),
    }
}

/// Open `[` / `{` a YAML text may nest (the deserializer's own limit is 128 levels).
pub const MAX_FLOW_NESTING: usize = 256;

/// Refuses YAML whose flow collections nest deeper than [`MAX_FLOW_NESTING`] before the
/// parser sees it: libyaml's scanner is quadratic in the nesting depth (700 KB of
/// ` std: [` repeated took minutes before the deserializer's depth limit was reached).
/// Brackets are counted without regard to quoting, so only a text with hundreds of unclosed
/// brackets is refused.
pub fn check_yaml_nesting(text: &str) -> Result<()> {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_NESTING {
                    bail!("YAML nested more than {MAX_FLOW_NESTING} levels deep (at byte {i})");
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Deserializes a YAML document into any strictly typed config (single-key-map operator lists
/// included).
pub fn from_yaml_as<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, KeyError> {
    singleton_map_recursive::deserialize(serde_norway::Deserializer::from_str(text))
        .map_err(|e| KeyError::from_yaml(&e))
}

/// Reads a YAML config of any strictly typed schema, applies `-o` overrides and deserializes
/// it; errors name the file, the dotted key, what was expected and the override that set it.
pub fn load_yaml<T: serde::de::DeserializeOwned>(path: &Path, overrides: &[String]) -> Result<T> {
    let file = path.display();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {file}"))?;
    check_yaml_nesting(&text).with_context(|| format!("{file}: not a valid config"))?;
    let mut doc: Value = serde_norway::from_str(&text)
        .map_err(|e| anyhow!("{file}: not a valid YAML document: {e}"))?;
    if !doc.is_mapping() {
        bail!("{file}: the top level must be a mapping of sections (Global, Model, ...)");
    }
    let mut parsed = Vec::with_capacity(overrides.len());
    for raw in overrides {
        let o = Override::parse(raw).map_err(|e| anyhow!("override `{raw}`: {e}"))?;
        o.apply(&mut doc)
            .map_err(|e| anyhow!("override `{raw}` (on {file}): {e}"))?;
        parsed.push(o);
    }
    if parsed.is_empty() {
        return from_yaml_as::<T>(&text).map_err(|e| anyhow!("{file}:{}", located(&e)));
    }
    let merged = serde_norway::to_string(&doc)
        .map_err(|e| anyhow!("{file}: cannot re-serialize after the overrides: {e}"))?;
    from_yaml_as::<T>(&merged).map_err(|e| {
        let culprit = parsed.iter().rev().find(|o| {
            let k = o.key();
            e.path == k
                || e.path.starts_with(&format!("{k}."))
                || k.starts_with(&format!("{}.", e.path))
        });
        match culprit {
            Some(o) => anyhow!("{file}: {} (set by override `-o {}`)", e.describe(), o.raw),
            // The error is in the file itself: report it where it is written.
            None => match from_yaml_as::<T>(&text) {
                Err(orig) if orig.path == e.path => anyhow!("{file}:{}", located(&orig)),
                _ => anyhow!("{file}: {} (after applying the overrides)", e.describe()),
            },
        }
    })
}

/// Any config as YAML (single-key-map operator lists kept in that form).
pub fn to_yaml_as<T: serde::Serialize>(v: &T) -> Result<String> {
    let mut out = Vec::new();
    let mut ser = serde_norway::Serializer::new(&mut out);
    singleton_map_recursive::serialize(v, &mut ser).context("serializing the config")?;
    String::from_utf8(out).context("serialized config is not UTF-8")
}

/// Writes a resolved config to `dir/config.yaml` atomically and returns its path.
pub fn write_resolved_as<T: serde::Serialize>(v: &T, dir: &Path) -> Result<PathBuf> {
    let body = to_yaml_as(v)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dest = dir.join(RESOLVED_NAME);
    let text = format!("# Resolved configuration of this run (defaults filled in).\n{body}");
    pipeline::atomic::write_atomic(&dest, text.as_bytes())?;
    Ok(dest)
}

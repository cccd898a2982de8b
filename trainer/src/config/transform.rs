//! `dataset.transform`: PASSL's operator list (`- RandomResizedCrop: {size: 224}`), and the
//! two pipelines the trainer runs: RandomResizedCrop + RandomHorizontalFlip for training,
//! Resize + CenterCrop for evaluation, each optionally followed by ToTensor and an ImageNet
//! Normalize (the loader keeps uint8 batches; they are converted and normalised with the
//! ImageNet statistics on the device, so these two only document PASSL's list).

use super::serde_util::{NoArgs, null_as_default};
use pipeline::presets::Preset;
use pipeline::transforms::Interpolation;
use serde::{Deserialize, Serialize};

/// One operator of a transform list, written as a single-key map (`{Op: args}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Transform {
    RandomResizedCrop(RandomResizedCropArgs),
    RandomHorizontalFlip(#[serde(deserialize_with = "null_as_default")] FlipArgs),
    Resize(ResizeArgs),
    CenterCrop(CenterCropArgs),
    ToTensor(NoArgs),
    Normalize(NormalizeArgs),
}

impl Transform {
    pub fn name(&self) -> &'static str {
        match self {
            Self::RandomResizedCrop(_) => "RandomResizedCrop",
            Self::RandomHorizontalFlip(_) => "RandomHorizontalFlip",
            Self::Resize(_) => "Resize",
            Self::CenterCrop(_) => "CenterCrop",
            Self::ToTensor(_) => "ToTensor",
            Self::Normalize(_) => "Normalize",
        }
    }
}

/// torchvision-style `RandomResizedCrop`, PASSL's defaults (bilinear, unlike dinov2's bicubic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomResizedCropArgs {
    pub size: usize,
    #[serde(default = "default_scale")]
    pub scale: [f64; 2],
    #[serde(default = "default_ratio")]
    pub ratio: [f64; 2],
    #[serde(default = "bilinear")]
    pub interpolation: Interpolation,
}

fn default_scale() -> [f64; 2] {
    [0.08, 1.0]
}

fn default_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}

fn bilinear() -> Interpolation {
    Interpolation::Bilinear
}

/// `RandomHorizontalFlip`: PASSL's argument is `p`; `prob` is accepted too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlipArgs {
    #[serde(alias = "prob", default = "half")]
    pub p: f64,
}

impl Default for FlipArgs {
    fn default() -> Self {
        Self { p: half() }
    }
}

fn half() -> f64 {
    0.5
}

/// `Resize`: the shorter side to `size` (PASSL's default interpolation is bilinear).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeArgs {
    pub size: usize,
    #[serde(default = "bilinear")]
    pub interpolation: Interpolation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterCropArgs {
    pub size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeArgs {
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

/// The ImageNet statistics, the only normalisation the trainer applies.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// The training pipeline: RandomResizedCrop + RandomHorizontalFlip.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTransform {
    pub size: usize,
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
    pub interpolation: Interpolation,
    pub flip_p: f64,
}

impl TrainTransform {
    /// The data pipeline's `linear-train` preset.
    pub fn preset(&self) -> Preset {
        Preset::LinearTrain {
            size: self.size,
            scale: self.scale,
            ratio: self.ratio,
            interpolation: self.interpolation,
            flip_p: self.flip_p,
        }
    }
}

/// The evaluation pipeline: Resize (shorter side) + CenterCrop.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalTransform {
    pub resize: usize,
    pub crop: usize,
    pub interpolation: Interpolation,
}

impl EvalTransform {
    /// The data pipeline's `linear-eval` preset (bicubic; `validate` rejects other filters).
    pub fn preset(&self) -> Preset {
        Preset::LinearEval {
            resize: self.resize,
            crop: self.crop,
        }
    }
}

const TRAIN_SHAPE: &str =
    "RandomResizedCrop, RandomHorizontalFlip, [ToTensor], [Normalize with the ImageNet mean/std]";
const EVAL_SHAPE: &str = "Resize, CenterCrop, [ToTensor], [Normalize with the ImageNet mean/std]";

/// Reads a training list; errors name the offending index relative to `path`
/// (`DataLoader.Train.dataset.transform.2: ...`).
pub fn parse_train(path: &str, list: &[Transform]) -> Result<TrainTransform, String> {
    let (crop, flip) = match list {
        [
            Transform::RandomResizedCrop(c),
            Transform::RandomHorizontalFlip(f),
            ..,
        ] => (c, f),
        _ => {
            let (i, what) = first_mismatch(list, &["RandomResizedCrop", "RandomHorizontalFlip"]);
            return Err(format!(
                "{path}.{i}: {what}; the supported training pipeline is {TRAIN_SHAPE}"
            ));
        }
    };
    check_tail(path, list, 2, TRAIN_SHAPE)?;
    let [s0, s1] = crop.scale;
    if !(s0 > 0.0 && s0 <= s1 && s1.is_finite()) {
        return Err(format!(
            "{path}.0.RandomResizedCrop.scale: {:?} is not a range 0 < min <= max",
            crop.scale
        ));
    }
    let [r0, r1] = crop.ratio;
    if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
        return Err(format!(
            "{path}.0.RandomResizedCrop.ratio: {:?} is not a range 0 < min <= max",
            crop.ratio
        ));
    }
    if crop.size == 0 {
        return Err(format!("{path}.0.RandomResizedCrop.size: must be positive"));
    }
    if !(0.0..=1.0).contains(&flip.p) {
        return Err(format!(
            "{path}.1.RandomHorizontalFlip.p: {} is not a probability in [0, 1]",
            flip.p
        ));
    }
    Ok(TrainTransform {
        size: crop.size,
        scale: (s0, s1),
        ratio: (r0, r1),
        interpolation: crop.interpolation,
        flip_p: flip.p,
    })
}

/// Reads an evaluation list (see [`parse_train`]).
pub fn parse_eval(path: &str, list: &[Transform]) -> Result<EvalTransform, String> {
    let (resize, crop) = match list {
        [Transform::Resize(r), Transform::CenterCrop(c), ..] => (r, c),
        _ => {
            let (i, what) = first_mismatch(list, &["Resize", "CenterCrop"]);
            return Err(format!(
                "{path}.{i}: {what}; the supported evaluation pipeline is {EVAL_SHAPE}"
            ));
        }
    };
    check_tail(path, list, 2, EVAL_SHAPE)?;
    if crop.size == 0 || resize.size == 0 {
        return Err(format!(
            "{path}: Resize and CenterCrop sizes must be positive"
        ));
    }
    if crop.size > resize.size {
        return Err(format!(
            "{path}.1.CenterCrop.size: {} is larger than the Resize size {}",
            crop.size, resize.size
        ));
    }
    if resize.interpolation != Interpolation::Bicubic {
        return Err(format!(
            "{path}.0.Resize.interpolation: only bicubic is supported for evaluation (got {:?})",
            resize.interpolation
        ));
    }
    Ok(EvalTransform {
        resize: resize.size,
        crop: crop.size,
        interpolation: resize.interpolation,
    })
}

/// The first index where `list` differs from the required `head`, and what was found there.
fn first_mismatch(list: &[Transform], head: &[&str]) -> (usize, String) {
    for (i, want) in head.iter().enumerate() {
        match list.get(i) {
            None => return (i, format!("missing {want}")),
            Some(t) if t.name() != *want => {
                return (i, format!("expected {want}, found {}", t.name()));
            }
            Some(_) => {}
        }
    }
    (head.len(), "unexpected operator".to_string())
}

/// After the two geometric operators: optionally ToTensor, then optionally an ImageNet
/// Normalize, and nothing else.
fn check_tail(path: &str, list: &[Transform], start: usize, shape: &str) -> Result<(), String> {
    let mut rest = list.iter().enumerate().skip(start).peekable();
    if let Some((_, Transform::ToTensor(_))) = rest.peek() {
        rest.next();
    }
    if let Some((i, Transform::Normalize(n))) = rest.peek() {
        if !close(&n.mean, &IMAGENET_MEAN) || !close(&n.std, &IMAGENET_STD) {
            return Err(format!(
                "{path}.{i}.Normalize: only the ImageNet statistics (mean {IMAGENET_MEAN:?}, \
                 std {IMAGENET_STD:?}) are supported, got mean {:?}, std {:?}",
                n.mean, n.std
            ));
        }
        rest.next();
    }
    match rest.next() {
        None => Ok(()),
        Some((i, t)) => Err(format!(
            "{path}.{i}: unexpected {} here; the supported pipeline is {shape}",
            t.name()
        )),
    }
}

fn close(a: &[f64; 3], b: &[f64; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
}

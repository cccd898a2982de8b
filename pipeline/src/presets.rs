//! The augmentation presets: what one source image turns into.
//!
//! - `linear-train`: `RandomResizedCrop(224, BICUBIC)` + `RandomHorizontalFlip` (dinov2
//!   `make_classification_train_transform`, PASSL's linear-probe train transform).
//! - `linear-eval`: `Resize(256, BICUBIC)` + `CenterCrop(224)`.
//! - `dinov2`: DINOv2's `DataAugmentationDINO` multi-crop: 2 global crops (224, scale
//!   [0.32, 1]) and 8 local crops (98, scale [0.05, 0.32]), each with flip, colour jitter
//!   (p 0.8; brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1), grayscale (p 0.2),
//!   Gaussian blur (kernel 9, sigma U(0.1, 2)) and, on the second global crop, solarize
//!   (p 0.2). Blur probabilities default to what the reference code *actually* applies,
//!   0.0 / 0.9 / 0.5 (its `GaussianBlur` passes `1 - p` to `RandomApply`; dinov2-reference §3),
//!   not the nominal 1.0 / 0.1 / 0.5.
//!
//! Normalisation is not done here: batches stay uint8 and are normalised on the device.

use crate::rng::Rng;
use crate::transforms::*;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// Settings of the `dinov2` multi-crop preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiCrop {
    pub global_size: usize,
    pub local_size: usize,
    pub global_scale: (f64, f64),
    pub local_scale: (f64, f64),
    pub local_crops: usize,
    /// Blur probability of global crop 1, global crop 2 and each local crop.
    pub blur_p: (f64, f64, f64),
    pub solarize_p: f64,
    pub jitter_p: f64,
    pub grayscale_p: f64,
    pub flip_p: f64,
    pub jitter: (f64, f64, f64, f64),
}

impl Default for MultiCrop {
    fn default() -> Self {
        Self {
            global_size: 224,
            local_size: 98,
            global_scale: (0.32, 1.0),
            local_scale: (0.05, 0.32),
            local_crops: 8,
            blur_p: (0.0, 0.9, 0.5),
            solarize_p: 0.2,
            jitter_p: 0.8,
            grayscale_p: 0.2,
            flip_p: 0.5,
            jitter: (0.4, 0.4, 0.2, 0.1),
        }
    }
}

/// An augmentation preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "preset")]
pub enum Preset {
    /// RandomResizedCrop + RandomHorizontalFlip (dinov2's linear-probe train transform uses
    /// bicubic, PASSL's bilinear).
    LinearTrain {
        size: usize,
        scale: (f64, f64),
        ratio: (f64, f64),
        interpolation: Interpolation,
        flip_p: f64,
    },
    LinearEval {
        resize: usize,
        crop: usize,
    },
    Dinov2(MultiCrop),
}

/// One group of same-sized crops of every sample (e.g. the 2 global crops).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropGroup {
    pub count: usize,
    pub size: usize,
}

impl CropGroup {
    /// Bytes of one crop (HWC uint8).
    pub fn crop_bytes(&self) -> usize {
        self.size * self.size * 3
    }
}

impl Preset {
    /// `linear-train` at `size`: torchvision's RandomResizedCrop defaults (scale (0.08, 1),
    /// ratio (3/4, 4/3)), bicubic, flip p 0.5.
    pub fn linear_train(size: usize) -> Self {
        Self::LinearTrain {
            size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            interpolation: Interpolation::Bicubic,
            flip_p: 0.5,
        }
    }

    /// `linear-train`, `linear-eval` or `dinov2` with their defaults.
    pub fn by_name(name: &str) -> Result<Self> {
        Ok(match name {
            "linear-train" => Self::linear_train(224),
            "linear-eval" => Self::LinearEval {
                resize: 256,
                crop: 224,
            },
            "dinov2" => Self::Dinov2(MultiCrop::default()),
            other => {
                bail!("unknown preset {other:?} (expected linear-train, linear-eval or dinov2)")
            }
        })
    }

    /// The crop groups of one sample, in output order.
    pub fn groups(&self) -> Vec<CropGroup> {
        match self {
            Self::LinearTrain { size, .. } => vec![CropGroup {
                count: 1,
                size: *size,
            }],
            Self::LinearEval { crop, .. } => vec![CropGroup {
                count: 1,
                size: *crop,
            }],
            Self::Dinov2(m) => vec![
                CropGroup {
                    count: 2,
                    size: m.global_size,
                },
                CropGroup {
                    count: m.local_crops,
                    size: m.local_size,
                },
            ],
        }
    }

    /// Crops per sample.
    pub fn crops_per_sample(&self) -> usize {
        self.groups().iter().map(|g| g.count).sum()
    }

    /// Augments `img` into `out`, one slice per crop in group order (global 1, global 2,
    /// local 1..n), each `size * size * 3` bytes (HWC).
    pub fn apply(
        &self,
        img: &RgbImage,
        rng: &mut impl Rng,
        resizer: &mut Resizer,
        out: &mut [&mut [u8]],
    ) {
        match self {
            Self::LinearTrain {
                size,
                scale,
                ratio,
                interpolation,
                flip_p,
            } => {
                let rrc = RandomResizedCrop {
                    size: *size,
                    scale: *scale,
                    ratio: *ratio,
                    interpolation: *interpolation,
                };
                let mut crop = rrc.apply(img, rng, resizer);
                if rng.random() < *flip_p {
                    hflip(&mut crop);
                }
                out[0].copy_from_slice(&crop.data);
            }
            Self::LinearEval { resize, crop } => {
                let r = resize_shorter(img, *resize, Interpolation::Bicubic, resizer);
                out[0].copy_from_slice(&center_crop(&r, *crop).data);
            }
            Self::Dinov2(m) => {
                let global = RandomResizedCrop::new(m.global_size, m.global_scale);
                let local = RandomResizedCrop::new(m.local_size, m.local_scale);
                for (k, slot) in out.iter_mut().enumerate() {
                    let (rrc, blur_p, solarize_p) = match k {
                        0 => (&global, m.blur_p.0, 0.0),
                        1 => (&global, m.blur_p.1, m.solarize_p),
                        _ => (&local, m.blur_p.2, 0.0),
                    };
                    let mut crop = rrc.apply(img, rng, resizer);
                    m.color_and_blur(&mut crop, blur_p, solarize_p, rng);
                    slot.copy_from_slice(&crop.data);
                }
            }
        }
    }
}

impl MultiCrop {
    /// flip, RandomApply(ColorJitter), RandomGrayscale, blur, solarize: the reference order.
    fn color_and_blur(
        &self,
        crop: &mut RgbImage,
        blur_p: f64,
        solarize_p: f64,
        rng: &mut impl Rng,
    ) {
        // The parameters are drawn in the reference's order; the colour operations then run
        // fused (one or two passes over the crop instead of one per operation).
        if rng.random() < self.flip_p {
            hflip(crop);
        }
        let mut ops = [ColorOp::Grayscale; 5];
        let mut n = 0;
        if rng.random() < self.jitter_p {
            let (b, c, s, h) = self.jitter;
            let params = ColorJitter {
                brightness: b,
                contrast: c,
                saturation: s,
                hue: h,
            }
            .sample(rng);
            n = params.ops((&mut ops[..4]).try_into().expect("four slots"));
        }
        if rng.random() < self.grayscale_p {
            ops[n] = ColorOp::Grayscale;
            n += 1;
        }
        apply_color_ops(crop, &ops[..n]);
        if blur_p > 0.0 && rng.random() < blur_p {
            let sigma = rng.uniform(0.1, 2.0);
            gaussian_blur(crop, 9, sigma);
        }
        if solarize_p > 0.0 && rng.random() < solarize_p {
            solarize(crop, 128);
        }
    }
}

//! torchvision's `ColorJitter`: sampling the order and factors of brightness, contrast,
//! saturation and hue, and applying them as one fused colour pass.

use super::super::RgbImage;
use super::pass::{ColorOp, apply_color_ops};
use crate::rng::Rng;

/// Sampled `ColorJitter` parameters: the order of the four operations and their factors
/// (`None`: that operation is off).
#[derive(Debug, Clone, PartialEq)]
pub struct JitterParams {
    pub order: [usize; 4],
    pub brightness: Option<f64>,
    pub contrast: Option<f64>,
    pub saturation: Option<f64>,
    pub hue: Option<f64>,
}

/// torchvision `ColorJitter(brightness, contrast, saturation, hue)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorJitter {
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    pub hue: f64,
}

impl ColorJitter {
    /// `get_params`: a random permutation of the four operations, then each factor uniform in
    /// `[max(0, 1 - x), 1 + x]` (hue: `[-h, h]`); an operation with `x == 0` is skipped.
    pub fn sample(&self, rng: &mut impl Rng) -> JitterParams {
        let mut order = [0, 1, 2, 3];
        rng.shuffle(&mut order);
        let factor = |x: f64, rng: &mut dyn FnMut() -> f64| {
            (x > 0.0).then(|| {
                let (lo, hi) = ((1.0 - x).max(0.0), 1.0 + x);
                lo + (hi - lo) * rng()
            })
        };
        let mut u = || rng.random();
        let brightness = factor(self.brightness, &mut u);
        let contrast = factor(self.contrast, &mut u);
        let saturation = factor(self.saturation, &mut u);
        let hue = (self.hue > 0.0).then(|| -self.hue + 2.0 * self.hue * u());
        JitterParams {
            order,
            brightness,
            contrast,
            saturation,
            hue,
        }
    }

    /// Applies sampled parameters in their order.
    pub fn apply(img: &mut RgbImage, p: &JitterParams) {
        let mut ops = [ColorOp::Grayscale; 4];
        let n = p.ops(&mut ops);
        apply_color_ops(img, &ops[..n]);
    }
}

impl JitterParams {
    /// The operations in their order (those that are off left out) into `out`; returns how
    /// many.
    pub fn ops(&self, out: &mut [ColorOp; 4]) -> usize {
        let mut n = 0;
        for op in self.order {
            let op = match op {
                0 => self.brightness.map(ColorOp::Brightness),
                1 => self.contrast.map(ColorOp::Contrast),
                2 => self.saturation.map(ColorOp::Saturation),
                _ => self.hue.map(ColorOp::Hue),
            };
            if let Some(op) = op {
                out[n] = op;
                n += 1;
            }
        }
        n
    }
}

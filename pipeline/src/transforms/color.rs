//! Colour operations exactly as torchvision applies them to PIL images: `ImageEnhance`'s
//! blends for brightness, contrast and saturation, PIL's HSV round trip for hue, PIL's
//! ITU-R 601 luma for grayscale, and `ImageOps.solarize`.

use super::RgbImage;
use crate::rng::Rng;

/// PIL's `L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16`.
#[inline]
fn luma(p: &[u8]) -> u8 {
    ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
}

/// `Image.blend(degenerate, img, alpha)` per channel value, as Pillow's C code (float32).
#[inline]
fn blend(degenerate: u8, value: u8, alpha: f32) -> u8 {
    let t = degenerate as i32 as f32 + alpha * (value as i32 - degenerate as i32) as f32;
    if (0.0..=1.0).contains(&alpha) {
        t as u8
    } else if t <= 0.0 {
        0
    } else if t >= 255.0 {
        255
    } else {
        t as u8
    }
}

/// `ImageEnhance.Brightness(img).enhance(f)`: a blend with black.
pub fn adjust_brightness(img: &mut RgbImage, factor: f64) {
    let f = factor as f32;
    for v in &mut img.data {
        *v = blend(0, *v, f);
    }
}

/// `ImageEnhance.Contrast(img).enhance(f)`: a blend with the rounded mean luma.
pub fn adjust_contrast(img: &mut RgbImage, factor: f64) {
    let sum: u64 = img.data.chunks_exact(3).map(|p| luma(p) as u64).sum();
    let n = (img.width * img.height).max(1) as f64;
    let mean = (sum as f64 / n + 0.5) as u8;
    let f = factor as f32;
    for v in &mut img.data {
        *v = blend(mean, *v, f);
    }
}

/// `ImageEnhance.Color(img).enhance(f)`: a blend with the image's own luma.
pub fn adjust_saturation(img: &mut RgbImage, factor: f64) {
    let f = factor as f32;
    for p in img.data.chunks_exact_mut(3) {
        let l = luma(p);
        for v in p {
            *v = blend(l, *v, f);
        }
    }
}

/// torchvision's PIL `adjust_hue`: RGB -> HSV (Pillow), H += int32(hue * 255) wrapping in
/// uint8, HSV -> RGB (Pillow).
pub fn adjust_hue(img: &mut RgbImage, hue_factor: f64) {
    let shift = (hue_factor * 255.0) as i32 as u8;
    for p in img.data.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(p[0], p[1], p[2]);
        let rgb = hsv_to_rgb(h.wrapping_add(shift), s, v);
        p.copy_from_slice(&rgb);
    }
}

/// Pillow's `rgb2hsv_row` (float and double arithmetic as in its C code).
fn rgb_to_hsv(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return (0, 0, maxc);
    }
    let cr = (maxc - minc) as f32;
    let s = cr / maxc as f32;
    let rc = (maxc - r) as f32 / cr;
    let gc = (maxc - g) as f32 / cr;
    let bc = (maxc - b) as f32 / cr;
    let h: f32 = if r == maxc {
        bc - gc
    } else if g == maxc {
        (2.0 + rc as f64 - bc as f64) as f32
    } else {
        (4.0 + gc as f64 - rc as f64) as f32
    };
    let h = ((h as f64 / 6.0 + 1.0) % 1.0) as f32;
    let uh = ((h as f64 * 255.0) as i32).clamp(0, 255) as u8;
    let us = ((s as f64 * 255.0) as i32).clamp(0, 255) as u8;
    (uh, us, maxc)
}

/// Pillow's `hsv2rgb`.
fn hsv_to_rgb(h: u8, s: u8, v: u8) -> [u8; 3] {
    if s == 0 {
        return [v, v, v];
    }
    let hh = h as f32 as f64 * 6.0 / 255.0;
    let i = hh.floor() as i32;
    let f = (hh - i as f32 as f64) as f32;
    let fs = (s as f32 as f64 / 255.0) as f32;
    let vv = v as f32 as f64;
    let clip = |x: f64| (x.round() as i32).clamp(0, 255) as u8;
    let p = clip(vv * (1.0 - fs as f64));
    let q = clip(vv * (1.0 - fs as f64 * f as f64));
    let t = clip(vv * (1.0 - fs as f64 * (1.0 - f as f64)));
    match i % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// torchvision `rgb_to_grayscale(img, num_output_channels=3)`: PIL luma in all channels.
pub fn grayscale(img: &mut RgbImage) {
    for p in img.data.chunks_exact_mut(3) {
        let l = luma(p);
        p.fill(l);
    }
}

/// `ImageOps.solarize(img, threshold)`: values at or above the threshold are inverted.
pub fn solarize(img: &mut RgbImage, threshold: u8) {
    for v in &mut img.data {
        if *v >= threshold {
            *v = 255 - *v;
        }
    }
}

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
        for op in p.order {
            match op {
                0 => p.brightness.map(|f| adjust_brightness(img, f)),
                1 => p.contrast.map(|f| adjust_contrast(img, f)),
                2 => p.saturation.map(|f| adjust_saturation(img, f)),
                _ => p.hue.map(|f| adjust_hue(img, f)),
            };
        }
    }
}

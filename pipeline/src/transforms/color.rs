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

/// `Image.blend(degenerate, img, alpha)` per channel value, as Pillow's C code: float32
/// arithmetic, truncation, and clipping only when extrapolating (`alpha` outside [0, 1]).
#[inline(always)]
fn blend_value<const CLIP: bool>(degenerate: u8, value: u8, alpha: f32) -> u8 {
    let t = degenerate as f32 + alpha * (value as i32 - degenerate as i32) as f32;
    if CLIP {
        t.clamp(0.0, 255.0) as u8
    } else {
        t as u8
    }
}

/// Blends every value with the degenerate value `deg(pixel)` (constant or per pixel).
fn blend_image(img: &mut RgbImage, alpha: f32, deg: impl Fn(&[u8]) -> u8) {
    fn run<const CLIP: bool>(img: &mut RgbImage, alpha: f32, deg: &impl Fn(&[u8]) -> u8) {
        for p in img.data.chunks_exact_mut(3) {
            let d = deg(p);
            for v in p {
                *v = blend_value::<CLIP>(d, *v, alpha);
            }
        }
    }
    if (0.0..=1.0).contains(&alpha) {
        run::<false>(img, alpha, &deg)
    } else {
        run::<true>(img, alpha, &deg)
    }
}

/// `ImageEnhance.Brightness(img).enhance(f)`: a blend with black.
pub fn adjust_brightness(img: &mut RgbImage, factor: f64) {
    blend_image(img, factor as f32, |_| 0);
}

/// `ImageEnhance.Contrast(img).enhance(f)`: a blend with the rounded mean luma.
pub fn adjust_contrast(img: &mut RgbImage, factor: f64) {
    let sum: u64 = img.data.chunks_exact(3).map(|p| luma(p) as u64).sum();
    let n = (img.width * img.height).max(1) as f64;
    let mean = (sum as f64 / n + 0.5) as u8;
    blend_image(img, factor as f32, |_| mean);
}

/// `ImageEnhance.Color(img).enhance(f)`: a blend with the image's own luma.
pub fn adjust_saturation(img: &mut RgbImage, factor: f64) {
    blend_image(img, factor as f32, luma);
}

/// torchvision's PIL `adjust_hue`: RGB -> HSV (Pillow), H += int32(hue * 255) wrapping in
/// uint8, HSV -> RGB (Pillow).
pub fn adjust_hue(img: &mut RgbImage, hue_factor: f64) {
    let shift = (hue_factor * 255.0) as i32 as u8;
    let t = tables();
    for p in img.data.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(t, p[0], p[1], p[2]);
        let rgb = hsv_to_rgb(t, h.wrapping_add(shift), s, v);
        p.copy_from_slice(&rgb);
    }
}

/// Every intermediate of Pillow's HSV conversions that depends on at most two 8-bit values,
/// computed once with the exact float/double operations of its C code; the per-pixel work is
/// then table look-ups and a few multiplications (same results, tested bit for bit).
struct HsvTables {
    /// `(float)a / (float)cr` at `[a * 256 + cr]`.
    quot: Vec<f32>,
    /// `CLIP8((int)((cr / (float)maxc) * 255.0))` at `[cr * 256 + maxc]`.
    sat: Vec<u8>,
    /// For each h: `i = floor(h * 6.0 / 255.0)` and `f`.
    hue_i: [u8; 256],
    /// `1.0 - fs` for each s.
    fac_p: [f64; 256],
    /// `1.0 - fs * f` (float product) at `[s * 256 + h]`.
    fac_q: Vec<f64>,
    /// `1.0 - fs * (1.0 - f)` (double product) at `[s * 256 + h]`.
    fac_t: Vec<f64>,
}

fn tables() -> &'static HsvTables {
    static T: std::sync::OnceLock<HsvTables> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut quot = vec![0f32; 256 * 256];
        let mut sat = vec![0u8; 256 * 256];
        for a in 0..256usize {
            for b in 1..256usize {
                quot[a * 256 + b] = a as f32 / b as f32;
                let s = a as f32 / b as f32; // a = cr, b = maxc
                sat[a * 256 + b] = ((s as f64 * 255.0) as i32).clamp(0, 255) as u8;
            }
        }
        let mut hue_i = [0u8; 256];
        let mut f = [0f32; 256];
        for h in 0..256 {
            let hh = h as f32 as f64 * 6.0 / 255.0;
            let i = hh as i32;
            hue_i[h] = i as u8;
            f[h] = (hh - i as f32 as f64) as f32;
        }
        let mut fac_p = [0f64; 256];
        let mut fac_q = vec![0f64; 256 * 256];
        let mut fac_t = vec![0f64; 256 * 256];
        for s in 0..256 {
            let fs = (s as f32 as f64 / 255.0) as f32;
            fac_p[s] = 1.0 - fs as f64;
            for h in 0..256 {
                fac_q[s * 256 + h] = 1.0 - (fs * f[h]) as f64;
                fac_t[s * 256 + h] = 1.0 - fs as f64 * (1.0 - f[h] as f64);
            }
        }
        HsvTables {
            quot,
            sat,
            hue_i,
            fac_p,
            fac_q,
            fac_t,
        }
    })
}

/// Pillow's `rgb2hsv_row`.
#[inline]
fn rgb_to_hsv(t: &HsvTables, r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return (0, 0, maxc);
    }
    let cr = (maxc - minc) as usize;
    let q = |x: u8| t.quot[(maxc - x) as usize * 256 + cr];
    let h: f32 = if r == maxc {
        q(b) - q(g)
    } else if g == maxc {
        (2.0 + q(r) as f64 - q(b) as f64) as f32
    } else {
        (4.0 + q(g) as f64 - q(r) as f64) as f32
    };
    // fmod(h / 6 + 1, 1) for a value in [0, 2): subtracting 1.0 is exact there.
    let x = h as f64 / 6.0 + 1.0;
    let h = (if x >= 1.0 { x - 1.0 } else { x }) as f32;
    let uh = ((h as f64 * 255.0) as i32).clamp(0, 255) as u8;
    (uh, t.sat[cr * 256 + maxc as usize], maxc)
}

/// Pillow's `hsv2rgb`.
#[inline]
fn hsv_to_rgb(t: &HsvTables, h: u8, s: u8, v: u8) -> [u8; 3] {
    if s == 0 {
        return [v, v, v];
    }
    let vv = v as f64;
    // C's round() (halves away from zero) for x >= 0, without a libm call.
    let round = |x: f64| {
        let i = x as i32;
        (if x - i as f64 >= 0.5 { i + 1 } else { i }).clamp(0, 255) as u8
    };
    let k = s as usize * 256 + h as usize;
    let p = round(vv * t.fac_p[s as usize]);
    let q = round(vv * t.fac_q[k]);
    let tt = round(vv * t.fac_t[k]);
    match t.hue_i[h as usize] % 6 {
        0 => [v, tt, p],
        1 => [q, v, p],
        2 => [p, v, tt],
        3 => [p, q, v],
        4 => [tt, p, v],
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

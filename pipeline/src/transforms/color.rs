//! Colour operations exactly as torchvision applies them to PIL images: `ImageEnhance`'s
//! blends for brightness, contrast and saturation, PIL's HSV round trip for hue, PIL's
//! ITU-R 601 luma for grayscale, and `ImageOps.solarize`.

use super::RgbImage;
use super::planes::{BLOCK, merge, split};
use crate::rng::Rng;

/// PIL's `L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16`.
#[inline(always)]
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// `Image.blend(degenerate, img, alpha)` per channel value, as Pillow's C code: float32
/// arithmetic, truncation, and clipping to [0, 255] (a no-op unless `alpha` extrapolates;
/// clamping then truncating is also exactly what a saturating `as u8` does).
#[inline(always)]
fn blend_value(degenerate: u8, value: u8, alpha: f32) -> u8 {
    let t = degenerate as f32 + alpha * (value as i32 - degenerate as i32) as f32;
    // SAFETY: the clamped value is finite and in [0, 255].
    unsafe { t.clamp(0.0, 255.0).to_int_unchecked::<i32>() as u8 }
}

/// One colour operation of [`apply_color_ops`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColorOp {
    /// `ImageEnhance.Brightness(img).enhance(f)`: a blend with black.
    Brightness(f64),
    /// `ImageEnhance.Contrast(img).enhance(f)`: a blend with the rounded mean luma of the image
    /// as it is when this operation runs.
    Contrast(f64),
    /// `ImageEnhance.Color(img).enhance(f)`: a blend with each pixel's own luma.
    Saturation(f64),
    /// `adjust_hue(img, f)`.
    Hue(f64),
    /// `rgb_to_grayscale(img, 3)`: PIL's luma in all three channels.
    Grayscale,
}

/// A [`ColorOp`] with its per-image constants resolved.
#[derive(Clone, Copy)]
enum BlockOp {
    /// Blend with a constant degenerate value.
    Constant {
        alpha: f32,
        degenerate: u8,
    },
    Saturation(f32),
    Hue(u8),
    Grayscale,
}

/// Applies `ops` in order, with the same pixels as applying each operation to the whole image
/// in turn. The image is read and written once per pass, not once per operation: a pass
/// de-interleaves blocks of pixels into planes, runs every operation on the block (the loops
/// vectorise, for AVX2 or AVX-512 where the CPU has them; the hue shift has its own kernels)
/// and writes it back. A contrast operation needs the mean luma of the image before it, so it
/// starts a new pass; the previous pass sums the luma on the way.
pub fn apply_color_ops(img: &mut RgbImage, ops: &[ColorOp]) {
    match simd_level() {
        // SAFETY (both): simd_level found AVX2 and FMA, and for Avx512 AVX-512 F and BW.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { apply_color_ops_avx512(img, ops) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { apply_color_ops_avx2(img, ops) },
        Simd::None => apply_color_ops_generic(img, ops, Simd::None),
    }
}

/// The instructions the colour pass uses on this CPU.
fn simd_level() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            return if has!("avx512f") && has!("avx512bw") {
                Simd::Avx512
            } else {
                Simd::Avx2
            };
        }
    }
    Simd::None
}

/// The kernels [`apply_color_ops`] runs on this CPU (colour jitter, grayscale, the hue round
/// trip): `AVX-512`, `AVX2` or `scalar`.
pub fn color_kernels() -> &'static str {
    match simd_level() {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => "AVX-512",
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => "AVX2",
        Simd::None => "scalar",
    }
}

/// The instructions the colour pass may use (checked by the caller): `Avx2` means AVX2 and
/// FMA, `Avx512` adds AVX-512 F and BW. They pick the hue kernel (all give the same bits) and
/// the plane split/merge; `None` is plain code.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Simd {
    None,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply_color_ops_avx2(img: &mut RgbImage, ops: &[ColorOp]) {
    apply_color_ops_generic(img, ops, Simd::Avx2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw")]
unsafe fn apply_color_ops_avx512(img: &mut RgbImage, ops: &[ColorOp]) {
    apply_color_ops_generic(img, ops, Simd::Avx512)
}

/// `simd`: the caller checked that the CPU has it.
#[inline(always)]
fn apply_color_ops_generic(img: &mut RgbImage, ops: &[ColorOp], simd: Simd) {
    let pixels = (img.width * img.height).max(1) as f64;
    let mut luma_sum: Option<u64> = None;
    let mut i = 0;
    while i < ops.len() {
        let mut j = i + 1;
        while j < ops.len() && !matches!(ops[j], ColorOp::Contrast(_)) {
            j += 1;
        }
        let mut pass = [BlockOp::Grayscale; 8];
        let mut n = 0;
        for op in &ops[i..j] {
            if n == pass.len() {
                // More operations than one pass holds: run what we have.
                color_pass(&mut img.data, &pass[..n], false, simd);
                n = 0;
            }
            pass[n] = match *op {
                ColorOp::Brightness(f) => BlockOp::Constant {
                    alpha: f as f32,
                    degenerate: 0,
                },
                ColorOp::Contrast(f) => {
                    let sum =
                        luma_sum.unwrap_or_else(|| color_pass(&mut img.data, &[], true, simd));
                    BlockOp::Constant {
                        alpha: f as f32,
                        degenerate: (sum as f64 / pixels + 0.5) as u8,
                    }
                }
                ColorOp::Saturation(f) => BlockOp::Saturation(f as f32),
                ColorOp::Hue(f) => BlockOp::Hue((f * 255.0) as i32 as u8),
                ColorOp::Grayscale => BlockOp::Grayscale,
            };
            n += 1;
        }
        luma_sum = Some(color_pass(&mut img.data, &pass[..n], j < ops.len(), simd));
        i = j;
    }
}

/// Runs `ops` over the image block by block; returns the luma sum of the result when
/// `sum_luma` (else 0). With no operations the image is only read.
#[inline(always)]
fn color_pass(data: &mut [u8], ops: &[BlockOp], sum_luma: bool, simd: Simd) -> u64 {
    let mut r = [0u8; BLOCK];
    let mut g = [0u8; BLOCK];
    let mut b = [0u8; BLOCK];
    let mut sum = 0u64;
    for chunk in data.chunks_mut(BLOCK * 3) {
        let n = chunk.len() / 3;
        if n < BLOCK {
            // Black padding: luma 0, so it adds nothing to the sum.
            r.fill(0);
            g.fill(0);
            b.fill(0);
        }
        // SAFETY: `simd` is not `None` only where the CPU has AVX2 (so SSSE3).
        unsafe { split(chunk, &mut r, &mut g, &mut b, simd != Simd::None) };
        for op in ops {
            match *op {
                BlockOp::Constant { alpha, degenerate } => {
                    for c in [&mut r, &mut g, &mut b] {
                        for v in c.iter_mut() {
                            *v = blend_value(degenerate, *v, alpha);
                        }
                    }
                }
                BlockOp::Saturation(alpha) => {
                    for j in 0..BLOCK {
                        let l = luma(r[j], g[j], b[j]);
                        r[j] = blend_value(l, r[j], alpha);
                        g[j] = blend_value(l, g[j], alpha);
                        b[j] = blend_value(l, b[j], alpha);
                    }
                }
                BlockOp::Hue(shift) => {
                    // SAFETY (both kernels): the CPU has what `simd` names.
                    #[cfg(target_arch = "x86_64")]
                    match simd {
                        Simd::Avx512 => {
                            unsafe { super::hue_avx512::hue_block(&mut r, &mut g, &mut b, shift) };
                            continue;
                        }
                        Simd::Avx2 => {
                            unsafe { super::hue_avx2::hue_block(&mut r, &mut g, &mut b, shift) };
                            continue;
                        }
                        Simd::None => {}
                    }
                    for j in 0..BLOCK {
                        let (h, s, v) = rgb_to_hsv_arith(r[j], g[j], b[j]);
                        (r[j], g[j], b[j]) = hsv_to_rgb_arith(h.wrapping_add(shift), s, v);
                    }
                }
                BlockOp::Grayscale => {
                    for j in 0..BLOCK {
                        let l = luma(r[j], g[j], b[j]);
                        (r[j], g[j], b[j]) = (l, l, l);
                    }
                }
            }
        }
        if sum_luma {
            let mut s = 0u32;
            for j in 0..BLOCK {
                s += luma(r[j], g[j], b[j]) as u32;
            }
            sum += s as u64;
        }
        if !ops.is_empty() {
            // SAFETY: as for the split.
            unsafe { merge(chunk, &r, &g, &b, simd != Simd::None) };
        }
    }
    sum
}

/// `ImageEnhance.Brightness(img).enhance(f)`: a blend with black.
pub fn adjust_brightness(img: &mut RgbImage, factor: f64) {
    apply_color_ops(img, &[ColorOp::Brightness(factor)]);
}

/// `ImageEnhance.Contrast(img).enhance(f)`: a blend with the rounded mean luma.
pub fn adjust_contrast(img: &mut RgbImage, factor: f64) {
    apply_color_ops(img, &[ColorOp::Contrast(factor)]);
}

/// `ImageEnhance.Color(img).enhance(f)`: a blend with the image's own luma.
pub fn adjust_saturation(img: &mut RgbImage, factor: f64) {
    apply_color_ops(img, &[ColorOp::Saturation(factor)]);
}

/// torchvision's PIL `adjust_hue`: RGB -> HSV (Pillow), H += int32(hue * 255) wrapping in
/// uint8, HSV -> RGB (Pillow).
///
/// The portable code runs the exact float/double operations of Pillow's `rgb2hsv_row` and
/// `hsv2rgb`, written without branches (selects) so that the compiler vectorises them. IEEE
/// arithmetic is the same in vector lanes, and nothing is fused into FMAs, so the result is
/// Pillow's bit for bit (tested on every RGB value and every HSV triple). On x86-64 with AVX2
/// and FMA, float32 kernels (`hue_avx2.rs`, `hue_avx512.rs`) give the same bytes, also
/// tested on every input.
pub fn adjust_hue(img: &mut RgbImage, hue_factor: f64) {
    apply_color_ops(img, &[ColorOp::Hue(hue_factor)]);
}

/// Pillow's `rgb2hsv_row` for one pixel, branch-free.
#[inline(always)]
pub(super) fn rgb_to_hsv_arith(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let (ri, gi, bi) = (r as i32, g as i32, b as i32);
    let maxc = ri.max(gi).max(bi);
    let minc = ri.min(gi).min(bi);
    let grey = maxc == minc;
    let cr = (maxc - minc) as f32;
    // Grey pixels (cr == 0) take h = s = 0 below; divide by 1 so no lane sees 0 / 0.
    let div = if grey { 1.0 } else { cr };
    let rc = (maxc - ri) as f32 / div;
    let gc = (maxc - gi) as f32 / div;
    let bc = (maxc - bi) as f32 / div;
    let h_g = (2.0 + rc as f64 - bc as f64) as f32;
    let h_b = (4.0 + gc as f64 - rc as f64) as f32;
    let h = if ri == maxc {
        bc - gc
    } else if gi == maxc {
        h_g
    } else {
        h_b
    };
    // fmod(h / 6 + 1, 1) for a value in [0, 2): subtracting 1.0 is exact there.
    // `h / 6.0`, `* 6.0 / 255.0` and `/ 255.0` below are multiplications by reciprocals:
    // not the same doubles in general, but the same uint8/float32 results wherever they are
    // used (the exhaustive tests check every input).
    let x = h as f64 * (1.0 / 6.0) + 1.0;
    let h = (if x >= 1.0 { x - 1.0 } else { x }) as f32;
    // SAFETY (all `to_int_unchecked` here): the values are finite and in [0, 256).
    let uh = unsafe { (h as f64 * 255.0).to_int_unchecked::<i32>() };
    let sat = cr / (if grey { 1 } else { maxc }) as f32;
    let us = unsafe { (sat as f64 * 255.0).min(255.0).to_int_unchecked::<i32>() };
    let uh = if grey { 0 } else { uh };
    let us = if grey { 0 } else { us };
    (uh as u8, us as u8, maxc as u8)
}

/// C's `round()` (halves away from zero) of `x >= 0`, clipped to uint8.
#[inline(always)]
fn round_clip8(x: f64) -> i32 {
    let i = x.floor();
    let r = if x - i >= 0.5 { i + 1.0 } else { i };
    // SAFETY: x >= 0 is finite.
    unsafe { r.min(255.0).to_int_unchecked::<i32>() }
}

/// Pillow's `hsv2rgb` for one pixel, branch-free.
#[inline(always)]
pub(super) fn hsv_to_rgb_arith(h: u8, s: u8, v: u8) -> (u8, u8, u8) {
    let hh = h as f32 as f64 * 6.0 * (1.0 / 255.0);
    let i = hh.floor();
    let f = (hh - i as f32 as f64) as f32;
    // SAFETY: i is an integer in [0, 6].
    let i = unsafe { i.to_int_unchecked::<i32>() };
    let fs = (s as f32 as f64 * (1.0 / 255.0)) as f32;
    let vv = v as f32 as f64;
    let p = round_clip8(vv * (1.0 - fs as f64));
    let q = round_clip8(vv * (1.0 - (fs * f) as f64));
    let t = round_clip8(vv * (1.0 - fs as f64 * (1.0 - f as f64)));
    let v = v as i32;
    // switch (i % 6) with i in 0..=6: 0 [v t p], 1 [q v p], 2 [p v t], 3 [p q v], 4 [t p v],
    // 5 [v p q].
    let i = if i == 6 { 0 } else { i };
    let nr = if i == 0 || i == 5 {
        v
    } else if i == 1 {
        q
    } else if i == 4 {
        t
    } else {
        p
    };
    let ng = if i == 0 {
        t
    } else if i == 1 || i == 2 {
        v
    } else if i == 3 {
        q
    } else {
        p
    };
    let nb = if i <= 1 {
        p
    } else if i == 2 {
        t
    } else if i <= 4 {
        v
    } else {
        q
    };
    let grey = s == 0;
    (
        (if grey { v } else { nr }) as u8,
        (if grey { v } else { ng }) as u8,
        (if grey { v } else { nb }) as u8,
    )
}

/// torchvision `rgb_to_grayscale(img, num_output_channels=3)`: PIL luma in all channels.
pub fn grayscale(img: &mut RgbImage) {
    apply_color_ops(img, &[ColorOp::Grayscale]);
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

#[cfg(test)]
mod tests {
    //! The vectorised HSV arithmetic against the table-driven scalar transcription of Pillow's
    //! C code that the parity test (`tests/transforms_parity.rs`) checked against Pillow.
    use super::*;

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
                let hh = h as f32 as f64 * 6.0 * (1.0 / 255.0);
                let i = hh as i32;
                hue_i[h] = i as u8;
                f[h] = (hh - i as f32 as f64) as f32;
            }
            let mut fac_p = [0f64; 256];
            let mut fac_q = vec![0f64; 256 * 256];
            let mut fac_t = vec![0f64; 256 * 256];
            for s in 0..256 {
                let fs = (s as f32 as f64 * (1.0 / 255.0)) as f32;
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
        // `h / 6.0`, `* 6.0 / 255.0` and `/ 255.0` below are multiplications by reciprocals:
        // not the same doubles in general, but the same uint8/float32 results wherever they are
        // used (the exhaustive tests check every input).
        let x = h as f64 * (1.0 / 6.0) + 1.0;
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

    #[test]
    fn rgb_to_hsv_matches_the_reference_for_every_colour() {
        let t = tables();
        for r in 0..=255u8 {
            for g in 0..=255u8 {
                for b in 0..=255u8 {
                    assert_eq!(
                        rgb_to_hsv_arith(r, g, b),
                        rgb_to_hsv(t, r, g, b),
                        "{r} {g} {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn hsv_to_rgb_matches_the_reference_for_every_triple() {
        let t = tables();
        for h in 0..=255u8 {
            for s in 0..=255u8 {
                for v in 0..=255u8 {
                    let (r, g, b) = hsv_to_rgb_arith(h, s, v);
                    assert_eq!([r, g, b], hsv_to_rgb(t, h, s, v), "{h} {s} {v}");
                }
            }
        }
    }

    /// The per-operation scalar code the parity test checked against Pillow.
    fn reference_op(img: &mut RgbImage, op: ColorOp) {
        let t = tables();
        let l = |p: &[u8]| luma(p[0], p[1], p[2]);
        let blend = |img: &mut RgbImage, alpha: f64, deg: &dyn Fn(&[u8]) -> u8| {
            let alpha = alpha as f32;
            let clip = !(0.0..=1.0).contains(&alpha);
            for p in img.data.chunks_exact_mut(3) {
                let d = deg(p);
                for v in p {
                    let x = d as f32 + alpha * (*v as i32 - d as i32) as f32;
                    *v = if clip {
                        x.clamp(0.0, 255.0) as u8
                    } else {
                        x as u8
                    };
                }
            }
        };
        match op {
            ColorOp::Brightness(f) => blend(img, f, &|_| 0),
            ColorOp::Contrast(f) => {
                let sum: u64 = img.data.chunks_exact(3).map(|p| l(p) as u64).sum();
                let n = (img.width * img.height).max(1) as f64;
                let mean = (sum as f64 / n + 0.5) as u8;
                blend(img, f, &|_| mean)
            }
            ColorOp::Saturation(f) => blend(img, f, &l),
            ColorOp::Hue(f) => {
                let shift = (f * 255.0) as i32 as u8;
                for p in img.data.chunks_exact_mut(3) {
                    let (h, s, v) = rgb_to_hsv(t, p[0], p[1], p[2]);
                    p.copy_from_slice(&hsv_to_rgb(t, h.wrapping_add(shift), s, v));
                }
            }
            ColorOp::Grayscale => {
                for p in img.data.chunks_exact_mut(3) {
                    let v = l(p);
                    p.fill(v);
                }
            }
        }
    }

    fn noise(w: usize, h: usize, seed: u32) -> RgbImage {
        let data = (0..w * h * 3)
            .map(|i| ((i as u32 ^ seed).wrapping_mul(2_654_435_761)).rotate_right(13) as u8)
            .collect();
        RgbImage::from_raw(w, h, data)
    }

    #[test]
    fn fused_passes_equal_the_operations_one_by_one() {
        use crate::rng::Xoshiro;
        let mut rng = Xoshiro::new(5);
        let cj = ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.1,
        };
        // Odd sizes (partial blocks), extrapolating factors, grayscale at the end, repeated
        // contrast, contrast first and last.
        let fixed = [
            vec![
                ColorOp::Contrast(1.3),
                ColorOp::Hue(0.07),
                ColorOp::Contrast(0.6),
            ],
            vec![
                ColorOp::Saturation(1.7),
                ColorOp::Brightness(0.3),
                ColorOp::Grayscale,
            ],
            vec![
                ColorOp::Brightness(1.4),
                ColorOp::Contrast(0.0),
                ColorOp::Hue(-0.5),
            ],
        ];
        for k in 0..200u32 {
            let (w, h) = (1 + (k as usize * 37) % 90, 1 + (k as usize * 11) % 40);
            let src = noise(w, h, k);
            let ops = match fixed.get(k as usize) {
                Some(ops) => ops.clone(),
                None => {
                    let mut ops = [ColorOp::Grayscale; 4];
                    let n = cj.sample(&mut rng).ops(&mut ops);
                    let mut ops = ops[..n].to_vec();
                    if k % 3 == 0 {
                        ops.push(ColorOp::Grayscale);
                    }
                    ops
                }
            };
            let mut ours = src.clone();
            apply_color_ops(&mut ours, &ops);
            // The same code compiled without AVX2.
            let mut plain = src.clone();
            apply_color_ops_generic(&mut plain, &ops, Simd::None);
            assert!(plain == ours, "{ops:?} on {w}x{h} (no AVX2)");
            // The AVX2 kernels where the CPU would run the AVX-512 ones.
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                let mut avx2 = src.clone();
                // SAFETY: the CPU has AVX2 and FMA.
                unsafe { apply_color_ops_avx2(&mut avx2, &ops) };
                assert!(avx2 == ours, "{ops:?} on {w}x{h} (AVX2)");
            }
            let mut reference = src.clone();
            for op in &ops {
                reference_op(&mut reference, *op);
            }
            assert!(ours == reference, "{ops:?} on {w}x{h}");
        }
    }

    #[test]
    fn adjust_hue_matches_the_reference_per_pixel() {
        let t = tables();
        // Odd sizes: partial blocks.
        let (w, h) = (67, 13);
        let data: Vec<u8> = (0..w * h * 3)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8)
            .collect();
        for f in [-0.5, -0.1, -0.037, 0.0, 0.02, 0.1, 0.5] {
            let mut img = RgbImage::from_raw(w, h, data.clone());
            adjust_hue(&mut img, f);
            let shift = (f * 255.0) as i32 as u8;
            for (p, q) in data.chunks_exact(3).zip(img.data.chunks_exact(3)) {
                let (hh, s, v) = rgb_to_hsv(t, p[0], p[1], p[2]);
                assert_eq!(q, hsv_to_rgb(t, hh.wrapping_add(shift), s, v), "{f}");
            }
        }
    }
}

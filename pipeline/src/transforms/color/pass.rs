//! [`apply_color_ops`]: a list of colour operations fused into passes over blocks of pixel
//! planes, each image read and written once per pass.

use super::super::RgbImage;
use super::hsv::{hsv_to_rgb_arith, rgb_to_hsv_arith};
use super::pixel::{blend_value, luma};
use super::planes::{BLOCK, merge, split};
use super::simd::{Simd, simd_level};

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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn apply_color_ops_avx2(img: &mut RgbImage, ops: &[ColorOp]) {
    apply_color_ops_generic(img, ops, Simd::Avx2)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f,avx512bw")]
unsafe fn apply_color_ops_avx512(img: &mut RgbImage, ops: &[ColorOp]) {
    apply_color_ops_generic(img, ops, Simd::Avx512)
}

/// `simd`: the caller checked that the CPU has it.
#[inline(always)]
pub(super) fn apply_color_ops_generic(img: &mut RgbImage, ops: &[ColorOp], simd: Simd) {
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

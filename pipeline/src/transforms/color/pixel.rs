//! Pillow's per-value colour arithmetic that the colour operations share: the ITU-R 601 luma
//! and `Image.blend`.

/// PIL's `L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16`.
#[inline(always)]
pub(super) fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// `Image.blend(degenerate, img, alpha)` per channel value, as Pillow's C code: float32
/// arithmetic, truncation, and clipping to [0, 255] (a no-op unless `alpha` extrapolates;
/// clamping then truncating is also exactly what a saturating `as u8` does).
#[inline(always)]
pub(super) fn blend_value(degenerate: u8, value: u8, alpha: f32) -> u8 {
    let t = degenerate as f32 + alpha * (value as i32 - degenerate as i32) as f32;
    // SAFETY: the clamped value is finite and in [0, 255].
    unsafe { t.clamp(0.0, 255.0).to_int_unchecked::<i32>() as u8 }
}

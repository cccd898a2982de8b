//! The hue kernel of `hue_avx2.rs` on sixteen pixels at a time with AVX-512 (F and BW): the
//! same float32 operations, so the same bits (also checked for every input); compare masks
//! replace the blends.

use std::arch::x86_64::*;

/// `(int)(x * 255.0)` of Pillow (see `hue_avx2.rs`).
#[inline]
#[target_feature(enable = "avx512f")]
fn floor_255(x: __m512) -> __m512i {
    _mm512_cvttps_epi32(_mm512_mul_ps(x, _mm512_set1_ps(255.0)))
}

/// Pillow's `rgb2hsv_row` on sixteen pixels (32-bit lanes holding 0..=255).
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn rgb_to_hsv16(r: __m512i, g: __m512i, b: __m512i) -> [__m512i; 3] {
    let maxc = _mm512_max_epi32(r, _mm512_max_epi32(g, b));
    let minc = _mm512_min_epi32(r, _mm512_min_epi32(g, b));
    let cr = _mm512_sub_epi32(maxc, minc);
    let colour = _mm512_cmpneq_epi32_mask(cr, _mm512_setzero_si512());
    let sum = _mm512_add_epi32(r, _mm512_add_epi32(g, b));
    let a = _mm512_sub_epi32(_mm512_add_epi32(maxc, _mm512_add_epi32(maxc, minc)), sum);
    let one = _mm512_set1_epi32(1);
    let crf = _mm512_cvtepi32_ps(_mm512_max_epi32(cr, one));
    let q = _mm512_div_ps(_mm512_cvtepi32_ps(a), crf);
    let r_max = _mm512_cmpeq_epi32_mask(r, maxc);
    let g_max = !r_max & _mm512_cmpeq_epi32_mask(g, maxc);
    let b_max = !(r_max | g_max);
    let next_min = (r_max & !_mm512_cmpgt_epi32_mask(g, b))
        | (g_max & !_mm512_cmpgt_epi32_mask(r, b))
        | (b_max & !_mm512_cmpgt_epi32_mask(g, r));
    let sel = |x: f32, y: f32, z: f32| {
        _mm512_mask_blend_ps(
            r_max,
            _mm512_mask_blend_ps(g_max, _mm512_set1_ps(z), _mm512_set1_ps(y)),
            _mm512_set1_ps(x),
        )
    };
    let base = _mm512_mask_blend_ps(next_min, sel(1.0, 1.0, 3.0), sel(-1.0, 3.0, 5.0));
    let h = _mm512_mask_blend_ps(
        next_min ^ r_max,
        _mm512_add_ps(base, q),
        _mm512_sub_ps(base, q),
    );
    let six = _mm512_set1_ps(6.0);
    let sixth = _mm512_set1_ps(1.0 / 6.0);
    let pos = {
        let q0 = _mm512_mul_ps(h, sixth);
        _mm512_fmadd_ps(_mm512_fnmadd_ps(q0, six, h), sixth, q0)
    };
    let neg = {
        let q0 = _mm512_fmadd_ps(h, sixth, _mm512_set1_ps(1.0));
        let r = _mm512_add_ps(_mm512_fnmadd_ps(six, q0, six), h);
        _mm512_fmadd_ps(r, sixth, q0)
    };
    let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(h, _mm512_setzero_ps());
    let uh = floor_255(_mm512_mask_blend_ps(negative, pos, neg));
    let sat = _mm512_div_ps(crf, _mm512_cvtepi32_ps(_mm512_max_epi32(maxc, one)));
    let us = floor_255(sat);
    [
        _mm512_maskz_mov_epi32(colour, uh),
        _mm512_maskz_mov_epi32(colour, us),
        maxc,
    ]
}

/// `x / 255` for integral `x` in [0, 255] (see `hue_avx2.rs`).
#[inline]
#[target_feature(enable = "avx512f")]
fn div_255(x: __m512) -> __m512 {
    _mm512_mul_ps(x, _mm512_set1_ps(1.0 / 255.0))
}

/// `round(v * (1 - x))` for integral `v` in [0, 255] and `x` in [0, 1] (see `hue_avx2.rs`).
#[inline]
#[target_feature(enable = "avx512f")]
fn round_scaled(v: __m512, x: __m512) -> __m512i {
    _mm512_cvttps_epi32(_mm512_add_ps(
        _mm512_fnmadd_ps(v, x, v),
        _mm512_set1_ps(0.5),
    ))
}

/// Pillow's `hsv2rgb` on sixteen pixels; returns `r | g << 8 | b << 16` per lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn hsv_to_rgb16(h: __m512i, s: __m512i, v: __m512i) -> __m512i {
    let h6 = _mm512_add_epi32(_mm512_slli_epi32::<2>(h), _mm512_slli_epi32::<1>(h));
    let i = _mm512_srli_epi32::<23>(_mm512_mullo_epi32(h6, _mm512_set1_epi32(0x8081)));
    let rem = _mm512_sub_epi32(h6, _mm512_mullo_epi32(i, _mm512_set1_epi32(255)));
    let f = div_255(_mm512_cvtepi32_ps(rem));
    let fs = div_255(_mm512_cvtepi32_ps(s));
    let vf = _mm512_cvtepi32_ps(v);
    let p = round_scaled(vf, fs);
    let q = round_scaled(vf, _mm512_mul_ps(fs, f));
    // Pillow's doubles for `t`, v * (1.0 - fs * (1.0 - f)), give what this gives with
    // fs * (1 - f) rounded once to float32 (checked for every h, s and v).
    let t = round_scaled(vf, _mm512_fnmadd_ps(fs, f, fs));
    let word = _mm512_or_si512(
        _mm512_or_si512(v, _mm512_slli_epi32::<8>(p)),
        _mm512_or_si512(_mm512_slli_epi32::<16>(q), _mm512_slli_epi32::<24>(t)),
    );
    let pick = |r: i32, g: i32, b: i32| r | g << 8 | b << 16 | (0x80 << 24);
    let table = _mm512_setr_epi32(
        pick(0, 3, 1),
        pick(2, 0, 1),
        pick(1, 0, 3),
        pick(1, 2, 0),
        pick(3, 1, 0),
        pick(0, 1, 2),
        pick(0, 3, 1),
        pick(0, 3, 1),
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    );
    let offsets = _mm512_set4_epi32(0x0c0c0c, 0x080808, 0x040404, 0);
    let control = _mm512_add_epi32(_mm512_permutexvar_epi32(i, table), offsets);
    _mm512_shuffle_epi8(word, control)
}

/// Hue shift of 64 pixels held as planes, in place.
///
/// # Safety
/// The CPU must have AVX-512 F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn hue_block(r: &mut [u8; 64], g: &mut [u8; 64], b: &mut [u8; 64], shift: u8) {
    let mask = _mm512_set1_epi32(0xff);
    let shift = _mm512_set1_epi32(shift as i32);
    for j in (0..64).step_by(16) {
        // SAFETY: j + 16 <= 64: each access covers 16 bytes inside its plane.
        unsafe {
            let load =
                |p: &[u8; 64]| _mm512_cvtepu8_epi32(_mm_loadu_si128(p.as_ptr().add(j).cast()));
            let [hh, s, v] = rgb_to_hsv16(load(r), load(g), load(b));
            let hh = _mm512_and_si512(_mm512_add_epi32(hh, shift), mask);
            let rgb = hsv_to_rgb16(hh, s, v);
            _mm_storeu_si128(r.as_mut_ptr().add(j).cast(), _mm512_cvtepi32_epi8(rgb));
            let g8 = _mm512_cvtepi32_epi8(_mm512_srli_epi32::<8>(rgb));
            _mm_storeu_si128(g.as_mut_ptr().add(j).cast(), g8);
            let b8 = _mm512_cvtepi32_epi8(_mm512_srli_epi32::<16>(rgb));
            _mm_storeu_si128(b.as_mut_ptr().add(j).cast(), b8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::hsv::{hsv_to_rgb_arith, rgb_to_hsv_arith};
    use super::*;

    fn lanes(x: __m512i) -> [i32; 16] {
        // SAFETY: same size, any bits are valid.
        unsafe { std::mem::transmute(x) }
    }

    fn vector(x: [i32; 16]) -> __m512i {
        // SAFETY: same size, any bits are valid.
        unsafe { std::mem::transmute(x) }
    }

    fn has_avx512() -> bool {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
    }

    #[test]
    fn rgb_to_hsv16_matches_the_scalar_arithmetic_for_every_colour() {
        if !has_avx512() {
            return;
        }
        let mut bad = 0;
        for r in 0..256 {
            for g in 0..256 {
                for b in (0..256).step_by(16) {
                    let bs = std::array::from_fn::<i32, 16, _>(|k| b + k as i32);
                    // SAFETY: the CPU has AVX-512 F and BW (checked above).
                    let [h, s, v] = unsafe {
                        rgb_to_hsv16(_mm512_set1_epi32(r), _mm512_set1_epi32(g), vector(bs))
                    };
                    let (h, s, v) = (lanes(h), lanes(s), lanes(v));
                    for k in 0..16 {
                        let want = rgb_to_hsv_arith(r as u8, g as u8, bs[k] as u8);
                        if want != (h[k] as u8, s[k] as u8, v[k] as u8) {
                            bad += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(bad, 0);
    }

    #[test]
    fn hsv_to_rgb16_matches_the_scalar_arithmetic_for_every_triple() {
        if !has_avx512() {
            return;
        }
        let mut bad = 0;
        for h in 0..256 {
            for s in 0..256 {
                for v in (0..256).step_by(16) {
                    let vs = std::array::from_fn::<i32, 16, _>(|k| v + k as i32);
                    // SAFETY: the CPU has AVX-512 F and BW (checked above).
                    let out = lanes(unsafe {
                        hsv_to_rgb16(_mm512_set1_epi32(h), _mm512_set1_epi32(s), vector(vs))
                    });
                    for k in 0..16 {
                        let (r, g, b) = hsv_to_rgb_arith(h as u8, s as u8, vs[k] as u8);
                        if out[k] != r as i32 | (g as i32) << 8 | (b as i32) << 16 {
                            bad += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(bad, 0);
    }
}

//! Pillow's HSV round trip of `adjust_hue` on eight pixels at a time with AVX2 and FMA,
//! bit-exact with `hsv.rs`'s scalar transcription of Pillow's C code, in float32 only.
//!
//! The quotients Pillow computes in float32 are the same IEEE divisions here; the hue sums
//! (`2.0 + rc - bc` in double, then float) are single float32 additions of the same exact
//! values; `h / 6` is refined with its FMA residual. Elsewhere Pillow's doubles are replaced
//! by plain float32 expressions (products with 1/255, `v - v x` in one FMA, truncation) that
//! are not the same numbers but give the same integers: the tests run every RGB colour and
//! every HSV triple through both directions and compare with the scalar code, which is the
//! proof (the inputs are all 8-bit).

use std::arch::x86_64::*;

/// `(int)(x * 255.0)` as Pillow computes it (x widened to double; the product is exact), here
/// as the float32 product truncated: the same for every `x` this kernel produces.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn floor_255(x: __m256) -> __m256i {
    _mm256_cvttps_epi32(_mm256_mul_ps(x, _mm256_set1_ps(255.0)))
}

/// Pillow's `rgb2hsv_row` on eight pixels (32-bit lanes holding 0..=255).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn rgb_to_hsv8(r: __m256i, g: __m256i, b: __m256i) -> [__m256i; 3] {
    let maxc = _mm256_max_epi32(r, _mm256_max_epi32(g, b));
    let minc = _mm256_min_epi32(r, _mm256_min_epi32(g, b));
    let cr = _mm256_sub_epi32(maxc, minc);
    let grey = _mm256_cmpeq_epi32(cr, _mm256_setzero_si256());
    // Of the quotients (maxc - c) / cr, the maximum's is 0 and the minimum's exactly 1: only
    // the middle channel's is computed.
    let sum = _mm256_add_epi32(r, _mm256_add_epi32(g, b));
    let a = _mm256_sub_epi32(_mm256_add_epi32(maxc, _mm256_add_epi32(maxc, minc)), sum);
    let one = _mm256_set1_epi32(1);
    let crf = _mm256_cvtepi32_ps(_mm256_max_epi32(cr, one));
    let q = _mm256_div_ps(_mm256_cvtepi32_ps(a), crf);
    // Pillow's branches: r == max: bc - gc; g == max: 2 + rc - bc; else 4 + gc - rc (the last
    // two exact in double, then rounded to float). With one quotient 1 and the other q, each
    // is base +- q, one correctly rounded float32 addition.
    let r_max = _mm256_cmpeq_epi32(r, maxc);
    let g_max = _mm256_andnot_si256(r_max, _mm256_cmpeq_epi32(g, maxc));
    // Whether the channel after the maximum (g, b, r) is the minimum.
    let next_min = _mm256_xor_si256(
        _mm256_blendv_epi8(
            _mm256_blendv_epi8(_mm256_cmpgt_epi32(g, r), _mm256_cmpgt_epi32(r, b), g_max),
            _mm256_cmpgt_epi32(g, b),
            r_max,
        ),
        _mm256_set1_epi32(-1),
    );
    let sel = |x: __m256i, y: __m256i, z: __m256i| -> __m256 {
        _mm256_castsi256_ps(_mm256_blendv_epi8(
            _mm256_blendv_epi8(z, y, g_max),
            x,
            r_max,
        ))
    };
    let f = |x: f32| _mm256_castps_si256(_mm256_set1_ps(x));
    let base = _mm256_blendv_ps(
        sel(f(1.0), f(1.0), f(3.0)),
        sel(f(-1.0), f(3.0), f(5.0)),
        _mm256_castsi256_ps(next_min),
    );
    let negate = _mm256_slli_epi32::<31>(_mm256_xor_si256(next_min, r_max));
    let h = _mm256_add_ps(base, _mm256_xor_ps(q, _mm256_castsi256_ps(negate)));
    // fmod(h / 6 + 1, 1) rounded to float32: h / 6 for h >= 0, 1 + h / 6 below, each a
    // product with 1/6 refined by its exact FMA residual (the quotient Pillow's doubles give,
    // checked for every colour).
    let six = _mm256_set1_ps(6.0);
    let sixth = _mm256_set1_ps(1.0 / 6.0);
    let pos = {
        let q0 = _mm256_mul_ps(h, sixth);
        _mm256_fmadd_ps(_mm256_fnmadd_ps(q0, six, h), sixth, q0)
    };
    let neg = {
        let q0 = _mm256_fmadd_ps(h, sixth, _mm256_set1_ps(1.0));
        let r = _mm256_add_ps(_mm256_fnmadd_ps(six, q0, six), h);
        _mm256_fmadd_ps(r, sixth, q0)
    };
    let hf = _mm256_blendv_ps(pos, neg, h);
    let uh = floor_255(hf);
    let sat = _mm256_div_ps(crf, _mm256_cvtepi32_ps(_mm256_max_epi32(maxc, one)));
    let us = floor_255(sat);
    [
        _mm256_andnot_si256(grey, uh),
        _mm256_andnot_si256(grey, us),
        maxc,
    ]
}

/// `x / 255` for integral `x` in [0, 255], as the product with float32 1/255 (not always the
/// correctly rounded quotient, but the same final pixels).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn div_255(x: __m256) -> __m256 {
    _mm256_mul_ps(x, _mm256_set1_ps(1.0 / 255.0))
}

/// `round(v * (1 - x))` (halves away from zero) for integral `v` in [0, 255] and `x` in
/// [0, 1], as float32 `v - v x` (one rounding) plus one half, truncated.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn round_scaled(v: __m256, x: __m256) -> __m256i {
    _mm256_cvttps_epi32(_mm256_add_ps(
        _mm256_fnmadd_ps(v, x, v),
        _mm256_set1_ps(0.5),
    ))
}

/// Pillow's `hsv2rgb` on eight pixels (32-bit lanes holding 0..=255); returns the pixels as
/// `r | g << 8 | b << 16` per lane.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) fn hsv_to_rgb8(h: __m256i, s: __m256i, v: __m256i) -> __m256i {
    // i = floor(6 h / 255) (x / 255 == (x * 0x8081) >> 23 for x < 2^16), f = 6 h / 255 - i.
    let h6 = _mm256_add_epi32(_mm256_slli_epi32::<2>(h), _mm256_slli_epi32::<1>(h));
    let i = _mm256_srli_epi32::<23>(_mm256_mullo_epi32(h6, _mm256_set1_epi32(0x8081)));
    let rem = _mm256_sub_epi32(h6, _mm256_mullo_epi32(i, _mm256_set1_epi32(255)));
    let f = div_255(_mm256_cvtepi32_ps(rem));
    let fs = div_255(_mm256_cvtepi32_ps(s));
    let vf = _mm256_cvtepi32_ps(v);
    let p = round_scaled(vf, fs);
    let q = round_scaled(vf, _mm256_mul_ps(fs, f));
    // Pillow's doubles for `t`, v * (1.0 - fs * (1.0 - f)), give what this gives with
    // fs * (1 - f) rounded once to float32 (checked for every h, s and v).
    let t = round_scaled(vf, _mm256_fnmadd_ps(fs, f, fs));
    // Bytes v, p, q, t of each lane, then a per-lane byte shuffle picks Pillow's
    // switch (i % 6): 0 [v t p], 1 [q v p], 2 [p v t], 3 [p q v], 4 [t p v], 5 [v p q].
    let word = _mm256_or_si256(
        _mm256_or_si256(v, _mm256_slli_epi32::<8>(p)),
        _mm256_or_si256(_mm256_slli_epi32::<16>(q), _mm256_slli_epi32::<24>(t)),
    );
    let pick = |r: i32, g: i32, b: i32| r | g << 8 | b << 16 | (0x80 << 24);
    let table = _mm256_setr_epi32(
        pick(0, 3, 1),
        pick(2, 0, 1),
        pick(1, 0, 3),
        pick(1, 2, 0),
        pick(3, 1, 0),
        pick(0, 1, 2),
        pick(0, 3, 1),
        pick(0, 3, 1),
    );
    let lane_offsets = _mm256_setr_epi32(
        0, 0x040404, 0x080808, 0x0c0c0c, 0, 0x040404, 0x080808, 0x0c0c0c,
    );
    let control = _mm256_add_epi32(_mm256_permutevar8x32_epi32(table, i), lane_offsets);
    _mm256_shuffle_epi8(word, control)
}

/// Hue shift of 64 pixels held as planes, in place.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn hue_block(r: &mut [u8; 64], g: &mut [u8; 64], b: &mut [u8; 64], shift: u8) {
    let mask = _mm256_set1_epi32(0xff);
    let shift = _mm256_set1_epi32(shift as i32);
    // Byte 0, 1 and 2 of each 32-bit lane gathered into 4-byte groups, then the groups of
    // both halves side by side: r0..r7, g0..g7, b0..b7 as 64-bit words 0, 1, 2.
    let gather = _mm256_setr_epi8(
        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, -1, -1, -1, -1, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10,
        14, -1, -1, -1, -1,
    );
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for j in (0..64).step_by(8) {
        // SAFETY: j + 8 <= 64: each load reads 8 bytes inside its plane.
        let load = |p: &[u8; 64]| unsafe {
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.as_ptr().add(j).cast()))
        };
        let [hh, s, v] = rgb_to_hsv8(load(r), load(g), load(b));
        let hh = _mm256_and_si256(_mm256_add_epi32(hh, shift), mask);
        let rgb = hsv_to_rgb8(hh, s, v);
        let planes = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(rgb, gather), order);
        r[j..j + 8].copy_from_slice(&_mm256_extract_epi64::<0>(planes).to_le_bytes());
        g[j..j + 8].copy_from_slice(&_mm256_extract_epi64::<1>(planes).to_le_bytes());
        b[j..j + 8].copy_from_slice(&_mm256_extract_epi64::<2>(planes).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::super::hsv::{hsv_to_rgb_arith, rgb_to_hsv_arith};
    use super::*;

    fn lanes(x: __m256i) -> [i32; 8] {
        // SAFETY: same size, any bits are valid.
        unsafe { std::mem::transmute(x) }
    }

    fn has_avx2_fma() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    #[test]
    fn rgb_to_hsv8_matches_the_scalar_arithmetic_for_every_colour() {
        if !has_avx2_fma() {
            return;
        }
        let mut bad = 0;
        for r in 0..256 {
            for g in 0..256 {
                for b in (0..256).step_by(8) {
                    let bs = std::array::from_fn::<i32, 8, _>(|k| b + k as i32);
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    let [h, s, v] = unsafe {
                        rgb_to_hsv8(
                            _mm256_set1_epi32(r),
                            _mm256_set1_epi32(g),
                            std::mem::transmute::<[i32; 8], __m256i>(bs),
                        )
                    };
                    let (h, s, v) = (lanes(h), lanes(s), lanes(v));
                    for k in 0..8 {
                        let want = rgb_to_hsv_arith(r as u8, g as u8, bs[k] as u8);
                        let got = (h[k] as u8, s[k] as u8, v[k] as u8);
                        if want != got {
                            bad += 1;
                            if bad < 20 {
                                eprintln!("{r} {g} {}: want {want:?} got {got:?}", bs[k]);
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(bad, 0);
    }

    #[test]
    fn hsv_to_rgb8_matches_the_scalar_arithmetic_for_every_triple() {
        if !has_avx2_fma() {
            return;
        }
        let mut bad = 0;
        for h in 0..256 {
            for s in 0..256 {
                for v in (0..256).step_by(8) {
                    let vs = std::array::from_fn::<i32, 8, _>(|k| v + k as i32);
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    let out = lanes(unsafe {
                        hsv_to_rgb8(
                            _mm256_set1_epi32(h),
                            _mm256_set1_epi32(s),
                            std::mem::transmute::<[i32; 8], __m256i>(vs),
                        )
                    });
                    for k in 0..8 {
                        let want = hsv_to_rgb_arith(h as u8, s as u8, vs[k] as u8);
                        let o = out[k];
                        let got = (o as u8, (o >> 8) as u8, (o >> 16) as u8);
                        if want != got || o >> 24 != 0 {
                            bad += 1;
                            if bad < 20 {
                                eprintln!("{h} {s} {}: want {want:?} got {got:?}", vs[k]);
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(bad, 0);
    }
}

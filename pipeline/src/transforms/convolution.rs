//! Separable convolution resampling of 8-bit RGB, one axis per pass, with exactly the integer
//! arithmetic of fast_image_resize's u8 convolution (which follows Pillow's): float64 filter
//! weights normalised per output pixel, quantised to i16 with a precision chosen from the
//! largest weight, `(2^(p-1) + sum(k * v)) >> p` clamped to 0..=255.
//!
//! The weights of a pass depend only on (input size, output size, filter), so they are
//! computed once per thread and kept. Every output pixel gets the same number of taps (padded
//! with zero weights, which leave the integer sums unchanged), which lets the AVX-512 kernels
//! run without tails. `resample_crop` picks the AVX-512 (BW, VL, VBMI) kernels when the CPU has
//! them and scalar code otherwise; `resized_crop` only calls it on AVX-512 machines (elsewhere
//! fast_image_resize's AVX2 code is faster than the scalar loops here, and gives the same bytes).

use super::{CropBox, Interpolation, RgbImage};
use std::collections::HashMap;
use std::rc::Rc;

/// The quantised weights of one pass.
#[derive(Debug)]
pub(crate) struct Weights {
    /// Fixed-point precision (bits).
    precision: u32,
    /// Taps per output pixel (after padding).
    taps: usize,
    /// First input index of each output pixel.
    starts: Vec<usize>,
    /// `taps` weights per output pixel.
    values: Vec<i16>,
}

fn catmull_rom(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// The weights for resampling `in_size` samples to `out_size` (support scaled when
/// shrinking), taps rounded up to a multiple of `pad`.
pub(crate) fn weights(
    in_size: usize,
    out_size: usize,
    interpolation: Interpolation,
    pad: usize,
) -> Weights {
    assert!(in_size > 0 && out_size > 0);
    let (filter, support): (fn(f64) -> f64, f64) = match interpolation {
        Interpolation::Bicubic => (catmull_rom, 2.0),
        Interpolation::Bilinear => (triangle, 1.0),
    };
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let radius = support * filter_scale;
    let window = radius.ceil() as usize * 2 + 1;
    let recip = 1.0 / filter_scale;
    // Float weights per output pixel: (first index, normalised weights, used length).
    let mut rows: Vec<(usize, Vec<f64>, usize)> = Vec::with_capacity(out_size);
    let mut max_weight = 0.0f64;
    for out_x in 0..out_size {
        let in_center = (out_x as f64 + 0.5) * scale;
        let x_min = (in_center - radius).floor().max(0.0) as usize;
        let x_max = (in_center + radius).ceil().min(in_size as f64) as usize;
        let center = in_center - 0.5;
        let mut ws = Vec::with_capacity(window);
        let mut start = x_min;
        let mut sum = 0.0;
        for x in x_min..x_max {
            let w = filter((x as f64 - center) * recip);
            if x == start && w == 0.0 {
                start += 1;
            } else {
                ws.push(w);
                sum += w;
            }
        }
        // Trailing zero weights are dropped (they never matter to the sums, but they do not
        // count as taps either).
        let mut used = ws.len();
        while used > 0 && ws[used - 1] == 0.0 {
            used -= 1;
        }
        if sum != 0.0 {
            for w in &mut ws {
                *w /= sum;
            }
        }
        for &w in &ws {
            if w > max_weight {
                max_weight = w;
            }
        }
        rows.push((start, ws, used));
    }
    // The largest precision (at most 21 bits) whose rounded largest weight fits in i16.
    let mut precision = 0u32;
    for p in 0..22u32 {
        precision = p;
        if (max_weight * (1i64 << (p + 1)) as f64).round() as i32 >= 1 << 15 {
            break;
        }
    }
    let fscale = (1i64 << precision) as f64;
    let max_used = rows.iter().map(|r| r.2).max().unwrap_or(0).max(1);
    let taps = max_used.div_ceil(pad) * pad;
    let mut starts = Vec::with_capacity(out_size);
    let mut values = vec![0i16; out_size * taps];
    for (i, (start, ws, used)) in rows.iter().enumerate() {
        // Move the window left where it would pass the end (when the input allows).
        let s = (*start).min(in_size.saturating_sub(taps));
        let shift = start - s;
        for (j, &w) in ws[..*used].iter().enumerate() {
            values[i * taps + shift + j] = (w * fscale).round() as i16;
        }
        starts.push(s);
    }
    Weights {
        precision,
        taps,
        starts,
        values,
    }
}

/// The weights of a pass from this thread's cache.
fn cached_weights(
    in_size: usize,
    out_size: usize,
    interpolation: Interpolation,
    pad: usize,
) -> Rc<Weights> {
    type Key = (usize, usize, bool, usize);
    thread_local! {
        static CACHE: std::cell::RefCell<HashMap<Key, Rc<Weights>>> =
            std::cell::RefCell::new(HashMap::new());
    }
    let key = (
        in_size,
        out_size,
        interpolation == Interpolation::Bicubic,
        pad,
    );
    CACHE.with_borrow_mut(|cache| {
        if let Some(w) = cache.get(&key) {
            return w.clone();
        }
        if cache.len() >= 4096 {
            cache.clear();
        }
        let w = Rc::new(weights(in_size, out_size, interpolation, pad));
        cache.insert(key, w.clone());
        w
    })
}

#[inline(always)]
fn clip(v: i32, precision: u32) -> u8 {
    (v >> precision).clamp(0, 255) as u8
}

/// A window of an RGB buffer: `width` x `height` pixels at (`x0`, `y0`), `stride` bytes a row.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [u8],
    stride: usize,
    x0: usize,
    y0: usize,
    width: usize,
    height: usize,
}

impl View<'_> {
    #[inline(always)]
    fn offset(&self, x: usize, y: usize) -> usize {
        (self.y0 + y) * self.stride + (self.x0 + x) * 3
    }
}

/// Which kernels run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernels {
    /// The AVX-512 kernels where the CPU has AVX-512 F, BW, VL and VBMI, `None` otherwise.
    pub fn fast() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vbmi") {
                return Some(Self::Avx512);
            }
        }
        None
    }
}

/// Horizontal pass: `src` to `out_w` x `src.height` into `dst` (packed rows).
fn horizontal(src: View, out_w: usize, interpolation: Interpolation, dst: &mut [u8], k: Kernels) {
    let w = cached_weights(src.width, out_w, interpolation, 8);
    debug_assert_eq!(dst.len(), out_w * src.height * 3);
    // The AVX-512 kernel reads 32 bytes at each group of 8 taps (24 used): all of them must lie
    // in the buffer (they may pass the window, where the weights are zero).
    let reach = w.starts.iter().max().copied().unwrap_or(0) + w.taps;
    for y in 0..src.height {
        let row = &mut dst[y * out_w * 3..(y + 1) * out_w * 3];
        match k {
            #[cfg(target_arch = "x86_64")]
            Kernels::Avx512 => {
                if src.offset(reach, y) + 8 <= src.data.len() {
                    // SAFETY: the CPU has the features (`Kernels::fast`) and the reads stay in
                    // the buffer (checked above).
                    unsafe { horizontal_row_avx512(src, y, &w, row) };
                    continue;
                }
                horizontal_row(src, y, &w, row);
            }
            Kernels::Scalar => horizontal_row(src, y, &w, row),
        }
    }
}

fn horizontal_row(src: View, y: usize, w: &Weights, row: &mut [u8]) {
    let initial = 1i32 << (w.precision - 1);
    let base = src.offset(0, y);
    for (x, px) in row.chunks_exact_mut(3).enumerate() {
        let s = w.starts[x];
        let n = w.taps.min(src.width - s);
        let ks = &w.values[x * w.taps..x * w.taps + n];
        let pix = &src.data[base + s * 3..base + (s + n) * 3];
        let mut acc = [initial; 3];
        for (&k, p) in ks.iter().zip(pix.chunks_exact(3)) {
            for c in 0..3 {
                acc[c] += k as i32 * p[c] as i32;
            }
        }
        for c in 0..3 {
            px[c] = clip(acc[c], w.precision);
        }
    }
}

/// Vertical pass: `src` to `src.width` x `out_h` into `dst` (packed rows).
fn vertical(src: View, out_h: usize, interpolation: Interpolation, dst: &mut [u8], k: Kernels) {
    let w = cached_weights(src.height, out_h, interpolation, 1);
    let row_bytes = src.width * 3;
    debug_assert_eq!(dst.len(), row_bytes * out_h);
    for (y, row) in dst.chunks_exact_mut(row_bytes).enumerate() {
        match k {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has the features (`Kernels::fast`).
            Kernels::Avx512 => unsafe { vertical_row_avx512(src, y, &w, row) },
            Kernels::Scalar => vertical_row(src, y, &w, row),
        }
    }
}

fn vertical_row(src: View, y: usize, w: &Weights, row: &mut [u8]) {
    let initial = 1i32 << (w.precision - 1);
    let s = w.starts[y];
    let n = w.taps.min(src.height - s);
    let ks = &w.values[y * w.taps..y * w.taps + n];
    for (i, out) in row.iter_mut().enumerate() {
        let mut acc = initial;
        for (j, &k) in ks.iter().enumerate() {
            acc += k as i32 * src.data[src.offset(0, s + j) + i] as i32;
        }
        *out = clip(acc, w.precision);
    }
}

/// One output row of the horizontal pass, four output pixels at a time. Each group of 8 taps
/// is one 32-byte load spread by `vpermb` into i16 pairs (channel-major: 128-bit lane c holds
/// channel c of the four pixel pairs), one broadcast of the 8 weights and one `vpmaddwd`.
///
/// # Safety
/// AVX-512 F/BW/VL/VBMI; the 32-byte loads at every tap group of every output pixel lie in
/// `src.data`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vl,avx512vbmi")]
unsafe fn horizontal_row_avx512(src: View, y: usize, w: &Weights, row: &mut [u8]) {
    use std::arch::x86_64::*;
    let out_w = row.len() / 3;
    let base = unsafe { src.data.as_ptr().add(src.offset(0, y)) };
    // Byte 4L of lane L = 4c + j takes source byte 6j + c, byte 4L + 2 takes 6j + 3 + c (the
    // two pixels of pair j); channel 3 and the high bytes stay zero.
    let mut idx = [0u8; 64];
    let mut mask = 0u64;
    for c in 0..3 {
        for j in 0..4 {
            let l = 4 * c + j;
            idx[4 * l] = (6 * j + c) as u8;
            idx[4 * l + 2] = (6 * j + 3 + c) as u8;
            mask |= (1 << (4 * l)) | (1 << (4 * l + 2));
        }
    }
    let idx = unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) };
    // After the 4x4 transposes, lane c holds channel c of pixels 0..4 as i32; packed to bytes
    // each lane repeats its 4 bytes: byte 16c + p is pixel p, channel c.
    let mut out_idx = [0u8; 64];
    for p in 0..4 {
        for c in 0..3 {
            out_idx[3 * p + c] = (16 * c + p) as u8;
        }
    }
    let out_idx = unsafe { _mm512_loadu_si512(out_idx.as_ptr().cast()) };
    let initial = _mm512_set1_epi32(1 << (w.precision - 1));
    let shift = _mm_cvtsi32_si128(w.precision as i32);
    let pixel = |x: usize| unsafe { horizontal_pixel_avx512(base, w, x, mask, idx) };
    let mut x = 0;
    while x < out_w {
        let n = (out_w - x).min(4);
        let last = x + n - 1;
        let a0 = pixel(x);
        let a1 = pixel((x + 1).min(last));
        let a2 = pixel((x + 2).min(last));
        let a3 = pixel((x + 3).min(last));
        // Per 128-bit lane: sum each accumulator's four i32 into one, accumulators side by side.
        let s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(a0, a1), _mm512_unpackhi_epi32(a0, a1));
        let s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(a2, a3), _mm512_unpackhi_epi32(a2, a3));
        let sum = _mm512_add_epi32(
            _mm512_unpacklo_epi64(s01, s23),
            _mm512_unpackhi_epi64(s01, s23),
        );
        let v = _mm512_sra_epi32(_mm512_add_epi32(sum, initial), shift);
        let v = _mm512_packs_epi32(v, v);
        let v = _mm512_packus_epi16(v, v);
        let v = _mm512_permutexvar_epi8(out_idx, v);
        let m: u16 = (1u16 << (3 * n)) - 1;
        unsafe {
            _mm_mask_storeu_epi8(
                row.as_mut_ptr().add(3 * x).cast(),
                m,
                _mm512_castsi512_si128(v),
            )
        };
        x += 4;
    }
}

/// The i32 sums of one output pixel of the horizontal pass, channel c in 128-bit lane c.
///
/// # Safety
/// As `horizontal_row_avx512`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vbmi")]
unsafe fn horizontal_pixel_avx512(
    base: *const u8,
    w: &Weights,
    x: usize,
    mask: u64,
    idx: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let mut acc = _mm512_setzero_si512();
    let s = w.starts[x];
    let ks = unsafe { w.values.as_ptr().add(x * w.taps) };
    for g in 0..w.taps / 8 {
        let src = unsafe { _mm256_loadu_si256(base.add((s + 8 * g) * 3).cast()) };
        let pix = _mm512_maskz_permutexvar_epi8(mask, idx, _mm512_castsi256_si512(src));
        let k = unsafe { _mm512_broadcast_i32x4(_mm_loadu_si128(ks.add(8 * g).cast())) };
        acc = _mm512_add_epi32(acc, _mm512_madd_epi16(pix, k));
    }
    acc
}

/// One output row of the vertical pass, 64 bytes at a time: rows are taken in pairs,
/// interleaved byte-wise, widened to i16 pairs and multiplied by the weight pair.
///
/// # Safety
/// AVX-512 F/BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn vertical_row_avx512(src: View, y: usize, w: &Weights, row: &mut [u8]) {
    use std::arch::x86_64::*;
    let s = w.starts[y];
    let n = w.taps.min(src.height - s);
    let ks = &w.values[y * w.taps..y * w.taps + n];
    let initial = _mm512_set1_epi32(1 << (w.precision - 1));
    let shift = _mm_cvtsi32_si128(w.precision as i32);
    let zero = _mm512_setzero_si512();
    let len = row.len();
    let row0 = unsafe { src.data.as_ptr().add(src.offset(0, s)) };
    let mut o = 0;
    while o < len {
        let m: u64 = if len - o >= 64 {
            u64::MAX
        } else {
            (1u64 << (len - o)) - 1
        };
        let mut acc = [initial; 4];
        let mut j = 0;
        while j < n {
            let a = unsafe { _mm512_maskz_loadu_epi8(m, row0.add(j * src.stride + o).cast()) };
            let (b, kb) = if j + 1 < n {
                (
                    unsafe {
                        _mm512_maskz_loadu_epi8(m, row0.add((j + 1) * src.stride + o).cast())
                    },
                    ks[j + 1],
                )
            } else {
                (zero, 0)
            };
            let k = _mm512_set1_epi32((ks[j] as u16 as i32) | ((kb as i32) << 16));
            let lo = _mm512_unpacklo_epi8(a, b);
            let hi = _mm512_unpackhi_epi8(a, b);
            let p = [
                _mm512_unpacklo_epi8(lo, zero),
                _mm512_unpackhi_epi8(lo, zero),
                _mm512_unpacklo_epi8(hi, zero),
                _mm512_unpackhi_epi8(hi, zero),
            ];
            for i in 0..4 {
                acc[i] = _mm512_add_epi32(acc[i], _mm512_madd_epi16(p[i], k));
            }
            j += 2;
        }
        let v = acc.map(|a| _mm512_sra_epi32(a, shift));
        let v = _mm512_packus_epi16(
            _mm512_packs_epi32(v[0], v[1]),
            _mm512_packs_epi32(v[2], v[3]),
        );
        unsafe { _mm512_mask_storeu_epi8(row.as_mut_ptr().add(o).cast(), m, v) };
        o += 64;
    }
}

/// `F.resized_crop` with Pillow's order of passes (horizontal, clip to uint8, vertical): crop
/// `b` of `img` to `out_w` x `out_h` (the caller handles the no-resize case).
pub fn resample_crop(
    img: &RgbImage,
    b: CropBox,
    out_w: usize,
    out_h: usize,
    interpolation: Interpolation,
    k: Kernels,
) -> RgbImage {
    let src = View {
        data: &img.data,
        stride: img.width * 3,
        x0: b.left,
        y0: b.top,
        width: b.width,
        height: b.height,
    };
    if (b.width, b.height) == (out_w, out_h) {
        return super::resized_crop::crop(img, b);
    }
    let mut out = RgbImage::new(out_w, out_h);
    if b.width == out_w {
        vertical(src, out_h, interpolation, &mut out.data, k);
        return out;
    }
    if b.height == out_h {
        horizontal(src, out_w, interpolation, &mut out.data, k);
        return out;
    }
    super::resized_crop::with_intermediate(out_w * b.height * 3, |buf| {
        horizontal(src, out_w, interpolation, buf, k);
        let mid = View {
            data: buf,
            stride: out_w * 3,
            x0: 0,
            y0: 0,
            width: out_w,
            height: b.height,
        };
        vertical(mid, out_h, interpolation, &mut out.data, k);
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Rng, Xoshiro};
    use crate::transforms::resized_crop::resized_crop_fir;

    /// Our passes give fast_image_resize's bytes on random images, crops, sizes and filters.
    #[test]
    fn matches_fast_image_resize() {
        let mut rng = Xoshiro::stream(7, &[1]);
        let mut resizer = fast_image_resize::Resizer::new();
        let mut kernels = vec![Kernels::Scalar];
        kernels.extend(Kernels::fast());
        for case in 0..400 {
            let width = rng.randint(1, 300) as usize;
            let height = rng.randint(1, 300) as usize;
            let mut img = RgbImage::new(width, height);
            // Mostly smooth content with some hard edges (bicubic overshoot and clipping).
            for (i, v) in img.data.iter_mut().enumerate() {
                *v = if rng.uniform(0.0, 1.0) < 0.3 {
                    if rng.uniform(0.0, 1.0) < 0.5 { 0 } else { 255 }
                } else {
                    ((i * 7 + case) % 256) as u8
                };
            }
            let w = rng.randint(1, width as i64) as usize;
            let h = rng.randint(1, height as i64) as usize;
            let b = CropBox {
                top: rng.randint(0, (height - h) as i64) as usize,
                left: rng.randint(0, (width - w) as i64) as usize,
                height: h,
                width: w,
            };
            let out_w = rng.randint(1, 260) as usize;
            let out_h = if case % 5 == 0 {
                h
            } else {
                rng.randint(1, 260) as usize
            };
            let out_w = if case % 7 == 0 { w } else { out_w };
            if (out_w, out_h) == (w, h) {
                continue;
            }
            for interpolation in [Interpolation::Bicubic, Interpolation::Bilinear] {
                let want = resized_crop_fir(&img, b, out_w, out_h, interpolation, &mut resizer);
                for &k in &kernels {
                    let got = resample_crop(&img, b, out_w, out_h, interpolation, k);
                    assert_eq!(
                        got, want,
                        "{k:?} {interpolation:?} {width}x{height} crop {b:?} to {out_w}x{out_h}"
                    );
                }
            }
        }
    }
}

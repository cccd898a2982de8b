//! The vectorised HSV arithmetic against the table-driven scalar transcription of Pillow's
//! C code that the parity test (`tests/transforms_parity.rs`) checked against Pillow.

use super::super::RgbImage;
use super::adjust::adjust_hue;
use super::hsv::{hsv_to_rgb_arith, rgb_to_hsv_arith};
use super::jitter::ColorJitter;
#[cfg(target_arch = "x86_64")]
use super::pass::apply_color_ops_avx2;
use super::pass::{ColorOp, apply_color_ops, apply_color_ops_generic};
use super::pixel::luma;
use super::simd::Simd;

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

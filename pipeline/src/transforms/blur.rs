//! torchvision's `GaussianBlur` on a PIL image: the uint8 image as float32, reflect padding,
//! the normalised Gaussian kernel of `linspace(-(k-1)/2, (k-1)/2, k)`, rounded back to uint8
//! (half to even). Applied separably (rows, then columns), which equals the reference's 2-D
//! convolution up to float32 rounding.

use super::RgbImage;

/// The 1-D kernel, as `_get_gaussian_kernel1d` (float32).
pub fn gaussian_kernel(size: usize, sigma: f64) -> Vec<f32> {
    let half = (size as f32 - 1.0) * 0.5;
    let sigma = sigma as f32;
    let xs: Vec<f32> = crate::collate::linspace_f32(-half as f64, half as f64, size);
    let pdf: Vec<f32> = xs
        .iter()
        .map(|x| (-0.5 * (x / sigma).powi(2)).exp())
        .collect();
    let sum: f32 = pdf.iter().sum();
    pdf.iter().map(|p| p / sum).collect()
}

/// Index into `[0, n)` with reflect padding (the edge is not repeated).
#[inline(always)]
fn reflect(i: isize, n: isize) -> usize {
    let i = if i < 0 { -i } else { i };
    let i = if i >= n { 2 * (n - 1) - i } else { i };
    i.clamp(0, n - 1) as usize
}

/// Round half to even for 0 <= x < 2^22 (the float32 magic-number trick; no libm call).
#[inline(always)]
fn round_even(x: f32) -> f32 {
    (x + 8_388_608.0) - 8_388_608.0
}

/// Blurs with a `size`-tap kernel of standard deviation `sigma`.
pub fn gaussian_blur(img: &mut RgbImage, size: usize, sigma: f64) {
    let k = gaussian_kernel(size, sigma);
    if size == 9 && img.width > 8 && img.height > 8 {
        let k: [f32; 9] = k.as_slice().try_into().expect("nine taps");
        match blur_level() {
            // SAFETY: blur_level found AVX-512 F and AVX2.
            #[cfg(target_arch = "x86_64")]
            BlurLevel::Avx512 => unsafe { blur9_avx512(img, &k) },
            // SAFETY: blur_level found AVX2.
            #[cfg(target_arch = "x86_64")]
            BlurLevel::Avx2 => unsafe { blur9_avx2(img, &k) },
            BlurLevel::Scalar => blur9(img, &k),
        }
        return;
    }
    blur_any(img, &k);
}

/// The 9-tap blur's kernels on this CPU.
enum BlurLevel {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Scalar,
}

fn blur_level() -> BlurLevel {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx2") {
            return BlurLevel::Avx512;
        }
        if has!("avx2") {
            return BlurLevel::Avx2;
        }
    }
    BlurLevel::Scalar
}

/// The kernels the 9-tap Gaussian blur (the presets' blur) runs on this CPU: `AVX-512`, `AVX2`
/// or `scalar`.
pub fn blur_kernels() -> &'static str {
    match blur_level() {
        #[cfg(target_arch = "x86_64")]
        BlurLevel::Avx512 => "AVX-512",
        #[cfg(target_arch = "x86_64")]
        BlurLevel::Avx2 => "AVX2",
        BlurLevel::Scalar => "scalar",
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn blur9_avx2(img: &mut RgbImage, k: &[f32; 9]) {
    blur9(img, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512f")]
unsafe fn blur9_avx512(img: &mut RgbImage, k: &[f32; 9]) {
    blur9(img, k)
}

/// Rows of horizontal-pass output kept at a time (a power of two above the 9 a row needs).
const RING: usize = 16;

/// The 9-tap blur with the arithmetic of [`blur_any`] (every output value is
/// `((k0 s0 + k1 s1) + ...) + k8 s8` in float32, rows first, then columns, the same order),
/// organised for speed: each tap sum is accumulated in registers, the row pass runs just ahead
/// of the column pass through a ring of 16 rows that stays in L1, and nothing is allocated
/// per image beyond that ring.
#[inline(always)]
fn blur9(img: &mut RgbImage, k: &[f32; 9]) {
    let (w, h) = (img.width, img.height);
    let row_len = w * 3;
    let mut padded = vec![0f32; row_len + 24];
    let mut ring = vec![0f32; RING * row_len];
    let mut next_row = 0;
    for y in 0..h {
        // Horizontal pass for every row the output row y needs (rows y - 4 ..= y + 4, mirrored
        // at the edges, all of which lie in that window).
        while next_row < h.min(y + 5) {
            let row = &img.data[next_row * row_len..(next_row + 1) * row_len];
            for (d, &s) in padded[12..12 + row_len].iter_mut().zip(row) {
                *d = s as f32;
            }
            for e in 1..=4 {
                for c in 0..3 {
                    padded[12 - 3 * e + c] = row[3 * e + c] as f32;
                    padded[12 + row_len + 3 * (e - 1) + c] = row[row_len - 3 * (e + 1) + c] as f32;
                }
            }
            let slot = next_row % RING;
            let out = &mut ring[slot * row_len..(slot + 1) * row_len];
            let taps: [&[f32]; 9] = std::array::from_fn(|t| &padded[3 * t..3 * t + row_len]);
            for (x, o) in out.iter_mut().enumerate() {
                let mut a = k[0] * taps[0][x];
                for t in 1..9 {
                    a += k[t] * taps[t][x];
                }
                *o = a;
            }
            next_row += 1;
        }
        let rows: [&[f32]; 9] = std::array::from_fn(|t| {
            let sy = reflect(y as isize + t as isize - 4, h as isize) % RING;
            &ring[sy * row_len..(sy + 1) * row_len]
        });
        let out = &mut img.data[y * row_len..(y + 1) * row_len];
        for (x, o) in out.iter_mut().enumerate() {
            let mut a = k[0] * rows[0][x];
            for t in 1..9 {
                a += k[t] * rows[t][x];
            }
            // SAFETY: the clamped, rounded value is an integer in [0, 255].
            *o = unsafe { round_even(a.clamp(0.0, 255.0)).to_int_unchecked::<i32>() as u8 };
        }
    }
}

/// Any kernel size, any image size: the reference arithmetic, straightforwardly.
fn blur_any(img: &mut RgbImage, k: &[f32]) {
    let size = k.len();
    let r = size / 2;
    let (w, h) = (img.width, img.height);
    let row_len = w * 3;
    // Horizontal pass into float rows; each source row is reflect-padded once so the inner
    // loop runs over contiguous values (and vectorises).
    let mut tmp = vec![0f32; img.data.len()];
    let mut padded = vec![0f32; (w + 2 * r) * 3];
    for y in 0..h {
        let row = &img.data[y * row_len..(y + 1) * row_len];
        for (px, chunk) in padded.chunks_exact_mut(3).enumerate() {
            let sx = reflect(px as isize - r as isize, w as isize);
            for c in 0..3 {
                chunk[c] = row[sx * 3 + c] as f32;
            }
        }
        let out = &mut tmp[y * row_len..(y + 1) * row_len];
        for (t, &kv) in k.iter().enumerate() {
            let src = &padded[t * 3..t * 3 + row_len];
            for (o, s) in out.iter_mut().zip(src) {
                *o += kv * s;
            }
        }
    }
    // Vertical pass: rows combined with reflected row indices.
    let mut acc = vec![0f32; row_len];
    for y in 0..h {
        acc.fill(0.0);
        for (t, &kv) in k.iter().enumerate() {
            let sy = reflect(y as isize + t as isize - r as isize, h as isize);
            for (a, s) in acc.iter_mut().zip(&tmp[sy * row_len..(sy + 1) * row_len]) {
                *a += kv * s;
            }
        }
        for (v, a) in img.data[y * row_len..(y + 1) * row_len]
            .iter_mut()
            .zip(&acc)
        {
            *v = round_even(a.clamp(0.0, 255.0)) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nine_tap_path_equals_the_general_one() {
        for (k, (w, h)) in [(9, 9), (10, 23), (98, 98), (37, 12), (224, 17)]
            .into_iter()
            .enumerate()
        {
            let data: Vec<u8> = (0..w * h * 3)
                .map(|i| ((i as u32 ^ k as u32).wrapping_mul(2_654_435_761)).rotate_right(11) as u8)
                .collect();
            for sigma in [0.1, 0.5, 1.0, 1.37, 2.0] {
                let mut fast = RgbImage::from_raw(w, h, data.clone());
                gaussian_blur(&mut fast, 9, sigma);
                let mut slow = RgbImage::from_raw(w, h, data.clone());
                blur_any(&mut slow, &gaussian_kernel(9, sigma));
                assert!(fast == slow, "{w}x{h} sigma {sigma}");
                // The AVX2 build where the CPU would run the AVX-512 one.
                #[cfg(target_arch = "x86_64")]
                if is_x86_feature_detected!("avx2") {
                    let mut avx2 = RgbImage::from_raw(w, h, data.clone());
                    let k = gaussian_kernel(9, sigma).try_into().unwrap();
                    // SAFETY: the CPU has AVX2.
                    unsafe { blur9_avx2(&mut avx2, &k) };
                    assert!(avx2 == slow, "{w}x{h} sigma {sigma} (AVX2)");
                }
                // The same code compiled without AVX2.
                let mut plain = RgbImage::from_raw(w, h, data.clone());
                blur9(&mut plain, &gaussian_kernel(9, sigma).try_into().unwrap());
                assert!(plain == slow, "{w}x{h} sigma {sigma} (no AVX2)");
            }
        }
    }
}

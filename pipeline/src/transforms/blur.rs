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
#[inline]
fn reflect(i: isize, n: isize) -> usize {
    let i = if i < 0 { -i } else { i };
    let i = if i >= n { 2 * (n - 1) - i } else { i };
    i.clamp(0, n - 1) as usize
}

/// Round half to even for 0 <= x < 2^22 (the float32 magic-number trick; no libm call).
#[inline]
fn round_even(x: f32) -> f32 {
    (x + 8_388_608.0) - 8_388_608.0
}

/// Blurs with a `size`-tap kernel of standard deviation `sigma`.
pub fn gaussian_blur(img: &mut RgbImage, size: usize, sigma: f64) {
    let k = gaussian_kernel(size, sigma);
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

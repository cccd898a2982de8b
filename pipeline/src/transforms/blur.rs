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
    let mut i = i;
    if i < 0 {
        i = -i;
    }
    if i >= n {
        i = 2 * (n - 1) - i;
    }
    i.clamp(0, n - 1) as usize
}

/// Blurs with a `size`-tap kernel of standard deviation `sigma`.
pub fn gaussian_blur(img: &mut RgbImage, size: usize, sigma: f64) {
    let k = gaussian_kernel(size, sigma);
    let r = (size / 2) as isize;
    let (w, h) = (img.width as isize, img.height as isize);
    let mut tmp = vec![0f32; img.data.len()];
    // Rows.
    for y in 0..h {
        let row = &img.data[(y * w * 3) as usize..((y + 1) * w * 3) as usize];
        for x in 0..w {
            let mut acc = [0f32; 3];
            for (t, &kv) in k.iter().enumerate() {
                let xx = reflect(x + t as isize - r, w) * 3;
                for c in 0..3 {
                    acc[c] += kv * row[xx + c] as f32;
                }
            }
            let o = ((y * w + x) * 3) as usize;
            tmp[o..o + 3].copy_from_slice(&acc);
        }
    }
    // Columns.
    for y in 0..h {
        for x in 0..w {
            let mut acc = [0f32; 3];
            for (t, &kv) in k.iter().enumerate() {
                let yy = reflect(y + t as isize - r, h);
                let o = (yy * w as usize + x as usize) * 3;
                for c in 0..3 {
                    acc[c] += kv * tmp[o + c];
                }
            }
            let o = ((y * w + x) * 3) as usize;
            for (v, a) in img.data[o..o + 3].iter_mut().zip(acc) {
                *v = a.round_ties_even().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

//! `RandomResizedCrop`: torchvision's crop sampler (10 tries, then the central fallback) and
//! Pillow's antialiased resampling of the crop (fast_image_resize's convolution with the same
//! filters: Catmull-Rom for BICUBIC, triangle for BILINEAR, support scaled when shrinking).

use super::RgbImage;
use crate::rng::Rng;
use fast_image_resize::{
    FilterType, IntoImageView, PixelType, ResizeAlg, ResizeOptions, Resizer, images,
};

/// A crop rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Bicubic,
    Bilinear,
}

impl Interpolation {
    fn alg(self) -> ResizeAlg {
        ResizeAlg::Convolution(match self {
            Self::Bicubic => FilterType::CatmullRom,
            Self::Bilinear => FilterType::Bilinear,
        })
    }
}

/// torchvision `RandomResizedCrop(size, scale, ratio, interpolation)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomResizedCrop {
    pub size: usize,
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
    pub interpolation: Interpolation,
}

impl RandomResizedCrop {
    /// torchvision's defaults for `size`: scale (0.08, 1), ratio (3/4, 4/3), bicubic here (the
    /// DINOv2 and linear-probe transforms all ask for BICUBIC).
    pub fn new(size: usize, scale: (f64, f64)) -> Self {
        Self {
            size,
            scale,
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            interpolation: Interpolation::Bicubic,
        }
    }

    /// `RandomResizedCrop.get_params` for a `width` x `height` image.
    pub fn sample(&self, width: usize, height: usize, rng: &mut impl Rng) -> CropBox {
        let area = (width * height) as f64;
        let log_ratio = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target_area = area * rng.uniform(self.scale.0, self.scale.1);
            let aspect = rng.uniform(log_ratio.0, log_ratio.1).exp();
            let w = (target_area * aspect).sqrt().round_ties_even() as usize;
            let h = (target_area / aspect).sqrt().round_ties_even() as usize;
            if 0 < w && w <= width && 0 < h && h <= height {
                let top = rng.randint(0, (height - h) as i64) as usize;
                let left = rng.randint(0, (width - w) as i64) as usize;
                return CropBox {
                    top,
                    left,
                    height: h,
                    width: w,
                };
            }
        }
        let in_ratio = width as f64 / height as f64;
        let (w, h) = if in_ratio < self.ratio.0.min(self.ratio.1) {
            (
                width,
                (width as f64 / self.ratio.0.min(self.ratio.1)).round_ties_even() as usize,
            )
        } else if in_ratio > self.ratio.0.max(self.ratio.1) {
            (
                (height as f64 * self.ratio.0.max(self.ratio.1)).round_ties_even() as usize,
                height,
            )
        } else {
            (width, height)
        };
        CropBox {
            top: (height - h) / 2,
            left: (width - w) / 2,
            height: h,
            width: w,
        }
    }

    /// Samples a crop and resamples it to `size` x `size`.
    pub fn apply(&self, img: &RgbImage, rng: &mut impl Rng, resizer: &mut Resizer) -> RgbImage {
        let b = self.sample(img.width, img.height, rng);
        resized_crop(img, b, self.size, self.size, self.interpolation, resizer)
    }
}

/// `F.resized_crop` on a PIL image: crop `b`, then resize to `out_w` x `out_h`. Like PIL, the
/// filter only sees the cropped pixels (edges are clamped at the crop, not at the image): the
/// resampler reads the crop through a view of the image, as if it had been copied out.
pub fn resized_crop(
    img: &RgbImage,
    b: CropBox,
    out_w: usize,
    out_h: usize,
    interpolation: Interpolation,
    resizer: &mut Resizer,
) -> RgbImage {
    // With AVX-512 our own kernels (same integer arithmetic, weights cached per thread).
    match super::Kernels::fast() {
        Some(k) => super::resample_crop(img, b, out_w, out_h, interpolation, k),
        None => resized_crop_fir(img, b, out_w, out_h, interpolation, resizer),
    }
}

/// Runs `f` on this thread's scratch buffer for the intermediate of a two-pass resize, sized
/// `len` (kept between calls: no allocation, no page faults).
pub(crate) fn with_intermediate<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    thread_local! {
        static MID: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    MID.with_borrow_mut(|buf| {
        buf.resize(len, 0);
        f(buf)
    })
}

/// `resized_crop` with fast_image_resize's passes (also the reference in the tests).
pub(crate) fn resized_crop_fir(
    img: &RgbImage,
    b: CropBox,
    out_w: usize,
    out_h: usize,
    interpolation: Interpolation,
    resizer: &mut Resizer,
) -> RgbImage {
    if (b.width, b.height) == (out_w, out_h) {
        return crop(img, b);
    }
    let view = images::ImageRef::new(
        img.width as u32,
        img.height as u32,
        &img.data,
        PixelType::U8x3,
    )
    .expect("RgbImage buffers always match their size");
    let src = images::CroppedImage::new(
        &view,
        b.left as u32,
        b.top as u32,
        b.width as u32,
        b.height as u32,
    )
    .expect("the crop box lies inside the image");
    // Pillow resamples horizontally first, then vertically, clipping to uint8 in between;
    // fast_image_resize does the vertical pass first for u8 images. The clipping of the
    // intermediate (bicubic overshoot) makes the order visible, so run the passes separately
    // in Pillow's order.
    if b.width == out_w || b.height == out_h {
        // One pass: the order question does not arise.
        return resample(&src, out_w, out_h, interpolation, resizer);
    }
    with_intermediate(out_w * b.height * 3, |buf| {
        let mut mid =
            images::Image::from_slice_u8(out_w as u32, b.height as u32, buf, PixelType::U8x3)
                .expect("the buffer has the intermediate's size");
        let opts = ResizeOptions::new().resize_alg(interpolation.alg());
        resizer
            .resize(&src, &mut mid, &opts)
            .expect("pixel types match");
        resample(&mid, out_w, out_h, interpolation, resizer)
    })
}

/// One pass: `src` to `w` x `h` (the caller makes sure that only one side changes).
fn resample(
    src: &impl IntoImageView,
    w: usize,
    h: usize,
    interpolation: Interpolation,
    resizer: &mut Resizer,
) -> RgbImage {
    let mut dst = images::Image::new(w as u32, h as u32, PixelType::U8x3);
    let opts = ResizeOptions::new().resize_alg(interpolation.alg());
    resizer
        .resize(src, &mut dst, &opts)
        .expect("pixel types match");
    RgbImage::from_raw(w, h, dst.into_vec())
}

/// Copies the pixels of `b` (which must lie inside the image).
pub fn crop(img: &RgbImage, b: CropBox) -> RgbImage {
    let mut out = RgbImage::new(b.width, b.height);
    for y in 0..b.height {
        let src = ((b.top + y) * img.width + b.left) * 3;
        out.data[y * b.width * 3..(y + 1) * b.width * 3]
            .copy_from_slice(&img.data[src..src + b.width * 3]);
    }
    out
}

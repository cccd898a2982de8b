//! `Resize(size)` (shorter side to `size`, bicubic) and `CenterCrop(size)`, as torchvision
//! computes them for PIL images.

use super::{CropBox, Interpolation, RgbImage, resized_crop};
use fast_image_resize::Resizer;

/// torchvision's output size for `Resize(size)`: shorter side `size`, longer side
/// `int(size * long / short)`.
pub fn resized_shorter_size(width: usize, height: usize, size: usize) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = (size as f64 * long as f64 / short as f64) as usize;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// Resizes so that the shorter side is `size`.
pub fn resize_shorter(
    img: &RgbImage,
    size: usize,
    interpolation: Interpolation,
    resizer: &mut Resizer,
) -> RgbImage {
    let (w, h) = resized_shorter_size(img.width, img.height, size);
    let whole = CropBox {
        top: 0,
        left: 0,
        height: img.height,
        width: img.width,
    };
    resized_crop(img, whole, w, h, interpolation, resizer)
}

/// `F.center_crop`'s box: offsets `int(round((H - h) / 2))` (Python rounding, halves to even).
pub fn center_crop_box(width: usize, height: usize, size: usize) -> CropBox {
    let top = ((height as f64 - size as f64) / 2.0)
        .round_ties_even()
        .max(0.0) as usize;
    let left = ((width as f64 - size as f64) / 2.0)
        .round_ties_even()
        .max(0.0) as usize;
    CropBox {
        top,
        left,
        height: size.min(height),
        width: size.min(width),
    }
}

/// Cuts the central `size` x `size` square (images smaller than that are not padded here:
/// the presets resize first, so it never happens).
pub fn center_crop(img: &RgbImage, size: usize) -> RgbImage {
    super::resized_crop::crop(img, center_crop_box(img.width, img.height, size))
}

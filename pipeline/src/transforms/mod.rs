//! Image transforms with torchvision's semantics on PIL images (what DINOv2 and the linear
//! probe use): the same parameter sampling and the same pixel formulas as Pillow, so that the
//! same parameters give the same pixels (parity-tested against the project venv's
//! torchvision/Pillow; tolerances are stated in `tests/transforms_parity.rs`).

mod blur;
mod color;
mod convolution;
mod flip;
mod resize;
mod resized_crop;

pub use blur::{blur_kernels, gaussian_blur, gaussian_kernel};
pub use color::{
    ColorJitter, ColorOp, JitterParams, adjust_brightness, adjust_contrast, adjust_hue,
    adjust_saturation, apply_color_ops, color_kernels, grayscale, solarize,
};
pub use convolution::{Kernels, resample_crop};
pub use fast_image_resize::Resizer;
pub use flip::hflip;
pub use resize::{center_crop, center_crop_box, resize_shorter, resized_shorter_size};
pub use resized_crop::{CropBox, Interpolation, RandomResizedCrop, crop, resized_crop};

/// An 8-bit RGB image, rows top to bottom, pixels interleaved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0; width * height * 3],
        }
    }

    pub fn from_raw(width: usize, height: usize, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), width * height * 3, "RGB buffer size");
        Self {
            width,
            height,
            data,
        }
    }
}

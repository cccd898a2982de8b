//! The one-operation colour functions of torchvision's functional API on PIL images
//! (`adjust_brightness`, `adjust_contrast`, `adjust_saturation`, `adjust_hue`,
//! `rgb_to_grayscale`), each a single [`ColorOp`] through [`apply_color_ops`].

use super::super::RgbImage;
use super::pass::{ColorOp, apply_color_ops};

/// `ImageEnhance.Brightness(img).enhance(f)`: a blend with black.
pub fn adjust_brightness(img: &mut RgbImage, factor: f64) {
    apply_color_ops(img, &[ColorOp::Brightness(factor)]);
}

/// `ImageEnhance.Contrast(img).enhance(f)`: a blend with the rounded mean luma.
pub fn adjust_contrast(img: &mut RgbImage, factor: f64) {
    apply_color_ops(img, &[ColorOp::Contrast(factor)]);
}

/// `ImageEnhance.Color(img).enhance(f)`: a blend with the image's own luma.
pub fn adjust_saturation(img: &mut RgbImage, factor: f64) {
    apply_color_ops(img, &[ColorOp::Saturation(factor)]);
}

/// torchvision's PIL `adjust_hue`: RGB -> HSV (Pillow), H += int32(hue * 255) wrapping in
/// uint8, HSV -> RGB (Pillow).
///
/// The portable code runs the exact float/double operations of Pillow's `rgb2hsv_row` and
/// `hsv2rgb`, written without branches (selects) so that the compiler vectorises them. IEEE
/// arithmetic is the same in vector lanes, and nothing is fused into FMAs, so the result is
/// Pillow's bit for bit (tested on every RGB value and every HSV triple). On x86-64 with AVX2
/// and FMA, float32 kernels (`hue_avx2.rs`, `hue_avx512.rs`) give the same bytes, also
/// tested on every input.
pub fn adjust_hue(img: &mut RgbImage, hue_factor: f64) {
    apply_color_ops(img, &[ColorOp::Hue(hue_factor)]);
}

/// torchvision `rgb_to_grayscale(img, num_output_channels=3)`: PIL luma in all channels.
pub fn grayscale(img: &mut RgbImage) {
    apply_color_ops(img, &[ColorOp::Grayscale]);
}

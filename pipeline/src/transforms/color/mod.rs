//! Colour operations exactly as torchvision applies them to PIL images: `ImageEnhance`'s
//! blends for brightness, contrast and saturation, PIL's HSV round trip for hue, PIL's
//! ITU-R 601 luma for grayscale, and `ImageOps.solarize`.
//!
//! One concept a file: the shared per-value arithmetic (`pixel`), the HSV conversions (`hsv`)
//! and their AVX2/AVX-512 kernels (`hue_avx2`, `hue_avx512`), the pixel planes (`planes`),
//! the CPU's vector level (`simd`), the fused pass that runs a list of operations (`pass`),
//! the one-operation functions (`adjust`), `solarize` and `ColorJitter` (`jitter`).

mod adjust;
mod hsv;
#[cfg(target_arch = "x86_64")]
mod hue_avx2;
#[cfg(target_arch = "x86_64")]
mod hue_avx512;
mod jitter;
mod pass;
mod pixel;
mod planes;
mod simd;
mod solarize;
#[cfg(test)]
mod tests;

pub use adjust::{adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, grayscale};
pub use jitter::{ColorJitter, JitterParams};
pub use pass::{ColorOp, apply_color_ops};
pub use simd::color_kernels;
pub use solarize::solarize;

//! `ImageOps.solarize`: the inversion of bright values.

use super::super::RgbImage;

/// `ImageOps.solarize(img, threshold)`: values at or above the threshold are inverted.
pub fn solarize(img: &mut RgbImage, threshold: u8) {
    for v in &mut img.data {
        if *v >= threshold {
            *v = 255 - *v;
        }
    }
}

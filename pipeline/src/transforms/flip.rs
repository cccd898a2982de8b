//! `RandomHorizontalFlip`'s operation.

use super::RgbImage;

/// Mirrors the image left to right, in place.
pub fn hflip(img: &mut RgbImage) {
    let w = img.width;
    if w == 0 {
        return;
    }
    for row in img.data.chunks_exact_mut(w * 3) {
        row.as_chunks_mut::<3>().0.reverse();
    }
}

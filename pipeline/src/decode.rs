//! Decoding stored images to RGB: libjpeg-turbo for JPEG (what PIL uses too: the same
//! pixels, tested), with optional DCT-domain downscaling; the `image` crate for the rest.

use crate::image_kind::{ImageKind, JpegColor, jpeg_header};
use crate::transforms::RgbImage;
use anyhow::{Context, Result, bail};
use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

/// A reusable decoder (one per worker thread).
pub struct Decoder {
    jpeg: Decompressor,
}

impl Decoder {
    pub fn new() -> Result<Self> {
        Ok(Self {
            jpeg: Decompressor::new().context("creating a libjpeg-turbo decompressor")?,
        })
    }

    /// Full-size RGB, as `PIL.Image.open(f).convert("RGB")`.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<RgbImage> {
        self.decode_at_least(bytes, usize::MAX, usize::MAX)
    }

    /// RGB at the smallest DCT scale (k/8, k = 1..8) that keeps at least `min_w` x `min_h`
    /// pixels (full size when none does): a small crop of a large JPEG does not pay for a
    /// full-size decode. Scaled decodes are not pixel-identical to PIL's full decode followed
    /// by a resize.
    pub fn decode_at_least(
        &mut self,
        bytes: &[u8],
        min_w: usize,
        min_h: usize,
    ) -> Result<RgbImage> {
        match ImageKind::sniff(bytes) {
            Some(ImageKind::Jpeg) if jpeg_header(bytes)?.color != JpegColor::Cmyk => {
                let h = self
                    .jpeg
                    .read_header(bytes)
                    .context("reading the JPEG header")?;
                let factor = (1..=8)
                    .map(|k| ScalingFactor::new(k, 8))
                    .find(|f| f.scale(h.width) >= min_w && f.scale(h.height) >= min_h)
                    .unwrap_or(ScalingFactor::ONE);
                self.jpeg.set_scaling_factor(factor)?;
                let (w, hh) = (factor.scale(h.width), factor.scale(h.height));
                let mut img = RgbImage::new(w, hh);
                let out = Image {
                    pixels: img.data.as_mut_slice(),
                    width: w,
                    pitch: w * 3,
                    height: hh,
                    format: PixelFormat::RGB,
                };
                self.jpeg
                    .decompress(bytes, out)
                    .context("decoding the JPEG")?;
                Ok(img)
            }
            Some(_) => {
                let img = image::load_from_memory(bytes)
                    .context("decoding the image")?
                    .to_rgb8();
                let (w, h) = (img.width() as usize, img.height() as usize);
                Ok(RgbImage::from_raw(w, h, img.into_raw()))
            }
            None => bail!("not an image (unknown leading bytes)"),
        }
    }
}

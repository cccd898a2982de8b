//! Decoding stored images to RGB: libjpeg-turbo for JPEG (what PIL uses too: the same
//! pixels, tested), with optional DCT-domain downscaling; the `image` crate for the rest.
//!
//! Every decode first checks the size the header claims against a pixel limit, before any
//! pixel memory is allocated: a 1 KB file can claim 65000 x 65000 pixels (12.7 GB of RGB), a
//! decompression bomb. The limit is Pillow's (`Image.MAX_IMAGE_PIXELS` is 89,478,485; Pillow
//! raises `DecompressionBombError` above twice that, [`DEFAULT_MAX_IMAGE_PIXELS`]); the
//! environment variable `DINOV2_MAX_IMAGE_PIXELS` or [`set_max_image_pixels`] changes it
//! (0: no limit).

use crate::image_kind::{ImageKind, JpegColor, jpeg_header};
use crate::transforms::RgbImage;
use anyhow::{Context, Result, bail};
use std::sync::atomic::{AtomicU64, Ordering};
use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};

/// Pillow's `DecompressionBombError` threshold: 2 x `Image.MAX_IMAGE_PIXELS`.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 2 * 89_478_485;
/// The environment variable that overrides [`DEFAULT_MAX_IMAGE_PIXELS`].
pub const MAX_IMAGE_PIXELS_ENV: &str = "DINOV2_MAX_IMAGE_PIXELS";

/// `u64::MAX`: not read from the environment yet.
static MAX_PIXELS: AtomicU64 = AtomicU64::new(u64::MAX);

/// The decoded-pixel limit in force (0: none).
pub fn max_image_pixels() -> u64 {
    match MAX_PIXELS.load(Ordering::Relaxed) {
        u64::MAX => {
            let v = std::env::var(MAX_IMAGE_PIXELS_ENV)
                .ok()
                .and_then(|v| v.trim().replace('_', "").parse::<u64>().ok())
                .unwrap_or(DEFAULT_MAX_IMAGE_PIXELS);
            let _ = MAX_PIXELS.compare_exchange(u64::MAX, v, Ordering::Relaxed, Ordering::Relaxed);
            MAX_PIXELS.load(Ordering::Relaxed)
        }
        v => v,
    }
}

/// Sets the decoded-pixel limit for the whole process (0: none).
pub fn set_max_image_pixels(n: u64) {
    MAX_PIXELS.store(n.min(u64::MAX - 1), Ordering::Relaxed);
}

/// An error when an image whose header claims `width` x `height` pixels is over the limit.
pub fn check_pixels(width: usize, height: usize) -> Result<()> {
    let limit = max_image_pixels();
    let pixels = width as u64 * height as u64;
    if limit > 0 && pixels > limit {
        bail!(
            "the image claims {width} x {height} = {pixels} pixels, over the limit of {limit} \
             (a decompression bomb?); set {MAX_IMAGE_PIXELS_ENV} to raise it (0: no limit)"
        );
    }
    Ok(())
}

/// Any format but JPEG through the `image` crate, after checking the header's size against
/// the pixel limit (and with the crate's allocation limit set to what that size needs).
pub fn decode_other(bytes: &[u8]) -> Result<image::DynamicImage> {
    let (w, h) = crate::image_kind::dimensions(bytes)?;
    check_pixels(w, h)?;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .context("unreadable image header")?;
    let mut limits = image::Limits::default();
    // RGBA at 16 bits per channel, plus the crate's own working buffers.
    limits.max_alloc = Some((w as u64 * h as u64 * 8).max(64 << 20));
    reader.limits(limits);
    reader.decode().context("decoding the image")
}

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
                check_pixels(h.width, h.height)?;
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
                let img = decode_other(bytes)?.to_rgb8();
                let (w, h) = (img.width() as usize, img.height() as usize);
                Ok(RgbImage::from_raw(w, h, img.into_raw()))
            }
            None => bail!("not an image (unknown leading bytes)"),
        }
    }
}

//! What happens to one source file on its way into a shard: sniff, validate, pass through or
//! convert to RGB JPEG, optionally resize-on-write.

use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images};
use pipeline::image_kind::{ImageKind, JpegColor, jpeg_header};
use pipeline::jpeg_entropy::{self, Verdict};
use turbojpeg::{Image, PixelFormat, Subsamp};

/// Why a source file was left out. The `&'static str` is the stable reason counted in the
/// manifest; the detail is for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub reason: &'static str,
    pub detail: String,
}

impl Skip {
    fn new(reason: &'static str, detail: impl ToString) -> Self {
        Self {
            reason,
            detail: detail.to_string(),
        }
    }
}

/// A file ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// JPEG bytes to store.
    pub bytes: Vec<u8>,
    /// Their CRC-32C (computed by the worker, off the writer's path).
    pub crc32c: u32,
    /// Original size.
    pub width: u32,
    pub height: u32,
    /// Set when the image was converted to an RGB JPEG: `cmyk`, `grayscale`, `png`, ...
    pub converted: Option<&'static str>,
    /// Whether it was resized on write (`--max-side`).
    pub resized: bool,
    /// The content's real format when the file extension says otherwise (a PNG named `.JPEG`).
    pub misnamed: Option<&'static str>,
}

/// How a JPEG that is passed through untouched is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validate {
    /// Entropy-decode the whole image (libjpeg-turbo's verdict): finds truncation and corrupt data.
    Decode,
    /// Walk the marker structure up to the end-of-image marker: finds truncation only.
    Structure,
    /// Header only.
    None,
}

impl Validate {
    pub fn name(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Structure => "structure",
            Self::None => "none",
        }
    }
}

/// Per-worker codec state (libjpeg-turbo handles, resize buffers).
pub struct Codec {
    decoder: pipeline::decode::Decoder,
    resizer: Resizer,
    max_side: Option<u32>,
    quality: i32,
    validate: Validate,
    /// The entropy check's de-stuffed scan data, reused.
    scan: Vec<u8>,
}

impl Codec {
    pub fn new(max_side: Option<u32>, quality: u8, validate: Validate) -> anyhow::Result<Self> {
        Ok(Self {
            decoder: pipeline::decode::Decoder::new()?,
            resizer: Resizer::new(),
            max_side,
            quality: quality as i32,
            validate,
            scan: Vec::new(),
        })
    }

    /// Prepares the bytes of the file named `name` (the name's extension is only compared with
    /// the content).
    pub fn prepare(&mut self, name: &str, bytes: Vec<u8>) -> Result<Prepared, Skip> {
        if bytes.is_empty() {
            return Err(Skip::new("empty file", "0 bytes"));
        }
        let Some(kind) = ImageKind::sniff(&bytes) else {
            return Err(Skip::new(
                "not an image",
                format!(
                    "unknown leading bytes {:02x?}",
                    &bytes[..bytes.len().min(8)]
                ),
            ));
        };
        let misnamed = extension_mismatch(name, kind);
        let mut out = match kind {
            ImageKind::Jpeg => self.prepare_jpeg(bytes)?,
            other => self.prepare_other(other, &bytes)?,
        };
        out.misnamed = misnamed;
        Ok(out)
    }

    fn prepare_jpeg(&mut self, bytes: Vec<u8>) -> Result<Prepared, Skip> {
        let header =
            jpeg_header(&bytes).map_err(|e| Skip::new("corrupt header", format!("{e:#}")))?;
        let (w, h) = (header.width as u32, header.height as u32);
        pipeline::decode::check_pixels(header.width, header.height)
            .map_err(|e| Skip::new("too many pixels", format!("{e:#}")))?;
        match header.color {
            JpegColor::Rgb if !self.needs_resize(w, h) => {
                match self.validate {
                    Validate::Decode => self.validate_jpeg(&bytes)?,
                    Validate::Structure => pipeline::image_kind::jpeg_structure_check(&bytes)
                        .map_err(|e| Skip::new("truncated or corrupt", format!("{e:#}")))?,
                    Validate::None => {}
                }
                Ok(stored(bytes, w, h, None, false))
            }
            JpegColor::Rgb | JpegColor::Gray => {
                let (rgb, sw, sh) = self.decode_jpeg_rgb(&bytes, w, h)?;
                let converted = (header.color == JpegColor::Gray).then_some("grayscale");
                self.encode(rgb, (sw, sh), (w, h), converted)
            }
            JpegColor::Cmyk => {
                // libjpeg-turbo does not convert CMYK; the image crate does (Adobe inversion too).
                let img = pipeline::decode::decode_other(&bytes)
                    .map_err(|e| Skip::new("truncated or corrupt", format!("CMYK JPEG: {e:#}")))?;
                let rgb = img.to_rgb8();
                self.encode(rgb.into_raw(), (w, h), (w, h), Some("cmyk"))
            }
        }
    }

    fn prepare_other(&mut self, kind: ImageKind, bytes: &[u8]) -> Result<Prepared, Skip> {
        if let Ok((w, h)) = pipeline::image_kind::dimensions(bytes) {
            pipeline::decode::check_pixels(w, h)
                .map_err(|e| Skip::new("too many pixels", format!("{e:#}")))?;
        }
        let img = pipeline::decode::decode_other(bytes)
            .map_err(|e| Skip::new("truncated or corrupt", format!("{}: {e:#}", kind.name())))?;
        let (w, h) = (img.width(), img.height());
        // Like PIL's convert("RGB"): alpha is dropped, palettes and grey levels expanded.
        let rgb = img.to_rgb8();
        self.encode(rgb.into_raw(), (w, h), (w, h), Some(kind.name()))
    }

    fn needs_resize(&self, w: u32, h: u32) -> bool {
        self.max_side.is_some_and(|m| w.max(h) > m)
    }

    /// Entropy-decodes the whole image: catches truncated and corrupt scans. The fast check
    /// (symbols only) accepts what libjpeg-turbo would; anything it is unsure of gets
    /// libjpeg-turbo's 1/8-scale decode, whose verdict (warnings included) counts.
    pub fn validate_jpeg(&mut self, bytes: &[u8]) -> Result<(), Skip> {
        if jpeg_entropy::check(bytes, &mut self.scan) == Verdict::Clean {
            return Ok(());
        }
        self.decoder
            .decode_at_least(bytes, 1, 1)
            .map(|_| ())
            .map_err(|e| Skip::new("truncated or corrupt", format!("{e:#}")))
    }

    /// Decodes to RGB; when resizing, at the smallest DCT scale (k/8) that still covers the
    /// target size, so a large image does not pay for a full-size decode.
    fn decode_jpeg_rgb(
        &mut self,
        bytes: &[u8],
        w: u32,
        h: u32,
    ) -> Result<(Vec<u8>, u32, u32), Skip> {
        let (nw, nh) = match self.max_side.filter(|_| self.needs_resize(w, h)) {
            Some(m) => fit_max_side(w, h, m),
            None => (u32::MAX, u32::MAX), // no DCT scale qualifies: full size
        };
        let img = self
            .decoder
            .decode_at_least(bytes, nw as usize, nh as usize)
            .map_err(|e| Skip::new("truncated or corrupt", format!("{e:#}")))?;
        Ok((img.data, img.width as u32, img.height as u32))
    }

    /// Resizes (when `--max-side` asks) and encodes RGB pixels of size `size` as a JPEG;
    /// `original` is the source image's size, recorded in the shard.
    fn encode(
        &mut self,
        rgb: Vec<u8>,
        size: (u32, u32),
        original: (u32, u32),
        converted: Option<&'static str>,
    ) -> Result<Prepared, Skip> {
        let fail = |e: String| Skip::new("conversion failed", e);
        let ((w, h), (ow, oh)) = (size, original);
        let (mut pixels, mut pw, mut ph) = (rgb, w, h);
        let resized = self.needs_resize(ow, oh);
        if resized {
            let (nw, nh) = fit_max_side(ow, oh, self.max_side.unwrap());
            if (nw, nh) != (w, h) {
                let src = images::ImageRef::new(w, h, &pixels, PixelType::U8x3)
                    .map_err(|e| fail(e.to_string()))?;
                let mut dst = images::Image::new(nw, nh, PixelType::U8x3);
                let opts =
                    ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom));
                self.resizer
                    .resize(&src, &mut dst, &opts)
                    .map_err(|e| fail(e.to_string()))?;
                (pixels, pw, ph) = (dst.into_vec(), nw, nh);
            }
        }
        let image = Image {
            pixels: pixels.as_slice(),
            width: pw as usize,
            pitch: pw as usize * 3,
            height: ph as usize,
            format: PixelFormat::RGB,
        };
        // Conversions keep full chroma resolution (they are rare and should stay faithful);
        // resize-on-write uses 4:2:0 like the photographs it replaces.
        let subsamp = if converted.is_some() {
            Subsamp::None
        } else {
            Subsamp::Sub2x2
        };
        let jpeg =
            turbojpeg::compress(image, self.quality, subsamp).map_err(|e| fail(e.to_string()))?;
        Ok(stored(jpeg.to_vec(), ow, oh, converted, resized))
    }
}

fn stored(
    bytes: Vec<u8>,
    width: u32,
    height: u32,
    converted: Option<&'static str>,
    resized: bool,
) -> Prepared {
    Prepared {
        crc32c: pipeline::shards::record::checksum(&bytes),
        bytes,
        width,
        height,
        converted,
        resized,
        misnamed: None,
    }
}

/// Size with the longest side `max_side`, aspect kept (rounded, at least 1 px).
pub fn fit_max_side(w: u32, h: u32, max_side: u32) -> (u32, u32) {
    let scale = max_side as f64 / w.max(h) as f64;
    let fit = |x: u32| ((x as f64 * scale).round() as u32).clamp(1, max_side);
    (fit(w), fit(h))
}

/// The real format when the extension names another one.
fn extension_mismatch(name: &str, kind: ImageKind) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    let matches = match kind {
        ImageKind::Jpeg => ext == "jpg" || ext == "jpeg",
        ImageKind::Png => ext == "png",
        _ => false,
    };
    (!matches).then_some(kind.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_longest_side() {
        assert_eq!(fit_max_side(500, 375, 256), (256, 192));
        assert_eq!(fit_max_side(375, 500, 256), (192, 256));
        assert_eq!(fit_max_side(5000, 10, 256), (256, 1));
    }

    #[test]
    fn mismatch_is_by_content() {
        assert_eq!(extension_mismatch("a.JPEG", ImageKind::Png), Some("png"));
        assert_eq!(extension_mismatch("a.JPEG", ImageKind::Jpeg), None);
        assert_eq!(extension_mismatch("a.png", ImageKind::Jpeg), Some("jpeg"));
    }
}

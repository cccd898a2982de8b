//! What an image file really is, from its first bytes (ImageNet has PNGs named `.JPEG`), and
//! its size and colour space from the header alone.

use anyhow::{Context, Result, bail};

/// The container format found in a file's leading bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    Jpeg,
    Png,
    Gif,
    Bmp,
    Webp,
    Tiff,
}

impl ImageKind {
    /// Sniffs the format from magic bytes; `None` when it is no image format we read.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        Some(match bytes {
            [0xFF, 0xD8, 0xFF, ..] => Self::Jpeg,
            [0x89, b'P', b'N', b'G', ..] => Self::Png,
            [b'G', b'I', b'F', b'8', ..] => Self::Gif,
            [b'B', b'M', ..] => Self::Bmp,
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'E',
                b'B',
                b'P',
                ..,
            ] => Self::Webp,
            [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => Self::Tiff,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Gif => "gif",
            Self::Bmp => "bmp",
            Self::Webp => "webp",
            Self::Tiff => "tiff",
        }
    }
}

/// Colour space of a JPEG as its header declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JpegColor {
    /// YCbCr or RGB: decodes straight to RGB.
    Rgb,
    Gray,
    /// CMYK or YCCK (Adobe): needs a conversion to RGB.
    Cmyk,
}

/// Width, height and colour space of a JPEG from its header (no decode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JpegHeader {
    pub width: usize,
    pub height: usize,
    pub color: JpegColor,
}

/// Reads a JPEG header with libjpeg-turbo.
pub fn jpeg_header(bytes: &[u8]) -> Result<JpegHeader> {
    let h = turbojpeg::read_header(bytes).context("unreadable JPEG header")?;
    let color = match h.colorspace {
        turbojpeg::Colorspace::Gray => JpegColor::Gray,
        turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK => JpegColor::Cmyk,
        _ => JpegColor::Rgb,
    };
    if h.width == 0 || h.height == 0 {
        bail!(
            "JPEG header declares an empty {}x{} image",
            h.width,
            h.height
        );
    }
    Ok(JpegHeader {
        width: h.width,
        height: h.height,
        color,
    })
}

/// Width and height of any supported image from its header.
pub fn dimensions(bytes: &[u8]) -> Result<(usize, usize)> {
    match ImageKind::sniff(bytes) {
        Some(ImageKind::Jpeg) => jpeg_header(bytes).map(|h| (h.width, h.height)),
        Some(_) => {
            let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
                .with_guessed_format()
                .context("unreadable image header")?;
            let (w, h) = reader
                .into_dimensions()
                .context("unreadable image header")?;
            Ok((w as usize, h as usize))
        }
        None => bail!("not an image (unknown leading bytes)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_content_not_name() {
        assert_eq!(
            ImageKind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageKind::Jpeg)
        );
        assert_eq!(ImageKind::sniff(b"\x89PNG\r\n\x1a\n"), Some(ImageKind::Png));
        assert_eq!(ImageKind::sniff(b"GIF89a"), Some(ImageKind::Gif));
        assert_eq!(
            ImageKind::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageKind::Webp)
        );
        assert_eq!(ImageKind::sniff(b"hello world"), None);
        assert_eq!(ImageKind::sniff(b""), None);
    }

    #[test]
    fn bad_headers_are_errors() {
        assert!(jpeg_header(&[0xFF, 0xD8, 0xFF]).is_err());
        assert!(dimensions(b"definitely not an image").is_err());
    }
}

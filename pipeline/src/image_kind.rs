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

/// Walks a JPEG's marker segments and entropy-coded scans without decoding them: every
/// segment must fit in the file and the last scan must be followed by an EOI marker. Catches
/// truncated and cut-off files (the usual damage) at memchr speed; a bit flip inside the
/// entropy-coded data needs a decode to be found.
pub fn jpeg_structure_check(b: &[u8]) -> Result<()> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        bail!("no JPEG start-of-image marker");
    }
    let mut pos = 2;
    let mut scans = 0;
    loop {
        // Next marker: 0xFF (plus fill bytes) and a code.
        while pos < b.len() && b[pos] == 0xFF && b.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if pos + 1 >= b.len() {
            bail!("truncated: the file ends before an end-of-image marker (after {scans} scans)");
        }
        if b[pos] != 0xFF {
            bail!(
                "corrupt: expected a marker at byte {pos}, found {:#04x}",
                b[pos]
            );
        }
        let code = b[pos + 1];
        pos += 2;
        match code {
            0xD9 if scans > 0 => return Ok(()),
            0xD9 => bail!("end-of-image marker before any scan"),
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(len) = b
            .get(pos..pos + 2)
            .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
        else {
            bail!("truncated inside the marker {code:#04x} segment at byte {pos}");
        };
        if len < 2 || pos + len > b.len() {
            bail!("truncated: the {code:#04x} segment at byte {pos} runs past the end of the file");
        }
        pos += len;
        if code == 0xDA {
            scans += 1;
            // Entropy-coded data: 0xFF is followed by 0x00 (stuffing) or a restart marker
            // until the next real marker.
            loop {
                let Some(off) = memchr::memchr(0xFF, &b[pos..]) else {
                    bail!("truncated: scan {scans} has no end (no end-of-image marker)");
                };
                pos += off;
                match b.get(pos + 1) {
                    None => bail!("truncated: the file ends inside scan {scans}"),
                    Some(0x00) | Some(0xD0..=0xD7) | Some(0xFF) => pos += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

/// Memory the image crate may allocate to read a header (see [`dimensions`]).
const HEADER_ALLOC: u64 = 16 << 20;

/// Width and height of any supported image from its header.
pub fn dimensions(bytes: &[u8]) -> Result<(usize, usize)> {
    match ImageKind::sniff(bytes) {
        Some(ImageKind::Jpeg) => jpeg_header(bytes).map(|h| (h.width, h.height)),
        Some(ImageKind::Tiff) => bail!(
            "TIFF is not read: the tiff crate allocates up to 256 MiB for a header before any \
             limit applies (a 4 KB file is enough); convert it to PNG or JPEG"
        ),
        Some(_) => {
            let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
                .with_guessed_format()
                .context("unreadable image header")?;
            // Reading a header needs little memory; the image crate's default allowance
            // (512 MiB) let a 1.3 KB TIFF with hostile tag counts allocate hundreds of MiB.
            let mut limits = image::Limits::default();
            limits.max_alloc = Some(HEADER_ALLOC.max(bytes.len() as u64 * 4));
            reader.limits(limits);
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
    fn tiff_is_refused_before_its_decoder_allocates() {
        let e = format!("{:#}", dimensions(b"II*\0\x08\0\0\0\xff\xff").unwrap_err());
        assert!(e.contains("TIFF is not read"), "{e}");
    }

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
    fn structure_check_finds_truncation() {
        let px: Vec<u8> = (0..64 * 48 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let img = turbojpeg::Image {
            pixels: px.as_slice(),
            width: 64,
            pitch: 192,
            height: 48,
            format: turbojpeg::PixelFormat::RGB,
        };
        let jpeg = turbojpeg::compress(img, 90, turbojpeg::Subsamp::Sub2x2)
            .unwrap()
            .to_vec();
        jpeg_structure_check(&jpeg).unwrap();
        let mut trailing = jpeg.clone();
        trailing.extend_from_slice(b"trailing garbage");
        jpeg_structure_check(&trailing).unwrap();
        for cut in [3, 20, jpeg.len() / 2, jpeg.len() - 2, jpeg.len() - 1] {
            assert!(jpeg_structure_check(&jpeg[..cut]).is_err(), "cut at {cut}");
        }
        assert!(jpeg_structure_check(b"\xFF\xD8\xFF\xD9").is_err());
    }

    #[test]
    fn bad_headers_are_errors() {
        assert!(jpeg_header(&[0xFF, 0xD8, 0xFF]).is_err());
        assert!(dimensions(b"definitely not an image").is_err());
    }
}

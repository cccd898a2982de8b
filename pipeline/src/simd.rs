//! Which SIMD paths the image code will take on this CPU, and a timed JPEG self-test.

use anyhow::{Context, Result};
use std::time::Instant;

/// CPU features and the SIMD levels the resize and JPEG libraries pick from them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimdReport {
    /// x86-64 / aarch64 features detected at run time (sse4.1, avx2, fma, avx512f, neon, ...).
    pub cpu_features: Vec<&'static str>,
    /// The extension fast_image_resize uses by default here (`Avx2`, `Sse4_1`, `Neon`, `None`).
    pub resize_extension: String,
    /// libjpeg-turbo is built with its SIMD code required; at run time it picks the best level
    /// the CPU offers (AVX2, else SSE2 on x86-64; Neon on aarch64) unless JSIMD_FORCE* is set.
    pub jpeg_simd: String,
    /// The kernels the augmentations pick here: the crops' resampling (our AVX-512 separable
    /// convolution, or fast_image_resize), the colour pass and the blur.
    pub augment_kernels: Vec<String>,
}

/// Detects the features and the levels the libraries will use.
pub fn report() -> SimdReport {
    let cpu_features = detected_features();
    let resize_extension = format!("{:?}", fast_image_resize::CpuExtensions::default());
    let forced: Vec<String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("JSIMD_FORCE"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let level = if cpu_features.contains(&"avx2") {
        "AVX2"
    } else if cpu_features.contains(&"neon") {
        "Neon"
    } else if cpu_features.contains(&"sse2") {
        "SSE2"
    } else {
        "none"
    };
    let jpeg_simd = if forced.is_empty() {
        level.to_string()
    } else {
        format!("{level} (overridden by {})", forced.join(" "))
    };
    let resampling = match crate::transforms::Kernels::fast() {
        Some(_) => "resampling: own separable convolution (AVX-512)".to_string(),
        None => format!("resampling: fast_image_resize ({resize_extension})"),
    };
    SimdReport {
        cpu_features,
        resize_extension,
        jpeg_simd,
        augment_kernels: vec![
            resampling,
            format!("colour: {}", crate::transforms::color_kernels()),
            format!("blur: {}", crate::transforms::blur_kernels()),
        ],
    }
}

fn detected_features() -> Vec<&'static str> {
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$( if std::arch::is_x86_feature_detected!($f) { out.push($f); } )*};
        }
        probe!(
            "sse2",
            "sse4.1",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vnni"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            out.push("neon");
        }
    }
    out
}

/// Result of [`jpeg_self_test`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct JpegSelfTest {
    pub width: usize,
    pub height: usize,
    pub jpeg_bytes: usize,
    /// Median full-decode time over the repetitions.
    pub decode_ms: f64,
    /// Largest absolute per-channel difference between the decoded and the original pixels.
    pub max_abs_error: u8,
}

/// Encodes a smooth synthetic RGB image with libjpeg-turbo (quality 95, 4:4:4), decodes it `reps`
/// times and reports the median decode time and the round-trip error.
pub fn jpeg_self_test(width: usize, height: usize, reps: usize) -> Result<JpegSelfTest> {
    let pixels: Vec<u8> = (0..height)
        .flat_map(|y| {
            (0..width).flat_map(move |x| {
                [
                    (x * 255 / width) as u8,
                    (y * 255 / height) as u8,
                    ((x + y) * 255 / (width + height)) as u8,
                ]
            })
        })
        .collect();
    let image = turbojpeg::Image {
        pixels: pixels.as_slice(),
        width,
        pitch: width * 3,
        height,
        format: turbojpeg::PixelFormat::RGB,
    };
    let jpeg = turbojpeg::compress(image, 95, turbojpeg::Subsamp::None)
        .context("libjpeg-turbo failed to encode the self-test image")?;
    let mut times = Vec::with_capacity(reps.max(1));
    let mut decoded = None;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let img = turbojpeg::decompress(&jpeg, turbojpeg::PixelFormat::RGB)
            .context("libjpeg-turbo failed to decode its own output")?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        decoded = Some(img);
    }
    let decoded = decoded.expect("at least one repetition");
    anyhow::ensure!(
        (decoded.width, decoded.height) == (width, height),
        "decoded size {}x{} differs from {width}x{height}",
        decoded.width,
        decoded.height
    );
    let max_abs_error = decoded
        .pixels
        .iter()
        .zip(&pixels)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(0);
    times.sort_by(f64::total_cmp);
    Ok(JpegSelfTest {
        width,
        height,
        jpeg_bytes: jpeg.len(),
        decode_ms: times[times.len() / 2],
        max_abs_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_round_trip_is_close() {
        let r = jpeg_self_test(320, 240, 3).unwrap();
        assert!(r.jpeg_bytes > 100, "{r:?}");
        // Quality 95 on a smooth image: small per-pixel error, but a real lossy codec.
        assert!(r.max_abs_error <= 8, "{r:?}");
        assert!(r.decode_ms > 0.0);
    }

    #[test]
    fn resize_extension_is_one_the_cpu_supports() {
        let ext = fast_image_resize::CpuExtensions::default();
        assert!(ext.is_supported());
        assert_eq!(report().resize_extension, format!("{ext:?}"));
    }
}

//! Which vector instructions the colour pass uses on this CPU: AVX-512, AVX2 or none.

/// The instructions the colour pass uses on this CPU.
pub(super) fn simd_level() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            return if has!("avx512f") && has!("avx512bw") {
                Simd::Avx512
            } else {
                Simd::Avx2
            };
        }
    }
    Simd::None
}

/// The kernels [`apply_color_ops`](super::apply_color_ops) runs on this CPU (colour jitter,
/// grayscale, the hue round trip): `AVX-512`, `AVX2` or `scalar`.
pub fn color_kernels() -> &'static str {
    match simd_level() {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => "AVX-512",
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => "AVX2",
        Simd::None => "scalar",
    }
}

/// The instructions the colour pass may use (checked by the caller): `Avx2` means AVX2 and
/// FMA, `Avx512` adds AVX-512 F and BW. They pick the hue kernel (all give the same bits) and
/// the plane split/merge; `None` is plain code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Simd {
    None,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

//! Blocks of 64 interleaved RGB pixels to three planes and back (the colour pass works on
//! planes), with SSSE3 byte shuffles where the CPU has them.

/// Pixels per block.
pub(super) const BLOCK: usize = 64;

/// Splits a block (up to [`BLOCK`] pixels) into planes.
///
/// # Safety
/// `ssse3` only where the CPU has SSSE3.
#[inline(always)]
pub(super) unsafe fn split(
    px: &[u8],
    r: &mut [u8; BLOCK],
    g: &mut [u8; BLOCK],
    b: &mut [u8; BLOCK],
    ssse3: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if let (true, Ok(full)) = (ssse3, px.try_into()) {
        // SAFETY: the caller says the CPU has SSSE3.
        unsafe { ssse3::split_full(full, r, g, b) };
        return;
    }
    let _ = ssse3;
    for (j, p) in px.chunks_exact(3).enumerate() {
        r[j] = p[0];
        g[j] = p[1];
        b[j] = p[2];
    }
}

/// Interleaves planes back into a block (`px.len() / 3` pixels).
///
/// # Safety
/// `ssse3` only where the CPU has SSSE3.
#[inline(always)]
pub(super) unsafe fn merge(
    px: &mut [u8],
    r: &[u8; BLOCK],
    g: &[u8; BLOCK],
    b: &[u8; BLOCK],
    ssse3: bool,
) {
    #[cfg(target_arch = "x86_64")]
    if let (true, Ok(full)) = (ssse3, <&mut [u8; BLOCK * 3]>::try_from(&mut *px)) {
        // SAFETY: the caller says the CPU has SSSE3.
        unsafe { ssse3::merge_full(full, r, g, b) };
        return;
    }
    let _ = ssse3;
    for (j, p) in px.chunks_exact_mut(3).enumerate() {
        p[0] = r[j];
        p[1] = g[j];
        p[2] = b[j];
    }
}

#[cfg(target_arch = "x86_64")]
mod ssse3 {
    use super::BLOCK;
    use std::arch::x86_64::*;

    /// Split: plane `c`, pixel k <- byte 3 k + c of 16 pixels (48 bytes in 3 vectors); as
    /// controls on each vector (zero where the byte lies in another vector).
    const SPLIT: [[[i8; 16]; 3]; 3] = {
        let mut t = [[[-128i8; 16]; 3]; 3];
        let mut c = 0;
        while c < 3 {
            let mut k = 0;
            while k < 16 {
                let at = 3 * k + c;
                t[c][at / 16][k] = (at % 16) as i8;
                k += 1;
            }
            c += 1;
        }
        t
    };

    /// Merge: output vector `o`, byte k <- plane (16 o + k) % 3, pixel (16 o + k) / 3; as
    /// controls on each plane (zero where the byte belongs to another plane).
    const MERGE: [[[i8; 16]; 3]; 3] = {
        let mut t = [[[-128i8; 16]; 3]; 3];
        let mut o = 0;
        while o < 3 {
            let mut k = 0;
            while k < 16 {
                let at = 16 * o + k;
                t[o][at % 3][k] = (at / 3) as i8;
                k += 1;
            }
            o += 1;
        }
        t
    };

    #[inline(always)]
    fn ctl(c: &[i8; 16]) -> __m128i {
        // SAFETY: 16 readable bytes.
        unsafe { _mm_loadu_si128(c.as_ptr().cast()) }
    }

    /// `split` of a whole block.
    #[inline]
    #[target_feature(enable = "ssse3")]
    pub(super) fn split_full(
        px: &[u8; BLOCK * 3],
        r: &mut [u8; BLOCK],
        g: &mut [u8; BLOCK],
        b: &mut [u8; BLOCK],
    ) {
        for q in 0..BLOCK / 16 {
            // SAFETY: bytes 48 q .. 48 q + 48 of the block, 16 q .. 16 q + 16 of each plane.
            unsafe {
                let src = px.as_ptr().add(48 * q);
                let v = [
                    _mm_loadu_si128(src.cast()),
                    _mm_loadu_si128(src.add(16).cast()),
                    _mm_loadu_si128(src.add(32).cast()),
                ];
                for (c, plane) in [&mut *r, &mut *g, &mut *b].into_iter().enumerate() {
                    let t = &SPLIT[c];
                    let x = _mm_or_si128(
                        _mm_or_si128(
                            _mm_shuffle_epi8(v[0], ctl(&t[0])),
                            _mm_shuffle_epi8(v[1], ctl(&t[1])),
                        ),
                        _mm_shuffle_epi8(v[2], ctl(&t[2])),
                    );
                    _mm_storeu_si128(plane.as_mut_ptr().add(16 * q).cast(), x);
                }
            }
        }
    }

    /// `merge` of a whole block.
    #[inline]
    #[target_feature(enable = "ssse3")]
    pub(super) fn merge_full(
        px: &mut [u8; BLOCK * 3],
        r: &[u8; BLOCK],
        g: &[u8; BLOCK],
        b: &[u8; BLOCK],
    ) {
        for q in 0..BLOCK / 16 {
            // SAFETY: as in `split_full`.
            unsafe {
                let p = [
                    _mm_loadu_si128(r.as_ptr().add(16 * q).cast()),
                    _mm_loadu_si128(g.as_ptr().add(16 * q).cast()),
                    _mm_loadu_si128(b.as_ptr().add(16 * q).cast()),
                ];
                let dst = px.as_mut_ptr().add(48 * q);
                for (o, t) in MERGE.iter().enumerate() {
                    let x = _mm_or_si128(
                        _mm_or_si128(
                            _mm_shuffle_epi8(p[0], ctl(&t[0])),
                            _mm_shuffle_epi8(p[1], ctl(&t[1])),
                        ),
                        _mm_shuffle_epi8(p[2], ctl(&t[2])),
                    );
                    _mm_storeu_si128(dst.add(16 * o).cast(), x);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_shuffles_equal_the_loops() {
        if !is_x86_feature_detected!("ssse3") {
            return;
        }
        let px: Vec<u8> = (0..BLOCK * 3).map(|i| (i * 7 + 3) as u8).collect();
        let px: &[u8; BLOCK * 3] = px.as_slice().try_into().unwrap();
        let mut a = [[0u8; BLOCK]; 3];
        let mut s = [[0u8; BLOCK]; 3];
        let [ar, ag, ab] = &mut a;
        // SAFETY: `false`: the plain loops.
        unsafe { split(px, ar, ag, ab, false) };
        let [sr, sg, sb] = &mut s;
        // SAFETY: the CPU has SSSE3 (checked above).
        unsafe { split(px, sr, sg, sb, true) };
        assert_eq!(a, s);
        let mut back = [0u8; BLOCK * 3];
        // SAFETY: as above.
        unsafe { merge(&mut back, &a[0], &a[1], &a[2], true) };
        assert_eq!(&back, px);
        let mut slow = [0u8; BLOCK * 3];
        // SAFETY: `false`: the plain loops.
        unsafe { merge(&mut slow, &a[0], &a[1], &a[2], false) };
        assert_eq!(&slow, px);
    }
}

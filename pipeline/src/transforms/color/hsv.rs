//! Pillow's HSV conversions for one pixel (`rgb2hsv_row` and `hsv2rgb`), written without
//! branches so that they vectorise: the portable half of the hue shift (see [`adjust_hue`]).
//!
//! [`adjust_hue`]: super::adjust_hue

/// Pillow's `rgb2hsv_row` for one pixel, branch-free.
#[inline(always)]
pub(super) fn rgb_to_hsv_arith(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let (ri, gi, bi) = (r as i32, g as i32, b as i32);
    let maxc = ri.max(gi).max(bi);
    let minc = ri.min(gi).min(bi);
    let grey = maxc == minc;
    let cr = (maxc - minc) as f32;
    // Grey pixels (cr == 0) take h = s = 0 below; divide by 1 so no lane sees 0 / 0.
    let div = if grey { 1.0 } else { cr };
    let rc = (maxc - ri) as f32 / div;
    let gc = (maxc - gi) as f32 / div;
    let bc = (maxc - bi) as f32 / div;
    let h_g = (2.0 + rc as f64 - bc as f64) as f32;
    let h_b = (4.0 + gc as f64 - rc as f64) as f32;
    let h = if ri == maxc {
        bc - gc
    } else if gi == maxc {
        h_g
    } else {
        h_b
    };
    // fmod(h / 6 + 1, 1) for a value in [0, 2): subtracting 1.0 is exact there.
    // `h / 6.0`, `* 6.0 / 255.0` and `/ 255.0` below are multiplications by reciprocals:
    // not the same doubles in general, but the same uint8/float32 results wherever they are
    // used (the exhaustive tests check every input).
    let x = h as f64 * (1.0 / 6.0) + 1.0;
    let h = (if x >= 1.0 { x - 1.0 } else { x }) as f32;
    // SAFETY (all `to_int_unchecked` here): the values are finite and in [0, 256).
    let uh = unsafe { (h as f64 * 255.0).to_int_unchecked::<i32>() };
    let sat = cr / (if grey { 1 } else { maxc }) as f32;
    let us = unsafe { (sat as f64 * 255.0).min(255.0).to_int_unchecked::<i32>() };
    let uh = if grey { 0 } else { uh };
    let us = if grey { 0 } else { us };
    (uh as u8, us as u8, maxc as u8)
}

/// C's `round()` (halves away from zero) of `x >= 0`, clipped to uint8.
#[inline(always)]
fn round_clip8(x: f64) -> i32 {
    let i = x.floor();
    let r = if x - i >= 0.5 { i + 1.0 } else { i };
    // SAFETY: x >= 0 is finite.
    unsafe { r.min(255.0).to_int_unchecked::<i32>() }
}

/// Pillow's `hsv2rgb` for one pixel, branch-free.
#[inline(always)]
pub(super) fn hsv_to_rgb_arith(h: u8, s: u8, v: u8) -> (u8, u8, u8) {
    let hh = h as f32 as f64 * 6.0 * (1.0 / 255.0);
    let i = hh.floor();
    let f = (hh - i as f32 as f64) as f32;
    // SAFETY: i is an integer in [0, 6].
    let i = unsafe { i.to_int_unchecked::<i32>() };
    let fs = (s as f32 as f64 * (1.0 / 255.0)) as f32;
    let vv = v as f32 as f64;
    let p = round_clip8(vv * (1.0 - fs as f64));
    let q = round_clip8(vv * (1.0 - (fs * f) as f64));
    let t = round_clip8(vv * (1.0 - fs as f64 * (1.0 - f as f64)));
    let v = v as i32;
    // switch (i % 6) with i in 0..=6: 0 [v t p], 1 [q v p], 2 [p v t], 3 [p q v], 4 [t p v],
    // 5 [v p q].
    let i = if i == 6 { 0 } else { i };
    let nr = if i == 0 || i == 5 {
        v
    } else if i == 1 {
        q
    } else if i == 4 {
        t
    } else {
        p
    };
    let ng = if i == 0 {
        t
    } else if i == 1 || i == 2 {
        v
    } else if i == 3 {
        q
    } else {
        p
    };
    let nb = if i <= 1 {
        p
    } else if i == 2 {
        t
    } else if i <= 4 {
        v
    } else {
        q
    };
    let grey = s == 0;
    (
        (if grey { v } else { nr }) as u8,
        (if grey { v } else { ng }) as u8,
        (if grey { v } else { nb }) as u8,
    )
}

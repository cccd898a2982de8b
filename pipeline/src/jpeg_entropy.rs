//! A fast check of a sequential Huffman JPEG's entropy-coded data, for converters that pass
//! JPEG bytes through untouched but must not store a truncated or corrupt image.
//!
//! It parses the markers the way libjpeg-turbo does and Huffman-decodes every symbol of every
//! block, skipping the coefficient values (no dequantisation, IDCT or colour conversion), so it
//! costs a fraction of even a 1/8-scale libjpeg-turbo decode. It is conservative: it answers
//! [`Verdict::Clean`] only for files libjpeg-turbo decodes without an error or a warning (tested
//! against it on clean and on corrupted files), and [`Verdict::Unsure`] for anything else,
//! including every file it does not handle (progressive, arithmetic-coded, 12-bit, several
//! scans, Huffman tables left to their defaults, ...). The caller then asks libjpeg-turbo, so
//! the verdict is always libjpeg-turbo's.

/// What [`check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// libjpeg-turbo decodes this file without errors or warnings.
    Clean,
    /// Not established: decode with libjpeg-turbo for the verdict.
    Unsure,
}

/// Bits looked up at once; longer codes take the canonical (slow) path.
const LOOKAHEAD: u32 = 10;
/// Zero bytes after the data: an MCU (at most 10 blocks of at most 64 symbols of at most 27
/// bits) is decoded before the next overrun check.
const PAD: usize = 4096;

/// One Huffman table, built like libjpeg-turbo's `jpeg_make_d_derived_tbl`.
struct Table {
    /// Indexed by the next `LOOKAHEAD` bits: bits 0..6 = code length plus the value bits that
    /// follow it, bits 8..13 = coefficients advanced (AC; 0 = end of block). 0 = slow path.
    fast: Box<[u16; 1 << LOOKAHEAD]>,
    /// Largest code of each length (-1: none), and the offset from a code to its symbol.
    maxcode: [i32; 17],
    valoffset: [i32; 17],
    values: Vec<u8>,
}

impl Table {
    /// From a DHT segment's 16 counts and the symbols; `None` where libjpeg-turbo fails
    /// (`JERR_BAD_HUFF_TABLE`), and for value sizes no 8-bit baseline JPEG has (DC above 11,
    /// AC above 10 bits), so that two symbols take at most 54 bits.
    fn new(counts: &[u8; 16], values: &[u8], dc: bool) -> Option<Self> {
        let too_big = |&v: &u8| if dc { v > 11 } else { v & 15 > 10 };
        if values.iter().any(too_big) {
            return None;
        }
        let mut maxcode = [-1i32; 17];
        let mut valoffset = [0i32; 17];
        let mut fast = Box::new([0u16; 1 << LOOKAHEAD]);
        let (mut code, mut p) = (0i32, 0usize);
        for len in 1..=16u32 {
            let n = counts[len as usize - 1] as usize;
            valoffset[len as usize] = p as i32 - code;
            // libjpeg-turbo: the codes of each length must leave room (no all-ones code).
            if code + n as i32 >= 1 << len {
                return None;
            }
            for &sym in &values[p..p + n] {
                if len <= LOOKAHEAD {
                    let entry = entry(len, sym, dc);
                    let shift = LOOKAHEAD - len;
                    let first = (code as usize) << shift;
                    fast[first..first + (1 << shift)].fill(entry);
                }
                code += 1;
            }
            p += n;
            if n > 0 {
                maxcode[len as usize] = code - 1;
            }
            code <<= 1;
        }
        Some(Self {
            fast,
            maxcode,
            valoffset,
            values: values.to_vec(),
        })
    }

    /// Code length and symbol of the code at the top of `bits`, for codes longer than the
    /// look-up; `None` for a bad code (libjpeg-turbo warns `JWRN_HUFF_BAD_CODE`).
    #[cold]
    fn slow(&self, bits: u64) -> Option<(u32, u8)> {
        (1..=16u32).find_map(|len| {
            let code = (bits >> (64 - len)) as i32;
            (code <= self.maxcode[len as usize]).then(|| {
                (
                    len,
                    self.values[(code + self.valoffset[len as usize]) as usize],
                )
            })
        })
    }
}

/// A look-up entry (see [`Table::fast`]).
fn entry(len: u32, sym: u8, dc: bool) -> u16 {
    let (run, size) = (sym as u32 >> 4, sym as u32 & 15);
    let (bits, advance) = match (dc, size) {
        (true, _) => (len + sym as u32, 1),
        (false, 0) if run == 15 => (len, 16),
        (false, 0) => (len, 0), // end of block (libjpeg-turbo treats runs 1..14 so too)
        (false, _) => (len + size, run + 1),
    };
    (bits | advance << 8) as u16
}

/// Reads bits most-significant first from de-stuffed, zero-padded data.
struct Bits<'a> {
    data: &'a [u8],
    buf: u64,
    count: u32,
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            buf: 0,
            count: 0,
            pos: 0,
        }
    }

    /// Tops the buffer up to at least 56 bits, enough for two symbols (the bits past `count`
    /// are the stream's next bits too, so reloading them is harmless).
    #[inline(always)]
    fn refill(&mut self) {
        let word: [u8; 8] = self.data[self.pos..self.pos + 8].try_into().unwrap();
        self.buf |= u64::from_be_bytes(word) >> self.count;
        let bytes = (63 - self.count) >> 3;
        self.pos += bytes as usize;
        self.count += bytes * 8;
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buf <<= n;
        self.count -= n;
    }

    /// Bits taken from the stream so far.
    fn used(&self) -> usize {
        self.pos * 8 - self.count as usize
    }

    /// Decodes one symbol and skips its value bits; returns the entry (see [`Table::fast`]).
    /// Needs 27 bits in the buffer.
    #[inline(always)]
    fn symbol(&mut self, table: &Table, dc: bool) -> Option<u16> {
        let mut e = table.fast[(self.buf >> (64 - LOOKAHEAD)) as usize];
        if e == 0 {
            let (len, sym) = table.slow(self.buf)?;
            e = entry(len, sym, dc);
        }
        self.consume(e as u32 & 63);
        Some(e)
    }

    /// One AC symbol at coefficient `k`; whether the block goes on.
    #[inline(always)]
    fn ac_symbol(&mut self, ac: &Table, k: &mut u32) -> Option<bool> {
        let advance = (self.symbol(ac, false)? >> 8) as u32;
        if advance == 0 {
            *k = 64; // end of block
            return Some(false);
        }
        *k += advance;
        Some(*k < 64)
    }

    /// One block: the DC difference and the AC run/size symbols up to the end of the block.
    /// `None` for a bad code or a run past the 64th coefficient (which libjpeg-turbo ignores).
    #[inline(always)]
    fn block(&mut self, dc: &Table, ac: &Table) -> Option<()> {
        self.refill();
        self.symbol(dc, true)?;
        let mut k = 1u32;
        // One refill per two symbols (at most 27 bits each).
        loop {
            if !self.ac_symbol(ac, &mut k)? {
                break;
            }
            self.refill();
            if !self.ac_symbol(ac, &mut k)? {
                break;
            }
        }
        (k == 64).then_some(())
    }
}

struct Component {
    id: u8,
    h: u32,
    v: u32,
    quant: u8,
}

/// Checks `jpeg`; `scratch` is reused between calls (the de-stuffed entropy-coded data).
pub fn check(jpeg: &[u8], scratch: &mut Vec<u8>) -> Verdict {
    match check_inner(jpeg, scratch) {
        Some(()) => Verdict::Clean,
        None => Verdict::Unsure,
    }
}

fn check_inner(b: &[u8], scratch: &mut Vec<u8>) -> Option<()> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut dc: [Option<Table>; 4] = Default::default();
    let mut ac: [Option<Table>; 4] = Default::default();
    let mut quant = [false; 4];
    let mut frame: Option<(u32, u32, Vec<Component>)> = None;
    let mut restart_interval = 0u32;
    let (mut jfif, mut adobe_transform) = (false, None);
    let mut icc: Vec<(u8, u8, usize)> = Vec::new();
    let mut pos = 2;
    loop {
        // A marker: 0xFF, any fill 0xFFs, a code (other bytes: libjpeg-turbo warns).
        if *b.get(pos)? != 0xFF {
            return None;
        }
        while *b.get(pos)? == 0xFF {
            pos += 1;
        }
        let code = b[pos];
        pos += 1;
        let len = u16::from_be_bytes([*b.get(pos)?, *b.get(pos + 1)?]) as usize;
        let seg = b.get(pos + 2..pos + len.checked_sub(2)? + 2)?;
        pos += len;
        match code {
            0xC4 => {
                let mut s = seg;
                while !s.is_empty() {
                    let (class, slot) = (s[0] >> 4, (s[0] & 15) as usize);
                    let counts: &[u8; 16] = s.get(1..17)?.try_into().ok()?;
                    let n: usize = counts.iter().map(|&c| c as usize).sum();
                    let values = s.get(17..17 + n)?;
                    if n > 256 || slot > 3 || class > 1 {
                        return None;
                    }
                    let table = Some(Table::new(counts, values, class == 0)?);
                    *if class == 0 {
                        &mut dc[slot]
                    } else {
                        &mut ac[slot]
                    } = table;
                    s = &s[17 + n..];
                }
            }
            0xDB => {
                let mut s = seg;
                while !s.is_empty() {
                    let (precision, slot) = (s[0] >> 4, (s[0] & 15) as usize);
                    let size = match precision {
                        0 => 64,
                        1 => 128,
                        _ => return None,
                    };
                    if slot > 3 || s.len() < 1 + size {
                        return None;
                    }
                    quant[slot] = true;
                    s = &s[1 + size..];
                }
            }
            0xDD => {
                restart_interval = u16::from_be_bytes(seg.try_into().ok()?) as u32;
            }
            0xC0 | 0xC1 if frame.is_none() => {
                let (&precision, rest) = seg.split_first()?;
                let h = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as u32;
                let w = u16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]) as u32;
                let n = *rest.get(4)? as usize;
                if precision != 8
                    || w == 0
                    || h == 0
                    || w > 65500
                    || h > 65500
                    || !(n == 1 || n == 3)
                    || rest.len() != 5 + 3 * n
                {
                    return None;
                }
                let comps: Vec<Component> = rest[5..]
                    .chunks_exact(3)
                    .map(|c| Component {
                        id: c[0],
                        h: (c[1] >> 4) as u32,
                        v: (c[1] & 15) as u32,
                        quant: c[2],
                    })
                    .collect();
                frame = Some((w, h, comps));
            }
            0xE0 if seg.len() >= 14 && seg.starts_with(b"JFIF\0") => {
                if seg[5] != 1 {
                    return None; // JWRN_JFIF_MAJOR
                }
                jfif = true;
            }
            0xEE if seg.len() >= 12 && seg.starts_with(b"Adobe") => {
                adobe_transform = Some(seg[11]);
            }
            0xE2 if seg.len() >= 14 && seg.starts_with(b"ICC_PROFILE\0") => {
                icc.push((seg[12], seg[13], seg.len() - 14));
            }
            0xE0..=0xEF | 0xFE => {}
            0xDA => {
                let (w, h, comps) = frame.as_ref()?;
                if !icc_ok(&icc)
                    || (comps.len() == 3 && !jfif && adobe_transform.is_some_and(|t| t > 1))
                {
                    return None;
                }
                let (blocks, mcus) = scan_layout(seg, (*w, *h), comps, &dc, &ac, &quant)?;
                let end = entropy(b, pos, &blocks, mcus, restart_interval, scratch)?;
                // The scan must end at the end-of-image marker.
                return (b.get(end..end + 2)? == [0xFF, 0xD9]).then_some(());
            }
            _ => return None,
        }
    }
}

/// libjpeg-turbo's `jpeg_read_icc_profile` checks (it warns `JWRN_BOGUS_ICC` otherwise).
fn icc_ok(markers: &[(u8, u8, usize)]) -> bool {
    let Some(&(_, total, _)) = markers.first() else {
        return true;
    };
    let mut seen = [false; 256];
    for &(seq, n, _) in markers {
        if n != total || seq == 0 || seq > total || seen[seq as usize] {
            return false;
        }
        seen[seq as usize] = true;
    }
    (1..=total as usize).all(|s| seen[s]) && markers.iter().any(|m| m.2 > 0)
}

/// The (DC, AC) tables of each block of an MCU, and the number of MCUs.
type Layout<'t> = (Vec<(&'t Table, &'t Table)>, u64);

/// The scan's [`Layout`] from the SOS header; `None` unless the scan is the one baseline scan
/// of all components, in frame order, with everything defined.
fn scan_layout<'t>(
    seg: &[u8],
    (w, h): (u32, u32),
    comps: &[Component],
    dc: &'t [Option<Table>; 4],
    ac: &'t [Option<Table>; 4],
    quant: &[bool; 4],
) -> Option<Layout<'t>> {
    let n = *seg.first()? as usize;
    if n != comps.len() || seg.len() != 4 + 2 * n || seg[1 + 2 * n..] != [0, 63, 0] {
        return None;
    }
    let (hmax, vmax) = (
        comps.iter().map(|c| c.h).max()?,
        comps.iter().map(|c| c.v).max()?,
    );
    // Colour: the chroma subsamplings TurboJPEG names (4:4:4, 4:2:2, 4:2:0, 4:4:0, 4:1:1,
    // 4:4:1); others are left to libjpeg-turbo.
    if n == 3 {
        let luma = (comps[0].h, comps[0].v);
        let named = [(1, 1), (2, 1), (2, 2), (1, 2), (4, 1), (1, 4)].contains(&luma);
        if !named || comps[1..].iter().any(|c| (c.h, c.v) != (1, 1)) {
            return None;
        }
    }
    let mut blocks = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        let (id, sel) = (seg[1 + 2 * i], seg[2 + 2 * i]);
        let unique = comps.iter().filter(|o| o.id == c.id).count() == 1;
        if id != c.id
            || !unique
            || !(1..=4).contains(&c.h)
            || !(1..=4).contains(&c.v)
            || hmax % c.h != 0
            || vmax % c.v != 0
            || !*quant.get(c.quant as usize)?
        {
            return None;
        }
        let tables = (
            dc.get((sel >> 4) as usize)?.as_ref()?,
            ac.get((sel & 15) as usize)?.as_ref()?,
        );
        // A one-component scan is not interleaved: one block per MCU.
        let per_mcu = if n == 1 { 1 } else { c.h * c.v };
        blocks.extend(std::iter::repeat_n(tables, per_mcu as usize));
    }
    let mcus = if n == 1 {
        let c = &comps[0];
        let (cw, ch) = ((w * c.h).div_ceil(hmax), (h * c.v).div_ceil(vmax));
        cw.div_ceil(8) as u64 * ch.div_ceil(8) as u64
    } else {
        w.div_ceil(8 * hmax) as u64 * h.div_ceil(8 * vmax) as u64
    };
    (blocks.len() <= 10).then_some((blocks, mcus))
}

/// Decodes the scan's entropy-coded data starting at `pos`; returns where the marker after it
/// starts. Every restart interval must use its bytes exactly (libjpeg-turbo warns about extra
/// bytes and about missing bits) and end in the right restart marker.
fn entropy(
    b: &[u8],
    mut pos: usize,
    blocks: &[(&Table, &Table)],
    mcus: u64,
    restart_interval: u32,
    scratch: &mut Vec<u8>,
) -> Option<usize> {
    let interval = if restart_interval == 0 {
        mcus
    } else {
        restart_interval as u64
    };
    let mut done = 0u64;
    let mut restart = 0u8;
    loop {
        let (data_end, marker) = destuff(b, pos, scratch)?;
        let len = scratch.len();
        scratch.resize(len + PAD, 0);
        let mut bits = Bits::new(scratch);
        let todo = interval.min(mcus - done);
        for _ in 0..todo {
            if bits.used() > len * 8 {
                return None;
            }
            for &(dc, ac) in blocks {
                bits.block(dc, ac)?;
            }
        }
        if bits.used().div_ceil(8) != len {
            return None;
        }
        done += todo;
        if done == mcus {
            return Some(data_end);
        }
        if marker != 0xD0 + restart {
            return None;
        }
        restart = (restart + 1) & 7;
        pos = data_end + 2;
    }
}

/// Copies the entropy-coded bytes from `start` to the next marker into `out`, un-stuffing
/// `FF 00`; returns the marker's position and code. `None` when the file ends first or at
/// fill bytes (`FF FF`) inside the data.
fn destuff(b: &[u8], start: usize, out: &mut Vec<u8>) -> Option<(usize, u8)> {
    out.clear();
    let mut p = start;
    loop {
        let ff = p + memchr::memchr(0xFF, b.get(p..)?)?;
        out.extend_from_slice(&b[p..=ff]);
        match *b.get(ff + 1)? {
            0x00 => p = ff + 2,
            0xFF => return None,
            code => {
                out.pop();
                return Some((ff, code));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turbojpeg::raw;
    use turbojpeg::raw::{TJPARAM_TJPARAM_SUBSAMP, TJSAMP_TJSAMP_420};

    /// A JPEG from libjpeg-turbo with the given settings (raw API: restart markers too).
    fn encode(w: usize, h: usize, seed: u64, opts: &[(raw::TJPARAM, i32)]) -> Vec<u8> {
        let pixels = encode_pixels(w, h, seed);
        unsafe {
            let handle = raw::tj3Init(raw::TJINIT_TJINIT_COMPRESS as i32);
            assert!(!handle.is_null());
            let subsamp = (TJPARAM_TJPARAM_SUBSAMP, TJSAMP_TJSAMP_420);
            for &(param, value) in std::iter::once(&subsamp).chain(opts) {
                assert_eq!(raw::tj3Set(handle, param as i32, value), 0);
            }
            let mut out: *mut u8 = std::ptr::null_mut();
            let mut size: u64 = 0;
            let rc = raw::tj3Compress8(
                handle,
                pixels.as_ptr(),
                w as i32,
                0,
                h as i32,
                raw::TJPF_TJPF_RGB,
                &mut out,
                &mut size,
            );
            assert_eq!(
                rc,
                0,
                "{opts:?}: {:?}",
                std::ffi::CStr::from_ptr(raw::tj3GetErrorStr(handle))
            );
            let jpeg = std::slice::from_raw_parts(out, size as usize).to_vec();
            raw::tj3Free(out as *mut _);
            raw::tj3Destroy(handle);
            jpeg
        }
    }

    /// Smooth gradients plus noise: real-looking coefficient statistics.
    fn encode_pixels(w: usize, h: usize, seed: u64) -> Vec<u8> {
        let mut s = seed | 1;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        (0..w * h * 3)
            .map(|i| {
                let (x, y) = ((i / 3) % w, (i / 3) / w);
                let base = (x * 255 / w.max(1) + y * 128 / h.max(1) + (i % 3) * 60) as u64;
                ((base + next() % 48) & 255) as u8
            })
            .collect()
    }

    /// libjpeg-turbo's verdict (the converter's 1/8-scale decode, warnings are errors).
    fn libjpeg_ok(jpeg: &[u8]) -> bool {
        crate::decode::Decoder::new()
            .unwrap()
            .decode_at_least(jpeg, 1, 1)
            .is_ok()
    }

    fn corpus() -> Vec<(String, Vec<u8>)> {
        use raw::*;
        let (q, ss, opt, rb, rr, prog, arith) = (
            TJPARAM_TJPARAM_QUALITY,
            TJPARAM_TJPARAM_SUBSAMP,
            TJPARAM_TJPARAM_OPTIMIZE,
            TJPARAM_TJPARAM_RESTARTBLOCKS,
            TJPARAM_TJPARAM_RESTARTROWS,
            TJPARAM_TJPARAM_PROGRESSIVE,
            TJPARAM_TJPARAM_ARITHMETIC,
        );
        let mut out = Vec::new();
        let settings: Vec<(&str, Vec<(TJPARAM, i32)>)> = vec![
            ("q95 420", vec![(q, 95), (ss, TJSAMP_TJSAMP_420)]),
            ("q75 422", vec![(q, 75), (ss, TJSAMP_TJSAMP_422)]),
            ("q90 444", vec![(q, 90), (ss, TJSAMP_TJSAMP_444)]),
            ("q85 440", vec![(q, 85), (ss, TJSAMP_TJSAMP_440)]),
            ("q80 411", vec![(q, 80), (ss, TJSAMP_TJSAMP_411)]),
            ("q100 gray", vec![(q, 100), (ss, TJSAMP_TJSAMP_GRAY)]),
            ("q92 420 optimized", vec![(q, 92), (opt, 1)]),
            ("q95 420 restart 7 blocks", vec![(q, 95), (rb, 7)]),
            (
                "q60 444 restart 1 row",
                vec![(q, 60), (ss, TJSAMP_TJSAMP_444), (rr, 1)],
            ),
            ("q97 progressive", vec![(q, 97), (prog, 1)]),
            ("q90 arithmetic", vec![(q, 90), (arith, 1)]),
        ];
        // Another encoder (the image crate's), with its own tables and markers.
        for (j, &(w, h)) in [(31, 17), (400, 350)].iter().enumerate() {
            let rgb = encode_pixels(w, h, 99 + j as u64);
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
                .encode(&rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)
                .unwrap();
            out.push((format!("image crate q90 {w}x{h}"), jpeg));
        }
        for (i, (name, opts)) in settings.iter().enumerate() {
            for (j, &(w, h)) in [(1, 1), (17, 9), (64, 48), (203, 151), (400, 350)]
                .iter()
                .enumerate()
            {
                let jpeg = encode(w, h, (i * 10 + j) as u64 + 1, opts);
                out.push((format!("{name} {w}x{h}"), jpeg));
            }
        }
        out
    }

    #[test]
    fn clean_files_are_clean_unless_unsupported() {
        let mut scratch = Vec::new();
        for (name, jpeg) in corpus() {
            assert!(libjpeg_ok(&jpeg), "{name}");
            let expect = if name.contains("progressive") || name.contains("arithmetic") {
                Verdict::Unsure
            } else {
                Verdict::Clean
            };
            assert_eq!(check(&jpeg, &mut scratch), expect, "{name}");
        }
    }

    /// The property the converter relies on: `Clean` implies that libjpeg-turbo decodes the
    /// file without a warning. Checked on thousands of corrupted variants; most are also
    /// caught here (not `Clean`), so the fast path does real work.
    #[test]
    fn clean_implies_libjpeg_accepts_on_corrupted_files() {
        let mut scratch = Vec::new();
        // More with JPEG_CHECK_ROUNDS=N (corruptions per file; default 60).
        let rounds: usize = std::env::var("JPEG_CHECK_ROUNDS").map_or(60, |r| r.parse().unwrap());
        let (mut tried, mut clean, mut caught_by_libjpeg) = (0, 0, 0);
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: usize| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % n as u64) as usize
        };
        for (name, jpeg) in corpus() {
            if jpeg.len() < 400 {
                continue;
            }
            for round in 0..rounds {
                let mut bad = jpeg.clone();
                let at = next(bad.len());
                match round % 6 {
                    0 => bad[at] ^= 1 << next(8),
                    1 => bad.truncate(at.max(2)),
                    2 => bad[at] = next(256) as u8,
                    3 => {
                        bad.remove(at);
                    }
                    4 => bad.insert(at, next(256) as u8),
                    _ => {
                        // Bytes before the end-of-image marker, or a flip near the end.
                        let end = bad.len() - 2;
                        if round % 12 == 5 {
                            bad.insert(end, next(256) as u8);
                        } else {
                            bad[end - 1 - next(8)] ^= 1 << next(8);
                        }
                    }
                }
                tried += 1;
                let ok = libjpeg_ok(&bad);
                if check(&bad, &mut scratch) == Verdict::Clean {
                    clean += 1;
                    assert!(
                        ok,
                        "{name}: corruption {round} at {at}: Clean, libjpeg-turbo fails"
                    );
                }
                if !ok {
                    caught_by_libjpeg += 1;
                }
            }
        }
        eprintln!(
            "{tried} corrupted files: {clean} Clean here; libjpeg-turbo rejects {caught_by_libjpeg}"
        );
        assert!(tried > 2000, "{tried}");
        assert!(clean > 0, "some corruptions keep the stream valid");
        assert!(
            caught_by_libjpeg > tried / 2,
            "{caught_by_libjpeg} of {tried}"
        );
    }
}

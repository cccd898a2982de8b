//! Deterministic mutations: input `i` of a parser is a function of (run seed, parser, i) and
//! the parser's seed files only, so any input can be regenerated from its index.

/// SplitMix64: small, fast, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// FNV-1a of a name, to derive per-parser streams.
pub fn name_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Integers that break size arithmetic.
const INTERESTING: [u64; 14] = [
    0,
    1,
    0x7F,
    0x80,
    0xFF,
    0x7FFF,
    0xFFFF,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    0x1_0000_0000,
    0x7FFF_FFFF_FFFF_FFFF,
    u64::MAX,
    65000,
];

/// Input `index` of a parser: the seed file itself for the first `seeds.len()` indices,
/// otherwise one to eight stacked mutations of a random seed (splices take a second one).
pub fn input(
    run_seed: u64,
    parser: &str,
    index: u64,
    seeds: &[Vec<u8>],
    dict: &[&[u8]],
) -> Vec<u8> {
    if (index as usize) < seeds.len() {
        return seeds[index as usize].clone();
    }
    let mut rng =
        Rng::new(run_seed ^ name_hash(parser) ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
    let mut data = seeds[rng.below(seeds.len())].clone();
    let most = if rng.chance(4) { 16 } else { 4 };
    let rounds = 1 + rng.below(most);
    for _ in 0..rounds {
        mutate(&mut rng, &mut data, seeds, dict);
    }
    data
}

fn mutate(rng: &mut Rng, d: &mut Vec<u8>, seeds: &[Vec<u8>], dict: &[&[u8]]) {
    let len = d.len();
    let pos = |rng: &mut Rng| if len == 0 { 0 } else { rng.below(len + 1) };
    match rng.below(13) {
        // Bit flips, a few bytes apart.
        0 | 1 if len > 0 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(len);
                d[i] ^= 1 << rng.below(8);
            }
        }
        // A random or boundary byte.
        2 if len > 0 => {
            let i = rng.below(len);
            d[i] = match rng.below(4) {
                0 => 0,
                1 => 0xFF,
                2 => 0x80,
                _ => rng.next() as u8,
            };
        }
        // Truncation.
        3 if len > 0 => d.truncate(rng.below(len)),
        // A boundary integer, 1/2/4/8 bytes, either endianness (length and size fields).
        4 | 5 if len > 0 => {
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let v = if rng.chance(4) {
                v.wrapping_add(rng.below(16) as u64).wrapping_sub(8)
            } else {
                v
            };
            let w = [1, 2, 4, 8][rng.below(4)];
            let bytes = if rng.chance(2) {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            let src = if bytes[0] == 0 && w < 8 {
                &bytes[8 - w..]
            } else {
                &bytes[..w]
            };
            let i = rng.below(len);
            let n = w.min(len - i);
            d[i..i + n].copy_from_slice(&src[..n]);
        }
        // Delete a range.
        6 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(64.min(len - a))).min(len);
            d.drain(a..b);
        }
        // Duplicate a range elsewhere.
        7 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(256.min(len - a))).min(len);
            let chunk = d[a..b].to_vec();
            let at = pos(rng);
            d.splice(at..at, chunk);
        }
        // Splice: a prefix of this input and a suffix of another seed.
        8 => {
            let other = &seeds[rng.below(seeds.len())];
            let cut = pos(rng);
            let from = if other.is_empty() {
                0
            } else {
                rng.below(other.len())
            };
            d.truncate(cut);
            d.extend_from_slice(&other[from..]);
        }
        // A dictionary token (format keywords, markers, opcodes).
        9 | 10 if !dict.is_empty() => {
            let t = dict[rng.below(dict.len())];
            let at = pos(rng);
            if rng.chance(2) && at + t.len() <= len {
                d[at..at + t.len()].copy_from_slice(t);
            } else {
                d.splice(at..at, t.iter().copied());
            }
        }
        // Deep nesting / repetition: a token or a short range repeated many times.
        11 => {
            let unit: Vec<u8> = if !dict.is_empty() && rng.chance(2) {
                dict[rng.below(dict.len())].to_vec()
            } else if len > 0 {
                let a = rng.below(len);
                d[a..(a + 1 + rng.below(8)).min(len)].to_vec()
            } else {
                vec![b'[']
            };
            let times = [16, 256, 4096, 100_000][rng.below(4)];
            let at = pos(rng);
            let rep: Vec<u8> = unit
                .iter()
                .copied()
                .cycle()
                .take(unit.len() * times)
                .collect();
            d.splice(at..at, rep);
        }
        // Random bytes inserted.
        _ => {
            let at = pos(rng);
            let n = 1 + rng.below(32);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            d.splice(at..at, bytes);
        }
    }
}

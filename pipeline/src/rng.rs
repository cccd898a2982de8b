//! Random number generators of the pipeline.
//!
//! - [`SplitMix64`] seeds the others and derives independent streams from (seed, epoch, index),
//!   so that every sample's augmentation depends only on its position, never on which worker
//!   happens to process it.
//! - [`Xoshiro`] (xoshiro256++) draws the augmentation parameters.
//! - [`PyRandom`] is CPython's `random.Random` (MT19937, same seeding, same `random()`,
//!   `uniform`, `randint` and `shuffle`): the iBOT mask generator and collate use it, so they
//!   reproduce the reference code bit for bit for a given seed.

/// The operations the samplers need.
pub trait Rng {
    /// Uniform in [0, 1).
    fn random(&mut self) -> f64;
    /// Uniform integer in `[0, n)`, `n > 0`.
    fn below(&mut self, n: u64) -> u64;

    /// `a + (b - a) * random()`, as Python's `random.uniform`.
    fn uniform(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.random()
    }
    /// Uniform integer in `[a, b]` (both inclusive), as Python's `random.randint`.
    fn randint(&mut self, a: i64, b: i64) -> i64 {
        a + self.below((b - a + 1) as u64) as i64
    }
    /// Fisher-Yates, as Python's `random.shuffle`.
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A 64-bit key for stream (`seed`, `parts`...), mixing each part through SplitMix64.
pub fn stream_key(seed: u64, parts: &[u64]) -> u64 {
    let mut s = SplitMix64(seed);
    let mut key = s.next_u64();
    for &p in parts {
        s.0 ^= p.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ key;
        key = s.next_u64();
    }
    key
}

/// xoshiro256++.
#[derive(Debug, Clone)]
pub struct Xoshiro([u64; 4]);

impl Xoshiro {
    pub fn new(seed: u64) -> Self {
        let mut s = SplitMix64(seed);
        Self([s.next_u64(), s.next_u64(), s.next_u64(), s.next_u64()])
    }

    /// The generator of stream (`seed`, `parts`...).
    pub fn stream(seed: u64, parts: &[u64]) -> Self {
        Self::new(stream_key(seed, parts))
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }
}

impl Rng for Xoshiro {
    fn random(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    fn below(&mut self, n: u64) -> u64 {
        // Lemire's multiply-shift with rejection: unbiased.
        let mut m = (self.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let t = n.wrapping_neg() % n;
            while (m as u64) < t {
                m = (self.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as u64
    }
}

/// CPython's `random.Random` (MT19937).
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; 624],
    index: usize,
}

impl PyRandom {
    /// `random.seed(seed)` for a non-negative integer seed.
    pub fn new(seed: u64) -> Self {
        let mut r = Self {
            mt: [0; 624],
            index: 624,
        };
        r.init_genrand(19_650_218);
        // init_by_array with the seed's 32-bit words, least significant first.
        let key: Vec<u32> = if seed >> 32 == 0 {
            vec![seed as u32]
        } else {
            vec![seed as u32, (seed >> 32) as u32]
        };
        let (mut i, mut j) = (1usize, 0usize);
        let n = 624;
        for _ in 0..n.max(key.len()) {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= n {
                r.mt[0] = r.mt[n - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..n - 1 {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= n {
                r.mt[0] = r.mt[n - 1];
                i = 1;
            }
        }
        r.mt[0] = 0x8000_0000;
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..624 {
            let prev = self.mt[i - 1] ^ (self.mt[i - 1] >> 30);
            self.mt[i] = 1_812_433_253u32.wrapping_mul(prev).wrapping_add(i as u32);
        }
        self.index = 624;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for k in 0..624 {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % 624] & 0x7FFF_FFFF);
                let mut v = self.mt[(k + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_B0DF;
                }
                self.mt[k] = v;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9D2C_5680;
        y ^= (y << 15) & 0xEFC6_0000;
        y ^ (y >> 18)
    }

    /// `random.getrandbits(k)` for `k <= 64`.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        match k {
            0 => 0,
            1..=32 => (self.next_u32() >> (32 - k)) as u64,
            _ => {
                let lo = self.next_u32() as u64;
                let hi = (self.next_u32() >> (64 - k)) as u64;
                lo | (hi << 32)
            }
        }
    }
}

impl Rng for PyRandom {
    fn random(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }
    /// `_randbelow_with_getrandbits`.
    fn below(&mut self, n: u64) -> u64 {
        let k = 64 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyrandom_matches_cpython() {
        // python3 -c "import random; r=random.Random(0); print(r.random(), r.randint(0,10), r.uniform(4,128))"
        let mut r = PyRandom::new(0);
        assert_eq!(r.random(), 0.8444218515250481);
        assert_eq!(r.randint(0, 10), 6);
    }

    #[test]
    fn xoshiro_below_is_in_range_and_streams_differ() {
        let mut a = Xoshiro::stream(1, &[0, 5]);
        let mut b = Xoshiro::stream(1, &[0, 6]);
        assert_ne!(a.next_u64(), b.next_u64());
        for n in [1u64, 2, 3, 10, 1000] {
            assert!((0..1000).all(|_| a.below(n) < n));
        }
    }
}

//! Which dataset index each rank reads at each position: per-epoch shuffling (PyTorch
//! `DistributedSampler` semantics) and DINOv2's infinite sharded stream. Both are pure
//! functions of (seed, epoch or pass, position), so any position can be resumed directly.

use crate::rng::{Rng, Xoshiro};
use anyhow::{Result, bail};

/// How samples are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    /// One pass per epoch: shuffled (or not) with seed (seed, epoch), split over ranks like
    /// `DistributedSampler` (rank r takes every world-th index from r; with `drop_last`, the
    /// tail that does not divide evenly is dropped, else indices wrap around to pad).
    Epoch { shuffle: bool, drop_last: bool },
    /// DINOv2's `SHARDED_INFINITE`: an endless concatenation of permutations (one per pass,
    /// seeded (seed, pass)); rank r takes every world-th element from r.
    Infinite,
}

/// A sampler bound to a dataset size and a rank.
#[derive(Debug, Clone)]
pub struct Sampler {
    pub kind: SamplerKind,
    pub len: usize,
    pub seed: u64,
    pub rank: usize,
    pub world: usize,
    cache: Option<(u64, Vec<usize>)>,
}

fn permutation(len: usize, seed: u64, pass: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..len).collect();
    Xoshiro::stream(seed, &[0x5A4D_504C, pass]).shuffle(&mut v);
    v
}

impl Sampler {
    pub fn new(
        kind: SamplerKind,
        len: usize,
        seed: u64,
        rank: usize,
        world: usize,
    ) -> Result<Self> {
        if world == 0 || rank >= world {
            bail!("rank {rank} is not in a world of {world}");
        }
        if len == 0 {
            bail!("the dataset is empty");
        }
        Ok(Self {
            kind,
            len,
            seed,
            rank,
            world,
            cache: None,
        })
    }

    /// Samples this rank sees per epoch (`None` for the infinite sampler).
    pub fn per_rank(&self) -> Option<usize> {
        match self.kind {
            SamplerKind::Epoch {
                drop_last: true, ..
            } => Some(self.len / self.world),
            SamplerKind::Epoch {
                drop_last: false, ..
            } => Some(self.len.div_ceil(self.world)),
            SamplerKind::Infinite => None,
        }
    }

    fn perm(&mut self, pass: u64, shuffle: bool) -> &[usize] {
        if self.cache.as_ref().map(|c| c.0) != Some(pass) {
            let v = if shuffle {
                permutation(self.len, self.seed, pass)
            } else {
                (0..self.len).collect()
            };
            self.cache = Some((pass, v));
        }
        &self.cache.as_ref().unwrap().1
    }

    /// This rank's `position` in the order over all ranks (`position * world + rank`): the
    /// position a single process would give the same sample.
    pub fn global_position(&self, position: u64) -> u64 {
        position * self.world as u64 + self.rank as u64
    }

    /// The dataset index at this rank's `position` of `epoch` (ignored by the infinite
    /// sampler, whose positions run on across passes).
    pub fn index(&mut self, epoch: u64, position: u64) -> usize {
        let (rank, world, len) = (self.rank as u64, self.world as u64, self.len as u64);
        match self.kind {
            SamplerKind::Epoch { shuffle, .. } => {
                let global = (position * world + rank) % len; // wraps to pad when !drop_last
                self.perm(epoch, shuffle)[global as usize]
            }
            SamplerKind::Infinite => {
                let global = position * world + rank;
                self.perm(global / len, true)[(global % len) as usize]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_partition_an_epoch() {
        let mut seen = Vec::new();
        for rank in 0..3 {
            let mut s = Sampler::new(
                SamplerKind::Epoch {
                    shuffle: true,
                    drop_last: true,
                },
                10,
                7,
                rank,
                3,
            )
            .unwrap();
            assert_eq!(s.per_rank(), Some(3));
            seen.extend((0..3).map(|p| s.index(2, p)));
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9, "9 distinct indices, one dropped");
        let mut a = Sampler::new(
            SamplerKind::Epoch {
                shuffle: true,
                drop_last: true,
            },
            10,
            7,
            0,
            1,
        )
        .unwrap();
        let e1: Vec<_> = (0..10).map(|p| a.index(1, p)).collect();
        let e2: Vec<_> = (0..10).map(|p| a.index(2, p)).collect();
        assert_ne!(e1, e2, "epochs are shuffled differently");
    }

    #[test]
    fn infinite_stream_covers_each_pass() {
        let mut s = Sampler::new(SamplerKind::Infinite, 5, 1, 0, 1).unwrap();
        for pass in 0..3 {
            let mut v: Vec<_> = (0..5).map(|p| s.index(0, pass * 5 + p)).collect();
            v.sort();
            assert_eq!(v, vec![0, 1, 2, 3, 4]);
        }
    }
}

//! iBOT block masking: the reference `MaskingGenerator` (BEiT-style), step for step, so that
//! with [`crate::rng::PyRandom`] and the same seed it returns the reference's masks exactly.

use crate::rng::Rng;

/// Generates random rectangular blocks of masked patches on an `height` x `width` grid.
#[derive(Debug, Clone)]
pub struct MaskingGenerator {
    pub height: usize,
    pub width: usize,
    pub min_num_patches: usize,
    pub max_num_patches: usize,
    log_aspect: (f64, f64),
}

impl MaskingGenerator {
    /// The configuration of DINOv2's `train.py`: grid `n x n` (`n = crop / patch`), at most half
    /// of the patches per block (`max_num_patches = 0.5 n²`), at least 4, aspect in [0.3, 1/0.3].
    pub fn dinov2(grid: usize) -> Self {
        Self::new(
            grid,
            grid,
            4,
            (0.5 * (grid * grid) as f64) as usize,
            0.3,
            None,
        )
    }

    pub fn new(
        height: usize,
        width: usize,
        min_num_patches: usize,
        max_num_patches: usize,
        min_aspect: f64,
        max_aspect: Option<f64>,
    ) -> Self {
        let max_aspect = max_aspect.unwrap_or(1.0 / min_aspect);
        Self {
            height,
            width,
            min_num_patches,
            max_num_patches,
            log_aspect: (min_aspect.ln(), max_aspect.ln()),
        }
    }

    pub fn num_patches(&self) -> usize {
        self.height * self.width
    }

    fn add_block(&self, mask: &mut [bool], max_mask_patches: usize, rng: &mut impl Rng) -> usize {
        let mut delta = 0;
        for _ in 0..10 {
            let target_area = rng.uniform(self.min_num_patches as f64, max_mask_patches as f64);
            let aspect = rng.uniform(self.log_aspect.0, self.log_aspect.1).exp();
            // Python's round() rounds halves to even.
            let h = (target_area * aspect).sqrt().round_ties_even() as usize;
            let w = (target_area / aspect).sqrt().round_ties_even() as usize;
            if w < self.width && h < self.height {
                let top = rng.randint(0, (self.height - h) as i64) as usize;
                let left = rng.randint(0, (self.width - w) as i64) as usize;
                let masked: usize = (top..top + h)
                    .map(|i| {
                        mask[i * self.width + left..i * self.width + left + w]
                            .iter()
                            .filter(|&&m| m)
                            .count()
                    })
                    .sum();
                let new = h * w - masked;
                if 0 < new && new <= max_mask_patches {
                    for i in top..top + h {
                        for m in &mut mask[i * self.width + left..i * self.width + left + w] {
                            if !*m {
                                *m = true;
                                delta += 1;
                            }
                        }
                    }
                }
                if delta > 0 {
                    break;
                }
            }
        }
        delta
    }

    /// A row-major mask with about `num_masking_patches` masked patches (it can undershoot).
    pub fn generate(&self, num_masking_patches: usize, rng: &mut impl Rng) -> Vec<bool> {
        let mut mask = vec![false; self.num_patches()];
        let mut count = 0;
        while count < num_masking_patches {
            let max_mask = (num_masking_patches - count).min(self.max_num_patches);
            let delta = self.add_block(&mut mask, max_mask, rng);
            if delta == 0 {
                break;
            }
            count += delta;
        }
        mask
    }
}

//! The mask half of DINOv2's `collate_data_and_cast`: which global crops of a batch are
//! masked, their masks, the flat indices of the masked patches, per-patch loss weights and the
//! upper bound of masked patches. (The images themselves are written straight into the batch
//! buffers by the loader.)

use crate::masking::MaskingGenerator;
use crate::rng::Rng;

/// iBOT masks of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMasks {
    /// `[n_global_crops_in_batch * n_tokens]`, crop-major like `collated_global_crops`.
    pub masks: Vec<bool>,
    pub n_tokens: usize,
    /// Flat indices of the masked patches (`mask_indices_list`).
    pub mask_indices: Vec<i64>,
    /// `1 / (masked patches of its image)` for each masked patch (`masks_weight`).
    pub masks_weight: Vec<f32>,
    /// Sum over the masked images of `int(N * prob_max)` (`upperbound`).
    pub upperbound: usize,
}

impl BatchMasks {
    pub fn n_masked_patches(&self) -> usize {
        self.mask_indices.len()
    }
}

/// `collate_data_and_cast`'s masking for `n_images` global crops of `generator`'s grid:
/// `int(n_images * mask_probability)` of them get a mask, with ratios stratified over
/// `mask_ratio` (`linspace` of float32 as `torch.linspace`), and the masks are shuffled.
pub fn collate_masks(
    n_images: usize,
    mask_ratio: (f64, f64),
    mask_probability: f64,
    generator: &MaskingGenerator,
    rng: &mut impl Rng,
) -> BatchMasks {
    let n_tokens = generator.num_patches();
    let n_masked = (n_images as f64 * mask_probability) as usize;
    let probs = linspace_f32(mask_ratio.0, mask_ratio.1, n_masked + 1);
    let mut upperbound = 0;
    let mut masks: Vec<Vec<bool>> = Vec::with_capacity(n_images);
    for i in 0..n_masked {
        // The reference draws `random.uniform(prob_min, prob_max)` on 0-dim float32 tensors,
        // so the arithmetic is float32.
        let (lo, hi) = (probs[i], probs[i + 1]);
        let ratio = lo + (hi - lo) * rng.random() as f32;
        let k = (n_tokens as f32 * ratio) as usize;
        masks.push(generator.generate(k, rng));
        upperbound += (n_tokens as f32 * hi) as usize;
    }
    for _ in n_masked..n_images {
        masks.push(generator.generate(0, rng));
    }
    rng.shuffle(&mut masks);
    let flat: Vec<bool> = masks.iter().flatten().copied().collect();
    let mut mask_indices = Vec::new();
    let mut masks_weight = Vec::new();
    for (img, m) in masks.iter().enumerate() {
        let count = m.iter().filter(|&&x| x).count();
        let w = 1.0 / (count.max(1) as f32);
        for (j, &x) in m.iter().enumerate() {
            if x {
                mask_indices.push((img * n_tokens + j) as i64);
                masks_weight.push(w);
            }
        }
    }
    BatchMasks {
        masks: flat,
        n_tokens,
        mask_indices,
        masks_weight,
        upperbound,
    }
}

/// `torch.linspace(start, end, steps)` in float32 (the same halves-from-both-ends formula).
pub fn linspace_f32(start: f64, end: f64, steps: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - 1 - i) as f32
            }
        })
        .collect()
}

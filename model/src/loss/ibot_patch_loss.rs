//! `iBOTPatchLoss` (`dinov2/loss/ibot_patch_loss.py`): the cross entropy between the
//! teacher's and the student's prototype scores on the masked patch tokens, each token
//! weighted by `1 / #masked tokens of its image` and the sum divided by the number of images;
//! the teacher centre `[1, 1, K]` is the EMA of the mean masked-token score, one step delayed
//! as in [`DinoLoss`](super::DinoLoss).

use super::{AllReduce, DelayedCenter, sinkhorn_knopp};
use tch::{Device, Kind, Tensor};

#[derive(Debug)]
pub struct IbotPatchLoss {
    /// `student_temp` (0.1).
    pub student_temp: f64,
    center: DelayedCenter,
}

impl IbotPatchLoss {
    /// `iBOTPatchLoss(patch_out_dim)`: student temperature 0.1, centre momentum 0.9, centre zero.
    pub fn new(patch_out_dim: i64, device: Device) -> Self {
        Self::with_params(patch_out_dim, 0.1, 0.9, device)
    }

    pub fn with_params(
        patch_out_dim: i64,
        student_temp: f64,
        center_momentum: f64,
        device: Device,
    ) -> Self {
        Self {
            student_temp,
            center: DelayedCenter::new(&[1, 1, patch_out_dim], center_momentum, device),
        }
    }

    /// The centre buffer `[1, 1, K]` (fp32), the reference's `ibot_patch_loss.center`.
    pub fn center(&self) -> &Tensor {
        self.center.center()
    }

    /// Restores the centre (any shape with K elements, e.g. from a checkpoint).
    pub fn set_center(&mut self, center: &Tensor) {
        self.center.set_center(center)
    }

    /// The stored, not yet applied batch statistics: the all-reduced sum `[1, K]` and its
    /// divisor `len * world_size`. Not checkpointed by the reference.
    pub fn pending_center_update(&self) -> Option<(&Tensor, i64)> {
        self.center.pending()
    }

    pub fn set_pending_center_update(&mut self, pending: Option<(Tensor, i64)>) {
        self.center.set_pending(pending)
    }

    /// `apply_center_update`: folds a pending batch into the centre; a no-op if none is pending.
    pub fn apply_center_update(&mut self) {
        self.center.apply()
    }

    /// `softmax_center_teacher`: applies the pending centre update, then
    /// `softmax((t - center) / teacher_temp)` over the last dimension, in fp32, without grad.
    /// Takes the masked teacher scores `[n_masked, K]` or, as the reference's caller passes
    /// them, `[1, n_masked, K]`; the result has the input's shape.
    pub fn softmax_center_teacher(
        &mut self,
        teacher_patch_tokens: &Tensor,
        teacher_temp: f64,
    ) -> Tensor {
        self.apply_center_update();
        tch::no_grad(|| {
            let t = teacher_patch_tokens.detach().to_kind(Kind::Float);
            let shape = t.size();
            let center = self.center.center().reshape([-1]);
            ((t - center) / teacher_temp)
                .softmax(-1, Kind::Float)
                .reshape(shape)
        })
    }

    /// `update_center`: stores `sum(t.mean(1), dim 0)` (all-reduced with `reduce`), to be
    /// divided by `len(t) · world`, for the next softmax. The reference's caller passes the
    /// masked teacher scores as `[1, n_masked, K]`, so `len = 1` and every process's mean
    /// weighs the same; a `[n_masked, K]` input is taken as that `[1, n_masked, K]`.
    pub fn update_center(&mut self, teacher_patch_tokens: &Tensor, reduce: Option<&dyn AllReduce>) {
        let t = if teacher_patch_tokens.dim() == 2 {
            teacher_patch_tokens.unsqueeze(0)
        } else {
            teacher_patch_tokens.shallow_clone()
        };
        let sum = tch::no_grad(|| {
            t.detach()
                .to_kind(Kind::Float)
                .mean_dim(1, false, Kind::Float)
                .sum_dim_intlist(0, true, Kind::Float)
        });
        self.center.store(sum, t.size()[0], reduce);
    }

    /// `sinkhorn_knopp_teacher` (reference default `n_iterations = 3`): masked teacher scores
    /// `[n_masked_local, K]` to assignments over all processes' masked tokens, whose count is
    /// the all-reduced `n_masked_patches` (this process's count).
    pub fn sinkhorn_knopp_teacher(
        &self,
        teacher_output: &Tensor,
        teacher_temp: f64,
        n_masked_patches: i64,
        n_iterations: i64,
        reduce: Option<&dyn AllReduce>,
    ) -> Tensor {
        let mut b = Tensor::from_slice(&[n_masked_patches]).to_device(teacher_output.device());
        if let Some(r) = reduce {
            r.all_reduce_sum(&mut b);
        }
        let b = b.int64_value(&[0]);
        sinkhorn_knopp(teacher_output, teacher_temp, b, n_iterations, reduce)
    }

    /// `forward_masked`: with `l_m = Σ_k t_m · log_softmax(s_m / student_temp)` per masked
    /// token (fp32), `loss = −Σ_m l_m · w_m / masks.shape[0]`.
    /// - `student_masks_flat` `[n_images, N]` (bool; other kinds are taken as `!= 0`);
    /// - `masks_weight` defaults to `1 / max(#masked of the token's image, 1)` for every
    ///   masked token in row-major mask order (what the collate computes);
    /// - `n_masked_patches` keeps only the first that many token losses.
    pub fn forward_masked(
        &self,
        student_patch_tokens_masked: &Tensor,
        teacher_patch_tokens_masked: &Tensor,
        student_masks_flat: &Tensor,
        n_masked_patches: Option<i64>,
        masks_weight: Option<&Tensor>,
    ) -> Tensor {
        let s = student_patch_tokens_masked.to_kind(Kind::Float);
        let t = teacher_patch_tokens_masked.to_kind(Kind::Float);
        let mut loss = (t * (s / self.student_temp).log_softmax(-1, Kind::Float)).sum_dim_intlist(
            -1,
            false,
            Kind::Float,
        );
        let masks = if student_masks_flat.kind() == Kind::Bool {
            student_masks_flat.shallow_clone()
        } else {
            student_masks_flat.ne(0)
        };
        let masks_weight = match masks_weight {
            Some(w) => w.to_kind(Kind::Float),
            None => {
                let per_image = masks
                    .sum_dim_intlist(-1, false, Kind::Float)
                    .clamp_min(1.0)
                    .reciprocal();
                per_image
                    .unsqueeze(-1)
                    .expand_as(&masks)
                    .masked_select(&masks)
            }
        };
        if let Some(n) = n_masked_patches {
            let n = n.min(loss.size()[0]).max(0);
            loss = loss.narrow(0, 0, n);
        }
        let n_images = masks.size()[0] as f64;
        let masks_weight = masks_weight.to_device(loss.device());
        -(loss * masks_weight).sum(Kind::Float) / n_images
    }
}

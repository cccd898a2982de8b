//! `DINOLoss` (`dinov2/loss/dino_clstoken_loss.py`): the cross entropy between the teacher's
//! centred-and-sharpened (or Sinkhorn-Knopp normalised) CLS prototype scores and the student's
//! temperature softmax, with the teacher centre `[1, K]` updated by a one-step-delayed EMA.

use super::{AllReduce, DelayedCenter, sinkhorn_knopp, world_size};
use tch::{Device, Kind, Tensor};

#[derive(Debug)]
pub struct DinoLoss {
    /// `student_temp` (0.1).
    pub student_temp: f64,
    center: DelayedCenter,
}

impl DinoLoss {
    /// `DINOLoss(out_dim)`: student temperature 0.1, centre momentum 0.9, centre zero.
    pub fn new(out_dim: i64, device: Device) -> Self {
        Self::with_params(out_dim, 0.1, 0.9, device)
    }

    pub fn with_params(
        out_dim: i64,
        student_temp: f64,
        center_momentum: f64,
        device: Device,
    ) -> Self {
        Self {
            student_temp,
            center: DelayedCenter::new(&[1, out_dim], center_momentum, device),
        }
    }

    /// The centre buffer `[1, K]` (fp32), the reference's `dino_loss.center` state-dict entry.
    pub fn center(&self) -> &Tensor {
        self.center.center()
    }

    /// Restores the centre (any shape with K elements, e.g. from a checkpoint).
    pub fn set_center(&mut self, center: &Tensor) {
        self.center.set_center(center)
    }

    /// The batch statistics stored by the last [`update_center`](Self::update_center) and not
    /// yet applied: the all-reduced sum `[1, K]` and its divisor `len * world_size`. The
    /// reference does not checkpoint this; saving it makes a resume exact.
    pub fn pending_center_update(&self) -> Option<(&Tensor, i64)> {
        self.center.pending()
    }

    pub fn set_pending_center_update(&mut self, pending: Option<(Tensor, i64)>) {
        self.center.set_pending(pending)
    }

    /// `apply_center_update`: folds a pending batch into the centre,
    /// `center = m·center + (1-m)·sum/(len·world)`; a no-op if none is pending.
    pub fn apply_center_update(&mut self) {
        self.center.apply()
    }

    /// `softmax_center_teacher`: applies the pending centre update, then
    /// `softmax((t - center) / teacher_temp)` over the last dimension, in fp32, without grad.
    pub fn softmax_center_teacher(&mut self, teacher_output: &Tensor, teacher_temp: f64) -> Tensor {
        self.apply_center_update();
        tch::no_grad(|| {
            let t = teacher_output.detach().to_kind(Kind::Float);
            ((t - self.center.center()) / teacher_temp).softmax(-1, Kind::Float)
        })
    }

    /// `update_center`: stores `sum(teacher_output, dim 0)` `[1, K]` (all-reduced with
    /// `reduce`) for the next [`softmax_center_teacher`](Self::softmax_center_teacher). The
    /// sum is taken in fp32 (the reference sums in the input dtype).
    pub fn update_center(&mut self, teacher_output: &Tensor, reduce: Option<&dyn AllReduce>) {
        let sum = tch::no_grad(|| {
            teacher_output
                .detach()
                .to_kind(Kind::Float)
                .sum_dim_intlist(0, true, Kind::Float)
        });
        self.center.store(sum, teacher_output.size()[0], reduce);
    }

    /// `sinkhorn_knopp_teacher` (reference default `n_iterations = 3`): teacher logits
    /// `[B_local, K]` to assignments `[B_local, K]` over the global batch `B_local · world`.
    pub fn sinkhorn_knopp_teacher(
        &self,
        teacher_output: &Tensor,
        teacher_temp: f64,
        n_iterations: i64,
        reduce: Option<&dyn AllReduce>,
    ) -> Tensor {
        let b = teacher_output.size()[0] * world_size(reduce);
        sinkhorn_knopp(teacher_output, teacher_temp, b, n_iterations, reduce)
    }

    /// `forward`: `Σ_s Σ_t −mean_rows(Σ_k t · log_softmax(s / student_temp))` over every
    /// (student chunk, teacher chunk) pair, in fp32; differentiable in the student outputs.
    pub fn forward(&self, student_output_list: &[Tensor], teacher_list: &[Tensor]) -> Tensor {
        let mut total: Option<Tensor> = None;
        for s in student_output_list {
            let lsm = (s.to_kind(Kind::Float) / self.student_temp).log_softmax(-1, Kind::Float);
            for t in teacher_list {
                let loss = (t.to_kind(Kind::Float) * &lsm)
                    .sum_dim_intlist(-1, false, Kind::Float)
                    .mean(Kind::Float);
                total = Some(match total {
                    None => -loss,
                    Some(acc) => acc - loss,
                });
            }
        }
        total.unwrap_or_else(|| {
            let device = student_output_list
                .first()
                .map_or(Device::Cpu, |s| s.device());
            Tensor::zeros([], (Kind::Float, device))
        })
    }
}

//! The DINOv2 training losses, one per file as in the reference's `dinov2/loss/`:
//! [`DinoLoss`] (CLS-token DINO cross entropy with its teacher centre), [`IbotPatchLoss`]
//! (masked-patch iBOT cross entropy with its own centre), [`KoLeoLoss`] (the
//! Kozachenko-Leonenko spreading regulariser) and [`sinkhorn_knopp`] (the teacher
//! normalisation alternative to centering).
//!
//! All loss math runs in fp32: fp16 inputs are upcast first (where the reference relies on
//! autocast or on type promotion against its fp32 centre, and also for KoLeo, whose fp16
//! underflow in the reference gives `inf`). Distributed reductions go through an optional
//! [`AllReduce`]; `None` means a single process (world size 1).

mod dino_clstoken_loss;
mod ibot_patch_loss;
mod koleo_loss;
mod sinkhorn_knopp;

pub use dino_clstoken_loss::DinoLoss;
pub use ibot_patch_loss::IbotPatchLoss;
pub use koleo_loss::KoLeoLoss;
pub use sinkhorn_knopp::sinkhorn_knopp;

use tch::{Device, Kind, Tensor};

/// The collective operations the losses need from a data-parallel process group
/// (`torch.distributed` in the reference). Each reduction is in place and synchronous.
pub trait AllReduce {
    /// The number of processes (`dist.get_world_size()`).
    fn world_size(&self) -> i64;
    /// `dist.all_reduce(t)`: replace `t` by the element-wise sum over all processes.
    fn all_reduce_sum(&self, t: &mut Tensor);
    /// `dist.all_reduce(t, op=MAX)`: replace `t` by the element-wise maximum over all
    /// processes (used only to stabilise the Sinkhorn-Knopp exponential).
    fn all_reduce_max(&self, t: &mut Tensor);
}

/// The world size of an optional reducer (1 for a single process).
pub(crate) fn world_size(reduce: Option<&dyn AllReduce>) -> i64 {
    reduce.map_or(1, |r| r.world_size())
}

/// A teacher centre with the reference's one-step-delayed EMA update
/// (`reduce_center_update` / `apply_center_update`): the batch statistics of step k are stored
/// (already all-reduced) and only folded into the centre by the next softmax, so that the
/// all-reduce can overlap with the student's forward pass.
#[derive(Debug)]
pub(crate) struct DelayedCenter {
    /// fp32, of the reference buffer's shape (`[1, K]` DINO, `[1, 1, K]` iBOT).
    center: Tensor,
    momentum: f64,
    /// The all-reduced batch sum and its divisor (`len * world_size`).
    pending: Option<(Tensor, i64)>,
}

impl DelayedCenter {
    pub(crate) fn new(shape: &[i64], momentum: f64, device: Device) -> Self {
        Self {
            center: Tensor::zeros(shape, (Kind::Float, device)),
            momentum,
            pending: None,
        }
    }

    pub(crate) fn center(&self) -> &Tensor {
        &self.center
    }

    /// Replaces the centre (any shape with K elements), kept fp32 on the centre's device.
    pub(crate) fn set_center(&mut self, c: &Tensor) {
        assert_eq!(
            c.numel(),
            self.center.numel(),
            "centre of shape {:?} where {:?} is expected",
            c.size(),
            self.center.size()
        );
        self.center = c
            .detach()
            .to_device(self.center.device())
            .to_kind(Kind::Float)
            .reshape(self.center.size());
    }

    pub(crate) fn pending(&self) -> Option<(&Tensor, i64)> {
        self.pending.as_ref().map(|(t, n)| (t, *n))
    }

    pub(crate) fn set_pending(&mut self, pending: Option<(Tensor, i64)>) {
        self.pending = pending.map(|(t, n)| {
            let t = t
                .detach()
                .to_device(self.center.device())
                .to_kind(Kind::Float);
            (t, n)
        });
    }

    /// Stores a batch sum for the next [`apply`](Self::apply): all-reduced with `reduce`, to
    /// be divided by `len * world_size`. A second store before the apply replaces the first,
    /// as in the reference.
    pub(crate) fn store(&mut self, batch_sum: Tensor, len: i64, reduce: Option<&dyn AllReduce>) {
        let mut sum = batch_sum.detach().to_kind(Kind::Float);
        if let Some(r) = reduce {
            r.all_reduce_sum(&mut sum);
        }
        self.set_pending(Some((sum, len * world_size(reduce))));
    }

    /// `center = m * center + (1 - m) * sum / (len * world)` if a batch is pending.
    pub(crate) fn apply(&mut self) {
        if let Some((sum, count)) = self.pending.take() {
            let batch_center = (sum / count as f64).reshape(self.center.size());
            self.center = &self.center * self.momentum + batch_center * (1.0 - self.momentum);
        }
    }
}

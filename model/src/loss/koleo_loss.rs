//! `KoLeoLoss` (`dinov2/loss/koleo_loss.py`): the Kozachenko-Leonenko entropy estimator of
//! Sablayrolles et al. (2018), `−mean log ‖x_i − x_{nn(i)}‖` on L2-normalised vectors, which
//! spreads the student's CLS tokens within a batch.
//!
//! Computed in fp32 whatever the input dtype (fp16 or bf16), with autocast off on the CPU and
//! CUDA as the reference's `autocast(enabled=False)` (else the nearest-neighbour products would
//! run in the autocast dtype). The reference does not upcast, so with fp16 tokens its `1e-8` epsilons
//! underflow to 0 and two identical tokens give `log(0) = −inf`, i.e. `koleo_loss: inf`
//! (facebookresearch/dinov2 #492, #143).

use tch::{Kind, Tensor};

/// The reference's default epsilon (normalisation, pairwise distance and log).
const EPS: f64 = 1e-8;

#[derive(Debug, Clone, Copy, Default)]
pub struct KoLeoLoss;

impl KoLeoLoss {
    pub fn new() -> Self {
        Self
    }

    /// `pairwise_NNs_inner`: for L2-normalised rows `[B, D]`, the index of each row's nearest
    /// neighbour by maximal dot product, its own diagonal entry being set to −1.
    pub fn pairwise_nns_inner(x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let x = x.detach();
            let mut dots = x.mm(&x.tr());
            let _ = dots.fill_diagonal_(-1.0, false);
            dots.max_dim(1, false).1
        })
    }

    /// `forward(student_output [B, D])` with eps 1e-8: `x = F.normalize(x, eps)`,
    /// `d_i = ‖x_i − x_{nn(i)} + 1e-8‖₂` (`nn.PairwiseDistance(2, eps=1e-8)`),
    /// `loss = −mean(log(d + eps))`; an fp32 scalar, differentiable in the input.
    pub fn forward(&self, student_output: &Tensor) -> Tensor {
        self.forward_with_eps(student_output, EPS)
    }

    /// [`forward`](Self::forward) with the reference's `eps` argument (normalisation and log;
    /// the pairwise-distance epsilon stays 1e-8 as in the reference).
    pub fn forward_with_eps(&self, student_output: &Tensor, eps: f64) -> Tensor {
        crate::runtime::without_autocast(|| {
            let x = student_output.to_kind(Kind::Float);
            let norm = x
                .norm_scalaropt_dim(2.0, [-1i64].as_slice(), true)
                .clamp_min(eps);
            let x = &x / norm.expand_as(&x);
            let nn = Self::pairwise_nns_inner(&x);
            let d = Tensor::pairwise_distance(&x, &x.index_select(0, &nn), 2.0, EPS, false);
            -(d + eps).log().mean(Kind::Float)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn nearest_neighbour_excludes_itself() {
        let x = Tensor::from_slice2(&[[1.0f32, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]]);
        let x = &x / x.norm_scalaropt_dim(2.0, [-1i64].as_slice(), true);
        let nn = KoLeoLoss::pairwise_nns_inner(&x);
        assert_eq!(Vec::<i64>::try_from(&nn).unwrap(), [2, 3, 0, 1]);
    }

    #[test]
    fn duplicated_tokens_give_a_finite_loss_in_fp16_and_fp32() {
        tch::manual_seed(2);
        let x = Tensor::randn([4, 16], (Kind::Float, Device::Cpu));
        let x = Tensor::cat(&[&x, &x.narrow(0, 0, 1)], 0);
        for kind in [Kind::Float, Kind::Half, Kind::BFloat16] {
            let l = KoLeoLoss::new().forward(&x.to_kind(kind));
            assert_eq!(l.kind(), Kind::Float);
            assert!(l.double_value(&[]).is_finite(), "{kind:?}");
        }
    }

    #[test]
    fn under_bf16_autocast_the_loss_is_the_fp32_loss_of_the_bf16_tokens() {
        use crate::runtime::{Precision, autocast};
        tch::manual_seed(3);
        let x = Tensor::randn([16, 32], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let plain = KoLeoLoss::new().forward(&x).double_value(&[]);
        let cast = autocast(Device::Cpu, Precision::Bf16, || {
            KoLeoLoss::new().forward(&x).double_value(&[])
        })
        .unwrap();
        assert_eq!(plain, cast, "autocast is off inside KoLeo");
    }
}

//! Sinkhorn-Knopp teacher normalisation (`sinkhorn_knopp_teacher` of
//! `dinov2/loss/dino_clstoken_loss.py` and `dinov2/loss/ibot_patch_loss.py`): a few
//! alternating row/column normalisations of `exp(t / τ)` so that every prototype gets an equal
//! share of the (global) batch and every sample's row is a distribution.

use super::AllReduce;
use tch::{Kind, Tensor};

/// Sinkhorn-Knopp on teacher logits `[B_local, K]`, returning fp32 `[B_local, K]` rows that
/// sum to 1:
/// ```text
/// Q = exp(t / τ).T                                        # [K, B_local]
/// Q /= allreduce(sum(Q))
/// n_iterations ×:  Q /= allreduce(rowsum(Q)); Q /= K      # each prototype sums to 1/K
///                  Q /= colsum(Q);            Q /= B      # each sample sums to 1/B
/// Q *= B; return Q.T
/// ```
/// `n_samples_total` is `B`: the global number of samples (`B_local * world` for DINO, the
/// all-reduced masked-patch count for iBOT).
///
/// Unlike the reference, which works in fp32 on `exp(t / τ)`, this works in fp64 on
/// `exp((t − m) / τ)` with `m` the midpoint of the global minimum and maximum logit (all
/// processes subtract the same constant, which the first normalisation divides out exactly).
/// In fp32, `exp(t / τ)` overflows once `t / τ > 88` and, after the division by the total, the
/// entries of a prototype far below the maximum underflow to zero, making whole rows 0/0: with
/// cosine logits the reference returns NaN below τ ≈ 0.012. In fp64 around the midpoint the
/// exponents span `±(max − min) / 2τ`, and every entry stays finite and non-zero up to a
/// spread of 700 τ. The result
/// differs from the reference only by rounding where the reference is finite.
pub fn sinkhorn_knopp(
    teacher_output: &Tensor,
    teacher_temp: f64,
    n_samples_total: i64,
    n_iterations: i64,
    reduce: Option<&dyn AllReduce>,
) -> Tensor {
    tch::no_grad(|| {
        let t = teacher_output.detach().to_kind(Kind::Double);
        // [max, -min], reduced with one collective.
        let mut extremes = Tensor::stack(&[t.max(), -t.min()], 0);
        if let Some(r) = reduce {
            r.all_reduce_max(&mut extremes);
        }
        let mid = (extremes.get(0) - extremes.get(1)) / 2.0;
        let mut q = ((t - mid) / teacher_temp).exp().tr(); // [K, B_local]
        let k = q.size()[0] as f64;
        let b = n_samples_total as f64;

        let mut sum_q = q.sum(Kind::Double);
        if let Some(r) = reduce {
            r.all_reduce_sum(&mut sum_q);
        }
        q /= sum_q;
        for _ in 0..n_iterations {
            let mut rows = q.sum_dim_intlist(1, true, Kind::Double);
            if let Some(r) = reduce {
                r.all_reduce_sum(&mut rows);
            }
            q = q / rows / k;
            let cols = q.sum_dim_intlist(0, true, Kind::Double);
            q = q / cols / b;
        }
        (q * b).tr().to_kind(Kind::Float)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn rows_are_distributions_and_prototypes_share_the_batch() {
        tch::manual_seed(0);
        let t = Tensor::randn([64, 16], (Kind::Float, Device::Cpu));
        let q = sinkhorn_knopp(&t, 0.5, 64, 3, None);
        let rows = q.sum_dim_intlist(1, false, Kind::Float);
        assert!((rows - 1.0).abs().max().double_value(&[]) < 1e-5);
        // The prototypes' shares of the batch are far more even than under a plain softmax
        // (at this temperature: with sharper inputs three iterations are far from converged).
        let spread = |p: &Tensor| {
            p.sum_dim_intlist(0, false, Kind::Float)
                .std(true)
                .double_value(&[])
        };
        let softmax = (&t / 0.5).softmax(-1, Kind::Float);
        assert!(
            spread(&q) < 0.2 * spread(&softmax),
            "{} {}",
            spread(&q),
            spread(&softmax)
        );
    }

    #[test]
    fn large_logits_do_not_overflow() {
        // exp(12 / 0.04) is inf in fp32: the reference would return NaN here.
        tch::manual_seed(1);
        let t = Tensor::randn([8, 32], (Kind::Float, Device::Cpu)) + 12.0;
        let q = sinkhorn_knopp(&t, 0.04, 8, 3, None);
        assert_eq!(q.isfinite().all().int64_value(&[]), 1);
        let shifted = sinkhorn_knopp(&(&t - 12.0), 0.04, 8, 3, None);
        assert!((q - shifted).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn cold_temperature_keeps_every_prototype() {
        // Cosine logits in [-1, 1] at τ = 0.012: in fp32 the prototype whose logits are all -1
        // becomes exp(-83) / exp(83) = 0 after the first normalisation (a zero row, then 0/0:
        // the reference returns NaN here); fp64 keeps it.
        tch::manual_seed(2);
        let t = Tensor::rand([16, 8], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
        let _ = t.narrow(1, 0, 1).fill_(-1.0);
        let _ = t.get(0).get(1).fill_(1.0);
        let q = sinkhorn_knopp(&t, 0.012, 16, 3, None);
        assert_eq!(q.isfinite().all().int64_value(&[]), 1);
        let rows = q.sum_dim_intlist(1, false, Kind::Float);
        assert!((rows - 1.0).abs().max().double_value(&[]) < 1e-4);
    }
}

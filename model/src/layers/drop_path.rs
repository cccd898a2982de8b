//! The two stochastic-depth flavours of the reference `Block`:
//! - [`drop_path`]: per-sample DropPath (used when 0 < rate <= 0.1);
//! - [`drop_add_residual_stochastic_depth`]: compute the residual on a random subset of the
//!   batch only and add it back scaled by `B / subset` (used when rate > 0.1).
//!
//! Both draw from libtorch's generator, so `tch::manual_seed` makes them repeatable.

use tch::{Kind, Tensor};

/// `DropPath`: zero each sample's residual with probability `rate`, scale survivors by
/// `1 / (1 - rate)`.
pub fn drop_path(x: &Tensor, rate: f64, train: bool) -> Tensor {
    if rate == 0.0 || !train {
        return x.shallow_clone();
    }
    let keep = 1.0 - rate;
    let b = x.size()[0];
    let mut shape = vec![b];
    shape.extend(std::iter::repeat_n(1, x.dim() - 1));
    let mut mask = Tensor::empty(shape.as_slice(), (x.kind(), x.device())).bernoulli_float_(keep);
    if keep > 0.0 {
        mask /= keep;
    }
    x * mask
}

/// `x + residual(x)` computed for `max(int(B * (1 - ratio)), 1)` randomly chosen samples, the
/// others passing through unchanged; the residual is scaled by `B / subset`.
pub fn drop_add_residual_stochastic_depth(
    x: &Tensor,
    residual: impl Fn(&Tensor) -> Tensor,
    ratio: f64,
) -> Tensor {
    let b = x.size()[0];
    let subset = ((b as f64 * (1.0 - ratio)) as i64).max(1);
    let brange = Tensor::randperm(b, (Kind::Int64, x.device())).narrow(0, 0, subset);
    let r = residual(&x.index_select(0, &brange));
    let x_flat = x.flatten(1, -1);
    let r_flat = r.flatten(1, -1).to_kind(x.kind());
    let scale = b as f64 / subset as f64;
    x_flat.index_add(0, &brange, &(r_flat * scale)).view_as(x)
}

//! Gradient-norm clipping as `torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=2,
//! error_if_nonfinite=False, foreach=None)` (reference §2.5: `clip_grad 3.0`, applied to each
//! student submodule separately, after unscaling and before the optimizer step):
//! ```text
//! norms = _foreach_norm(grads)                 (linalg.vector_norm of each gradient)
//! total = vector_norm(stack(norms))
//! coef  = clamp(max_norm / (total + 1e-6), max=1)   (max_norm / t is t.reciprocal() * max_norm)
//! _foreach_mul_(grads, coef)                   (always, also when coef is 1)
//! ```
//! Undefined gradients (parameters `Tensor::run_backward` did not reach) are left out, as torch
//! leaves out `.grad is None`. A non-finite total is not an error: the gradients become
//! non-finite and the loss scaler skips the step.

use anyhow::Result;
use tch::{Kind, Tensor};

use super::param_groups::submodule;
use crate::tensor_groups::by_device_and_kind;

/// Clips `grads` in place to a total 2-norm of at most `max_norm`; returns the total norm
/// before clipping (a 0-dim tensor on the first gradient's device, in its dtype). The norms
/// and the scaling run through libtorch's list operators (`_foreach_norm`, `_foreach_mul_`),
/// as torch's `foreach=None` does.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Result<Tensor> {
    tch::no_grad(|| {
        let defined: Vec<&Tensor> = grads.iter().filter(|g| g.defined()).collect();
        let Some(first) = defined.first() else {
            return Ok(Tensor::from(0.0f32).to_kind(Kind::Float));
        };
        let device = first.device();
        // torch groups by (device, dtype) for _foreach_norm; the norms keep the list's order
        let mut norms = Vec::with_capacity(defined.len());
        for group in by_device_and_kind(&defined) {
            norms.extend(model::foreach::norms(&group)?);
        }
        let norms: Vec<Tensor> = norms.into_iter().map(|n| n.to_device(device)).collect();
        let total = Tensor::stack(&norms, 0).norm();
        let coef = ((&total + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
        for group in by_device_and_kind(&defined) {
            model::foreach::mul_tensor_(&group, &coef.to_device(group[0].device()))?;
        }
        Ok(total)
    })
}

/// dinov2's clipping: [`clip_grad_norm`] on the gradients of each student submodule
/// (`backbone`, `dino_head`, `ibot_head`: the first component of `names[i]`) separately.
/// Returns each submodule's total norm, in order of first appearance.
pub fn clip_grad_norm_by_submodule<S: AsRef<str>>(
    names: &[S],
    grads: &mut [Tensor],
    max_norm: f64,
) -> Result<Vec<(String, Tensor)>> {
    anyhow::ensure!(
        names.len() == grads.len(),
        "clip: {} names for {} gradients",
        names.len(),
        grads.len()
    );
    let mut modules: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let m = submodule(name.as_ref())?;
        match modules.iter_mut().find(|(k, _)| k == m) {
            Some((_, idx)) => idx.push(i),
            None => modules.push((m.to_string(), vec![i])),
        }
    }
    modules
        .into_iter()
        .map(|(m, idx)| {
            let mut sub: Vec<Tensor> = idx.iter().map(|&i| grads[i].shallow_clone()).collect();
            Ok((m, clip_grad_norm(&mut sub, max_norm)?))
        })
        .collect()
}

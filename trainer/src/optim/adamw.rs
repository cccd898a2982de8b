//! AdamW as `torch.optim.AdamW(params, betas=(0.9, 0.999), eps=1e-8, amsgrad=False)`, the
//! optimizer of dinov2's pretraining (`SSLMetaArch`, reference §2.5), with the learning rate
//! and weight decay of every parameter given at each step (dinov2 rewrites each group's `lr`
//! and `weight_decay` from the schedules every iteration, `apply_optim_scheduler`).
//!
//! The arithmetic is that of torch's single-tensor path (`_single_tensor_adam`,
//! `decoupled_weight_decay=True`), in the same order and with the same ATen ops:
//! ```text
//! step += 1
//! p *= 1 - lr * wd                                   (skipped when wd == 0)
//! exp_avg.lerp_(g, 1 - beta1)
//! exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
//! step_size = lr / (1 - beta1 ** step);  bc2_sqrt = (1 - beta2 ** step) ** 0.5
//! denom = exp_avg_sq.sqrt() / bc2_sqrt + eps
//! p.addcdiv_(exp_avg, denom, value=-step_size)
//! ```
//! The step runs through libtorch's multi-tensor operators (`model::foreach`), as torch's
//! `_multi_tensor_adam` (`foreach=True`, dinov2's path on CUDA) does: parameters are grouped
//! by (learning rate, weight decay, device, dtype) and each group takes a dozen list operators
//! instead of a dozen operators per tensor. On the CPU libtorch's list operators loop over the
//! same per-tensor kernels, so the numbers equal the single-tensor path's bit for bit (tested
//! against both). With [`AdamW::fused`], torch's fused kernel (`fused=True`, one pass per tensor,
//! CPU and CUDA) runs instead; its rounding differs slightly from the other two.
//!
//! A parameter whose gradient is undefined (not reached by `Tensor::run_backward`) is skipped
//! entirely, step count included, as torch skips a parameter whose `.grad` is `None`.

use anyhow::{Context, Result, bail, ensure};
use model::foreach::{AdamWArgs, AdamWLists, adamw_foreach, adamw_fused};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// Parameters stepped together: (lr bits, weight decay bits, device, dtype).
type GroupKey = (u64, u64, Device, Kind);

#[derive(Debug)]
pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// First moments, one per parameter, in parameter order.
    pub exp_avg: Vec<Tensor>,
    /// Second moments, one per parameter.
    pub exp_avg_sq: Vec<Tensor>,
    /// Steps taken by each parameter (torch keeps one count per parameter).
    pub steps: Vec<u64>,
    /// torch's fused kernel instead of the multi-tensor operators.
    pub fused: bool,
    /// The fused kernel's step counts (float32 0-dim tensors on each parameter's device),
    /// made from `steps` on first use and after a restore.
    step_tensors: Option<Vec<Tensor>>,
}

impl AdamW {
    /// torch's defaults as dinov2 uses them: betas (0.9, 0.999), eps 1e-8; zero moments.
    pub fn new(params: &[Tensor]) -> Self {
        Self::with_betas(params, 0.9, 0.999, 1e-8)
    }

    pub fn with_betas(params: &[Tensor], beta1: f64, beta2: f64, eps: f64) -> Self {
        let zeros = || -> Vec<Tensor> { params.iter().map(|p| p.zeros_like().detach()).collect() };
        Self {
            beta1,
            beta2,
            eps,
            exp_avg: zeros(),
            exp_avg_sq: zeros(),
            steps: vec![0; params.len()],
            fused: false,
            step_tensors: None,
        }
    }

    /// One step; `lr[i]` and `weight_decay[i]` are parameter `i`'s group values for this step
    /// (`(last_layer_lr or lr) * lr_multiplier` and `wd * wd_multiplier` in dinov2).
    pub fn step(
        &mut self,
        params: &[Tensor],
        grads: &[Tensor],
        lr: &[f64],
        weight_decay: &[f64],
    ) -> Result<()> {
        let n = params.len();
        ensure!(
            grads.len() == n && self.exp_avg.len() == n && lr.len() == n && weight_decay.len() == n,
            "AdamW: {n} parameters, {} gradients, {} moment buffers, {} learning rates, {} weight decays",
            grads.len(),
            self.exp_avg.len(),
            lr.len(),
            weight_decay.len()
        );
        // groups of parameters sharing lr, weight decay, device and dtype, in first-seen order
        let mut groups: Vec<(GroupKey, Vec<usize>)> = Vec::new();
        for i in (0..n).filter(|&i| grads[i].defined()) {
            let key = (
                lr[i].to_bits(),
                weight_decay[i].to_bits(),
                params[i].device(),
                params[i].kind(),
            );
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        if self.fused && self.step_tensors.is_none() {
            self.step_tensors = Some(
                self.steps
                    .iter()
                    .zip(params.iter())
                    .map(|(&s, p)| Tensor::from(s as f32).to_device(p.device()))
                    .collect(),
            );
        }
        for (_, idx) in &groups {
            fn pick<'a>(v: &'a [Tensor], idx: &[usize]) -> Vec<&'a Tensor> {
                idx.iter().map(|&i| &v[i]).collect()
            }
            let (p, g, m, v) = (
                pick(params, idx),
                pick(grads, idx),
                pick(&self.exp_avg, idx),
                pick(&self.exp_avg_sq, idx),
            );
            let lists = AdamWLists {
                params: &p,
                grads: &g,
                exp_avgs: &m,
                exp_avg_sqs: &v,
            };
            let args = AdamWArgs {
                lr: lr[idx[0]],
                weight_decay: weight_decay[idx[0]],
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
            };
            for &i in idx {
                self.steps[i] += 1;
            }
            match &self.step_tensors {
                Some(st) if self.fused => {
                    let s: Vec<&Tensor> = idx.iter().map(|&i| &st[i]).collect();
                    adamw_fused(&lists, &s, args)?;
                }
                _ => {
                    let steps: Vec<f64> = idx.iter().map(|&i| self.steps[i] as f64).collect();
                    adamw_foreach(&lists, &steps, args)?;
                }
            }
        }
        Ok(())
    }

    /// The state as named tensors for a checkpoint: `{name}.exp_avg`, `{name}.exp_avg_sq` and
    /// `{name}.step` (a 0-dim int64) for each parameter name, in parameter order.
    pub fn state_tensors<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<(String, Tensor)>> {
        ensure!(
            names.len() == self.steps.len(),
            "AdamW state: {} names for {} parameters",
            names.len(),
            self.steps.len()
        );
        let mut out = Vec::with_capacity(3 * names.len());
        for (i, name) in names.iter().enumerate() {
            let name = name.as_ref();
            out.push((format!("{name}.exp_avg"), self.exp_avg[i].shallow_clone()));
            out.push((
                format!("{name}.exp_avg_sq"),
                self.exp_avg_sq[i].shallow_clone(),
            ));
            out.push((
                format!("{name}.step"),
                Tensor::from(self.steps[i] as i64).to_kind(Kind::Int64),
            ));
        }
        Ok(out)
    }

    /// Restores what [`AdamW::state_tensors`] wrote (any extra entries are ignored): moments
    /// are copied into the existing buffers (keeping their device and dtype); `step` may be of
    /// any numeric kind (torch stores a float32 scalar).
    pub fn load_state_tensors<S: AsRef<str>>(
        &mut self,
        names: &[S],
        tensors: &[(String, Tensor)],
    ) -> Result<()> {
        ensure!(
            names.len() == self.steps.len(),
            "AdamW state: {} names for {} parameters",
            names.len(),
            self.steps.len()
        );
        let map: HashMap<&str, &Tensor> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let get = |key: String| -> Result<&Tensor> {
            map.get(key.as_str())
                .copied()
                .with_context(|| format!("AdamW state: no tensor {key:?}"))
        };
        for (i, name) in names.iter().enumerate() {
            let name = name.as_ref();
            for (buf, which) in [
                (&mut self.exp_avg[i], "exp_avg"),
                (&mut self.exp_avg_sq[i], "exp_avg_sq"),
            ] {
                let t = get(format!("{name}.{which}"))?;
                ensure!(
                    t.size() == buf.size(),
                    "AdamW state: {name}.{which} has shape {:?}, the parameter {:?}",
                    t.size(),
                    buf.size()
                );
                tch::no_grad(|| buf.copy_(t));
            }
            let step = get(format!("{name}.step"))?;
            ensure!(
                step.numel() == 1,
                "AdamW state: {name}.step has shape {:?}",
                step.size()
            );
            let s = step.reshape([-1]).double_value(&[0]);
            if !(s >= 0.0 && s.fract() == 0.0) {
                bail!("AdamW state: {name}.step is {s}");
            }
            self.steps[i] = s as u64;
        }
        self.step_tensors = None;
        Ok(())
    }
}

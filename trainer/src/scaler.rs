//! Dynamic loss scaling for fp16 training (Paddle's `GradScaler`, the one PASSL configures,
//! and torch's `GradScaler` as a special case): the loss is multiplied by `scale` before the
//! backward pass; gradients are unscaled and checked; a step with an inf/NaN gradient is
//! skipped, and after `decr_every_n_nan_or_inf` such steps in a row the scale is multiplied by
//! `decr_ratio`; after `incr_every_n_steps` good steps in a row by `incr_ratio`.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    pub incr_ratio: f64,
    pub decr_ratio: f64,
    pub incr_every_n_steps: u64,
    pub decr_every_n_nan_or_inf: u64,
    pub max_scale: f64,
    /// Good steps since the last change.
    pub good_steps: u64,
    /// Bad steps since the last change.
    pub bad_steps: u64,
    /// Steps skipped so far.
    pub skipped: u64,
}

impl LossScaler {
    /// PASSL's settings: 2^10, x2 every 1000 good steps, x0.5 after 2 bad ones, at most 2^32.
    pub fn passl() -> Self {
        Self::new(1024.0, 2.0, 0.5, 1000, 2)
    }

    pub fn new(
        init: f64,
        incr_ratio: f64,
        decr_ratio: f64,
        incr_every_n_steps: u64,
        decr_every_n_nan_or_inf: u64,
    ) -> Self {
        Self {
            scale: init,
            incr_ratio,
            decr_ratio,
            incr_every_n_steps,
            decr_every_n_nan_or_inf,
            max_scale: 2f64.powi(32),
            good_steps: 0,
            bad_steps: 0,
            skipped: 0,
        }
    }

    /// Divides `grads` by the scale in place; returns whether they are all finite (one
    /// value read back from the device).
    pub fn unscale(&self, grads: &mut [Tensor]) -> Result<bool> {
        Ok(self.unscale_found_inf(grads)?.double_value(&[]) == 0.0)
    }

    /// Divides `grads` by the scale in place, as torch's `GradScaler.unscale_`
    /// (`_amp_foreach_non_finite_check_and_unscale_` per device and dtype); returns a 0-dim
    /// float32 tensor on the first gradient's device, 1 when any gradient holds an inf or NaN,
    /// without reading it back. Undefined gradients (parameters the loss did not reach) are
    /// skipped.
    pub fn unscale_found_inf(&self, grads: &mut [Tensor]) -> Result<Tensor> {
        let defined: Vec<&Tensor> = grads.iter().filter(|g| g.defined()).collect();
        let Some(first) = defined.first() else {
            return Ok(Tensor::from(0.0f32));
        };
        let device = first.device();
        let mut found = Tensor::zeros([], (Kind::Float, device));
        // torch: inv_scale = scale.double().reciprocal().float()
        let inv = Tensor::from((1.0 / self.scale) as f32);
        for group in crate::tensor_groups::by_device_and_kind(&defined) {
            let d = group[0].device();
            let f = Tensor::zeros([], (Kind::Float, d));
            model::foreach::amp_unscale_(&group, &f, &inv.to_device(d))?;
            let _ = tch::no_grad(|| found.g_add_(&f.to_device(device)));
        }
        Ok(found.clamp_max(1.0))
    }

    /// Records the outcome of a step (after [`unscale`](Self::unscale)); returns whether the
    /// optimizer should step.
    pub fn update(&mut self, finite: bool) -> bool {
        if finite {
            self.bad_steps = 0;
            self.good_steps += 1;
            if self.good_steps >= self.incr_every_n_steps {
                self.scale = (self.scale * self.incr_ratio).min(self.max_scale);
                self.good_steps = 0;
            }
        } else {
            self.skipped += 1;
            self.good_steps = 0;
            self.bad_steps += 1;
            if self.bad_steps >= self.decr_every_n_nan_or_inf {
                self.scale = (self.scale * self.decr_ratio).max(1.0);
                self.bad_steps = 0;
            }
        }
        finite
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_backs_off_after_bad_steps_and_grows_after_good_ones() {
        let mut s = LossScaler::new(1024.0, 2.0, 0.5, 3, 2);
        let mut g = vec![Tensor::from_slice(&[2048.0f32, f32::INFINITY])];
        assert!(!s.unscale(&mut g).unwrap());
        assert!(!s.update(false));
        assert_eq!(s.scale, 1024.0); // one bad step is not enough
        assert!(!s.update(false));
        assert_eq!(s.scale, 512.0);
        let mut g = vec![Tensor::from_slice(&[1024.0f32, -512.0])];
        let ok = s.unscale(&mut g).unwrap();
        assert!(ok && s.update(ok));
        assert_eq!(Vec::<f32>::try_from(&g[0]).unwrap(), [2.0, -1.0]);
        assert!(s.update(true) && s.update(true));
        assert_eq!(s.scale, 1024.0);
        assert_eq!(s.skipped, 2);
    }
}

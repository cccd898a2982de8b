//! SGD with momentum, as `torch.optim.SGD(momentum, dampening=0, nesterov=False,
//! weight_decay)` and PASSL's `Momentum` (velocity = mu * velocity + grad; p -= lr * velocity;
//! L2 weight decay added to the gradient). The buffer starts at zero, which gives exactly
//! torch's first step (`buf = grad`).

use anyhow::{Result, ensure};
use tch::Tensor;

#[derive(Debug)]
pub struct Sgd {
    pub momentum: f64,
    pub weight_decay: f64,
    /// One momentum buffer per parameter, in parameter order.
    pub buffers: Vec<Tensor>,
}

impl Sgd {
    pub fn new(params: &[Tensor], momentum: f64, weight_decay: f64) -> Self {
        Self {
            momentum,
            weight_decay,
            buffers: params.iter().map(|p| p.zeros_like().detach()).collect(),
        }
    }

    /// One step with learning rate `lr` (one value per parameter, for per-classifier rates).
    pub fn step(&mut self, params: &mut [Tensor], grads: &[Tensor], lr: &[f64]) -> Result<()> {
        ensure!(
            params.len() == grads.len()
                && grads.len() == self.buffers.len()
                && lr.len() == params.len(),
            "optimizer: {} parameters, {} gradients, {} buffers, {} learning rates",
            params.len(),
            grads.len(),
            self.buffers.len(),
            lr.len()
        );
        tch::no_grad(|| {
            for ((p, g), (buf, &lr)) in params
                .iter_mut()
                .zip(grads)
                .zip(self.buffers.iter_mut().zip(lr))
            {
                let g = if self.weight_decay != 0.0 {
                    g + &*p * self.weight_decay
                } else {
                    g.shallow_clone()
                };
                if self.momentum != 0.0 {
                    let _ = buf.g_mul_scalar_(self.momentum).g_add_(&g);
                    let _ = p.g_sub_(&(&*buf * lr));
                } else {
                    let _ = p.g_sub_(&(g * lr));
                }
            }
        });
        Ok(())
    }
}

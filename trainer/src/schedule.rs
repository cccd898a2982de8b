//! Learning-rate schedules of the linear probe:
//! - PASSL's `TimmCosine` (timm's `CosineLRScheduler`, stepped per epoch or per step):
//!   linear warm-up from `warmup_start` over `warmup` units, then
//!   `eta_min + (base - eta_min) * (1 + cos(pi * t / total)) / 2` at unit `t`;
//! - dinov2's `CosineAnnealingLR(T_max = total, eta_min)` stepped every iteration (the same
//!   closed form without warm-up).

/// Cosine schedule with optional linear warm-up, as timm's `CosineLRScheduler` with
/// `t_initial = total`, `warmup_t = warmup`, `warmup_lr_init = warmup_start`,
/// `warmup_prefix = False`, `cycle_limit = 1`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cosine {
    pub base: f64,
    pub total: u64,
    pub warmup: u64,
    pub warmup_start: f64,
    pub eta_min: f64,
}

impl Cosine {
    pub fn new(base: f64, total: u64) -> Self {
        Self {
            base,
            total,
            warmup: 0,
            warmup_start: 0.0,
            eta_min: 0.0,
        }
    }

    /// The rate at unit `t` (epoch or step, counted from 0).
    pub fn at(&self, t: u64) -> f64 {
        if t < self.warmup {
            let step = (self.base - self.warmup_start) / self.warmup as f64;
            return self.warmup_start + t as f64 * step;
        }
        if t >= self.total {
            return self.eta_min;
        }
        let progress = t as f64 / self.total as f64;
        self.eta_min
            + 0.5 * (self.base - self.eta_min) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

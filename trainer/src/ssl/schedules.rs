//! The schedules of dinov2's pretraining (reference §2.5), indexed by iteration:
//! - [`CosineScheduler`], `dinov2/utils/utils.py::CosineScheduler`: `freeze_iters` zeros, then
//!   `np.linspace(start_warmup_value, base_value, warmup_iters)`, then
//!   `final + 0.5 * (base - final) * (1 + cos(pi * i / L))` for `i` in `0..L`,
//!   `L = total - warmup - freeze`; `final_value` from `total_iters` on. Every value is
//!   computed in f64 with numpy's operation order, on the fly instead of as an array;
//! - [`SslSchedules`], `train.py::build_schedulers(cfg)`: learning rate, weight decay, teacher
//!   momentum, teacher temperature and the last layer's learning rate;
//! - [`sqrt_wrt_1024`], the learning-rate scaling rule of `utils/config.py`.

use anyhow::{Result, ensure};
use serde::{Deserialize, Serialize};

/// `CosineScheduler(base_value, final_value, total_iters, warmup_iters, start_warmup_value,
/// freeze_iters)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CosineScheduler {
    pub base_value: f64,
    pub final_value: f64,
    pub total_iters: u64,
    pub warmup_iters: u64,
    pub start_warmup_value: f64,
    pub freeze_iters: u64,
}

impl CosineScheduler {
    /// Fails where the reference's `assert len(self.schedule) == self.total_iters` would
    /// (`warmup_iters + freeze_iters > total_iters`).
    pub fn new(
        base_value: f64,
        final_value: f64,
        total_iters: u64,
        warmup_iters: u64,
        start_warmup_value: f64,
        freeze_iters: u64,
    ) -> Result<Self> {
        ensure!(
            warmup_iters + freeze_iters <= total_iters,
            "cosine schedule: {warmup_iters} warm-up + {freeze_iters} frozen iterations exceed \
             {total_iters} in all"
        );
        Ok(Self {
            base_value,
            final_value,
            total_iters,
            warmup_iters,
            start_warmup_value,
            freeze_iters,
        })
    }

    /// Without warm-up or freeze: cosine from `base_value` to `final_value`.
    pub fn cosine(base_value: f64, final_value: f64, total_iters: u64) -> Self {
        Self {
            base_value,
            final_value,
            total_iters,
            warmup_iters: 0,
            start_warmup_value: 0.0,
            freeze_iters: 0,
        }
    }

    /// `scheduler[it]`.
    pub fn at(&self, it: u64) -> f64 {
        if it >= self.total_iters {
            return self.final_value;
        }
        if it < self.freeze_iters {
            return 0.0;
        }
        let it = it - self.freeze_iters;
        if it < self.warmup_iters {
            return linspace(
                self.start_warmup_value,
                self.base_value,
                self.warmup_iters,
                it,
            );
        }
        let i = (it - self.warmup_iters) as f64;
        let len = (self.total_iters - self.warmup_iters - self.freeze_iters) as f64;
        let half_range = 0.5 * (self.base_value - self.final_value);
        self.final_value + half_range * (1.0 + (std::f64::consts::PI * i / len).cos())
    }
}

/// Element `i` of `np.linspace(start, stop, num)` (endpoint included), as numpy computes it:
/// `i * step + start` with `step = (stop - start) / (num - 1)`, `i / div * delta + start`
/// when the step underflows to 0, and exactly `stop` at the last element.
fn linspace(start: f64, stop: f64, num: u64, i: u64) -> f64 {
    let div = num.saturating_sub(1);
    if div == 0 {
        return 0.0 * (stop - start) + start;
    }
    if i == num - 1 {
        return stop;
    }
    let delta = stop - start;
    let step = delta / div as f64;
    let y = if step == 0.0 {
        i as f64 / div as f64 * delta
    } else {
        i as f64 * step
    };
    y + start
}

/// `apply_scaling_rules_to_cfg` with `scaling_rule: sqrt_wrt_1024`:
/// `lr = base_lr * sqrt(batch_size_per_gpu * world_size / 1024)`.
pub fn sqrt_wrt_1024(base_lr: f64, batch_size_per_gpu: u64, world_size: u64) -> f64 {
    base_lr * ((batch_size_per_gpu * world_size) as f64 / 1024.0).sqrt()
}

/// What `build_schedulers` reads from the config (`optim.*`, `teacher.*`,
/// `train.OFFICIAL_EPOCH_LENGTH`); `lr` is the scaled rate (`optim.lr` after
/// [`sqrt_wrt_1024`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SslScheduleParams {
    pub epochs: u64,
    /// Iterations per "epoch" (`train.OFFICIAL_EPOCH_LENGTH`, 1250).
    pub official_epoch_length: u64,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_epochs: u64,
    pub weight_decay: f64,
    pub weight_decay_end: f64,
    pub momentum_teacher: f64,
    pub final_momentum_teacher: f64,
    pub warmup_teacher_temp: f64,
    pub teacher_temp: f64,
    pub warmup_teacher_temp_epochs: u64,
    pub freeze_last_layer_epochs: u64,
}

/// The five schedules of `build_schedulers`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SslSchedules {
    /// `optim.lr` → `min_lr` over `epochs`, linear warm-up from 0 over `warmup_epochs`.
    pub lr: CosineScheduler,
    /// `weight_decay` → `weight_decay_end` over `epochs`, no warm-up.
    pub wd: CosineScheduler,
    /// Teacher EMA momentum `momentum_teacher` → `final_momentum_teacher` over `epochs`.
    pub momentum: CosineScheduler,
    /// Teacher temperature: `CosineScheduler(teacher_temp, teacher_temp,
    /// total = warmup = warmup_teacher_temp_epochs, start = warmup_teacher_temp)`, i.e. a
    /// linspace from `warmup_teacher_temp` to `teacher_temp` over the warm-up, then constant.
    pub teacher_temp: CosineScheduler,
    /// The lr schedule again, whose first `last_layer_frozen_iters` values are overwritten
    /// with 0 (`schedule[:freeze_last_layer_epochs * epoch_len] = 0`).
    pub last_layer_lr: CosineScheduler,
    pub last_layer_frozen_iters: u64,
}

/// The values of one iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SslScheduleValues {
    pub lr: f64,
    pub wd: f64,
    pub momentum: f64,
    pub teacher_temp: f64,
    pub last_layer_lr: f64,
}

impl SslSchedules {
    pub fn new(p: &SslScheduleParams) -> Result<Self> {
        let e = p.official_epoch_length;
        let total = p.epochs * e;
        let lr = CosineScheduler::new(p.lr, p.min_lr, total, p.warmup_epochs * e, 0.0, 0)?;
        let warm_temp = p.warmup_teacher_temp_epochs * e;
        Ok(Self {
            lr,
            wd: CosineScheduler::cosine(p.weight_decay, p.weight_decay_end, total),
            momentum: CosineScheduler::cosine(p.momentum_teacher, p.final_momentum_teacher, total),
            teacher_temp: CosineScheduler::new(
                p.teacher_temp,
                p.teacher_temp,
                warm_temp,
                warm_temp,
                p.warmup_teacher_temp,
                0,
            )?,
            last_layer_lr: lr,
            last_layer_frozen_iters: p.freeze_last_layer_epochs * e,
        })
    }

    /// `last_layer_lr_schedule[it]`: 0 while frozen (inside the schedule), the lr schedule
    /// otherwise (`min_lr` from the end of the schedule on, even if still "frozen").
    pub fn last_layer_lr(&self, it: u64) -> f64 {
        if it < self.last_layer_lr.total_iters && it < self.last_layer_frozen_iters {
            0.0
        } else {
            self.last_layer_lr.at(it)
        }
    }

    pub fn at(&self, it: u64) -> SslScheduleValues {
        SslScheduleValues {
            lr: self.lr.at(it),
            wd: self.wd.at(it),
            momentum: self.momentum.at(it),
            teacher_temp: self.teacher_temp.at(it),
            last_layer_lr: self.last_layer_lr(it),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_edges() {
        assert_eq!(linspace(0.2, 1.0, 1, 0), 0.2);
        assert_eq!(linspace(0.0, 1.0, 5, 4), 1.0);
        assert_eq!(linspace(0.0, 1.0, 5, 1), 0.25);
        assert_eq!(linspace(0.07, 0.07, 4, 2), 0.07);
    }

    #[test]
    fn cosine_scheduler_shape() {
        let s = CosineScheduler::new(1.0, 0.0, 10, 2, 0.5, 3).unwrap();
        assert_eq!(
            (s.at(0), s.at(2), s.at(3), s.at(4), s.at(5)),
            (0.0, 0.0, 0.5, 1.0, 1.0)
        );
        assert!(s.at(9) > 0.0 && s.at(9) < 0.1);
        assert_eq!(s.at(10), 0.0);
        assert!(CosineScheduler::new(1.0, 0.0, 4, 3, 0.0, 2).is_err());
    }

    #[test]
    fn defaults_of_the_reference_doc() {
        // vitl16_short on 32 GPUs x 64: 0.004 * sqrt(2).
        let lr = sqrt_wrt_1024(0.004, 64, 32);
        assert!((lr - 0.005657).abs() < 1e-6);
        let s = SslSchedules::new(&SslScheduleParams {
            epochs: 100,
            official_epoch_length: 1250,
            lr,
            min_lr: 1e-6,
            warmup_epochs: 10,
            weight_decay: 0.04,
            weight_decay_end: 0.4,
            momentum_teacher: 0.992,
            final_momentum_teacher: 1.0,
            warmup_teacher_temp: 0.04,
            teacher_temp: 0.07,
            warmup_teacher_temp_epochs: 30,
            freeze_last_layer_epochs: 1,
        })
        .unwrap();
        let v = s.at(0);
        assert_eq!(
            (v.lr, v.momentum, v.teacher_temp, v.last_layer_lr),
            (0.0, 0.992, 0.04, 0.0)
        );
        // final + 0.5 * (base - final) * 2 rounds (as in numpy): 0.03999999999999998.
        assert!((v.wd - 0.04).abs() < 1e-15);
        assert_eq!(s.at(12_500).lr, lr);
        assert_eq!(s.at(1249).last_layer_lr, 0.0);
        assert_eq!(s.at(1250).last_layer_lr, s.at(1250).lr);
        assert_eq!(s.at(37_499).teacher_temp, 0.07);
        assert_eq!(s.at(200_000).teacher_temp, 0.07);
        assert_eq!((s.at(125_000).lr, s.at(125_000).wd), (1e-6, 0.4));
    }
}

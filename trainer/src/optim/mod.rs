//! Optimizers on tch tensors, through libtorch's multi-tensor and fused kernels
//! (`model::foreach`) where PyTorch uses them.

mod adamw;
mod clip;
mod param_groups;
mod sgd;

pub use adamw::AdamW;
pub use clip::{clip_grad_norm, clip_grad_norm_by_submodule};
pub use param_groups::{
    ParamGroup, apply_schedules, student_param_groups, submodule, submodule_param_groups,
};
pub use sgd::Sgd;

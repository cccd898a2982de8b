//! Optimizers, written on tch tensors (tch has no fused or foreach optimizers).

mod sgd;

pub use sgd::Sgd;

//! Training and evaluation: configs, optimizers, schedules, AMP, DDP, pretraining, linear probe,
//! k-NN, checkpoints and run metrics.

pub mod metrics;

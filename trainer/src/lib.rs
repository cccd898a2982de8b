//! Training and evaluation: configs, optimizers, schedules, AMP, DDP, pretraining, linear probe,
//! k-NN, checkpoints and run metrics.

pub mod backbone;
pub mod batch_memory;
pub mod checkpoint;
pub mod config;
pub mod dist;
pub mod knn;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod probe;
pub mod scaler;
pub mod schedule;
pub mod ssl;
pub mod step_timer;
pub mod summary;
pub(crate) mod tensor_groups;
pub mod weights_io;

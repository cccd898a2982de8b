//! The pretraining loop (dinov2/train/train.py `do_train`): per iteration apply the schedules,
//! forward the multi-crop batch through student and teacher, backpropagate, clip each student
//! submodule's gradients, AdamW, EMA-update the teacher; metrics, checkpoints with exact resume,
//! and an export of the teacher backbone with the official key names.
//!
//! One concept a file: what a config builds (`setup`), the data (`data`), one iteration
//! (`step`), checkpoints and resume (`checkpoint`) and the run itself (`run`).

mod checkpoint;
mod data;
mod run;
mod setup;
mod step;

pub use checkpoint::check_state_file;
pub use data::{batch_tensors, build_loader, open_train_dataset};
pub use run::{SslOutcome, run};
pub use setup::{meta_arch_config, parse_device, schedules, student_config};
pub use step::{Optim, StepOutput, train_step};

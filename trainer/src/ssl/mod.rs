//! DINOv2 self-supervised pretraining: the meta-architecture ([`meta_arch`]), its config
//! ([`config`], dinov2's own keys), its schedules ([`schedules`]) and the training loop
//! ([`train`]).

pub mod config;
pub mod meta_arch;
pub mod report;
pub mod schedules;
pub mod train;

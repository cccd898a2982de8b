//! Linear probing of a frozen backbone (PASSL's protocol, or dinov2's grid of classifiers),
//! with evaluation every epoch, k-NN, checkpoints, exact resume, metrics and a summary.
//!
//! The run ([`run()`]) and its settings live in their own files, as do the data and loaders,
//! the model and optimiser state of a run, evaluation, checkpoints and resume (over the files
//! of [`state`]), the banner, the linear-head export and k-NN ([`extract_features`]).

mod banner;
mod checkpoint;
pub mod classifiers;
mod data;
mod eval;
mod export;
mod knn;
mod run;
mod session;
mod settings;
pub mod state;

pub use knn::extract_features;
pub use run::{ProbeOutcome, run};
pub use settings::{DataSpec, KnnSpec, ProbeSettings};

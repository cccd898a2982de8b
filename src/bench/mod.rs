//! `dinov2 bench ...`: throughput measured against a baseline side by side in one run
//! (interleaved repetitions, medians), so that a noisy shared machine affects both alike. One
//! file per benchmark; what they share is in `shared`.

pub(crate) mod convert;
pub(crate) mod data;
mod model;
pub(crate) mod shared;
mod train;

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Tree -> shards conversion: dinov2 (LMDB and Arrow passthrough with decode or structure
    /// validation, --max-side 256) against a straightforward python-lmdb writer (PIL header
    /// only, or PIL decode), on a generated tree of ImageNet-sized JPEGs.
    Convert {
        /// Images in the generated tree (~400x350, ~110 KB each).
        #[arg(long, default_value_t = 2000)]
        images: usize,
        /// Classes (folders) they are spread over.
        #[arg(long, default_value_t = 20)]
        classes: usize,
        /// Where the tree and the outputs go (the tree is reused across runs).
        #[arg(long, default_value = "runs/bench-convert")]
        workdir: PathBuf,
        /// Converter threads (default: all cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Interleaved repetitions of every contender; medians are reported.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Python with python-lmdb and Pillow (default: $DINOV2_PYTHON, else the project venv).
        #[arg(long)]
        python: Option<PathBuf>,
    },
    /// Data loading throughput: images/s, crops/s, MB/s, CPU use and a per-stage breakdown,
    /// optionally against torchvision's DataLoader on the same images (--compare).
    Data(data::DataArgs),
    /// ViT forward and forward+backward ms (default ViT-S/14, batch 8, 224 px) against PyTorch
    /// eager (the reference dinov2 package and timm) in the same run.
    Model(model::ModelArgs),
    /// Pretraining: images/s of the whole training step against the data pipeline alone, on
    /// the same pretraining config, in one run.
    Train(train::TrainBenchArgs),
    /// Hostile inputs: mutated checkpoints, pickles, safetensors, images, shards, manifests,
    /// resume files, configs, overrides and metrics through every parser, in supervised worker
    /// processes; any panic, abort, hang or outsized allocation is a finding (see the README).
    Fuzz(crate::fuzz::FuzzArgs),
}

pub fn run(cmd: BenchCommand) -> Result<ExitCode> {
    match cmd {
        BenchCommand::Convert {
            images,
            classes,
            workdir,
            workers,
            reps,
            python,
        } => convert::run(images, classes, &workdir, workers, reps, python),
        BenchCommand::Data(args) => data::run(args),
        BenchCommand::Model(args) => model::run(args),
        BenchCommand::Train(args) => train::run(args),
        BenchCommand::Fuzz(args) => crate::fuzz::run(args),
    }
}

//! `dinov2`: DINOv2 self-supervised vision training, data pipeline first.

mod bench;
mod convert;
mod demo;
mod doctor;
mod feature_file;
mod features;
mod fuzz;
mod generate;
mod launch;
mod report;
mod shards;
mod train;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The system allocator, counting only inside `dinov2 bench fuzz` workers.
#[global_allocator]
static ALLOC: fuzz::alloc::Counting = fuzz::alloc::Counting;

#[derive(Parser)]
#[command(
    name = "dinov2",
    version,
    about = "DINOv2 self-supervised vision training in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the machine before a long job: libtorch, CUDA, cuDNN, CPU SIMD, threads, memory, disk.
    /// Exits non-zero when something would make a run fail or silently fall back to the CPU.
    Doctor {
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Directory whose free disk space to report (the data or output directory).
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// The main job on a small built-in default, end to end: device check, a generated
    /// ImageNet-like tree converted to LMDB and Arrow shards, data-pipeline benchmarks, a short
    /// DINOv2 pretraining of a tiny ViT, linear probe and k-NN of its teacher (and of a random
    /// backbone), summary.md and PNG plots in --out. Rerun to resume after an interruption.
    Demo(demo::DemoArgs),
    /// Generate a synthetic ImageNet-like tree (JPEGs of ImageNet's sizes in synset folders,
    /// train and val; the classes differ only by structure) to try the product on without a
    /// dataset.
    Generate(generate::GenerateArgs),
    /// Convert an image tree into LMDB or Arrow shards.
    #[command(subcommand)]
    Convert(convert::ConvertCommand),
    /// Inspect or verify a shard directory.
    #[command(subcommand)]
    Shards(shards::ShardsCommand),
    /// Benchmarks, each against its baseline in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// CLS / patch / register features of images with a pretrained backbone from any checkpoint
    /// PASSL or dinov2 writes (hub .pth, PASSL .pdparams with its head, training checkpoints,
    /// safetensors; the backbone found automatically, what is left out reported), after the
    /// evaluation transform (resize 256, crop 224).
    Features(features::FeaturesArgs),
    /// Train from a YAML config (PASSL's layout): a linear probe of a frozen backbone (PASSL's
    /// single head or dinov2's grid of classifiers) with evaluation, k-NN, checkpoints and
    /// `--resume`; writes metrics.jsonl, summary.md and curves.png to Global.output_dir/Model.name.
    Train(train::TrainArgs),
    /// Run `dinov2 train` as a data-parallel job: one process per GPU (or CPU group) on this
    /// node with torchrun's environment, c10d (Gloo on CPU, NCCL on GPU) between them. If a
    /// process fails, the others are stopped and the launcher exits non-zero naming its rank.
    Launch(launch::LaunchArgs),
    /// Re-render a run's summary.md and plots from its metrics: a linear-probe run, a
    /// pretraining run or a `dinov2 demo` folder.
    Report {
        /// The run directory (a probe's Global.output_dir/Model.name, a pretraining's
        /// train.output_dir, or the demo's --out).
        run_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        // Commands that use libtorch load its CUDA library first (see model::runtime).
        Command::Doctor { json, path } => {
            model::runtime::init();
            doctor::run(json, &path)
        }
        Command::Demo(a) => {
            model::runtime::init();
            demo::run(&a)
        }
        Command::Generate(a) => generate::run(a),
        Command::Convert(c) => convert::run(c),
        Command::Shards(c) => shards::run(c),
        // The fuzz campaign loads no CUDA library (its workers start often).
        Command::Bench(bench::BenchCommand::Fuzz(a)) => fuzz::run(a),
        Command::Bench(c) => {
            model::runtime::init();
            bench::run(c)
        }
        Command::Report { run_dir } => report::run(&run_dir),
        Command::Train(a) => {
            model::runtime::init();
            train::run(a)
        }
        Command::Launch(a) => launch::run(a),
        Command::Features(a) => {
            model::runtime::init();
            features::run(a)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

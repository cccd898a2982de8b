//! `dinov2 demo`: the main job on a small built-in default, end to end on whatever machine
//! this is (a few minutes on 2 CPU cores):
//!
//! 1. the doctor's checks and a timed matmul on each device;
//! 2. a generated ImageNet-like tree (realistic JPEG sizes) → LMDB and Arrow shards;
//! 3. `bench data` on the shards for the `linear-train` and `dinov2` presets;
//! 4. a short DINOv2 pretraining of a tiny ViT (`configs/tiny_ssl_cpu.yaml`, built in);
//! 5. a linear probe and k-NN of its teacher, and of the same ViT at random initialisation;
//! 6. `summary.md` (tables) and PNG plots in the output folder, with the paths printed.
//!
//! Every stage is a real `dinov2` command run as a child process (their progress bars show);
//! a finished stage leaves `stages/NAME.json`, so a rerun after an interruption skips what was
//! done and resumes the rest (conversion and training resume from their own checkpoints).

mod accuracy;
mod baselines;
mod data;
mod headline;
mod matmul;
mod outputs;
mod pretrain;
mod probe;
mod stage;
mod summary;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use trainer::metrics::MetricsWriter;

/// Sizes of the demo (`dinov2 demo --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Output folder (stages, shards, runs, summary.md, plots).
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    /// Images in the generated tree (10 classes; 80 % train, 20 % val).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(20..=1_000_000))]
    pub images: u64,
    /// Pretraining iterations (batch 32).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub iterations: u64,
    /// Linear-probe epochs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub probe_epochs: u32,
    /// Seconds of each data-pipeline benchmark (and of each torchvision baseline).
    #[arg(long, default_value_t = 6.0)]
    pub bench_seconds: f64,
    /// Square matrix size of the device check.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(i64).range(16..=16384))]
    pub size: i64,
    /// Timed repetitions of the device check (the median is reported).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub reps: u32,
}

/// `dinov2 demo`.
pub fn run(a: &DemoArgs) -> Result<ExitCode> {
    ensure!(a.bench_seconds > 0.0, "--bench-seconds must be positive");
    let out = &a.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let t_all = Instant::now();

    // 1. machine
    let report = crate::doctor::collect(out);
    crate::doctor::print(&report);
    if !report.problems.is_empty() {
        bail!("the doctor found problems (listed above); fix them before running jobs");
    }
    let mut metrics = MetricsWriter::append(&out.join("metrics.jsonl"))?;
    let matmul = matmul::device_check(a, &mut metrics)?;
    let device = Compute::of(&report);
    eprintln!("\ntraining on: {}", device.describe());
    let python = baselines::python();
    if let Err(e) = &python {
        eprintln!("the baselines will not run: {e:#}");
    }
    // 2. tree and shards, and the python-lmdb writer on the same tree
    let tree_info = data::tree(a)?;
    let conversions = data::conversions(out)?;
    let baseline_convert = baselines::conversion(a, &python);
    let shards = out.join("shards-arrow");
    // 3. data pipeline, and torchvision's DataLoader on the same images
    let benches = data::benches(a, &shards)?;
    let baseline_loaders = baselines::loaders(a, &python, &benches);
    // 4. pretraining
    let pre = pretrain::pretrain(a, &shards, &device)?;
    // 5. probes
    let probes = probe::probes(a, &shards, &device)?;
    // 6. summary and plots
    let all = json!({
        "doctor": report, "matmul": matmul, "device": device, "tree": tree_info,
        "conversions": conversions, "data": benches, "pretraining": pre, "probes": probes,
        "baselines": {"convert": baseline_convert, "loaders": baseline_loaders},
    });
    let summary_json = out.join(SUMMARY_JSON);
    let written = outputs::write_outputs(out, &all)?;
    pipeline::atomic::write_atomic(&summary_json, &serde_json::to_vec_pretty(&all)?)?;
    println!("\n{}", written.markdown);
    println!("finished in {:.0} s", t_all.elapsed().as_secs_f64());
    written.print_paths(out);
    println!("all results:     {}", summary_json.display());
    Ok(ExitCode::SUCCESS)
}

/// Where the demo trains: the first GPU with fp16 autocast and loss scaling (the reference's
/// mixed precision) when there is one, else the CPU in fp32.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Compute {
    /// `cuda` or `cpu`.
    pub(super) kind: String,
    /// The GPU's name, or the CPU's model.
    pub(super) name: String,
    pub(super) precision: String,
}

impl Compute {
    fn of(report: &crate::doctor::Report) -> Self {
        if tch::Cuda::is_available() {
            let name = report
                .cuda_driver
                .as_ref()
                .ok()
                .and_then(|d| d.devices.first())
                .map_or_else(|| "CUDA device 0".to_string(), |d| d.name.clone());
            Self {
                kind: "cuda".into(),
                name,
                precision: "fp16 autocast with loss scaling".into(),
            }
        } else {
            Self {
                kind: "cpu".into(),
                name: format!("{}, {} cores", report.cpu_model, report.cpus_available),
                precision: "fp32".into(),
            }
        }
    }

    fn is_gpu(&self) -> bool {
        self.kind == "cuda"
    }

    /// "the GPU (NAME) with PRECISION" or "the CPU (MODEL) in fp32; no GPU was found".
    pub(super) fn describe(&self) -> String {
        match self.kind.as_str() {
            "cuda" => format!("the GPU ({}) with {}", self.name, self.precision),
            _ => format!(
                "the CPU ({}) in {}; no GPU was found",
                self.name, self.precision
            ),
        }
    }
}

/// The demo's results file: every stage's figures, written when the last stage is done.
const SUMMARY_JSON: &str = "summary.json";

/// The pretraining run of the demo in `out`.
fn pretrain_dir(out: &Path) -> PathBuf {
    out.join("pretrain")
}

/// The linear-probe run (its `Global.output_dir`) of the demo's `name` backbone.
fn probe_dir(out: &Path, name: &str) -> PathBuf {
    out.join(format!("probe-{name}"))
}

/// The run directory the probe writes under its `Global.output_dir` (`Model.name` of
/// `configs/tiny_lp_cpu.yaml`).
fn probe_run_dir(out: &Path, name: &str) -> PathBuf {
    probe_dir(out, name).join("dinov2_custom_linearprobe")
}

/// Whether `dir` is the output folder of `dinov2 demo` (finished or not).
pub fn is_demo_dir(dir: &Path) -> bool {
    dir.join("stages").join("tree.json").is_file()
}

/// `dinov2 report DIR` on a demo folder: the pretraining and probe runs' reports from their
/// metrics, then the demo's summary and plots from `summary.json`.
pub fn report(out: &Path) -> Result<ExitCode> {
    let summary_json = out.join(SUMMARY_JSON);
    let bytes = match std::fs::read(&summary_json) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} is the folder of a `dinov2 demo` that has not finished (no {SUMMARY_JSON}): \
             `dinov2 demo --out {}` resumes it",
            out.display(),
            out.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", summary_json.display())),
    };
    let all: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not the demo's JSON", summary_json.display()))?;
    ensure!(
        all["probes"].is_array() && all["pretraining"].is_object(),
        "{} is not a `dinov2 demo` results file (no \"probes\" / \"pretraining\")",
        summary_json.display()
    );
    trainer::ssl::report::render(&pretrain_dir(out))?;
    for p in all["probes"].as_array().into_iter().flatten() {
        if let Some(name) = p["backbone"].as_str() {
            trainer::summary::run_report(&probe_run_dir(out, name))?;
        }
    }
    let written = outputs::write_outputs(out, &all)?;
    println!("{}", written.markdown);
    written.print_paths(out);
    Ok(ExitCode::SUCCESS)
}

/// A number of the results' JSON (NaN when absent).
fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

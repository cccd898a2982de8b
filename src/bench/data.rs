//! `dinov2 bench data`: how fast the loader turns stored images into uint8 batches, and
//! (`--compare`) how that compares with torchvision's DataLoader on the same images.

use super::shared::default_python;
use anyhow::{Context, Result, bail};
use converters::synth::{SynthSpec, ValLayout, generate_cached};
use pipeline::dataset::open_dataset;
use pipeline::loader::{BatchStorage, Loader, LoaderConfig, MaskConfig, VecStorage};
use pipeline::presets::Preset;
use pipeline::sampler::SamplerKind;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

const TV_BASELINE: &str = include_str!("../../bench/torchvision_loader.py");

/// Options of `dinov2 bench data`.
#[derive(clap::Args)]
pub struct DataArgs {
    /// Shard directory or class-per-subfolder image folder (default: a generated
    /// ImageNet-like tree of --images JPEGs under --workdir).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Split of a shard directory (or subfolder of a folder tree).
    #[arg(long, default_value = "train")]
    pub split: String,
    /// linear-train, linear-eval or dinov2.
    #[arg(long, default_value = "dinov2")]
    pub preset: String,
    /// Loader worker threads (default: all cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Samples per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Seconds to measure (after the first batch).
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Also run torchvision's DataLoader (ImageFolder + the reference transforms,
    /// num_workers = --workers) on the same images and print the ratio; needs a folder tree.
    #[arg(long)]
    pub compare: bool,
    /// Images of the generated tree when --data is not given.
    #[arg(long, default_value_t = 1000)]
    pub images: usize,
    #[arg(long, default_value = "runs/bench-data")]
    pub workdir: PathBuf,
    /// Python with torch and torchvision for --compare (default: $DINOV2_PYTHON, else the project venv).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Stages {
    read_ms: f64,
    decode_ms: f64,
    augment_ms: f64,
    collate_ms_per_batch: f64,
}

#[derive(Debug, Serialize)]
struct DataResult {
    data: String,
    preset: String,
    workers: usize,
    batch: usize,
    seconds: f64,
    images_per_s: f64,
    crops_per_s: f64,
    mb_per_s: f64,
    /// Process CPU time over wall time and cores (1.0 = every core busy).
    cpu_utilisation: f64,
    /// Mean time per sample in each stage, summed over workers.
    stages: Stages,
    /// Opening the dataset (manifest, shards or the folder scan), seconds.
    open_s: f64,
    /// From the loader's creation (sampler included) to its first batch, seconds.
    first_batch_s: f64,
    /// Files and memory maps this process held while loading.
    open_files: Option<usize>,
    memory_maps: Option<usize>,
    /// Resident memory at the end, MB: anonymous (heap, batches, libtorch's own) and
    /// file-backed (mapped libraries and shard pages, which the kernel can drop).
    rss_anon_mb: Option<f64>,
    rss_file_mb: Option<f64>,
    torchvision_images_per_s: Option<f64>,
    speedup_vs_torchvision: Option<f64>,
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn generated_tree(workdir: &Path, images: usize) -> Result<PathBuf> {
    let spec = SynthSpec {
        classes: 10,
        train_per_class: images.div_ceil(10),
        val_per_class: 0,
        val_layout: ValLayout::Folders,
        ..SynthSpec::default()
    };
    generate_cached(&workdir.join("tree"), &spec)
}

pub fn run(args: DataArgs) -> Result<ExitCode> {
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let data = match &args.data {
        Some(d) => d.clone(),
        None => generated_tree(&args.workdir, args.images)?,
    };
    let preset = Preset::by_name(&args.preset)?;
    if args.batch == 0 || args.seconds <= 0.0 {
        bail!("--batch and --seconds must be positive");
    }
    let t_open = Instant::now();
    let dataset: Arc<dyn pipeline::Dataset> = Arc::from(open_dataset(&data, &args.split)?);
    let open_s = t_open.elapsed().as_secs_f64();
    eprintln!("{}", dataset.describe());
    let masks = matches!(preset, Preset::Dinov2(_)).then(MaskConfig::default);
    let cfg = LoaderConfig {
        preset: preset.clone(),
        batch_size: args.batch,
        workers,
        seed: 0,
        sampler: SamplerKind::Infinite,
        rank: 0,
        world: 1,
        masks,
        keep_partial_batch: false,
        bad_records: pipeline::bad_records::BadRecords::FAIL,
    };
    let storages: Vec<Box<dyn BatchStorage>> = (0..4)
        .map(|_| Box::new(VecStorage::for_preset(&preset, args.batch)) as Box<dyn BatchStorage>)
        .collect();
    let t_first = Instant::now();
    let mut loader = Loader::new(dataset, cfg, storages)?;
    let times = loader.times.clone();
    let mut it = loader.epoch(0, 0)?;
    drop(it.next().context("the loader produced no batch")??);
    let first_batch_s = t_first.elapsed().as_secs_f64();
    let snapshot = |t: &pipeline::loader::StageTimes| {
        [
            &t.read, &t.decode, &t.augment, &t.collate, &t.samples, &t.bytes,
        ]
        .map(|a| a.load(Ordering::Relaxed))
    };
    let before = snapshot(&times);
    let (t0, cpu0) = (Instant::now(), cpu_seconds());
    let mut batches = 0u64;
    while t0.elapsed().as_secs_f64() < args.seconds {
        drop(it.next().context("the loader stopped")??);
        batches += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let after = snapshot(&times);
    let count = |dir: &str| std::fs::read_dir(dir).ok().map(|d| d.count());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_mb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    let (open_files, memory_maps) = (
        count("/proc/self/fd"),
        std::fs::read_to_string("/proc/self/maps")
            .ok()
            .map(|m| m.lines().count()),
    );
    drop(it);
    let d: Vec<f64> = after
        .iter()
        .zip(before)
        .map(|(a, b)| (a - b) as f64)
        .collect();
    let samples = d[4].max(1.0);
    let images = (batches * args.batch as u64) as f64;
    let mut result = DataResult {
        data: data.display().to_string(),
        preset: args.preset.clone(),
        workers,
        batch: args.batch,
        seconds: secs,
        images_per_s: images / secs,
        crops_per_s: images * preset.crops_per_sample() as f64 / secs,
        mb_per_s: d[5] / 1e6 / secs,
        cpu_utilisation: cpu
            / secs
            / std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        stages: Stages {
            read_ms: d[0] / samples / 1e6,
            decode_ms: d[1] / samples / 1e6,
            augment_ms: d[2] / samples / 1e6,
            collate_ms_per_batch: d[3] / (batches.max(1) as f64) / 1e6,
        },
        torchvision_images_per_s: None,
        speedup_vs_torchvision: None,
        open_s,
        first_batch_s,
        open_files,
        memory_maps,
        rss_anon_mb: rss_mb("RssAnon:"),
        rss_file_mb: rss_mb("RssFile:"),
    };
    if args.compare {
        let root = if data.join(&args.split).is_dir() {
            data.join(&args.split)
        } else {
            data.clone()
        };
        if root.join("manifest.json").exists() {
            bail!(
                "--compare needs a class-per-subfolder image folder (torchvision's ImageFolder), not shards"
            );
        }
        let python = args.python.clone().unwrap_or_else(default_python);
        let tv = torchvision_loader(
            &python,
            &args.workdir,
            &root,
            &args.preset,
            workers,
            args.batch,
            args.seconds,
        )?;
        result.torchvision_images_per_s = Some(tv);
        result.speedup_vs_torchvision = Some(result.images_per_s / tv);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        let r = &result;
        println!(
            "{} preset, {} workers, batch {}: {:.1} images/s, {:.0} crops/s, {:.1} MB/s, CPU {:.0}%",
            r.preset,
            r.workers,
            r.batch,
            r.images_per_s,
            r.crops_per_s,
            r.mb_per_s,
            r.cpu_utilisation * 100.0
        );
        let s = &r.stages;
        println!(
            "  per sample (summed over workers): read {:.2} ms, decode {:.2} ms, augment {:.2} ms; collate {:.2} ms per batch",
            s.read_ms, s.decode_ms, s.augment_ms, s.collate_ms_per_batch
        );
        if let (Some(tv), Some(x)) = (r.torchvision_images_per_s, r.speedup_vs_torchvision) {
            println!("  torchvision DataLoader: {tv:.1} images/s -> dinov2 is {x:.2}x");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// torchvision's DataLoader (`bench/torchvision_loader.py`: ImageFolder on `root` with the
/// reference transforms of `preset`, `workers` worker processes, batches of `batch`) run by
/// `python` for `seconds` after its first batch: its images/s. The script is written to `workdir`.
pub fn torchvision_loader(
    python: &Path,
    workdir: &Path,
    root: &Path,
    preset: &str,
    workers: usize,
    batch: usize,
    seconds: f64,
) -> Result<f64> {
    std::fs::create_dir_all(workdir)?;
    let script = workdir.join("torchvision_loader.py");
    std::fs::write(&script, TV_BASELINE)?;
    eprintln!("running torchvision's DataLoader for {seconds} s ...");
    let o = Command::new(python)
        .arg(&script)
        .arg("--root")
        .arg(root)
        .args([
            "--preset",
            preset,
            "--workers",
            &workers.to_string(),
            "--batch",
            &batch.to_string(),
        ])
        .args(["--seconds", &seconds.to_string()])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !o.status.success() {
        bail!(
            "torchvision baseline failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).context("torchvision baseline output")?;
    v["images_per_s"]
        .as_f64()
        .context("no images_per_s from the torchvision baseline")
}

//! `dinov2 bench ...`: throughput measured against a baseline side by side in one run
//! (interleaved repetitions, medians), so that a noisy shared machine affects both alike.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use converters::convert::{ConvertArgs, OnError, convert};
use converters::prepare::Validate;
use converters::source::plan_folder;
use converters::synth::{SynthSpec, ValLayout, generate_cached};
use pipeline::shards::ShardFormat;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

const PY_BASELINE: &str = include_str!("../bench/python_lmdb_writer.py");
pub const TV_BASELINE: &str = include_str!("../bench/torchvision_loader.py");

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
    Data(DataArgs),
    /// ViT forward and forward+backward ms (default ViT-S/14, batch 8, 224 px) against PyTorch
    /// eager (the reference dinov2 package and timm) in the same run.
    Model(crate::bench_model::ModelArgs),
    /// Pretraining: images/s of the whole training step against the data pipeline alone, on
    /// the same pretraining config, in one run.
    Train(crate::bench_train::TrainBenchArgs),
    /// Hostile inputs: mutated checkpoints, pickles, safetensors, images, shards, manifests,
    /// resume files, configs, overrides and metrics through every parser, in supervised worker
    /// processes; any panic, abort, hang or outsized allocation is a finding (see the README).
    Fuzz(crate::fuzz::FuzzArgs),
}

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

#[derive(Debug, Clone, Serialize)]
struct Row {
    name: String,
    runs: Vec<f64>,
    median_images_per_s: f64,
    median_mb_per_s: f64,
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
        } => bench_convert(images, classes, &workdir, workers, reps, python),
        BenchCommand::Data(args) => crate::bench_data::run(args),
        BenchCommand::Model(args) => crate::bench_model::run(args),
        BenchCommand::Train(args) => crate::bench_train::run(args),
        BenchCommand::Fuzz(args) => crate::fuzz::run(args),
    }
}

/// The median of the repetitions of one contender (the upper one for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Waits for the device's queued work (a no-op on the CPU), so that a wall-clock time covers it.
pub fn sync(device: tch::Device) {
    if let tch::Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The Python the baselines run in: `$DINOV2_PYTHON`, else the project venv of the checkout
/// this binary was built in, else `python3` from the PATH (a binary run on another machine,
/// e.g. against a GPU image's own PyTorch).
pub fn default_python() -> PathBuf {
    if let Some(p) = std::env::var_os("DINOV2_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn bench_convert(
    images: usize,
    classes: usize,
    workdir: &Path,
    workers: Option<usize>,
    reps: usize,
    python: Option<PathBuf>,
) -> Result<ExitCode> {
    if classes == 0 || images < classes || reps == 0 {
        bail!("need --images >= --classes >= 1 and --reps >= 1");
    }
    let python = python.unwrap_or_else(default_python);
    let workers =
        workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let spec = SynthSpec {
        classes,
        train_per_class: images / classes,
        val_per_class: 0,
        val_layout: ValLayout::Folders,
        ..SynthSpec::default()
    };
    let train = generate_cached(&workdir.join("tree"), &spec)?;
    // Warm the page cache so every contender reads from memory.
    let mut total_bytes = 0u64;
    let mut n_images = 0usize;
    for class in std::fs::read_dir(&train)? {
        for f in std::fs::read_dir(class?.path())? {
            total_bytes += std::fs::read(f?.path())?.len() as u64;
            n_images += 1;
        }
    }
    let script = workdir.join("python_lmdb_writer.py");
    std::fs::write(&script, PY_BASELINE)?;
    println!(
        "tree: {n_images} JPEGs, mean {:.0} KB; {workers} converter threads; {reps} interleaved reps",
        total_bytes as f64 / n_images as f64 / 1e3
    );

    type Contender<'a> = (&'a str, Box<dyn Fn(&Path) -> Result<f64> + 'a>);
    let ours = |format: ShardFormat, max_side: Option<u32>, validate: Validate| {
        let train = train.clone();
        Box::new(move |out: &Path| -> Result<f64> {
            let t = Instant::now();
            let plan = plan_folder(&train, "train")?;
            let args = ConvertArgs {
                out: out.to_path_buf(),
                format,
                shard_size: 1000,
                workers,
                max_side,
                quality: 90,
                on_error: OnError::Skip,
                validate,
                progress: false,
            };
            let s = convert(&plan, &args)?;
            Ok(s.images_processed as f64 / t.elapsed().as_secs_f64())
        }) as Box<dyn Fn(&Path) -> Result<f64>>
    };
    let py = |validate: &'static str| {
        let (python, script, train) = (python.clone(), script.clone(), train.clone());
        Box::new(move |out: &Path| -> Result<f64> {
            let o = Command::new(&python)
                .arg(&script)
                .arg("--root")
                .arg(&train)
                .arg("--out")
                .arg(out.join("data.lmdb"))
                .args(["--validate", validate])
                .output()
                .with_context(|| format!("running {}", python.display()))?;
            if !o.status.success() {
                bail!(
                    "python baseline failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            let v: serde_json::Value = serde_json::from_slice(&o.stdout)?;
            v["images_per_s"]
                .as_f64()
                .context("baseline printed no images_per_s")
        }) as Box<dyn Fn(&Path) -> Result<f64>>
    };
    let contenders: Vec<Contender> = vec![
        ("python-lmdb, PIL header only", py("header")),
        ("python-lmdb, PIL decode", py("decode")),
        (
            "dinov2 lmdb, --validate decode",
            ours(ShardFormat::Lmdb, None, Validate::Decode),
        ),
        (
            "dinov2 arrow, --validate decode",
            ours(ShardFormat::Arrow, None, Validate::Decode),
        ),
        (
            "dinov2 lmdb, --validate structure",
            ours(ShardFormat::Lmdb, None, Validate::Structure),
        ),
        (
            "dinov2 arrow, --validate structure",
            ours(ShardFormat::Arrow, None, Validate::Structure),
        ),
        (
            "dinov2 lmdb, --max-side 256",
            ours(ShardFormat::Lmdb, Some(256), Validate::Decode),
        ),
    ];
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    for rep in 0..reps {
        for (k, (name, f)) in contenders.iter().enumerate() {
            let out = workdir.join(format!("out-{k}"));
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out)?;
            let r = f(&out).with_context(|| format!("contender {name}"))?;
            eprintln!("rep {}/{reps}: {name}: {r:.0} images/s", rep + 1);
            runs[k].push(r);
            let _ = std::fs::remove_dir_all(&out);
        }
    }
    let mb_per_image = total_bytes as f64 / n_images as f64 / 1e6;
    let rows: Vec<Row> = contenders
        .iter()
        .zip(runs)
        .map(|((name, _), runs)| {
            let m = median(&runs);
            Row {
                name: name.to_string(),
                median_images_per_s: m,
                median_mb_per_s: m * mb_per_image,
                runs,
            }
        })
        .collect();
    let (base_header, base_decode) = (rows[0].median_images_per_s, rows[1].median_images_per_s);
    println!(
        "\n| contender | images/s (median) | MB/s | vs python header-only | vs python decode |"
    );
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.2}x | {:.2}x |",
            r.name,
            r.median_images_per_s,
            r.median_mb_per_s,
            r.median_images_per_s / base_header,
            r.median_images_per_s / base_decode
        );
    }
    let result = serde_json::json!({
        "images": n_images, "mean_bytes": total_bytes as f64 / n_images as f64,
        "workers": workers, "reps": reps, "rows": rows,
    });
    let path = workdir.join("results.json");
    pipeline::atomic::write_atomic(&path, &serde_json::to_vec_pretty(&result)?)?;
    println!("\nwrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

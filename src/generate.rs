//! `dinov2 generate`: a synthetic ImageNet-like tree (synset folders of JPEGs with ImageNet's
//! size and byte statistics whose classes differ only by structure, and a val split) to try
//! conversion, the loader and the trainers on a machine with no dataset — the tree the demo,
//! the benchmarks and `scripts/gpu_check.sh` use. Deterministic for a seed; a rerun with the
//! same options reuses a finished tree (`.synth.json` marks it complete).

use anyhow::{Result, ensure};
use converters::synth::{SynthSpec, ValLayout, generate_cached};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The tree's root (`OUT/train/<synset>/*.JPEG`, `OUT/val/...`).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    #[arg(long, default_value_t = 80)]
    pub train_per_class: usize,
    #[arg(long, default_value_t = 20)]
    pub val_per_class: usize,
    /// `folders` (val/<synset>/) or `flat` (ImageNet's val layout with LOC_val_solution.csv).
    #[arg(long, default_value = "folders")]
    pub val_layout: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Mean image width and height in pixels (sizes vary ±30 % around them; ImageNet's
    /// are about 400 x 350).
    #[arg(long, default_value_t = 400)]
    pub mean_width: u32,
    #[arg(long, default_value_t = 350)]
    pub mean_height: u32,
}

pub fn run(a: GenerateArgs) -> Result<ExitCode> {
    ensure!(
        a.classes > 0 && a.train_per_class > 0,
        "--classes and --train-per-class must be positive"
    );
    ensure!(
        a.mean_width >= 16 && a.mean_height >= 16,
        "--mean-width and --mean-height must be at least 16"
    );
    let val_layout = match a.val_layout.as_str() {
        "folders" => ValLayout::Folders,
        "flat" => ValLayout::Flat,
        o => anyhow::bail!("--val-layout must be folders or flat, not {o:?}"),
    };
    let spec = SynthSpec {
        classes: a.classes,
        train_per_class: a.train_per_class,
        val_per_class: a.val_per_class,
        val_layout,
        seed: a.seed,
        mean_width: a.mean_width,
        mean_height: a.mean_height,
        ..SynthSpec::default()
    };
    generate_cached(&a.out, &spec)?;
    println!(
        "{} classes: {} train and {} val images in {}",
        a.classes,
        a.classes * a.train_per_class,
        a.classes * a.val_per_class,
        a.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

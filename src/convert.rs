//! `dinov2 convert imagenet|folder`.

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use converters::convert::{ConvertArgs, ConvertSummary, OnError, convert};
use converters::imagenet::{Split, ValLabels, plan_imagenet};
use converters::prepare::Validate;
use converters::source::{SourcePlan, plan_folder};
use pipeline::shards::ShardFormat;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ConvertCommand {
    /// ImageNet (ILSVRC2012) train/ and val/ into shards. val/ may be in synset folders or flat
    /// with LOC_val_solution.csv (found in --root automatically) or the devkit's ground truth.
    Imagenet {
        #[command(flatten)]
        common: CommonArgs,
        /// Which split(s) to convert.
        #[arg(long, value_enum, default_value = "all")]
        split: SplitArg,
        /// Labels of a flat val/: LOC_val_solution.csv (ImageId,PredictionString).
        #[arg(long, conflicts_with = "val_ground_truth")]
        val_labels: Option<PathBuf>,
        /// Labels of a flat val/: the devkit's ILSVRC2012_validation_ground_truth.txt ...
        #[arg(long, requires = "val_synsets")]
        val_ground_truth: Option<PathBuf>,
        /// ... with the synsets in ILSVRC2012_ID order, one per line (first token used).
        #[arg(long, requires = "val_ground_truth")]
        val_synsets: Option<PathBuf>,
    },
    /// A checkpoint to safetensors with the official PyTorch key names and layouts: a PyTorch
    /// torch.save zip (flat or nested state dicts), a PASSL .pdparams (numpy pickle; `backbone.`
    /// prefix dropped, Linear weights transposed back), or a safetensors file (to select/rename).
    /// Every tensor is converted; the backbone found (the ViT under the prefix of a `cls_token`,
    /// teacher preferred over student), the other groups and the non-tensor entries left out
    /// (key and type) are printed. --backbone writes the backbone alone, with the hub key names.
    Weights {
        /// The checkpoint (.pth / .pt / .pdparams / .safetensors).
        input: PathBuf,
        /// The safetensors file to write.
        output: PathBuf,
        /// Keep one nested dict (e.g. `teacher`, `model`), or `backbone` / `linear` of a
        /// .pdparams, and drop its name from the keys.
        #[arg(long)]
        select: Option<String>,
        /// Then remove this prefix from the keys where present (e.g. `backbone.`).
        #[arg(long)]
        strip_prefix: Option<String>,
        /// Write only the backbone, with the hub key names (`cls_token`, `blocks.0...`): found
        /// automatically (teacher preferred over student); heads, the other backbone and the
        /// optimizer state are left out and listed.
        #[arg(long)]
        backbone: bool,
    },
    /// Any class-per-subfolder tree (jpg/jpeg/png, case-insensitive) into shards, as one split.
    Folder {
        #[command(flatten)]
        common: CommonArgs,
        /// Name of the split the tree becomes.
        #[arg(long, default_value = "train")]
        split_name: String,
    },
}

#[derive(Args)]
pub struct CommonArgs {
    /// Source root.
    #[arg(long)]
    root: PathBuf,
    /// Output shard directory (created; a rerun resumes an interrupted conversion).
    #[arg(long)]
    out: PathBuf,
    /// Shard file format.
    #[arg(long, value_enum)]
    format: FormatArg,
    /// Source images per shard.
    #[arg(long, default_value_t = 5000)]
    shard_size: u64,
    /// Decode/convert threads (default: all cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Resize-on-write: re-encode images whose longest side exceeds N (default: pass JPEG
    /// bytes through untouched).
    #[arg(long, value_parser = clap::value_parser!(u32).range(16..=65535))]
    max_side: Option<u32>,
    /// JPEG quality of re-encoded images (conversions and --max-side).
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// What to do with a file that cannot be stored: leave it out (listed in report.json) or stop.
    #[arg(long, value_enum, default_value = "skip")]
    on_error: OnErrorArg,
    /// How JPEGs passed through untouched are checked: decode (entropy-decode every image,
    /// with libjpeg-turbo's verdict; finds truncated and corrupt files), structure (marker walk
    /// to the end-of-image marker; finds truncated files, several times faster), none (header
    /// only).
    #[arg(long, value_enum, default_value = "decode")]
    validate: ValidateArg,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ValidateArg {
    Decode,
    Structure,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Lmdb,
    Arrow,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SplitArg {
    Train,
    Val,
    All,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OnErrorArg {
    Skip,
    Fail,
}

impl CommonArgs {
    fn convert_args(&self) -> ConvertArgs {
        ConvertArgs {
            out: self.out.clone(),
            format: match self.format {
                FormatArg::Lmdb => ShardFormat::Lmdb,
                FormatArg::Arrow => ShardFormat::Arrow,
            },
            shard_size: self.shard_size,
            workers: self
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            max_side: self.max_side,
            quality: self.quality,
            on_error: match self.on_error {
                OnErrorArg::Skip => OnError::Skip,
                OnErrorArg::Fail => OnError::Fail,
            },
            validate: match self.validate {
                ValidateArg::Decode => Validate::Decode,
                ValidateArg::Structure => Validate::Structure,
                ValidateArg::None => Validate::None,
            },
            progress: std::io::stderr().is_terminal(),
        }
    }
}

pub fn run(cmd: ConvertCommand) -> Result<ExitCode> {
    let (plan, common): (SourcePlan, CommonArgs) = match cmd {
        ConvertCommand::Weights {
            input,
            output,
            select,
            strip_prefix,
            backbone,
        } => {
            let s = converters::weights::convert_weights(
                &input,
                &output,
                select.as_deref(),
                strip_prefix.as_deref(),
                backbone,
            )?;
            print_weights_summary(&output, &s);
            return Ok(ExitCode::SUCCESS);
        }
        ConvertCommand::Imagenet {
            common,
            split,
            val_labels,
            val_ground_truth,
            val_synsets,
        } => {
            let split = match split {
                SplitArg::Train => Split::Train,
                SplitArg::Val => Split::Val,
                SplitArg::All => Split::All,
            };
            let labels = match (val_labels, val_ground_truth, val_synsets) {
                (Some(csv), _, _) => Some(ValLabels::Csv(csv)),
                (None, Some(ground_truth), Some(synsets)) => Some(ValLabels::Devkit {
                    ground_truth,
                    synsets,
                }),
                _ => None,
            };
            (plan_imagenet(&common.root, split, labels)?, common)
        }
        ConvertCommand::Folder { common, split_name } => {
            if split_name.is_empty() || split_name.contains(['/', '.']) {
                bail!("--split-name must be a plain name, not {split_name:?}");
            }
            (plan_folder(&common.root, &split_name)?, common)
        }
    };
    let args = common.convert_args();
    let summary = convert(&plan, &args)?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&args, &summary);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `convert weights` wrote, the backbone it found, the other groups, the non-tensor
/// entries it left out.
fn print_weights_summary(output: &std::path::Path, s: &converters::weights::WeightsSummary) {
    println!(
        "wrote {}: {} tensors, {} parameters, {:.1} MB",
        output.display(),
        s.tensors,
        s.parameters,
        s.bytes as f64 / 1e6
    );
    match &s.backbone {
        Some(c) => {
            let at = if c.prefix.is_empty() {
                "at the top level".to_string()
            } else {
                format!("under {:?}", c.prefix)
            };
            let groups: Vec<String> = c.left_out.iter().map(|g| g.describe()).collect();
            if s.backbone_only {
                println!(
                    "  backbone: {} tensors {at}, written with the hub key names",
                    c.tensors
                );
                if !groups.is_empty() {
                    println!("  left out: {}", groups.join(", "));
                }
            } else {
                println!("  backbone: {} tensors {at}", c.tensors);
                if !groups.is_empty() {
                    println!(
                        "  other groups (converted too; --backbone writes the backbone alone): {}",
                        groups.join(", ")
                    );
                }
            }
        }
        None => println!("  no backbone found (no `cls_token`)"),
    }
    if !s.skipped.is_empty() {
        println!("  left out, not tensors ({}):", s.skipped.len());
        const SHOWN: usize = 20;
        for (key, ty) in s.skipped.iter().take(SHOWN) {
            println!("    {key}: {ty}");
        }
        if s.skipped.len() > SHOWN {
            println!("    ... and {} more", s.skipped.len() - SHOWN);
        }
    }
}

fn print_summary(args: &ConvertArgs, s: &ConvertSummary) {
    let m = &s.manifest;
    if s.already_complete {
        println!(
            "{} already holds this conversion; nothing to do.",
            args.out.display()
        );
    } else {
        let secs = s.seconds.max(1e-9);
        println!(
            "converted {} images in {:.1} s: {:.0} images/s, {:.1} MB/s read; {} shards written, {} kept from an earlier run",
            s.images_processed,
            s.seconds,
            s.images_processed as f64 / secs,
            s.bytes_read as f64 / 1e6 / secs,
            s.written_shards,
            s.resumed_shards
        );
    }
    for (name, split) in &m.splits {
        println!(
            "  {name}: {} records from {} sources in {} shards",
            split.records,
            split.sources,
            split.shards.len()
        );
    }
    let c = &m.counts;
    let list = |map: &std::collections::BTreeMap<String, u64>| {
        map.iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !c.converted.is_empty() {
        println!("  converted to RGB JPEG: {}", list(&c.converted));
    }
    if !c.skipped.is_empty() {
        println!("  skipped: {}", list(&c.skipped));
    }
    if c.resized + c.misnamed + c.ignored > 0 {
        println!(
            "  resized {}, misnamed {}, ignored {}",
            c.resized, c.misnamed, c.ignored
        );
    }
    println!(
        "wrote {} (details of every skipped or converted file: {})",
        args.out.join("manifest.json").display(),
        args.out.join(converters::convert::REPORT_FILE).display()
    );
}

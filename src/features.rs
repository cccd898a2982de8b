//! `dinov2 features`: CLS (and optionally patch / register) features of images with a
//! pretrained backbone, written to safetensors or .npy.

use crate::feature_file;
use anyhow::{Context, Result, ensure};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use model::{DinoVisionTransformer, VitConfig};
use pipeline::decode::Decoder;
use pipeline::presets::Preset;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tch::{Device, Kind, Tensor, nn};
use trainer::weights_io::BackboneChoice;

#[derive(Args)]
pub struct FeaturesArgs {
    /// Weights: any checkpoint PASSL or dinov2 writes, as is: .safetensors, PyTorch .pth/.pt
    /// (hub backbones, linear checkpoints, training checkpoints) or PASSL .pdparams. The
    /// backbone is found automatically (the ViT under the prefix of a `cls_token`, teacher
    /// preferred over student); what is left out (heads, the other backbone, optimizer state)
    /// is reported. --select / --strip-prefix override the choice.
    #[arg(long)]
    pub weights: PathBuf,
    /// vit_small, vit_base, vit_large or vit_giant2 (checked against the weights; default:
    /// inferred from them, with 64-wide heads).
    #[arg(long)]
    pub arch: Option<String>,
    /// Attention heads, for widths that are not a released architecture (the head count is
    /// not stored in the weights).
    #[arg(long)]
    pub num_heads: Option<i64>,
    /// Instead of finding the backbone automatically: keep one nested group of the checkpoint
    /// (e.g. `teacher`, or `backbone` of a .pdparams) before --strip-prefix; the keys are
    /// then loaded as they are.
    #[arg(long)]
    pub select: Option<String>,
    /// Remove this prefix from the keys (e.g. `backbone.`); overrides the automatic choice.
    #[arg(long)]
    pub strip_prefix: Option<String>,
    /// An image, or a directory searched recursively for .jpg/.jpeg/.png (sorted paths).
    #[arg(long)]
    pub input: PathBuf,
    /// Output: .safetensors (tensors `cls`, `patch`, `registers`; file list in the metadata)
    /// or .npy (CLS features; `<stem>_patch.npy` with --patch-tokens; `<stem>.files.txt`).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the patch tokens (`[N, (crop/14)^2, D]`).
    #[arg(long)]
    pub patch_tokens: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Evaluation transform: shorter side resized to this (bicubic) ...
    #[arg(long, default_value_t = 256)]
    pub resize: usize,
    /// ... then centre-cropped to this (a multiple of the patch size).
    #[arg(long, default_value_t = 224)]
    pub crop: usize,
    /// cpu, cuda, cuda:N or auto (the first GPU when there is one).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// fp16 autocast (CUDA only).
    #[arg(long)]
    pub fp16: bool,
    /// Let CUDA's fp32 matrix products and the patch-embedding convolution use TF32 tensor
    /// cores (faster, ~1e-3 relative error). Default: IEEE fp32, as the reference gives with
    /// `torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False`.
    #[arg(long)]
    pub tf32: bool,
}

pub use trainer::ssl::train::parse_device;

/// Image files under `input` (or `input` itself), sorted.
fn list_images(input: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(input).with_context(|| format!("{}", input.display()))?;
    if meta.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![input.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    ensure!(
        !out.is_empty(),
        "no .jpg/.jpeg/.png files under {}",
        input.display()
    );
    Ok(out)
}

/// Named tensors, as a weights file holds them.
type Tensors = Vec<(String, Tensor)>;

/// The backbone tensors of a weights file: with `select` / `strip_prefix`, the keys they give
/// (taken as they are); without, the backbone found automatically, with the report of the
/// choice.
fn backbone_tensors(
    weights: &Path,
    select: Option<&str>,
    strip_prefix: Option<&str>,
) -> Result<(Option<BackboneChoice>, Tensors)> {
    if select.is_some() || strip_prefix.is_some() {
        let t = trainer::weights_io::read_tensors(weights, select, strip_prefix)?;
        return Ok((None, t));
    }
    let (choice, t) = trainer::weights_io::read_backbone(weights)?;
    Ok((Some(choice), t))
}

/// Builds the backbone described by a weights file and loads it strictly; returns the report
/// of the automatic choice of the backbone (`None` with `select` / `strip_prefix`).
pub fn load_backbone(
    weights: &Path,
    arch: Option<&str>,
    num_heads: Option<i64>,
    select: Option<&str>,
    strip_prefix: Option<&str>,
    device: Device,
) -> Result<(nn::VarStore, DinoVisionTransformer, Option<BackboneChoice>)> {
    let (choice, tensors) = backbone_tensors(weights, select, strip_prefix)?;
    let shapes = tensors.iter().map(|(k, t)| (k.clone(), t.size())).collect();
    let mut config =
        VitConfig::infer(&shapes, arch).with_context(|| format!("{}", weights.display()))?;
    if let Some(h) = num_heads {
        config.num_heads = h;
        config.validate()?;
    }
    let vs = nn::VarStore::new(device);
    let vit = DinoVisionTransformer::new(vs.root(), &config)?;
    model::weights::load_state_dict(&vs, tensors, true, &weights.display().to_string())?;
    Ok((vs, vit, choice))
}

pub fn run(a: FeaturesArgs) -> Result<ExitCode> {
    let device = parse_device(&a.device)?;
    ensure!(a.batch > 0, "--batch must be positive");
    ensure!(!a.fp16 || device.is_cuda(), "--fp16 needs a CUDA device");
    model::runtime::set_cuda_tf32(a.tf32, a.tf32)?;
    let ext = a
        .out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_string();
    ensure!(
        ext == "safetensors" || ext == "npy",
        "--out must end in .safetensors or .npy, got {}",
        a.out.display()
    );
    let (_vs, vit, choice) = load_backbone(
        &a.weights,
        a.arch.as_deref(),
        a.num_heads,
        a.select.as_deref(),
        a.strip_prefix.as_deref(),
        device,
    )?;
    if let Some(c) = &choice {
        println!("weights {}: {}", a.weights.display(), c.describe());
    }
    let p = vit.config.patch_size as usize;
    ensure!(
        a.crop.is_multiple_of(p),
        "--crop {} is not a multiple of the patch size {p}",
        a.crop
    );
    let files = list_images(&a.input)?;
    let preset = Preset::LinearEval {
        resize: a.resize,
        crop: a.crop,
    };
    let bar = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} images, {per_sec}, ETA {eta}").unwrap(),
    );
    let mut decoder = Decoder::new()?;
    let mut resizer = fast_image_resize::Resizer::new();
    // The evaluation transform draws nothing; the preset API takes a generator anyway.
    let mut rng = pipeline::rng::Xoshiro::new(0);
    let crop_bytes = a.crop * a.crop * 3;
    let (mut cls, mut patch, mut reg) = (Vec::new(), Vec::new(), Vec::new());
    let _g = tch::no_grad_guard();
    for chunk in files.chunks(a.batch) {
        let mut buf = vec![0u8; chunk.len() * crop_bytes];
        for (f, out) in chunk.iter().zip(buf.chunks_mut(crop_bytes)) {
            let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            let img = decoder
                .decode(&bytes)
                .with_context(|| format!("decoding {}", f.display()))?;
            preset.apply(&img, &mut rng, &mut resizer, &mut [out]);
        }
        let x = Tensor::from_slice(&buf)
            .view([chunk.len() as i64, a.crop as i64, a.crop as i64, 3])
            .to_device(device);
        let feats = tch::autocast(a.fp16, || {
            vit.forward_features(&model::input::normalize_uint8(&x, Kind::Float), None, false)
        })?;
        cls.push(feats.cls.to_kind(Kind::Float).to_device(Device::Cpu));
        if a.patch_tokens {
            patch.push(feats.patches.to_kind(Kind::Float).to_device(Device::Cpu));
        }
        if vit.num_registers() > 0 {
            reg.push(feats.registers.to_kind(Kind::Float).to_device(Device::Cpu));
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let mut outputs = vec![("cls".to_string(), Tensor::cat(&cls, 0))];
    if a.patch_tokens {
        outputs.push(("patch".to_string(), Tensor::cat(&patch, 0)));
    }
    if !reg.is_empty() {
        outputs.push(("registers".to_string(), Tensor::cat(&reg, 0)));
    }
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    feature_file::write_features(&a.out, &outputs, &names)?;
    println!(
        "{} images -> {} ({}: {:?}{})",
        files.len(),
        a.out.display(),
        vit.config.embed_dim,
        outputs[0].1.size(),
        if a.patch_tokens {
            ", with patch tokens"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

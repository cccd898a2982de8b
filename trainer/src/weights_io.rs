//! Weights files as tch tensors (through `converters`' readers: .safetensors, PyTorch
//! .pth/.pt, PASSL .pdparams), and finding the backbone inside a checkpoint.

use anyhow::{Context, Result, bail};
pub use converters::backbone::BackboneChoice;
use converters::tensor::{DType, RawTensor};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

fn kind(d: DType) -> Kind {
    match d {
        DType::F64 => Kind::Double,
        DType::F32 => Kind::Float,
        DType::F16 => Kind::Half,
        DType::BF16 => Kind::BFloat16,
        DType::I64 => Kind::Int64,
        DType::I32 => Kind::Int,
        DType::I16 => Kind::Int16,
        DType::I8 => Kind::Int8,
        DType::U8 => Kind::Uint8,
        DType::Bool => Kind::Bool,
    }
}

fn to_tensor(t: &RawTensor) -> Result<Tensor> {
    let shape: Vec<i64> = t.shape.iter().map(|&s| s as i64).collect();
    Ok(Tensor::f_from_data_size(&t.data, &shape, kind(t.dtype))?)
}

/// The tensors of a weights file as tch tensors, with `dinov2 convert weights`'s `--select` /
/// `--strip-prefix` semantics.
pub fn read_tensors(
    path: &Path,
    select: Option<&str>,
    strip_prefix: Option<&str>,
) -> Result<Vec<(String, Tensor)>> {
    converters::weights::read_weights(path, select, strip_prefix)?
        .iter()
        .map(|(n, t)| {
            Ok((
                n.clone(),
                to_tensor(t).with_context(|| format!("tensor {n}"))?,
            ))
        })
        .collect()
}

/// PASSL names weights without their suffix (`./pretrained/dinov2/dinov2_vits14_pretrain`,
/// `.pdparams` appended by the loader): the path itself if it exists, else the first of
/// `.pdparams`, `.pth`, `.pt`, `.safetensors` appended that does.
pub fn resolve_weights_path(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    for ext in ["pdparams", "pth", "pt", "safetensors"] {
        let mut p = path.as_os_str().to_os_string();
        p.push(format!(".{ext}"));
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "weights {} not found (also tried the suffixes .pdparams, .pth, .pt, .safetensors)",
        path.display()
    )
}

/// The backbone inside any checkpoint (hub file, PASSL `.pdparams` with its head, training
/// checkpoint, safetensors export): the ViT's tensors under the prefix of a `cls_token`
/// (`teacher` preferred over `student`), prefix removed, as tch tensors, and the report of the
/// choice (the prefix, what was left out by group, non-tensor entries included).
pub fn read_backbone(path: &Path) -> Result<(BackboneChoice, Vec<(String, Tensor)>)> {
    let (choice, raw) = converters::weights::read_backbone(path)?;
    let tensors = raw
        .iter()
        .map(|(n, t)| {
            Ok((
                n.clone(),
                to_tensor(t).with_context(|| format!("{}: tensor {n}", path.display()))?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((choice, tensors))
}

//! `dinov2 convert weights`: checkpoints to safetensors, all in Rust.

use crate::backbone::{BackboneChoice, split_backbone};
use crate::pdparams::{BACKBONE_GROUP, passl_to_torch, read_pdparams_entries};
use crate::tensor::{DType, Entries, RawTensor};
use crate::torch_checkpoint::read_torch_entries;
use anyhow::{Context, Result, bail};
use safetensors::Dtype;
use std::path::Path;

/// What was converted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WeightsSummary {
    pub tensors: usize,
    pub parameters: u64,
    pub bytes: u64,
    /// The backbone found among the tensors read (`None` when there is no `cls_token`).
    pub backbone: Option<BackboneChoice>,
    /// Whether only the backbone was written (with the hub key names).
    pub backbone_only: bool,
    /// Entries of the checkpoint that are not tensors, left out: `(key, type)`.
    pub skipped: Vec<(String, String)>,
}

fn st_dtype(d: DType) -> Dtype {
    match d {
        DType::F64 => Dtype::F64,
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::I64 => Dtype::I64,
        DType::I32 => Dtype::I32,
        DType::I16 => Dtype::I16,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::Bool => Dtype::BOOL,
    }
}

/// The tensors of a checkpoint, by name, as [`convert_weights`] would write them: a
/// `torch.save` zip, a PASSL `.pdparams` (by its extension), which is first mapped to the
/// PyTorch names and layouts ([`passl_to_torch`]), or a `.safetensors` file (e.g. one of our
/// own training checkpoints). `select` keeps one group and drops its name from the keys: a
/// nested dict of a torch checkpoint (`teacher`, `model`, ...), a dotted prefix of a
/// safetensors file, or `backbone` / `linear` of a `.pdparams` (whose `backbone.` prefix is
/// dropped when nothing is selected). `strip_prefix` then removes a leading prefix where present.
pub fn read_weights(
    input: &Path,
    select: Option<&str>,
    strip_prefix: Option<&str>,
) -> Result<Vec<(String, RawTensor)>> {
    Ok(read_entries(input, select, strip_prefix)?.tensors)
}

/// [`read_weights`], with the entries that are not tensors (key and type), which are skipped.
pub fn read_entries(
    input: &Path,
    select: Option<&str>,
    strip_prefix: Option<&str>,
) -> Result<Entries> {
    let ext = input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (mut entries, default_group) = if ext == "pdparams" {
        let mut e = read_pdparams_entries(input)?;
        e.tensors = e
            .tensors
            .into_iter()
            .map(|(n, t)| passl_to_torch(n, t))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("mapping {}", input.display()))?;
        (e, Some(BACKBONE_GROUP))
    } else if ext == "safetensors" {
        let tensors = read_safetensors(input)?;
        (
            Entries {
                tensors,
                skipped: Vec::new(),
            },
            None,
        )
    } else {
        (read_torch_entries(input)?, None)
    };
    let tensors = &mut entries.tensors;
    if let Some(sel) = select {
        let p = format!("{sel}.");
        let before = tensors.len();
        tensors.retain(|(n, _)| n.starts_with(&p));
        if tensors.is_empty() {
            bail!(
                "{}: no tensors under {sel:?} ({before} tensors in the file)",
                input.display()
            );
        }
        for (n, _) in tensors.iter_mut() {
            *n = n[p.len()..].to_string();
        }
    } else if let Some(group) = default_group {
        let p = format!("{group}.");
        for (n, _) in tensors.iter_mut() {
            if let Some(rest) = n.strip_prefix(&p) {
                *n = rest.to_string();
            }
        }
    }
    if let Some(strip) = strip_prefix {
        for (n, _) in tensors.iter_mut() {
            if let Some(rest) = n.strip_prefix(strip) {
                *n = rest.to_string();
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (n, _) in tensors.iter() {
        if !seen.insert(n.clone()) {
            bail!(
                "two tensors would both be named {n:?}; choose --select / --strip-prefix differently"
            );
        }
    }
    Ok(entries)
}

/// All tensors of a safetensors file, in the file's order.
fn read_safetensors(path: &Path) -> Result<Vec<(String, RawTensor)>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    let mut out = Vec::new();
    for (name, view) in st.iter() {
        let dtype = match view.dtype() {
            Dtype::F64 => DType::F64,
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::I64 => DType::I64,
            Dtype::I32 => DType::I32,
            Dtype::I16 => DType::I16,
            Dtype::I8 => DType::I8,
            Dtype::U8 => DType::U8,
            Dtype::BOOL => DType::Bool,
            other => bail!(
                "{}: tensor {name} has unsupported dtype {other:?}",
                path.display()
            ),
        };
        out.push((
            name.to_string(),
            RawTensor {
                dtype,
                shape: view.shape().to_vec(),
                data: view.data().to_vec(),
            },
        ));
    }
    Ok(out)
}

/// The backbone of a checkpoint ([`crate::backbone::split_backbone`] over all its tensors,
/// as [`read_entries`] names them with nothing selected), keys without the backbone's prefix,
/// and the report of what was left out.
pub fn read_backbone(input: &Path) -> Result<(BackboneChoice, Vec<(String, RawTensor)>)> {
    let e = read_entries(input, None, None)?;
    split_backbone(e.tensors, &e.skipped).with_context(|| format!("{}", input.display()))
}

/// Converts a checkpoint ([`read_entries`]) to safetensors, atomically: every tensor, or with
/// `backbone_only` the backbone alone with the hub key names. Non-tensor entries are left out
/// (listed in the summary, as are the backbone found and the other groups of tensors).
pub fn convert_weights(
    input: &Path,
    output: &Path,
    select: Option<&str>,
    strip_prefix: Option<&str>,
    backbone_only: bool,
) -> Result<WeightsSummary> {
    let Entries { tensors, skipped } = read_entries(input, select, strip_prefix)?;
    let (backbone, tensors) = if backbone_only {
        let (c, kept) = split_backbone(tensors, &[])
            .with_context(|| format!("{}: --backbone", input.display()))?;
        (Some(c), kept)
    } else {
        let names: Vec<(String, ())> = tensors.iter().map(|(n, _)| (n.clone(), ())).collect();
        (split_backbone(names, &[]).ok().map(|(c, _)| c), tensors)
    };
    let views = tensors
        .iter()
        .map(|(n, t)| {
            Ok((
                n.clone(),
                safetensors::tensor::TensorView::new(st_dtype(t.dtype), t.shape.clone(), &t.data)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    pipeline::atomic::write_via_temp(output, |tmp| {
        safetensors::tensor::serialize_to_file(views, None, tmp)
            .with_context(|| format!("writing {}", tmp.display()))
    })?;
    Ok(WeightsSummary {
        tensors: tensors.len(),
        parameters: tensors
            .iter()
            .map(|(_, t)| t.shape.iter().product::<usize>() as u64)
            .sum(),
        bytes: std::fs::metadata(output)?.len(),
        backbone,
        backbone_only,
        skipped,
    })
}

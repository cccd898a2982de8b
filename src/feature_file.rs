//! Writing `dinov2 features` output: safetensors (with the file list) or .npy files.

use anyhow::{Context, Result, bail};
use std::path::Path;
use tch::{Kind, Tensor};

/// Writes features: a safetensors file (all tensors, `files` in the metadata as JSON), or
/// `.npy` files (the first tensor at `path`, the others at `<stem>_<name>.npy`) plus
/// `<stem>.files.txt`. Everything goes to temporary names first.
pub fn write_features(path: &Path, tensors: &[(String, Tensor)], files: &[String]) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "safetensors" => {
            let data = tensors
                .iter()
                .map(|(n, t)| {
                    let t = t.to_kind(Kind::Float).contiguous();
                    let mut bytes = vec![0u8; t.numel() * 4];
                    t.f_copy_data_u8(&mut bytes, t.numel())?;
                    let shape: Vec<usize> = t.size().iter().map(|&s| s as usize).collect();
                    Ok((n.clone(), bytes, shape))
                })
                .collect::<Result<Vec<_>>>()?;
            let views = data
                .iter()
                .map(|(n, b, s)| {
                    Ok((
                        n.clone(),
                        safetensors::tensor::TensorView::new(
                            safetensors::Dtype::F32,
                            s.clone(),
                            b,
                        )?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let meta = std::collections::HashMap::from([(
                "files".to_string(),
                serde_json::to_string(files)?,
            )]);
            pipeline::atomic::write_via_temp(path, |t| {
                safetensors::tensor::serialize_to_file(views, Some(meta), t)
                    .with_context(|| format!("writing {}", t.display()))
            })?;
        }
        "npy" => {
            let stem = path.with_extension("");
            let targets: Vec<_> = tensors
                .iter()
                .enumerate()
                .map(|(i, (n, _))| {
                    if i == 0 {
                        path.to_path_buf()
                    } else {
                        stem.with_file_name(format!(
                            "{}_{n}.npy",
                            stem.file_name().unwrap_or_default().to_string_lossy()
                        ))
                    }
                })
                .collect();
            pipeline::atomic::write_set_via_temp(&targets, |tmps| {
                for ((_, t), tmp) in tensors.iter().zip(tmps) {
                    t.to_kind(Kind::Float)
                        .write_npy(tmp)
                        .with_context(|| format!("writing {}", tmp.display()))?;
                }
                Ok(())
            })?;
            let list = stem.with_extension("files.txt");
            pipeline::atomic::write_atomic(&list, (files.join("\n") + "\n").as_bytes())?;
        }
        other => bail!("unsupported output extension {other:?} (expected safetensors or npy)"),
    }
    Ok(())
}

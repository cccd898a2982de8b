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
            // Every array goes to a temporary name first; only when all are written do they
            // take their names, so a failure (a full disk) leaves no partial set behind.
            let stem = path.with_extension("");
            let mut written = Vec::new();
            let result = (|| -> Result<()> {
                for (i, (n, t)) in tensors.iter().enumerate() {
                    let target = if i == 0 {
                        path.to_path_buf()
                    } else {
                        stem.with_file_name(format!(
                            "{}_{n}.npy",
                            stem.file_name().unwrap_or_default().to_string_lossy()
                        ))
                    };
                    let tmp = pipeline::atomic::temp_path(&target);
                    written.push((tmp.clone(), target));
                    t.to_kind(Kind::Float)
                        .write_npy(&tmp)
                        .with_context(|| format!("writing {}", tmp.display()))?;
                }
                Ok(())
            })();
            if let Err(e) = result {
                for (tmp, _) in &written {
                    let _ = std::fs::remove_file(tmp);
                }
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
                let note = pipeline::atomic::free_space_note(dir.unwrap_or(Path::new(".")));
                return Err(e.context(format!("writing {}{note}", path.display())));
            }
            for (tmp, target) in &written {
                std::fs::rename(tmp, target)
                    .with_context(|| format!("renaming into {}", target.display()))?;
            }
            let list = stem.with_extension("files.txt");
            pipeline::atomic::write_atomic(&list, (files.join("\n") + "\n").as_bytes())?;
        }
        other => bail!("unsupported output extension {other:?} (expected safetensors or npy)"),
    }
    Ok(())
}

//! Committing a checkpoint: the tensors under a new name, then the JSON state that names them
//! (`latest.json`, written atomically: the commit point), then the older tensor files go.

use anyhow::{Context, Result};
use std::path::Path;
use tch::Tensor;

/// Writes `dir/<tensors_file>` and `dir/latest.json`, then removes other files of `dir` that
/// start with `prefix` and end with `.safetensors`.
pub fn commit<S: serde::Serialize>(
    dir: &Path,
    tensors_file: &str,
    tensors: &[(String, Tensor)],
    state: &S,
    prefix: &str,
) -> Result<()> {
    let latest = dir.join("latest.json");
    // Files a killed run left half-written (the run holds its directory's lock).
    pipeline::atomic::remove_stale_temps(dir)?;
    let write = || -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        model::weights::save_safetensors(tensors, &dir.join(tensors_file))?;
        pipeline::atomic::write_atomic(&latest, &serde_json::to_vec_pretty(state)?)
    };
    if let Err(e) = write() {
        // The new tensors are not named by latest.json: they go, the last good ones stay.
        let named = std::fs::read_to_string(&latest).is_ok_and(|j| j.contains(tensors_file));
        if !named {
            let _ = std::fs::remove_file(dir.join(tensors_file));
        }
        let kept = match std::fs::read_to_string(&latest) {
            Ok(_) => format!("the last good checkpoint ({}) is intact", latest.display()),
            Err(_) => "no earlier checkpoint exists".to_string(),
        };
        return Err(e.context(format!(
            "saving checkpoint {tensors_file} in {} failed{}; {kept}",
            dir.display(),
            pipeline::atomic::free_space_note(dir)
        )));
    }
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with(prefix) && name.ends_with(".safetensors") && name != tensors_file {
            let _ = std::fs::remove_file(&p);
        }
    }
    Ok(())
}
